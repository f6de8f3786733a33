"""Preference-change webhooks (API.md "Webhooks"): admin-managed subscriptions, and the
:class:`WebhookDeliverer` that POSTs every consent event to each matching subscription, signed as the
Standard Webhooks spec says (the ``standardwebhooks`` package signs).

The outbox is durable and complete by construction: a trigger on ``consent_events`` (migration 0017)
writes one ``webhook_deliveries`` row per matching subscription in the event's own transaction, whatever
wrote the event (page save, one-click, STOP, bounce, complaint, API, import, erasure). A row holds the
customer's pseudonym, never their id; the payload is built when it leaves, from the stored event, so an
event of a customer erased meanwhile goes out with the pseudonym only. Events hold no contact data (no
address, no number: the ledger keeps only preferences and their provenance), so payloads hold none.

Delivery (at-least-once, in seq order per customer and subscription; customers in parallel):

- a round claims due rows that are their customer's head (the store keeps that order across processes),
  leased for ``lease`` seconds, and sends them, at most ``concurrency`` in flight per subscription, on one
  keep-alive :class:`~prefcenter.services.webhook_client.WebhookClient` (``timeout`` seconds a request,
  redirects not followed);
- 2xx: ``delivered``. 408, 429, 5xx, a timeout or a network error: retried after an exponential backoff
  (``backoff_base`` * 2^(attempts-1), at most ``backoff_max``, +-20 % jitter) or the receiver's
  ``Retry-After`` (seconds or an HTTP date, bounded by ``backoff_max``); any other status (a 3xx, a
  4xx): ``failed`` at once (the receiver refused it: sending it again would not change that);
- a retried event older than ``give_up_seconds`` (``PREFCENTER_WEBHOOK_GIVE_UP_SECONDS``, default 24 h,
  counted from the event's ``at``) is ``failed`` after its last attempt (the last retry is scheduled at
  that moment at the latest); a failed event no longer holds back that customer's later ones;
- the same ``webhook-id`` (``evt_<event id>``) on every attempt at one event, so receivers can drop a
  duplicate (after a crash between the receiver's 2xx and its record).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

import msgspec
import structlog
from standardwebhooks import Webhook as Signer

from prefcenter.domain.ledger import SOURCES, Source, format_instant
from prefcenter.domain.model import FieldError, InvalidInput, check_topic_id
from prefcenter.domain.timewindows import to_us
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime, system_clock
from prefcenter.services.webhook_client import HttpError, HttpTimeout, WebhookClient
from prefcenter.store.webhooks import DeliveryClaim, DeliveryRow, DeliveryUpdate, Webhook

log = structlog.get_logger("prefcenter.webhooks")

MAX_URL_LENGTH = 2048
MIN_SECRET_BYTES = 24
MAX_SECRET_BYTES = 128
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_CURSOR = re.compile(r"[A-Za-z0-9_-]{1,32}")


class WebhookBody(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/webhooks/{webhook_id}``: where to POST, the signing secret (``whsec_`` + base64 of at
    least 24 bytes), and optionally which event sources (default: all)."""

    url: Annotated[
        str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH, examples=["https://crm.example/hooks"])
    ]
    secret: Annotated[
        str, msgspec.Meta(min_length=38, max_length=200, examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    ]
    sources: Annotated[list[Source], msgspec.Meta(min_length=1, max_length=len(SOURCES))] | None = None


class WebhookView(msgspec.Struct, frozen=True):
    """A subscription as ``GET`` answers it: never the secret. ``sources`` null: every source."""

    webhook_id: str
    url: str
    sources: list[str] | None
    created_at: str
    updated_at: str


class DeliveryView(msgspec.Struct, frozen=True):
    event_seq: int
    status: str
    attempts: int
    last_status: int | None
    delivered_at: str | None


class DeliveryPage(msgspec.Struct, frozen=True):
    deliveries: list[DeliveryView]
    next: str | None


# -- validation -------------------------------------------------------------------------------------


def check_webhook_id(webhook_id: str) -> None:
    check_topic_id(webhook_id, "webhook_id")  # the id grammar of topics and campaigns


def _check_url(url: str) -> list[FieldError]:
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        return [FieldError("url", "must not contain spaces, line breaks or control characters")]
    if not url.isascii():
        return [
            FieldError("url", "must be ASCII: give the host in its IDNA form and percent-encode the path")
        ]
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 (a bad port raises)
    except ValueError:
        return [FieldError("url", "not a valid URL")]
    if parts.scheme not in ("http", "https") or not host:
        return [FieldError("url", "must be an http:// or https:// URL with a host")]
    if parts.fragment:
        return [FieldError("url", "must not have a #fragment")]
    return []


def secret_bytes(secret: str) -> bytes | None:
    """The key of a ``whsec_<base64>`` secret, or None when it is not one."""
    if not secret.startswith("whsec_"):
        return None
    body = secret[len("whsec_") :]
    if not _BASE64.fullmatch(body):
        return None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_secret(secret: str) -> list[FieldError]:
    key = secret_bytes(secret)
    if key is None:
        return [FieldError("secret", "must be whsec_ followed by standard base64")]
    if not MIN_SECRET_BYTES <= len(key) <= MAX_SECRET_BYTES:
        return [FieldError("secret", f"must encode {MIN_SECRET_BYTES}-{MAX_SECRET_BYTES} bytes of key")]
    try:
        Signer(secret)
    except Exception:  # what the signing library itself refuses
        return [FieldError("secret", "not accepted by the Standard Webhooks library")]
    return []


def check_body(body: WebhookBody) -> None:
    problems = _check_url(body.url) + _check_secret(body.secret)
    if body.sources is not None and len(set(body.sources)) != len(body.sources):
        problems.append(FieldError("sources", "must not repeat a source"))
    if problems:
        raise InvalidInput(problems)


def view(webhook: Webhook) -> WebhookView:
    return WebhookView(
        webhook.webhook_id,
        webhook.url,
        None if webhook.sources is None else list(webhook.sources),
        webhook.created_at,
        webhook.updated_at,
    )


def _host(url: str) -> str:
    """What a log line may say about a URL: its host (never the path or query, which may carry a
    token)."""
    try:
        return urlsplit(url).hostname or "?"
    except ValueError:
        return "?"


# -- the subscription API ---------------------------------------------------------------------------


async def put_webhook(rt: Runtime, webhook_id: str, body: WebhookBody) -> tuple[bool, WebhookView]:
    """Create (True) or replace; events appended after the commit are delivered to it."""
    check_webhook_id(webhook_id)
    check_body(body)
    stamp = format_instant(rt.now())
    existing = await rt.store.get_webhook(webhook_id)
    sources = None if body.sources is None else tuple(sorted(set(body.sources)))
    webhook = Webhook(
        webhook_id, body.url, body.secret, sources, existing.created_at if existing else stamp, stamp
    )
    created = await rt.store.put_webhook(webhook)
    if created:
        webhook = msgspec.structs.replace(webhook, created_at=stamp)
    elif existing is None:  # created by another request meanwhile: read what is stored
        webhook = await rt.store.get_webhook(webhook_id) or webhook
    if urlsplit(body.url).scheme == "http" and rt.settings.env == "production":
        log.warning(
            "webhook URL is plain http: payloads and signatures travel unencrypted", webhook_id=webhook_id
        )
    log.info(
        "webhook stored",
        webhook_id=webhook_id,
        created=created,
        host=_host(body.url),
        sources=sources or "all",
    )
    return created, view(webhook)


async def get_webhook(rt: Runtime, webhook_id: str) -> WebhookView:
    check_webhook_id(webhook_id)
    webhook = await rt.store.get_webhook(webhook_id)
    if webhook is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    return view(webhook)


async def delete_webhook(rt: Runtime, webhook_id: str) -> None:
    check_webhook_id(webhook_id)
    if not await rt.store.delete_webhook(webhook_id):
        raise NotFound(f"no webhook {webhook_id!r}")
    log.info("webhook deleted; its pending deliveries with it", webhook_id=webhook_id)


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"wd1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    bad = InvalidInput([FieldError("after", "not a cursor this list gave")], "Malformed cursor.")
    if not _CURSOR.fullmatch(cursor):
        raise bad
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, ValueError):
        raise bad from None
    if not re.fullmatch(r"wd1:(0|[1-9][0-9]{0,17})", text):
        raise bad
    return int(text[4:])


async def list_deliveries(rt: Runtime, webhook_id: str, limit: int, after: str | None) -> DeliveryPage:
    check_webhook_id(webhook_id)
    if not 1 <= limit <= 1000:
        raise InvalidInput([FieldError("limit", "must be 1-1000")])
    after_seq = decode_cursor(after) if after is not None else 0
    if await rt.store.get_webhook(webhook_id) is None:
        raise NotFound(f"no webhook {webhook_id!r}")
    rows: list[DeliveryRow] = await rt.store.webhook_deliveries(webhook_id, after_seq, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        [DeliveryView(r.event_seq, r.status, r.attempts, r.last_status, r.delivered_at) for r in rows],
        encode_cursor(rows[-1].event_seq) if more and rows else None,
    )


# -- delivery ---------------------------------------------------------------------------------------


def payload(event: dict[str, Any], now: datetime) -> bytes:
    """The body of one attempt: the event exactly as the JSONL export encodes it."""
    return msgspec.json.encode({"type": "consent.event", "timestamp": format_instant(now), "data": event})


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """A ``Retry-After`` header (delta-seconds or an HTTP date) in seconds from now; None: absent or
    malformed."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - now).total_seconds())


def _event_at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00"))


class WebhookDeliverer:
    """Sends the webhook outbox; runs where the dispatcher runs (``serve`` unless ``--no-dispatcher``,
    and ``prefcenter dispatch``). ``start()`` / ``stop()``, or ``run(stop_event)`` / ``close()`` as
    :class:`prefcenter.services.dispatch.Dispatcher` has them; ``run_once()`` is one round."""

    def __init__(
        self,
        rt: Runtime,
        *,
        client: WebhookClient | None = None,
        concurrency: int = 32,
        batch: int = 512,
        timeout: float = 10.0,
        lease: timedelta = timedelta(seconds=60),
        idle_seconds: float = 0.05,
        backoff_base: float = 1.0,
        backoff_max: float = 3600.0,
        give_up_seconds: float | None = None,
        wall: Callable[[], datetime] = system_clock,
    ) -> None:
        self.rt = rt
        # The signature's time is the wall clock's (receivers check it against theirs); backoff and
        # give-up run on the runtime's clock, as the events' ``at`` do.
        self.wall = wall
        self.concurrency = concurrency
        self.batch = batch
        # A claim must outlive the slowest round it can be part of (every claim of one subscription
        # behind `concurrency` slots, each attempt up to `timeout`): else another deliverer re-claims a
        # head still being sent and sends that customer's next event before it.
        self.lease = max(lease, timedelta(seconds=-(-batch // concurrency) * timeout + 30))
        self.idle_seconds = idle_seconds
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.give_up_seconds = (
            give_up_seconds if give_up_seconds is not None else rt.settings.webhook_give_up_seconds
        )
        self._own_client = client is None
        self.client = client or WebhookClient(timeout=timeout, max_idle=4 * concurrency)
        self._signers: dict[str, Signer] = {}
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gauges_at = 0.0

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        """Run in the background until :meth:`stop`."""
        if self._task is None:
            self._stop = asyncio.Event()
            self._task = asyncio.create_task(self.run(self._stop))

    async def stop(self, wait_seconds: float = 15.0) -> None:
        """Finish the round in hand (its attempts recorded), then close the client. Past ``wait_seconds`` the
        round is cancelled: its leases expire and those events go again (at-least-once)."""
        if self._task is not None:
            self._stop.set()
            try:
                await asyncio.wait_for(self._task, timeout=wait_seconds)
            except TimeoutError:
                log.warning("webhook deliveries in flight did not finish; they go again after their lease")
            self._task = None
        await self.close()

    async def close(self) -> None:
        if self._own_client:
            await self.client.aclose()

    async def run(self, stop: asyncio.Event) -> None:
        log.info("webhook deliverer started")
        while not stop.is_set():
            try:
                n = await self.run_once()
            except Exception:
                log.exception("webhook round failed; its leases expire and the events go again")
                n = 0
            with contextlib.suppress(Exception):
                await self._refresh_gauges()
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.idle_seconds)
        log.info("webhook deliverer stopped")

    async def _refresh_gauges(self, every: float = 5.0) -> None:
        if time.monotonic() - self._gauges_at < every:
            return
        self._gauges_at = time.monotonic()
        counts = await self.rt.store.delivery_counts()
        self.rt.metrics.webhook_pending.set(counts.get("pending", 0))
        self.rt.metrics.webhook_failed.set(counts.get("failed", 0))

    # -- one round --------------------------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim a batch of heads, send them, record every attempt; the number attempted."""
        now = self.rt.now()
        claims = await self.rt.store.claim_deliveries(to_us(now), to_us(now + self.lease), self.batch)
        if not claims:
            return 0
        webhooks = {w.webhook_id: w for w in await self.rt.store.list_webhooks()}
        events = await self.rt.store.events_by_seq(c.event_seq for c in claims)
        slots: dict[str, asyncio.Semaphore] = {}
        results = await asyncio.gather(
            *(self._deliver(c, webhooks.get(c.webhook_id), events.get(c.event_seq), slots) for c in claims)
        )
        updates = [u for u in results if u is not None]
        await self.rt.store.update_deliveries(updates, self.rt.now())
        outcomes = Counter("retried" if u.status == "pending" else u.status for u in updates)
        for outcome, n in outcomes.items():
            self.rt.metrics.webhook_deliveries.labels(outcome).inc(n)
        return len(claims)

    def _signer(self, secret: str) -> Signer:
        signer = self._signers.get(secret)
        if signer is None:
            if len(self._signers) > 1000:
                self._signers.clear()
            signer = self._signers[secret] = Signer(secret)
        return signer

    async def _deliver(
        self,
        claim: DeliveryClaim,
        webhook: Webhook | None,
        event: dict[str, Any] | None,
        slots: dict[str, asyncio.Semaphore],
    ) -> DeliveryUpdate | None:
        """One attempt; its record (None: the subscription is gone, and its rows with it). A fault here
        (a stored value that cannot be sent) fails this delivery only."""
        if webhook is None:
            return None
        if event is None:
            return self._failed(claim, None, "the event is not in the ledger")
        slot = slots.get(webhook.webhook_id)
        if slot is None:
            slot = slots[webhook.webhook_id] = asyncio.Semaphore(self.concurrency)
        async with slot:
            now = self.wall()
            try:
                body = payload(event, now)
                msg_id = f"evt_{event['id']}"
                headers = {
                    "webhook-id": msg_id,
                    "webhook-timestamp": str(int(now.timestamp())),
                    "webhook-signature": self._signer(webhook.secret).sign(msg_id, now, body.decode()),
                }
            except Exception as exc:
                log.error(
                    "webhook payload could not be built", webhook_id=webhook.webhook_id, seq=claim.event_seq
                )
                return self._failed(claim, None, f"payload: {type(exc).__name__}")
            try:
                code, answer = await self.client.post(webhook.url, body, headers)
            except HttpTimeout:
                return self._retry(claim, event, None, "timeout", None)
            except HttpError as exc:
                return self._retry(claim, event, None, f"network: {exc}", None)
            except Exception as exc:  # a fault of this one attempt never loses the round's other records
                log.error(
                    "webhook attempt failed",
                    webhook_id=claim.webhook_id,
                    seq=claim.event_seq,
                    error=type(exc).__name__,
                )
                return self._retry(claim, event, None, f"client: {type(exc).__name__}", None)
        if 200 <= code < 300:
            return DeliveryUpdate(claim.webhook_id, claim.event_seq, "delivered", last_status=code)
        if code in (408, 429) or code >= 500:
            wait = retry_after_seconds(answer.get("retry-after"), self.rt.now())
            return self._retry(claim, event, code, f"HTTP {code}", wait)
        log.warning(
            "webhook receiver refused an event; not retried",
            webhook_id=claim.webhook_id,
            seq=claim.event_seq,
            status=code,
        )
        return self._failed(claim, code, f"HTTP {code}: refused, not retried")

    def _failed(self, claim: DeliveryClaim, code: int | None, error: str) -> DeliveryUpdate:
        return DeliveryUpdate(claim.webhook_id, claim.event_seq, "failed", last_status=code, last_error=error)

    def _retry(
        self, claim: DeliveryClaim, event: dict[str, Any], code: int | None, error: str, wait: float | None
    ) -> DeliveryUpdate:
        now = self.rt.now()
        try:
            give_up_at = _event_at(event) + timedelta(seconds=self.give_up_seconds)
        except (KeyError, TypeError, ValueError):
            give_up_at = now
        if now >= give_up_at:
            log.warning(
                "webhook delivery given up",
                webhook_id=claim.webhook_id,
                seq=claim.event_seq,
                attempts=claim.attempts + 1,
                error=error,
            )
            return self._failed(claim, code, f"given up after {self.give_up_seconds:g} s: {error}")
        if wait is None:
            backoff = min(self.backoff_max, self.backoff_base * 2 ** min(claim.attempts, 40))
            wait = backoff * random.uniform(0.8, 1.2)  # noqa: S311 (jitter)
        wait = min(max(wait, 0.0), self.backoff_max)
        retry_at = min(now + timedelta(seconds=wait), give_up_at)
        return DeliveryUpdate(
            claim.webhook_id,
            claim.event_seq,
            "pending",
            not_before_us=to_us(retry_at),
            last_status=code,
            last_error=error,
        )
