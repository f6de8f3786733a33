"""The gate and the called party's time, weekdays, holidays and per-channel caps (issue 16, items 3 and 4).

COMPLIANCE item 22 and edge 5 (calls and texts in the number's zone, Florida's 20:00, the most
restrictive intersection), item 31 (France's telephone rule), edge 6 (no window before send_by is a
deny), API.md "Compliance to the letter". Every decision is checked with decide() and decide_batch().
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefcenter.domain.engine import Send, decide, decide_batch
from prefcenter.domain.model import CampaignView, Channel, CustomerState, Decision, PhonePlace
from prefcenter.domain.phones import place_of
from prefcenter.domain.policy import load_policy

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BYTES = (ROOT / "policies" / "default.toml").read_bytes()
POLICY = load_policy(DEFAULT_BYTES, "policies/default.toml")
LOS_ANGELES = "+12135550199"
MIAMI = "+13055550123"
PARIS = "+33612345678"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def state(channel: Channel, phone: str | None = None, **changes: Any) -> CustomerState:
    base: dict[str, Any] = {
        "customer_id": "c1",
        "timezone": "Europe/Warsaw",
        "country": "PL",
        "channel": channel,
        "addresses": frozenset({channel, "email"}),
        "subscribed": True,
        "places": {channel: place_of(phone)} if phone is not None else {},
    }
    base.update(changes)
    return CustomerState(**base)


def campaign(
    *channels: Channel, category: str = "marketing", send_by: datetime | None = None
) -> CampaignView:
    return CampaignView("camp", "promotions", category, channels, send_by)  # type: ignore[arg-type]


def check(
    customer: CustomerState, camp: CampaignView, at: datetime, sends: list[Send] | None = None
) -> Decision:
    one = decide(customer, sends or [], camp, at, POLICY, customer_id="c1")
    assert decide_batch([("c1", customer, sends or [])], camp, at, POLICY) == [one]
    return one


def defer(at: str, channel: Channel, reason: str = "quiet_hours") -> Decision:
    return Decision("c1", "defer", reason, channel, utc(at))  # type: ignore[arg-type]


# --- COMPLIANCE item 22, edge 5: the called party's time ----------------------------------------------


def test_compliance_22_sms_follows_the_numbers_zone_not_only_the_profiles() -> None:
    """COMPLIANCE item 22 (issue 16 reproduction 3): profile Europe/Warsaw, SMS +12135550199 at
    2026-07-15T12:00:00Z (05:00 in Los Angeles) was allowed; it defers to 08:00 Los Angeles (15:00Z)."""
    customer = state("sms", LOS_ANGELES)
    assert check(customer, campaign("sms"), utc("2026-07-15T12:00:00Z")) == defer(
        "2026-07-15T15:00:00Z", "sms"
    )
    assert check(customer, campaign("sms"), utc("2026-07-15T15:00:00Z")).verdict == "allow"
    # without the place (the store did not know the number) only the profile's zone counts, as before
    unplaced = state("sms")
    assert check(unplaced, campaign("sms"), utc("2026-07-15T12:00:00Z")).verdict == "allow"


def test_compliance_22_florida_ends_at_20() -> None:
    """COMPLIANCE item 22, "Florida ends at 20:00" (reproduction 3): +13055550123 in New York's zone at
    20:30 local defers to 08:00 the next day; 19:59 is allowed; the override is matched by the number's
    region, for sms and voice."""
    for channel in ("sms", "voice"):
        customer = state(channel, MIAMI, timezone="America/New_York", country="US")
        at = utc("2026-07-16T00:30:00Z")  # 20:30 EDT
        assert check(customer, campaign(channel), at) == defer("2026-07-16T12:00:00Z", channel)
        assert check(customer, campaign(channel), utc("2026-07-15T23:59:00Z")).verdict == "allow"
    whatsapp = state("whatsapp", MIAMI, timezone="America/New_York", country="US")
    assert check(whatsapp, campaign("whatsapp"), utc("2026-07-16T00:30:00Z")).verdict == "allow"
    region_only = state("sms", timezone="America/New_York", country="US")
    region_only = CustomerState(
        **{**_fields(region_only), "places": {"sms": PhonePlace(("America/New_York",), "US", "US-FL")}}
    )
    assert check(region_only, campaign("sms"), utc("2026-07-16T00:30:00Z")).verdict == "defer"


def _fields(customer: CustomerState) -> dict[str, Any]:
    return {f: getattr(customer, f) for f in customer.__struct_fields__}


def test_compliance_edge_5_quiet_hours_hold_in_every_zone() -> None:
    """COMPLIANCE edge 5: the customer's quiet hours hold in the profile's zone and the number's zone."""
    at = utc("2026-07-15T12:00:00Z")  # 14:00 Warsaw, 05:00 Los Angeles
    in_phone_zone = state("sms", LOS_ANGELES, quiet_hours=("22:00", "09:00"))
    assert check(in_phone_zone, campaign("sms"), at) == defer("2026-07-15T16:00:00Z", "sms")
    in_profile_zone = state("sms", LOS_ANGELES, quiet_hours=("17:00", "19:00"))
    assert check(in_profile_zone, campaign("sms"), at) == defer("2026-07-15T17:00:00Z", "sms")


def test_compliance_edge_5_every_applicable_override_holds_at_once() -> None:
    """COMPLIANCE edge 5, "the most restrictive intersection": a Polish profile (voice 09:00-20:00) with
    a French voice number gets both the PL override and France's rule, in both zones."""
    customer = state("voice", PARIS)
    # Monday 2026-06-08 09:30 Paris and Warsaw (both UTC+2): PL allows, France opens at 10:00
    assert check(customer, campaign("voice"), utc("2026-06-08T07:30:00Z")) == defer(
        "2026-06-08T08:00:00Z", "voice"
    )
    # Saturday: France is closed until Monday 10:00
    assert check(customer, campaign("voice"), utc("2026-06-13T09:00:00Z")) == defer(
        "2026-06-15T08:00:00Z", "voice"
    )
    # 19:30 Monday: France allows until 20:00 and PL until 20:00: allowed
    assert check(customer, campaign("voice"), utc("2026-06-08T17:30:00Z")).verdict == "allow"


def test_compliance_edge_5_many_zones_of_a_non_geographic_number() -> None:
    """A toll-free number belongs to many zones (Guam to Pago Pago): all of them must allow. 12:00Z is
    22:00 in Guam; the first instant that is 08:00-21:00 everywhere is 08:00 Guam (22:00Z, 11:00 in
    Pago Pago, 19:30 in St John's)."""
    toll_free = place_of("+18005550100")
    assert {"Pacific/Guam", "Pacific/Pago_Pago", "America/St_Johns"} <= set(toll_free.zones)
    customer = state("sms", timezone="America/New_York", country="US", places={"sms": toll_free})
    assert check(customer, campaign("sms"), utc("2026-07-15T12:00:00Z")) == defer(
        "2026-07-15T22:00:00Z", "sms"
    )
    ends = campaign("sms", send_by=utc("2026-07-15T22:00:00Z"))
    assert check(customer, ends, utc("2026-07-15T12:00:00Z")) == Decision("c1", "deny", "quiet_hours", "sms")


def test_compliance_edge_5_email_ignores_phone_places() -> None:
    customer = state("email", places={"sms": place_of(LOS_ANGELES)}, quiet_hours=("22:00", "07:00"))
    assert check(customer, campaign("email"), utc("2026-07-15T12:00:00Z")).verdict == "allow"


def test_compliance_22_transactional_windows_use_the_numbers_zone_when_the_policy_says_so() -> None:
    text = DEFAULT_BYTES.decode().replace("windows = false", "windows = true")
    policy = load_policy(text.encode(), "tx.toml")
    customer = state("sms", LOS_ANGELES)
    at = utc("2026-07-15T12:00:00Z")
    tx = campaign("sms", category="transactional")
    assert decide(customer, [], tx, at, policy) == defer("2026-07-15T15:00:00Z", "sms")
    assert decide_batch([("c1", customer, [])], tx, at, policy) == [defer("2026-07-15T15:00:00Z", "sms")]
    assert check(customer, tx, at).verdict == "allow"  # the shipped policy: transactional ignore windows


# --- COMPLIANCE item 31: France ----------------------------------------------------------------------


def french(**changes: Any) -> CustomerState:
    return state("voice", PARIS, timezone="Europe/Paris", country="FR", **changes)


def test_compliance_31_france_weekdays_hours_and_holidays() -> None:
    """COMPLIANCE item 31 (reproduction 4): voice on a Saturday, on Christmas Day, at 13:30 and at 08:30
    all answered allow; each defers to the next allowed instant. Monday 10:00 is allowed."""
    voice = campaign("voice")
    assert check(french(), voice, utc("2026-06-13T09:00:00Z")) == defer("2026-06-15T08:00:00Z", "voice")
    assert check(french(), voice, utc("2026-12-25T10:00:00Z")) == defer("2026-12-28T09:00:00Z", "voice")
    assert check(french(), voice, utc("2026-06-08T11:30:00Z")) == defer("2026-06-08T12:00:00Z", "voice")
    assert check(french(), voice, utc("2026-06-08T06:30:00Z")) == defer("2026-06-08T08:00:00Z", "voice")
    assert check(french(), voice, utc("2026-06-08T08:00:00Z")) == Decision("c1", "allow", "allowed", "voice")
    # a French voice number makes it apply to a customer whose profile is elsewhere
    german = state("voice", PARIS, timezone="Europe/Berlin", country="DE")
    assert check(german, voice, utc("2026-06-13T09:00:00Z")) == defer("2026-06-15T08:00:00Z", "voice")
    # and a Saturday call is denied when the campaign ends before Monday (COMPLIANCE item 31's test)
    weekend = campaign("voice", send_by=utc("2026-06-15T00:00:00Z"))
    assert check(french(), weekend, utc("2026-06-13T09:00:00Z")) == Decision(
        "c1", "deny", "quiet_hours", "voice"
    )


VOICE_WEEKLY = [utc(f"2026-05-{d}T08:00:00Z") for d in (10, 17, 24, 31)]


def test_compliance_31_a_fifth_call_within_30_days() -> None:
    """COMPLIANCE item 31: at most 4 attempts per 30 days; a fifth defers until the oldest leaves the
    window (then Tuesday 10:00 Paris), or is denied when the campaign ends first."""
    sends: list[Send] = [(s, "voice") for s in VOICE_WEEKLY]
    at = utc("2026-06-08T08:00:00Z")
    assert check(french(), campaign("voice"), at, sends) == defer(
        "2026-06-09T08:00:00Z", "voice", "frequency_cap"
    )
    ends = campaign("voice", send_by=utc("2026-06-09T00:00:00Z"))
    assert check(french(), ends, at, sends) == Decision("c1", "deny", "frequency_cap", "voice")
    assert check(french(), campaign("voice"), at, sends[1:]).verdict == "allow"


def test_compliance_31_the_voice_cap_counts_only_voice_reservations() -> None:
    """The per-channel cap counts only that channel's marketing reservations; the policy's caps still
    count them all."""
    at = utc("2026-06-08T08:00:00Z")
    mixed: list[Send] = [(s, "voice") for s in VOICE_WEEKLY[:3]] + [(VOICE_WEEKLY[3], "email")]
    assert check(french(), campaign("voice"), at, mixed).verdict == "allow"
    # the all-channel cap of 1 per 24 hours still counts the email
    recent: list[Send] = [(at - timedelta(hours=2), "email")]
    assert check(french(), campaign("voice"), at, recent).reason == "frequency_cap"
    # a German customer with a German number has no voice cap
    german = state("voice", "+4915112345678", timezone="Europe/Berlin", country="DE")
    assert check(german, campaign("voice"), at, [(s, "voice") for s in VOICE_WEEKLY]).verdict == "allow"


def test_compliance_31_a_retry_does_not_recheck_the_voice_cap() -> None:
    """API.md "Reservations": a retry re-checks rules 1-8 only, per-channel caps included."""
    sends: list[Send] = [(s, "voice") for s in VOICE_WEEKLY]
    at = utc("2026-06-08T08:00:00Z")
    assert decide(french(), sends, campaign("voice"), at, POLICY, retry=True).verdict == "allow"
    batch = decide_batch([("c1", french(), sends)], campaign("voice"), at, POLICY, retries={"c1"})
    assert batch[0].verdict == "allow"


def test_compliance_edge_6_no_common_window_before_send_by_is_a_deny() -> None:
    """COMPLIANCE edge 6: quiet hours, the number's zone and France's rule can leave no slot before
    send_by: the answer is a deny, never a send outside the window."""
    customer = french(quiet_hours=("09:00", "21:00"))  # covers every French calling hour
    decision = check(customer, campaign("voice"), utc("2026-06-08T08:00:00Z"))
    assert decision == Decision("c1", "deny", "quiet_hours", "voice")


# --- marketing-only suppressions (H2's marketing_suppressed) ------------------------------------------


def test_marketing_suppressed_denies_marketing_only() -> None:
    """API.md "Opt-outs belong to the address too": a channel in marketing_suppressed is denied
    marketing with reason `suppressed` (rule 2); transactional messages to it still go."""
    customer = state("sms", marketing_suppressed=frozenset({"sms"}))
    at = utc("2026-07-15T12:00:00Z")
    assert check(customer, campaign("sms", "email"), at) == Decision("c1", "deny", "suppressed", "sms")
    tx = campaign("sms", category="transactional")
    assert check(customer, tx, at) == Decision("c1", "allow", "allowed", "sms")
    other = state("email", marketing_suppressed=frozenset({"sms"}))
    assert check(other, campaign("email"), at).verdict == "allow"


# --- failing closed -------------------------------------------------------------------------------------


def test_an_unreadable_place_denies_that_recipient_only() -> None:
    """A stored place naming an unknown zone fails closed (deny quiet_hours) for that recipient only."""
    bad = state("sms", places={"sms": PhonePlace(("Mars/Base",), "US", None)}, customer_id="bad")
    good = state("sms", LOS_ANGELES)
    at = utc("2026-07-15T15:00:00Z")
    decisions = decide_batch(
        [("good", good, []), ("bad", bad, []), ("good2", good, [])], campaign("sms"), at, POLICY
    )
    assert [(d.verdict, d.reason) for d in decisions] == [
        ("allow", "allowed"),
        ("deny", "quiet_hours"),
        ("allow", "allowed"),
    ]


def test_at_is_utc_and_decisions_name_utc() -> None:
    decision = check(state("sms", LOS_ANGELES), campaign("sms"), utc("2026-07-15T12:00:00Z"))
    assert decision.not_before is not None and decision.not_before.tzinfo is UTC
