"""Hypothesis properties of the gate (DESIGN.md quality bars; API.md "Send approval — the gate").

1. Quiet hours and channel windows, in 40 IANA zones over 2020-2030, DST changes included: an allow is
   never inside the blocked local times; a defer's not_before is allowed and is the FIRST allowed instant
   (checked against zoneinfo directly, not against the engine's own zone tables).
2. Under any order of approvals, each allow reserving its `at`, no rolling window of any cap ever holds
   more than its limit; a cap deferral is the first instant the caps allow.
3. Determinism, and a retry that excludes its own reservation is allowed again.
4. decide_batch agrees with decide for every recipient (phone places with several zones, France's
   weekday/holiday window and voice cap, window tables, marketing-only suppressions included).
5. The called party's time (COMPLIANCE item 22, edge 5, item 31): with a phone number in other zones,
   an allow is allowed in every zone, a defer's not_before is the FIRST instant allowed in all of
   them, weekdays and holidays checked with zoneinfo and the holidays package directly.

Strategies are written by hand: hypothesis' from_type ignores msgspec constraints (DESIGN.md pitfalls).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import holidays
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefcenter.domain.engine import Send, decide, decide_batch
from prefcenter.domain.model import CampaignView, Category, Channel, CustomerState, Decision, PhonePlace
from prefcenter.domain.phones import place_of
from prefcenter.domain.policy import LoadedPolicy, Policy, load_policy, parse_policy
from prefcenter.domain.timewindows import WeekWindow

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BYTES = (ROOT / "policies" / "default.toml").read_bytes()
POLICY = load_policy(DEFAULT_BYTES, "policies/default.toml")

ZONES = [
    "Europe/Warsaw", "Europe/Bucharest", "Europe/Athens", "Europe/London", "Europe/Dublin",
    "Europe/Lisbon", "Europe/Berlin", "Europe/Kyiv", "Europe/Istanbul", "Europe/Moscow",
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles", "America/Phoenix",
    "America/St_Johns", "America/Havana", "America/Santiago", "America/Sao_Paulo", "America/Asuncion",
    "America/Nuuk", "America/Mexico_City", "Asia/Tehran", "Asia/Kolkata", "Asia/Kathmandu",
    "Asia/Tokyo", "Asia/Gaza", "Asia/Beirut", "Asia/Jerusalem", "Asia/Amman",
    "Australia/Sydney", "Australia/Adelaide", "Australia/Lord_Howe", "Australia/Eucla", "Pacific/Auckland",
    "Pacific/Chatham", "Pacific/Apia", "Africa/Casablanca", "Africa/Cairo", "Antarctica/Troll",
]  # fmt: skip
COUNTRIES = ["PL", "RO", "GR", "DE", "US", "GB", "IR", "AU"]
# the customers of properties 3-5 may also be French (France's voice rule and cap)
ALL_COUNTRIES = [*COUNTRIES, "FR"]
NUMBERS = ["+12135550199", "+13055550123", "+33612345678", "+48600100200", "+61412345678", "+18005550100"]
CHANNELS: list[Channel] = ["email", "sms", "push", "voice", "whatsapp"]
START = datetime(2020, 1, 1, tzinfo=UTC)
END = datetime(2030, 12, 31, tzinfo=UTC)
US = timedelta(microseconds=1)
SECOND = timedelta(seconds=1)
MINUTE = timedelta(minutes=1)

PROPERTY_SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- independent oracle (zoneinfo directly) -----------------------------------------------------------


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def in_window(start: int, end: int, local: datetime) -> bool:
    """Half-open [start, end) in minutes, crossing midnight when start > end, at a local wall time."""
    t = (local.hour * 60 + local.minute) * 60_000_000 + local.second * 1_000_000 + local.microsecond
    s, e = start * 60_000_000, end * 60_000_000
    return s <= t < e if s < e else (t >= s or t < e)


def window_minutes(policy: Policy, channel: Channel, country: str) -> tuple[int, int] | None:
    text = policy.windows.get(channel)
    for override in policy.overrides:
        if country in override.countries and override.windows.get(channel) is not None:
            text = override.windows.get(channel)
    if text is None:
        return None
    assert isinstance(text, str)  # COUNTRIES' overrides are plain daily windows
    a, b = text.split("-")
    return int(a[:2]) * 60 + int(a[3:]), int(b[:2]) * 60 + int(b[3:])


def allowed_at(
    instant: datetime, zone: str, quiet: tuple[int, int] | None, window: tuple[int, int] | None
) -> bool:
    local = instant.astimezone(ZoneInfo(zone))
    if quiet is not None and in_window(quiet[0], quiet[1], local):
        return False
    return window is None or in_window(window[0], window[1], local)


def allowed_minutes_exist(quiet: tuple[int, int] | None, window: tuple[int, int] | None) -> bool:
    for m in range(1440):
        local = datetime(2000, 1, 1, m // 60, m % 60)
        if (quiet is None or not in_window(*quiet, local)) and (window is None or in_window(*window, local)):
            return True
    return False


def blocked_throughout(start: datetime, stop: datetime, zone: str, quiet: Any, window: Any) -> bool:
    """Every instant in [start, stop) is blocked. Offsets and windows are whole minutes in 2020-2030, so
    the status is constant on each UTC minute: checking `start` and every minute boundary suffices."""
    if not start < stop:
        return True
    if allowed_at(start, zone, quiet, window):
        return False
    m = start.replace(second=0, microsecond=0) + MINUTE
    while m < stop:
        if allowed_at(m, zone, quiet, window):
            return False
        m += MINUTE
    return True


@cache
def transition_days(zone: str) -> tuple[datetime, ...]:
    """UTC midnights of days (2020-2030) on which the zone's offset changes, found with zoneinfo."""
    info = ZoneInfo(zone)
    days = []
    day = START
    previous = day.astimezone(info).utcoffset()
    while day < END:
        nxt = day + timedelta(days=1)
        offset = nxt.astimezone(info).utcoffset()
        if offset != previous:
            days.append(day)
        previous = offset
        day = nxt
    return tuple(days)


# --- strategies ---------------------------------------------------------------------------------------


@st.composite
def instants(draw: st.DrawFn, zone: str | None = None) -> datetime:
    """Anywhere in 2020-2030 with microseconds, or (half the time) within a day and a half of a DST change."""
    if zone is not None and transition_days(zone) and draw(st.booleans()):
        day = draw(st.sampled_from(transition_days(zone)))
        return day + timedelta(microseconds=draw(st.integers(-12 * 3600 * 10**6, 36 * 3600 * 10**6)))
    span = int((END - START) / US)
    instant = START + timedelta(microseconds=draw(st.integers(0, span)))
    if draw(st.booleans()):  # on a round minute, where window edges are
        instant = instant.replace(second=0, microsecond=0)
    return instant


def quiet_hours() -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(0, 1439), st.integers(0, 1439)).filter(lambda q: q[0] != q[1])


def state(
    zone: str,
    country: str,
    channel: Channel | None,
    quiet: tuple[int, int] | None,
    *,
    customer_id: str = "c",
    addresses: frozenset[Channel] | None = None,
    suppressed: frozenset[Channel] = frozenset(),
    subscribed: bool = True,
    max_per_week: int | None = None,
    paused_until: datetime | None = None,
    marketing_suppressed: frozenset[Channel] = frozenset(),
    places: dict[str, PhonePlace] | None = None,
    confirmed: bool = True,
) -> CustomerState:
    return CustomerState(
        customer_id=customer_id,
        timezone=zone,
        country=country,
        channel=channel,
        addresses=frozenset(CHANNELS) if addresses is None else addresses,
        suppressed=suppressed,
        subscribed=subscribed,
        quiet_hours=None if quiet is None else (hhmm(quiet[0]), hhmm(quiet[1])),
        max_per_week=max_per_week,
        paused_until=paused_until,
        marketing_suppressed=marketing_suppressed,
        places=places or {},
        confirmed=confirmed,
    )


@st.composite
def phone_places(draw: st.DrawFn) -> PhonePlace:
    """A real number's place, or a made-up one (0-2 zones, a country, maybe US-FL)."""
    if draw(st.booleans()):
        return place_of(draw(st.sampled_from(NUMBERS)))
    zones = tuple(draw(st.lists(st.sampled_from([*ZONES, "Europe/Paris"]), max_size=2, unique=True)))
    country = draw(st.none() | st.sampled_from(ALL_COUNTRIES))
    region = draw(st.none() | st.just("US-FL"))
    return PhonePlace(zones=zones, country=country, region=region)


def marketing(
    channels: tuple[Channel, ...] = tuple(CHANNELS), send_by: datetime | None = None
) -> CampaignView:
    return CampaignView("camp", "promotions", "marketing", channels, send_by)


# --- 1. quiet hours and windows in many zones ----------------------------------------------------------


@PROPERTY_SETTINGS
@given(data=st.data())
def test_allow_is_never_inside_and_defer_is_the_first_allowed_instant(data: st.DataObject) -> None:
    """COMPLIANCE edge cases 1-3 and 6, item 22; API.md rule 8, "Deferral" and "Local time"."""
    zone = data.draw(st.sampled_from(ZONES), label="zone")
    quiet = data.draw(quiet_hours(), label="quiet")
    channel: Channel = data.draw(st.sampled_from(["email", "sms", "voice"]), label="channel")
    country = data.draw(st.sampled_from(COUNTRIES), label="country")
    at = data.draw(instants(zone), label="at")
    send_by = data.draw(
        st.none() | st.integers(1, 3 * 86400).map(lambda s: at + timedelta(seconds=s)), label="send_by"
    )
    window = window_minutes(POLICY.policy, channel, country)

    decision = decide(state(zone, country, channel, quiet), [], marketing(send_by=send_by), at, POLICY)

    if decision.verdict == "allow":
        assert allowed_at(at, zone, quiet, window)
        return
    assert decision.reason == "quiet_hours"
    assert not allowed_at(at, zone, quiet, window)
    if decision.verdict == "defer":
        nb = decision.not_before
        assert nb is not None and nb.tzinfo is UTC
        assert at <= nb and (send_by is None or nb < send_by)
        assert allowed_at(nb, zone, quiet, window), (nb, nb.astimezone(ZoneInfo(zone)))
        assert not allowed_at(nb - US, zone, quiet, window)
        if nb - SECOND >= at:
            assert not allowed_at(nb - SECOND, zone, quiet, window)
        assert blocked_throughout(at, nb, zone, quiet, window)
    else:
        assert decision.not_before is None
        if allowed_minutes_exist(quiet, window):
            assert send_by is not None  # within 400 days a window that exists always opens
            assert blocked_throughout(at, send_by, zone, quiet, window)


# --- 5. the called party's time: every zone, weekdays and holidays ------------------------------------


@cache
def _holiday_table(code: str, year: int) -> frozenset[Any]:
    country, _, sub = code.partition("-")
    return frozenset(holidays.country_holidays(country, subdiv=sub or None, years=year))


FRENCH_HOLIDAYS = sorted(
    datetime(d.year, d.month, d.day, tzinfo=UTC)
    for d in holidays.country_holidays("FR", years=range(2020, 2031))
)


def week_allowed(window: WeekWindow, local: datetime) -> bool:
    """A WeekWindow at a local wall time, from zoneinfo's local datetime (weekday() and date())."""
    if not window.days >> local.weekday() & 1:
        return False
    if any(local.date() in _holiday_table(code, local.year) for code in window.holidays):
        return False
    return any(in_window(w.start, w.end, local) for w in window.hours)


def allowed_everywhere(
    instant: datetime, zones: list[str], quiet: tuple[int, int] | None, windows: tuple[WeekWindow, ...]
) -> bool:
    for zone in zones:
        local = instant.astimezone(ZoneInfo(zone))
        if quiet is not None and in_window(quiet[0], quiet[1], local):
            return False
        if not all(week_allowed(w, local) for w in windows):
            return False
    return True


def blocked_everywhere_throughout(start: datetime, stop: datetime, *args: Any) -> bool:
    """Every instant in [start, stop) is blocked somewhere (minute steps suffice, as above)."""
    if not start < stop:
        return True
    if allowed_everywhere(start, *args):
        return False
    m = start.replace(second=0, microsecond=0) + MINUTE
    while m < stop:
        if allowed_everywhere(m, *args):
            return False
        m += MINUTE
    return True


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_every_zone_of_the_number_holds_and_defer_is_the_first_common_instant(data: st.DataObject) -> None:
    """COMPLIANCE item 22, edges 5 and 6, item 31: rule 8 in the profile's zone and every zone of the
    number, with the windows of every override that applies (France's weekdays and holidays too)."""
    zone = data.draw(st.sampled_from([*ZONES, "Europe/Paris"]), label="zone")
    channel: Channel = data.draw(st.sampled_from(["sms", "voice", "voice", "whatsapp"]), label="channel")
    country = data.draw(st.sampled_from([*ALL_COUNTRIES, "FR", "FR"]), label="country")
    place = data.draw(phone_places(), label="place")
    if len(place.zones) > 6:  # a toll-free number: keep the brute-force oracle affordable
        place = PhonePlace(
            zones=place.zones[:: len(place.zones) // 4], country=place.country, region=place.region
        )
    quiet = data.draw(st.none() | quiet_hours(), label="quiet")
    at = data.draw(instants(zone), label="at")
    if data.draw(st.integers(0, 2)) == 0:  # near a French public holiday, where France's rule closes
        day = data.draw(st.sampled_from(FRENCH_HOLIDAYS), label="holiday")
        at = day + timedelta(seconds=data.draw(st.integers(-86400, 2 * 86400), label="offset"))
    send_by = at + timedelta(seconds=data.draw(st.integers(1, 5 * 86400), label="send_by"))
    windows = POLICY.policy.windows_for(channel, country, place)
    zones = [zone, *[z for z in place.zones if z != zone]]
    customer = state(zone, country, channel, quiet, places={channel: place})

    decision = decide(customer, [], marketing(send_by=send_by), at, POLICY)
    assert decide_batch([("c", customer, [])], marketing(send_by=send_by), at, POLICY) == [decision]

    if decision.verdict == "allow":
        assert allowed_everywhere(at, zones, quiet, windows)
        return
    assert decision.reason == "quiet_hours"
    assert not allowed_everywhere(at, zones, quiet, windows)
    if decision.verdict == "defer":
        nb = decision.not_before
        assert nb is not None and at <= nb < send_by
        assert allowed_everywhere(nb, zones, quiet, windows)
        assert not allowed_everywhere(nb - US, zones, quiet, windows)
        assert blocked_everywhere_throughout(at, nb, zones, quiet, windows)
    else:
        assert blocked_everywhere_throughout(at, send_by, zones, quiet, windows)


# --- 2. caps under any order of approvals ---------------------------------------------------------------


def caps_policy(
    per_day: int | None,
    per_week: int | None,
    extra: tuple[int, int] | None,
    email_cap: tuple[int, int] | None = None,
) -> LoadedPolicy:
    lines = ['name = "prop"', "[caps]"]
    if per_day is not None:
        lines.append(f"per_day = {per_day}")
    if per_week is not None:
        lines.append(f"per_week = {per_week}")
    if extra is not None:
        lines += ["[[caps.extra]]", f"limit = {extra[0]}", f"hours = {extra[1]}"]
    lines += ["[windows]", "[transactional]", "quiet_hours = false", "windows = false"]
    lines += ["[rates]", "email = 1", "sms = 1", "push = 1", "voice = 1", "whatsapp = 1"]
    if email_cap is not None:
        limit, days = email_cap
        lines += [
            "[[overrides]]",
            'countries = ["PL"]',
            f"caps = {{ email = {{ limit = {limit}, days = {days} }} }}",
        ]
    text = "\n".join(lines) + "\n"
    return load_policy(text.encode(), "prop.toml")


def caps_hold(sends: list[datetime], caps: list[tuple[int, timedelta]]) -> bool:
    """Brute force: no window (t - W, t] ending at ANY instant holds more than the limit. The count only
    rises at a send, so windows ending at each send instant are the ones to check."""
    for limit, width in caps:
        for end in sends:
            if sum(1 for s in sends if end - width < s <= end) > limit:
                return False
    return True


@PROPERTY_SETTINGS
@given(data=st.data())
def test_no_order_of_approvals_ever_exceeds_a_cap(data: st.DataObject) -> None:
    """API.md "Caps" and "Reservations"; DESIGN.md: cap windows never exceeded under any order of approvals."""
    per_day = data.draw(st.none() | st.integers(1, 3), label="per_day")
    per_week = data.draw(st.none() | st.integers(1, 6), label="per_week")
    extra = data.draw(st.none() | st.tuples(st.integers(1, 8), st.integers(1, 720)), label="extra")
    max_per_week = data.draw(st.none() | st.integers(1, 5), label="max_per_week")
    email_cap = data.draw(st.none() | st.tuples(st.integers(1, 4), st.integers(1, 10)), label="email_cap")
    policy = caps_policy(per_day, per_week, extra, email_cap)
    caps = list(policy.policy.cap_rules()) + ([(max_per_week, timedelta(days=7))] if max_per_week else [])
    email_caps = [(email_cap[0], timedelta(days=email_cap[1]))] if email_cap else []
    base = data.draw(instants(), label="base")
    # Coarse grids make exact window-boundary distances (s = t - W) common; the 1 µs grid makes them rare.
    grid = data.draw(st.sampled_from([timedelta(hours=12), timedelta(hours=1), timedelta(minutes=7), US]))
    offsets = st.integers(0, int(timedelta(days=21) / grid)).map(lambda k: base + k * grid)
    times = data.draw(st.lists(offsets, min_size=1, max_size=25), label="times")
    # Reservations on other channels count for the all-channel caps only (the email cap ignores them).
    elsewhere = data.draw(st.lists(offsets, max_size=4), label="elsewhere")
    customer = state("Europe/Warsaw", "PL", "email", None, max_per_week=max_per_week)
    camp = marketing()

    def hold(candidate: list[datetime]) -> bool:
        return caps_hold([*elsewhere, *candidate], caps) and caps_hold(candidate, email_caps)

    if not hold([]):
        return  # the other channels alone already break a cap: nothing to check
    sends: list[datetime] = []
    for at in times:
        pairs: list[Send] = [(s, "sms") for s in elsewhere] + [(s, "email") for s in sends]
        decision = decide(customer, pairs, camp, at, policy)
        assert decide_batch([("c", customer, pairs)], camp, at, policy) == [decision]
        if decision.verdict == "allow":
            assert hold([*sends, at])
            sends.append(at)
            continue
        assert decision.reason == "frequency_cap"
        assert not hold([*sends, at])
        if decision.verdict == "defer":
            nb = decision.not_before
            assert nb is not None and nb > at
            assert hold([*sends, nb])
            assert not hold([*sends, nb - US])  # the FIRST such instant
            probe = at + (nb - at) * data.draw(st.floats(0, 1), label="probe")
            assert not hold([*sends, min(probe, nb - US)])
            assert decide(customer, pairs, camp, nb, policy).verdict == "allow"
    assert hold(sends)


# --- 3. determinism and retries -------------------------------------------------------------------------


@st.composite
def customers(
    draw: st.DrawFn, at: datetime, customer_id: str = "c"
) -> tuple[CustomerState | None, list[Send]]:
    if draw(st.integers(0, 19)) == 0:
        return None, []
    zone = draw(st.sampled_from(ZONES))
    channel = draw(st.none() | st.sampled_from(CHANNELS))
    addresses = frozenset(draw(st.lists(st.sampled_from(CHANNELS), max_size=5)))
    if channel is not None and draw(st.integers(0, 3)) > 0:
        addresses |= {channel}
    suppressed = frozenset(c for c in addresses if draw(st.integers(0, 9)) == 0)
    near = st.integers(-10 * 86400, 10 * 86400).map(lambda s: at + timedelta(seconds=s))
    far = st.integers(-31 * 86400, 31 * 86400).map(lambda s: at + timedelta(seconds=s))  # the 30-day cap
    send = st.tuples(near | far, st.sampled_from(CHANNELS))
    sends: list[Send] = draw(st.lists(send, max_size=6)) if draw(st.booleans()) else []
    phones = [c for c in addresses if c in ("sms", "voice", "whatsapp")]
    places: dict[str, PhonePlace] = {c: draw(phone_places()) for c in phones if draw(st.integers(0, 3)) > 0}
    customer = state(
        zone,
        draw(st.sampled_from(ALL_COUNTRIES)),
        channel,
        draw(st.none() | quiet_hours()),
        customer_id=customer_id,
        addresses=addresses,
        suppressed=suppressed,
        subscribed=draw(st.integers(0, 5)) > 0,
        max_per_week=draw(st.none() | st.integers(1, 5)),
        paused_until=draw(st.none() | near),
        marketing_suppressed=frozenset(c for c in addresses if draw(st.integers(0, 9)) == 0),
        places=places,
        confirmed=draw(st.integers(0, 4)) > 0,  # double opt-in: sometimes awaiting confirmation
    )
    return customer, sends


@st.composite
def campaigns(draw: st.DrawFn, at: datetime) -> CampaignView:
    channels = tuple(draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=5, unique=True)))
    category: Category = draw(st.sampled_from(["marketing", "marketing", "transactional"]))
    send_by = draw(st.none() | st.integers(-3600, 5 * 86400).map(lambda s: at + timedelta(seconds=s)))
    return CampaignView("camp", "topic", category, channels, send_by)


@st.composite
def policies(draw: st.DrawFn) -> LoadedPolicy:
    text = DEFAULT_BYTES.decode()
    if draw(st.booleans()):
        text = text.replace("quiet_hours = false", "quiet_hours = true")
    if draw(st.booleans()):
        text = text.replace("windows = false", "windows = true")
    if draw(st.booleans()):
        text = text.replace("per_day = 1", f"per_day = {draw(st.integers(1, 3))}")
    if draw(st.booleans()):
        text = text.replace("limit = 4, days = 30", f"limit = {draw(st.integers(1, 3))}, days = 30")
    if draw(st.booleans()):  # a dated email window (no override touches email)
        text = text.replace(
            "[windows]\n",
            '[windows]\nemail = { days = "mon-fri,sun", hours = ["07:00-12:00", "13:00-22:00"], holidays = "PL" }\n',
            1,
        )
    return load_policy(text.encode(), "variant.toml")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_decisions_are_deterministic_and_retries_are_allowed_again(data: st.DataObject) -> None:
    """API.md "Reservations": a retry (own reservation excluded) returns the same allow."""
    at = data.draw(instants(), label="at")
    customer, sends = data.draw(customers(at), label="customer")
    camp = data.draw(campaigns(at), label="campaign")
    policy = data.draw(policies(), label="policy")

    first = decide(customer, sends, camp, at, policy, customer_id="c")
    again = decide(customer, list(sends), camp, at, policy, customer_id="c")
    assert first == again
    assert first.verdict in ("allow", "defer", "deny")
    assert (first.not_before is not None) == (first.verdict == "defer")

    if first.verdict == "allow" and camp.category == "marketing":
        mine: Send = (at, first.channel or "email")
        reserved = [*sends, mine]  # the approval reserved `at` on its channel
        own = reserved.index(mine, len(sends))
        others = reserved[:own] + reserved[own + 1 :]
        assert decide(customer, others, camp, at, policy) == first
        assert decide(customer, others, camp, at, policy, retry=True) == first
        # A later retry re-checks rules 1-8 only: where those pass, it is the same allow.
        later = at + timedelta(seconds=data.draw(st.integers(1, 6 * 3600), label="later"))
        rules_1_to_8 = decide(customer, [], camp, later, policy, retry=True)
        retry = decide(customer, others, camp, later, policy, retry=True)
        assert retry == rules_1_to_8
        if rules_1_to_8.verdict == "allow":  # (a retry at or after send_by is `expired`)
            assert retry == first


# --- 4. batch agrees with decide ------------------------------------------------------------------------


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_decide_batch_agrees_with_decide(data: st.DataObject) -> None:
    """decide_batch's fast path (per-zone caches, pre-checks) answers exactly as the reference decide."""
    at = data.draw(instants(), label="at")
    camp = data.draw(campaigns(at), label="campaign")
    policy = data.draw(policies(), label="policy")
    n = data.draw(st.integers(1, 12), label="n")
    items: list[tuple[str, CustomerState | None, list[Send]]] = []
    for i in range(n):
        customer, sends = data.draw(customers(at, customer_id=f"c{i}"), label=f"customer {i}")
        if customer is not None and i > 0 and data.draw(st.booleans()):
            # Share zone / quiet hours / country with an earlier recipient, to exercise the caches.
            earlier = data.draw(st.sampled_from([c for _, c, _ in items if c is not None] or [customer]))
            customer = CustomerState(
                customer_id=customer.customer_id,
                timezone=earlier.timezone,
                country=earlier.country,
                channel=customer.channel,
                addresses=customer.addresses,
                suppressed=customer.suppressed,
                subscribed=customer.subscribed,
                quiet_hours=earlier.quiet_hours,
                max_per_week=customer.max_per_week,
                paused_until=customer.paused_until,
                marketing_suppressed=customer.marketing_suppressed,
                places=earlier.places if data.draw(st.booleans()) else customer.places,
                confirmed=customer.confirmed,
            )
        items.append((f"c{i}", customer, sends))
    retries = {cid for cid, _, _ in items if data.draw(st.integers(0, 4), label="retry?") == 0}

    batch = decide_batch(items, camp, at, policy, retries=retries)
    expected: list[Decision] = [
        decide(customer, sends, camp, at, policy, customer_id=cid, retry=cid in retries)
        for cid, customer, sends in items
    ]
    assert batch == expected


def test_parse_policy_is_used_for_variants() -> None:
    """Guard for the strategies above: the policy variants are valid policies."""
    text = DEFAULT_BYTES.decode().replace("quiet_hours = false", "quiet_hours = true")
    assert parse_policy(text.encode(), "v.toml").transactional.quiet_hours is True
    assert caps_policy(2, None, (3, 48)).policy.cap_rules() == (
        (2, timedelta(hours=24)),
        (3, timedelta(hours=48)),
    )
