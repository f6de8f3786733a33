"""COMPLIANCE edge 11 (API.md "Imported consent is proven consent"): a write with provenance source
``import`` or ``crm`` that grants marketing needs the proof of the original consent in its evidence
(``source_party``, ``consented_at`` as RFC 3339 with an offset, ``method``), else 400 naming each key and
nothing is written. Withdrawals and update-only writes need none; other sources are not affected."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_approvals import approve, campaign
from tests.conftest import PROFILE, Api, prefs_body, query

PROOF = {"source_party": "Listvendor Ltd", "consented_at": "2026-09-30T18:04:05+01:00", "method": "web_form"}
KEYS = ("source_party", "consented_at", "method")


def provenance(source: str = "import", **evidence: Any) -> dict[str, Any]:
    return {"source": source, "actor": "listvendor", "notice_version": "x", "evidence": evidence}


async def put_prefs(api: Api, cid: str, **body: Any) -> Any:
    return await api.client.put(
        f"/v1/customers/{cid}/preferences",
        json=prefs_body(**{"quiet_hours": None, "max_per_week": None, **body}),
        headers=api.as_("marketing"),
    )


def ledger_rows(api: Api) -> int:
    count: int = query(api, "SELECT count(*) FROM consent_events")[0][0]
    return count


def fields(r: Any) -> list[str]:
    return [e["field"] for e in r.json()["errors"]]


async def test_edge_11_imported_consent_without_proof_is_refused(api: Api) -> None:
    """The reproduction: an ``import`` with empty evidence granting email + promotions was accepted and the
    gate allowed marketing. Now 400 naming the three keys; the customer has no channel and no topics, no
    event was written, and the gate answers deny."""
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    await campaign(api)
    before = ledger_rows(api)
    r = await put_prefs(api, "c1", provenance=provenance())
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert fields(r) == [f"provenance.evidence.{k}" for k in KEYS]
    assert ledger_rows(api) == before
    got = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))).json()
    assert (got["channel"], got["topics"]) == (None, [])
    decision = (await approve(api, ["c1"], dry_run=True)).json()["decisions"][0]
    assert (decision["verdict"], decision["reason"]) == ("deny", "no_channel")


@pytest.mark.parametrize("source", ["import", "crm"])
async def test_edge_11_imported_consent_with_proof_is_taken_and_recorded(api: Api, source: str) -> None:
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    await campaign(api)
    r = await put_prefs(api, "c1", provenance=provenance(source, **PROOF, batch="b-7"))
    assert r.status_code == 200, r.text
    assert (await approve(api, ["c1"], dry_run=True)).json()["decisions"][0]["verdict"] == "allow"
    events = (await api.client.get("/v1/consent-events?customer_id=c1", headers=api.as_("auditor"))).json()
    grants = [e for e in events["events"] if e["action"] == "grant"]
    assert grants and all(e["evidence"] == {**PROOF, "batch": "b-7"} for e in grants)


@pytest.mark.parametrize(
    ("evidence", "bad"),
    [
        ({**PROOF, "source_party": ""}, {"source_party"}),
        ({**PROOF, "source_party": "   "}, {"source_party"}),
        ({**PROOF, "method": 3}, {"method"}),
        ({**PROOF, "method": None}, {"method"}),
        ({**PROOF, "consented_at": "2026-09-30T18:04:05"}, {"consented_at"}),  # no offset
        ({**PROOF, "consented_at": "2026-09-30"}, {"consented_at"}),
        ({**PROOF, "consented_at": "2026-09-30 18:04:05Z"}, {"consented_at"}),
        ({**PROOF, "consented_at": "2026-13-01T00:00:00Z"}, {"consented_at"}),
        ({**PROOF, "consented_at": "1899-12-31T23:59:59Z"}, {"consented_at"}),  # outside the instants
        ({**PROOF, "consented_at": "9999-12-31T23:59:59-05:00"}, {"consented_at"}),
        ({**PROOF, "consented_at": 1759251845}, {"consented_at"}),
        ({"method": "phone"}, {"source_party", "consented_at"}),
    ],
)
async def test_edge_11_each_missing_or_bad_key_is_named(
    api: Api, evidence: dict[str, Any], bad: set[str]
) -> None:
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    r = await put_prefs(api, "c1", channel=None, topics=["promotions"], provenance=provenance(**evidence))
    assert r.status_code == 400, r.text
    assert set(fields(r)) == {f"provenance.evidence.{k}" for k in bad}


@pytest.mark.parametrize("consented_at", ["2026-09-30T18:04:05Z", "2026-09-30t18:04:05.123456789-07:30"])
async def test_edge_11_rfc_3339_forms_are_accepted(api: Api, consented_at: str) -> None:
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    r = await put_prefs(api, "c1", provenance=provenance(**{**PROOF, "consented_at": consented_at}))
    assert r.status_code == 200, r.text


async def test_edge_11_withdrawals_and_updates_need_no_proof(api: Api) -> None:
    """Only a grant needs the proof: from the granted state, an import that withdraws a topic, one that
    only changes quiet hours and one that drops the channel are all taken with empty evidence."""
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    ok = await put_prefs(api, "c1", topics=["promotions", "product-news"], provenance=provenance(**PROOF))
    assert ok.status_code == 200, ok.text
    r = await put_prefs(api, "c1", topics=["promotions"], provenance=provenance())
    assert r.status_code == 200, r.text
    r = await put_prefs(
        api,
        "c1",
        topics=["promotions"],
        quiet_hours={"start": "22:00", "end": "07:00"},
        provenance=provenance("crm"),
    )
    assert r.status_code == 200, r.text
    r = await put_prefs(
        api,
        "c1",
        channel=None,
        topics=[],
        quiet_hours={"start": "22:00", "end": "07:00"},
        provenance=provenance(),
    )
    assert r.status_code == 200, r.text
    # ... but granting again needs it again.
    r = await put_prefs(api, "c1", channel="email", topics=[], provenance=provenance("crm"))
    assert r.status_code == 400 and fields(r) == [f"provenance.evidence.{k}" for k in KEYS]


async def test_edge_11_other_sources_are_not_asked_for_it(api: Api) -> None:
    assert (
        await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    ).status_code == 201
    r = await put_prefs(api, "c1", provenance={"source": "api", "actor": "app", "notice_version": "x"})
    assert r.status_code == 200, r.text
