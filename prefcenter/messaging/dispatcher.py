"""The dispatcher: sends queued outbox messages from ``not_before`` on, no faster than the policy's rate.

Per message (never holding a transaction open while a transport is waiting):

1. **claim** a batch of due rows (``status`` queued/deferred, ``not_before <= now``, no live lease) by
   setting a lease, and commit;
2. wait for a token of the channel's bucket (``policy.rates``, burst one second's worth);
3. **re-gate** in a short transaction right before the hand-off: deny (a withdrawal or suppression that
   landed meanwhile, ``expired``) stops the message (``withdrawn``, or ``suppressed`` when the reason is
   ``suppressed``) and releases the reservation; defer moves ``not_before``; allow reserves at that
   instant when the message has no reservation yet (a deferred one). The hand-off is counted
   (``attempts``) in the same commit;
4. hand it to the transport; 5. **mark** it sent, or retry later (exponential backoff with jitter, up to
   ``max_attempts``, then failed), or, for a permanent rejection of the recipient, suppress the address
   (ledger source ``bounce``) and release the reservation.

Delivery is at-least-once: a crash anywhere leaves the row queued with a lease that expires (and a
restarted dispatcher releases leases at start), so it is sent again; only a crash between the server's
250 and the sent mark (step 4-5) delivers twice, with the same Message-ID, and ``attempts`` counts it.
With SQLite run exactly one dispatcher per deployment (``serve`` or ``dispatch``): the rates are a
ceiling for the whole deployment and the bucket lives in that one process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from prefcenter.domain.policy import CHANNELS
from prefcenter.messaging.email import Rendered, render
from prefcenter.messaging.ratelimit import TokenBucket
from prefcenter.messaging.transports import Outcome, Transport
from prefcenter.messaging.transports.smtp import SmtpTransport
from prefcenter.messaging.transports.webhook import WebhookTransport
from prefcenter.services.approvals import decide_recipients, to_us
from prefcenter.services.links import mint_links
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import suppress
from prefcenter.store.base import OutboxItem, Reservation

log = structlog.get_logger("prefcenter.dispatcher")


def default_transports(rt: Runtime) -> dict[str, Transport]:
    webhook = WebhookTransport(rt.settings.webhook_url)
    transports: dict[str, Transport] = {ch: webhook for ch in CHANNELS}
    transports["email"] = SmtpTransport(rt.settings, rt.now)
    return transports


@dataclass
class Stats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    bounced: int = 0
    withdrawn: int = 0
    suppressed: int = 0
    deferred: int = 0


@dataclass
class Dispatcher:
    rt: Runtime
    transports: dict[str, Transport]
    batch_size: int = 500
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    idle_seconds: float = 0.5
    jitter: Callable[[], float] = random.random
    bucket_factory: Callable[[float], TokenBucket] = TokenBucket
    after_send: Callable[[OutboxItem, Outcome], Awaitable[None]] | None = None  # a test hook
    stats: Stats = field(default_factory=Stats)
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)
    _rates: dict[str, float] = field(default_factory=dict)

    def bucket(self, channel: str) -> TokenBucket:
        assert self.rt.policy is not None
        rate = float(self.rt.policy.policy.rates.get(channel))  # type: ignore[arg-type]
        bucket = self._buckets.get(channel)
        if bucket is None or self._rates.get(channel) != rate:
            bucket = self._buckets[channel] = self.bucket_factory(rate)
            self._rates[channel] = rate
        return bucket

    async def recover(self) -> int:
        """Release every lease (with SQLite there is one dispatcher: leases left are from a dead one)."""
        async with self.rt.store.write() as tx:
            released = await tx.release_leases()
        if released:
            log.warning("released leases of an earlier dispatcher", messages=released)
        return released

    async def run_once(self) -> int:
        """Claim one batch of due messages and process all of them; returns how many were claimed."""
        now = self.rt.now()
        async with self.rt.store.write() as tx:
            items = await tx.claim_due(to_us(now), to_us(now + self.lease), self.batch_size)
        if not items:
            return 0
        await asyncio.gather(*(self._process(item) for item in items))
        return len(items)

    async def run_until_idle(self, max_batches: int = 1000) -> int:
        total = 0
        for _ in range(max_batches):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until ``stop`` is set; finishes the batch in hand (graceful shutdown)."""
        await self.recover()
        log.info("dispatcher started")
        while not stop.is_set():
            try:
                n = await self.run_once()
            except Exception:
                log.exception("dispatcher batch failed; retrying")
                n = 0
            if n == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.idle_seconds)
        log.info("dispatcher stopped")

    async def close(self) -> None:
        for transport in {id(t): t for t in self.transports.values()}.values():
            await transport.close()

    # -- one message ------------------------------------------------------------------------------

    async def _process(self, item: OutboxItem) -> None:
        try:
            await self.bucket(item.channel).acquire()
            message = await self._regate(item)
            if message is None:
                return
            if message.channel != item.channel:
                await self.bucket(message.channel).acquire()
            transport = self.transports[message.channel]
            try:
                outcome = await transport.send(message)
            except Exception as exc:  # a transport bug must not lose the message: retry it
                log.exception("transport raised", channel=message.channel)
                outcome = Outcome("retry", f"transport error: {type(exc).__name__}")
            if self.after_send is not None:
                await self.after_send(item, outcome)
            await self._mark(item, message, outcome)
        except Exception:
            log.exception("processing a message failed; its lease will expire and it is tried again")

    async def _regate(self, item: OutboxItem) -> Rendered | None:
        rt = self.rt
        now = rt.now()
        camp, cid = item.campaign_id, item.customer_id
        async with rt.store.write() as tx:
            views = await tx.campaign_views([camp])
            view = views.get(camp)
            if view is None:  # pragma: no cover - outbox rows cascade with their campaign
                return None
            inputs = await tx.gate_inputs([cid], view.topic, camp)
            decision = decide_recipients(rt, view, [cid], now, inputs)[0]
            held = inputs.held.get(cid, {}).get(camp)
            if decision.verdict == "deny":
                if held is not None:
                    await tx.record_gate([], [(cid, camp)], [])
                status = "suppressed" if decision.reason == "suppressed" else "withdrawn"
                await tx.update_outbox(camp, cid, status=status, at=now, last_error=decision.reason)
                setattr(self.stats, status, getattr(self.stats, status) + 1)
                return None
            if decision.verdict == "defer":
                assert decision.not_before is not None
                await tx.update_outbox(
                    camp,
                    cid,
                    status="queued" if held else "deferred",
                    at=now,
                    not_before_us=to_us(decision.not_before),
                    last_error=decision.reason,
                )
                self.stats.deferred += 1
                return None
            channel = decision.channel or item.channel
            if held is None:
                marketing = view.category == "marketing"
                await tx.record_gate([(cid, camp, Reservation(to_us(now), channel, marketing))], [], [])
            customer = await tx.get_customer(cid)
            campaign = await tx.get_campaign(camp)
            assert customer is not None and campaign is not None
            try:
                message = render(
                    public_url_links=mint_links(rt, customer, view.topic),
                    campaign_id=camp,
                    campaign=campaign,
                    marketing=view.category == "marketing",
                    customer=customer,
                    channel=channel,
                    from_address=rt.settings.smtp_from,
                )
            except Exception as exc:  # bad content cannot get better by retrying
                await tx.record_gate([], [(cid, camp)], [])
                await tx.update_outbox(camp, cid, status="failed", at=now, last_error=f"render: {exc}"[:300])
                self.stats.failed += 1
                return None
            await tx.update_outbox(
                camp, cid, status="queued", at=now, channel=channel, attempted=True, keep_lease=True
            )
        return message

    def _backoff(self, attempts: int) -> timedelta:
        delay = self.backoff_base * (2 ** max(0, attempts - 1))
        delay = min(delay, self.backoff_cap)
        result: timedelta = delay * (0.5 + self.jitter() / 2)
        return result  # "equal jitter": between half and the full delay

    async def _mark(self, item: OutboxItem, message: Rendered, outcome: Outcome) -> None:
        rt = self.rt
        now = rt.now()
        camp, cid = item.campaign_id, item.customer_id
        attempts = item.attempts + 1
        async with rt.store.write() as tx:
            if outcome.kind == "sent":
                await tx.update_outbox(camp, cid, status="sent", at=now, sent=True)
                self.stats.sent += 1
            elif outcome.kind == "retry" and attempts < self.max_attempts:
                when = now + self._backoff(attempts)
                await tx.update_outbox(
                    camp, cid, status="queued", at=now, not_before_us=to_us(when), last_error=outcome.detail
                )
                self.stats.retried += 1
            elif outcome.kind == "bounce":
                ref = rt.pseudonyms.address_ref(message.channel, message.address)
                await suppress(
                    tx,
                    rt,
                    message.channel,
                    ref,
                    "bounce",
                    "bounce",
                    {"campaign_id": camp, "smtp": outcome.detail},
                )
                await tx.record_gate([], [(cid, camp)], [])
                await tx.update_outbox(camp, cid, status="suppressed", at=now, last_error=outcome.detail)
                self.stats.bounced += 1
            else:
                await tx.record_gate([], [(cid, camp)], [])
                await tx.update_outbox(camp, cid, status="failed", at=now, last_error=outcome.detail)
                self.stats.failed += 1
        log.debug(
            "message handled",
            campaign_id=camp,
            channel=message.channel,
            outcome=outcome.kind,
            detail=outcome.detail or None,
            attempts=attempts,
        )
