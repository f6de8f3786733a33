"""API.md details seen from outside: campaign counts add up (each recipient once), every output time is
UTC with ``Z``, and one charset per text response."""

from __future__ import annotations

import re
from typing import Any

from prefcenter.messaging.email import Rendered
from prefcenter.messaging.transports import Outcome
from prefcenter.services.dispatch import Dispatcher
from tests.api.test_approvals import campaign, customer
from tests.conftest import PROFILE, Api, prefs_body

RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


class AcceptAll:
    """A transport that accepts every message (the counts need one message sent)."""

    concurrency = 4

    def __init__(self) -> None:
        self.sent: list[Rendered] = []

    async def send(self, message: Rendered) -> Outcome:
        self.sent.append(message)
        return Outcome("sent")

    async def close(self) -> None:
        return None


def profile(cid: str) -> dict[str, Any]:
    return {**PROFILE, "contacts": {**PROFILE["contacts"], "email": f"{cid}@example.pl"}}  # type: ignore[dict-item]


async def counts(api: Api, cid: str = "black-friday") -> dict[str, Any]:
    r = await api.client.get(f"/v1/campaigns/{cid}", headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()["counts"]
    return result


def total(c: dict[str, Any]) -> int:
    return sum(int(v) for k, v in c.items() if k != "denied") + sum(int(v) for v in c["denied"].values())


# ---------------------------------------------------------------------------------------------------
# counts: "each recipient is counted once, under its outbox status or, if it has none, its latest denial"


async def test_a_recipient_withdrawn_at_re_gate_is_counted_once_under_withdrawn(api: Api) -> None:
    await campaign(api)
    await customer(api, "gone", profile("gone"))
    r = await api.client.post(
        "/v1/campaigns/black-friday/sends", json={"customer_ids": ["gone"]}, headers=api.as_("marketing")
    )
    assert r.status_code == 202 and r.json()["decisions"][0]["verdict"] == "allow"
    await customer(api, "gone", profile("gone"), channel=None, topics=[])  # withdraws before it leaves
    transport = AcceptAll()
    d = Dispatcher(api.rt, {"email": transport, "sms": transport})
    await d.run_until_idle()
    await d.close()
    assert transport.sent == []
    log = await api.client.get("/v1/customers/gone/decisions", headers=api.as_("auditor"))
    assert [e["verdict"] for e in log.json()["decisions"]] == [
        "allow",
        "deny",
    ]  # the dispatcher logged the deny
    c = await counts(api)
    assert c["withdrawn"] == 1 and c["denied"] == {}, c
    assert total(c) == 1


async def test_every_recipient_is_counted_once_and_the_counts_add_up(api: Api) -> None:
    await campaign(api)
    await customer(api, "sent", profile("sent"))
    await customer(api, "withdrawn", profile("withdrawn"))
    await customer(api, "suppressed", profile("suppressed"))
    await customer(api, "paused", profile("paused"), paused_until="2026-11-25T00:00:00Z")
    await customer(api, "no-channel", profile("no-channel"), channel=None, topics=[])
    recipients = ["sent", "withdrawn", "suppressed", "paused", "no-channel", "nobody"]
    r = await api.client.post(
        "/v1/campaigns/black-friday/sends", json={"customer_ids": recipients}, headers=api.as_("marketing")
    )
    assert r.status_code == 202
    assert [x["verdict"] for x in r.json()["decisions"]] == [
        "allow",
        "allow",
        "allow",
        "defer",
        "deny",
        "deny",
    ]
    # Between queueing and sending: one withdraws, one's address is suppressed.
    await customer(api, "withdrawn", profile("withdrawn"), channel=None, topics=[])
    r = await api.client.put("/v1/suppressions/email/suppressed@example.pl", headers=api.as_("admin"))
    assert r.status_code == 201
    transport = AcceptAll()
    d = Dispatcher(api.rt, {"email": transport, "sms": transport})
    await d.run_until_idle()
    await d.close()
    assert [m.address for m in transport.sent] == ["sent@example.pl"]
    c = await counts(api)
    assert c == {
        "queued": 0,
        "deferred": 1,
        "sent": 1,
        "failed": 0,
        "suppressed": 1,
        "withdrawn": 1,
        "denied": {"no_channel": 1, "unknown_customer": 1},
    }
    assert total(c) == len(set(recipients))

    # Sending again changes no one's bucket and adds no one.
    r = await api.client.post(
        "/v1/campaigns/black-friday/sends", json={"customer_ids": recipients}, headers=api.as_("marketing")
    )
    assert r.status_code == 202
    assert total(await counts(api)) == len(set(recipients))


async def test_a_denied_recipient_without_an_outbox_row_counts_under_its_latest_denial(api: Api) -> None:
    await campaign(api)
    await customer(api, "c1", profile("c1"), channel=None, topics=[])
    for _ in range(3):  # asked three times: still one recipient
        r = await api.client.post(
            "/v1/approvals",
            json={"campaign_id": "black-friday", "customer_ids": ["c1"]},
            headers=api.as_("marketing"),
        )
        assert r.json()["decisions"][0]["reason"] == "no_channel"
    await customer(api, "c1", profile("c1"), channel="sms", topics=[])  # now: not subscribed
    r = await api.client.post(
        "/v1/approvals",
        json={"campaign_id": "black-friday", "customer_ids": ["c1"]},
        headers=api.as_("marketing"),
    )
    assert r.json()["decisions"][0]["reason"] == "topic_not_subscribed"
    c = await counts(api)
    assert c["denied"] == {"topic_not_subscribed": 1} and total(c) == 1


# ---------------------------------------------------------------------------------------------------
# times: "RFC 3339 in UTC with a Z suffix on the way out"


def times(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every RFC 3339 string in a JSON value, with where it is."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in times(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in times(v, f"{path}[{i}]")]
    if isinstance(value, str) and RFC3339.match(value):
        return [(path, value)]
    return []


def assert_all_utc(body: Any, at_least: int = 1) -> None:
    found = times(body)
    assert len(found) >= at_least, body
    assert all(v.endswith("Z") for _, v in found), [t for t in found if not t[1].endswith("Z")]


async def test_campaign_send_by_is_utc_with_z_in_put_and_get(api: Api) -> None:
    body = {
        "topic": "promotions",
        "channels": ["email"],
        "send_by": "2026-11-30T02:00:00+02:00",
        "content": {"email": {"subject": "Hi", "text": "Manage: {{ manage_url }}", "html": "<p>Hi</p>"}},
    }
    r = await api.client.put("/v1/campaigns/bf", json=body, headers=api.as_("marketing"))
    assert r.status_code == 201 and r.json()["send_by"] == "2026-11-30T00:00:00Z", r.text
    r = await api.client.put(
        "/v1/campaigns/bf",
        json={**body, "send_by": "2026-11-29T19:30:00.250-04:30"},
        headers=api.as_("marketing"),
    )
    assert r.status_code == 200 and r.json()["send_by"] == "2026-11-30T00:00:00.250000Z", r.text
    got = (await api.client.get("/v1/campaigns/bf", headers=api.as_("auditor"))).json()
    assert got["send_by"] == "2026-11-30T00:00:00.250000Z"
    r = await api.client.put("/v1/campaigns/bf", json={**body, "send_by": None}, headers=api.as_("marketing"))
    assert r.status_code == 200 and r.json()["send_by"] is None


async def test_every_output_time_is_utc_with_z(api: Api) -> None:
    """Times given with offsets come back in UTC with Z: preferences (PUT and GET), approvals, the
    decision log, consent events, receipts."""
    await campaign(api, send_by="2026-12-01T01:00:00+01:00")
    r = await api.client.put("/v1/customers/c1", json=profile("c1"), headers=api.as_("marketing"))
    assert r.status_code == 201
    r = await api.client.put(
        "/v1/customers/c1/preferences",
        json=prefs_body(quiet_hours=None, max_per_week=None, paused_until="2026-11-23T01:00:00+01:00"),
        headers=api.as_("marketing"),
    )
    assert r.status_code == 200 and r.json()["paused_until"] == "2026-11-23T00:00:00Z", r.text
    r = await api.client.get("/v1/customers/c1/preferences", headers=api.as_("auditor"))
    assert r.json()["paused_until"] == "2026-11-23T00:00:00Z"

    r = await api.client.post(
        "/v1/approvals",
        json={"campaign_id": "black-friday", "customer_ids": ["c1"], "at": "2026-11-22T14:00:00+05:00"},
        headers=api.as_("marketing"),
    )
    answer = r.json()
    assert answer["evaluated_at"] == "2026-11-22T09:00:00Z"
    assert answer["decisions"][0]["not_before"] == "2026-11-23T00:00:00Z"  # paused until then
    assert_all_utc(answer, 2)
    for path in (
        "/v1/campaigns/black-friday",
        "/v1/customers/c1/decisions",
        "/v1/consent-events",
        "/v1/customers/c1/consent-receipt",
    ):
        r = await api.client.get(path, headers=api.as_("auditor"))
        assert r.status_code == 200, (path, r.text)
        assert_all_utc(r.json())


# ---------------------------------------------------------------------------------------------------
# one charset per text response


async def test_csv_export_and_metrics_carry_one_charset(api: Api) -> None:
    r = await api.client.get("/v1/consent-events/export?format=csv", headers=api.as_("auditor"))
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers.get_list("content-type") == ["text/csv; charset=utf-8"]
    r = await api.client.get("/v1/consent-events/export?format=jsonl", headers=api.as_("auditor"))
    assert r.headers["content-type"] == "application/x-ndjson"
    r = await api.client.get("/metrics")
    assert r.status_code == 200
    content_type = r.headers["content-type"]
    assert content_type.count("charset") == 1 and content_type.startswith("text/plain; version=")
    assert content_type.replace(" ", "").lower().endswith("charset=utf-8")
