"""Lists with cursors (API.md "Lists"): GET /v1/customers and GET /v1/campaigns, on both engines."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.api.test_approvals import campaign, customer
from tests.conftest import PROFILE, Api, FakeClock


async def bare_customer(api: Api, cid: str) -> None:
    """A customer with a profile and no preferences: no channel, no topics."""
    r = await api.client.put(f"/v1/customers/{cid}", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text


async def pages(
    api: Api, path: str, items: str, role: str = "auditor", **params: Any
) -> list[list[dict[str, Any]]]:
    """Every page of a list, following ``next`` to the end (bounded)."""
    out: list[list[dict[str, Any]]] = []
    after: str | None = None
    for _ in range(100):
        q = {**params, **({"after": after} if after else {})}
        r = await api.client.get(path, params=q, headers=api.as_(role))
        assert r.status_code == 200, r.text
        body = r.json()
        out.append(body[items])
        after = body["next"]
        if after is None:
            return out
    raise AssertionError("paging did not end")


async def test_customers_pages_see_each_once(api: Api) -> None:
    ids = [f"c{i:02d}" for i in range(23)]
    for cid in ids[:15]:
        await customer(api, cid, channel="sms" if cid == "c03" else "email")
    for cid in ids[15:]:
        await bare_customer(api, cid)
    got = await pages(api, "/v1/customers", "customers", limit="5")
    assert [len(p) for p in got] == [5, 5, 5, 5, 3]
    flat = [c for p in got for c in p]
    assert [c["customer_id"] for c in flat] == ids
    first = flat[0]
    assert set(first) == {"customer_id", "preferences", "updated_at"}
    assert first["preferences"] == {
        "channel": "email",
        "topics": ["promotions"],
        "quiet_hours": None,
        "max_per_week": None,
        "paused_until": None,
    }
    assert first["updated_at"].endswith("Z")
    assert "ola@example.pl" not in str(flat) and "+48600100200" not in str(flat)
    # the default limit answers everything here in one page
    r = await api.client.get("/v1/customers", headers=api.as_("marketing"))
    assert r.status_code == 200 and r.json()["next"] is None and len(r.json()["customers"]) == 23
    # an exact multiple of limit: the last full page may say next, the page after is empty and final
    got = await pages(api, "/v1/customers", "customers", limit="23")
    assert [c["customer_id"] for p in got for c in p] == ids


async def test_customer_filters(api: Api, clock: FakeClock) -> None:
    await customer(api, "a1")
    await customer(api, "a2", channel="sms", topics=["product-news"])
    await bare_customer(api, "a3")
    clock.advance(hours=1)
    await customer(api, "a4", topics=["promotions", "product-news"])
    listed = lambda pages_: [c["customer_id"] for p in pages_ for c in p]  # noqa: E731
    assert listed(await pages(api, "/v1/customers", "customers", topic="promotions", limit="1")) == [
        "a1",
        "a4",
    ]
    assert listed(await pages(api, "/v1/customers", "customers", topic="product-news")) == ["a2", "a4"]
    assert listed(await pages(api, "/v1/customers", "customers", channel="sms")) == ["a2"]
    assert listed(await pages(api, "/v1/customers", "customers", channel="none")) == ["a3"]
    since = "2026-11-22T10:30:00+01:00"  # 09:30Z: after a1-a3, before a4
    assert listed(await pages(api, "/v1/customers", "customers", updated_since=since)) == ["a4"]
    assert listed(
        await pages(
            api, "/v1/customers", "customers", topic="promotions", channel="email", updated_since=since
        )
    ) == ["a4"]
    assert listed(await pages(api, "/v1/customers", "customers", topic="nobody-has-it")) == []


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("limit", "-1"),
        ("limit", "1.5"),
        ("topic", "Not A Topic"),
        ("channel", "fax"),
        ("updated_since", "2026-11-22T09:00:00"),
        ("updated_since", "yesterday"),
        ("after", "not-a-cursor"),
        ("after", "!!!"),
        ("after", base64.urlsafe_b64encode(b'["campaigns","x"]').decode().rstrip("=")),
        ("after", base64.urlsafe_b64encode(b'["customers","bad id\\n"]').decode().rstrip("=")),
        ("after", base64.urlsafe_b64encode(b'["customers",7]').decode().rstrip("=")),
        ("after", base64.urlsafe_b64encode(b"\xff\xfe").decode()),
    ],
)
async def test_customers_bad_parameters_are_400(api: Api, param: str, value: str) -> None:
    r = await api.client.get("/v1/customers", params={param: value}, headers=api.as_("auditor"))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert [e["field"] for e in r.json()["errors"]] == [param]


async def test_limit_bounds_accepted(api: Api) -> None:
    for cid in ("b1", "b2"):
        await bare_customer(api, cid)
    for limit in ("1", "1000"):
        r = await api.client.get("/v1/customers", params={"limit": limit}, headers=api.as_("auditor"))
        assert r.status_code == 200
        assert len(r.json()["customers"]) == min(int(limit), 2)


async def test_write_during_paging_is_seen_at_most_once(api: Api, clock: FakeClock) -> None:
    """Customers inserted or updated between pages: none is seen twice, none already there is missed."""
    for i in range(10):
        await customer(api, f"m{i:02d}")
    seen: list[str] = []
    after: str | None = None
    step = 0
    while True:
        params = {"limit": "3", **({"after": after} if after else {})}
        body = (await api.client.get("/v1/customers", params=params, headers=api.as_("auditor"))).json()
        seen += [c["customer_id"] for c in body["customers"]]
        step += 1
        clock.advance(seconds=1)
        # update one already seen (its updated_at moves, its key does not), one ahead; insert behind and ahead
        await customer(api, seen[0], topics=["product-news"])
        await customer(api, "m09", channel="sms")
        await bare_customer(api, f"a{step}")  # sorts before every m: behind the cursor
        await bare_customer(api, f"m05x{step}")  # between m05 and m06
        after = body["next"]
        if after is None:
            break
    assert len(seen) == len(set(seen))
    assert {f"m{i:02d}" for i in range(10)} <= set(seen)
    assert seen == sorted(seen)


async def test_campaigns_list(api: Api) -> None:
    for cid in ("spring", "autumn", "black-friday"):
        await campaign(api, cid, send_by="2026-12-01T10:00:00+01:00" if cid == "spring" else None)
    got = await pages(api, "/v1/campaigns", "campaigns", role="marketing", limit="2")
    assert [len(p) for p in got] == [2, 1]
    flat = [c for p in got for c in p]
    assert [c["campaign_id"] for c in flat] == ["autumn", "black-friday", "spring"]
    assert flat[2] == {
        "campaign_id": "spring",
        "topic": "promotions",
        "channels": ["email", "sms"],
        "send_by": "2026-12-01T09:00:00Z",
    }
    assert flat[0]["send_by"] is None
    r = await api.client.get("/v1/campaigns", params={"after": "x"}, headers=api.as_("auditor"))
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "after"
    # a customers cursor is not a campaigns cursor
    c = await api.client.get("/v1/customers", params={"limit": "1"}, headers=api.as_("auditor"))
    await bare_customer(api, "z1")
    await bare_customer(api, "z2")
    c = await api.client.get("/v1/customers", params={"limit": "1"}, headers=api.as_("auditor"))
    r = await api.client.get("/v1/campaigns", params={"after": c.json()["next"]}, headers=api.as_("auditor"))
    assert r.status_code == 400


@pytest.mark.parametrize(
    "path", ["/v1/customers", "/v1/campaigns", "/v1/customers/x/messages", "/v1/campaigns/x/messages"]
)
async def test_list_roles(api: Api, path: str) -> None:
    assert (await api.client.get(path)).status_code == 401
    r = await api.client.get(path, headers={"Authorization": "Bearer pc_not_a_key"})
    assert r.status_code == 401
    for role in ("admin", "marketing", "auditor"):
        r = await api.client.get(path, headers=api.as_(role))
        assert r.status_code in (200, 404), (role, r.text)


def next_of(r: Any) -> str | None:
    """The target of the Link rel=next header, or None."""
    link = r.headers.get("link")
    if link is None:
        return None
    target, rel = link.split(";", 1)
    assert rel.strip() == 'rel="next"' and target.startswith("<") and target.endswith(">")
    return target[1:-1]


async def link_pages(api: Api, first: str, items: str, role: str) -> list[list[dict[str, Any]]]:
    out: list[list[dict[str, Any]]] = []
    url: str | None = first
    for _ in range(100):
        assert url is not None
        r = await api.client.get(url, headers=api.as_(role))
        assert r.status_code == 200, r.text
        assert set(r.json()) == {items}  # the shape stays: no "next" in the body
        out.append(r.json()[items])
        url = next_of(r)
        if url is None:
            return out
    raise AssertionError("paging did not end")


async def test_suppressions_link_paging(api: Api) -> None:
    for i in range(7):
        r = await api.client.put(f"/v1/suppressions/email/s{i}@example.pl", headers=api.as_("admin"))
        assert r.status_code == 201, r.text
    r = await api.client.put("/v1/suppressions/sms/+48600100201", headers=api.as_("admin"))
    assert r.status_code == 201, r.text
    full = await api.client.get("/v1/suppressions", headers=api.as_("auditor"))
    assert "link" not in full.headers and len(full.json()["suppressions"]) == 8
    got = await link_pages(api, "/v1/suppressions?limit=3", "suppressions", "auditor")
    assert [len(p) for p in got] == [3, 3, 2]
    keys = [(s["channel"], s["address_ref"]) for p in got for s in p]
    assert keys == sorted(keys) and len(set(keys)) == 8
    assert sorted(keys) == sorted((s["channel"], s["address_ref"]) for s in full.json()["suppressions"])
    got = await link_pages(api, "/v1/suppressions?channel=email&limit=2", "suppressions", "admin")
    assert [len(p) for p in got] == [2, 2, 2, 1] and all(s["channel"] == "email" for p in got for s in p)
    one = await api.client.get("/v1/suppressions", params={"limit": "1000"}, headers=api.as_("auditor"))
    assert "link" not in one.headers and len(one.json()["suppressions"]) == 8
    for params in ({"limit": "0"}, {"limit": "x"}, {"after": "zz"}, {"limit": "2", "after": "W10"}):
        r = await api.client.get("/v1/suppressions", params=params, headers=api.as_("auditor"))
        assert r.status_code == 400, (params, r.text)
        assert r.json()["errors"][0]["field"] in params
    assert (await api.client.get("/v1/suppressions?limit=2", headers=api.as_("marketing"))).status_code == 403
    assert (await api.client.get("/v1/suppressions?limit=2")).status_code == 401


async def test_decisions_link_paging(api: Api) -> None:
    from tests.api.test_approvals import approve

    await campaign(api)
    await campaign(api, "spring")
    await customer(api, "c1")
    for i in range(5):
        r = await approve(
            api, ["c1"], at=f"2026-11-2{3 + i}T12:00:00Z", cid="spring" if i == 2 else "black-friday"
        )
        assert r.status_code == 200, r.text
    full = await api.client.get("/v1/customers/c1/decisions", headers=api.as_("auditor"))
    assert "link" not in full.headers
    everything = full.json()["decisions"]
    assert len(everything) >= 2
    got = await link_pages(api, "/v1/customers/c1/decisions?limit=1", "decisions", "marketing")
    assert [d for p in got for d in p] == everything and all(len(p) == 1 for p in got)
    only = await link_pages(
        api, "/v1/customers/c1/decisions?campaign_id=spring&limit=1", "decisions", "auditor"
    )
    assert [d for p in only for d in p] == [d for d in everything if d["campaign_id"] == "spring"]
    r = await api.client.get(
        "/v1/customers/c1/decisions", params={"limit": "1001"}, headers=api.as_("auditor")
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "limit"
    r = await api.client.get(
        "/v1/customers/c1/decisions", params={"after": "e30"}, headers=api.as_("auditor")
    )
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "after"
    r = await api.client.get(
        "/v1/customers/nobody/decisions", params={"limit": "5"}, headers=api.as_("auditor")
    )
    assert r.status_code == 404


async def test_the_document_describes_the_lists(api: Api) -> None:
    doc = (await api.client.get("/schema/openapi.json")).json()

    def params(path: str) -> dict[str, Any]:
        return {p["name"]: p["schema"] for p in doc["paths"][path]["get"].get("parameters", [])}

    customers = params("/v1/customers")
    assert "none" in customers["channel"]["enum"] and "email" in customers["channel"]["enum"]
    assert (customers["limit"]["minimum"], customers["limit"]["maximum"]) == (1, 1000)
    assert customers["updated_since"]["format"] == "date-time"
    statuses = params("/v1/campaigns/{campaign_id}/messages")["status"]["enum"]
    assert statuses == ["queued", "deferred", "sent", "failed", "suppressed", "withdrawn"]
    for path in ("/v1/customers/{customer_id}/decisions", "/v1/suppressions"):
        assert params(path)["limit"]["maximum"] == 1000
        assert "Link" in doc["paths"][path]["get"]["responses"]["200"]["headers"]
