"""The send-approval gate: API.md's decision table as pure functions of plain values.

No I/O, no clock, no asyncio: the caller passes the customer's state, the customer's other marketing
reservations (as ``(instant, channel)`` pairs: :data:`Send`), the campaign, the instant ``at`` and the
policy; the answer is a :class:`Decision`.

Rules (API.md "Send approval — the gate"; the first that fails decides; ``at >= send_by`` makes every
decision deny ``expired`` before any rule runs):

1. ``unknown_customer`` deny — no state (unknown or erased);
2. ``suppressed`` deny — the address of the channel the message would use is suppressed (for
   marketing also when it carries a marketing-only suppression, ``marketing_suppressed``);
3. ``no_channel`` deny — marketing, and the customer chose no channel;
4. ``channel_not_offered`` deny — the chosen channel is not among the campaign's channels;
5. ``no_address`` deny — no contact for that channel;
6. ``topic_not_subscribed`` deny — marketing topic not in the customer's topics;
6b. ``not_confirmed`` deny — marketing, the topic is a double opt-in one and the customer has not
   confirmed it yet (``CustomerState.confirmed`` false);
7. ``paused`` defer/deny — ``at < paused_until``;
8. ``quiet_hours`` defer/deny — local time at ``at`` is in the customer's quiet hours or outside the
   policy's window for the channel (after the overrides that apply, see :mod:`prefcenter.domain.policy`;
   a window may name weekdays and holidays, so the local date counts too). For sms, voice and whatsapp
   this must hold in the profile's zone AND in every zone of the number's place
   (``CustomerState.places``; COMPLIANCE item 22, edge 5: the called party's time);
9. ``frequency_cap`` defer/deny — one more send at ``at`` would put more than a cap's limit in some
   rolling window (policy caps and the customer's ``max_per_week`` over every channel's reservations,
   and the applicable overrides' per-channel caps over that channel's; marketing only);
10. ``allowed`` allow.

Channel on the decision: for marketing the customer's chosen one (None when they chose none); for
transactional topics the chosen one if offered with an unsuppressed contact, else the first offered
channel with an unsuppressed contact. A transactional ``suppressed`` deny names the channel whose
(suppressed) address would have been used: the chosen one if offered with a contact, else the first
offered one with a contact; a transactional ``no_address`` and ``unknown_customer``/``expired`` name none.
Transactional topics skip rules 3, 4, 6, 6b, 7 and 9; rule 8 applies as the policy's ``[transactional]`` says.

Deferral: when 7, 8 or 9 fails at ``at``, ``not_before`` is the earliest instant >= ``at`` at which 7, 8
and 9 all pass, found by alternating the constraints (the pause, rule 8 in each zone, each group of
caps) until none moves the candidate (each only moves it forward). The reason is the rule that failed
at ``at``. When that instant is at or after ``send_by``, or there is none within :data:`HORIZON`
(400 days) of ``at``, the verdict is deny with the same reason and no ``not_before`` (COMPLIANCE
edge 6: a window that never opens in time is a deny).

Caps: a send at ``s`` lies in the window ending at ``t`` when ``t - W < s <= t``; a candidate ``c`` is
acceptable when no window ending at any instant would hold more than the limit with ``c`` added,
counting reservations before and after ``at`` alike. For a cap (L, W) that is: no L other sends lie
together with ``c`` within a span shorter than W.

Inputs are trusted to be valid (the API validates them): aware datetimes, IANA zone names, windows with
start != end. An unknown zone or an empty quiet-hours window raises ``ValueError`` rather than guessing.
:func:`decide` is the plain, rule-by-rule reference; :func:`decide_batch` is the fast path used on the hot
path (per-zone local times computed once per batch, integer arithmetic) and must agree with it.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final

from prefcenter.domain.model import (
    CHANNELS,
    PHONE_CHANNELS,
    CampaignView,
    Channel,
    CustomerState,
    Decision,
    PhonePlace,
    Reason,
)
from prefcenter.domain.policy import LoadedPolicy, Policy
from prefcenter.domain.timewindows import (
    DAY_US,
    DailySchedule,
    Window,
    ZoneTimeline,
    first_allowed_in_all_us,
    from_us,
    schedule_for,
    to_us,
    zone_timeline,
)

# The gate's vocabulary (CustomerState, CampaignView, Decision, Reason, ...) lives in domain/model.py.
__all__ = [
    "HORIZON",
    "Send",
    "decide",
    "decide_batch",
    "longest_cap_window",
]

#: How far ahead a deferral is searched before the answer becomes a deny.
HORIZON: Final = timedelta(days=400)
_HORIZON_US: Final = HORIZON // timedelta(microseconds=1)
_WEEK_US: Final = 7 * DAY_US
# Searches stop here so that every result converts back to a datetime.
_MAX_US: Final = to_us(datetime(9998, 1, 1, tzinfo=UTC))
_NEVER: Final = _MAX_US + _HORIZON_US * 2


PolicyLike = Policy | LoadedPolicy
#: One of the customer's other marketing reservations: its instant and its channel (the channel counts
#: for the overrides' per-channel caps only).
Send = tuple[datetime, str]
_US: Final = timedelta(microseconds=1)


class _Rules:
    """A policy compiled for the engine (memoised per policy)."""

    __slots__ = (
        "_channel_caps",
        "_schedules",
        "cap_channels",
        "caps",
        "policy",
        "tx_quiet",
        "tx_windows",
        "widest_us",
        "windowed",
        "zero_cap",
    )

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.caps: tuple[tuple[int, int], ...] = tuple(
            (limit, window // _US) for limit, window in policy.cap_rules()
        )
        self.widest_us = max(max((w for _, w in self.caps), default=0), policy.longest_channel_cap() // _US)
        self.tx_quiet = policy.transactional.quiet_hours
        self.tx_windows = policy.transactional.windows
        windowed = {c for c in CHANNELS if policy.windows.get(c) is not None}
        capped: set[str] = set()
        zero = any(limit < 1 for limit, _ in self.caps)  # only a hand-built, unvalidated policy
        for override in policy.overrides:
            windowed.update(c for c in CHANNELS if override.windows.get(c) is not None)
            for c in CHANNELS:
                cap = override.caps.get(c)
                if cap is not None:
                    capped.add(c)
                    zero = zero or cap.limit < 1
        self.windowed: frozenset[str] = frozenset(windowed)
        self.cap_channels: frozenset[str] = frozenset(capped)
        self.zero_cap = zero
        self._schedules: dict[
            tuple[str, str, PhonePlace | None, tuple[str, str] | None, bool], DailySchedule | None
        ] = {}
        self._channel_caps: dict[tuple[str, str, PhonePlace | None], tuple[tuple[int, int], ...]] = {}

    def caps_for(self, customer: CustomerState) -> tuple[tuple[int, int], ...]:
        """The caps over all the customer's marketing reservations: the policy's and ``max_per_week``."""
        if customer.max_per_week is None:
            return self.caps
        return (*self.caps, (customer.max_per_week, _WEEK_US))

    def channel_caps(self, customer: CustomerState, channel: Channel) -> tuple[tuple[int, int], ...]:
        """The overrides' caps over the reservations on ``channel`` alone (usually none)."""
        if channel not in self.cap_channels:
            return ()
        place = _place(customer, channel)
        key = (channel, customer.country, place)
        caps = self._channel_caps.get(key)
        if caps is None:
            found = self.policy.channel_caps_for(channel, customer.country, place)
            caps = tuple((limit, window // _US) for limit, window in found)
            if len(self._channel_caps) > 100_000:
                self._channel_caps.clear()
            self._channel_caps[key] = caps
        return caps

    def schedule(self, customer: CustomerState, channel: Channel, marketing: bool) -> DailySchedule | None:
        """The allowed local times for rule 8, or None when every time is allowed."""
        places = customer.places
        place = places.get(channel) if places and channel in PHONE_CHANNELS else None  # _place, inlined
        key = (channel, customer.country, place, customer.quiet_hours, marketing)
        try:
            return self._schedules[key]
        except KeyError:
            pass
        use_windows = (marketing or self.tx_windows) and channel in self.windowed
        windows = self.policy.windows_for(channel, customer.country, place) if use_windows else ()
        quiet_hours = customer.quiet_hours
        use_quiet = quiet_hours is not None and (marketing or self.tx_quiet)
        quiet = _quiet_window(*quiet_hours) if quiet_hours is not None and use_quiet else None
        schedule = None if not windows and quiet is None else schedule_for(windows or None, quiet)
        if len(self._schedules) > 100_000:  # bounded memo: distinct settings are few in practice
            self._schedules.clear()
        self._schedules[key] = schedule
        return schedule


def _place(customer: CustomerState, channel: Channel) -> PhonePlace | None:
    """Where the number of a phone ``channel`` is registered (None for other channels or unknown)."""
    places = customer.places
    if not places or channel not in PHONE_CHANNELS:
        return None
    return places.get(channel)


def _zones(customer: CustomerState, channel: Channel) -> tuple[str, ...]:
    """The zones rule 8 must hold in: the profile's, then (phone channels) the number's other zones."""
    place = _place(customer, channel)
    zone = customer.timezone
    if place is None or not place.zones:
        return (zone,)
    return (zone, *[z for z in place.zones if z != zone])


@lru_cache(maxsize=64)
def _compile(policy: Policy) -> _Rules:
    return _Rules(policy)


def _rules(policy: PolicyLike) -> _Rules:
    return _compile(policy.policy if isinstance(policy, LoadedPolicy) else policy)


@lru_cache(maxsize=4096)
def _quiet_window(start: str, end: str) -> Window:
    return Window.from_bounds(start, end)


def longest_cap_window(policy: PolicyLike) -> timedelta:
    """The longest cap window (at least the 7 days of ``max_per_week``).

    The store should pass every reservation later than ``at - longest_cap_window`` (future ones all, as
    a deferral may move the candidate well past ``at``); older ones can never matter and may be pruned.
    """
    return timedelta(microseconds=max(_rules(policy).widest_us, _WEEK_US))


CapGroups = Sequence[tuple[Sequence[int], Sequence[tuple[int, int]]]]


# --- caps -------------------------------------------------------------------------------------------


def _cap_next(sends: Sequence[int], limit: int, window: int, c: int) -> int:
    """The first candidate >= c that cap (limit, window) accepts given the sorted ``sends``."""
    if limit < 1:
        return _NEVER
    if limit == 1:  # any other send closer than the window conflicts; hop past the latest such send
        while True:
            hi = bisect_left(sends, c + window)
            if hi == 0 or sends[hi - 1] <= c - window:
                return c
            c = sends[hi - 1] + window
    while True:
        lo = bisect_right(sends, c - window)
        hi = bisect_left(sends, c + window)
        if hi - lo < limit:
            return c
        nxt = c
        last = limit - 1
        for i in range(lo, hi - last):
            first, final = sends[i], sends[i + last]
            if (final if final > c else c) - (first if first < c else c) < window and first + window > nxt:
                nxt = first + window
        if nxt == c:
            return c
        c = nxt


def _caps_next(groups: CapGroups, c: int) -> int:
    """The first candidate >= c that every cap accepts; ``groups`` pairs sorted sends with the caps
    that count them (all reservations, or one channel's)."""
    while True:
        moved = False
        for sends, caps in groups:
            for limit, window in caps:
                n = _cap_next(sends, limit, window, c)
                if n != c:
                    c = n
                    moved = True
        if not moved or c >= _NEVER:
            return c


# --- rules 7-9 ----------------------------------------------------------------------------------------


def _earliest(
    at_us: int,
    limit_us: int,
    paused_us: int | None,
    schedule: DailySchedule | None,
    timelines: Sequence[ZoneTimeline],
    groups: CapGroups,
) -> int | None:
    """The earliest instant in [at_us, limit_us) at which rules 7, 8 and 9 all pass, or None."""
    c = at_us
    while True:
        start = c
        if paused_us is not None and c < paused_us:
            c = paused_us
        if c >= limit_us:
            return None
        if schedule is not None:
            found = first_allowed_in_all_us(schedule, timelines, c, limit_us)
            if found is None:
                return None
            c = found
        if groups:
            c = _caps_next(groups, c)
            if c >= limit_us:
                return None
        if c == start:
            return c


def _allowed_in_all(schedule: DailySchedule, timelines: Sequence[ZoneTimeline], at_us: int) -> bool:
    """Whether rule 8's schedule allows ``at_us`` in every zone."""
    return all(schedule.allows_local(at_us + t.offset_us(at_us)) for t in timelines)


def _timing(
    cid: str,
    customer: CustomerState,
    channel: Channel,
    marketing: bool,
    sends: Sequence[Send],
    at_us: int,
    send_by_us: int | None,
    rules: _Rules,
    retry: bool = False,
) -> Decision:
    """Rules 7, 8 and 9 (and the deferral search) for a customer who passed rules 1-6.

    ``retry``: the campaign already holds a reservation for this customer; rule 9 is not re-checked.
    """
    schedule = rules.schedule(customer, channel, marketing)
    timelines = [zone_timeline(z) for z in _zones(customer, channel)] if schedule is not None else []
    paused_until = customer.paused_until if marketing else None
    paused_us = None if paused_until is None else to_us(paused_until)
    groups: list[tuple[Sequence[int], Sequence[tuple[int, int]]]] = []
    if marketing and not retry:
        sends_us = [(to_us(s), c) for s, c in sends]
        caps = rules.caps_for(customer)
        if caps:
            groups.append((sorted([u for u, _ in sends_us]), caps))
        if channel in rules.cap_channels:
            own = rules.channel_caps(customer, channel)
            if own:
                groups.append((sorted([u for u, c in sends_us if c == channel]), own))

    reason: Reason
    if paused_us is not None and at_us < paused_us:
        reason = "paused"
    elif schedule is not None and not _allowed_in_all(schedule, timelines, at_us):
        reason = "quiet_hours"
    elif groups and _caps_next(groups, at_us) != at_us:
        reason = "frequency_cap"
    else:
        return Decision(cid, "allow", "allowed", channel, None)

    limit = min(at_us + _HORIZON_US, _MAX_US)
    if send_by_us is not None and send_by_us < limit:
        limit = send_by_us
    found = _earliest(at_us, limit, paused_us, schedule, timelines, groups)
    if found is None:
        return Decision(cid, "deny", reason, channel, None)
    return Decision(cid, "defer", reason, channel, from_us(found))


def _transactional_channel(
    customer: CustomerState, offered: Sequence[Channel]
) -> tuple[Channel | None, Reason | None]:
    """The channel a transactional message uses, or the deny reason (with the channel it names)."""
    addresses, suppressed = customer.addresses, customer.suppressed
    chosen = customer.channel
    if chosen is not None and chosen in offered and chosen in addresses and chosen not in suppressed:
        return chosen, None
    for channel in offered:
        if channel in addresses and channel not in suppressed:
            return channel, None
    if chosen is not None and chosen in offered and chosen in addresses:
        return chosen, "suppressed"
    for channel in offered:
        if channel in addresses:
            return channel, "suppressed"
    return None, "no_address"


def _unreadable(
    cid: str, customer: CustomerState, channel: Channel, marketing: bool, rules: _Rules
) -> Decision:
    """Fail closed for a customer whose stored state a rule cannot evaluate (a value written by hand or
    by an older version, e.g. quiet hours ``"21:00\\n"`` or an unknown zone): the rule that cannot be
    evaluated fails, with no instant at which it would pass, so the answer is a deny of that rule —
    ``paused`` for an unreadable pause, ``quiet_hours`` when the local time or the window cannot be
    computed, else ``frequency_cap``. Only
    this recipient is affected; the rest of the batch is decided as usual."""
    try:
        if marketing and customer.paused_until is not None:
            to_us(customer.paused_until)
    except Exception:
        return Decision(cid, "deny", "paused", channel, None)
    try:
        if rules.schedule(customer, channel, marketing) is not None:
            for zone in _zones(customer, channel):
                zone_timeline(zone)
    except Exception:
        return Decision(cid, "deny", "quiet_hours", channel, None)
    return Decision(cid, "deny", "frequency_cap", channel, None)


def decide(
    customer: CustomerState | None,
    sends: Sequence[Send],
    campaign: CampaignView,
    at: datetime,
    policy: PolicyLike,
    *,
    customer_id: str = "",
    retry: bool = False,
) -> Decision:
    """Decide one recipient (the reference implementation of the table).

    ``sends`` are the customer's OTHER marketing reservations as ``(instant, channel)`` pairs (all
    campaigns and channels, before or after ``at``; a retry excludes its own). ``customer_id`` names
    the decision when ``customer`` is None (unknown or erased).

    ``retry=True`` says this campaign already holds a reservation for the customer: API.md has a retry
    re-check rules 1-8 only (its reservation stays where it was and already satisfies the caps), so
    rule 9 is skipped. Without it, a retry at a new ``at`` could be capped by the customer's other
    reservations even though its own reservation is unchanged.
    """
    rules = _rules(policy)
    at_us = to_us(at)
    send_by_us = None if campaign.send_by is None else to_us(campaign.send_by)
    cid = customer.customer_id if customer is not None else customer_id
    if send_by_us is not None and at_us >= send_by_us:
        return Decision(cid, "deny", "expired", None, None)
    if customer is None:  # rule 1
        return Decision(cid, "deny", "unknown_customer", None, None)
    marketing = campaign.category == "marketing"
    if marketing:
        channel = customer.channel
        if channel is not None and (
            channel in customer.suppressed or channel in customer.marketing_suppressed
        ):  # rule 2
            return Decision(cid, "deny", "suppressed", channel, None)
        if channel is None:  # rule 3
            return Decision(cid, "deny", "no_channel", None, None)
        if channel not in campaign.channels:  # rule 4
            return Decision(cid, "deny", "channel_not_offered", channel, None)
        if channel not in customer.addresses:  # rule 5
            return Decision(cid, "deny", "no_address", channel, None)
        if not customer.subscribed:  # rule 6
            return Decision(cid, "deny", "topic_not_subscribed", channel, None)
        if not customer.confirmed:  # rule 6b (double opt-in)
            return Decision(cid, "deny", "not_confirmed", channel, None)
    else:
        picked, failure = _transactional_channel(customer, campaign.channels)  # rules 2 and 5
        if failure is not None or picked is None:
            return Decision(cid, "deny", failure or "no_address", picked, None)
        channel = picked
    return _timing(cid, customer, channel, marketing, sends, at_us, send_by_us, rules, retry)  # rules 7-10


def decide_batch(
    items: Iterable[tuple[str, CustomerState | None, Sequence[Send]]],
    campaign: CampaignView,
    at: datetime,
    policy: PolicyLike,
    *,
    retries: Container[str] = frozenset(),
) -> list[Decision]:
    """Decide many recipients of one campaign at one instant, in order; same answers as :func:`decide`.

    ``items`` are ``(customer_id, state or None, other reservations)``. Local times are computed once
    per zone per batch and rule 8 (with its deferral instant) once per (zone, channel, country, quiet
    hours, phone place); the common cases are a handful of comparisons: nothing paused, and either no
    reservations (then rule 8's cached answer decides) or too few reservations near ``at`` to reach any
    cap (a channel with a per-channel cap and reservations takes the full check).
    Anything else goes through the same rule 7-9 code as :func:`decide`.

    ``retries`` holds the ids whose reservation for this campaign already exists (``retry=True`` of
    :func:`decide`: rule 9 is not re-checked for them).
    """
    rules = _rules(policy)
    at_us = to_us(at)
    send_by_us = None if campaign.send_by is None else to_us(campaign.send_by)
    D = Decision
    if send_by_us is not None and at_us >= send_by_us:
        return [D(cid, "deny", "expired", None, None) for cid, _, _ in items]

    out: list[Decision] = []
    append = out.append
    offered = frozenset(campaign.channels)
    marketing = campaign.category == "marketing"
    windowed = rules.windowed
    limit_us = min(at_us + _HORIZON_US, _MAX_US)
    if send_by_us is not None and send_by_us < limit_us:
        limit_us = send_by_us
    locals_: dict[str, int] = {}  # zone -> local wall-clock microseconds at `at`
    # (zone, channel, country, quiet hours, place) -> None: rule 8 passes at `at`; else the instant it
    # first passes (a defer, when nothing else constrains) or False (it never does before the limit).
    rule8: dict[tuple[str, str, str, tuple[str, str] | None, PhonePlace | None], datetime | bool | None] = {}

    def local_at(zone: str) -> int:
        # The zone's memoised timeline (the offsets the reference's rule 8 uses), not ZoneInfo(zone):
        # ZoneInfo keeps only its 8 latest zones strongly, so with more zones among the recipients
        # each small batch re-read tzdata files (issue 14's profile of single-id approvals).
        local = locals_.get(zone)
        if local is None:
            local = locals_[zone] = at_us + zone_timeline(zone).offset_us(at_us)  # ValueError if unknown
        return local

    def rule8_at(
        customer: CustomerState,
        channel: Channel,
        key: tuple[str, str, str, tuple[str, str] | None, PhonePlace | None],
    ) -> datetime | bool | None:
        schedule = rules.schedule(customer, channel, marketing)
        result: datetime | bool | None = None
        if schedule is not None:
            zones = _zones(customer, channel)
            if not all(schedule.allows_local(local_at(zone)) for zone in zones):
                found = first_allowed_in_all_us(schedule, [zone_timeline(z) for z in zones], at_us, limit_us)
                result = False if found is None else from_us(found)
        rule8[key] = result
        return result

    if not marketing:
        needs_rule8 = rules.tx_quiet or rules.tx_windows
        for cid, customer, sends in items:
            if customer is None:
                append(D(cid, "deny", "unknown_customer", None, None))
                continue
            picked, failure = _transactional_channel(customer, campaign.channels)
            if failure is not None or picked is None:
                append(D(cid, "deny", failure or "no_address", picked, None))
            elif needs_rule8:
                try:
                    append(_timing(cid, customer, picked, False, sends, at_us, send_by_us, rules))
                except Exception:
                    append(_unreadable(cid, customer, picked, False, rules))
            else:
                append(D(cid, "allow", "allowed", picked, None))
        return out

    # Rule 9 pre-check, per cap: fewer than `limit` reservations within its window either side of
    # `at` means that cap cannot be reached (the full check runs otherwise).
    cap_bounds = [
        (limit, at - timedelta(microseconds=w), at + timedelta(microseconds=w)) for limit, w in rules.caps
    ]
    week = timedelta(microseconds=_WEEK_US)
    week_lo, week_hi = at - week, at + week
    zero_cap = rules.zero_cap  # only a hand-built, unvalidated policy
    cap_channels = rules.cap_channels

    for cid, customer, sends in items:
        if customer is None:
            append(D(cid, "deny", "unknown_customer", None, None))
            continue
        channel = customer.channel
        if channel is None:
            append(D(cid, "deny", "no_channel", None, None))
        elif channel in customer.suppressed or channel in customer.marketing_suppressed:
            append(D(cid, "deny", "suppressed", channel, None))
        elif channel not in offered:
            append(D(cid, "deny", "channel_not_offered", channel, None))
        elif channel not in customer.addresses:
            append(D(cid, "deny", "no_address", channel, None))
        elif not customer.subscribed:
            append(D(cid, "deny", "topic_not_subscribed", channel, None))
        elif not customer.confirmed:
            append(D(cid, "deny", "not_confirmed", channel, None))
        else:
            mark = len(out)
            try:
                paused = customer.paused_until
                cap = customer.max_per_week
                if retries and cid in retries:
                    append(_timing(cid, customer, channel, True, sends, at_us, send_by_us, rules, True))
                    continue
                if (paused is not None and at < paused) or zero_cap or (cap is not None and cap < 1):
                    append(_timing(cid, customer, channel, True, sends, at_us, send_by_us, rules))
                    continue
                r8: datetime | bool | None = None
                quiet = customer.quiet_hours
                if quiet is not None or channel in windowed:
                    places = customer.places
                    place = places.get(channel) if places and channel in PHONE_CHANNELS else None
                    key = (customer.timezone, channel, customer.country, quiet, place)
                    try:
                        r8 = rule8[key]
                    except KeyError:
                        r8 = rule8_at(customer, channel, key)
                if sends:
                    slow = r8 is not None or (
                        channel in cap_channels and bool(rules.channel_caps(customer, channel))
                    )
                    if not slow:  # each cap (the customer's own weekly one too) far from its limit?
                        bounds = cap_bounds if cap is None else [*cap_bounds, (cap, week_lo, week_hi)]
                        for limit, lo, hi in bounds:
                            near = 0
                            for s, _ in sends:
                                if lo < s < hi:
                                    near += 1
                            if near >= limit:
                                slow = True
                                break
                    if slow:
                        append(_timing(cid, customer, channel, True, sends, at_us, send_by_us, rules))
                    else:
                        append(D(cid, "allow", "allowed", channel, None))
                elif r8 is None:
                    append(D(cid, "allow", "allowed", channel, None))
                elif isinstance(r8, datetime):
                    append(D(cid, "defer", "quiet_hours", channel, r8))
                else:
                    append(D(cid, "deny", "quiet_hours", channel, None))
            except Exception:
                del out[mark:]
                append(_unreadable(cid, customer, channel, True, rules))
    return out
