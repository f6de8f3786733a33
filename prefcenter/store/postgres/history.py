"""PostgreSQL: :class:`prefcenter.store.history.HistoryStore`."""

from __future__ import annotations

from prefcenter.store.history import CustomerHistory
from prefcenter.store.postgres.reads import PgReads, reading
from prefcenter.store.postgres.rows import EVENT_COLUMNS, event_from_row

_EVENT_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS.split(", "))

# ONE statement, so one snapshot (SQLite twin: store/sqlite/history.py): the head, whether the ref has
# any event, and its events up to the instant. ``mine`` (MATERIALIZED: computed once, never inlined) is
# every event of the ref, through consent_events_by_customer (customer_ref, seq) whatever the instant:
# inlined, an early instant could make the planner walk consent_events_by_at over the ledger's start.
CUSTOMER_EVENTS_UNTIL_SQL = f"""
WITH mine AS MATERIALIZED (SELECT * FROM consent_events WHERE customer_ref = $1)
SELECT h.seq, h.hash, EXISTS (SELECT 1 FROM mine), {_EVENT_COLUMNS}
FROM ledger_head h
LEFT JOIN mine e ON e.seq <= h.seq AND e.at <= $2
WHERE h.id = 1
ORDER BY e.seq
"""


class PgHistory(PgReads):
    """The :class:`prefcenter.store.history.HistoryStore` part of :class:`PostgresStore`."""

    async def customer_events_until(self, customer_ref: str, until_at: str) -> CustomerHistory:
        with reading():
            rows = await self.db.fetch(CUSTOMER_EVENTS_UNTIL_SQL, customer_ref, until_at)
        if not rows:
            raise RuntimeError("ledger head missing")
        head_seq, head_hash, known = rows[0][0], rows[0][1], rows[0][2]
        events = [event_from_row(tuple(row)[3:]) for row in rows if row[3] is not None]
        return CustomerHistory(events, int(head_seq), str(head_hash), bool(known))
