"""``POST /v1/customers/import`` (API.md "Bulk import"): NDJSON, validated line by line as the single
endpoints validate, each line whole or not at all, unchanged lines write nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from prefcenter.services import imports
from tests.conftest import CRM_EVIDENCE, PROFILE, Api, prefs_body, query
from tests.live import serve

NDJSON = {"Content-Type": "application/x-ndjson"}


def line(cid: str, *, prefs: bool = True, **overrides: Any) -> dict[str, Any]:
    body = prefs_body()
    provenance = body.pop("provenance")
    out: dict[str, Any] = {"customer_id": cid, "profile": PROFILE}
    if prefs:
        out["preferences"] = body
        out["provenance"] = provenance
    out.update(overrides)
    return out


def ndjson(*lines: Any) -> bytes:
    return b"".join((x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines)


async def post(api: Api, body: bytes, role: str = "marketing") -> Any:
    return await api.client.post("/v1/customers/import", content=body, headers={**api.as_(role), **NDJSON})


def events(api: Api, cid: str) -> list[tuple[Any, ...]]:
    return query(
        api,
        "SELECT action, subject, value, source, actor, notice_version, evidence FROM consent_events "
        "WHERE customer_id = ? ORDER BY seq",
        cid,
    )


def event_count(api: Api) -> int:
    n: int = query(api, "SELECT count(*) FROM consent_events")[0][0]
    return n


async def test_import_counts_and_idempotent_reimport(api: Api) -> None:
    body = ndjson(line("c1"), line("c2"), line("c3", prefs=False))
    r = await post(api, body)
    assert r.status_code == 200, r.text
    assert r.json() == {"created": 3, "updated": 0, "unchanged": 0, "rejected": 0, "errors": []}
    written = event_count(api)
    assert written > 0
    r = await post(api, body)
    assert r.json() == {"created": 0, "updated": 0, "unchanged": 3, "rejected": 0, "errors": []}
    assert event_count(api) == written  # re-importing the same file: no new event
    # an update of one field of one line
    changed = line("c2")
    changed["preferences"]["max_per_week"] = 5
    r = await post(api, ndjson(line("c1"), changed))
    assert r.json()["updated"] == 1 and r.json()["unchanged"] == 1
    assert event_count(api) == written + 1
    got = (await api.client.get("/v1/customers/c3/preferences", headers=api.as_("marketing"))).json()
    assert (got["channel"], got["topics"]) == (None, [])  # a new customer without preferences


async def test_import_equals_the_two_puts(api: Api) -> None:
    """An imported line leaves the same stored state and the same ledger events as the two PUTs."""
    m = api.as_("marketing")
    assert (await api.client.put("/v1/customers/viaput", json=PROFILE, headers=m)).status_code == 201
    r = await api.client.put("/v1/customers/viaput/preferences", json=prefs_body(channel="sms"), headers=m)
    assert r.status_code == 200, r.text
    imp = line("viaimport")
    imp["preferences"]["channel"] = "sms"
    r = await post(api, ndjson(imp))
    assert r.json()["created"] == 1, r.text
    for path in ("", "/preferences"):
        a = (await api.client.get(f"/v1/customers/viaput{path}", headers=m)).json()
        b = (await api.client.get(f"/v1/customers/viaimport{path}", headers=m)).json()
        assert a == b
    assert events(api, "viaput") == events(api, "viaimport")
    assert len(events(api, "viaput")) >= 2
    # the SMS opt-in confirmation is queued for both (COMPLIANCE 26)
    kinds = query(api, "SELECT customer_id, kind FROM notifications ORDER BY customer_id")
    assert kinds == [("viaimport", "sms_opt_in"), ("viaput", "sms_opt_in")]
    r = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert r.status_code == 200 and r.json()["ok"] is True, r.text


async def test_bad_lines_are_rejected_alone(api: Api) -> None:
    bad_tz = line("b1")
    bad_tz["profile"] = {**PROFILE, "timezone": "Mars/Olympus"}
    bad_topic = line("b2")
    bad_topic["preferences"]["topics"] = ["nope"]
    no_proof = line("b3")
    no_proof["provenance"] = {**no_proof["provenance"], "evidence": {}}
    admin = line("b4")
    admin["provenance"] = {**admin["provenance"], "source": "admin"}
    lonely = line("b5")
    del lonely["provenance"]
    body = ndjson(
        line("g1"),
        bad_tz,
        b"not json",
        b"[1, 2]",
        bad_topic,
        {"customer_id": "x\ny", "profile": PROFILE},
        no_proof,
        line("g2"),
        admin,
        lonely,
        {**line("b6"), "extra": 1},
        {"customer_id": "b7", "profile": {**PROFILE, "timezone": 5}},
    )
    r = await post(api, body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["created"], got["rejected"]) == (2, 10), got
    by_line = {(e["line"], e["field"]) for e in got["errors"]}
    assert (2, "profile.timezone") in by_line
    assert (3, "") in by_line and (4, "") in by_line
    assert (5, "preferences.topics[0]") in by_line
    assert (6, "customer_id") in by_line
    assert {(7, f"provenance.evidence.{k}") for k in ("source_party", "consented_at", "method")} <= by_line
    assert (9, "provenance.source") in by_line
    assert (10, "provenance") in by_line
    assert (11, "extra") in by_line
    assert (12, "profile.timezone") in by_line
    customers = {row[0] for row in query(api, "SELECT id FROM customers")}
    assert customers == {"g1", "g2"}  # nothing of a bad line is written
    assert query(api, "SELECT count(*) FROM consent_events WHERE customer_id LIKE 'b%'")[0][0] == 0
    # an admin key may claim source admin
    r = await post(api, ndjson(admin), role="admin")
    assert r.json()["created"] == 1, r.text


async def test_bad_line_in_one_chunk_and_write_fault(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """A line that fails only at write time (here: a contact row the database refuses) is isolated: the
    chunk is tried again line by line, the others are written."""
    real = api.rt.store.write

    def write() -> Any:
        cm = real()

        class Wrapped:
            async def __aenter__(self) -> Any:
                tx = await cm.__aenter__()
                inner = tx.write_import

                async def write_import(writes: Any) -> None:
                    if any(c.customer_id == "poison" for c, _, _ in writes.customers):
                        raise RuntimeError("refused")
                    await inner(writes)

                tx.write_import = write_import
                return tx

            async def __aexit__(self, *exc: Any) -> Any:
                return await cm.__aexit__(*exc)

        return Wrapped()

    monkeypatch.setattr(api.rt.store, "write", write)
    monkeypatch.setattr(imports, "CHUNK_LINES", 50)
    body = ndjson(*[line(f"k{i}") for i in range(10)], line("poison"), *[line(f"m{i}") for i in range(5)])
    r = await post(api, body)
    got = r.json()
    assert (got["created"], got["rejected"]) == (15, 1), got
    assert got["errors"] == [{"line": 11, "field": "", "message": "could not be stored"}]
    assert query(api, "SELECT count(*) FROM customers")[0][0] == 15


async def test_errors_are_capped(api: Api) -> None:
    r = await post(api, b"x\n" * 1200)
    got = r.json()
    assert got["rejected"] == 1200 and len(got["errors"]) == imports.MAX_ERRORS
    assert got["errors"][-1]["line"] == 1000


async def test_roles_and_media_type(api: Api) -> None:
    body = ndjson(line("c1"))
    r = await api.client.post("/v1/customers/import", content=body, headers=NDJSON)
    assert r.status_code == 401
    r = await post(api, body, role="auditor")
    assert r.status_code == 403
    r = await api.client.post(
        "/v1/customers/import",
        content=body,
        headers={**api.as_("marketing"), "Content-Type": "application/json"},
    )
    assert r.status_code == 415 and r.headers["content-type"].startswith("application/problem+json")
    assert query(api, "SELECT count(*) FROM customers")[0][0] == 0


async def test_live_server_streams_more_than_one_chunk(api: Api) -> None:
    """A real uvicorn server, a streamed body of 5,000 lines (more than two chunks) sent in pieces."""
    n = 5000

    async def body() -> Any:
        for start in range(0, n, 700):
            yield ndjson(*[line(f"s{i}") for i in range(start, min(start + 700, n))])
            await asyncio.sleep(0)

    with serve(api.rt) as base:
        async with httpx.AsyncClient(timeout=120) as client:
            r = await client.post(
                f"{base}/v1/customers/import", content=body(), headers={**api.as_("marketing"), **NDJSON}
            )
            assert r.status_code == 200, r.text
            assert r.json() == {"created": n, "updated": 0, "unchanged": 0, "rejected": 0, "errors": []}
            r = await client.get(f"{base}/v1/consent-events/verify", headers=api.as_("auditor"))
            assert r.json()["ok"] is True, r.text
    assert query(api, "SELECT count(*) FROM customers")[0][0] == n
    assert CRM_EVIDENCE["method"] in query(api, "SELECT evidence FROM consent_events LIMIT 1")[0][0]


async def test_ndjson_lines_split_anywhere_and_overlong(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(imports, "MAX_LINE_BYTES", 10)
    data = b'{"a":1}\n\n' + b"x" * 25 + b"\n{}\n" + b"y" * 11
    for size in (1, 3, 7, 64):

        async def pieces(size: int = size) -> Any:
            for i in range(0, len(data), size):
                yield data[i : i + size]

        got = [item async for item in imports.ndjson_lines(pieces())]
        assert got == [(1, b'{"a":1}'), (2, b""), (3, None), (4, b"{}"), (5, None)], size


async def test_a_customer_named_import_is_still_reachable(api: Api) -> None:
    """`import` is a valid customer id: the import's fixed path must not shadow its profile (litestar
    matches the static path first and answered 405 to PUT/GET/DELETE /v1/customers/import)."""
    r = await api.client.put("/v1/customers/import", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    etag = r.headers["ETag"]
    r = await api.client.put(
        "/v1/customers/import", json=PROFILE, headers={**api.as_("marketing"), "If-Match": '"stale"'}
    )
    assert r.status_code == 412
    r = await api.client.get("/v1/customers/import", headers=api.as_("auditor"))
    assert r.status_code == 200 and r.json() == PROFILE and r.headers["ETag"] == etag
    r = await api.client.put(
        "/v1/customers/import/preferences", json=prefs_body(), headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text
    assert (await api.client.delete("/v1/customers/import", headers=api.as_("marketing"))).status_code == 403
    assert (await api.client.delete("/v1/customers/import", headers=api.as_("admin"))).status_code == 204
    assert (await api.client.get("/v1/customers/import", headers=api.as_("admin"))).status_code == 404
    # and the import itself still answers POST
    r = await post(api, ndjson(line("import")))
    assert r.json()["created"] == 1
