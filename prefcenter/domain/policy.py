"""The sending policy: decoded straight from TOML into frozen msgspec Structs (DESIGN.md "Policies are data").

Shape (every section is required, so a typo'd or missing section fails at load instead of silently
turning a rule off)::

    name = "default"

    [caps]                    # marketing messages per customer, all channels together, rolling windows
    per_day = 1               # optional: any 24 hours
    per_week = 3              # optional: any 7 days
    [[caps.extra]]            # optional, any number: `limit` messages in any `hours` hours
    limit = 8
    hours = 720

    [windows]                 # optional per channel: allowed local wall-clock times, "HH:MM-HH:MM"
    sms = "08:00-21:00"       # ... or a table with weekdays, several windows and a holiday calendar:
    voice = { days = "mon-fri", hours = ["10:00-13:00", "14:00-20:00"], holidays = "FR" }

    [transactional]           # both required
    quiet_hours = false
    windows = false

    [rates]                   # required for every channel: messages per second (> 0, int or float)
    email = 50
    sms = 10
    push = 100
    voice = 1
    whatsapp = 10

    [[overrides]]             # optional, any number
    countries = ["PL", "RO", "GR"]            # profile country, or the phone number's country
    regions = ["US-FL"]                       # ISO 3166-2: where the phone number is registered
    windows = { voice = "09:00-20:00" }       # optional
    caps = { voice = { limit = 4, days = 30 } }   # optional: per-channel marketing cap

    [retention]               # optional, each key optional (these are the defaults)
    reservation_grace_days = 7
    decisions_days = 1461     # must exceed the longest cap window + reservation_grace_days
    outbox_days = 90

A window table: ``hours`` (required, a non-empty list of "HH:MM-HH:MM", each may cross midnight),
``days`` (optional, default every day: "mon-fri", "mon,wed,fri", "sat-sun") and ``holidays`` (optional,
a calendar of the pinned ``holidays`` package: "FR", "US-FL"; closed all day on its dates). The local
date at the instant decides (see :mod:`prefcenter.domain.timewindows`).

Which overrides apply (COMPLIANCE item 22, edge 5): for a message on ``channel``, every override whose
``countries`` hold the profile's country or, for sms/voice/whatsapp, the country of that channel's
phone number, or whose ``regions`` hold the number's subdivision. ALL that apply must hold (the most
restrictive intersection): their windows for the channel are intersected (the base window applies when
none of them sets one), and each of their caps for the channel applies. A per-channel cap counts only
that channel's marketing reservations, over rolling windows of ``days`` days (API.md "Caps").

Overrides only narrow. An override window for a channel that has a base window must lie inside it
(its days, times of day and holiday closures, see :meth:`WeekWindow.covers`); an override may also give
a window to a channel that has none in ``[windows]`` (any window narrows "always"). A (country,
channel) pair may have its window set by one override only, and its cap by one override only; the same
for (region, channel). Widening, overlapping overrides, unknown countries, subdivisions or holiday
calendars, bad day names, unknown keys and empty windows (start = end, or no hours) are load errors.

:func:`parse_policy` is pure (bytes in, Struct out); every failure is a :class:`PolicyError` whose message
is ``"<source>: <field path>: <reason>"`` with the field path in msgspec's ``$.a.b[0].c`` notation.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Final, TypeVar

import msgspec
import msgspec.toml

from prefcenter.domain.model import CHANNELS, PHONE_CHANNELS, Channel, PhonePlace
from prefcenter.domain.timewindows import ALL_DAYS, WeekWindow, Window, holiday_calendar_error, parse_days

__all__ = [
    "Caps",
    "ChannelCap",
    "ChannelCaps",
    "ChannelRates",
    "ChannelWindows",
    "ExtraCap",
    "LoadedPolicy",
    "Override",
    "Policy",
    "PolicyError",
    "Retention",
    "TransactionalRules",
    "WindowTable",
    "load_policy",
    "parse_policy",
    "policy_version",
]

_DAY_HOURS: Final = 24
_WEEK_HOURS: Final = 7 * 24
#: Longest window a cap may have (366 days); deferral searches look 400 days ahead.
MAX_CAP_HOURS: Final = 366 * 24

Limit = Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
Rate = Annotated[float, msgspec.Meta(gt=0, le=1_000_000)]
CountryCode = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}\\Z")]
RegionCode = Annotated[str, msgspec.Meta(pattern="^[A-Z]{2}-[A-Z0-9]{1,3}\\Z")]


class PolicyError(ValueError):
    """A policy file that cannot be used; ``str()`` names the file, the field path and the reason."""

    def __init__(self, source: str, field: str, reason: str) -> None:
        self.source = source
        self.field = field
        self.reason = reason
        super().__init__(f"{source}: {field}: {reason}")


class ExtraCap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``limit`` marketing messages in any rolling ``hours`` hours."""

    limit: Limit
    hours: Annotated[int, msgspec.Meta(ge=1, le=MAX_CAP_HOURS)]


class Caps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    per_day: Limit | None = None
    per_week: Limit | None = None
    extra: tuple[ExtraCap, ...] = ()

    def rules(self) -> tuple[tuple[int, timedelta], ...]:
        """Every cap as ``(limit, window)``."""
        out: list[tuple[int, timedelta]] = []
        if self.per_day is not None:
            out.append((self.per_day, timedelta(hours=_DAY_HOURS)))
        if self.per_week is not None:
            out.append((self.per_week, timedelta(hours=_WEEK_HOURS)))
        out.extend((cap.limit, timedelta(hours=cap.hours)) for cap in self.extra)
        return tuple(out)


class WindowTable(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A window with weekdays and holidays: ``{ days = "mon-fri", hours = [...], holidays = "FR" }``."""

    hours: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, max_length=48)]
    days: str | None = None
    holidays: str | None = None


WindowSpec = str | WindowTable


class ChannelWindows(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per channel, the local window it may be used in: ``"HH:MM-HH:MM"`` or a :class:`WindowTable`
    (None: any time)."""

    email: WindowSpec | None = None
    sms: WindowSpec | None = None
    push: WindowSpec | None = None
    voice: WindowSpec | None = None
    whatsapp: WindowSpec | None = None

    def get(self, channel: Channel) -> WindowSpec | None:
        value: WindowSpec | None = getattr(self, channel)
        return value

    def parsed(self, channel: Channel) -> WeekWindow | None:
        spec = self.get(channel)
        return None if spec is None else _week_window(spec)


class TransactionalRules(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Whether transactional topics respect customers' quiet hours and the channel windows."""

    quiet_hours: bool
    windows: bool


class ChannelRates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Dispatcher ceiling per channel for the whole deployment, messages per second."""

    email: Rate
    sms: Rate
    push: Rate
    voice: Rate
    whatsapp: Rate

    def get(self, channel: Channel) -> float:
        value: float = getattr(self, channel)
        return value


class ChannelCap(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """At most ``limit`` marketing messages on one channel in any rolling ``days`` days."""

    limit: Limit
    days: Annotated[int, msgspec.Meta(ge=1, le=MAX_CAP_HOURS // _DAY_HOURS)]


class ChannelCaps(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    email: ChannelCap | None = None
    sms: ChannelCap | None = None
    push: ChannelCap | None = None
    voice: ChannelCap | None = None
    whatsapp: ChannelCap | None = None

    def get(self, channel: Channel) -> ChannelCap | None:
        value: ChannelCap | None = getattr(self, channel)
        return value


class Override(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Stricter windows and per-channel caps for customers in some countries (ISO 3166-1 alpha-2: the
    profile's, or a phone number's) or subdivisions (ISO 3166-2, where a phone number is registered)."""

    countries: tuple[CountryCode, ...] = ()
    regions: tuple[RegionCode, ...] = ()
    windows: ChannelWindows = ChannelWindows()
    caps: ChannelCaps = ChannelCaps()

    def applies(self, countries: tuple[str, ...], region: str | None) -> bool:
        return any(c in self.countries for c in countries) or (region is not None and region in self.regions)


class Retention(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How long what serves only a cap window or an auditor's question is kept (the consent ledger is
    never pruned); the pruner (:mod:`prefcenter.services.retention`) deletes the rest in small
    transactions. The defaults are the safe ones; see policies/default.toml for the reasoning."""

    #: Reservations are kept this many days beyond the longest cap window, so an approval whose ``at``
    #: lies up to this far in the past still counts every reservation a cap could see.
    reservation_grace_days: Annotated[int, msgspec.Meta(ge=0, le=366)] = 7
    #: The decision log (every real decision with its policy version and explanation); also how long
    #: the reservations and sent outbox rows of a campaign without an end (no ``send_by``, or one still
    #: ahead) are kept as its "already approved / already sent" memory.
    decisions_days: Annotated[int, msgspec.Meta(ge=1, le=36_600)] = 1461
    #: Finished outbox rows (sent, failed, withdrawn, suppressed) of an ended campaign, with their
    #: message history (the trace's ``message``), counted from the campaign's ``send_by``.
    outbox_days: Annotated[int, msgspec.Meta(ge=1, le=36_600)] = 90


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    caps: Caps
    windows: ChannelWindows
    transactional: TransactionalRules
    rates: ChannelRates
    overrides: tuple[Override, ...] = ()
    retention: Retention = Retention()

    def windows_for(
        self, channel: Channel, country: str | None, place: PhonePlace | None = None
    ) -> tuple[WeekWindow, ...]:
        """The windows ``channel`` must be inside, all at once, for a customer in ``country`` whose
        phone number for the channel is registered at ``place`` (used for sms/voice/whatsapp only):
        the applicable overrides' windows, or the base window when none sets one (empty: any time)."""
        return _applicable(self, channel, *_match_key(channel, country, place))[0]

    def channel_caps_for(
        self, channel: Channel, country: str | None, place: PhonePlace | None = None
    ) -> tuple[tuple[int, timedelta], ...]:
        """The applicable overrides' caps for ``channel`` as ``(limit, window)`` pairs; each counts only
        that channel's marketing reservations."""
        return _applicable(self, channel, *_match_key(channel, country, place))[1]

    def cap_rules(self) -> tuple[tuple[int, timedelta], ...]:
        """The policy's marketing caps (all channels together) as ``(limit, window)`` pairs."""
        return self.caps.rules()

    def longest_channel_cap(self) -> timedelta:
        """The longest window of any override's per-channel cap (zero when there are none)."""
        return max(
            (
                timedelta(days=cap.days)
                for o in self.overrides
                for c in CHANNELS
                if (cap := o.caps.get(c)) is not None
            ),
            default=timedelta(0),
        )


class LoadedPolicy(msgspec.Struct, frozen=True):
    """A validated policy with its version (``sha256:`` + hex digest of the file bytes) and source."""

    policy: Policy
    version: str
    source: str


@lru_cache(maxsize=1024)
def _window(text: str) -> Window:
    return Window.parse(text)


@lru_cache(maxsize=1024)
def _week_window(spec: WindowSpec) -> WeekWindow:
    """A window spec as a :class:`WeekWindow`; ``ValueError`` for a bad part (see :func:`_spec_error`)."""
    error = _spec_error(spec)
    if error is not None:
        raise ValueError(error[1])
    if isinstance(spec, str):
        return WeekWindow.daily(_window(spec))
    days = parse_days(spec.days) if spec.days is not None else ALL_DAYS
    holidays = (spec.holidays,) if spec.holidays is not None else ()
    return WeekWindow(tuple(_window(h) for h in spec.hours), days, holidays)


def _spec_error(spec: WindowSpec) -> tuple[str, str] | None:
    """``(field suffix, reason)`` of the first bad part of a window spec, or None."""
    if isinstance(spec, str):
        try:
            _window(spec)
        except ValueError as exc:
            return "", str(exc)
        return None
    for i, text in enumerate(spec.hours):
        try:
            _window(text)
        except ValueError as exc:
            return f".hours[{i}]", str(exc)
    if spec.days is not None:
        try:
            parse_days(spec.days)
        except ValueError as exc:
            return ".days", str(exc)
    if spec.holidays is not None and (reason := holiday_calendar_error(spec.holidays)) is not None:
        return ".holidays", reason
    return None


def _match_key(channel: Channel, country: str | None, place: PhonePlace | None) -> tuple[str, str, str]:
    """(profile country, number's country, number's region) as override matching uses them ('' = none)."""
    if place is None or channel not in PHONE_CHANNELS:
        return (country or "").upper(), "", ""
    return (country or "").upper(), place.country or "", place.region or ""


@lru_cache(maxsize=4096)
def _applicable(
    policy: Policy, channel: Channel, country: str, phone_country: str, region: str
) -> tuple[tuple[WeekWindow, ...], tuple[tuple[int, timedelta], ...]]:
    countries = tuple(c for c in (country, phone_country) if c)
    windows: list[WeekWindow] = []
    caps: list[tuple[int, timedelta]] = []
    for override in policy.overrides:
        if not override.applies(countries, region or None):
            continue
        window = override.windows.parsed(channel)
        if window is not None and window not in windows:
            windows.append(window)
        cap = override.caps.get(channel)
        if cap is not None:
            caps.append((cap.limit, timedelta(days=cap.days)))
    if not windows:
        base = policy.windows.parsed(channel)
        if base is not None:
            windows.append(base)
    return tuple(windows), tuple(caps)


def policy_version(data: bytes) -> str:
    """``"sha256:"`` + the hex SHA-256 digest of the policy file's bytes (API.md, "Policy")."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


T = TypeVar("T")


def decode_toml(
    data: bytes, type_: type[T], source: str, error: Callable[[str, str, str], Exception] | None = None
) -> T:
    """Decode a TOML file's bytes into ``type_``; every problem raises ``error`` (``PolicyError`` by
    default) with the file, the field path and the reason. UTF-8 is checked before msgspec sees the
    bytes, so the wording does not depend on msgspec's version (0.22 raised UnicodeDecodeError for bad
    UTF-8, 0.23 raises DecodeError)."""
    fail: Callable[[str, str, str], Exception] = error or PolicyError
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(source, "$", f"not valid UTF-8: {exc}") from None
    try:
        return msgspec.toml.decode(text, type=type_)
    except msgspec.ValidationError as exc:
        reason, sep, where = str(exc).rpartition(" - at `")
        if sep and where.endswith("`"):
            if where.startswith("key` in `"):  # a bad key of a table: "... - at `key` in `$.a.b`"
                where, reason = where[len("key` in `") :], f"{reason} (a key)"
            raise fail(source, where[:-1], reason) from None
        raise fail(source, "$", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise fail(source, "$", f"not valid TOML: {exc}") from None


def _known_country(code: str) -> bool:
    import pycountry  # imported lazily: only policy loading needs it

    return pycountry.countries.get(alpha_2=code) is not None


def _known_region(code: str) -> bool:
    import pycountry

    return pycountry.subdivisions.get(code=code) is not None  # type: ignore[no-untyped-call]


def _check_spec(spec: WindowSpec, source: str, field: str) -> WeekWindow:
    error = _spec_error(spec)
    if error is not None:
        raise PolicyError(source, field + error[0], error[1])
    return _week_window(spec)


def _validate(policy: Policy, source: str) -> None:
    _validate_retention(policy, source)
    for channel in CHANNELS:
        spec = policy.windows.get(channel)
        if spec is not None:
            _check_spec(spec, source, f"$.windows.{channel}")

    seen: dict[tuple[str, str, str], int] = {}  # (window | cap, country or region, channel) -> override
    for i, override in enumerate(policy.overrides):
        where = f"$.overrides[{i}]"
        if not override.countries and not override.regions:
            raise PolicyError(source, where, "an override must name countries or regions (or both)")
        for j, country in enumerate(override.countries):
            if not _known_country(country):
                raise PolicyError(
                    source, f"{where}.countries[{j}]", f"unknown ISO 3166-1 alpha-2 code {country!r}"
                )
        for j, region in enumerate(override.regions):
            if not _known_region(region):
                raise PolicyError(
                    source, f"{where}.regions[{j}]", f"unknown ISO 3166-2 subdivision code {region!r}"
                )
        defined = [c for c in CHANNELS if override.windows.get(c) is not None]
        capped = [c for c in CHANNELS if override.caps.get(c) is not None]
        if not defined and not capped:
            raise PolicyError(
                source, f"{where}.windows", "an override must set at least one channel window or cap"
            )
        places = (*override.countries, *override.regions)
        for channel in defined:
            field = f"{where}.windows.{channel}"
            spec = override.windows.get(channel)
            assert spec is not None
            narrow = _check_spec(spec, source, field)
            base = policy.windows.parsed(channel)
            if base is not None and not base.covers(narrow):
                raise PolicyError(
                    source,
                    field,
                    f"override window {narrow} widens the base window {base} for {channel}"
                    "; overrides may only narrow",
                )
            _claim(seen, ("window", channel), places, i, source, field)
        for channel in capped:
            _claim(seen, ("cap", channel), places, i, source, f"{where}.caps.{channel}")


def _validate_retention(policy: Policy, source: str) -> None:
    """The decision log also keeps the reservations of campaigns without an end: pruning them while
    a cap window could still count them would let caps be exceeded, so it must outlast the longest
    cap window plus the grace."""
    longest = max(
        max((w for _, w in policy.cap_rules()), default=timedelta(0)),
        policy.longest_channel_cap(),
        timedelta(days=7),  # a customer's own max_per_week
    )
    retention = policy.retention
    needed = longest + timedelta(days=retention.reservation_grace_days)
    if timedelta(days=retention.decisions_days) <= needed:
        raise PolicyError(
            source,
            "$.retention.decisions_days",
            f"must be more than the longest cap window plus reservation_grace_days ({needed.days} days)",
        )


def _claim(
    seen: dict[tuple[str, str, str], int],
    what: tuple[str, str],
    places: tuple[str, ...],
    index: int,
    source: str,
    field: str,
) -> None:
    kind, channel = what
    for place in places:
        earlier = seen.get((kind, place, channel))
        if earlier is not None:
            raise PolicyError(
                source, field, f"{place} {channel} {kind} is already set by $.overrides[{earlier}]"
            )
        seen[(kind, place, channel)] = index


def parse_policy(data: bytes, source: str) -> Policy:
    """Decode and validate a policy file's bytes; ``source`` (usually the path) names it in errors.

    Raises :class:`PolicyError` for bad TOML, unknown or missing fields, wrong types, out-of-range
    values, malformed or empty windows, bad day names, unknown countries, subdivisions or holiday
    calendars, overrides that widen a window and overrides that set the same thing twice.
    """
    policy = decode_toml(data, Policy, source)
    _validate(policy, source)
    return policy


def load_policy(data: bytes, source: str) -> LoadedPolicy:
    """:func:`parse_policy` plus the version, for the service layer (pure: the caller reads the file)."""
    return LoadedPolicy(policy=parse_policy(data, source), version=policy_version(data), source=source)
