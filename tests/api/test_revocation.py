"""Issue 16, item 2: revocation by any reasonable means (API.md "Compliance to the letter", "Inbound
events"; COMPLIANCE items 23, 24, 26, edge cases 15 and 16).

A stop word as any word of a text is a stop; a stop also suppresses voice marketing to the number; other
texts are kept for review, due 10 US business days after receipt, shown and resolved by `prefcenter
inbound review` and counted by `/metrics` once overdue.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from prefcenter.domain.model import InvalidInput
from prefcenter.services import inbound
from prefcenter.services.errors import Conflict, NotFound
from prefcenter.services.runtime import Runtime
from tests.api.test_gate_concurrency import setup_keys
from tests.conftest import Api, FakeClock, prefs_body, query
from tests.live import serve

NUMBER = "+12135550101"  # Los Angeles
OTHER = "+12135550102"
STRANGER = "+12135550103"
NOON_LA = "2026-11-25T20:00:00Z"  # Wed 12:00 in Los Angeles: inside every window
WEDNESDAY = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York, the day before Thanksgiving
PROVENANCE = {"source": "api", "actor": "agent-17", "notice_version": "2026-10", "evidence": {}}
VOICE_CONTENT = {"voice": {"text": "Hello from prefcenter"}}


def us_profile(number: str) -> dict[str, Any]:
    return {
        "timezone": "America/Los_Angeles",
        "locale": "en",
        "country": "US",
        "contacts": {"email": f"u{number[-4:]}@example.com", "sms": number, "voice": number},
    }


def prefs(channel: str | None) -> dict[str, Any]:
    return prefs_body(channel=channel, quiet_hours=None, max_per_week=None, provenance=PROVENANCE)


async def put_customer(client: httpx.AsyncClient | Any, headers: dict[str, str], cid: str, number: str, channel: str) -> None:
    r = await client.put(f"/v1/customers/{cid}", json=us_profile(number), headers=headers)
    assert r.status_code in (200, 201), r.text
    r = await client.put(f"/v1/customers/{cid}/preferences", json=prefs(channel), headers=headers)
    assert r.status_code == 200, r.text


async def put_campaigns(client: httpx.AsyncClient | Any, headers: dict[str, str]) -> None:
    for cid, topic in (("voice-promo", "promotions"), ("voice-receipt", "order-updates")):
        body = {"topic": topic, "channels": ["voice"], "content": VOICE_CONTENT}
        r = await client.put(f"/v1/campaigns/{cid}", json=body, headers=headers)
        assert r.status_code in (200, 201), r.text


async def dry_run(client: httpx.AsyncClient | Any, headers: dict[str, str], campaign: str, cid: str) -> dict[str, Any]:
    body = {"campaign_id": campaign, "customer_ids": [cid], "dry_run": True, "at": NOON_LA}
    r = await client.post("/v1/approvals", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["decisions"][0])


async def text(client: httpx.AsyncClient | Any, headers: dict[str, str], body: str, sender: str = NUMBER) -> dict[str, Any]:
    r = await client.post("/v1/inbound/sms", json={"from": sender, "text": body}, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def outbox_count(api: Api | Runtime) -> int:
    return int(query(api, "SELECT count(*) FROM outbox")[0][0])


MARKETING = re.compile(r"https?://|offer|sale|discount|%|deal|free|buy", re.IGNORECASE)


def assert_one_confirmation(answer: dict[str, Any]) -> None:
    """COMPLIANCE item 24's no-marketing lint: the confirmation names the program and how to undo it, and
    carries no link and no sales words."""
    assert answer["action"] == "stop"
    reply = answer["reply"]
    assert reply.startswith("prefcenter:") and "START" in reply and "unsubscribed" in reply
    assert not MARKETING.search(reply), reply


# --- COMPLIANCE item 23: the reproduction, on the real server ---------------------------------


async def test_item_23_plain_words_revoke_on_a_real_server(rt: Runtime, clock: FakeClock) -> None:
    """COMPLIANCE item 23 (47 CFR 64.1200(a)(10), FCC 24-24): `{"from":"+12135550101","text":"Please stop
    texting me"}` answered `none` and the customer kept `sms`; "I want to unsubscribe" likewise; the text
    waiting for review had no due date. Now both are stops: channel null, ledger source sms_keyword; and
    "Ending soon?" answers none and is kept, due 10 US business days later (Thanksgiving skipped)."""
    headers = await setup_keys(rt)
    clock.t = WEDNESDAY
    with serve(rt) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            await put_customer(client, headers, "c1", NUMBER, "sms")
            await put_customer(client, headers, "c2", OTHER, "sms")
            before = outbox_count(rt)
            assert_one_confirmation(await text(client, headers, "Please stop texting me"))
            assert_one_confirmation(await text(client, headers, "I want to unsubscribe", OTHER))
            assert outbox_count(rt) == before  # the reply is the only message
            for cid in ("c1", "c2"):
                got = (await client.get(f"/v1/customers/{cid}/preferences")).json()
                assert got["channel"] is None, cid
                ev = (await client.get(f"/v1/consent-events?customer_id={cid}&limit=1000")).json()["events"]
                withdrawn = [e for e in ev if e["subject"] == "channel:sms" and e["action"] == "withdraw"]
                assert [(e["source"], e["actor"]) for e in withdrawn] == [("sms_keyword", "system")]
                supp = [e for e in ev if e["subject"] == "suppression:sms"]
                assert [(e["source"], e["value"]["reason"]) for e in supp] == [("sms_keyword", "sms_keyword")]
            assert withdrawn[0]["evidence"] == {"keyword": "unsubscribe"}
            assert await text(client, headers, "Ending soon?", STRANGER) == {"action": "none", "reply": ""}
            metrics = (await client.get("/metrics")).text
            assert "prefcenter_inbound_review_overdue 0.0" in metrics
            clock.t = datetime(2026, 12, 11, 5, 0, tzinfo=UTC)  # 00:00 on Friday 12-11 in New York
            metrics = (await client.get("/metrics")).text
            assert "prefcenter_inbound_review_overdue 1.0" in metrics
    clock.t = WEDNESDAY
    await rt.store.open()
    try:
        (kept,) = await inbound.review_list(rt)
    finally:
        await rt.store.close()
    assert kept["text"] == "Ending soon?" and kept["received_at"] == "2026-11-25T15:00:00.000000Z"
    assert kept["due"] == "2026-12-10" and kept["overdue"] is False


# --- COMPLIANCE item 24: one confirmation, nothing else -------------------------------------------------


async def test_item_24_a_stop_in_a_sentence_gets_the_one_confirmation(api: Api) -> None:
    """COMPLIANCE item 24 (64.1200(a)(12)): a stop in plain words gets exactly the confirmation text (no
    marketing in it), and no other message is queued; a repeat writes nothing."""
    h = api.as_("marketing")
    await put_customer(api.client, h, "c1", NUMBER, "sms")
    before = outbox_count(api)
    for body in ("STOP.", " Opt Out ", "revoke", "stop please", "please stop texting me"):
        assert_one_confirmation(await text(api.client, h, body))
    assert outbox_count(api) == before


# --- COMPLIANCE item 23, FCC "revoke all": a texted stop reaches voice marketing ------------------------


async def test_item_23_a_texted_stop_denies_voice_marketing_to_the_number(api: Api) -> None:
    """COMPLIANCE item 23 (FCC 24-24, "revoke all"): a texted STOP left voice marketing to the same number
    allowed. Now it adds a marketing-only voice suppression (reason sms_keyword, a ledger event): a
    marketing voice campaign is denied `suppressed` while a transactional voice message still goes; the
    customer's voice choice itself is not withdrawn. START lifts it again (it was the texted stop's)."""
    h = api.as_("marketing")
    await put_campaigns(api.client, h)
    await put_customer(api.client, h, "v1", NUMBER, "voice")
    assert (await dry_run(api.client, h, "voice-promo", "v1"))["verdict"] == "allow"

    assert_one_confirmation(await text(api.client, h, "STOP"))
    listed = (await api.client.get("/v1/suppressions?channel=voice", headers=api.as_("admin"))).json()
    assert [s["reason"] for s in listed["suppressions"]] == ["sms_keyword"]
    ev = (await api.client.get("/v1/consent-events?customer_id=v1", headers=api.as_("auditor"))).json()["events"]
    voice = [e for e in ev if e["subject"] == "suppression:voice"]
    assert [(e["source"], e["value"]["suppressed"], e["value"]["reason"]) for e in voice] == [
        ("sms_keyword", True, "sms_keyword")
    ]
    prefs_now = (await api.client.get("/v1/customers/v1/preferences", headers=h)).json()
    assert prefs_now["channel"] == "voice"  # nothing withdrawn: the suppression denies
    # WAITS FOR H1 (engine honours marketing_suppressed) and H2 (store fills it from marketing-only rows)
    promo = await dry_run(api.client, h, "voice-promo", "v1")
    assert (promo["verdict"], promo["reason"], promo["channel"]) == ("deny", "suppressed", "voice")
    receipt = await dry_run(api.client, h, "voice-receipt", "v1")
    assert (receipt["verdict"], receipt["channel"]) == ("allow", "voice")

    assert (await text(api.client, h, "start"))["action"] == "start"
    listed = (await api.client.get("/v1/suppressions?channel=voice", headers=api.as_("admin"))).json()
    assert listed["suppressions"] == []
    assert (await dry_run(api.client, h, "voice-promo", "v1"))["verdict"] == "allow"
    ev = (await api.client.get("/v1/consent-events?customer_id=v1", headers=api.as_("auditor"))).json()["events"]
    voice = [e for e in ev if e["subject"] == "suppression:voice"]
    assert [(e["source"], e["value"]["suppressed"]) for e in voice] == [("sms_keyword", True), ("sms_keyword", False)]


async def test_item_23_start_leaves_another_voice_suppression(api: Api) -> None:
    """START lifts only the voice suppression a texted stop made: an admin's suppression of the number's
    voice stays (the stop finds it there and adds nothing)."""
    h = api.as_("marketing")
    admin = api.as_("admin")
    assert (await api.client.put(f"/v1/suppressions/voice/{NUMBER}", headers=admin)).status_code == 201
    assert (await text(api.client, h, "please STOP"))["action"] == "stop"
    assert (await text(api.client, h, "START"))["action"] == "start"
    listed = (await api.client.get("/v1/suppressions", headers=admin)).json()["suppressions"]
    assert [(s["channel"], s["reason"]) for s in listed] == [("voice", "admin")]


# --- COMPLIANCE item 26: HELP and START only as the first word -----------------------------------------


async def test_item_26_help_counts_only_as_the_first_word(api: Api) -> None:
    """COMPLIANCE item 26 (CTIA): HELP as the first word answers the help text; "I need help" is no
    keyword (kept for review); "help stop" is a stop: a stop word anywhere wins."""
    h = api.as_("marketing")
    await put_customer(api.client, h, "c1", NUMBER, "sms")
    answer = await text(api.client, h, "help")
    assert answer["action"] == "help" and "Msg & data rates may apply" in answer["reply"]
    assert await text(api.client, h, "I need help") == {"action": "none", "reply": ""}
    assert (await api.client.get("/v1/customers/c1/preferences", headers=h)).json()["channel"] == "sms"
    assert [r["text"] for r in await inbound.review_list(api.rt)] == ["I need help"]
    assert (await text(api.client, h, "help stop"))["action"] == "stop"
    assert (await api.client.get("/v1/customers/c1/preferences", headers=h)).json()["channel"] is None
    assert (await text(api.client, h, "I said start"))["action"] == "none"  # START is first word only
    listed = (await api.client.get("/v1/suppressions?channel=sms", headers=api.as_("admin"))).json()
    assert len(listed["suppressions"]) == 1


# --- COMPLIANCE item 23 / edge 15 / edge 16: review, due dates, resolution, the gauge -------------------


async def test_item_23_edge_16_review_due_dates_and_the_overdue_gauge(api: Api, clock: FakeClock) -> None:
    """COMPLIANCE item 23 / edge 16: a text that matches nothing is kept, due 10 US business days after
    receipt (received Wed 2026-11-25: Thanksgiving skipped, due 2026-12-10, New York dates); the list is
    oldest first with overdue marked; /metrics counts open texts past due, read at scrape time."""
    h = api.as_("marketing")
    clock.t = WEDNESDAY
    assert (await text(api.client, h, "Ending soon?"))["action"] == "none"
    clock.t = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)
    assert (await text(api.client, h, "ARRÊTEZ", OTHER))["action"] == "none"

    def gauge(metrics: str) -> float:
        (value,) = re.findall(r"^prefcenter_inbound_review_overdue (\S+)$", metrics, re.MULTILINE)
        return float(value)

    listed = await inbound.review_list(api.rt)
    assert [(r["text"], r["due"], r["overdue"]) for r in listed] == [
        ("Ending soon?", "2026-12-10", False),
        ("ARRÊTEZ", "2026-12-15", False),
    ]
    assert gauge((await api.client.get("/metrics")).text) == 0
    clock.t = datetime(2026, 12, 11, 4, 59, 59, tzinfo=UTC)  # 23:59:59 on Thursday 12-10 in New York
    assert gauge((await api.client.get("/metrics")).text) == 0
    clock.t = datetime(2026, 12, 11, 5, 0, tzinfo=UTC)
    assert gauge((await api.client.get("/metrics")).text) == 1
    listed = await inbound.review_list(api.rt)
    assert [r["overdue"] for r in listed] == [True, False]
    await inbound.resolve_review(api.rt, listed[0]["id"], "none", "agent-7")
    assert gauge((await api.client.get("/metrics")).text) == 0
    assert [r["text"] for r in await inbound.review_list(api.rt)] == ["ARRÊTEZ"]
    everything = await inbound.review_list(api.rt, resolved=True)
    assert [(r["resolution"], r["resolved_by"], r["overdue"]) for r in everything] == [
        ("none", "agent-7", False),
        (None, None, False),
    ]


async def test_item_23_edge_15_resolving_as_stop_does_what_a_texted_stop_does(api: Api) -> None:
    """COMPLIANCE item 23 / edge 15: a person reads "ARRÊTEZ" as a revocation and resolves it `stop`: the
    number's customers lose sms (source sms_keyword, the person as actor, evidence naming the review), SMS
    and voice marketing to it are suppressed, all with the review marked resolved in one transaction."""
    h = api.as_("marketing")
    await put_customer(api.client, h, "c1", NUMBER, "sms")
    await put_customer(api.client, h, "c2", OTHER, "sms")
    assert (await text(api.client, h, "ARRÊTEZ"))["action"] == "none"
    (row,) = await inbound.review_list(api.rt)
    resolved = await inbound.resolve_review(api.rt, row["id"], "stop", "agent-7")
    assert (resolved["resolution"], resolved["resolved_by"], resolved["customers"], resolved["withdrawn"]) == (
        "stop",
        "agent-7",
        1,
        1,
    )
    assert (await api.client.get("/v1/customers/c1/preferences", headers=h)).json()["channel"] is None
    assert (await api.client.get("/v1/customers/c2/preferences", headers=h)).json()["channel"] == "sms"
    ev = (await api.client.get("/v1/consent-events?customer_id=c1", headers=api.as_("auditor"))).json()["events"]
    withdrawn = [e for e in ev if e["subject"] == "channel:sms" and e["action"] == "withdraw"]
    assert [(e["source"], e["actor"], e["evidence"]) for e in withdrawn] == [
        ("sms_keyword", "agent-7", {"review_id": row["id"], "resolved_by": "agent-7"})
    ]
    listed = (await api.client.get("/v1/suppressions", headers=api.as_("admin"))).json()["suppressions"]
    assert sorted((s["channel"], s["reason"]) for s in listed) == [("sms", "sms_keyword"), ("voice", "sms_keyword")]
    assert await inbound.review_list(api.rt) == []
    # a text already resolved, an unknown one and bad input are refused and change nothing
    with pytest.raises(Conflict):
        await inbound.resolve_review(api.rt, row["id"], "none", "agent-7")
    with pytest.raises(NotFound):
        await inbound.resolve_review(api.rt, 999, "stop", "agent-7")
    with pytest.raises(InvalidInput) as bad:
        await inbound.resolve_review(api.rt, row["id"], "maybe", "agent-7")
    assert [e.field for e in bad.value.errors] == ["as"]
    with pytest.raises(InvalidInput) as bad:
        await inbound.resolve_review(api.rt, row["id"], "stop", "agent 7 <a@b.c>")
    assert [e.field for e in bad.value.errors] == ["by"]
    verify = (await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))).json()
    assert verify["ok"] is True
