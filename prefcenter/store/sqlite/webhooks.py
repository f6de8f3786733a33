"""Webhook subscriptions and deliveries on SQLite (migration 0017; :mod:`prefcenter.store.webhooks`).
Writes go through the one writer (``write()``), so a claim is atomic and a customer's head is claimed by
one deliverer at a time; reads are on the reader connection (committed data only)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prefcenter.domain.ledger import format_at
from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.rows import EVENT_COLUMNS, event_from_row
from prefcenter.store.webhooks import (
    DeliveryClaim,
    DeliveryRow,
    DeliveryUpdate,
    Webhook,
    encode_sources,
    webhook_from_row,
)

if TYPE_CHECKING:
    from prefcenter.store.sqlite.write import SqliteWriteTx

_WEBHOOK_COLUMNS = "id, url, secret, sources, created_at, updated_at"

_CLAIM_SQL = (
    "SELECT d.webhook_id, d.event_seq, d.attempts FROM webhook_deliveries d "
    "WHERE d.status = 'pending' AND d.not_before_us <= ? "
    "AND (d.lease_until_us IS NULL OR d.lease_until_us <= ?) "
    "AND NOT EXISTS (SELECT 1 FROM webhook_deliveries e WHERE e.status = 'pending' "
    "AND e.webhook_id = d.webhook_id AND e.customer_ref = d.customer_ref AND e.event_seq < d.event_seq) "
    "ORDER BY d.event_seq LIMIT ?"
)


def _claim_sync(
    conn: sqlite3.Connection, now_us: int, lease_until_us: int, limit: int
) -> list[DeliveryClaim]:
    claims = [DeliveryClaim(*row) for row in conn.execute(_CLAIM_SQL, (now_us, now_us, limit))]
    if claims:
        conn.executemany(
            "UPDATE webhook_deliveries SET lease_until_us = ? WHERE webhook_id = ? AND event_seq = ?",
            [(lease_until_us, c.webhook_id, c.event_seq) for c in claims],
        )
    return claims


def _update_sync(conn: sqlite3.Connection, updates: list[DeliveryUpdate], stamp: str) -> None:
    conn.executemany(
        "UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, "
        "not_before_us = coalesce(?, not_before_us), lease_until_us = NULL, last_status = ?, last_error = ?, "
        "delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END, updated_at = ? "
        "WHERE webhook_id = ? AND event_seq = ? AND status = 'pending'",
        [
            (
                u.status,
                u.not_before_us,
                u.last_status,
                u.last_error,
                u.status,
                stamp,
                stamp,
                u.webhook_id,
                u.event_seq,
            )
            for u in updates
        ],
    )


class SqliteWebhooks(SqliteReads):
    """The :class:`prefcenter.store.webhooks.WebhookStore` part of :class:`SqliteStore`."""

    def write(self) -> AbstractAsyncContextManager[SqliteWriteTx]:
        raise NotImplementedError  # SqliteStore's

    async def put_webhook(self, webhook: Webhook) -> bool:
        async with self.write() as tx:
            cur = await tx.conn.execute(
                "UPDATE webhooks SET url = ?, secret = ?, sources = ?, updated_at = ? WHERE id = ?",
                (
                    webhook.url,
                    webhook.secret,
                    encode_sources(webhook.sources),
                    webhook.updated_at,
                    webhook.webhook_id,
                ),
            )
            if cur.rowcount:
                return False
            await tx.conn.execute(
                f"INSERT INTO webhooks ({_WEBHOOK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    webhook.webhook_id,
                    webhook.url,
                    webhook.secret,
                    encode_sources(webhook.sources),
                    webhook.created_at,
                    webhook.updated_at,
                ),
            )
            return True

    async def get_webhook(self, webhook_id: str) -> Webhook | None:
        async with self.reader.execute(
            f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?", (webhook_id,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else webhook_from_row(row)

    async def list_webhooks(self) -> list[Webhook]:
        async with self.reader.execute(f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks ORDER BY id") as cur:
            return [webhook_from_row(row) for row in await cur.fetchall()]

    async def delete_webhook(self, webhook_id: str) -> bool:
        async with self.write() as tx:
            cur = await tx.conn.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
            return cur.rowcount > 0

    async def webhook_deliveries(self, webhook_id: str, after_seq: int, limit: int) -> list[DeliveryRow]:
        async with self.reader.execute(
            "SELECT event_seq, status, attempts, last_status, delivered_at FROM webhook_deliveries "
            "WHERE webhook_id = ? AND event_seq > ? ORDER BY event_seq LIMIT ?",
            (webhook_id, after_seq, limit),
        ) as cur:
            return [DeliveryRow(*row) for row in await cur.fetchall()]

    async def claim_deliveries(self, now_us: int, lease_until_us: int, limit: int) -> list[DeliveryClaim]:
        # An idle deliverer polls: ask the reader first, so an empty poll never queues for the writer.
        async with self.reader.execute(
            "SELECT 1 FROM webhook_deliveries WHERE status = 'pending' AND not_before_us <= ? LIMIT 1",
            (now_us,),
        ) as cur:
            if await cur.fetchone() is None:
                return []
        async with self.write() as tx:
            return await tx.conn.run(_claim_sync, now_us, lease_until_us, limit)

    async def update_deliveries(self, updates: list[DeliveryUpdate], at: datetime) -> None:
        if not updates:
            return
        async with self.write() as tx:
            await tx.conn.run(_update_sync, updates, format_at(at))

    async def events_by_seq(self, seqs: Iterable[int]) -> dict[int, dict[str, Any]]:
        wanted = sorted(set(seqs))
        out: dict[int, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):
            chunk = wanted[i : i + 500]
            async with self.reader.execute(
                f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq IN ({', '.join('?' * len(chunk))})",
                chunk,
            ) as cur:
                for row in await cur.fetchall():
                    event = event_from_row(row)
                    out[int(event["seq"])] = event
        return out

    async def delivery_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for status in ("pending", "failed"):  # a literal, so each is counted by its partial index
            async with self.reader.execute(
                f"SELECT count(*) FROM webhook_deliveries WHERE status = '{status}'"
            ) as cur:
                row = await cur.fetchone()
            counts[status] = int(row[0]) if row else 0
        return counts
