"""The webhook part of the storage interface (migration 0017): subscriptions, and the durable outbox of
deliveries that a trigger on ``consent_events`` fills in the event's own transaction (so every write path
feeds it, on both engines). :class:`WebhookStore` is part of :class:`prefcenter.store.base.Store`.

Claims follow guarantee 4 of :mod:`prefcenter.store.base` (a lease held by one deliverer at a time;
PostgreSQL: ``FOR UPDATE SKIP LOCKED``) and keep each customer's order across processes: only a
customer's head is claimable (no earlier ``pending`` row of the same subscription and customer), so a
later event never leaves while an earlier one is pending, in flight or waiting to be retried."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, Protocol

import msgspec

DeliveryStatus = Literal["pending", "delivered", "failed"]


class Webhook(msgspec.Struct, frozen=True):
    """One subscription. ``sources`` None: every event source."""

    webhook_id: str
    url: str
    secret: str
    sources: tuple[str, ...] | None
    created_at: str
    updated_at: str


class DeliveryClaim(msgspec.Struct, frozen=True):
    """One leased delivery: the event ``event_seq`` to subscription ``webhook_id``."""

    webhook_id: str
    event_seq: int
    attempts: int


class DeliveryUpdate(msgspec.Struct, frozen=True):
    """What one attempt did: ``status`` pending (to retry at ``not_before_us``), delivered or failed."""

    webhook_id: str
    event_seq: int
    status: DeliveryStatus
    not_before_us: int | None = None
    last_status: int | None = None
    last_error: str | None = None


class DeliveryRow(msgspec.Struct, frozen=True):
    """One line of a subscription's delivery log."""

    event_seq: int
    status: DeliveryStatus
    attempts: int
    last_status: int | None
    delivered_at: str | None


def encode_sources(sources: Iterable[str] | None) -> str | None:
    """The stored form the trigger matches: ``,a,b,`` (None: all)."""
    return None if sources is None else "," + ",".join(sorted(set(sources))) + ","


def decode_sources(stored: str | None) -> tuple[str, ...] | None:
    return None if stored is None else tuple(s for s in stored.split(",") if s)


def webhook_from_row(row: Any) -> Webhook:
    """(id, url, secret, sources, created_at, updated_at)."""
    return Webhook(row[0], row[1], row[2], decode_sources(row[3]), row[4], row[5])


class WebhookStore(Protocol):
    async def put_webhook(self, webhook: Webhook) -> bool:
        """Create or replace; True when created (a replaced one keeps its ``created_at`` and its
        deliveries)."""
        ...

    async def get_webhook(self, webhook_id: str) -> Webhook | None: ...
    async def list_webhooks(self) -> list[Webhook]: ...
    async def delete_webhook(self, webhook_id: str) -> bool:
        """Delete it and its deliveries (pending ones never leave); False when there was none."""
        ...

    async def webhook_deliveries(self, webhook_id: str, after_seq: int, limit: int) -> list[DeliveryRow]:
        """Its deliveries by event seq, after ``after_seq``."""
        ...

    async def claim_deliveries(self, now_us: int, lease_until_us: int, limit: int) -> list[DeliveryClaim]:
        """Lease up to ``limit`` due pending deliveries that are their customer's head, in seq order."""
        ...

    async def update_deliveries(self, updates: list[DeliveryUpdate], at: datetime) -> None:
        """Record attempts (each counts one); ends the lease. A row no longer pending is left alone."""
        ...

    async def events_by_seq(self, seqs: Iterable[int]) -> dict[int, dict[str, Any]]:
        """The stored events (as the JSONL export gives them) by seq."""
        ...

    async def delivery_counts(self) -> dict[str, int]:
        """Pending and failed deliveries, over every subscription."""
        ...
