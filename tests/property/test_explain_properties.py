"""Hypothesis properties of explained decisions (prefcenter.domain.explain; API.md "Auditor's answers").

For random customers, reservations, campaigns, policies and instants, the explanation of the engine's
decision is consistent with its reason, checked against zoneinfo and the holidays package directly:

- ``quiet_hours``: the rule is ``customer_quiet_hours`` or ``channel_window``; the named window is the
  customer's own (or one the policy sets for that channel: the base window, or the named country's or
  region's override), and it really excludes the local time at ``at`` in the named zone, which is one of
  the zones rule 8 checks. A ``channel_window`` explanation means the customer's quiet hours held in
  every zone (they win when both fail).
- ``frequency_cap``: the named cap is one the policy (or the customer, or an applicable override for the
  channel) sets, and some window of its length containing ``at`` really holds ``held >= limit`` of the
  reservations it counts, ``held`` being the most any such window holds (counted by brute force).
- ``paused``: ``until`` is ``paused_until``.
- every other reason explains as itself, and :func:`explain_text` is None exactly then (else the JSON).
- :class:`Explainer`, which memoises across a batch, answers as :func:`explain` for every recipient.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prefcenter.domain.engine import Send, decide
from prefcenter.domain.explain import Explainer, explain, explain_text
from prefcenter.domain.model import PHONE_CHANNELS, CampaignView, Channel, CustomerState
from prefcenter.domain.phones import place_of
from prefcenter.domain.policy import ChannelCap, ChannelCaps, LoadedPolicy
from prefcenter.domain.timewindows import parse_days
from tests.property.test_engine_properties import (
    ALL_COUNTRIES,
    CHANNELS,
    ZONES,
    _holiday_table,
    campaigns,
    customers,
    in_window,
    instants,
    phone_places,
    policies,
    quiet_hours,
    state,
)

PROPERTY_SETTINGS = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def window_allows(spec: str | dict[str, Any], local: datetime) -> bool:
    """A window as the explanation writes it (as the policy does), at a local wall time."""
    if isinstance(spec, str):
        table: dict[str, Any] = {"hours": [spec]}
    else:
        table = spec
    if "days" in table and not parse_days(table["days"]) >> local.weekday() & 1:
        return False
    if "holidays" in table and local.date() in _holiday_table(table["holidays"], local.year):
        return False
    return any(in_window(minutes(w.split("-")[0]), minutes(w.split("-")[1]), local) for w in table["hours"])


# The windows as policies/default.toml (and the email variant of ``policies()``) write them, by hand: an
# explanation must quote the window exactly so (a copy of the code's conversion would agree with any
# shape it produced).
WRITTEN_BASE: dict[str, str | dict[str, Any]] = {
    "sms": "08:00-21:00",
    "voice": "08:00-21:00",
    "whatsapp": "08:00-21:00",
    "email": {"days": "mon-fri,sun", "hours": ["07:00-12:00", "13:00-22:00"], "holidays": "PL"},
}
WRITTEN_BY_COUNTRY: dict[tuple[str, str], str | dict[str, Any]] = {
    ("PL", "voice"): "09:00-20:00",
    ("RO", "voice"): "09:00-20:00",
    ("GR", "voice"): "09:00-20:00",
    ("FR", "voice"): {"days": "mon-fri", "hours": ["10:00-13:00", "14:00-20:00"], "holidays": "FR"},
}
WRITTEN_BY_REGION: dict[tuple[str, str], str | dict[str, Any]] = {
    ("US-FL", "sms"): "08:00-20:00",
    ("US-FL", "voice"): "08:00-20:00",
}


def zones_of(customer: CustomerState, channel: Channel) -> list[str]:
    place = customer.places.get(channel) if channel in PHONE_CHANNELS else None
    return [customer.timezone, *(place.zones if place is not None else ())]


def match(customer: CustomerState, channel: Channel) -> tuple[set[str], str | None]:
    """The countries and region the overrides match for this customer's message on ``channel``."""
    place = customer.places.get(channel) if channel in PHONE_CHANNELS else None
    countries = {customer.country}
    if place is not None and place.country:
        countries.add(place.country)
    return countries, place.region if place is not None else None


def most_held(sends: list[datetime], window: timedelta, at: datetime) -> int:
    """Brute force: the most sends any window (t - W, t] with at <= t < at + W holds (the count only
    rises at a send, so t = at and t = each send in range suffice)."""
    ends = [at, *[s for s in sends if at < s < at + window]]
    return max(sum(1 for s in sends if t - window < s <= t) for t in ends)


def check_consistent(
    explained: dict[str, Any],
    customer: CustomerState | None,
    sends: list[Send],
    camp: CampaignView,
    at: datetime,
    policy: LoadedPolicy,
    reason: str,
    channel: Channel | None,
) -> None:
    rule = explained["rule"]
    if reason not in ("quiet_hours", "frequency_cap", "paused"):
        assert explained == {"rule": reason}
        return
    assert customer is not None and channel is not None
    rules = policy.policy
    marketing = camp.category == "marketing"
    if reason == "paused":
        assert explained == {"rule": "pause", "until": explained["until"]}
        assert datetime.fromisoformat(explained["until"]) == customer.paused_until
        assert customer.paused_until is not None and at < customer.paused_until
        return
    if reason == "quiet_hours":
        zones = zones_of(customer, channel)
        assert explained["zone"] in zones
        local = at.astimezone(ZoneInfo(explained["zone"]))
        quiet = customer.quiet_hours
        uses_quiet = quiet is not None and (marketing or rules.transactional.quiet_hours)
        if rule == "customer_quiet_hours":
            assert uses_quiet and quiet is not None
            assert set(explained) == {"rule", "window", "zone"}
            assert explained["window"] == f"{quiet[0]}-{quiet[1]}"
            assert in_window(minutes(quiet[0]), minutes(quiet[1]), local)
            return
        assert rule == "channel_window", explained
        assert marketing or rules.transactional.windows
        assert not window_allows(explained["window"], local)
        if uses_quiet and quiet is not None:  # the customer's quiet hours would have won
            for zone in zones:
                assert not in_window(minutes(quiet[0]), minutes(quiet[1]), at.astimezone(ZoneInfo(zone)))
        countries, region = match(customer, channel)
        if "country" in explained:
            assert explained["country"] in countries
            assert any(
                explained["country"] in o.countries and o.windows.get(channel) for o in rules.overrides
            )
            assert explained["window"] == WRITTEN_BY_COUNTRY[(explained["country"], channel)]
        elif "region" in explained:
            assert explained["region"] == region
            assert any(region in o.regions and o.windows.get(channel) for o in rules.overrides)
            assert region is not None and explained["window"] == WRITTEN_BY_REGION[(region, channel)]
        else:
            base = rules.windows.get(channel)
            assert base is not None and explained["window"] == WRITTEN_BASE[channel]
        return
    # frequency_cap
    assert marketing
    every = [s for s, _ in sends]
    if rule == "customer_cap":
        assert set(explained) == {"rule", "limit", "held"}
        assert explained["limit"] == customer.max_per_week
        window = timedelta(days=7)
        counted = every
    else:
        assert rule == "policy_cap", explained
        label = explained["window"]
        window = timedelta(days=int(label[:-1])) if label.endswith("d") else timedelta(hours=int(label[:-1]))
        if "channel" in explained:
            assert explained["channel"] == channel
            countries, region = match(customer, channel)
            caps = [
                o.caps.get(channel)
                for o in rules.overrides
                if (explained.get("country") in o.countries and explained.get("country") in countries)
                or (explained.get("region") is not None and explained.get("region") == region and region in o.regions)
            ]
            assert any(c is not None and c.limit == explained["limit"] and timedelta(days=c.days) == window for c in caps)
            counted = [s for s, c in sends if c == channel]
        else:
            assert (explained["limit"], window) in rules.cap_rules()
            counted = every
    held = most_held(counted, window, at)
    assert explained["held"] == held
    assert held >= explained["limit"]


@st.composite
def gated(draw: st.DrawFn, at: datetime) -> tuple[CustomerState, list[Send]]:
    """A customer who passes rules 1-6 of a marketing campaign offering every channel, often with
    quiet hours, a phone number elsewhere, a pause or many reservations: rules 7-9 decide."""
    channel: Channel = draw(st.sampled_from(CHANNELS))
    near = st.integers(-8 * 86400, 8 * 86400).map(lambda s: at + timedelta(seconds=s))
    far = st.integers(-31 * 86400, 31 * 86400).map(lambda s: at + timedelta(seconds=s))
    on = st.sampled_from([channel, channel, *CHANNELS])
    sends: list[Send]
    if draw(st.booleans()):
        sends = draw(st.lists(st.tuples(near | far, on), max_size=10))
    else:  # whole days apart (the 24-hour cap passes): the weekly and 30-day caps decide
        days = draw(st.lists(st.integers(-29, 29).filter(bool), max_size=6, unique=True))
        sends = [(at + timedelta(days=d), draw(on)) for d in days]
    places = {channel: draw(phone_places())} if channel in PHONE_CHANNELS and draw(st.booleans()) else {}
    french = channel == "voice" and draw(st.booleans())  # France's voice cap (an override's)
    customer = state(
        draw(st.sampled_from(ZONES)),
        "FR" if french else draw(st.sampled_from(ALL_COUNTRIES)),
        channel,
        draw(st.none() | quiet_hours()),
        max_per_week=draw(st.none() | st.integers(1, 5)),
        paused_until=draw(st.none() | near) if draw(st.integers(0, 3)) == 0 else None,
        places=places,
    )
    if draw(st.integers(0, 2)) == 0:  # no quiet hours and no pause: rule 9 decides more often
        customer = msgspec.structs.replace(customer, quiet_hours=None, paused_until=None)
    if draw(st.integers(0, 2)) == 0:  # where capped_policies adds per-channel caps, days apart
        channel = draw(st.sampled_from(["email", "sms"]))
        days = draw(st.lists(st.integers(-19, 19).filter(bool), min_size=1, max_size=5, unique=True))
        sends = [(at + timedelta(days=d), draw(st.sampled_from([channel, channel, "push"]))) for d in days]
        customer = msgspec.structs.replace(
            customer,
            channel=channel,
            country=draw(st.sampled_from(["PL", "RO", "GR", "US"])),
            places={"sms": place_of("+13055550123")} if channel == "sms" else {},
        )
    return customer, sends


@st.composite
def capped_policies(draw: st.DrawFn) -> LoadedPolicy:
    """The engine tests' policy variants, half the time with per-channel caps added to the shipped
    overrides: email for PL/RO/GR (no window on email, so the cap decides) and sms for US-FL."""
    loaded = draw(policies())
    if draw(st.booleans()):
        return loaded
    policy = loaded.policy
    email = ChannelCap(limit=draw(st.integers(1, 3)), days=draw(st.integers(2, 20)))
    sms = ChannelCap(limit=draw(st.integers(1, 3)), days=draw(st.integers(2, 20)))
    overrides = list(policy.overrides)
    overrides[0] = msgspec.structs.replace(overrides[0], caps=ChannelCaps(email=email))
    overrides[1] = msgspec.structs.replace(overrides[1], caps=ChannelCaps(sms=sms))
    changed = msgspec.structs.replace(policy, overrides=tuple(overrides))
    return LoadedPolicy(policy=changed, version="sha256:variant", source="variant.toml")


@PROPERTY_SETTINGS
@given(data=st.data())
def test_rules_7_to_9_are_explained_by_an_instance_that_really_fails(data: st.DataObject) -> None:
    at = data.draw(instants(), label="at")
    customer, sends = data.draw(gated(at), label="customer")
    camp = CampaignView("camp", "promotions", "marketing", tuple(CHANNELS), None)
    policy = data.draw(capped_policies(), label="policy")
    decision = decide(customer, sends, camp, at, policy)
    explained = explain(decision, customer, sends, camp, at, policy)
    event(f"{decision.reason}: {explained['rule']} {sorted(set(explained) & {'channel', 'country', 'region'})}")
    check_consistent(explained, customer, sends, camp, at, policy, decision.reason, decision.channel)
    text = explain_text(decision, customer, sends, camp, at, policy)
    if decision.reason in ("quiet_hours", "frequency_cap", "paused"):
        assert text is not None and json.loads(text) == explained  # these always say more
    else:
        assert text is None


@PROPERTY_SETTINGS
@given(data=st.data())
def test_every_decision_is_explained_consistently_with_its_reason(data: st.DataObject) -> None:
    at = data.draw(instants(), label="at")
    customer, sends = data.draw(customers(at), label="customer")
    camp = data.draw(campaigns(at), label="campaign")
    policy = data.draw(policies(), label="policy")
    retry = data.draw(st.booleans(), label="retry")
    decision = decide(customer, sends, camp, at, policy, customer_id="c", retry=retry)
    explained = explain(decision, customer, sends, camp, at, policy, retry=retry)
    check_consistent(explained, customer, sends, camp, at, policy, decision.reason, decision.channel)
    text = explain_text(decision, customer, sends, camp, at, policy, retry=retry)
    assert (text is None) == (explained == {"rule": decision.reason})
    if text is not None:
        assert json.loads(text) == explained


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_batch_explainer_answers_as_explain(data: st.DataObject) -> None:
    """Explainer memoises per (zone, channel, country, quiet hours, place) and per pause: recipients
    sharing those (and not) get exactly what explain gives each."""
    at = data.draw(instants(), label="at")
    policy = data.draw(policies(), label="policy")
    camp = CampaignView("camp", "promotions", "marketing", tuple(CHANNELS), None)
    explainer = Explainer(camp, at, policy)
    first, _ = data.draw(gated(at), label="first")
    for i in range(data.draw(st.integers(1, 8), label="n")):
        customer, sends = data.draw(gated(at), label=f"customer {i}")
        if data.draw(st.booleans()):  # share the first one's rule 8 settings and pause
            customer = CustomerState(
                customer_id=customer.customer_id,
                timezone=first.timezone,
                country=first.country,
                channel=first.channel,
                addresses=customer.addresses,
                subscribed=True,
                quiet_hours=first.quiet_hours,
                max_per_week=customer.max_per_week,
                paused_until=first.paused_until,
                places=first.places,
            )
        decision = decide(customer, sends, camp, at, policy)
        assert explainer.explain(decision, customer, sends) == explain(decision, customer, sends, camp, at, policy)
        assert explainer.text(decision, customer, sends) == explain_text(decision, customer, sends, camp, at, policy)
