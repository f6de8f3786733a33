"""The role x endpoint matrix of API.md "Roles": each role gets exactly what it may, nothing more."""

from __future__ import annotations

from typing import Any

import pytest

from prefcenter.services import keys
from tests.conftest import CAMPAIGN, PROFILE, Api, prefs_body

ALL = {"admin", "marketing", "auditor"}
# (method, path, body, roles allowed by API.md)
ENDPOINTS: list[tuple[str, str, Any, set[str]]] = [
    ("PUT", "/v1/customers/c1", PROFILE, {"admin", "marketing"}),
    ("GET", "/v1/customers/c1", None, ALL),
    ("GET", "/v1/customers/c1/preferences", None, ALL),
    ("PUT", "/v1/customers/c1/preferences", prefs_body(), {"admin", "marketing"}),
    ("GET", "/v1/customers/c1/consent-receipt", None, {"admin", "auditor"}),
    ("GET", "/v1/topics", None, ALL),
    ("GET", "/v1/topics/promotions", None, ALL),
    ("PUT", "/v1/topics/offers", {"category": "marketing", "names": {"en": "Offers"}}, {"admin"}),
    ("DELETE", "/v1/topics/product-news", None, {"admin"}),
    ("GET", "/v1/consent-events", None, {"admin", "auditor"}),
    ("GET", "/v1/consent-events/export?format=csv", None, {"admin", "auditor"}),
    ("GET", "/v1/consent-events/verify", None, {"admin", "auditor"}),
    ("PUT", "/v1/campaigns/bf", CAMPAIGN, {"admin", "marketing"}),
    ("GET", "/v1/campaigns/bf0", None, ALL),
    ("POST", "/v1/approvals", {"campaign_id": "bf0", "customer_ids": ["c1"], "dry_run": True}, {"admin", "marketing"}),
    ("GET", "/v1/customers/c1/decisions", None, ALL),
    ("POST", "/v1/customers/c1/links", {}, {"admin", "marketing"}),
    ("POST", "/v1/campaigns/bf0/sends", {"customer_ids": ["c1"]}, {"admin", "marketing"}),
    ("POST", "/v1/inbound/sms", {"from": "+48600100999", "text": "HELP"}, {"admin", "marketing"}),
    (
        "POST",
        "/v1/inbound/email-events",
        {"type": "bounce", "address": "y@example.org", "permanent": False},
        {"admin", "marketing"},
    ),
    ("GET", "/v1/suppressions", None, {"admin", "auditor"}),
    ("PUT", "/v1/suppressions/email/x@example.org", None, {"admin"}),
    ("DELETE", "/v1/suppressions/email/x@example.org", None, {"admin"}),
    ("DELETE", "/v1/customers/c1", None, {"admin"}),
]


async def call(api: Api, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
    return await api.client.request(method, path, json=body, headers=headers)


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
async def test_role_matrix(api: Api, method: str, path: str, body: Any, allowed: set[str]) -> None:
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("admin"))
    await api.client.put("/v1/campaigns/bf0", json=CAMPAIGN, headers=api.as_("admin"))
    await api.client.put("/v1/suppressions/email/x@example.org", headers=api.as_("admin"))
    for role in sorted(ALL):
        r = await call(api, method, path, body, api.as_(role))
        if role in allowed:
            assert r.status_code not in (401, 403), (role, r.status_code, r.text)
            assert r.status_code < 400, (role, r.text)
        else:
            assert r.status_code == 403, (role, r.status_code)
            assert r.headers["content-type"].startswith("application/problem+json")
        if method == "DELETE" and role in allowed:
            break  # the resource is gone; the remaining roles were checked before it


@pytest.mark.parametrize(
    ("method", "path", "body", "allowed"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS]
)
async def test_no_key_or_unknown_key_is_401(
    api: Api, method: str, path: str, body: Any, allowed: set[str]
) -> None:
    for headers in ({}, {"Authorization": "Bearer pck_not-a-key"}, {"Authorization": "Basic abc"}):
        r = await call(api, method, path, body, headers)
        assert r.status_code == 401, (headers, r.status_code)
        assert "www-authenticate" in r.headers


async def test_revoked_key_is_401(api: Api) -> None:
    record, key = await keys.create_key(api.rt, "auditor", "short-lived")
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.client.get("/v1/topics", headers=headers)).status_code == 200
    await keys.revoke_key(api.rt, record.id)
    assert (await api.client.get("/v1/topics", headers=headers)).status_code == 401


async def test_ops_endpoints_need_no_key(api: Api) -> None:
    assert (await api.client.get("/healthz")).status_code == 200
    assert (await api.client.get("/metrics")).status_code == 200
    assert (await api.client.get("/schema/openapi.json")).status_code == 200


async def test_openapi_documents_every_endpoint_and_its_roles(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()
    ops = {
        (method.upper(), path): op
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in ("get", "put", "post", "delete")
    }
    for method, path, _, allowed in ENDPOINTS:
        template = (
            path.split("?")[0]
            .replace("/c1", "/{customer_id}")
            .replace("/promotions", "/{topic_id}")
            .replace("/offers", "/{topic_id}")
            .replace("/product-news", "/{topic_id}")
            .replace("/bf0", "/{campaign_id}")
            .replace("/bf", "/{campaign_id}")
            .replace("/email/x@example.org", "/{channel}/{address}")
        )
        op = ops[(method, template)]
        roles_line = next(line for line in op["description"].splitlines() if line.startswith("**Roles:**"))
        assert {r.strip(" .") for r in roles_line.removeprefix("**Roles:**").split(",")} == allowed
        assert op["security"] == [{"bearer": []}]
    assert "bearer" in doc["components"]["securitySchemes"]
    for name in ("Profile", "PreferencesWrite", "Preferences", "Topic", "Campaign", "ApprovalRequest", "ApprovalAnswer"):
        assert name in doc["components"]["schemas"], name
