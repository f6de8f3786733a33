"""Request bodies and preconditions (issue 10): a missing body says so, a body that is not
``application/json`` is a 415, bodies are decoded strictly as the OpenAPI document describes them, and
``If-Match`` guards ``PUT /v1/customers/{id}`` as it guards preferences."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import CAMPAIGN, PROFILE, Api, prefs_body

# Every operation with a JSON body: (method, path, a valid body, the role that may call it).
JSON_BODIES: list[tuple[str, str, dict[str, Any], str]] = [
    ("PUT", "/v1/customers/c2", PROFILE, "marketing"),
    ("PUT", "/v1/customers/c1/preferences", prefs_body(), "marketing"),
    ("PUT", "/v1/topics/t2", {"category": "marketing", "names": {"en": "T2"}}, "admin"),
    ("PUT", "/v1/campaigns/camp2", CAMPAIGN, "marketing"),
    ("POST", "/v1/approvals", {"campaign_id": "camp1", "customer_ids": ["c1"], "dry_run": True}, "marketing"),
    ("POST", "/v1/campaigns/camp1/sends", {"customer_ids": ["c1"]}, "marketing"),
    ("POST", "/v1/inbound/sms", {"from": "+48600100200", "text": "HELP"}, "marketing"),
    ("POST", "/v1/inbound/email-events", {"type": "bounce", "address": "x@example.org", "permanent": False}, "marketing"),
    ("POST", "/v1/customers/c1/links", {"topic": "promotions"}, "marketing"),
]  # fmt: skip
IDS = [f"{m} {p}" for m, p, _, _ in JSON_BODIES]


@pytest.fixture
async def seeded(api: Api) -> Api:
    h = api.as_("marketing")
    assert (await api.client.put("/v1/customers/c1", json=PROFILE, headers=h)).status_code == 201
    assert (await api.client.put("/v1/campaigns/camp1", json=CAMPAIGN, headers=h)).status_code == 201
    return api


async def ledger_head(api: Api) -> Any:
    r = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    return r.json()["head"], r.json()["events"]


def assert_problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= body.keys() and body["status"] == status
    return body


def mentions_data(problem: dict[str, Any]) -> bool:
    """litestar's internal name for the body parameter, which means nothing to a client."""
    texts = [problem["detail"], *(f"{e['field']} {e['message']}" for e in problem.get("errors", []))]
    return any("'data'" in t or t.split(" ")[0] == "data" for t in texts)


@pytest.mark.parametrize(("method", "path", "body", "role"), [b for b in JSON_BODIES if "links" not in b[1]], ids=IDS[:-1])
async def test_a_missing_body_is_a_400_that_says_the_body_is_missing(
    seeded: Api, method: str, path: str, body: dict[str, Any], role: str
) -> None:
    api = seeded
    before = await ledger_head(api)
    for headers in ({}, {"Content-Type": "application/json"}):
        r = await api.client.request(method, path, headers={**api.as_(role), **headers})
        problem = assert_problem(r, 400)
        assert "body is missing" in problem["detail"], problem
        assert not mentions_data(problem), problem
    assert await ledger_head(api) == before


@pytest.mark.parametrize(("method", "path", "body", "role"), JSON_BODIES, ids=IDS)
@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "text/plain; charset=utf-8", "application/x-www-form-urlencoded",
                     "application/json-patch+json", "application/json; charset=latin-1"]
)  # fmt: skip
async def test_a_body_that_is_not_application_json_is_a_415(
    seeded: Api, method: str, path: str, body: dict[str, Any], role: str, content_type: str | None
) -> None:
    api = seeded
    before = await ledger_head(api)
    headers = dict(api.as_(role))
    if content_type is not None:
        headers["Content-Type"] = content_type
    r = await api.client.request(method, path, content=json.dumps(body).encode(), headers=headers)
    problem = assert_problem(r, 415)
    assert "application/json" in problem["detail"]
    assert await ledger_head(api) == before
    if method == "PUT":  # nothing was created either
        assert (await api.client.get(path, headers=api.as_("admin"))).status_code in (404, 200)
        if path.endswith(("/c2", "/t2", "/camp2")):
            assert (await api.client.get(path, headers=api.as_("admin"))).status_code == 404


@pytest.mark.parametrize(("method", "path", "body", "role"), JSON_BODIES, ids=IDS)
@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"])
async def test_application_json_with_any_utf8_charset_is_accepted(
    seeded: Api, method: str, path: str, body: dict[str, Any], role: str, content_type: str
) -> None:
    api = seeded
    headers = {**api.as_(role), "Content-Type": content_type}
    r = await api.client.request(method, path, content=json.dumps(body).encode(), headers=headers)
    assert r.status_code in (200, 201, 202), r.text


async def test_links_body_is_optional_but_must_be_json_when_sent(seeded: Api) -> None:
    api = seeded
    h = api.as_("marketing")
    assert (await api.client.post("/v1/customers/c1/links", headers=h)).status_code == 201
    r = await api.client.post("/v1/customers/c1/links", content=b"null", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 201
    r = await api.client.post("/v1/customers/c1/links", content=b'{"topic": "promotions"}', headers={**h, "Content-Type": "text/plain"})
    assert_problem(r, 415)


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/v1/inbound/email-events", {"type": "bounce", "address": "x@example.org", "permanent": 0}, "permanent"),
        ("PUT", "/v1/customers/c1/preferences", prefs_body(max_per_week="2"), "max_per_week"),
        ("PUT", "/v1/customers/c1/preferences", prefs_body(paused_until=4102444800), "paused_until"),
        ("POST", "/v1/approvals", {"campaign_id": "camp1", "customer_ids": ["c1"], "dry_run": "true"}, "dry_run"),
        ("POST", "/v1/approvals", {"campaign_id": "camp1", "customer_ids": ["c1"], "at": 1700000000}, "at"),
        ("PUT", "/v1/customers/c2", {**PROFILE, "contacts": {"email": 5}}, "contacts.email"),
    ],
)  # fmt: skip
async def test_bodies_are_decoded_strictly_as_documented(
    seeded: Api, method: str, path: str, body: dict[str, Any], field: str
) -> None:
    """The document says boolean, integer, date-time string: the server takes nothing else (litestar
    alone would coerce 0 to false, "2" to 2 and a number of seconds to an instant)."""
    api = seeded
    before = await ledger_head(api)
    r = await api.client.request(method, path, json=body, headers=api.as_("marketing"))
    problem = assert_problem(r, 400)
    assert field in [e["field"] for e in problem["errors"]], problem
    assert await ledger_head(api) == before


async def test_page_forms_are_not_json_endpoints(seeded: Api) -> None:
    """/p/ and /u/ take form bodies: the JSON rule does not apply to them (a bad token is a 4xx page)."""
    api = seeded
    for path in ("/u/not-a-token", "/p/not-a-token"):
        r = await api.client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code != 415 and 400 <= r.status_code < 500, (path, r.status_code)


# --- If-Match on PUT /v1/customers/{id} -------------------------------------------------------------


async def test_get_customer_has_a_strong_etag_that_put_returns_too(seeded: Api) -> None:
    api = seeded
    r = await api.client.get("/v1/customers/c1", headers=api.as_("auditor"))
    etag = r.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    again = await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    assert again.status_code == 200 and again.headers["etag"] == etag  # same representation, same tag
    changed = await api.client.put("/v1/customers/c1", json={**PROFILE, "locale": "en"}, headers=api.as_("marketing"))
    assert changed.headers["etag"] != etag
    assert (await api.client.get("/v1/customers/c1", headers=api.as_("auditor"))).headers["etag"] == changed.headers["etag"]


async def test_if_match_on_put_customer_is_honoured(seeded: Api) -> None:
    api = seeded
    h = api.as_("marketing")
    etag = (await api.client.get("/v1/customers/c1", headers=h)).headers["etag"]
    ok = await api.client.put("/v1/customers/c1", json={**PROFILE, "locale": "en"}, headers={**h, "If-Match": etag})
    assert ok.status_code == 200 and ok.headers["etag"] != etag

    stale = await api.client.put("/v1/customers/c1", json={**PROFILE, "locale": "ro"}, headers={**h, "If-Match": etag})
    assert_problem(stale, 412)
    weak = await api.client.put("/v1/customers/c1", json={**PROFILE, "locale": "ro"}, headers={**h, "If-Match": "W/" + ok.headers["etag"]})
    assert_problem(weak, 412)  # strong comparison: a weak tag never matches
    current = await api.client.get("/v1/customers/c1", headers=h)
    assert current.json()["locale"] == "en" and current.headers["etag"] == ok.headers["etag"]  # nothing changed

    listed = await api.client.put(
        "/v1/customers/c1", json={**PROFILE, "locale": "ro"}, headers={**h, "If-Match": f'"nope", {ok.headers["etag"]}'}
    )
    assert listed.status_code == 200  # any tag of the list may match
    star = await api.client.put("/v1/customers/c1", json=PROFILE, headers={**h, "If-Match": "*"})
    assert star.status_code == 200


async def test_if_match_on_a_customer_that_does_not_exist_is_412_and_creates_nothing(seeded: Api) -> None:
    api = seeded
    h = api.as_("marketing")
    for tag in ("*", '"abc"'):
        r = await api.client.put("/v1/customers/new1", json=PROFILE, headers={**h, "If-Match": tag})
        assert_problem(r, 412)
    assert (await api.client.get("/v1/customers/new1", headers=h)).status_code == 404


async def test_if_match_does_not_touch_preferences_and_the_two_etags_are_separate(seeded: Api) -> None:
    api = seeded
    h = api.as_("marketing")
    assert (await api.client.put("/v1/customers/c1/preferences", json=prefs_body(), headers=h)).status_code == 200
    prefs_etag = (await api.client.get("/v1/customers/c1/preferences", headers=h)).headers["etag"]
    profile_etag = (await api.client.get("/v1/customers/c1", headers=h)).headers["etag"]
    assert prefs_etag != profile_etag
    body = copy.deepcopy(PROFILE)
    body["locale"] = "en"
    r = await api.client.put("/v1/customers/c1", json=body, headers={**h, "If-Match": prefs_etag})
    assert_problem(r, 412)
    r = await api.client.put("/v1/customers/c1", json=body, headers={**h, "If-Match": profile_etag})
    assert r.status_code == 200
    after = await api.client.get("/v1/customers/c1/preferences", headers=h)
    assert after.headers["etag"] == prefs_etag  # replacing the profile never changes preferences


def test_litestars_name_for_a_missing_body_never_reaches_a_client() -> None:
    """Any JSON operation without the body hook still says "body is missing", not litestar's ``'data'``."""
    from litestar.exceptions import ValidationException

    from prefcenter.api.problems import on_validation

    exc = ValidationException(detail="Validation failed for PUT /x", extra=[{"message": "'data'", "key": "data"}])
    response = on_validation(None, exc)  # type: ignore[arg-type]
    body = response.content
    assert response.status_code == 400 and "body is missing" in body["detail"]
    assert not mentions_data(body)
