"""Issue 9: one request's bad input, or one bad stored value, never fails anyone else's work.

Each test is a reproduction from the issue, turned into a regression test: group commit that shared
one request's exception with every request in its transaction, patterns whose `$` let a trailing
newline through, and instants and numbers at the edges of their types.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefcenter.domain.model import (
    CUSTOMER_ID_RE,
    EVIDENCE_KEY_RE,
    TOPIC_ID_RE,
    InvalidInput,
    check_customer_id,
)
from prefcenter.services.approvals import ApprovalRequest, approve
from prefcenter.services.runtime import Runtime
from tests.api.test_gate_concurrency import setup_keys
from tests.conftest import CAMPAIGN, PROFILE, Api, prefs_body, query
from tests.live import serve

LINE_ENDINGS = ["\n", "\r", "\u2028", "\x85"]
AT = "2026-11-23T12:00:00Z"


# --- 1. group commit keeps a request's fault that request's -------------------------------------------


async def test_poisoned_approvals_among_valid_ones_on_a_real_server(rt: Runtime) -> None:
    """60 valid + 10 poisoned (`at` in year 9999) concurrent approvals: the 60 answer 200 with the
    decisions they get alone, the 10 answer 400 naming `at`."""
    headers = await setup_keys(rt)
    customers = [f"c{i}" for i in range(60)]
    with serve(rt) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            for cid in customers:
                assert (await client.put(f"/v1/customers/{cid}", json=PROFILE)).status_code == 201
                body = prefs_body(quiet_hours=None)
                assert (await client.put(f"/v1/customers/{cid}/preferences", json=body)).status_code == 200
            assert (await client.put("/v1/campaigns/camp1", json=CAMPAIGN)).status_code == 201

            def valid(cid: str) -> Any:
                return client.post(
                    "/v1/approvals", json={"campaign_id": "camp1", "customer_ids": [cid], "at": AT}
                )

            def poisoned() -> Any:
                body = {"campaign_id": "camp1", "customer_ids": ["c1"], "at": "9999-12-31T23:59:59Z"}
                return client.post("/v1/approvals", json=body)

            calls = [valid(cid) for cid in customers]
            for i in range(10):
                calls.insert(i * 6, poisoned())
            responses = await asyncio.gather(*calls)
    good = [r for r in responses if r.request.content and b"9999" not in r.request.content]
    bad = [r for r in responses if b"9999" in r.request.content]
    assert len(good) == 60 and len(bad) == 10
    assert all(r.status_code == 200 for r in good), [r.text for r in good if r.status_code != 200]
    assert all(r.json()["decisions"][0]["verdict"] == "allow" for r in good)
    for r in bad:
        assert r.status_code == 400
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["field"] for e in r.json()["errors"]] == ["at"]
    reserved = query(rt, "SELECT count(*) FROM reservations WHERE campaign_id = 'camp1'")[0][0]
    assert reserved == 60


async def test_a_fault_inside_the_group_transaction_stays_with_its_request(api: Api) -> None:
    """A fault that no validation catches (here: what a request queues inside the transaction raises)
    rolls the group back; every other request is then decided and committed as if it had not come."""
    rt = api.rt
    h = api.as_("marketing")
    for i in range(12):
        await api.client.put(f"/v1/customers/k{i}", json=PROFILE, headers=h)
        await api.client.put(f"/v1/customers/k{i}/preferences", json=prefs_body(quiet_hours=None), headers=h)
    await api.client.put("/v1/campaigns/camp1", json=CAMPAIGN, headers=h)
    batcher = api.client.app.state.gate_batcher  # type: ignore[attr-defined]

    def explode(*_: Any) -> list[Any]:
        raise RuntimeError("what this request queues failed")

    asks = [
        approve(rt, batcher, ApprovalRequest("camp1", [f"k{i}"], at=None), explode if i == 5 else None)
        for i in range(12)
    ]
    results = await asyncio.gather(*asks, return_exceptions=True)
    assert isinstance(results[5], RuntimeError)
    for i, result in enumerate(results):
        if i != 5:
            assert not isinstance(result, BaseException), result
            assert result.decisions[0].verdict == "allow"
    log = await api.client.get("/v1/customers/k5/decisions", headers=h)
    assert log.json()["decisions"] == []  # the failed request wrote nothing
    log = await api.client.get("/v1/customers/k4/decisions", headers=h)
    assert [d["verdict"] for d in log.json()["decisions"]] == ["allow"]


# --- 2. a bad stored value denies its own customer only --------------------------------------------------


async def test_a_bad_stored_value_cannot_poison_the_gate(api: Api) -> None:
    """Quiet hours "21:00\\n" stored before the anchors were fixed (written here straight into the file),
    an unknown zone and an unreadable pause: approvals (dry and real) naming those customers answer 200;
    those customers are denied (fail closed) and everyone else is decided as usual."""
    h = api.as_("marketing")
    ids = ["ok1", "badq", "badz", "badp", "ok2"]
    for cid in ids:
        await api.client.put(f"/v1/customers/{cid}", json=PROFILE, headers=h)
        await api.client.put(f"/v1/customers/{cid}/preferences", json=prefs_body(), headers=h)
    await api.client.put("/v1/campaigns/camp1", json=CAMPAIGN, headers=h)
    query(api, "UPDATE customers SET quiet_start = '21:00\n' WHERE id = 'badq'")
    query(api, "UPDATE customers SET timezone = 'Mars/Base' WHERE id = 'badz'")
    query(api, "UPDATE customers SET paused_until = 'soon' WHERE id = 'badp'")
    expected = [("ok1", "allow"), ("badq", "deny"), ("badz", "deny"), ("badp", "deny"), ("ok2", "allow")]
    for dry in (True, False):
        body = {"campaign_id": "camp1", "customer_ids": ids, "at": AT, "dry_run": dry}
        r = await api.client.post("/v1/approvals", json=body, headers=h)
        assert r.status_code == 200, r.text
        decisions = r.json()["decisions"]
        assert [(d["customer_id"], d["verdict"]) for d in decisions] == expected
        assert [d["reason"] for d in decisions[1:4]] == ["quiet_hours", "quiet_hours", "paused"]


# --- 3. anchors that anchor ------------------------------------------------------------------------------


@given(st.from_regex(r"[A-Za-z0-9._:@-]{1,100}", fullmatch=True), st.sampled_from(LINE_ENDINGS))
def test_ids_with_a_line_ending_never_match(value: str, ending: str) -> None:
    assert CUSTOMER_ID_RE.match(value)
    for bad in (value + ending, ending + value, value[:1] + ending + value[1:]):
        assert not CUSTOMER_ID_RE.match(bad)
        with pytest.raises(InvalidInput):
            check_customer_id(bad)
    assert not TOPIC_ID_RE.match("t" + ending)
    assert not EVIDENCE_KEY_RE.match("k" + ending)


def _profile(**contacts: str) -> dict[str, Any]:
    return {**PROFILE, "contacts": {**PROFILE["contacts"], **contacts}}


def _prov(**changes: Any) -> dict[str, Any]:
    return {"source": "crm", "actor": "agent-17", "notice_version": "2026-10", "evidence": {}, **changes}


# (name, method, path with {s}, body builder taking the suffix, role, the field the 400 must name)
FIELDS: list[tuple[str, str, str, Any, str, str]] = [
    ("path customer_id", "PUT", "/v1/customers/c9{s}", lambda s: PROFILE, "marketing", "customer_id"),
    ("path topic_id", "PUT", "/v1/topics/t9{s}", lambda s: {"category": "marketing", "names": {"en": "x"}}, "admin", "topic_id"),
    ("path campaign_id", "PUT", "/v1/campaigns/camp9{s}", lambda s: CAMPAIGN, "marketing", "campaign_id"),
    ("timezone", "PUT", "/v1/customers/c1", lambda s: {**PROFILE, "timezone": "Europe/Warsaw" + s}, "marketing", "timezone"),
    ("locale", "PUT", "/v1/customers/c1", lambda s: {**PROFILE, "locale": "pl" + s}, "marketing", "locale"),
    ("country", "PUT", "/v1/customers/c1", lambda s: {**PROFILE, "country": "P" + s}, "marketing", "country"),
    ("email", "PUT", "/v1/customers/c1", lambda s: _profile(email="ola@example.pl" + s), "marketing", "contacts.email"),
    ("sms", "PUT", "/v1/customers/c1", lambda s: _profile(sms="+48600100200" + s), "marketing", "contacts.sms"),
    ("push", "PUT", "/v1/customers/c1", lambda s: _profile(push="device-token" + s), "marketing", "contacts.push"),
    ("voice", "PUT", "/v1/customers/c1", lambda s: _profile(voice="+48600100200" + s), "marketing", "contacts.voice"),
    ("quiet start", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(quiet_hours={"start": "21:00" + s, "end": "08:00"}), "marketing", "quiet_hours.start"),
    ("quiet end", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(quiet_hours={"start": "21:00", "end": "08:00" + s}), "marketing", "quiet_hours.end"),
    ("topics", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(topics=["promotions" + s]), "marketing", "topics[0]"),
    ("paused_until", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(paused_until=AT + s), "marketing", "paused_until"),
    ("actor", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(provenance=_prov(actor="agent-17" + s)), "marketing", "provenance.actor"),
    ("notice_version", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(provenance=_prov(notice_version="2026-10" + s)), "marketing", "provenance.notice_version"),
    ("evidence key", "PUT", "/v1/customers/c1/preferences", lambda s: prefs_body(provenance=_prov(evidence={"ticket" + s: 1})), "marketing", "provenance.evidence"),
    ("campaign topic", "PUT", "/v1/campaigns/camp2", lambda s: {**CAMPAIGN, "topic": "promotions" + s}, "marketing", "topic"),
    ("send_by", "PUT", "/v1/campaigns/camp2", lambda s: {**CAMPAIGN, "send_by": "2026-12-30T00:00:00Z" + s}, "marketing", "send_by"),
    ("approval campaign_id", "POST", "/v1/approvals", lambda s: {"campaign_id": "camp1" + s, "customer_ids": ["c1"]}, "marketing", "campaign_id"),
    ("approval customer_ids", "POST", "/v1/approvals", lambda s: {"campaign_id": "camp1", "customer_ids": ["c1" + s]}, "marketing", "customer_ids[0]"),
    ("approval at", "POST", "/v1/approvals", lambda s: {"campaign_id": "camp1", "customer_ids": ["c1"], "at": AT + s}, "marketing", "at"),
    ("link topic", "POST", "/v1/customers/c1/links", lambda s: {"topic": "promotions" + s}, "marketing", "topic"),
    ("inbound sms from", "POST", "/v1/inbound/sms", lambda s: {"from": "+48600100200" + s, "text": "STOP"}, "marketing", "from"),
    ("email event address", "POST", "/v1/inbound/email-events", lambda s: {"type": "bounce", "address": "ola@example.pl" + s, "permanent": True}, "marketing", "address"),
]  # fmt: skip


@pytest.mark.parametrize("ending", LINE_ENDINGS, ids=["LF", "CR", "LS", "NEL"])
@pytest.mark.parametrize(
    ("name", "method", "path", "body", "role", "field"), FIELDS, ids=[f[0] for f in FIELDS]
)
async def test_every_validated_string_refuses_a_line_ending(
    api: Api, name: str, method: str, path: str, body: Any, role: str, field: str, ending: str
) -> None:
    """Every validated string field with its valid value plus a trailing line ending: a 400 naming
    the field, and nothing stored."""
    h = api.as_(role)
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    await api.client.put("/v1/campaigns/camp1", json=CAMPAIGN, headers=api.as_("marketing"))
    before = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    r = await api.client.request(method, path.format(s=quote(ending)), json=body(ending), headers=h)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    fields = [e["field"] for e in r.json().get("errors", [])]
    assert any(f == field or f.startswith(field + "[") for f in fields), r.json()
    assert not any(ending in f for f in fields)  # no line break comes back in a field name
    after = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert after.json()["events"] == before.json()["events"]


# --- 4. instants and numbers at the edges ----------------------------------------------------------------

EDGE_INSTANTS = [
    "9999-12-31T23:59:59Z",
    "9999-12-31T23:59:59-05:00",
    "9999-12-31T23:59:59+14:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00+05:00",
    "0001-01-01T00:00:00-12:00",
]


@pytest.mark.parametrize("instant", EDGE_INSTANTS)
@pytest.mark.parametrize("field", ["paused_until", "send_by", "at", "until", "since"])
async def test_instants_at_the_edges_are_a_400_naming_the_field(api: Api, field: str, instant: str) -> None:
    h = api.as_("admin")
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=h)
    await api.client.put("/v1/campaigns/camp1", json=CAMPAIGN, headers=h)
    if field == "paused_until":
        r = await api.client.put(
            "/v1/customers/c1/preferences", json=prefs_body(paused_until=instant), headers=h
        )
    elif field == "send_by":
        r = await api.client.put("/v1/campaigns/camp2", json={**CAMPAIGN, "send_by": instant}, headers=h)
    elif field == "at":
        body = {"campaign_id": "camp1", "customer_ids": ["c1"], "at": instant}
        r = await api.client.post("/v1/approvals", json=body, headers=h)
        assert r.status_code == 400
        r = await api.client.post("/v1/approvals", json={**body, "dry_run": True}, headers=h)
    else:
        r = await api.client.get("/v1/consent-events", params={field: instant}, headers=h)
    assert r.status_code == 400, r.text
    assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_numbers_and_depth_at_the_edges_are_a_400(api: Api) -> None:
    h = api.as_("admin")
    r = await api.client.get("/v1/consent-events", params={"after_seq": "99999999999999999999"}, headers=h)
    assert r.status_code == 400
    assert [e["field"] for e in r.json()["errors"]] == ["after_seq"]
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=h)
    deep = b"[" * 10_000 + b"]" * 10_000
    r = await api.client.put(
        "/v1/customers/c1/preferences", content=deep, headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 400
    evidence = b'{"k":' + deep + b"}"
    body = (
        b'{"channel":null,"topics":[],"quiet_hours":null,"max_per_week":null,"paused_until":null,'
        b'"provenance":{"source":"api","actor":"a","notice_version":"v1","evidence":' + evidence + b"}}"
    )
    r = await api.client.put(
        "/v1/customers/c1/preferences", content=body, headers={**h, "content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("application/problem+json")
