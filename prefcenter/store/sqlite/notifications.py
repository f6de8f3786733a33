"""The ``notifications`` table (migration 0015): system messages to one customer, such as the SMS opt-in
confirmation (COMPLIANCE item 26), queued in a preference write's transaction and sent by the dispatcher.
:class:`~prefcenter.store.sqlite.write.SqliteWriteTx` delegates to these."""

from __future__ import annotations

from datetime import datetime

from prefcenter.domain.ledger import format_at
from prefcenter.domain.timewindows import to_us
from prefcenter.store.base import NotificationItem, NotificationUpdate
from prefcenter.store.sqlite.thread import SqliteThread


async def queue_notification(conn: SqliteThread, customer_id: str, kind: str, at: datetime) -> bool:
    """Queue one, due at once; False (nothing written) when one of this kind already waits for them."""
    stamp = format_at(at)
    cur = await conn.execute(
        "INSERT OR IGNORE INTO notifications (customer_id, kind, status, not_before_us, created_at, "
        "updated_at) VALUES (?, ?, 'queued', ?, ?, ?)",
        (customer_id, kind, to_us(at), stamp, stamp),
    )
    return cur.rowcount > 0


async def claim_notifications(
    conn: SqliteThread, now_us: int, lease_until_us: int, limit: int
) -> list[NotificationItem]:
    """Lease up to ``limit`` due ones, earliest first."""
    async with conn.execute(
        "SELECT id, customer_id, kind, attempts, topic FROM notifications WHERE status = 'queued' "
        "AND not_before_us <= ? AND (lease_until_us IS NULL OR lease_until_us <= ?) "
        "ORDER BY not_before_us, id LIMIT ?",
        (now_us, now_us, limit),
    ) as cur:
        items = [NotificationItem(*row) for row in await cur.fetchall()]
    if items:
        await conn.executemany(
            "UPDATE notifications SET lease_until_us = ? WHERE id = ?",
            [(lease_until_us, i.id) for i in items],
        )
    return items


async def update_notifications(conn: SqliteThread, updates: list[NotificationUpdate], at: datetime) -> None:
    if not updates:
        return
    stamp = format_at(at)
    await conn.executemany(
        "UPDATE notifications SET status = ?, not_before_us = coalesce(?, not_before_us), last_error = ?, "
        "attempts = attempts + ?, sent_at = CASE WHEN ? THEN ? ELSE sent_at END, "
        "lease_until_us = CASE WHEN ? THEN lease_until_us ELSE NULL END, updated_at = ? WHERE id = ?",
        [
            (
                u.status,
                u.not_before_us,
                u.last_error,
                int(u.attempted),
                int(u.status == "sent"),
                stamp,
                int(u.keep_lease),
                stamp,
                u.id,
            )
            for u in updates
        ],
    )


async def release_notification_leases(conn: SqliteThread) -> int:
    cur = await conn.execute(
        "UPDATE notifications SET lease_until_us = NULL "
        "WHERE lease_until_us IS NOT NULL AND status = 'queued'"
    )
    return int(cur.rowcount)
