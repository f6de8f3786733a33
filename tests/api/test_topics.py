"""Topics (API.md "Topics")."""

from __future__ import annotations

from tests.conftest import PROFILE, Api, prefs_body


async def test_topic_crud_and_409_when_in_use(api: Api) -> None:
    admin = api.as_("admin")
    body = {
        "category": "marketing",
        "names": {"en": "Offers", "pl": "Oferty"},
        "descriptions": {"en": "Deals"},
    }
    shown = {**body, "double_opt_in": False}  # the default, always shown (issue 13)
    r = await api.client.put("/v1/topics/offers", json=body, headers=admin)
    assert r.status_code == 201 and r.json() == shown
    r = await api.client.put("/v1/topics/offers", json=body, headers=admin)
    assert r.status_code == 200
    r = await api.client.get("/v1/topics/offers", headers=api.as_("marketing"))
    assert r.json() == shown
    listing = (await api.client.get("/v1/topics", headers=api.as_("auditor"))).json()["topics"]
    assert set(listing) == {"offers", "promotions", "product-news", "order-updates"}

    await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(topics=["offers"]), headers=api.as_("marketing")
    )
    r = await api.client.delete("/v1/topics/offers", headers=admin)
    assert r.status_code == 409
    r = await api.client.put("/v1/topics/offers", json={**body, "category": "transactional"}, headers=admin)
    assert r.status_code == 409
    await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(topics=[]), headers=api.as_("marketing")
    )
    r = await api.client.delete("/v1/topics/offers", headers=admin)
    assert r.status_code == 204
    assert (await api.client.get("/v1/topics/offers", headers=admin)).status_code == 404
    assert (await api.client.delete("/v1/topics/offers", headers=admin)).status_code == 404


async def test_bad_topics_are_400(api: Api) -> None:
    admin = api.as_("admin")
    cases = [
        ("Offers", {"category": "marketing", "names": {"en": "x"}}, "topic_id"),
        ("-offers", {"category": "marketing", "names": {"en": "x"}}, "topic_id"),
        ("offers", {"category": "spam", "names": {"en": "x"}}, "category"),
        ("offers", {"category": "marketing", "names": {}}, "names"),
        ("offers", {"category": "marketing", "names": {"en": ""}}, "names"),
        ("offers", {"category": "marketing", "names": {"!!": "x"}}, "names.!!"),
        ("offers", {"category": "marketing"}, "names"),
        ("offers", {"category": "marketing", "names": {"en": "x"}, "color": "red"}, "color"),
    ]
    for topic_id, body, field in cases:
        r = await api.client.put(f"/v1/topics/{topic_id}", json=body, headers=admin)
        assert r.status_code == 400, (topic_id, body, r.text)
        fields = [e["field"] for e in r.json()["errors"]]
        assert any(f == field or f.startswith(field) for f in fields), (body, fields)
