"""SQLite: :class:`prefcenter.store.trace.TraceStore` (reads on the reader connection)."""

from __future__ import annotations

from typing import Any

from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.rows import EVENT_COLUMNS, event_from_row
from prefcenter.store.trace import TracedMessage, traced_message_from_rows

_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS.split(", "))

# WriteTx.add_message_history (one executemany, in the caller's transaction, before the outbox update
# that releases the lease): a row is written only while its outbox row still holds the claim's lease.
ADD_HISTORY_SQL = (
    "INSERT INTO message_history (campaign_id, customer_id, at, event, detail) "
    "SELECT ?1, ?2, ?3, ?4, ?5 WHERE ?6 IS NULL OR EXISTS (SELECT 1 FROM outbox "
    "WHERE campaign_id = ?1 AND customer_id = ?2 AND lease_until_us = ?6)"
)

# ONE statement, so one snapshot: the outbox row and its history rows (migration 0020) in write order.
TRACED_MESSAGE_SQL = """
SELECT o.status, o.attempts, h.at, h.event, h.detail
FROM outbox o
LEFT JOIN message_history h INDEXED BY message_history_by_message
       ON h.customer_id = o.customer_id AND h.campaign_id = o.campaign_id
WHERE o.campaign_id = ?1 AND o.customer_id = ?2
ORDER BY h.id
"""

CUSTOMER_LEDGER_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM consent_events e INDEXED BY consent_events_by_customer
WHERE e.customer_ref = ? ORDER BY e.seq
"""

# A JSON-expression scan over the suppression events (no index holds the ref inside ``value``).
ADDRESS_EVENTS_SQL = """
SELECT {columns} FROM consent_events e
WHERE e.subject LIKE 'suppression:%' AND json_extract(e.value, '$.address_ref') IN ({refs})
ORDER BY e.seq
"""


class SqliteTrace(SqliteReads):
    """The :class:`prefcenter.store.trace.TraceStore` part of :class:`SqliteStore`."""

    async def traced_message(self, campaign_id: str, customer_id: str) -> TracedMessage | None:
        async with self.reader.execute(TRACED_MESSAGE_SQL, (campaign_id, customer_id)) as cur:
            rows = list(await cur.fetchall())
        return traced_message_from_rows(rows)

    async def customer_ledger(self, customer_ref: str) -> list[dict[str, Any]]:
        async with self.reader.execute(CUSTOMER_LEDGER_SQL, (customer_ref,)) as cur:
            return [event_from_row(row) for row in await cur.fetchall()]

    async def address_suppression_events(self, address_refs: list[str]) -> list[dict[str, Any]]:
        if not address_refs:
            return []
        sql = ADDRESS_EVENTS_SQL.format(columns=_EVENT_COLUMNS, refs=", ".join("?" * len(address_refs)))
        async with self.reader.execute(sql, tuple(address_refs)) as cur:
            return [event_from_row(row) for row in await cur.fetchall()]
