"""Campaigns and the send-approval gate through the real app (API.md "Campaigns", "Send approval")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import CAMPAIGN, PROFILE, Api, prefs_body, query

AT = "2026-11-22T12:00:00Z"  # 13:00 in Warsaw: outside quiet hours, inside the sms window


async def customer(api: Api, cid: str, profile: dict[str, Any] | None = None, **prefs: Any) -> None:
    r = await api.client.put(f"/v1/customers/{cid}", json=profile or PROFILE, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text
    body = prefs_body(**{"quiet_hours": None, "max_per_week": None, **prefs})
    r = await api.client.put(f"/v1/customers/{cid}/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text


async def campaign(api: Api, cid: str = "black-friday", **overrides: Any) -> None:
    r = await api.client.put(f"/v1/campaigns/{cid}", json={**CAMPAIGN, **overrides}, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text


async def approve(api: Api, ids: list[str], at: str | None = AT, dry_run: bool = False, cid: str = "black-friday") -> Any:
    body: dict[str, Any] = {"campaign_id": cid, "customer_ids": ids, "dry_run": dry_run}
    if at is not None:
        body["at"] = at
    return await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))


def reservations(api: Api) -> list[tuple[str, str]]:
    return query(api, "SELECT customer_id, campaign_id FROM reservations ORDER BY 1, 2")  # type: ignore[return-value]


async def test_campaign_put_get_and_validation(api: Api) -> None:
    r = await api.client.put("/v1/campaigns/bf", json=CAMPAIGN, headers=api.as_("marketing"))
    assert r.status_code == 201
    assert (await api.client.put("/v1/campaigns/bf", json=CAMPAIGN, headers=api.as_("marketing"))).status_code == 200
    got = (await api.client.get("/v1/campaigns/bf", headers=api.as_("auditor"))).json()
    assert got["topic"] == "promotions" and got["channels"] == ["email", "sms"]
    assert got["counts"] == {"queued": 0, "deferred": 0, "sent": 0, "failed": 0, "suppressed": 0, "withdrawn": 0, "denied": {}}
    assert (await api.client.get("/v1/campaigns/nope", headers=api.as_("auditor"))).status_code == 404
    bad = [
        ({"topic": "nope"}, "topic"),
        ({"channels": []}, "channels"),
        ({"channels": ["email", "email"]}, "channels"),
        ({"channels": ["email", "push"]}, "content.push"),
        ({"channels": ["fax"]}, "channels[0]"),
        ({"content": {**CAMPAIGN["content"], "sms": {"text": "{{ broken"}}}, "content.sms.text"),
        ({"content": {**CAMPAIGN["content"], "sms": {"text": "{{ password }}"}}}, "content.sms.text"),
        ({"send_by": "2026-11-30T00:00:00"}, "send_by"),
        ({"extra": 1}, "extra"),
    ]
    for change, field in bad:
        r = await api.client.put("/v1/campaigns/bf2", json={**CAMPAIGN, **change}, headers=api.as_("marketing"))
        assert r.status_code == 400, (change, r.text)
        assert field in [e["field"] for e in r.json()["errors"]], (change, r.json())
    assert (await api.client.get("/v1/campaigns/bf2", headers=api.as_("auditor"))).status_code == 404
    assert (await api.client.delete("/v1/topics/promotions", headers=api.as_("admin"))).status_code == 409


async def test_answer_shape_order_and_summary(api: Api) -> None:
    await campaign(api)
    await customer(api, "c1")
    await customer(api, "c2", channel="sms", quiet_hours={"start": "12:00", "end": "14:00"})
    await customer(api, "c3", channel=None, topics=[])
    r = await approve(api, ["c3", "ghost", "c1", "c2"])
    assert r.status_code == 200
    body = r.json()
    assert body["campaign_id"] == "black-friday" and body["evaluated_at"] == AT
    assert body["policy_version"].startswith("sha256:") and len(body["policy_version"]) == 71
    assert body["decisions"] == [
        {"customer_id": "c3", "verdict": "deny", "reason": "no_channel", "channel": None, "not_before": None},
        {"customer_id": "ghost", "verdict": "deny", "reason": "unknown_customer", "channel": None, "not_before": None},
        {"customer_id": "c1", "verdict": "allow", "reason": "allowed", "channel": "email", "not_before": None},
        {"customer_id": "c2", "verdict": "defer", "reason": "quiet_hours", "channel": "sms", "not_before": "2026-11-22T13:00:00Z"},
    ]
    assert body["summary"] == {
        "allow": 1, "defer": 1, "deny": 2,
        "by_reason": {"no_channel": 1, "unknown_customer": 1, "allowed": 1, "quiet_hours": 1},
    }


async def test_rules_in_order_through_the_api(api: Api) -> None:
    """One recipient per row of API.md's decision table."""
    await campaign(api)
    no_sms = {**PROFILE, "contacts": {"email": "x@example.org"}}
    await customer(api, "suppressed", channel="sms")
    await customer(api, "offered", channel="push")
    await customer(api, "address", no_sms, channel="sms")
    await customer(api, "topic", topics=["product-news"])
    await customer(api, "paused", paused_until="2026-11-25T08:00:00Z")
    await customer(api, "ok")
    ref = api.rt.pseudonyms.address_ref("sms", "+48600100200")
    query(
        api,
        "INSERT INTO suppressions (channel, address_ref, reason, since) VALUES ('sms', ?, 'sms_keyword', '2026-11-01T00:00:00Z')",
        ref,
    )
    body = (await approve(api, ["suppressed", "offered", "address", "topic", "paused", "ok"])).json()
    got = [(d["reason"], d["verdict"]) for d in body["decisions"]]
    assert got == [
        ("suppressed", "deny"),
        ("channel_not_offered", "deny"),
        ("no_address", "deny"),
        ("topic_not_subscribed", "deny"),
        ("paused", "defer"),
        ("allowed", "allow"),
    ]
    assert body["decisions"][4]["not_before"] == "2026-11-25T08:00:00Z"


async def test_expired_campaign_denies_everyone(api: Api) -> None:
    await campaign(api, send_by="2026-11-22T12:00:00Z")
    await customer(api, "c1")
    body = (await approve(api, ["c1", "ghost"])).json()
    assert {(d["verdict"], d["reason"]) for d in body["decisions"]} == {("deny", "expired")}


async def test_frequency_cap_defers_and_reservations_count(api: Api) -> None:
    await campaign(api, "a")
    await campaign(api, "b")
    await customer(api, "c1")
    first = (await approve(api, ["c1"], cid="a")).json()["decisions"][0]
    assert first["verdict"] == "allow"
    second = (await approve(api, ["c1"], at="2026-11-22T15:00:00Z", cid="b")).json()["decisions"][0]
    assert (second["verdict"], second["reason"], second["not_before"]) == ("defer", "frequency_cap", "2026-11-23T12:00:00Z")
    assert reservations(api) == [("c1", "a")]


async def test_reapproval_is_idempotent_and_a_denied_retry_releases(api: Api) -> None:
    await campaign(api)
    await customer(api, "c1")
    one = (await approve(api, ["c1"])).json()["decisions"]
    two = (await approve(api, ["c1"], at="2026-11-22T12:30:00Z")).json()["decisions"]
    assert one == two and one[0]["verdict"] == "allow"
    assert reservations(api) == [("c1", "black-friday")]
    await customer(api, "c1", channel=None, topics=[])
    three = (await approve(api, ["c1"], at="2026-11-22T12:40:00Z")).json()["decisions"][0]
    assert three["reason"] == "no_channel"
    assert reservations(api) == []


async def test_dry_run_agrees_and_reserves_and_logs_nothing(api: Api) -> None:
    await campaign(api)
    for i in range(5):
        await customer(api, f"c{i}", channel=["email", "sms", None, "push", "email"][i])
    ids = [f"c{i}" for i in range(5)] + ["ghost"]
    dry = (await approve(api, ids, dry_run=True)).json()
    assert reservations(api) == []
    log = await api.client.get("/v1/customers/c0/decisions", headers=api.as_("auditor"))
    assert log.status_code == 200 and log.json() == {"decisions": []}
    real = (await approve(api, ids)).json()
    assert dry == real


async def test_limits_and_bad_requests(api: Api) -> None:
    await campaign(api)
    r = await approve(api, [f"c{i}" for i in range(10_001)])
    assert r.status_code == 413
    assert (await approve(api, [f"c{i}" for i in range(10_000)])).status_code == 200
    assert (await approve(api, ["c1"], cid="nope")).status_code == 404
    r = await approve(api, ["c1", "c2", "c1"])
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "customer_ids[2]"
    r = await approve(api, ["bad id"])
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "customer_ids[0]"
    r = await approve(api, ["c1"], at="2026-11-22T12:00:00")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "at"
    r = await api.client.post("/v1/approvals", json={"campaign_id": "black-friday", "customer_ids": [], "x": 1}, headers=api.as_("marketing"))
    assert r.status_code == 400


async def test_at_defaults_to_now(api: Api) -> None:
    await campaign(api)
    body = (await approve(api, ["c1"], at=None)).json()
    assert body["evaluated_at"] == "2026-11-22T09:00:00Z"  # the test clock


async def test_decision_log_and_metrics(api: Api) -> None:
    await campaign(api)
    await customer(api, "c1")
    await approve(api, ["c1", "ghost"])
    await approve(api, ["c1"], at="2026-11-22T13:00:00Z")
    r = await api.client.get("/v1/customers/c1/decisions?campaign_id=black-friday", headers=api.as_("marketing"))
    log = r.json()["decisions"]
    assert [(d["at"], d["verdict"], d["reason"], d["channel"]) for d in log] == [
        ("2026-11-22T12:00:00Z", "allow", "allowed", "email"),
        ("2026-11-22T13:00:00Z", "allow", "allowed", "email"),
    ]
    assert all(d["policy_version"].startswith("sha256:") and d["campaign_id"] == "black-friday" for d in log)
    assert (await api.client.get("/v1/customers/c1/decisions?campaign_id=other", headers=api.as_("auditor"))).json() == {"decisions": []}
    assert (await api.client.get("/v1/customers/nobody/decisions", headers=api.as_("auditor"))).status_code == 404
    metrics = (await api.client.get("/metrics")).text
    assert 'prefcenter_decisions_total{reason="allowed",verdict="allow"} 2.0' in metrics
    assert 'prefcenter_decisions_total{reason="unknown_customer",verdict="deny"} 1.0' in metrics
    counts = (await api.client.get("/v1/campaigns/black-friday", headers=api.as_("marketing"))).json()["counts"]
    assert counts["denied"] == {"unknown_customer": 1}
    # erasure removes the log with the person
    await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))
    assert (await api.client.get("/v1/customers/c1/decisions", headers=api.as_("auditor"))).status_code == 404


async def test_transactional_topic_skips_consent(api: Api) -> None:
    await campaign(api, "receipt", topic="order-updates", channels=["sms", "email"])
    await customer(api, "c1", channel=None, topics=[], paused_until="2027-01-01T00:00:00Z")
    d = (await approve(api, ["c1"], at="2026-11-22T23:30:00Z", cid="receipt")).json()["decisions"][0]
    assert (d["verdict"], d["reason"], d["channel"]) == ("allow", "allowed", "sms")


@pytest.mark.parametrize("role", ["auditor"])
async def test_auditor_cannot_approve(api: Api, role: str) -> None:
    await campaign(api)
    r = await api.client.post("/v1/approvals", json={"campaign_id": "black-friday", "customer_ids": []}, headers=api.as_(role))
    assert r.status_code == 403
