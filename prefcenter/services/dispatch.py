"""The dispatcher: sends queued outbox messages from ``not_before`` on, no faster than the policy's rate.

A round, per channel (never holding a transaction open while a transport is waiting):

1. **claim** the due rows (``status`` queued/deferred, ``not_before <= now``, no live lease), at most
   about two seconds' worth of the channel's rate, by setting a lease, and commit;
2. then, a chunk at a time: take the chunk's tokens from the channel's bucket (``policy.rates``, burst
   one second's worth), and only then **re-gate** the chunk in one short transaction, so the re-gate is
   right before the hand-off (a re-gate that had to wait longer than ``stale_tokens_seconds`` takes the
   chunk's tokens again, so a stall never bunches more than rate + burst into a second). A deny (a
   withdrawal or suppression that landed meanwhile, ``expired``) stops the message (``withdrawn``, or
   ``suppressed`` when the reason is ``suppressed``) and releases its reservation; a defer moves
   ``not_before``; an allow reserves at that instant when the message has no reservation yet (a
   deferred one). Re-gate decisions that change something go to the decision log.
   Each hand-off is counted (``attempts``) in the same commit;
3. hand each message to the transport (bounded concurrency per transport, and a bound on messages
   re-gated but not yet handed off);
4. **mark** the outcomes, batched, at most ``flush_seconds`` after the transport answered: sent; retry
   later (exponential backoff with jitter, up to ``max_attempts``, then failed); for a permanent
   rejection of the recipient, suppress the address (ledger source ``bounce``) and release the
   reservation; for any other permanent failure, failed and release the reservation.

Delivery is at-least-once. A crash anywhere leaves the row queued with a lease; leases only expire
(guarantee 5 of ``store.base``): after ``lease`` (``PREFCENTER_DISPATCH_LEASE_SECONDS``) another
dispatcher, or this one restarted, claims the row again and sends it. SQLite has one dispatcher per
database (its ``flock``: a second one does not start), so a restarted one releases the dead one's leases
at once. PostgreSQL runs any number: claims skip rows another dispatcher holds (``FOR UPDATE SKIP
LOCKED``), nobody releases a live peer's work, and the channel buckets are one row per channel in the
database (``Maintenance.rate_bucket``), so the policy's rates are a ceiling for the whole deployment
either way. Only a crash between the server's 250 and the sent mark — at most ``flush_seconds`` plus one
commit — delivers a message twice, with the same Message-ID, and ``attempts`` counts it.

Each message's history (migration 0020, read by the trace: services/trace.py) is written in the same
transactions, in bulk per chunk or flush, and only while the row still holds the claim's lease: the
re-gate's ``withdrawn`` / ``suppressed`` / ``deferred`` and each ``handoff`` (attempt, channel: committed
before the transport is called), then the mark's server answer (``accepted`` with its code,
``temporary_failure`` / ``permanent_failure`` with the code and the redacted reply) and ``sent``,
``failed`` or ``suppressed``. Re-gate decision-log rows carry ``domain/explain.py``'s ``explain``.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from prefcenter.domain.explain import EXPLAINED_REASONS, explain_text
from prefcenter.domain.ledger import format_instant
from prefcenter.domain.model import CHANNELS, CampaignView, Decision
from prefcenter.domain.timewindows import from_us, to_us
from prefcenter.logging import Redactor
from prefcenter.messaging.email import Rendered, render
from prefcenter.messaging.ratelimit import TokenBucket
from prefcenter.messaging.transports import Outcome, Transport
from prefcenter.messaging.transports.smtp import SmtpTransport
from prefcenter.messaging.transports.webhook import WebhookTransport
from prefcenter.services.approvals import decide_recipients
from prefcenter.services.confirmations import claim_limit, send_confirmations
from prefcenter.services.links import mint_links
from prefcenter.services.retention import reservations_since
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import suppress
from prefcenter.store.base import (
    DecisionRow,
    GateInputs,
    NotificationItem,
    OutboxItem,
    OutboxUpdate,
    RateBucket,
    Reservation,
    StoreUnavailable,
)
from prefcenter.store.trace import MessageEvent

log = structlog.get_logger("prefcenter.dispatcher")
#: A server's reply often echoes the recipient (``550 5.1.1 <ola@example.pl>: no such user``). It is kept
#: as the message's last_error and as a bounce's ledger evidence (which outlives an erasure and goes to
#: webhook receivers), so addresses and phone numbers are redacted from it first.
_redact_reply = Redactor().redact
_REPLY_CODE = re.compile(r"^([2-5]\d\d)\b")


def _reply_code(reply: str) -> int | None:
    """The server's reply code at the start of a transport's detail (``550 5.1.1 ...``), if any."""
    found = _REPLY_CODE.match(reply)
    return int(found.group(1)) if found else None


def default_transports(rt: Runtime) -> dict[str, Transport]:
    webhook = WebhookTransport(rt.settings.webhook_url)
    transports: dict[str, Transport] = {ch: webhook for ch in CHANNELS}
    transports["email"] = SmtpTransport(rt.settings, rt.now)
    return transports


@dataclass(frozen=True)
class _Handed:
    """A message the transport has answered for, waiting for its mark."""

    item: OutboxItem
    message: Rendered
    outcome: Outcome
    answered_at: datetime  # when the transport answered: the history's server answer


@dataclass
class _Regated:
    ready: list[tuple[OutboxItem, Rendered]] = field(default_factory=list)
    upserts: list[tuple[str, str, Reservation]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    log_rows: list[DecisionRow] = field(default_factory=list)
    updates: list[OutboxUpdate] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)  # withdrawn / suppressed / deferred / failed
    history: list[MessageEvent] = field(default_factory=list)  # migration 0020, with the updates


@dataclass
class Dispatcher:
    rt: Runtime
    transports: dict[str, Transport]
    batch_size: int = 2000  # claimed per channel per round (and at most two seconds of its rate)
    chunk_size: int = 50  # re-gated together, right before they leave
    max_in_flight: int = 100  # re-gated but not yet answered for, per channel
    flush_seconds: float = 0.05  # how long an outcome may wait for its mark
    stale_tokens_seconds: float = 0.1  # a re-gate slower than this takes its chunk's tokens again
    lease: timedelta = timedelta(minutes=5)
    max_attempts: int = 8
    backoff_base: timedelta = timedelta(seconds=30)
    backoff_cap: timedelta = timedelta(hours=1)
    idle_seconds: float = 0.5
    jitter: Callable[[], float] = random.random
    bucket_factory: Callable[[float], TokenBucket] = TokenBucket
    after_send: Callable[[OutboxItem, Outcome], Awaitable[None]] | None = None  # a test hook
    _buckets: dict[str, RateBucket] = field(default_factory=dict)
    _rates: dict[str, float] = field(default_factory=dict)
    _pending: list[_Handed] = field(default_factory=list)
    _stop: asyncio.Event | None = None  # run()'s: once set, a round hands off no further chunk

    def bucket(self, channel: str) -> RateBucket:
        """The channel's bucket at the policy's rate, built again when the rate changes: the store's
        deployment-wide one where several dispatchers share the database (PostgreSQL), else this
        process's own."""
        assert self.rt.policy is not None
        rate = float(getattr(self.rt.policy.policy.rates, channel))
        bucket = self._buckets.get(channel)
        if bucket is None or self._rates.get(channel) != rate:
            shared = self.rt.store.maintenance.rate_bucket(channel, rate)
            bucket = self._buckets[channel] = shared or self.bucket_factory(rate)
            self._rates[channel] = rate
        return bucket

    def _count(self, channel: str, outcome: str, n: int = 1) -> None:
        self.rt.metrics.dispatched.labels(channel, outcome).inc(n)

    async def recover(self) -> int:
        """Release the leases of dispatchers the store can prove dead (SQLite: all, as the dispatcher
        lock is held; PostgreSQL: none, they expire: guarantee 5 of store.base)."""
        released = await self.rt.store.maintenance.release_dead_leases()
        if released:
            log.warning("released leases of an earlier dispatcher", messages=released)
        return released

    async def run_once(self) -> int:
        """Claim one round of due messages and process all of them; returns how many were claimed. The
        round starts with the due SMS opt-in confirmations (services/confirmations.py, COMPLIANCE 26)."""
        now = self.rt.now()
        now_us, lease_us = to_us(now), to_us(now + self.lease)
        claimed: dict[str, list[OutboxItem]] = {}
        sms = self.transports.get("sms")
        notes: list[NotificationItem] = []
        async with self.rt.store.write() as tx:  # one claim transaction a round, confirmations included
            if sms is not None:  # without an sms transport they wait
                notes = await tx.claim_notifications(now_us, lease_us, claim_limit(self.bucket("sms")))
            for channel in self.transports:
                limit = max(1, min(self.batch_size, math.ceil(2 * self.bucket(channel).rate)))
                items = await tx.claim_due(channel, now_us, lease_us, limit)
                if items:
                    claimed[channel] = items
        confirmations = 0
        if notes:
            assert sms is not None
            confirmations = await send_confirmations(
                self.rt,
                sms,
                self.bucket("sms"),
                notes,
                max_attempts=self.max_attempts,
                backoff=self._backoff,
                email=self.transports.get("email"),
            )
        if not claimed:
            return confirmations
        done = asyncio.Event()
        flusher = asyncio.create_task(self._flush_until(done))
        try:
            await asyncio.gather(*(self._channel(ch, items) for ch, items in claimed.items()))
        finally:
            done.set()  # never cancel a flush: a cancelled transaction is work thrown away
            await flusher
            await self._flush()
        return confirmations + sum(len(items) for items in claimed.values())

    async def run_until_idle(self, max_rounds: int = 1000) -> int:
        total = 0
        for _ in range(max_rounds):
            n = await self.run_once()
            if n == 0:
                break
            total += n
        return total

    async def run(self, stop: asyncio.Event) -> bool:
        """Loop until ``stop`` is set (graceful shutdown): the round in hand hands off no further chunk,
        waits for the messages already handed off and marks them; the rest of its claim stays queued
        (its leases expire, or the next start on SQLite releases them). Returns False at once, doing
        nothing, when the store allows one dispatcher and another holds it."""
        self._stop = stop
        if not await self.rt.store.maintenance.acquire_dispatcher():
            log.error("another dispatcher is running on this database; this one does not start")
            return False
        try:
            await self.recover()
            log.info("dispatcher started")
            while not stop.is_set():
                try:
                    n = await self.run_once()
                except Exception:
                    log.exception("dispatcher round failed; its leases expire and the messages are retried")
                    n = 0
                if n == 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.idle_seconds)
            log.info("dispatcher stopped")
            return True
        finally:
            await self.rt.store.maintenance.release_dispatcher()

    async def close(self) -> None:
        for transport in {id(t): t for t in self.transports.values()}.values():
            await transport.close()

    # -- one channel's round ----------------------------------------------------------------------

    async def _channel(self, channel: str, items: list[OutboxItem]) -> None:
        bucket = self.bucket(channel)
        size = max(1, min(self.chunk_size, int(bucket.capacity), self.max_in_flight))
        slots = asyncio.Semaphore(self.max_in_flight)
        tasks: list[asyncio.Task[None]] = []
        for start in range(0, len(items), size):
            if self._stop is not None and self._stop.is_set():
                break  # stopping: what is not handed off yet waits for the next start
            chunk = items[start : start + size]
            for _ in chunk:
                await slots.acquire()
            await bucket.acquire(len(chunk))  # tokens first: the re-gate is then right before the hand-off
            taken = time.monotonic()
            try:
                ready = await self._regate(chunk)
            except Exception as exc:
                ready = await self._regate_one_by_one(chunk, exc)
            if ready and time.monotonic() - taken > self.stale_tokens_seconds:
                # The re-gate waited (row locks behind busy gates): meanwhile the bucket refilled as if
                # these had gone, so sending now would put more than rate + burst into one second at the
                # receiver. Take their tokens again; they leave once the rate allows.
                await bucket.acquire(len(ready))
            for _ in range(len(chunk) - len(ready)):
                slots.release()
            tasks.extend(asyncio.create_task(self._deliver(item, message, slots)) for item, message in ready)
        await asyncio.gather(*tasks)

    async def _regate_one_by_one(
        self, chunk: list[OutboxItem], exc: Exception
    ) -> list[tuple[OutboxItem, Rendered]]:
        """The chunk's re-gate transaction failed and rolled back. One message's fault must stay that
        message's: each is re-gated alone, and one that still fails alone is failed with the reason
        (its reservation released), so the rest of the chunk goes out in this round. When the store
        itself cannot write (disk full, I/O), nothing is failed: the leases expire and the messages are
        tried again once it can."""
        if isinstance(exc, StoreUnavailable):
            log.error("re-gate failed: the store cannot write; the chunk is tried again", n=len(chunk))
            return []
        if len(chunk) > 1:
            log.warning(
                "re-gate of a chunk failed; re-gating its messages one by one",
                n=len(chunk),
                error=type(exc).__name__,
            )
        ready: list[tuple[OutboxItem, Rendered]] = []
        for item in chunk:
            if len(chunk) > 1:
                try:
                    ready.extend(await self._regate([item]))
                    continue
                except StoreUnavailable:
                    log.error("re-gate failed: the store cannot write; the message is tried again")
                    continue
                except Exception as own:
                    exc = own
            reason = f"re-gate: {type(exc).__name__}: {exc}"[:300]
            log.error("message failed at re-gate", campaign_id=item.campaign_id, error=type(exc).__name__)
            try:
                async with self.rt.store.write() as tx:
                    await tx.record_gate([], [(item.customer_id, item.campaign_id)], [])
                    failed = {"reason": f"re-gate: {type(exc).__name__}"}
                    at = format_instant(self.rt.now())
                    await tx.add_message_history(
                        [_event(item, at, "failed", failed)]  # the same transaction as the mark
                    )
                    await tx.update_outbox(
                        [
                            OutboxUpdate(
                                item.campaign_id,
                                item.customer_id,
                                "failed",
                                last_error=reason,
                                lease_until_us=item.lease_until_us,
                            )
                        ],
                        self.rt.now(),
                    )
            except Exception:
                log.exception("could not mark a message failed; its lease expires and it is tried again")
                continue
            self._count(item.channel, "failed")
        return ready

    async def _deliver(self, item: OutboxItem, message: Rendered, slots: asyncio.Semaphore) -> None:
        try:
            if message.channel != item.channel:  # the customer switched channel since queueing
                await self.bucket(message.channel).acquire()
            try:
                outcome = await self.transports[message.channel].send(message)
            except Exception as exc:  # a transport bug must not lose the message: retry it
                log.exception("transport raised", channel=message.channel)
                outcome = Outcome("retry", f"transport error: {type(exc).__name__}")
            if self.after_send is not None:
                await self.after_send(item, outcome)
            self._pending.append(_Handed(item, message, outcome, self.rt.now()))
        finally:
            slots.release()

    async def _regate(self, chunk: list[OutboxItem]) -> list[tuple[OutboxItem, Rendered]]:
        rt = self.rt
        now = rt.now()
        at = format_instant(now)
        result = _Regated()
        from_address, controller = rt.settings.smtp_from, rt.settings.controller  # once, not per message
        async with rt.store.write() as tx:
            views = await tx.campaign_views(sorted({i.campaign_id for i in chunk}))
            customers = await tx.get_customers([i.customer_id for i in chunk])
            by_campaign: dict[str, list[OutboxItem]] = {}
            for item in chunk:
                by_campaign.setdefault(item.campaign_id, []).append(item)
            for camp, group in by_campaign.items():
                view = views.get(camp)
                if view is None:  # pragma: no cover - outbox rows cascade with their campaign
                    continue
                campaign = await tx.get_campaign(camp)
                assert campaign is not None
                ids = [i.customer_id for i in group]
                inputs = await tx.gate_inputs(ids, view.topic, camp, reservations_since(rt.policy, now))
                decisions = decide_recipients(rt, view, ids, now, inputs)
                for item, decision in zip(group, decisions, strict=True):
                    held = camp in inputs.held.get(item.customer_id, {})
                    explained = _explain(rt, decision, item, inputs, view, now)
                    self._apply(result, item, decision, held, view, now, explained)
                    if decision.verdict != "allow":
                        continue
                    customer = customers[item.customer_id]
                    channel = decision.channel or item.channel
                    try:
                        message = render(
                            public_url_links=mint_links(rt, customer, view.topic),
                            campaign_id=camp,
                            campaign=campaign,
                            marketing=view.category == "marketing",
                            customer=customer,
                            channel=channel,
                            from_address=from_address,
                            controller=controller,
                        )
                    except Exception as exc:  # bad content cannot get better by retrying
                        result.upserts = [u for u in result.upserts if u[:2] != (item.customer_id, camp)]
                        if held:
                            result.deletes.append((item.customer_id, camp))
                        result.updates.append(
                            OutboxUpdate(
                                camp,
                                item.customer_id,
                                "failed",
                                last_error=f"render: {exc}"[:300],
                                lease_until_us=item.lease_until_us,
                            )
                        )
                        result.outcomes.append("failed")
                        result.history.append(_event(item, at, "failed", {"reason": "render"}))
                        continue
                    result.updates.append(
                        OutboxUpdate(
                            camp,
                            item.customer_id,
                            "queued",
                            channel=channel,
                            attempted=True,
                            keep_lease=True,
                            lease_until_us=item.lease_until_us,
                        )
                    )
                    result.ready.append((item, message))
                    handoff = {"attempt": item.attempts + 1, "channel": channel}
                    result.history.append(_event(item, at, "handoff", handoff))
            await tx.record_gate(result.upserts, result.deletes, result.log_rows)
            # the attempt's history before the transport is called, in the commit that counts it
            await tx.add_message_history(result.history)
            await tx.update_outbox(result.updates, now)
        for outcome, n in Counter(result.outcomes).items():
            self._count(chunk[0].channel, outcome, n)
        for row in result.log_rows:
            rt.metrics.decisions.labels(row[3], row[4]).inc()
        return result.ready

    def _apply(
        self,
        result: _Regated,
        item: OutboxItem,
        d: Decision,
        held: bool,
        view: CampaignView,
        now: datetime,
        explained: str | None = None,
    ) -> None:
        """The bookkeeping of one re-gate decision (the allow's rendering is the caller's)."""
        assert self.rt.policy is not None
        camp, cid = item.campaign_id, item.customer_id
        changes = d.verdict != "allow" or not held
        if changes:  # a decision that stops, moves or newly reserves the message is a real decision
            result.log_rows.append(
                (
                    cid,
                    camp,
                    format_instant(now),
                    d.verdict,
                    d.reason,
                    d.channel,
                    format_instant(d.not_before) if d.not_before else None,
                    self.rt.policy.version,
                    "regate",
                    explained,
                )
            )
        if d.verdict == "deny":
            if held:
                result.deletes.append((cid, camp))
            status = "suppressed" if d.reason == "suppressed" else "withdrawn"
            result.updates.append(
                OutboxUpdate(camp, cid, status, last_error=d.reason, lease_until_us=item.lease_until_us)
            )
            result.outcomes.append(status)
            result.history.append(_event(item, format_instant(now), status, {"reason": d.reason}))
            log.info(
                "message stopped at re-gate",
                campaign_id=camp,
                customer_ref=self.rt.pseudonyms.customer_ref(cid),
                reason=d.reason,
            )
        elif d.verdict == "defer":
            assert d.not_before is not None
            # deferred whether or not it holds a reservation (migration 0006: "no reservation yet unless a
            # retry made one"); a held one keeps it, and its allow at not_before reserves nothing more
            result.updates.append(
                OutboxUpdate(
                    camp,
                    cid,
                    "deferred",
                    not_before_us=to_us(d.not_before),
                    last_error=d.reason,
                    lease_until_us=item.lease_until_us,
                )
            )
            result.outcomes.append("deferred")
            deferred = {"reason": d.reason, "not_before": format_instant(d.not_before)}
            result.history.append(_event(item, format_instant(now), "deferred", deferred))
        elif not held:  # a deferred message now allowed reserves at this instant
            marketing = view.category == "marketing"
            result.upserts.append((cid, camp, Reservation(to_us(now), d.channel or item.channel, marketing)))

    # -- marks ------------------------------------------------------------------------------------

    def _backoff(self, attempts: int) -> timedelta:
        delay = self.backoff_base * (2 ** max(0, attempts - 1))
        delay = min(delay, self.backoff_cap)
        result: timedelta = delay * (0.5 + self.jitter() / 2)
        return result  # "equal jitter": between half and the full delay

    async def _flush_until(self, done: asyncio.Event) -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), timeout=self.flush_seconds)
            try:
                await self._flush()
            except Exception:
                log.exception("marking outcomes failed; retrying at the next flush")

    async def _flush(self) -> None:
        """Write the pending outcomes in one transaction (put back if it fails)."""
        handed, self._pending = self._pending, []
        if not handed:
            return
        rt = self.rt
        now = rt.now()
        at = format_instant(now)
        updates: list[OutboxUpdate] = []
        releases: list[tuple[str, str]] = []
        kinds: list[tuple[str, str]] = []
        history: list[MessageEvent] = []
        try:
            async with rt.store.write() as tx:
                for h in handed:
                    camp, cid, lease = h.item.campaign_id, h.item.customer_id, h.item.lease_until_us
                    kind: str = h.outcome.kind
                    detail = _redact_reply(h.outcome.detail)
                    attempts = h.item.attempts + 1
                    answered = format_instant(h.answered_at)
                    code = _reply_code(detail)
                    reply = {"attempt": attempts, "code": code, "reply": detail}
                    if kind == "sent":
                        if code is None and isinstance(self.transports.get(h.message.channel), SmtpTransport):
                            code = 250  # the SMTP transport is answered "sent" only by a 250 to DATA
                        history.append(
                            _event(h.item, answered, "accepted", {"attempt": attempts, "code": code})
                        )
                        history.append(_event(h.item, at, "sent", None))
                        updates.append(OutboxUpdate(camp, cid, "sent", sent=True, lease_until_us=lease))
                    elif kind == "retry" and attempts < self.max_attempts:
                        when = to_us(now + self._backoff(attempts))
                        retry = {**reply, "retry_at": format_instant(from_us(when))}
                        history.append(_event(h.item, answered, "temporary_failure", retry))
                        updates.append(
                            OutboxUpdate(
                                camp,
                                cid,
                                "queued",
                                not_before_us=when,
                                last_error=detail,
                                lease_until_us=lease,
                            )
                        )
                        kind = "retried"
                    elif kind == "bounce":
                        history.append(_event(h.item, answered, "permanent_failure", reply))
                        history.append(_event(h.item, at, "suppressed", {"reason": "bounce"}))
                        ref = rt.pseudonyms.address_ref(h.message.channel, h.message.address)
                        evidence = {"campaign_id": camp, "smtp": detail}
                        await suppress(tx, rt, h.message.channel, ref, "bounce", "bounce", evidence)
                        releases.append((cid, camp))
                        updates.append(
                            OutboxUpdate(camp, cid, "suppressed", last_error=detail, lease_until_us=lease)
                        )
                        kind = "bounced"
                    else:
                        if kind == "retry":  # out of attempts
                            history.append(_event(h.item, answered, "temporary_failure", reply))
                            failed = {"reason": "max_attempts"}
                        else:
                            history.append(_event(h.item, answered, "permanent_failure", reply))
                            failed = {"reason": "rejected"}
                        history.append(_event(h.item, at, "failed", failed))
                        releases.append((cid, camp))
                        updates.append(
                            OutboxUpdate(camp, cid, "failed", last_error=detail, lease_until_us=lease)
                        )
                        kind = "failed"
                    kinds.append((h.message.channel, kind))
                    if kind != "sent":
                        log.info("message not delivered", campaign_id=camp, outcome=kind, detail=detail)
                await tx.record_gate([], releases, [])
                await tx.add_message_history(history)  # before the marks release the leases it checks
                await tx.update_outbox(updates, now)
        except BaseException:
            self._pending[:0] = handed
            raise
        for (channel, kind), n in Counter(kinds).items():
            self._count(channel, kind, n)


def _explain(
    rt: Runtime, d: Decision, item: OutboxItem, inputs: GateInputs, view: CampaignView, now: datetime
) -> str | None:
    """The decision log's ``explain`` of a re-gate decision (domain/explain.py: only paused, quiet_hours
    and frequency_cap say more than the reason), from the inputs ``decide_recipients`` decided it with:
    the customer's other marketing reservations, and a retry when the message holds its own."""
    if d.reason not in EXPLAINED_REASONS:
        return None
    assert rt.policy is not None
    camp, held = item.campaign_id, inputs.held.get(item.customer_id, {})
    sends = [(from_us(r.at_us), r.channel) for c, r in held.items() if c != camp and r.marketing]
    state = inputs.states.get(item.customer_id)
    return explain_text(d, state, sends, view, now, rt.policy.policy, retry=camp in held)


def _event(item: OutboxItem, at: str, event: str, detail: Mapping[str, object] | None) -> MessageEvent:
    """A history row of this claimed message (written only while the row still holds the claim's lease)."""
    body = None if detail is None else dict(detail)
    return MessageEvent(item.campaign_id, item.customer_id, at, event, body, item.lease_until_us)
