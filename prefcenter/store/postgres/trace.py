"""PostgreSQL: :class:`prefcenter.store.trace.TraceStore`."""

from __future__ import annotations

from typing import Any

from prefcenter.store.postgres.reads import PgReads, reading
from prefcenter.store.postgres.rows import EVENT_COLUMNS, event_from_row
from prefcenter.store.trace import MessageEvent, TracedMessage, history_row, traced_message_from_rows

_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS.split(", "))

# WriteTx.add_message_history (one statement over arrays, in the caller's transaction, before the outbox
# update that releases the lease): a row is written only while its outbox row still holds the claim's
# lease; ids follow the list's order.
ADD_HISTORY_SQL = """
INSERT INTO message_history (campaign_id, customer_id, at, event, detail)
SELECT h.campaign_id, h.customer_id, h.at, h.event, h.detail
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[])
     WITH ORDINALITY AS h(campaign_id, customer_id, at, event, detail, lease, n)
WHERE h.lease IS NULL OR EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = h.campaign_id
                                 AND o.customer_id = h.customer_id AND o.lease_until_us = h.lease)
ORDER BY h.n
"""


def history_columns(events: list[MessageEvent]) -> list[list[Any]]:
    """:data:`ADD_HISTORY_SQL`'s six arrays."""
    rows = [history_row(e) for e in events]
    return [[row[i] for row in rows] for i in range(6)]


# ONE statement, so one snapshot (SQLite twin: store/sqlite/trace.py): the outbox row and its history
# rows (migration 0020) in write order.
TRACED_MESSAGE_SQL = """
SELECT o.status, o.attempts, h.at, h.event, h.detail
FROM outbox o
LEFT JOIN message_history h ON h.customer_id = o.customer_id AND h.campaign_id = o.campaign_id
WHERE o.campaign_id = $1 AND o.customer_id = $2
ORDER BY h.id
"""

CUSTOMER_LEDGER_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM consent_events e WHERE e.customer_ref = $1 ORDER BY e.seq
"""

# A JSON-expression scan over the suppression events (no index holds the ref inside ``value``).
ADDRESS_EVENTS_SQL = f"""
SELECT {_EVENT_COLUMNS} FROM consent_events e
WHERE e.subject LIKE 'suppression:%' AND (e.value::jsonb ->> 'address_ref') = ANY($1::text[])
ORDER BY e.seq
"""


class PgTrace(PgReads):
    """The :class:`prefcenter.store.trace.TraceStore` part of :class:`PostgresStore`."""

    async def traced_message(self, campaign_id: str, customer_id: str) -> TracedMessage | None:
        with reading():
            rows = await self.db.fetch(TRACED_MESSAGE_SQL, campaign_id, customer_id)
        return traced_message_from_rows(rows)

    async def customer_ledger(self, customer_ref: str) -> list[dict[str, Any]]:
        with reading():
            rows = await self.db.fetch(CUSTOMER_LEDGER_SQL, customer_ref)
        return [event_from_row(tuple(row)) for row in rows]

    async def address_suppression_events(self, address_refs: list[str]) -> list[dict[str, Any]]:
        if not address_refs:
            return []
        with reading():
            rows = await self.db.fetch(ADDRESS_EVENTS_SQL, address_refs)
        return [event_from_row(tuple(row)) for row in rows]
