"""SQLite: :class:`prefcenter.store.retention.RetentionStore`. Each delete is one ``write()``
transaction (the writer's lock is held for one batch only, so a gate waits for at most one short
delete) and walks an index: ``reservations_by_campaign``, ``decisions_by_at``, the outbox's primary key
(campaign_id, customer_id) and ``message_history_by_message``."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

from prefcenter.store.retention import PRUNE_QUEUED_SQL, PRUNE_RESERVED_SQL, CampaignSpan, PruneCandidates
from prefcenter.store.sqlite.reads import SqliteReads

if TYPE_CHECKING:
    from prefcenter.store.sqlite.write import SqliteWriteTx

_RESERVATIONS_SQL = """
DELETE FROM reservations WHERE campaign_id = ?1 AND customer_id IN (
    SELECT customer_id FROM reservations INDEXED BY reservations_by_campaign
    WHERE campaign_id = ?1 AND at_us <= ?2 LIMIT ?3)
"""
_DECISIONS_SQL = """
DELETE FROM decisions WHERE id IN (
    SELECT id FROM decisions INDEXED BY decisions_by_at WHERE at < ?1 LIMIT ?2)
"""
_FINISHED_SQL = """
SELECT customer_id FROM outbox WHERE campaign_id = ?1
AND status IN ('sent', 'failed', 'withdrawn', 'suppressed') AND updated_at < ?2 LIMIT ?3
"""


_MARK_SQL = """
INSERT INTO retention_marks (what, before) VALUES ('decisions', ?1)
ON CONFLICT (what) DO UPDATE SET before = max(before, excluded.before)
"""


def _changes(conn: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> int:
    return conn.execute(sql, args).rowcount


def _decisions_sync(conn: sqlite3.Connection, before_at: str, batch: int) -> int:
    deleted = conn.execute(_DECISIONS_SQL, (before_at, batch)).rowcount
    if deleted:
        conn.execute(_MARK_SQL, (before_at,))
    return deleted


def _outbox_sync(conn: sqlite3.Connection, campaign_id: str, updated_before: str, batch: int) -> int:
    ids = [(campaign_id, row[0]) for row in conn.execute(_FINISHED_SQL, (campaign_id, updated_before, batch))]
    conn.executemany("DELETE FROM message_history WHERE customer_id = ?2 AND campaign_id = ?1", ids)
    conn.executemany("DELETE FROM outbox WHERE campaign_id = ? AND customer_id = ?", ids)
    return len(ids)


class SqliteRetention(SqliteReads):
    """The :class:`prefcenter.store.retention.RetentionStore` part of :class:`SqliteStore`."""

    def write(self) -> AbstractAsyncContextManager[SqliteWriteTx]:
        raise NotImplementedError  # SqliteStore's

    async def campaign_spans(self) -> list[CampaignSpan]:
        async with self.reader.execute("SELECT id, send_by, created_at, channels FROM campaigns") as cur:
            return [CampaignSpan(*row) for row in await cur.fetchall()]

    async def prune_candidates(self) -> PruneCandidates:
        async with self.reader.execute(PRUNE_RESERVED_SQL) as cur:
            reserved = {str(c): int(at_us) for c, at_us in await cur.fetchall()}
        async with self.reader.execute(PRUNE_QUEUED_SQL) as cur:
            queued = frozenset(str(row[0]) for row in await cur.fetchall())
        return PruneCandidates(reserved, queued)

    async def prune_reservations(self, campaign_id: str, at_or_before_us: int, batch: int) -> int:
        async with self.write() as tx:
            return await tx.conn.run(_changes, _RESERVATIONS_SQL, (campaign_id, at_or_before_us, batch))

    async def prune_decisions(self, before_at: str, batch: int) -> int:
        async with self.write() as tx:
            return await tx.conn.run(_decisions_sync, before_at, batch)

    async def decisions_pruned_before(self) -> str | None:
        """None also on a database not yet migrated to 0022 (``policy replay`` does not migrate):
        nothing was pruned there."""
        try:
            sql = "SELECT before FROM retention_marks WHERE what = 'decisions'"
            async with self.reader.execute(sql) as cur:
                row = await cur.fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" not in str(exc):
                raise
            return None
        return None if row is None else str(row[0])

    async def prune_outbox(self, campaign_id: str, updated_before: str, batch: int) -> int:
        async with self.write() as tx:
            return await tx.conn.run(_outbox_sync, campaign_id, updated_before, batch)

    async def reclaim(self, tables: Sequence[str]) -> None:
        """Nothing to do: the deleting transactions' commits put the freed pages on the freelist."""
