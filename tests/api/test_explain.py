"""Explained decisions (API.md "Auditor's answers", issue 13 item 3): ``"explain": true`` on approvals
and sends names the rule instance that decided; the decision log keeps it for every real decision; an
answer without the flag has no ``explain`` key. Every expected explanation is written out by hand."""

from __future__ import annotations

from typing import Any

from tests.api.test_approvals import campaign, customer
from tests.conftest import CAMPAIGN, PROFILE, Api, query

VOICE_CAMPAIGN = {
    "channels": ["email", "sms", "voice"],
    "content": {**CAMPAIGN["content"], "voice": {"text": "Hello from prefcenter"}},
}
DECISION_KEYS = ["customer_id", "verdict", "reason", "channel", "not_before"]


async def ask(
    api: Api, ids: list[str], at: str, *, cid: str = "black-friday", explain: bool | None = True, dry_run: bool = False
) -> dict[str, Any]:
    body: dict[str, Any] = {"campaign_id": cid, "customer_ids": ids, "at": at, "dry_run": dry_run}
    if explain is not None:
        body["explain"] = explain
    r = await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def by_id(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {d["customer_id"]: {k: v for k, v in d.items() if k != "customer_id"} for d in answer["decisions"]}


async def logged(api: Api, cid: str, campaign_id: str | None = None) -> list[dict[str, Any]]:
    params = {"campaign_id": campaign_id} if campaign_id else {}
    r = await api.client.get(f"/v1/customers/{cid}/decisions", params=params, headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    entries: list[dict[str, Any]] = r.json()["decisions"]
    return entries


def defer(reason: str, channel: str, not_before: str, explain: dict[str, Any]) -> dict[str, Any]:
    return {"verdict": "defer", "reason": reason, "channel": channel, "not_before": not_before, "explain": explain}


async def test_customer_quiet_hours_and_the_shipped_sms_window(api: Api) -> None:
    await campaign(api)
    quiet = {"start": "21:00", "end": "08:00"}
    await customer(api, "mine", quiet_hours=quiet)  # email: no channel window
    await customer(api, "both", channel="sms", quiet_hours=quiet)
    await customer(api, "window", channel="sms")
    # 20:30 UTC is 21:30 in Warsaw: inside 21:00-08:00 and outside sms 08:00-21:00
    answer = await ask(api, ["mine", "both", "window"], "2026-11-22T20:30:00Z")
    quiet_explained = {"rule": "customer_quiet_hours", "window": "21:00-08:00", "zone": "Europe/Warsaw"}
    assert by_id(answer) == {
        "mine": defer("quiet_hours", "email", "2026-11-23T07:00:00Z", quiet_explained),
        # both fail: the customer's own quiet hours win
        "both": defer("quiet_hours", "sms", "2026-11-23T07:00:00Z", quiet_explained),
        "window": defer(
            "quiet_hours",
            "sms",
            "2026-11-23T07:00:00Z",
            {"rule": "channel_window", "window": "08:00-21:00", "zone": "Europe/Warsaw"},
        ),
    }
    assert [list(d) for d in answer["decisions"]] == [[*DECISION_KEYS, "explain"]] * 3
    assert answer["summary"] == {"allow": 0, "defer": 3, "deny": 0, "by_reason": {"quiet_hours": 3}}
    # the log keeps the same explanation for the real call
    assert [e["explain"] for e in await logged(api, "mine")] == [quiet_explained]
    assert [e["explain"] for e in await logged(api, "window")] == [
        {"rule": "channel_window", "window": "08:00-21:00", "zone": "Europe/Warsaw"}
    ]


async def test_override_windows_name_their_country_or_region_and_the_failing_zone(api: Api) -> None:
    await campaign(api, "calls", **VOICE_CAMPAIGN)
    florida = {**PROFILE, "timezone": "America/New_York", "country": "US", "contacts": {"sms": "+13055550123"}}
    await customer(api, "fl", florida, channel="sms")
    france = {**PROFILE, "timezone": "Europe/Paris", "country": "FR", "locale": "fr", "contacts": {"voice": "+33612345678"}}
    await customer(api, "fr", france, channel="voice")
    await customer(api, "pl", channel="voice")
    # a Warsaw profile whose sms number is in Los Angeles: the called party's time (COMPLIANCE item 22)
    await customer(api, "la", {**PROFILE, "contacts": {"sms": "+12135550199"}}, channel="sms")

    # 01:30 UTC Monday 23 Nov: 20:30 in New York (Florida's sms window ends at 20:00)
    fl = by_id(await ask(api, ["fl"], "2026-11-23T01:30:00Z", cid="calls"))["fl"]
    assert fl == defer(
        "quiet_hours",
        "sms",
        "2026-11-23T13:00:00Z",
        {"rule": "channel_window", "window": "08:00-20:00", "zone": "America/New_York", "region": "US-FL"},
    )
    # 12:30 UTC Monday: 13:30 in Paris, France's lunch break for telephone canvassing
    fr = by_id(await ask(api, ["fr"], "2026-11-23T12:30:00Z", cid="calls"))["fr"]
    france_window = {"hours": ["10:00-13:00", "14:00-20:00"], "days": "mon-fri", "holidays": "FR"}
    assert fr == defer(
        "quiet_hours",
        "voice",
        "2026-11-23T13:00:00Z",
        {"rule": "channel_window", "window": france_window, "zone": "Europe/Paris", "country": "FR"},
    )
    # 19:30 UTC: 20:30 in Warsaw, inside the base 08:00-21:00 but outside PL's voice 09:00-20:00
    pl = by_id(await ask(api, ["pl"], "2026-11-23T19:30:00Z", cid="calls"))["pl"]
    assert pl == defer(
        "quiet_hours",
        "voice",
        "2026-11-24T08:00:00Z",
        {"rule": "channel_window", "window": "09:00-20:00", "zone": "Europe/Warsaw", "country": "PL"},
    )
    # 12:00 UTC: 13:00 in Warsaw (fine) but 04:00 in Los Angeles, where the number rings
    la = by_id(await ask(api, ["la"], "2026-11-23T12:00:00Z", cid="calls"))["la"]
    assert la == defer(
        "quiet_hours",
        "sms",
        "2026-11-23T16:00:00Z",
        {"rule": "channel_window", "window": "08:00-21:00", "zone": "America/Los_Angeles"},
    )
    entry = (await logged(api, "fr"))[0]
    assert entry["explain"] == {"rule": "channel_window", "window": france_window, "zone": "Europe/Paris", "country": "FR"}
    assert (await logged(api, "fl"))[0]["explain"]["region"] == "US-FL"


async def approve_at(api: Api, campaign_id: str, cid: str, at: str) -> None:
    """A real approval of another campaign: the reservation the caps then count."""
    await campaign(api, campaign_id, **VOICE_CAMPAIGN)
    decision = by_id(await ask(api, [cid], at, cid=campaign_id, explain=None))[cid]
    assert decision["verdict"] == "allow", decision


async def test_caps_say_which_cap_its_window_limit_and_what_it_holds(api: Api) -> None:
    await campaign(api, "today", **VOICE_CAMPAIGN)
    await customer(api, "day")
    await approve_at(api, "earlier", "day", "2026-11-22T10:00:00Z")
    await customer(api, "week")
    for i, day in enumerate(("16", "18", "20")):
        await approve_at(api, f"week-{i}", "week", f"2026-11-{day}T12:00:00Z")
    await customer(api, "own", max_per_week=1)
    await approve_at(api, "own-0", "own", "2026-11-20T12:00:00Z")

    answer = await ask(api, ["day", "week", "own"], "2026-11-22T12:00:00Z", cid="today")
    assert by_id(answer) == {
        "day": defer(
            "frequency_cap",
            "email",
            "2026-11-23T10:00:00Z",
            {"rule": "policy_cap", "window": "24h", "limit": 1, "held": 1},
        ),
        "week": defer(
            "frequency_cap",
            "email",
            "2026-11-23T12:00:00Z",
            {"rule": "policy_cap", "window": "7d", "limit": 3, "held": 3},
        ),
        # 2 days after the last: the policy's caps pass, the customer's own 1 a week does not
        "own": defer(
            "frequency_cap", "email", "2026-11-27T12:00:00Z", {"rule": "customer_cap", "limit": 1, "held": 1}
        ),
    }
    assert [e["explain"] for e in await logged(api, "week", "today")] == [
        {"rule": "policy_cap", "window": "7d", "limit": 3, "held": 3}
    ]
    # the earlier allows are logged as themselves
    assert [e["explain"] for e in await logged(api, "week", "week-0")] == [{"rule": "allowed"}]
    # and stored as NULL (the reason itself), the caps' as JSON text
    stored = query(api, "SELECT campaign_id, explain FROM decisions ORDER BY campaign_id")
    assert dict(stored)["week-0"] is None
    assert dict(stored)["today"] is not None


async def test_a_per_channel_override_cap_names_its_channel_and_country(api: Api) -> None:
    """France: at most 4 calls in any 30 days (policies/default.toml), counting voice only."""
    france = {**PROFILE, "timezone": "Europe/Paris", "country": "FR", "locale": "fr", "contacts": {"voice": "+33612345678"}}
    await customer(api, "fr", france, channel="voice")
    # 09:00 UTC is 10:00 in Paris; Tue 3, Thu 5, Tue 10, Thu 12 November (the 11th is a holiday)
    for i, day in enumerate(("03", "05", "10", "12")):
        await approve_at(api, f"call-{i}", "fr", f"2026-11-{day}T09:00:00Z")
    await campaign(api, "call-4", **VOICE_CAMPAIGN)
    fifth = by_id(await ask(api, ["fr"], "2026-11-16T09:00:00Z", cid="call-4"))["fr"]
    assert fifth == defer(
        "frequency_cap",
        "voice",
        "2026-12-03T09:00:00Z",
        {"rule": "policy_cap", "window": "30d", "limit": 4, "held": 4, "channel": "voice", "country": "FR"},
    )
    assert (await logged(api, "fr", "call-4"))[0]["explain"] == fifth["explain"]


async def test_pause_allowed_and_the_other_reasons_explain_as_themselves(api: Api) -> None:
    await campaign(api)
    await customer(api, "paused", paused_until="2026-11-25T08:00:00Z")
    await customer(api, "ok")
    await customer(api, "none", channel=None, topics=[])
    at = "2026-11-22T12:00:00Z"  # 13:00 in Warsaw
    answer = await ask(api, ["paused", "ok", "none", "ghost"], at)
    assert by_id(answer) == {
        "paused": defer("paused", "email", "2026-11-25T08:00:00Z", {"rule": "pause", "until": "2026-11-25T08:00:00Z"}),
        "ok": {"verdict": "allow", "reason": "allowed", "channel": "email", "not_before": None, "explain": {"rule": "allowed"}},
        "none": {"verdict": "deny", "reason": "no_channel", "channel": None, "not_before": None, "explain": {"rule": "no_channel"}},
        "ghost": {
            "verdict": "deny",
            "reason": "unknown_customer",
            "channel": None,
            "not_before": None,
            "explain": {"rule": "unknown_customer"},
        },
    }
    assert [e["explain"] for e in await logged(api, "paused")] == [{"rule": "pause", "until": "2026-11-25T08:00:00Z"}]
    assert [e["explain"] for e in await logged(api, "ok")] == [{"rule": "allowed"}]
    # asking again (a retry) is the same allow, explained the same
    assert by_id(await ask(api, ["ok"], at))["ok"]["explain"] == {"rule": "allowed"}


async def test_a_deny_that_never_opens_in_time_is_explained_too(api: Api) -> None:
    await campaign(api, "tonight", send_by="2026-11-22T22:00:00Z")
    await customer(api, "late", quiet_hours={"start": "21:00", "end": "08:00"})
    decision = by_id(await ask(api, ["late"], "2026-11-22T20:30:00Z", cid="tonight"))["late"]
    explained = {"rule": "customer_quiet_hours", "window": "21:00-08:00", "zone": "Europe/Warsaw"}
    assert decision == {"verdict": "deny", "reason": "quiet_hours", "channel": "email", "not_before": None, "explain": explained}
    assert [e["explain"] for e in await logged(api, "late")] == [explained]


async def test_without_the_flag_there_is_no_explain_key_and_the_log_still_keeps_it(api: Api) -> None:
    await campaign(api)
    await customer(api, "window", channel="sms")
    await customer(api, "ok")
    at = "2026-11-22T20:30:00Z"
    plain = await ask(api, ["window", "ok"], at, explain=None)
    assert plain["decisions"] == [
        {"customer_id": "window", "verdict": "defer", "reason": "quiet_hours", "channel": "sms", "not_before": "2026-11-23T07:00:00Z"},
        {"customer_id": "ok", "verdict": "allow", "reason": "allowed", "channel": "email", "not_before": None},
    ]
    off = await ask(api, ["window", "ok"], at, explain=False)
    assert off == plain
    window_explained = {"rule": "channel_window", "window": "08:00-21:00", "zone": "Europe/Warsaw"}
    assert [e["explain"] for e in await logged(api, "window")] == [window_explained] * 2
    assert [e["explain"] for e in await logged(api, "ok")] == [{"rule": "allowed"}] * 2


async def test_a_dry_run_explains_and_logs_nothing(api: Api) -> None:
    await campaign(api)
    await customer(api, "window", channel="sms")
    answer = await ask(api, ["window"], "2026-11-22T20:30:00Z", dry_run=True)
    assert by_id(answer)["window"]["explain"] == {"rule": "channel_window", "window": "08:00-21:00", "zone": "Europe/Warsaw"}
    assert await logged(api, "window") == []


async def test_sends_explain_when_asked(api: Api) -> None:
    """The sends endpoint gates at now (the test clock: 2026-11-22T09:00Z, 10:00 in Warsaw)."""
    await campaign(api)
    await customer(api, "late-riser", quiet_hours={"start": "09:00", "end": "12:00"})
    await customer(api, "ok")
    body = {"customer_ids": ["late-riser", "ok"], "explain": True}
    r = await api.client.post("/v1/campaigns/black-friday/sends", json=body, headers=api.as_("marketing"))
    assert r.status_code == 202, r.text
    mine = {"rule": "customer_quiet_hours", "window": "09:00-12:00", "zone": "Europe/Warsaw"}
    assert by_id(r.json()) == {
        "late-riser": defer("quiet_hours", "email", "2026-11-22T11:00:00Z", mine),
        "ok": {"verdict": "allow", "reason": "allowed", "channel": "email", "not_before": None, "explain": {"rule": "allowed"}},
    }
    assert [e["explain"] for e in await logged(api, "late-riser")] == [mine]
    # without the flag: the approval's plain answer (the second send is a retry of the queued pair)
    r = await api.client.post(
        "/v1/campaigns/black-friday/sends", json={"customer_ids": ["late-riser", "ok"]}, headers=api.as_("marketing")
    )
    assert r.status_code == 202, r.text
    assert [list(d) for d in r.json()["decisions"]] == [DECISION_KEYS] * 2
    assert [e["explain"] for e in await logged(api, "late-riser")] == [mine, mine]


async def test_explain_must_be_a_boolean(api: Api) -> None:
    await campaign(api)
    for path, body in (
        ("/v1/approvals", {"campaign_id": "black-friday", "customer_ids": ["c1"], "explain": "yes"}),
        ("/v1/campaigns/black-friday/sends", {"customer_ids": ["c1"], "explain": 1}),
    ):
        r = await api.client.post(path, json=body, headers=api.as_("marketing"))
        assert r.status_code == 400, r.text
        assert [e["field"] for e in r.json()["errors"]] == ["explain"], r.json()


async def test_the_openapi_document_shows_the_flag_and_the_explanation(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    assert schemas["ApprovalRequest"]["properties"]["explain"] == {"type": "boolean", "default": False}
    assert schemas["SendRequest"]["properties"]["explain"] == {"type": "boolean", "default": False}
    decision = schemas["AnswerDecision"]
    assert "explain" in decision["properties"] and "explain" not in decision["required"]
    assert schemas["Explanation"]["required"] == ["rule"]
    ok = doc["paths"]["/v1/approvals"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/GateAnswer"}
    sent = doc["paths"]["/v1/campaigns/{campaign_id}/sends"]["post"]["responses"]["202"]
    assert sent["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/GateAnswer"}
