"""PostgreSQL: :class:`prefcenter.store.retention.RetentionStore`. Each delete is one transaction of
its own on a pooled connection (not the store's write lock: the gate serialises on the recipients' row
locks, and these rows are ones no gate can still want) and walks an index:
``reservations_by_campaign``, ``decisions_by_at``, the outbox's primary key and
``message_history_by_message``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from prefcenter.store.postgres.reads import PgReads
from prefcenter.store.retention import (
    OUTBOX_TABLES,
    PRUNE_QUEUED_SQL,
    PRUNE_RESERVED_SQL,
    RESERVATION_TABLES,
    CampaignSpan,
    PruneCandidates,
)

if TYPE_CHECKING:
    from prefcenter.store.postgres.rows import Conn

# Each delete names its rows by ctid, collected once (an InitPlan) from the index walk: a TID scan
# whatever the planner believes of the table. As ``id IN (SELECT ...)`` the plan depended on the
# statistics: planned while they still said "nearly empty" (a table that grew since the last ANALYZE),
# a semi join rescanned the table once per row, and a pass that deleted nothing took 48 s after 13
# daily 10,000-id calls (bench_history.py). A row another transaction changed meanwhile has a new
# ctid: it is left for the next pass.
_RESERVATIONS_SQL = """
DELETE FROM reservations WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM reservations WHERE campaign_id = $1 AND at_us <= $2 LIMIT $3))
"""
_DECISIONS_SQL = """
DELETE FROM decisions WHERE ctid = ANY(ARRAY(SELECT ctid FROM decisions WHERE at < $1 LIMIT $2))
"""
_MARK_SQL = """
INSERT INTO retention_marks (what, before) VALUES ('decisions', $1)
ON CONFLICT (what) DO UPDATE SET before = greatest(retention_marks.before, excluded.before)
"""
# The status test is repeated in the DELETE: a row re-queued by a send since the SELECT stays.
_OUTBOX_SQL = """
WITH gone AS (
    DELETE FROM outbox WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM outbox WHERE campaign_id = $1
        AND status IN ('sent', 'failed', 'withdrawn', 'suppressed') AND updated_at < $2 LIMIT $3))
    AND status IN ('sent', 'failed', 'withdrawn', 'suppressed')
    RETURNING customer_id),
history AS (
    DELETE FROM message_history WHERE campaign_id = $1
    AND customer_id = ANY(ARRAY(SELECT customer_id FROM gone)))
SELECT count(*) FROM gone
"""


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])  # "DELETE <rows>"


class PgRetention(PgReads):
    """The :class:`prefcenter.store.retention.RetentionStore` part of :class:`PostgresStore`."""

    def _connection(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError  # PostgresStore's

    async def campaign_spans(self) -> list[CampaignSpan]:
        async with self._connection() as conn:
            rows = await conn.fetch("SELECT id, send_by, created_at, channels FROM campaigns")
        return [CampaignSpan(row[0], row[1], row[2], row[3]) for row in rows]

    async def prune_candidates(self) -> PruneCandidates:
        async with self._connection() as conn:
            reserved = {str(c): int(at_us) for c, at_us in await conn.fetch(PRUNE_RESERVED_SQL)}
            queued = frozenset(str(row[0]) for row in await conn.fetch(PRUNE_QUEUED_SQL))
        return PruneCandidates(reserved, queued)

    async def _delete(self, sql: str, *args: object) -> int:
        async with self._connection() as conn, conn.transaction():
            return _count(await conn.execute(sql, *args))

    async def prune_reservations(self, campaign_id: str, at_or_before_us: int, batch: int) -> int:
        return await self._delete(_RESERVATIONS_SQL, campaign_id, at_or_before_us, batch)

    async def prune_decisions(self, before_at: str, batch: int) -> int:
        async with self._connection() as conn, conn.transaction():
            deleted = _count(await conn.execute(_DECISIONS_SQL, before_at, batch))
            if deleted:
                await conn.execute(_MARK_SQL, before_at)
        return deleted

    async def decisions_pruned_before(self) -> str | None:
        """None also on a database not yet migrated to 0022 (``policy replay`` does not migrate)."""
        async with self._connection() as conn:
            if await conn.fetchval("SELECT to_regclass('retention_marks')") is None:
                return None
            found = await conn.fetchval("SELECT before FROM retention_marks WHERE what = 'decisions'")
        return None if found is None else str(found)

    async def prune_outbox(self, campaign_id: str, updated_before: str, batch: int) -> int:
        async with self._connection() as conn, conn.transaction():
            return int(await conn.fetchval(_OUTBOX_SQL, campaign_id, updated_before, batch))

    async def reclaim(self, tables: Sequence[str]) -> None:
        """``VACUUM (SKIP_LOCKED, TRUNCATE false)`` of ``tables`` (names of this store's own tables),
        outside a transaction: it takes no lock the gate's reads and writes wait for (without
        ``TRUNCATE false`` it would take an exclusive one to cut empty pages off the table's end), and a
        table another vacuum holds right then (autovacuum, another process's pruner) is skipped, not
        waited for."""
        if unknown := set(tables) - {*RESERVATION_TABLES, *OUTBOX_TABLES}:
            raise ValueError(f"not a table the pruner deletes from: {sorted(unknown)}")
        if tables:
            async with self._connection() as conn:
                await conn.execute(f"VACUUM (SKIP_LOCKED, TRUNCATE false) {', '.join(tables)}")
