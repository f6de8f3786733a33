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
    sms = "08:00-21:00"

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
    countries = ["PL", "RO", "GR"]
    windows = { voice = "09:00-20:00" }

Overrides only narrow. An override window for a channel that has a base window must lie inside it
(as a set of local times of day); an override may also give a window to a channel that has none in
``[windows]`` (any window narrows "always"). A (country, channel) pair may be set by one override only.
Widening, overlapping overrides, unknown countries and empty windows (start = end) are load errors.

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

from prefcenter.domain.model import CHANNELS, Channel
from prefcenter.domain.timewindows import Window

__all__ = [
    "Caps",
    "ChannelRates",
    "ChannelWindows",
    "ExtraCap",
    "LoadedPolicy",
    "Override",
    "Policy",
    "PolicyError",
    "TransactionalRules",
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


class ChannelWindows(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per channel, the local wall-clock window ``"HH:MM-HH:MM"`` it may be used in (None: any time)."""

    email: str | None = None
    sms: str | None = None
    push: str | None = None
    voice: str | None = None
    whatsapp: str | None = None

    def get(self, channel: Channel) -> str | None:
        value: str | None = getattr(self, channel)
        return value

    def parsed(self, channel: Channel) -> Window | None:
        text = self.get(channel)
        return None if text is None else _window(text)


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


class Override(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Stricter windows for customers in some countries (ISO 3166-1 alpha-2)."""

    countries: Annotated[tuple[CountryCode, ...], msgspec.Meta(min_length=1)]
    windows: ChannelWindows


class Policy(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    caps: Caps
    windows: ChannelWindows
    transactional: TransactionalRules
    rates: ChannelRates
    overrides: tuple[Override, ...] = ()

    def window_for(self, channel: Channel, country: str | None) -> Window | None:
        """The effective window of ``channel`` for a customer in ``country``, after overrides
        (None: the channel may be used at any local time)."""
        return _window_table(self).get((channel, (country or "").upper()), self.windows.parsed(channel))

    def cap_rules(self) -> tuple[tuple[int, timedelta], ...]:
        """The policy's marketing caps as ``(limit, window)`` pairs."""
        return self.caps.rules()


class LoadedPolicy(msgspec.Struct, frozen=True):
    """A validated policy with its version (``sha256:`` + hex digest of the file bytes) and source."""

    policy: Policy
    version: str
    source: str


@lru_cache(maxsize=1024)
def _window(text: str) -> Window:
    return Window.parse(text)


@lru_cache(maxsize=64)
def _window_table(policy: Policy) -> dict[tuple[str, str], Window | None]:
    table: dict[tuple[str, str], Window | None] = {}
    for override in policy.overrides:
        for channel in CHANNELS:
            window = override.windows.parsed(channel)
            if window is not None:
                for country in override.countries:
                    table[(channel, country)] = window
    return table


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
            raise fail(source, where[:-1], reason) from None
        raise fail(source, "$", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise fail(source, "$", f"not valid TOML: {exc}") from None


def _known_country(code: str) -> bool:
    import pycountry  # imported lazily: only policy loading needs it

    return pycountry.countries.get(alpha_2=code) is not None


def _validate(policy: Policy, source: str) -> None:
    for channel in CHANNELS:
        text = policy.windows.get(channel)
        if text is not None:
            try:
                _window(text)
            except ValueError as exc:
                raise PolicyError(source, f"$.windows.{channel}", str(exc)) from None

    seen: dict[tuple[str, str], int] = {}
    for i, override in enumerate(policy.overrides):
        where = f"$.overrides[{i}]"
        for j, country in enumerate(override.countries):
            if not _known_country(country):
                raise PolicyError(
                    source, f"{where}.countries[{j}]", f"unknown ISO 3166-1 alpha-2 code {country!r}"
                )
        defined = [c for c in CHANNELS if override.windows.get(c) is not None]
        if not defined:
            raise PolicyError(source, f"{where}.windows", "an override must set at least one channel window")
        for channel in defined:
            field = f"{where}.windows.{channel}"
            text = override.windows.get(channel)
            assert text is not None
            try:
                narrow = _window(text)
            except ValueError as exc:
                raise PolicyError(source, field, str(exc)) from None
            base = policy.windows.parsed(channel)
            if base is not None and not base.covers(narrow):
                raise PolicyError(
                    source,
                    field,
                    f"override window {text} widens the base window {base} for {channel}"
                    "; overrides may only narrow",
                )
            for country in override.countries:
                earlier = seen.get((country, channel))
                if earlier is not None:
                    raise PolicyError(
                        source, field, f"{country} {channel} is already set by $.overrides[{earlier}]"
                    )
                seen[(country, channel)] = i


def parse_policy(data: bytes, source: str) -> Policy:
    """Decode and validate a policy file's bytes; ``source`` (usually the path) names it in errors.

    Raises :class:`PolicyError` for bad TOML, unknown or missing fields, wrong types, out-of-range
    values, malformed or empty windows, unknown countries and overrides that widen a window.
    """
    policy = decode_toml(data, Policy, source)
    _validate(policy, source)
    return policy


def load_policy(data: bytes, source: str) -> LoadedPolicy:
    """:func:`parse_policy` plus the version, for the service layer (pure: the caller reads the file)."""
    return LoadedPolicy(policy=parse_policy(data, source), version=policy_version(data), source=source)
