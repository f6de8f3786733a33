"""Customers and preferences through the real app on a real SQLite file (API.md "Customers and preferences")."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import CRM_EVIDENCE, PROFILE, Api, prefs_body, query


def table_counts(api: Api) -> dict[str, int]:
    return {
        t: query(api, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("customers", "contacts", "customer_topics", "consent_events", "topics")
    }


async def put_customer(api: Api, cid: str = "c1", body: dict[str, Any] | None = None) -> Any:
    return await api.client.put(f"/v1/customers/{cid}", json=body or PROFILE, headers=api.as_("marketing"))


async def events(api: Api, cid: str) -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/consent-events?customer_id={cid}&limit=1000", headers=api.as_("auditor"))
    assert r.status_code == 200
    return r.json()["events"]


async def test_put_creates_then_replaces_and_get_returns_profile(api: Api) -> None:
    r = await put_customer(api)
    assert r.status_code == 201
    assert r.json() == PROFILE
    r = await put_customer(api, body={**PROFILE, "locale": "en"})
    assert r.status_code == 200
    r = await api.client.get("/v1/customers/c1", headers=api.as_("auditor"))
    assert r.status_code == 200 and r.json()["locale"] == "en"


async def test_email_is_normalised_and_unknown_customer_is_404(api: Api) -> None:
    body = copy.deepcopy(PROFILE)
    body["contacts"] = {"email": "Ola@EXAMPLE.pl"}
    r = await put_customer(api, "c2", body)
    assert r.json()["contacts"] == {"email": "Ola@example.pl"}
    r = await api.client.get("/v1/customers/nobody", headers=api.as_("admin"))
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_new_customer_has_no_channel_and_no_topics(api: Api) -> None:
    """COMPLIANCE C13: nothing is sent until they opt in; creating a customer writes no consent event."""
    await put_customer(api)
    r = await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))
    assert r.json() == {
        "channel": None,
        "topics": [],
        "quiet_hours": None,
        "max_per_week": None,
        "paused_until": None,
    }
    assert await events(api, "c1") == []


async def test_replacing_profile_never_changes_preferences(api: Api) -> None:
    await put_customer(api)
    await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(channel="sms"), headers=api.as_("marketing")
    )
    body = copy.deepcopy(PROFILE)
    del body["contacts"]["sms"]
    assert (await put_customer(api, body=body)).status_code == 200
    r = await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))
    assert r.json()["channel"] == "sms"  # stays chosen; the gate answers no_address


@pytest.mark.parametrize(
    ("field", "value", "error_field"),
    [
        ("timezone", "Mars/Olympus", "timezone"),
        ("timezone", "+02:00", "timezone"),
        ("timezone", 5, "timezone"),
        ("locale", "not a locale!", "locale"),
        ("locale", "x", "locale"),
        ("country", "XX", "country"),
        ("country", "pl", "country"),
        ("country", "POL", "country"),
        ("contacts", {"email": "not-an-email"}, "contacts.email"),
        ("contacts", {"email": "a@b@c.com"}, "contacts.email"),
        ("contacts", {"sms": "600100200"}, "contacts.sms"),
        ("contacts", {"sms": "+4860010020"}, "contacts.sms"),
        ("contacts", {"voice": "+1 415 555 0100"}, "contacts.voice"),
        ("contacts", {"whatsapp": "+999123456789"}, "contacts.whatsapp"),
        ("contacts", {"push": ""}, "contacts.push"),
        ("contacts", {"fax": "+48600100200"}, "contacts.fax"),
        ("contacts", {"email": "x" * 300 + "@example.org"}, "contacts.email"),
        ("extra", 1, "extra"),
    ],
)
async def test_bad_profile_field_is_400_naming_it_and_writes_nothing(
    api: Api, field: str, value: Any, error_field: str
) -> None:
    body = copy.deepcopy(PROFILE)
    body[field] = value
    before = table_counts(api)
    r = await put_customer(api, "c9", body)
    assert r.status_code == 400, r.text
    problem = r.json()
    assert r.headers["content-type"].startswith("application/problem+json")
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert error_field in [e["field"] for e in problem["errors"]], problem
    assert table_counts(api) == before


@pytest.mark.parametrize("missing", ["timezone", "locale", "country", "contacts"])
async def test_every_profile_field_is_required(api: Api, missing: str) -> None:
    body = {k: v for k, v in PROFILE.items() if k != missing}
    r = await put_customer(api, "c9", body)
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == [missing]


@pytest.mark.parametrize("cid", ["has space", "a" * 129, "semi;colon", "ba(d)"])
async def test_malformed_customer_id_is_400(api: Api, cid: str) -> None:
    r = await put_customer(api, cid)
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "customer_id"


async def test_malformed_json_is_400_problem(api: Api) -> None:
    headers = {**api.as_("marketing"), "content-type": "application/json"}
    r = await api.client.put("/v1/customers/c1", content=b"{not json", headers=headers)
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")


# -- preferences ----------------------------------------------------------------------------------


async def test_preferences_put_get_and_events_per_change(api: Api) -> None:
    """API.md: a channel switch is withdraw old + grant new; topics grant/withdraw; settings are updates."""
    await put_customer(api)
    r = await api.client.put("/v1/customers/c1/preferences", json=prefs_body(), headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    expected = {k: v for k, v in prefs_body().items() if k != "provenance"}
    assert r.json() == expected
    r = await api.client.get("/v1/customers/c1/preferences", headers=api.as_("auditor"))
    assert r.json() == expected
    first = await events(api, "c1")
    assert [(e["action"], e["subject"], e["value"]) for e in first] == [
        ("grant", "channel:email", None),
        ("grant", "topic:promotions", None),
        ("update", "quiet_hours", {"start": "21:00", "end": "08:00"}),
        ("update", "max_per_week", 2),
    ]
    e = first[0]
    assert (e["source"], e["actor"], e["notice_version"], e["evidence"]) == (
        "crm",
        "agent-17",
        "2026-10",
        CRM_EVIDENCE,
    )
    assert e["customer_id"] == "c1" and len(e["customer_ref"]) == 64
    assert e["at"].endswith("Z") and len(e["at"]) == len("2026-11-22T09:00:00.000000Z")

    # the same write again changes nothing and writes nothing
    await api.client.put("/v1/customers/c1/preferences", json=prefs_body(), headers=api.as_("marketing"))
    assert len(await events(api, "c1")) == 4

    change = prefs_body(
        channel="sms",
        topics=["product-news"],
        quiet_hours=None,
        max_per_week=None,
        paused_until="2026-12-01T10:00:00+01:00",
    )
    r = await api.client.put("/v1/customers/c1/preferences", json=change, headers=api.as_("marketing"))
    assert r.status_code == 200
    assert r.json()["paused_until"] == "2026-12-01T09:00:00Z"
    later = (await events(api, "c1"))[4:]
    assert [(e["action"], e["subject"], e["value"]) for e in later] == [
        ("withdraw", "channel:email", None),
        ("grant", "channel:sms", None),
        ("withdraw", "topic:promotions", None),
        ("grant", "topic:product-news", None),
        ("update", "quiet_hours", None),
        ("update", "max_per_week", None),
        ("update", "pause", "2026-12-01T09:00:00Z"),
    ]


async def test_channel_null_withdraws_without_grant(api: Api) -> None:
    await put_customer(api)
    await api.client.put("/v1/customers/c1/preferences", json=prefs_body(), headers=api.as_("marketing"))
    await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(channel=None, topics=[]), headers=api.as_("marketing")
    )
    tail = (await events(api, "c1"))[4:]
    assert [(e["action"], e["subject"]) for e in tail] == [
        ("withdraw", "channel:email"),
        ("withdraw", "topic:promotions"),
    ]


async def test_etag_and_if_match(api: Api) -> None:
    await put_customer(api)
    r = await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))
    etag = r.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    ok = await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(), headers={**api.as_("marketing"), "If-Match": etag}
    )
    assert ok.status_code == 200 and ok.headers["etag"] != etag
    before = table_counts(api)
    stale = await api.client.put(
        "/v1/customers/c1/preferences",
        json=prefs_body(channel="sms"),
        headers={**api.as_("marketing"), "If-Match": etag},
    )
    assert stale.status_code == 412
    assert table_counts(api) == before
    weak = await api.client.put(
        "/v1/customers/c1/preferences",
        json=prefs_body(channel="sms"),
        headers={**api.as_("marketing"), "If-Match": "W/" + ok.headers["etag"]},
    )
    assert weak.status_code == 412  # strong comparison: a weak tag never matches


@pytest.mark.parametrize(
    ("change", "error_field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"topics": ["nope"]}, "topics[0]"),
        ({"topics": ["order-updates"]}, "topics[0]"),
        ({"topics": ["promotions", "promotions"]}, "topics"),
        ({"topics": ["Bad Topic"]}, "topics[0]"),
        ({"quiet_hours": {"start": "21:00", "end": "21:00"}}, "quiet_hours"),
        ({"quiet_hours": {"start": "25:00", "end": "08:00"}}, "quiet_hours.start"),
        ({"quiet_hours": {"start": "21:00"}}, "quiet_hours.end"),
        ({"max_per_week": 0}, "max_per_week"),
        ({"max_per_week": 51}, "max_per_week"),
        ({"paused_until": "2026-12-01T10:00:00"}, "paused_until"),
        ({"paused_until": "tomorrow"}, "paused_until"),
        ({"provenance": None}, "provenance"),
        (
            {"provenance": {"source": "preference_page", "actor": "a", "notice_version": "v"}},
            "provenance.source",
        ),
        (
            {"provenance": {"source": "crm", "actor": "ola@example.pl", "notice_version": "v"}},
            "provenance.actor",
        ),
        ({"provenance": {"source": "crm", "actor": "a", "notice_version": ""}}, "provenance.notice_version"),
        (
            {"provenance": {"source": "crm", "actor": "a", "notice_version": "v", "evidence": {"f": 1.5}}},
            "provenance.evidence.f",
        ),
        (
            {"provenance": {"source": "crm", "actor": "a", "notice_version": "v", "evidence": {"n": 2**53}}},
            "provenance.evidence.n",
        ),
        (
            {
                "provenance": {
                    "source": "crm",
                    "actor": "a",
                    "notice_version": "v",
                    "evidence": {"bad key": 1},
                }
            },
            "provenance.evidence.bad key",
        ),
        (
            {
                "provenance": {
                    "source": "crm",
                    "actor": "a",
                    "notice_version": "v",
                    "evidence": {"k": "x" * 5000},
                }
            },
            "provenance.evidence",
        ),
        (
            {
                "provenance": {
                    "source": "crm",
                    "actor": "a",
                    "notice_version": "v",
                    "evidence": {"k": [{"f": 0.1}]},
                }
            },
            "provenance.evidence.k[0].f",
        ),
        (
            {"provenance": {"source": "crm", "actor": "a", "notice_version": "v", "extra": 1}},
            "provenance.extra",
        ),
        ({"surprise": True}, "surprise"),
    ],
)
async def test_bad_preferences_are_400_and_write_nothing(
    api: Api, change: dict[str, Any], error_field: str
) -> None:
    await put_customer(api)
    before = table_counts(api)
    r = await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(**change), headers=api.as_("marketing")
    )
    assert r.status_code == 400, r.text
    assert error_field in [e["field"] for e in r.json()["errors"]], r.json()
    assert table_counts(api) == before


async def test_lone_surrogate_in_evidence_is_400(api: Api) -> None:
    await put_customer(api)
    raw = (
        b'{"channel":"email","topics":[],"quiet_hours":null,"max_per_week":null,"paused_until":null,'
        b'"provenance":{"source":"crm","actor":"a","notice_version":"v","evidence":{"k":"\\ud800"}}}'
    )
    headers = {**api.as_("marketing"), "content-type": "application/json"}
    r = await api.client.put("/v1/customers/c1/preferences", content=raw, headers=headers)
    assert r.status_code == 400


@pytest.mark.parametrize(
    "missing", ["channel", "topics", "quiet_hours", "max_per_week", "paused_until", "provenance"]
)
async def test_every_preference_field_is_required(api: Api, missing: str) -> None:
    await put_customer(api)
    body = {k: v for k, v in prefs_body().items() if k != missing}
    r = await api.client.put("/v1/customers/c1/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 400
    assert missing in [e["field"] for e in r.json()["errors"]]


async def test_admin_source_needs_admin_key(api: Api) -> None:
    await put_customer(api)
    body = prefs_body(provenance={"source": "admin", "actor": "ops", "notice_version": "v"})
    r = await api.client.put("/v1/customers/c1/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 403
    r = await api.client.put("/v1/customers/c1/preferences", json=body, headers=api.as_("admin"))
    assert r.status_code == 200


async def test_preferences_of_unknown_customer_is_404(api: Api) -> None:
    r = await api.client.put(
        "/v1/customers/ghost/preferences", json=prefs_body(), headers=api.as_("marketing")
    )
    assert r.status_code == 404
    r = await api.client.get("/v1/customers/ghost/preferences", headers=api.as_("marketing"))
    assert r.status_code == 404
