"""Run a policy's test cases (``policies/tests/*.toml``), like ``opa test`` for the gate.

A case file holds one or more ``[[case]]`` tables; every key is checked (unknown keys are errors)::

    description = "optional text about the file"

    [[case]]
    name = "quiet hours across midnight wait for 07:00 local"   # unique within the file
    at = 2026-11-22T22:30:00Z              # TOML offset date-time (an offset is required)
    sends = [2026-11-21T09:00:00Z]         # optional: the customer's OTHER marketing reservations,
                                           # on the customer's channel (email if none), or with
                                           # their channel: { at = 2026-11-21T09:00:00Z, channel = "voice" }

    [case.customer]                        # omit the whole table for an unknown (or erased) customer
    customer_id = "c1"                     # optional, default "customer"
    timezone = "Europe/Warsaw"             # IANA zone
    country = "PL"                         # ISO 3166-1 alpha-2
    channel = "email"                      # optional: omit for "chose no channel"
    addresses = ["email", "sms"]           # channels with a contact (default none)
    suppressed = []                        # channels whose contact is suppressed (default none)
    subscribed = true                      # campaign topic in the customer's topics (default false)
    confirmed = false                      # double opt-in: the topic awaits confirmation (default true)
    quiet_hours = { start = "22:00", end = "07:00" }   # optional
    max_per_week = 2                       # optional
    paused_until = 2026-12-01T00:00:00Z    # optional
    marketing_suppressed = []              # channels with a marketing-only suppression (default none)
    phones = { sms = "+12135550199" }      # optional: sms/voice/whatsapp numbers, placed as the store
                                           # places them (prefcenter.domain.phones.place_of)
    places = { voice = { zones = ["America/New_York"], country = "US", region = "US-FL" } }
                                           # optional: a place given outright (one of the two per channel)

    [case.campaign]
    campaign_id = "black-friday"           # optional, default "campaign"
    topic = "promotions"                   # optional, default "promotions"
    category = "marketing"                 # or "transactional"
    channels = ["email", "sms"]            # order matters for transactional fallback
    send_by = 2026-11-30T00:00:00Z         # optional

    [case.expect]
    verdict = "defer"
    reason = "quiet_hours"
    not_before = 2026-11-23T06:00:00Z      # optional; when absent it is checked only for allow/deny (null)
    channel = "email"                      # optional; "none" expects no channel

Each case is decided with :func:`prefcenter.domain.engine.decide` and, as a cross-check, with
:func:`~prefcenter.domain.engine.decide_batch`; a disagreement between the two is a failure too.
A malformed case file raises :class:`PolicyTestError` naming the file, the field and the reason.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from prefcenter.domain.engine import Send, decide, decide_batch
from prefcenter.domain.model import (
    CampaignView,
    Category,
    Channel,
    CustomerState,
    Decision,
    PhonePlace,
    Reason,
    Verdict,
    normalise_phone,
)
from prefcenter.domain.phones import place_of
from prefcenter.domain.policy import CountryCode, LoadedPolicy, Policy, RegionCode, decode_toml
from prefcenter.domain.timewindows import Window, zone_timeline

__all__ = ["CaseResult", "PolicyTestError", "format_report", "run_policy_tests"]

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class PolicyTestError(ValueError):
    """A case file that cannot be run; ``str()`` names the file, the field path and the reason."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(f"{source}: {field}: {reason}")


class CaseResult(msgspec.Struct, frozen=True):
    name: str  # "<file name>::<case name>"
    passed: bool
    message: str  # "" when passed; what differed otherwise


class _QuietHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: str
    end: str


PhoneChannel = Literal["sms", "voice", "whatsapp"]


class _Place(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    zones: tuple[str, ...] = ()
    country: CountryCode | None = None
    region: RegionCode | None = None


class _Send(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: AwareDatetime
    channel: Channel


class _Customer(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    timezone: str
    country: CountryCode
    customer_id: Annotated[str, msgspec.Meta(min_length=1)] = "customer"
    channel: Channel | None = None
    addresses: frozenset[Channel] = frozenset()
    suppressed: frozenset[Channel] = frozenset()
    subscribed: bool = False
    confirmed: bool = True
    quiet_hours: _QuietHours | None = None
    max_per_week: Annotated[int, msgspec.Meta(ge=1, le=50)] | None = None
    paused_until: AwareDatetime | None = None
    marketing_suppressed: frozenset[Channel] = frozenset()
    phones: dict[PhoneChannel, str] = {}
    places: dict[PhoneChannel, _Place] = {}


class _Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    category: Category
    channels: Annotated[tuple[Channel, ...], msgspec.Meta(min_length=1)]
    campaign_id: str = "campaign"
    topic: str = "promotions"
    send_by: AwareDatetime | None = None


class _Expect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    verdict: Verdict
    reason: Reason
    not_before: AwareDatetime | None = None
    channel: Channel | Literal["none"] | None = None


class _Case(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1)]
    at: AwareDatetime
    campaign: _Campaign
    expect: _Expect
    customer: _Customer | None = None
    sends: tuple[AwareDatetime | _Send, ...] = ()


class _CaseFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    case: Annotated[tuple[_Case, ...], msgspec.Meta(min_length=1)]
    description: str = ""


def _load(path: Path) -> _CaseFile:
    source = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyTestError(source, "$", f"cannot read: {exc.strerror or exc}") from None
    cases = decode_toml(data, _CaseFile, source, PolicyTestError)
    seen: set[str] = set()
    for i, case in enumerate(cases.case):
        where = f"$.case[{i}]"
        if case.name in seen:
            raise PolicyTestError(source, f"{where}.name", f"duplicate case name {case.name!r}")
        seen.add(case.name)
        customer = case.customer
        if customer is None:
            continue
        try:
            zone_timeline(customer.timezone)
        except ValueError as exc:
            raise PolicyTestError(source, f"{where}.customer.timezone", str(exc)) from None
        if customer.quiet_hours is not None:
            try:
                Window.from_bounds(customer.quiet_hours.start, customer.quiet_hours.end)
            except ValueError as exc:
                raise PolicyTestError(source, f"{where}.customer.quiet_hours", str(exc)) from None
        for channel, number in customer.phones.items():
            try:
                normalise_phone(number)
            except ValueError as exc:
                raise PolicyTestError(source, f"{where}.customer.phones.{channel}", str(exc)) from None
            if channel in customer.places:
                raise PolicyTestError(
                    source,
                    f"{where}.customer.places.{channel}",
                    "give phones or places for a channel, not both",
                )
        for channel, place in customer.places.items():
            for j, zone in enumerate(place.zones):
                try:
                    zone_timeline(zone)
                except ValueError as exc:
                    raise PolicyTestError(
                        source, f"{where}.customer.places.{channel}.zones[{j}]", str(exc)
                    ) from None
    return cases


def _state(customer: _Customer | None) -> CustomerState | None:
    if customer is None:
        return None
    quiet = customer.quiet_hours
    return CustomerState(
        customer_id=customer.customer_id,
        timezone=customer.timezone,
        country=customer.country,
        channel=customer.channel,
        addresses=customer.addresses,
        suppressed=customer.suppressed,
        subscribed=customer.subscribed,
        confirmed=customer.confirmed,
        quiet_hours=None if quiet is None else (quiet.start, quiet.end),
        max_per_week=customer.max_per_week,
        paused_until=customer.paused_until,
        marketing_suppressed=customer.marketing_suppressed,
        places={
            **{channel: place_of(number) for channel, number in customer.phones.items()},
            **{
                channel: PhonePlace(zones=p.zones, country=p.country, region=p.region)
                for channel, p in customer.places.items()
            },
        },
    )


def _sends(case: _Case) -> list[Send]:
    """The case's reservations as the engine takes them; a bare instant is on the customer's channel."""
    default: str = (case.customer.channel if case.customer is not None else None) or "email"
    return [(s.at, s.channel) if isinstance(s, _Send) else (s, default) for s in case.sends]


def _instant(value: datetime | None) -> str:
    if value is None:
        return "null"
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _describe(decision: Decision) -> str:
    return (
        f"{decision.verdict} {decision.reason} channel={decision.channel or 'none'}"
        f" not_before={_instant(decision.not_before)}"
    )


def _check(case: _Case, policy: Policy | LoadedPolicy) -> str:
    """'' when the case passes, else what differed."""
    state = _state(case.customer)
    cid = state.customer_id if state is not None else "customer"
    campaign = CampaignView(
        campaign_id=case.campaign.campaign_id,
        topic=case.campaign.topic,
        category=case.campaign.category,
        channels=case.campaign.channels,
        send_by=case.campaign.send_by,
    )
    sends = _sends(case)
    got = decide(state, sends, campaign, case.at, policy, customer_id=cid)
    batch = decide_batch([(cid, state, sends)], campaign, case.at, policy)[0]
    if batch != got:
        return f"decide gave {_describe(got)} but decide_batch gave {_describe(batch)}"
    expect = case.expect
    problems: list[str] = []
    if got.verdict != expect.verdict or got.reason != expect.reason:
        problems.append(f"verdict/reason {expect.verdict} {expect.reason}")
    if expect.not_before is not None:
        if got.not_before is None or got.not_before != expect.not_before:
            problems.append(f"not_before {_instant(expect.not_before)}")
    elif expect.verdict != "defer" and got.not_before is not None:
        problems.append("not_before null")
    if expect.channel is not None:
        want = None if expect.channel == "none" else expect.channel
        if got.channel != want:
            problems.append(f"channel {want or 'none'}")
    if not problems:
        return ""
    return f"expected {', '.join(problems)}; got {_describe(got)}"


def run_policy_tests(policy: Policy | LoadedPolicy, cases_dir: Path) -> list[CaseResult]:
    """Run every case of every ``*.toml`` file in ``cases_dir`` (sorted by file name) against ``policy``.

    Raises :class:`PolicyTestError` for a missing folder or a malformed case file (before running any
    case, so a typo cannot hide as a pass).
    """
    if not cases_dir.is_dir():
        raise PolicyTestError(str(cases_dir), "$", "no such directory")
    files = [(path, _load(path)) for path in sorted(cases_dir.glob("*.toml"))]
    results: list[CaseResult] = []
    for path, cases in files:
        for case in cases.case:
            name = f"{path.name}::{case.name}"
            message = _check(case, policy)
            results.append(CaseResult(name=name, passed=not message, message=message))
    return results


def format_report(results: list[CaseResult]) -> str:
    """One ``PASS``/``FAIL`` line per case, then ``"N passed, M failed"``."""
    lines = [f"PASS {r.name}" if r.passed else f"FAIL {r.name}: {r.message}" for r in results]
    passed = sum(1 for r in results if r.passed)
    lines.append(f"{passed} passed, {len(results) - passed} failed")
    return "\n".join(lines)
