"""Which rule instance decided a gate decision: API.md "Auditor's answers" (``explain``), issue 13 item 3.

A pure function of the same inputs as :func:`prefcenter.domain.engine.decide` plus its answer, kept
apart from the engine so that the hot path is untouched: the engine says *which rule* failed (the
reason code), this module says *which instance* of it, and the numbers an auditor needs:

- ``paused`` -> ``{"rule": "pause", "until": "<paused_until>"}``;
- ``quiet_hours`` -> ``{"rule": "customer_quiet_hours", "window": "21:00-08:00", "zone": "Europe/Warsaw"}``
  when the local time at ``at`` is inside the customer's own quiet hours, else
  ``{"rule": "channel_window", "window": ..., "zone": ...}`` for the policy's window for the channel
  that excludes it. ``window`` is as the policy writes it: ``"08:00-21:00"``, or for a window table
  ``{"hours": [...], "days": "mon-fri", "holidays": "FR"}`` (keys the policy leaves out are left out).
  When an override supplied the window, ``"country"`` (``"FR"``: the profile's country or the phone
  number's) or ``"region"`` (``"US-FL"``: where the number is registered) names it. ``zone`` is the
  zone in which the window fails: the profile's zone first, then (sms, voice, whatsapp) each other zone
  of the number's place (COMPLIANCE item 22: the called party's time). **When both fail, the
  customer's quiet hours win** (in any zone): the customer's own choice is the more specific answer to
  "why not now", and it would still stop the message if the policy's window were widened. Among several
  windows that fail (several overrides apply), the first in policy order is named, and within it the
  first zone in the order above.
- ``frequency_cap`` -> ``{"rule": "policy_cap", "window": "24h" | "7d" | "<hours>h", "limit", "held"}``
  for the policy's caps (``per_day``, ``per_week``, ``[[caps.extra]]``, all channels together),
  ``{"rule": "customer_cap", "limit", "held"}`` for the customer's ``max_per_week``, or
  ``{"rule": "policy_cap", "window": "<days>d", "limit", "held", "channel", "country" | "region"}``
  for an override's per-channel cap (counting that channel's reservations only). ``held`` is how many
  of the customer's other reservations the fullest window of that length containing ``at`` already
  holds (so ``held >= limit``: one more would exceed it). When several caps fail, the first in the
  engine's order is named: per day, per week, the extra caps, the customer's, then per-channel caps.
- anything else (``allowed``, the deny rules 1-6, ``expired``, and any reason added later, such as
  ``not_confirmed``) -> ``{"rule": "<reason>"}``.

The explanation is recomputed from the inputs, never guessed: if the inputs cannot be read (a stored
value the engine itself fails closed on) or, impossibly, no instance fails, the answer is the reason
itself. :func:`explain_text` is the decision log's form: JSON text, or None when it is ``{"rule":
reason}`` (the log stores NULL for that). :class:`Explainer` does the same for many decisions of one
campaign at one instant, memoised where the answer depends only on settings many customers share.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Concatenate, Final, ParamSpec

import msgspec

from prefcenter.domain.engine import PolicyLike, Send, _place, _quiet_window, _rules, _zones
from prefcenter.domain.ledger import format_instant
from prefcenter.domain.model import PHONE_CHANNELS, CampaignView, Channel, CustomerState, Decision, PhonePlace
from prefcenter.domain.policy import Caps, Policy, WindowSpec, _match_key, _week_window
from prefcenter.domain.timewindows import DAY_US, HOUR_US, schedule_for, to_us, zone_timeline

__all__ = ["EXPLAINED_REASONS", "Explainer", "SendUs", "explain", "explain_text", "held_in_window"]

#: The reasons whose explanation says more than the reason itself.
EXPLAINED_REASONS: Final = frozenset({"paused", "quiet_hours", "frequency_cap"})
_WEEK_US: Final = 7 * DAY_US
_encode = msgspec.json.Encoder().encode
_P = ParamSpec("_P")


def explain(
    decision: Decision,
    customer: CustomerState | None,
    sends: Sequence[Send],
    campaign: CampaignView,
    at: datetime,
    policy: PolicyLike,
    *,
    retry: bool = False,
) -> dict[str, Any]:
    """The rule instance that decided ``decision`` (see the module docstring), from the inputs the
    engine decided it with: ``sends`` are the customer's OTHER marketing reservations, ``retry`` as for
    :func:`~prefcenter.domain.engine.decide` (a retry is never capped)."""
    if decision.reason != "frequency_cap":  # only the caps look at the reservations
        return _explain(decision, customer, (), campaign.category == "marketing", to_us(at), policy, retry)
    sends_us = [(to_us(s), c) for s, c in sends]
    return _explain(decision, customer, sends_us, campaign.category == "marketing", to_us(at), policy, retry)


def _as_log_text(
    explained: Callable[Concatenate[Decision, _P], dict[str, Any]],
) -> Callable[Concatenate[Decision, _P], str | None]:
    """``explained`` as the decision log stores its answer (one wrapper, so the two can never drift)."""

    def text(decision: Decision, /, *args: _P.args, **kwargs: _P.kwargs) -> str | None:
        if decision.reason not in EXPLAINED_REASONS:  # {"rule": reason}: nothing to compute
            return None
        return _text(explained(decision, *args, **kwargs), decision.reason)

    return text


#: :func:`explain` as the decision log stores it: JSON text, or None for ``{"rule": reason}``; called
#: as ``explain_text(decision, customer, sends, campaign, at, policy, retry=...)``.
explain_text = _as_log_text(explain)


#: A reservation as microseconds since the epoch and its channel.
SendUs = tuple[int, str]


def _explain(
    decision: Decision,
    customer: CustomerState | None,
    sends_us: Sequence[SendUs],
    marketing: bool,
    at_us: int,
    policy: PolicyLike,
    retry: bool,
) -> dict[str, Any]:
    reason = decision.reason
    channel = decision.channel
    if reason not in EXPLAINED_REASONS or customer is None or channel is None:
        return {"rule": reason}
    try:
        if reason == "paused":
            return _paused(customer) or {"rule": reason}
        if reason == "quiet_hours":
            return _rule8(customer, channel, marketing, at_us, _rules(policy).policy) or {"rule": reason}
        if not marketing or retry:  # rule 9 does not apply
            return {"rule": reason}
        return _rule9(customer, channel, sends_us, at_us, _rules(policy).policy) or {"rule": reason}
    except Exception:  # an input the engine failed closed on (e.g. an unknown zone): the reason it gave
        return {"rule": reason}


def _text(found: dict[str, Any], reason: str) -> str | None:
    if len(found) == 1 and found.get("rule") == reason:
        return None
    return _encode(found).decode()


class Explainer:
    """:func:`explain` / :func:`explain_text` for many decisions of one campaign at one instant.

    Each explanation is computed (and encoded) once per distinct value of what it depends on: rule 8's
    on (zone, channel, country, quiet hours, phone place), a pause's on its instant, a cap's on the
    customer's own cap and the instants of their other reservations (with their channels, country and
    phone place when an override caps the channel). Answers are shared between decisions: do not
    mutate them.
    """

    __slots__ = ("_at_us", "_marketing", "_memo", "_policy", "_rules")

    def __init__(self, campaign: CampaignView, at: datetime, policy: PolicyLike) -> None:
        self._at_us = to_us(at)
        self._marketing = campaign.category == "marketing"
        self._policy = policy
        self._rules = _rules(policy)
        self._memo: dict[object, tuple[dict[str, Any], str | None]] = {}

    def explain(
        self, decision: Decision, customer: CustomerState | None, sends: Sequence[Send], retry: bool = False
    ) -> dict[str, Any]:
        """:func:`explain` for this campaign, instant and policy."""
        return self.find(decision, customer, [(to_us(s), c) for s, c in sends], retry)[0]

    def text(
        self, decision: Decision, customer: CustomerState | None, sends: Sequence[Send], retry: bool = False
    ) -> str | None:
        """:func:`explain_text` for this campaign, instant and policy."""
        if decision.reason not in EXPLAINED_REASONS:
            return None
        sends_us = [(to_us(s), c) for s, c in sends] if decision.reason == "frequency_cap" else []
        return self.find(decision, customer, sends_us, retry)[1]

    def find(
        self, decision: Decision, customer: CustomerState | None, sends_us: Sequence[SendUs], retry: bool
    ) -> tuple[dict[str, Any], str | None]:
        """The explanation and its log text, with the other reservations in microseconds (only the
        caps read them)."""
        reason = decision.reason
        channel = decision.channel
        key: object
        if reason not in EXPLAINED_REASONS or customer is None or channel is None:
            key = reason
        elif reason == "quiet_hours":
            places = customer.places
            place = places.get(channel) if places and channel in PHONE_CHANNELS else None  # _place
            key = (reason, customer.timezone, channel, customer.country, customer.quiet_hours, place)
        elif reason == "paused":
            key = (reason, customer.paused_until)
        elif retry or not self._marketing:
            key = (reason, True)
        elif channel in self._rules.cap_channels and self._rules.channel_caps(customer, channel):
            place = _place(customer, channel)
            key = (reason, customer.max_per_week, channel, customer.country, place, tuple(sorted(sends_us)))
        else:
            key = (reason, customer.max_per_week, tuple(sorted([u for u, _ in sends_us])))
        hit = self._memo.get(key)
        if hit is None:
            found = _explain(decision, customer, sends_us, self._marketing, self._at_us, self._policy, retry)
            hit = self._memo[key] = (found, _text(found, reason))
        return hit


# --- rule 7 -----------------------------------------------------------------------------------------


def _paused(customer: CustomerState) -> dict[str, Any] | None:
    if customer.paused_until is None:
        return None
    return {"rule": "pause", "until": format_instant(customer.paused_until)}


# --- rule 8 -----------------------------------------------------------------------------------------


def _window_json(spec: WindowSpec) -> str | dict[str, Any]:
    """A window as the policy writes it: the string, or the table's keys that are set."""
    if isinstance(spec, str):
        return spec
    out: dict[str, Any] = {"hours": list(spec.hours)}
    if spec.days is not None:
        out["days"] = spec.days
    if spec.holidays is not None:
        out["holidays"] = spec.holidays
    return out


def _windows(
    policy: Policy, channel: Channel, country: str, place: PhonePlace | None
) -> list[tuple[WindowSpec, dict[str, str]]]:
    """The windows rule 8 intersects for ``channel`` (as :meth:`Policy.windows_for` finds them), each
    with what supplied it: ``{"country": ...}`` or ``{"region": ...}`` for an override, ``{}`` for the
    base window."""
    own_country, phone_country, region = _match_key(channel, country, place)
    countries = tuple(c for c in (own_country, phone_country) if c)
    found: list[tuple[WindowSpec, dict[str, str]]] = []
    seen = []
    for override in policy.overrides:
        if not override.applies(countries, region or None):
            continue
        spec = override.windows.get(channel)
        if spec is None:
            continue
        parsed = _week_window(spec)
        if parsed in seen:
            continue
        seen.append(parsed)
        by_country = next((c for c in countries if c in override.countries), None)
        found.append((spec, {"country": by_country} if by_country is not None else {"region": region}))
    if not found:
        base = policy.windows.get(channel)
        if base is not None:
            found.append((base, {}))
    return found


def _rule8(
    customer: CustomerState, channel: Channel, marketing: bool, at_us: int, policy: Policy
) -> dict[str, Any] | None:
    locals_ = [(zone, at_us + zone_timeline(zone).offset_us(at_us)) for zone in _zones(customer, channel)]
    quiet = customer.quiet_hours
    if quiet is not None and (marketing or policy.transactional.quiet_hours):
        window = _quiet_window(*quiet)
        for zone, local in locals_:
            if window.contains_tod_us(local % DAY_US):
                return {"rule": "customer_quiet_hours", "window": f"{quiet[0]}-{quiet[1]}", "zone": zone}
    if not (marketing or policy.transactional.windows):
        return None
    for spec, source in _windows(policy, channel, customer.country, _place(customer, channel)):
        schedule = schedule_for(_week_window(spec), None)
        for zone, local in locals_:
            if not schedule.allows_local(local):
                return {"rule": "channel_window", "window": _window_json(spec), "zone": zone, **source}
    return None


# --- rule 9 -----------------------------------------------------------------------------------------


def held_in_window(sends_us: Sequence[int], window_us: int, at_us: int) -> int:
    """The most of the sorted ``sends_us`` that one window ``(t - W, t]`` containing ``at_us`` holds
    (``at_us <= t < at_us + W``; the count only rises at a send, so those ends and ``at`` suffice)."""
    lo = bisect_right(sends_us, at_us - window_us)
    hi = bisect_right(sends_us, at_us + window_us - 1)
    if hi - lo < 2:  # none or one send near: the window holding it (if any) holds that many
        return hi - lo
    best = 0
    for t in (at_us, *[s for s in sends_us[lo:hi] if s > at_us]):
        n = bisect_right(sends_us, t) - bisect_right(sends_us, t - window_us)
        if n > best:
            best = n
    return best


def _held_at_least(sends_us: Sequence[int], window_us: int, at_us: int, limit: int) -> int | None:
    """:func:`held_in_window` when it reaches ``limit``, else None (cheaply, when fewer than ``limit``
    sends lie within a window's length of ``at`` on either side)."""
    near = bisect_right(sends_us, at_us + window_us - 1) - bisect_right(sends_us, at_us - window_us)
    if near < limit:
        return None
    held = held_in_window(sends_us, window_us, at_us)
    return held if held >= limit else None


@lru_cache(maxsize=64)
def _policy_caps(caps: Caps) -> tuple[tuple[int, int, str], ...]:
    """The policy's caps over all channels as (limit, window in µs, label), in the engine's order."""
    out: list[tuple[int, int, str]] = []
    if caps.per_day is not None:
        out.append((caps.per_day, DAY_US, "24h"))
    if caps.per_week is not None:
        out.append((caps.per_week, _WEEK_US, "7d"))
    out.extend((extra.limit, extra.hours * HOUR_US, f"{extra.hours}h") for extra in caps.extra)
    return tuple(out)


def _rule9(
    customer: CustomerState, channel: Channel, sends_us: Sequence[SendUs], at_us: int, policy: Policy
) -> dict[str, Any] | None:
    every = sorted([u for u, _ in sends_us])
    for limit, window_us, label in _policy_caps(policy.caps):
        held = _held_at_least(every, window_us, at_us, limit)
        if held is not None:
            return {"rule": "policy_cap", "window": label, "limit": limit, "held": held}
    own = customer.max_per_week
    if own is not None:
        held = _held_at_least(every, _WEEK_US, at_us, own)
        if held is not None:
            return {"rule": "customer_cap", "limit": own, "held": held}
    overrides = policy.overrides
    if not overrides:
        return None
    place = _place(customer, channel)
    own_country, phone_country, region = _match_key(channel, customer.country, place)
    countries = tuple(c for c in (own_country, phone_country) if c)
    on_channel: list[int] | None = None
    for override in overrides:
        cap = override.caps.get(channel)
        if cap is None or not override.applies(countries, region or None):
            continue
        if on_channel is None:
            on_channel = sorted([u for u, c in sends_us if c == channel])
        held = _held_at_least(on_channel, cap.days * DAY_US, at_us, cap.limit)
        if held is not None:
            by_country = next((c for c in countries if c in override.countries), None)
            source = {"country": by_country} if by_country is not None else {"region": region}
            return {
                "rule": "policy_cap",
                "window": f"{cap.days}d",
                "limit": cap.limit,
                "held": held,
                "channel": channel,
                **source,
            }
    return None
