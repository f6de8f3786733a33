"""The send-approval gate (prefcenter.domain.engine): API.md "Send approval — the gate".

One test (at least) per row of the decision table, per verdict, for transactional topics, deferral
semantics, caps and the batch path. The customer is in Europe/Warsaw (CET = UTC+1 in November).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prefcenter.domain.engine import HORIZON, Send, decide, decide_batch, longest_cap_window
from prefcenter.domain.model import REASONS, VERDICTS, CampaignView, CustomerState, Decision
from prefcenter.domain.policy import LoadedPolicy, PolicyError, load_policy, parse_policy

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BYTES = (ROOT / "policies" / "default.toml").read_bytes()
POLICY = load_policy(DEFAULT_BYTES, "policies/default.toml")

AT = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)  # 13:00 in Warsaw
Item = tuple[str, CustomerState | None, list[Send]]


def email(*instants: datetime) -> list[Send]:
    """Reservations on the email channel."""
    return [(i, "email") for i in instants]


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def customer(**changes: Any) -> CustomerState:
    base: dict[str, Any] = {
        "customer_id": "c1",
        "timezone": "Europe/Warsaw",
        "country": "PL",
        "channel": "email",
        "addresses": frozenset({"email", "sms"}),
        "suppressed": frozenset(),
        "subscribed": True,
        "quiet_hours": None,
        "max_per_week": None,
        "paused_until": None,
    }
    base.update(changes)
    return CustomerState(**base)


def campaign(**changes: Any) -> CampaignView:
    base: dict[str, Any] = {
        "campaign_id": "black-friday",
        "topic": "promotions",
        "category": "marketing",
        "channels": ("email", "sms"),
        "send_by": None,
    }
    base.update(changes)
    return CampaignView(**base)


def policy_with(old: str, new: str) -> LoadedPolicy:
    text = DEFAULT_BYTES.decode()
    assert old in text
    return load_policy(text.replace(old, new, 1).encode(), "edited.toml")


def check(
    state: CustomerState | None,
    camp: CampaignView | None = None,
    at: datetime = AT,
    sends: list[datetime] | list[Send] | None = None,
    policy: Any = POLICY,
) -> Decision:
    """decide() and decide_batch() must agree; return the decision. A bare instant in ``sends`` is a
    reservation on the customer's channel."""
    camp = camp or campaign()
    own = (state.channel if state is not None else None) or "email"
    pairs: list[Send] = [s if isinstance(s, tuple) else (s, own) for s in sends or []]
    one = decide(state, pairs, camp, at, policy, customer_id="c1")
    batch = decide_batch([("c1", state, pairs)], camp, at, policy)
    assert batch == [one]
    return one


# --- vocabulary ---------------------------------------------------------------------------------------


def test_reason_codes_and_verdicts_are_exactly_the_contracts() -> None:
    """API.md: changing a documented reason code is a breaking change."""
    assert set(REASONS) == {
        "unknown_customer", "suppressed", "no_channel", "channel_not_offered", "no_address",
        "topic_not_subscribed", "paused", "quiet_hours", "frequency_cap", "allowed", "expired",
        "not_confirmed",  # issue 13's double opt-in: added after the others, none changed
    }  # fmt: skip
    assert REASONS[-1] == "not_confirmed"
    assert VERDICTS == ("allow", "defer", "deny")


def test_decision_encodes_as_the_api_decision_object() -> None:
    """API.md: {"customer_id", "verdict", "reason", "channel", "not_before"}, times in UTC with Z."""
    decision = check(customer(quiet_hours=("22:00", "07:00")), at=utc("2026-11-22T21:30:00Z"))
    assert msgspec.json.decode(msgspec.json.encode(decision)) == {
        "customer_id": "c1",
        "verdict": "defer",
        "reason": "quiet_hours",
        "channel": "email",
        "not_before": "2026-11-23T06:00:00Z",
    }


# --- the table, row by row ----------------------------------------------------------------------------


def test_expired_when_at_is_send_by() -> None:
    """API.md: at or after send_by, every decision is deny `expired`."""
    camp = campaign(send_by=AT)
    assert check(customer(), camp) == Decision("c1", "deny", "expired", None, None)
    assert check(None, camp).reason == "expired"
    assert check(customer(), campaign(send_by=AT + timedelta(microseconds=1))).reason == "allowed"


def test_expired_applies_to_every_recipient_of_a_batch() -> None:
    camp = campaign(send_by=AT - timedelta(days=1))
    items: list[Item] = [
        ("a", customer(customer_id="a"), []),
        ("b", None, []),
        ("c", customer(channel=None), []),
    ]
    assert [d.reason for d in decide_batch(items, camp, AT, POLICY)] == ["expired"] * 3
    assert [d.customer_id for d in decide_batch(items, camp, AT, POLICY)] == ["a", "b", "c"]


def test_rule_1_unknown_customer() -> None:
    """API.md rule 1: no such customer (or erased) -> deny unknown_customer."""
    assert check(None) == Decision("c1", "deny", "unknown_customer", None, None)


def test_rule_2_suppressed_address() -> None:
    """API.md rule 2 (COMPLIANCE item 18: an objection stops every later send)."""
    decision = check(customer(suppressed=frozenset({"email"})))
    assert decision == Decision("c1", "deny", "suppressed", "email", None)


def test_rule_2_checks_the_chosen_channel_even_when_not_offered() -> None:
    """API.md: the channel (and so the address rule 2 checks) is the chosen one, offered or not."""
    state = customer(channel="push", addresses=frozenset({"push"}), suppressed=frozenset({"push"}))
    assert check(state).reason == "suppressed"


def test_rule_2_ignores_suppression_of_other_channels() -> None:
    assert check(customer(suppressed=frozenset({"sms"}))).reason == "allowed"


def test_rule_3_no_channel() -> None:
    """API.md rule 3: a marketing topic and no chosen channel (a new customer gets nothing)."""
    assert check(customer(channel=None)) == Decision("c1", "deny", "no_channel", None, None)


def test_rule_4_channel_not_offered() -> None:
    """API.md rule 4: no fallback to another channel for marketing."""
    state = customer(channel="push", addresses=frozenset({"push", "email"}))
    assert check(state) == Decision("c1", "deny", "channel_not_offered", "push", None)


def test_rule_5_no_address() -> None:
    """API.md rule 5: a chosen channel whose contact was dropped stays chosen and answers no_address."""
    state = customer(channel="sms", addresses=frozenset({"email"}))
    assert check(state) == Decision("c1", "deny", "no_address", "sms", None)


def test_rule_6_topic_not_subscribed() -> None:
    assert check(customer(subscribed=False)) == Decision("c1", "deny", "topic_not_subscribed", "email", None)


def test_rule_7_paused_defers_until_paused_until() -> None:
    until = AT + timedelta(days=2, hours=3, microseconds=5)
    decision = check(customer(paused_until=until))
    assert decision == Decision("c1", "defer", "paused", "email", until)


def test_rule_7_paused_until_now_is_over() -> None:
    assert check(customer(paused_until=AT)).reason == "allowed"


def test_rule_7_paused_beyond_send_by_denies() -> None:
    """API.md: a deferral instant at or after send_by is a deny with the same reason."""
    until = AT + timedelta(days=3)
    assert check(customer(paused_until=until), campaign(send_by=until)) == Decision(
        "c1", "deny", "paused", "email", None
    )


def test_rule_7_paused_beyond_the_horizon_denies() -> None:
    """Deferral looks ahead HORIZON (400 days); a pause beyond that is a deny (documented)."""
    assert timedelta(days=400) == HORIZON
    assert check(customer(paused_until=AT + HORIZON)).verdict == "deny"
    inside = AT + HORIZON - timedelta(seconds=1)
    assert check(customer(paused_until=inside)) == Decision("c1", "defer", "paused", "email", inside)


def test_rule_8_quiet_hours_defer() -> None:
    """API.md rule 8; COMPLIANCE edge 1: 23:30 local waits until 07:00 the next local day."""
    decision = check(customer(quiet_hours=("22:00", "07:00")), at=utc("2026-11-22T22:30:00Z"))
    assert decision == Decision("c1", "defer", "quiet_hours", "email", utc("2026-11-23T06:00:00Z"))


def test_rule_8_outside_the_channel_window() -> None:
    """API.md rule 8: outside the policy's window for the channel (sms 08:00-21:00; COMPLIANCE item 22)."""
    state = customer(channel="sms", timezone="America/Los_Angeles", country="US")
    assert check(state, at=utc("2026-11-21T04:59:59Z")).verdict == "allow"  # 20:59:59 PST
    assert check(state, at=utc("2026-11-21T05:00:00Z")) == Decision(
        "c1", "defer", "quiet_hours", "sms", utc("2026-11-21T16:00:00Z")
    )


def test_rule_8_country_override_narrows_voice() -> None:
    """policies/default.toml: voice 09:00-20:00 for PL, RO, GR; others keep 08:00-21:00."""
    at = utc("2026-11-23T07:30:00Z")  # 08:30 in Warsaw and Berlin
    camp = campaign(channels=("voice",))
    pl = customer(channel="voice", addresses=frozenset({"voice"}))
    de = customer(channel="voice", addresses=frozenset({"voice"}), country="DE", timezone="Europe/Berlin")
    assert check(pl, camp, at) == Decision("c1", "defer", "quiet_hours", "voice", utc("2026-11-23T08:00:00Z"))
    assert check(de, camp, at).verdict == "allow"


def test_rule_8_window_that_never_opens_denies() -> None:
    """COMPLIANCE edge 6: quiet hours covering the whole sms window: held nowhere, so deny."""
    state = customer(channel="sms", quiet_hours=("07:00", "22:00"))
    assert check(state) == Decision("c1", "deny", "quiet_hours", "sms", None)


def test_rule_9_frequency_cap_defer() -> None:
    """API.md rule 9: 1 per 24 hours; free again when the earlier send leaves the window."""
    sends = [AT - timedelta(hours=4)]
    assert check(customer(), sends=sends) == Decision(
        "c1", "defer", "frequency_cap", "email", AT + timedelta(hours=20)
    )


def test_rule_9_later_reservations_count() -> None:
    """API.md: every reservation counts, whether earlier or later than `at`."""
    sends = [AT + timedelta(hours=8)]
    assert check(customer(), sends=sends) == Decision(
        "c1", "defer", "frequency_cap", "email", AT + timedelta(hours=32)
    )


def test_rule_9_window_is_half_open() -> None:
    """A send at s lies in the window ending at t when t - W < s <= t."""
    assert check(customer(), sends=[AT - timedelta(hours=24)]).verdict == "allow"
    assert check(customer(), sends=[AT + timedelta(hours=24)]).verdict == "allow"
    assert check(customer(), sends=[AT - timedelta(hours=24) + timedelta(microseconds=1)]).verdict == "defer"


def test_rule_9_weekly_cap_counts_three() -> None:
    sends = [AT - timedelta(days=d) for d in (6, 4, 2)]
    assert check(customer(), sends=sends) == Decision(
        "c1", "defer", "frequency_cap", "email", AT + timedelta(days=1)
    )
    assert check(customer(), sends=sends[1:]).verdict == "allow"


def test_rule_9_customers_own_weekly_cap() -> None:
    """API.md: max_per_week is the customer's own cap in any rolling 7 days."""
    sends = [AT - timedelta(days=3)]
    assert check(customer(), sends=sends).verdict == "allow"
    assert check(customer(max_per_week=1), sends=sends) == Decision(
        "c1", "defer", "frequency_cap", "email", AT + timedelta(days=4)
    )


def test_rule_9_deferral_past_send_by_denies() -> None:
    sends = [AT - timedelta(hours=4)]
    camp = campaign(send_by=AT + timedelta(hours=20))
    assert check(customer(), camp, sends=sends) == Decision("c1", "deny", "frequency_cap", "email", None)


def test_rule_10_allowed() -> None:
    assert check(customer()) == Decision("c1", "allow", "allowed", "email", None)


# --- precedence and deferral --------------------------------------------------------------------------


def test_first_failing_rule_decides_deny_before_defer() -> None:
    state = customer(subscribed=False, paused_until=AT + timedelta(days=1), quiet_hours=("12:00", "14:00"))
    assert check(state).reason == "topic_not_subscribed"


def test_paused_reason_wins_but_not_before_honours_quiet_hours() -> None:
    """API.md: not_before is when 7, 8 and 9 all pass; the reason is the rule that failed at `at`."""
    state = customer(paused_until=utc("2026-11-25T22:00:00Z"), quiet_hours=("22:00", "07:00"))
    assert check(state) == Decision("c1", "defer", "paused", "email", utc("2026-11-26T06:00:00Z"))


def test_cap_deferral_landing_in_quiet_hours_moves_to_their_end() -> None:
    state = customer(quiet_hours=("22:00", "07:00"))
    sends = [utc("2026-11-21T21:30:00Z")]  # free again at 22:30 local on the 22nd: quiet hours
    decision = check(state, at=utc("2026-11-22T10:00:00Z"), sends=sends)
    assert decision == Decision("c1", "defer", "frequency_cap", "email", utc("2026-11-23T06:00:00Z"))


def test_quiet_hours_deferral_moves_past_a_later_reservation() -> None:
    state = customer(quiet_hours=("22:00", "07:00"))
    decision = check(state, at=utc("2026-11-22T21:30:00Z"), sends=[utc("2026-11-23T09:00:00Z")])
    assert decision == Decision("c1", "defer", "quiet_hours", "email", utc("2026-11-24T09:00:00Z"))


def test_cap_and_window_combined_with_extra_caps() -> None:
    """A policy may add caps ([[caps.extra]]); all caps hold together."""
    policy = policy_with("per_week = 3", "per_week = 3\n[[caps.extra]]\nlimit = 4\nhours = 720")
    sends = [AT - timedelta(days=d) for d in (29, 20, 11)]
    assert check(customer(), sends=sends).verdict == "allow"
    sends.append(AT - timedelta(days=3))
    assert check(customer(), sends=sends, policy=policy) == Decision(
        "c1", "defer", "frequency_cap", "email", AT + timedelta(days=1)
    )
    assert longest_cap_window(policy) == timedelta(hours=720)
    assert longest_cap_window(POLICY) == timedelta(days=30)  # the shipped FR voice cap
    assert longest_cap_window(policy_with("days = 30", "days = 3")) == timedelta(days=7)


def test_not_before_is_aware_utc() -> None:
    decision = check(customer(quiet_hours=("12:00", "14:00")))
    assert decision.not_before is not None and decision.not_before.tzinfo is UTC


def test_at_in_another_offset_is_the_same_instant() -> None:
    """API.md: any RFC 3339 offset is accepted on the way in."""
    from zoneinfo import ZoneInfo

    local = utc("2026-11-22T22:30:00Z").astimezone(ZoneInfo("Asia/Tokyo"))
    decision = check(customer(quiet_hours=("22:00", "07:00")), at=local)
    assert decision.not_before == utc("2026-11-23T06:00:00Z")


def test_retry_excluding_own_reservation_is_allowed_again() -> None:
    """API.md "Reservations": a retry does not count its own reservation: it returns the same allow."""
    first = check(customer())
    assert first.verdict == "allow"
    retry = check(customer(), at=AT + timedelta(minutes=5))
    assert retry == first
    # Counting its own reservation it would be capped: the caller must exclude it.
    assert check(customer(), at=AT + timedelta(minutes=5), sends=[AT]).reason == "frequency_cap"


def test_retry_at_a_new_instant_rechecks_rules_1_to_8_only() -> None:
    """API.md "Reservations": a retry re-checks rules 1-8 at the new `at` and returns the same allow.

    Own reservation at AT; another campaign reserved AT + 25 h (fine: 25 h apart). Retrying at AT + 2 h
    is 23 h from the other reservation: without retry=True rule 9 would defer it.
    """
    others = email(AT + timedelta(hours=25))
    later = AT + timedelta(hours=2)
    assert check(customer(), sends=others).verdict == "allow"
    assert check(customer(), at=later, sends=others).reason == "frequency_cap"
    retried = decide(customer(), others, campaign(), later, POLICY, retry=True)
    assert retried == Decision("c1", "allow", "allowed", "email", None)
    batch = decide_batch(
        [("c1", customer(), others), ("c2", customer(customer_id="c2"), others)],
        campaign(),
        later,
        POLICY,
        retries={"c1"},
    )
    assert [(d.customer_id, d.reason) for d in batch] == [("c1", "allowed"), ("c2", "frequency_cap")]
    # Rules 1-8 are still re-checked: a retry inside quiet hours is not allowed.
    quiet = customer(quiet_hours=("14:00", "16:00"))
    assert decide(quiet, others, campaign(), later, POLICY, retry=True).reason == "quiet_hours"


# --- transactional topics -----------------------------------------------------------------------------


TX = campaign(topic="receipts", category="transactional", channels=("email", "sms"))


def test_transactional_uses_chosen_channel_when_offered() -> None:
    assert check(customer(channel="sms"), TX) == Decision("c1", "allow", "allowed", "sms", None)


def test_transactional_falls_back_in_offered_order() -> None:
    state = customer(channel="sms", suppressed=frozenset({"sms"}))
    assert check(state, TX).channel == "email"
    state = customer(channel="push", addresses=frozenset({"push", "sms"}))
    assert check(state, TX) == Decision("c1", "allow", "allowed", "sms", None)


def test_transactional_every_offered_contact_suppressed() -> None:
    state = customer(channel=None, suppressed=frozenset({"email", "sms"}))
    assert check(state, TX) == Decision("c1", "deny", "suppressed", "email", None)


def test_transactional_no_address() -> None:
    state = customer(channel="push", addresses=frozenset({"push"}))
    assert check(state, TX) == Decision("c1", "deny", "no_address", None, None)


def test_transactional_skips_rules_3_4_6_7_9_and_8_by_default() -> None:
    state = customer(
        channel=None,
        subscribed=False,
        paused_until=AT + timedelta(days=30),
        quiet_hours=("00:00", "23:59"),
        max_per_week=1,
    )
    sends = [AT - timedelta(minutes=m) for m in (1, 2, 3, 4)]
    assert check(state, TX, sends=sends) == Decision("c1", "allow", "allowed", "email", None)
    sms_only = campaign(category="transactional", channels=("sms",))
    assert check(state, sms_only, at=utc("2026-11-22T23:30:00Z")).verdict == "allow"


def test_transactional_quiet_hours_when_the_policy_says_so() -> None:
    policy = policy_with("quiet_hours = false", "quiet_hours = true")
    state = customer(quiet_hours=("12:00", "14:00"), paused_until=AT + timedelta(days=3))
    assert check(state, TX, policy=policy) == Decision(
        "c1", "defer", "quiet_hours", "email", utc("2026-11-22T13:00:00Z")
    )
    assert (
        check(customer(channel="sms"), TX, at=utc("2026-11-22T22:00:00Z"), policy=policy).verdict == "allow"
    )


def test_transactional_windows_when_the_policy_says_so() -> None:
    policy = policy_with("windows = false", "windows = true")
    state = customer(channel="sms")
    assert check(state, TX, at=utc("2026-11-22T22:00:00Z"), policy=policy) == Decision(
        "c1", "defer", "quiet_hours", "sms", utc("2026-11-23T07:00:00Z")
    )
    assert check(customer(quiet_hours=("12:00", "14:00")), TX, policy=policy).verdict == "allow"


def test_transactional_window_past_send_by_denies() -> None:
    policy = policy_with("windows = false", "windows = true")
    camp = campaign(category="transactional", channels=("sms",), send_by=utc("2026-11-23T07:00:00Z"))
    decision = check(customer(channel="sms"), camp, at=utc("2026-11-22T22:00:00Z"), policy=policy)
    assert decision == Decision("c1", "deny", "quiet_hours", "sms", None)


# --- batch --------------------------------------------------------------------------------------------


def test_batch_keeps_request_order_and_ids() -> None:
    """API.md: decisions come in the order of customer_ids."""
    items: list[Item] = [
        ("z", customer(customer_id="z", channel=None), []),
        ("a", None, []),
        ("m", customer(customer_id="m"), email(AT - timedelta(hours=1))),
        ("b", customer(customer_id="b", quiet_hours=("12:00", "14:00")), []),
        ("q", customer(customer_id="q"), []),
    ]
    decisions = decide_batch(items, campaign(), AT, POLICY)
    assert [(d.customer_id, d.verdict, d.reason) for d in decisions] == [
        ("z", "deny", "no_channel"),
        ("a", "deny", "unknown_customer"),
        ("m", "defer", "frequency_cap"),
        ("b", "defer", "quiet_hours"),
        ("q", "allow", "allowed"),
    ]


def test_batch_accepts_a_plain_policy_and_an_iterator() -> None:
    items: Iterator[Item] = iter([("c1", customer(), [])])
    assert decide_batch(items, campaign(), AT, POLICY.policy) == [Decision("c1", "allow", "allowed", "email")]


def test_batch_shares_zone_work_but_not_answers_across_zones() -> None:
    at = utc("2026-11-22T21:30:00Z")  # 22:30 Warsaw, 16:30 New York
    items: list[Item] = [
        ("w", customer(customer_id="w", quiet_hours=("22:00", "07:00")), []),
        ("n", customer(customer_id="n", quiet_hours=("22:00", "07:00"), timezone="America/New_York"), []),
        ("w2", customer(customer_id="w2", quiet_hours=("22:00", "07:00")), []),
    ]
    assert [d.verdict for d in decide_batch(items, campaign(), at, POLICY)] == ["defer", "allow", "defer"]


# --- inputs and purity --------------------------------------------------------------------------------


def test_naive_at_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        decide(customer(), [], campaign(), datetime(2026, 11, 22, 12), POLICY)
    with pytest.raises(ValueError, match="aware"):
        decide_batch([], campaign(), datetime(2026, 11, 22, 12), POLICY)


def test_unknown_zone_raises_instead_of_guessing() -> None:
    state = customer(timezone="Mars/Base", quiet_hours=("22:00", "07:00"))
    with pytest.raises(ValueError, match="unknown time zone"):
        decide(state, [], campaign(), AT, POLICY)


def test_an_unreadable_stored_state_denies_that_recipient_only() -> None:
    """Issue 9: a stored value the rules cannot evaluate (an unknown zone, quiet hours "21:00\\n" kept
    from before the anchors were fixed, a naive pause) fails closed for that recipient, as a deny of the
    rule that cannot be evaluated; the rest of the batch is decided as if it were not there."""
    good = customer()
    items: list[Item] = [
        ("c0", good, []),
        ("c1", customer(customer_id="c1", timezone="Mars/Base", quiet_hours=("22:00", "07:00")), []),
        ("c2", customer(customer_id="c2", quiet_hours=("21:00\n", "08:00")), []),
        ("c3", customer(customer_id="c3", paused_until=datetime(2026, 12, 1)), []),  # naive
        ("c4", good, []),
    ]
    decisions = decide_batch(items, campaign(), AT, POLICY)
    expected = decide(good, [], campaign(), AT, POLICY)
    assert [(d.verdict, d.reason, d.not_before) for d in decisions] == [
        (expected.verdict, expected.reason, expected.not_before),
        ("deny", "quiet_hours", None),
        ("deny", "quiet_hours", None),
        ("deny", "paused", None),
        (expected.verdict, expected.reason, expected.not_before),
    ]
    assert [d.customer_id for d in decisions] == ["c0", "c1", "c2", "c3", "c4"]


def test_empty_quiet_hours_raise() -> None:
    """API.md: start = end is a 400 at the API; the engine refuses rather than guess."""
    with pytest.raises(ValueError, match="start and end must differ"):
        decide(customer(quiet_hours=("22:00", "22:00")), [], campaign(), AT, POLICY)


def test_bad_policy_file_fails_with_file_field_and_reason(tmp_path: Path) -> None:
    """DESIGN.md "Policies are data": a bad policy fails at load naming the file, the field and why."""
    path = tmp_path / "strict.toml"
    path.write_bytes(DEFAULT_BYTES.replace(b'voice = "09:00-20:00"', b'voice = "07:30-20:00"'))
    with pytest.raises(PolicyError) as caught:
        parse_policy(path.read_bytes(), str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: $.overrides[0].windows.voice: ")
    assert "widens the base window 08:00-21:00" in message
