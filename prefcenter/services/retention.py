"""Retention (issue 14): the background pruner.

What goes, as the policy's ``[retention]`` says (policies/default.toml explains the defaults):

- **Reservations.** The gate never reads a marketing reservation older than the longest cap window
  ``W`` before ``at`` (:mod:`prefcenter.store.retention`): the longest of the caps over every channel
  (7 days in the shipped policy), or on a channel with a longer cap of its own, that cap's (voice: 30
  days). One is deleted when it is older than ``W + reservation_grace_days``, W being the longest a
  channel of its campaign has (so an email-only campaign's go after 14 days, not 37), AND its
  campaign ended more than ``reservation_grace_days`` ago (``send_by`` that far past). Then no
  decision can tell the difference: an approval whose ``at`` is at most the grace in the past reads
  only reservations later than ``at - W`` (on a channel of that campaign), newer than anything deleted;
  and every approval of that campaign is at or after its ``send_by`` (deny ``expired``, no rule runs),
  so its own reservation is never asked for. A campaign without an end keeps its
  reservations as its "already approved" memory (a re-approval reserves nothing more) for
  ``decisions_days``.
- **The decision log**: rows whose ``at`` is more than ``decisions_days`` ago.
- **Finished outbox rows** (sent, failed, withdrawn, suppressed) and their message history: those of
  a campaign that ended more than ``outbox_days`` ago and changed before then; a campaign without an
  end keeps them (a sent row is what stops a repeated send from going twice) for ``decisions_days``.
- **Never**: the consent ledger, the suppression list, customers, queued or deferred messages.

Each delete is one small transaction of at most ``batch`` rows, with a pause between them, so a gate
waits at most for one short delete. The pass is idempotent and can stop anywhere: what a stopped pass
left is deleted by the next one. At its end the store makes the space freed in the bounded tables
reusable (:meth:`prefcenter.store.retention.RetentionStore.reclaim`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from functools import lru_cache, partial

import msgspec
import structlog

from prefcenter.domain.ledger import format_at
from prefcenter.domain.model import CHANNELS
from prefcenter.domain.policy import LoadedPolicy, Policy
from prefcenter.domain.timewindows import to_us
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import Store
from prefcenter.store.retention import OUTBOX_TABLES, RESERVATION_TABLES, CampaignSpan, ReservationBound

log = structlog.get_logger("prefcenter.retention")

#: Rows per delete transaction.
BATCH = 1000
_US = timedelta(microseconds=1)


class PruneReport(msgspec.Struct):
    """What one pass deleted, how many transactions it took, and how long."""

    reservations: int = 0
    decisions: int = 0
    outbox: int = 0
    transactions: int = 0
    seconds: float = 0.0


class Cutoffs(msgspec.Struct, frozen=True):
    """The instants a pass at ``now`` prunes before (see the module docstring)."""

    #: an ended campaign's reservations made at or before this (µs) go, once it ended before ``ended``
    #: (``reservations_long_us`` for a campaign with a channel whose own cap is longer than the caps
    #: over every channel: voice's 30 days in the shipped policy)
    reservations_us: int
    reservations_long_us: int
    long_channels: frozenset[str]
    ended: datetime
    #: decision-log rows before this go; also the horizon of an open campaign's reservations and outbox
    decisions: datetime
    #: finished outbox rows of a campaign ended before this, last changed before it, go
    outbox: datetime


def cutoffs(policy: LoadedPolicy, now: datetime) -> Cutoffs:
    retention = policy.policy.retention
    grace = timedelta(days=retention.reservation_grace_days)
    every, long_channels, longest = _windows(policy.policy)
    return Cutoffs(
        reservations_us=to_us(now - grace) - every,
        reservations_long_us=to_us(now - grace) - longest,
        long_channels=frozenset(long_channels),
        ended=now - grace,
        decisions=now - timedelta(days=retention.decisions_days),
        outbox=now - timedelta(days=retention.outbox_days),
    )


@lru_cache(maxsize=16)
def _windows(policy: Policy) -> tuple[int, tuple[str, ...], int]:
    """The longest window of the caps over every channel (the policy's, and 7 days for a customer's
    own ``max_per_week``), the channels with a longer per-channel cap, and the longest of those (µs)."""
    week = timedelta(days=7)
    every = max(max((w for _, w in policy.cap_rules()), default=week), week)
    longer: dict[str, timedelta] = {}
    for override in policy.overrides:
        for channel in CHANNELS:
            cap = override.caps.get(channel)
            if cap is not None and timedelta(days=cap.days) > every:
                longer[channel] = max(longer.get(channel, every), timedelta(days=cap.days))
    longest = max(longer.values(), default=every)
    return every // _US, tuple(sorted(longer)), longest // _US


def reservations_since(policy: LoadedPolicy | None, at: datetime) -> ReservationBound | None:
    """The gate's bound for decisions at ``at`` or later (:class:`ReservationBound`): older marketing
    reservations cannot count (None, without a policy: every reservation)."""
    if policy is None:
        return None
    every, channels, longest = _windows(policy.policy)
    at_us = to_us(at)
    return ReservationBound(at_us - every, channels, at_us - longest)


def _instant(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _reservations_before(cut: Cutoffs, span: CampaignSpan, send_by: datetime | None) -> int:
    """The instant (µs) at or before which the campaign's reservations go: an open campaign's (or one
    ended within the grace) at ``decisions_days``, an ended one's past its channels' longest window."""
    if send_by is None or send_by >= cut.ended:
        return to_us(cut.decisions)
    if cut.long_channels.isdisjoint(msgspec.json.decode(span.channels)):
        return cut.reservations_us
    return cut.reservations_long_us


def _outbox_before(cut: Cutoffs, span: CampaignSpan, send_by: datetime | None) -> datetime | None:
    """Before when the campaign's finished outbox rows go (None: none of them yet): ``outbox_days``
    after its end, or ``decisions_days`` for a campaign without one (its memory of what was sent)."""
    if send_by is not None and send_by < cut.outbox:
        return cut.outbox
    if datetime.fromisoformat(span.created_at) < cut.decisions:
        return cut.decisions
    return None


async def prune(
    store: Store, policy: LoadedPolicy, now: datetime, *, batch: int = BATCH, pause: float = 0.0
) -> PruneReport:
    """One pruning pass as of ``now``; ``pause`` seconds between two delete transactions."""
    started = time.perf_counter()
    cut = cutoffs(policy, now)
    report = PruneReport()

    async def drain(delete: Callable[[int], Awaitable[int]]) -> int:
        total = 0
        while True:
            n = await delete(batch)
            report.transactions += 1
            total += n
            if n < batch:
                return total
            await asyncio.sleep(pause)

    # Only the campaigns that still hold rows are visited: after years of daily campaigns nearly every
    # one holds nothing, and a delete transaction each made a pass grow with their number.
    candidates = await store.prune_candidates()
    for span in await store.campaign_spans():
        camp, send_by = span.campaign_id, _instant(span.send_by)
        earliest = candidates.reserved_since_us.get(camp)
        if earliest is not None and earliest <= (at_us := _reservations_before(cut, span, send_by)):
            report.reservations += await drain(partial(store.prune_reservations, camp, at_us))
        before = _outbox_before(cut, span, send_by) if camp in candidates.queued else None
        if before is not None:
            report.outbox += await drain(partial(store.prune_outbox, camp, format_at(before)))
    report.decisions = await drain(partial(store.prune_decisions, format_at(cut.decisions)))
    # The bounded tables, where a pass deletes a large share of the rows: their space is made reusable
    # now. The decision log is left to autovacuum: a pass deletes a small share of it, and a vacuum
    # would scan each of its indexes whole.
    churned = [*(RESERVATION_TABLES if report.reservations else ())]
    churned += OUTBOX_TABLES if report.outbox else ()
    try:
        await store.reclaim(churned)
    except Exception:  # the deletes are done and counted; the space is reclaimed by a later vacuum
        log.warning("reclaiming the pruned space failed", tables=churned, exc_info=True)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


async def run(rt: Runtime, interval: float, stop: asyncio.Event | None = None) -> None:
    """Prune every ``interval`` seconds (the first pass a minute after start) until ``stop`` is set
    or the task is cancelled. A failed pass is logged and tried again at the next interval."""
    assert rt.policy is not None, "the pruner needs the policy"
    wait = min(60.0, interval)
    while True:
        try:
            if stop is None:
                await asyncio.sleep(wait)
            else:
                await asyncio.wait_for(stop.wait(), timeout=wait)
                return
        except TimeoutError:
            pass
        wait = interval
        try:
            report = await prune(rt.store, rt.policy, rt.now(), pause=0.005)
        except Exception:  # retried next interval; never takes the server down
            log.exception("pruning pass failed")
            continue
        if report.reservations or report.decisions or report.outbox:
            log.info("pruned", **msgspec.structs.asdict(report))
