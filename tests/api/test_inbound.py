"""Inbound SMS keywords and email events, and the suppression endpoints (API.md "Inbound events";
COMPLIANCE E23, E24, E26, edge case 15). The issue-16 revocation tests (stop words anywhere, voice
marketing, review deadlines) are in test_revocation.py."""

from __future__ import annotations

from typing import Any

import pytest

from prefcenter.services.inbound import keyword, normalise
from tests.api.test_approvals import approve, campaign, customer
from tests.conftest import PROFILE, Api, query


async def sms(api: Api, text: str, sender: str = "+48600100200") -> Any:
    r = await api.client.post(
        "/v1/inbound/sms", json={"from": sender, "text": text}, headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text
    return r.json()


async def events(api: Api, customer_id: str | None = None) -> list[dict[str, Any]]:
    q = f"?customer_id={customer_id}&limit=1000" if customer_id else "?limit=1000"
    r = await api.client.get(f"/v1/consent-events{q}", headers=api.as_("auditor"))
    return list(r.json()["events"])


@pytest.mark.parametrize(
    "text",
    [
        "STOP",
        "Stop.",
        "stop please",
        " Opt Out ",
        "opt-out",
        "ＳＴＯＰ",
        "revoke",
        "UNSUBSCRIBE",
        "end",
        "quit",
        "cancel",
        "StopAll",
        "OPTOUT!",
        "please stop",
        "please stop texting me",
        "I want to unsubscribe",
        "help stop",
        "start? no, STOP",
        "the end",
        "can you opt-out me",
    ],
)
def test_stop_variants(text: str) -> None:
    """COMPLIANCE E23 and edge 15: revocation words in any case and punctuation, as any word of the
    normalised text (issue 16: fail closed), winning over START and HELP."""
    assert keyword(text) == "stop"


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Ending soon?", "none"),
        ("Stopping by later", "none"),
        ("unsubscribed?", "none"),
        ("", "none"),
        ("start", "start"),
        ("UNSTOP", "start"),
        ("please start", "none"),
        ("help me", "help"),
        ("HELP", "help"),
        ("I need help", "none"),
        ("Arrêter", "none"),
        ("stopp", "none"),
    ],
)
def test_other_keywords(text: str, action: str) -> None:
    """COMPLIANCE E26: START, UNSTOP and HELP count only as the first word."""
    assert keyword(text) == action


def test_normalise() -> None:
    assert normalise("  Opt-Out,  now! ") == "optout now"
    assert normalise("ＳＴＯＰ") == "stop"


async def test_stop_suppresses_and_withdraws_in_one_go(api: Api) -> None:
    """COMPLIANCE E23/E24: STOP suppresses SMS for the number, withdraws SMS marketing of every customer
    with it (channel null, source sms_keyword, actor system), and answers one confirmation without
    marketing; the gate then denies."""
    await campaign(api)
    await customer(api, "c1", channel="sms")
    await customer(api, "c2", channel="email")
    answer = await sms(api, "Stop.")
    assert (
        answer["action"] == "stop" and "START" in answer["reply"] and "offer" not in answer["reply"].lower()
    )
    prefs1 = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))).json()
    prefs2 = (await api.client.get("/v1/customers/c2/preferences", headers=api.as_("marketing"))).json()
    assert prefs1["channel"] is None and prefs2["channel"] == "email"
    ev = await events(api, "c1")
    supp = [e for e in ev if e["subject"] == "suppression:sms"]
    assert len(supp) == 1 and supp[0]["source"] == "sms_keyword" and supp[0]["actor"] == "system"
    assert supp[0]["value"]["suppressed"] is True and supp[0]["value"]["reason"] == "sms_keyword"
    assert "+48" not in str(supp[0])
    withdraw = [e for e in ev if e["subject"] == "channel:sms" and e["action"] == "withdraw"]
    assert withdraw and withdraw[0]["source"] == "sms_keyword"
    assert [e["subject"] for e in await events(api, "c2")].count("suppression:sms") == 1  # same number
    # a repeated STOP changes nothing and writes no event
    n = len(await events(api))
    assert (await sms(api, "STOP"))["action"] == "stop"
    assert len(await events(api)) == n
    # choosing sms again is denied: the number is suppressed
    await customer(api, "c1", channel="sms")
    r = await approve(api, ["c1"])
    assert r.json()["decisions"][0]["reason"] == "suppressed"
    # START lifts the suppression (the customer must still choose a channel: c1 still has sms)
    assert (await sms(api, "start"))["action"] == "start"
    r = await approve(api, ["c1"])
    assert r.json()["decisions"][0]["verdict"] == "allow"


async def test_stop_from_unknown_number_still_suppresses(api: Api) -> None:
    """API.md: STOP suppresses SMS for that number, known or not; the event has no customer."""
    assert (await sms(api, "stop", "+48600100999"))["action"] == "stop"
    r = await api.client.get("/v1/suppressions?channel=sms", headers=api.as_("admin"))
    assert len(r.json()["suppressions"]) == 1
    ev = [e for e in await events(api) if e["subject"] == "suppression:sms"][-1]
    assert ev["customer_id"] is None and ev["customer_ref"] is None
    # a customer created later with that number is denied suppressed
    await campaign(api)
    await customer(api, "c9", {**PROFILE, "contacts": {"sms": "+48600100999"}}, channel="sms")
    assert (await approve(api, ["c9"])).json()["decisions"][0]["reason"] == "suppressed"


async def test_help_reply(api: Api) -> None:
    """COMPLIANCE E26: program name, help contact, frequency, "Msg & data rates may apply", how to stop."""
    answer = await sms(api, "Help!")
    assert answer["action"] == "help"
    reply = answer["reply"]
    assert (
        "prefcenter" in reply and "http://127.0.0.1:8000" in reply and "Msg & data rates may apply" in reply
    )
    assert "frequency" in reply.lower() and "STOP" in reply
    assert await sms(api, "Ending soon?") == {"action": "none", "reply": ""}


async def test_email_bounce_and_complaint(api: Api) -> None:
    """A permanent bounce suppresses the address (source bounce); a temporary one changes nothing; a
    complaint suppresses and withdraws email marketing (source complaint)."""
    await campaign(api)
    await customer(api, "c1")
    url = "/v1/inbound/email-events"
    h = api.as_("marketing")
    r = await api.client.post(
        url, json={"type": "bounce", "address": "OLA@example.pl", "permanent": False}, headers=h
    )
    assert r.json() == {"action": "none", "customers": 0}
    r = await api.client.post(
        url, json={"type": "bounce", "address": "OLA@example.pl", "permanent": True}, headers=h
    )
    assert r.json() == {"action": "suppressed", "customers": 1}
    assert (await approve(api, ["c1"])).json()["decisions"][0]["reason"] == "suppressed"
    prefs = (await api.client.get("/v1/customers/c1/preferences", headers=h)).json()
    assert prefs["channel"] == "email"  # a bounce withdraws nothing
    r = await api.client.post(url, json={"type": "complaint", "address": "ola@example.pl"}, headers=h)
    assert r.status_code == 200
    prefs = (await api.client.get("/v1/customers/c1/preferences", headers=h)).json()
    assert prefs["channel"] is None
    sources = [(e["subject"], e["source"]) for e in await events(api, "c1")]
    assert ("suppression:email", "bounce") in sources and ("channel:email", "complaint") in sources
    r = await api.client.post(url, json={"type": "spam", "address": "x@y.z"}, headers=h)
    assert r.status_code == 400


async def test_suppression_admin_endpoints(api: Api) -> None:
    """PUT / DELETE by address (admin only), each a ledger event with source admin; GET for admin and
    auditor lists refs only."""
    await customer(api, "c1")
    path = "/v1/suppressions/email/ola@example.pl"
    assert (await api.client.put(path, headers=api.as_("marketing"))).status_code == 403
    assert (await api.client.put(path, headers=api.as_("admin"))).status_code == 201
    assert (await api.client.put(path, headers=api.as_("admin"))).status_code == 200
    listed = (await api.client.get("/v1/suppressions", headers=api.as_("auditor"))).json()["suppressions"]
    assert len(listed) == 1 and listed[0]["channel"] == "email" and listed[0]["reason"] == "admin"
    assert "ola" not in str(listed)
    assert (await api.client.get("/v1/suppressions", headers=api.as_("marketing"))).status_code == 403
    assert (await api.client.get("/v1/suppressions?channel=fax", headers=api.as_("admin"))).status_code == 400
    assert (await api.client.delete(path, headers=api.as_("admin"))).status_code == 204
    assert (await api.client.delete(path, headers=api.as_("admin"))).status_code == 404
    ev = [e for e in await events(api, "c1") if e["subject"] == "suppression:email"]
    assert [(e["source"], e["value"]["suppressed"]) for e in ev] == [("admin", True), ("admin", False)]
    verify = (await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))).json()
    assert verify["ok"] is True


def _review_rows(api: Api) -> list[tuple[str, str, str]]:
    return query(api, "SELECT channel, address_ref, text FROM inbound_review ORDER BY id")  # type: ignore[return-value]


async def test_unmatched_text_is_kept_for_review_and_erased_with_the_customer(api: Api) -> None:
    """COMPLIANCE item 23 / edge 15: other text (here Romanian "unsubscribe") answers none, changes nothing,
    and is kept for a person to review, under the number's keyed hash; erasure removes it."""
    await customer(api, "c1", {**PROFILE, "contacts": {"sms": "+48600100200"}}, channel="sms")
    before = await events(api)
    assert await sms(api, "DEZABONARE") == {"action": "none", "reply": ""}
    assert await events(api) == before
    (row,) = _review_rows(api)
    assert row[0] == "sms" and row[2] == "DEZABONARE" and "+48" not in row[1]
    assert (await sms(api, "   "))["action"] == "none"
    assert len(_review_rows(api)) == 1  # nothing to review in a blank text
    r = await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))
    assert r.status_code == 204
    assert _review_rows(api) == []


async def test_inbound_sms_sender_must_be_e164(api: Api) -> None:
    """Issue 10: `from: "0740011122"` was accepted; E.164 only, like contacts (it would never meet them)."""
    for sender in ("0740011122", "48600100200", "+48 600 100 200", "+48600100200\n"):
        r = await api.client.post("/v1/inbound/sms", json={"from": sender, "text": "STOP"}, headers=api.as_("marketing"))
        assert r.status_code == 400, sender
        assert [e["field"] for e in r.json()["errors"]] == ["from"]
