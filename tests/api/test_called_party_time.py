"""The called party's time and France's telephone rule through the real app (issue 16, items 3 and 4).

COMPLIANCE item 22 and edge 5 (a number's own zone, Florida's 20:00), item 31 (France: weekdays,
holidays, 4 calls per 30 days); API.md "Compliance to the letter". The store places each phone
contact (prefcenter.domain.phones) and the gate checks every zone.
"""

from __future__ import annotations

from typing import Any

from tests.conftest import CAMPAIGN, PROFILE, Api, prefs_body

VOICE = {"voice": {"text": "Hello from prefcenter"}}


async def customer(api: Api, cid: str, profile: dict[str, Any], **prefs: Any) -> None:
    r = await api.client.put(f"/v1/customers/{cid}", json=profile, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text
    body = prefs_body(**{"quiet_hours": None, "max_per_week": None, **prefs})
    r = await api.client.put(f"/v1/customers/{cid}/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text


async def campaign(api: Api, cid: str, **overrides: Any) -> None:
    r = await api.client.put(
        f"/v1/campaigns/{cid}", json={**CAMPAIGN, **overrides}, headers=api.as_("marketing")
    )
    assert r.status_code in (200, 201), r.text


async def decision(api: Api, camp: str, cid: str, at: str, dry_run: bool = True) -> dict[str, Any]:
    body = {"campaign_id": camp, "customer_ids": [cid], "dry_run": dry_run, "at": at}
    r = await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    (answer,) = r.json()["decisions"]
    return {k: answer[k] for k in ("verdict", "reason", "not_before")}


def defer(not_before: str) -> dict[str, Any]:
    return {"verdict": "defer", "reason": "quiet_hours", "not_before": not_before}


ALLOW = {"verdict": "allow", "reason": "allowed", "not_before": None}


async def test_compliance_22_sms_in_the_numbers_zone(api: Api) -> None:
    """COMPLIANCE item 22, edge 5 (issue 16 reproduction 3): profile Europe/Warsaw, SMS +12135550199 at
    2026-07-15T12:00:00Z (05:00 in Los Angeles) answered allow; it defers to 08:00 Los Angeles."""
    await campaign(api, "summer", channels=["sms"])
    profile = {**PROFILE, "contacts": {"sms": "+12135550199"}}
    await customer(api, "la", profile, channel="sms")
    assert await decision(api, "summer", "la", "2026-07-15T12:00:00Z") == defer("2026-07-15T15:00:00Z")
    assert await decision(api, "summer", "la", "2026-07-15T15:00:00Z") == ALLOW


async def test_compliance_22_florida_ends_at_20(api: Api) -> None:
    """COMPLIANCE item 22 (reproduction 3): +13055550123 in New York's zone at 20:30 local answered
    allow; the US-FL override defers it to 08:00 the next day. 19:59 is allowed."""
    await campaign(api, "summer", channels=["sms"])
    profile = {
        **PROFILE,
        "timezone": "America/New_York",
        "country": "US",
        "contacts": {"sms": "+13055550123"},
    }
    await customer(api, "fl", profile, channel="sms")
    assert await decision(api, "summer", "fl", "2026-07-16T00:30:00Z") == defer("2026-07-16T12:00:00Z")
    assert await decision(api, "summer", "fl", "2026-07-15T23:59:00Z") == ALLOW


async def test_compliance_31_france_telephone_rule(api: Api) -> None:
    """COMPLIANCE item 31 (reproduction 4): voice on a Saturday, on Christmas Day, at 13:30 and at 08:30
    answered allow; each defers to the next allowed instant; a fifth call within 30 days is capped."""
    await campaign(api, "appels", channels=["voice"], content=VOICE)
    profile = {
        **PROFILE,
        "timezone": "Europe/Paris",
        "country": "FR",
        "locale": "fr",
        "contacts": {"voice": "+33612345678"},
    }
    await customer(api, "fr", profile, channel="voice")
    assert await decision(api, "appels", "fr", "2026-06-13T09:00:00Z") == defer("2026-06-15T08:00:00Z")
    assert await decision(api, "appels", "fr", "2026-12-25T10:00:00Z") == defer("2026-12-28T09:00:00Z")
    assert await decision(api, "appels", "fr", "2026-06-08T11:30:00Z") == defer("2026-06-08T12:00:00Z")
    assert await decision(api, "appels", "fr", "2026-06-08T06:30:00Z") == defer("2026-06-08T08:00:00Z")
    # Whit Monday 2026-05-25 is a French public holiday too
    assert await decision(api, "appels", "fr", "2026-05-25T08:00:00Z") == defer("2026-05-26T08:00:00Z")
    # four real calls on Tuesdays a week apart (other campaigns), then a fifth within 30 days
    for week, day in enumerate(("2026-05-12", "2026-05-19", "2026-05-26", "2026-06-02")):
        await campaign(api, f"appel-{week}", channels=["voice"], content=VOICE)
        assert await decision(api, f"appel-{week}", "fr", f"{day}T08:00:00Z", dry_run=False) == ALLOW
    fifth = await decision(api, "appels", "fr", "2026-06-08T08:00:00Z")
    assert fifth == {"verdict": "defer", "reason": "frequency_cap", "not_before": "2026-06-11T08:00:00Z"}
