"""Webhook subscriptions and deliveries on PostgreSQL (migration 0017; :mod:`prefcenter.store.webhooks`).

Subscriptions are written under the deployment-wide write lock (``write()``), so an event's trigger sees
a subscription either wholly or not at all. Claims and attempt records run in transactions of their own
(not under that lock: they touch only ``webhook_deliveries``): a claim leases rows with ``FOR UPDATE SKIP
LOCKED`` (several deliverer processes), and only a customer's head is claimable, so the order per
customer holds across processes (a head leased or locked by another keeps the later ones back)."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefcenter.domain.ledger import format_at
from prefcenter.store.postgres.reads import PgReads, reading
from prefcenter.store.postgres.rows import EVENT_COLUMNS, event_from_row
from prefcenter.store.webhooks import (
    DeliveryClaim,
    DeliveryRow,
    DeliveryUpdate,
    Webhook,
    encode_sources,
    webhook_from_row,
)

if TYPE_CHECKING:
    from prefcenter.store.postgres.write import PgWriteTx

_WEBHOOK_COLUMNS = "id, url, secret, sources, created_at, updated_at"

_CLAIM_SQL = (
    "WITH c AS (SELECT d.webhook_id, d.event_seq FROM webhook_deliveries d "
    "WHERE d.status = 'pending' AND d.not_before_us <= $1 "
    "AND (d.lease_until_us IS NULL OR d.lease_until_us <= $1) "
    "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' "
    "AND e.webhook_id = d.webhook_id AND e.customer_ref = d.customer_ref AND e.event_seq < d.event_seq) "
    "ORDER BY d.event_seq LIMIT $3 FOR UPDATE SKIP LOCKED) "
    "UPDATE webhook_deliveries w SET lease_until_us = $2 FROM c "
    "WHERE w.webhook_id = c.webhook_id AND w.event_seq = c.event_seq "
    "RETURNING w.webhook_id, w.event_seq, w.attempts"
)

_UPDATE_SQL = (
    "UPDATE webhook_deliveries SET status = $1, attempts = attempts + 1, "
    "not_before_us = coalesce($2, not_before_us), lease_until_us = NULL, last_status = $3, last_error = $4, "
    "delivered_at = CASE WHEN $1 = 'delivered' THEN $5 ELSE delivered_at END, updated_at = $5 "
    "WHERE webhook_id = $6 AND event_seq = $7 AND status = 'pending'"
)


class PgWebhooks(PgReads):
    """The :class:`prefcenter.store.webhooks.WebhookStore` part of :class:`PostgresStore`."""

    def write(self) -> AbstractAsyncContextManager[PgWriteTx]:
        raise NotImplementedError  # PostgresStore's

    async def put_webhook(self, webhook: Webhook) -> bool:
        async with self.write() as tx:
            done = await tx.conn.execute(
                "UPDATE webhooks SET url = $1, secret = $2, sources = $3, updated_at = $4 WHERE id = $5",
                webhook.url,
                webhook.secret,
                encode_sources(webhook.sources),
                webhook.updated_at,
                webhook.webhook_id,
            )
            if done != "UPDATE 0":
                return False
            await tx.conn.execute(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)",
                webhook.webhook_id,
                webhook.url,
                webhook.secret,
                encode_sources(webhook.sources),
                webhook.created_at,
                webhook.updated_at,
            )
            return True

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        with reading():
            row = await self.db.fetchrow(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1", webhook_id)
        return None if row is None else webhook_from_row(row)

    async def list_webhooks(self) -> list[Webhook]:
        with reading():
            rows = await self.db.fetch(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY id")
        return [webhook_from_row(row) for row in rows]

    async def delete_webhook(self, webhook_id: str) -> bool:
        async with self.write() as tx:
            done = await tx.conn.execute("DELETE FROM webhooks WHERE id = $1", webhook_id)
            return bool(done != "DELETE 0")

    async def webhook_deliveries(self, webhook_id: str, after_seq: int, limit: int) -> list[DeliveryRow]:
        with reading():
            rows = await self.db.fetch(
                "SELECT event_seq, status, attempts, last_status, delivered_at FROM webhook_deliveries "
                "WHERE webhook_id = $1 AND event_seq > $2 ORDER BY event_seq LIMIT $3",
                webhook_id,
                after_seq,
                limit,
            )
        return [DeliveryRow(*row) for row in rows]

    async def claim_deliveries(self, now_us: int, lease_until_us: int, limit: int) -> list[DeliveryClaim]:
        with reading():
            rows = await self.db.fetch(_CLAIM_SQL, now_us, lease_until_us, limit)
        return sorted((DeliveryClaim(*row) for row in rows), key=lambda c: c.event_seq)

    async def update_deliveries(self, updates: list[DeliveryUpdate], at: datetime) -> None:
        if not updates:
            return
        stamp = format_at(at)
        with reading():
            async with self.db.acquire() as conn, conn.transaction():
                await conn.executemany(
                    _UPDATE_SQL,
                    [
                        (
                            u.status,
                            u.not_before_us,
                            u.last_status,
                            u.last_error,
                            stamp,
                            u.webhook_id,
                            u.event_seq,
                        )
                        for u in updates
                    ],
                )

    async def events_by_seq(self, seqs: Iterable[int]) -> dict[int, dict[str, Any]]:
        with reading():
            rows = await self.db.fetch(
                f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq = ANY($1::bigint[])", sorted(set(seqs))
            )
        events = [event_from_row(row) for row in rows]
        return {int(e["seq"]): e for e in events}

    async def delivery_counts(self) -> dict[str, int]:
        with reading():
            pending = await self.db.fetchval(
                "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
            )
            failed = await self.db.fetchval("SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'")
        return {"pending": int(pending or 0), "failed": int(failed or 0)}
