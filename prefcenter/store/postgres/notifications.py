"""The ``notifications`` table (migration 0015): system messages to one customer, such as the SMS opt-in
confirmation (COMPLIANCE item 26), queued in a preference write's transaction and sent by the dispatcher.
:class:`~prefcenter.store.postgres.write.PgWriteTx` delegates to these (PostgreSQL twin of the SQLite
adapter's module of the same name)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from prefcenter.domain.ledger import format_at
from prefcenter.domain.timewindows import to_us
from prefcenter.store.base import NotificationItem, NotificationUpdate

if TYPE_CHECKING:
    from prefcenter.store.postgres.rows import Conn

# At most one waiting notification per (customer, kind): the partial unique index notifications_waiting.
_QUEUE_SQL = (
    "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at) "
    "VALUES ($1, $2, 'queued', $3, $4, $4) "
    "ON CONFLICT (customer_id, kind, topic) WHERE status = 'queued' DO NOTHING RETURNING id"
)

# One statement: rows another transaction holds locked (a dispatcher claiming them now) are skipped, so
# two dispatchers never lease one row (guarantee 4).
_CLAIM_SQL = """
UPDATE notifications n SET lease_until_us = $2
FROM (SELECT id FROM notifications
      WHERE status = 'queued' AND not_before_us <= $1 AND (lease_until_us IS NULL OR lease_until_us <= $1)
      ORDER BY not_before_us, id LIMIT $3
      FOR UPDATE SKIP LOCKED) due
WHERE n.id = due.id
RETURNING n.id, n.customer_id, n.kind, n.attempts, n.not_before_us, n.topic
"""

_UPDATE_SQL = (
    "UPDATE notifications SET status = $1, not_before_us = coalesce($2, not_before_us), last_error = $3, "
    "attempts = attempts + $4, sent_at = CASE WHEN $5 THEN $6 ELSE sent_at END, "
    "lease_until_us = CASE WHEN $7 THEN lease_until_us ELSE NULL END, updated_at = $6 WHERE id = $8"
)


async def queue_notification(conn: Conn, customer_id: str, kind: str, at: datetime) -> bool:
    """Queue one, due at once; False (nothing written) when one of this kind already waits for them."""
    stamp = format_at(at)
    row = await conn.fetchrow(_QUEUE_SQL, customer_id, kind, to_us(at), stamp)
    return row is not None


async def claim_notifications(
    conn: Conn, now_us: int, lease_until_us: int, limit: int
) -> list[NotificationItem]:
    """Lease up to ``limit`` due ones, earliest first."""
    rows = await conn.fetch(_CLAIM_SQL, now_us, lease_until_us, limit if limit >= 0 else None)
    rows.sort(key=lambda r: (r[4], r[0]))  # RETURNING keeps no order
    return [NotificationItem(r[0], r[1], r[2], r[3], r[5]) for r in rows]


async def update_notifications(conn: Conn, updates: list[NotificationUpdate], at: datetime) -> None:
    if not updates:
        return
    stamp = format_at(at)
    await conn.executemany(
        _UPDATE_SQL,
        [
            (
                u.status,
                u.not_before_us,
                u.last_error,
                int(u.attempted),
                u.status == "sent",
                stamp,
                u.keep_lease,
                u.id,
            )
            for u in updates
        ],
    )
