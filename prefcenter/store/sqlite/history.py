"""SQLite: :class:`prefcenter.store.history.HistoryStore` (reads on the reader connection)."""

from __future__ import annotations

from prefcenter.store.history import CustomerHistory
from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.rows import EVENT_COLUMNS, event_from_row

_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS.split(", "))

# ONE statement, so one snapshot: the head, whether the ref has any event, and its events up to the
# instant (and up to the head: a statement sees one snapshot, so that bound only states the invariant).
# INDEXED BY holds the planner to the (customer_ref, seq) index: never the ``at`` index, never a scan.
CUSTOMER_EVENTS_UNTIL_SQL = f"""
SELECT h.seq, h.hash,
       EXISTS (SELECT 1 FROM consent_events x INDEXED BY consent_events_by_customer
               WHERE x.customer_ref = ?1),
       {_EVENT_COLUMNS}
FROM ledger_head h
LEFT JOIN consent_events e INDEXED BY consent_events_by_customer
       ON e.customer_ref = ?1 AND e.seq <= h.seq AND e.at <= ?2
WHERE h.id = 1
ORDER BY e.seq
"""


class SqliteHistory(SqliteReads):
    """The :class:`prefcenter.store.history.HistoryStore` part of :class:`SqliteStore`."""

    async def customer_events_until(self, customer_ref: str, until_at: str) -> CustomerHistory:
        async with self.reader.execute(CUSTOMER_EVENTS_UNTIL_SQL, (customer_ref, until_at)) as cur:
            rows = list(await cur.fetchall())
        if not rows:
            raise RuntimeError("ledger head missing")
        head_seq, head_hash, known = rows[0][0], rows[0][1], rows[0][2]
        events = [event_from_row(row[3:]) for row in rows if row[3] is not None]
        return CustomerHistory(events, int(head_seq), str(head_hash), bool(known))
