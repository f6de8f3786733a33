"""Opt-outs belong to the address too (issue 16, item 1; COMPLIANCE item 27 and edge 13).

An all-scope one-click unsubscribe and the page's "stop all marketing" add a marketing-only suppression
(reason ``unsubscribe``) of the address, so every customer with it is denied marketing there while
transactional messages still go; a topic-scoped unsubscribe withdraws the topic from every customer with
the address; email addresses compare case-insensitively with the domain as IDNA, so a punycode bounce
suppresses the Unicode-stored address; refs stored before migration 0012 are re-keyed at start-up. The
gate's phone places (migration 0012) are stored with the contacts.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings
from prefcenter.domain.model import PhonePlace
from prefcenter.domain.phones import place_of
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.policies import load_policy_file
from prefcenter.services.refs_upgrade import upgrade_address_refs
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import suppress
from prefcenter.store.sqlite import SqliteStore
from tests.api.test_address_refs import gate_rows_consistent
from tests.api.test_gate_concurrency import setup_keys
from tests.conftest import POLICY_FILE, SECRET, Api, FakeClock, database_at, prefs_body, query
from tests.live import serve
from tests.web.test_pages import FORM, ONE_CLICK, csrf_of, open_page, submit

AT = "2026-11-22T12:00:00Z"  # 13:00 in Warsaw
WARSAW = {"timezone": "Europe/Warsaw", "locale": "en", "country": "PL"}
ID1_EMAIL = "Same.User@Example.COM"
ID2_EMAIL = "same.user@example.com"
PROVENANCE = {"source": "api", "actor": "test", "notice_version": "2026-10", "evidence": {}}
PROMOTIONS = {
    "topic": "promotions",
    "channels": ["email"],
    "content": {"email": {"subject": "Offer", "text": "Offer. {{ manage_url }}", "html": "<p>Offer</p>"}},
}
ORDER_UPDATES = {**PROMOTIONS, "topic": "order-updates"}
IDN = "user@bücher.example"  # stored as given: email-validator keeps the Unicode domain
PUNYCODE = "user@xn--bcher-kva.example"


def profile(email: str | None = None, **contacts: str) -> dict[str, Any]:
    return {**WARSAW, "contacts": {**({"email": email} if email else {}), **contacts}}


def prefs(**overrides: Any) -> dict[str, Any]:
    body = {"quiet_hours": None, "max_per_week": None, "provenance": PROVENANCE, **overrides}
    return prefs_body(**body)


async def setup(client: Any, people: dict[str, str], topics: list[str] | None = None) -> None:
    """Customers (id -> email), each with email and ``topics`` (promotions), and both campaigns."""
    for cid, email in people.items():
        r = await client.put(f"/v1/customers/{cid}", json=profile(email))
        assert r.status_code == 201, r.text
        body = prefs(channel="email", topics=topics or ["promotions"])
        r = await client.put(f"/v1/customers/{cid}/preferences", json=body)
        assert r.status_code == 200, r.text
    for cid, body in (("promo", PROMOTIONS), ("orders", ORDER_UPDATES)):
        r = await client.put(f"/v1/campaigns/{cid}", json=body)
        assert r.status_code == 201, r.text


async def unsubscribe_path(client: Any, cid: str, topic: str | None = None) -> str:
    r = await client.post(f"/v1/customers/{cid}/links", json={"topic": topic} if topic else {})
    assert r.status_code == 201, r.text
    return str(urlsplit(r.json()["unsubscribe_url"]).path)


async def one_click(client: Any, path: str) -> None:
    r = await client.post(path, content=ONE_CLICK, headers=FORM, follow_redirects=False)
    assert r.status_code == 200, r.text


async def decisions(client: Any, campaign: str, ids: list[str]) -> dict[str, tuple[str, str]]:
    body = {"campaign_id": campaign, "customer_ids": ids, "at": AT, "dry_run": True}
    r = await client.post("/v1/approvals", json=body)
    assert r.status_code == 200, r.text
    return {d["customer_id"]: (d["verdict"], d["reason"]) for d in r.json()["decisions"]}


async def suppressions(client: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/suppressions")
    assert r.status_code == 200, r.text
    return list(r.json()["suppressions"])


async def ledger(client: Any, cid: str) -> list[dict[str, Any]]:
    r = await client.get("/v1/consent-events", params={"customer_id": cid, "limit": "1000"})
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


def suppression_events(events: list[dict[str, Any]]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(e["source"], e["actor"], e["value"]) for e in events if e["subject"].startswith("suppression:")]


class Roles:
    """An ASGI client that sends every request with the key of the role that may make it."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _role(self, method: str, url: str) -> str:
        if method == "DELETE" or (method == "PUT" and url.startswith("/v1/suppressions")):
            return "admin"
        if method == "GET":
            return "auditor"
        return "marketing"

    async def request(self, method: str, url: str, **kw: Any) -> Any:
        headers = {**(kw.pop("headers", None) or {})}
        if url.startswith("/v1/"):
            headers.update(self.api.as_(self._role(method, url)))
        return await self.api.client.request(method, url, headers=headers, **kw)

    async def get(self, url: str, **kw: Any) -> Any:
        return await self.request("GET", url, **kw)

    async def put(self, url: str, **kw: Any) -> Any:
        return await self.request("PUT", url, **kw)

    async def post(self, url: str, **kw: Any) -> Any:
        return await self.request("POST", url, **kw)

    async def delete(self, url: str, **kw: Any) -> Any:
        return await self.request("DELETE", url, **kw)


# ---------------------------------------------------------------------------------------------------
# the reproduction, on the real server


async def test_compliance_27_one_click_stops_every_customer_with_the_address_on_a_real_server(
    rt: Runtime,
) -> None:
    """COMPLIANCE item 27, edge 13 (issue 16, item 1): id1 ``Same.User@Example.COM`` and id2
    ``same.user@example.com``, both email + promotions; a one-click POST to id1's all-scope link denies
    marketing to both (id2 ``suppressed``; it was ``allow``), a transactional message to id2 still goes,
    ``GET /v1/suppressions`` lists the reason ``unsubscribe``, a repeat writes nothing new, and an admin
    DELETE lifts it."""
    headers = await setup_keys(rt)
    with serve(rt) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            await setup(client, {"id1": ID1_EMAIL, "id2": ID2_EMAIL})
            assert await decisions(client, "promo", ["id1", "id2"]) == {
                "id1": ("allow", "allowed"),
                "id2": ("allow", "allowed"),
            }
            path = await unsubscribe_path(client, "id1")
            await one_click(client, path)

            found = await decisions(client, "promo", ["id1", "id2"])
            assert found["id2"] == ("deny", "suppressed")
            # id1 chose no channel now: rule 2 has no address to check for marketing, so `no_channel`
            # is as right as `suppressed` (both deny, before anything else).
            assert found["id1"][0] == "deny" and found["id1"][1] in ("suppressed", "no_channel")
            assert (await decisions(client, "orders", ["id2"]))["id2"] == ("allow", "allowed")

            ref = rt.pseudonyms.address_ref("email", ID2_EMAIL)
            assert ref == rt.pseudonyms.address_ref("email", ID1_EMAIL)
            (listed,) = await suppressions(client)
            assert {k: listed[k] for k in ("channel", "address_ref", "reason", "scope")} == {
                "channel": "email",
                "address_ref": ref,
                "reason": "unsubscribe",
                "scope": "marketing",
            }
            value = {"suppressed": True, "address_ref": ref, "reason": "unsubscribe", "scope": "marketing"}
            for cid in ("id1", "id2"):  # one event per customer with the address
                assert suppression_events(await ledger(client, cid)) == [
                    ("one_click_unsubscribe", "system", value)
                ]
            id1_events = await ledger(client, "id1")
            assert id1_events[-1]["evidence"]["customer_ref"] == id1_events[0]["customer_ref"]

            # a repeat is honoured (still unsubscribed) and writes nothing new
            before = len(await ledger(client, "id1")) + len(await ledger(client, "id2"))
            await one_click(client, path)
            assert len(await ledger(client, "id1")) + len(await ledger(client, "id2")) == before
            assert len(await suppressions(client)) == 1

            # the admin lift works as for any suppression
            r = await client.delete(f"/v1/suppressions/email/{ID2_EMAIL.upper()}")
            assert r.status_code == 204, r.text
            assert await suppressions(client) == []
            assert (await decisions(client, "promo", ["id2"]))["id2"] == ("allow", "allowed")
            lift = suppression_events(await ledger(client, "id2"))[-1]
            assert lift == ("admin", "system", {**value, "suppressed": False, "reason": "admin"})
            r = await client.get("/v1/consent-events/verify")
            assert r.json()["ok"] is True


# ---------------------------------------------------------------------------------------------------
# the page, topics, opting in again, hard suppressions (through the ASGI app)


@pytest.fixture
def client(api: Api) -> Roles:
    return Roles(api)


async def test_compliance_27_stop_all_marketing_on_the_page_stops_the_address(
    api: Api, client: Roles
) -> None:
    """COMPLIANCE item 27, edge 13: the page's "stop all marketing" does what the all-scope one-click
    does: a marketing-only ``unsubscribe`` suppression of the address (ledger source
    ``preference_page``), every customer with it denied marketing, transactional still allowed."""
    await setup(client, {"id1": ID1_EMAIL, "id2": ID2_EMAIL})
    r = await client.post("/v1/customers/id1/links", json={})
    manage = urlsplit(r.json()["manage_url"]).path
    html = await open_page(api, manage)
    r = await submit(api, manage, [("csrf", csrf_of(html)), ("action", "stop_all")])
    assert r.status_code == 303, r.text
    found = await decisions(client, "promo", ["id1", "id2"])
    assert found["id2"] == ("deny", "suppressed")
    assert found["id1"][0] == "deny"
    assert (await decisions(client, "orders", ["id1", "id2"])) == {
        "id1": ("allow", "allowed"),
        "id2": ("allow", "allowed"),
    }
    (listed,) = await suppressions(client)
    assert (listed["reason"], listed["scope"]) == ("unsubscribe", "marketing")
    ref = api.rt.pseudonyms.address_ref("email", ID1_EMAIL)
    value = {"suppressed": True, "address_ref": ref, "reason": "unsubscribe", "scope": "marketing"}
    assert suppression_events(await ledger(client, "id2")) == [("preference_page", "system", value)]
    id1 = await ledger(client, "id1")
    assert suppression_events(id1) == [("preference_page", "system", value)]
    assert id1[-1]["evidence"]["form"] == "stop_all" and "user_agent" in id1[-1]["evidence"]


async def test_compliance_27_an_address_without_a_chosen_channel_is_the_email_one(
    api: Api, client: Roles
) -> None:
    """Which address a one-click is about: the chosen channel's; with no channel chosen (here: a
    customer who has only sms and never chose), their email address — the link came in an email."""
    await setup(client, {"id2": ID2_EMAIL})
    r = await client.put("/v1/customers/id1", json=profile(ID1_EMAIL, sms="+48600100200"))
    assert r.status_code == 201
    await one_click(client, await unsubscribe_path(client, "id1"))
    (listed,) = await suppressions(client)
    assert (listed["channel"], listed["address_ref"]) == (
        "email",
        api.rt.pseudonyms.address_ref("email", ID2_EMAIL),
    )
    assert (await decisions(client, "promo", ["id2"]))["id2"] == ("deny", "suppressed")

    # a customer whose chosen channel is sms: the one-click suppresses marketing to that number
    r = await client.put("/v1/customers/id3", json=profile("other@example.org", sms="+48600100201"))
    assert r.status_code == 201
    r = await client.put("/v1/customers/id3/preferences", json=prefs(channel="sms", topics=["promotions"]))
    assert r.status_code == 200, r.text
    await one_click(client, await unsubscribe_path(client, "id3"))
    by_channel = {s["channel"]: s for s in await suppressions(client)}
    assert by_channel["sms"]["address_ref"] == api.rt.pseudonyms.address_ref("sms", "+48600100201")
    assert by_channel["sms"]["scope"] == "marketing"


async def test_compliance_27_topic_unsubscribe_withdraws_the_topic_from_everyone_with_the_address(
    api: Api, client: Roles
) -> None:
    """COMPLIANCE item 27, edge 13: a topic-scoped one-click withdraws that topic from every customer
    with the address: id1's own event (actor ``customer``), one event for id2 (actor ``system``, evidence
    naming the address_ref); id3 with another address keeps it; no suppression is added."""
    await setup(
        client,
        {"id1": ID1_EMAIL, "id2": ID2_EMAIL, "id3": "someone@example.org"},
        topics=["promotions", "product-news"],
    )
    await one_click(client, await unsubscribe_path(client, "id1", topic="promotions"))
    for cid, kept in (
        ("id1", ["product-news"]),
        ("id2", ["product-news"]),
        ("id3", ["product-news", "promotions"]),
    ):
        r = await client.get(f"/v1/customers/{cid}/preferences")
        assert (r.json()["channel"], sorted(r.json()["topics"])) == ("email", kept), cid
    ref = api.rt.pseudonyms.address_ref("email", ID2_EMAIL)
    (own,) = [e for e in await ledger(client, "id1") if e["source"] == "one_click_unsubscribe"]
    (other,) = [e for e in await ledger(client, "id2") if e["source"] == "one_click_unsubscribe"]
    assert (own["action"], own["subject"], own["actor"]) == ("withdraw", "topic:promotions", "customer")
    assert (other["action"], other["subject"], other["actor"]) == ("withdraw", "topic:promotions", "system")
    assert other["evidence"] == {
        "address_ref": ref,
        "scope": "topic:promotions",
        "customer_ref": own["customer_ref"],
    }
    assert [e for e in await ledger(client, "id3") if e["source"] == "one_click_unsubscribe"] == []
    assert await suppressions(client) == []
    found = await decisions(client, "promo", ["id1", "id2", "id3"])
    assert found == {
        "id1": ("deny", "topic_not_subscribed"),
        "id2": ("deny", "topic_not_subscribed"),
        "id3": ("allow", "allowed"),
    }


async def test_compliance_27_choosing_the_channel_again_lifts_the_unsubscribe_and_one_click_wins_again(
    api: Api, client: Roles
) -> None:
    """A fresh choice of the channel (id1 chooses email again: a ``channel:email`` grant) lifts the
    marketing-only ``unsubscribe`` suppression in the same write, with a ledger event per customer with
    the address (reason ``opt_in``, the write's source); the old one-click link, used again after that,
    is honoured again. A write that leaves the channel as it was lifts nothing."""
    await setup(client, {"id1": ID1_EMAIL, "id2": ID2_EMAIL})
    path = await unsubscribe_path(client, "id1")
    await one_click(client, path)
    r = await client.put(
        "/v1/customers/id2/preferences", json=prefs(channel="email", topics=["product-news"])
    )
    assert r.status_code == 200  # id2's channel stays email: no fresh choice of it, no lift
    assert len(await suppressions(client)) == 1

    r = await client.put("/v1/customers/id1/preferences", json=prefs(channel="email", topics=["promotions"]))
    assert r.status_code == 200, r.text
    assert await suppressions(client) == []
    ref = api.rt.pseudonyms.address_ref("email", ID1_EMAIL)
    lifted = {"suppressed": False, "address_ref": ref, "reason": "opt_in", "scope": "marketing"}
    assert suppression_events(await ledger(client, "id2"))[-1] == ("api", "system", lifted)
    id1 = await ledger(client, "id1")
    assert suppression_events(id1)[-1] == ("api", "system", lifted)
    assert id1[-1]["evidence"] == {"customer_ref": id1[0]["customer_ref"], "granted": "channel:email"}
    assert await decisions(client, "promo", ["id1"]) == {"id1": ("allow", "allowed")}

    await one_click(client, path)  # an old link, used after the opt-in: honoured every time
    (listed,) = await suppressions(client)
    assert listed["reason"] == "unsubscribe"
    assert (await decisions(client, "promo", ["id1"]))["id1"][0] == "deny"


@pytest.mark.sqlite_only  # gate_rows_consistent: SQLite's group_concat
async def test_compliance_27_a_hard_suppression_upgrades_a_marketing_only_one_and_never_the_reverse(
    api: Api, client: Roles
) -> None:
    """(channel, address) stays one row: a bounce on an unsubscribed address makes it hard (reason
    ``bounce``, scope ``all``, an event as usual; now transactional is denied too); a later one-click
    leaves it hard and writes nothing; a fresh choice of the channel does not lift a hard one."""
    await setup(client, {"id1": ID1_EMAIL, "id2": ID2_EMAIL})
    path = await unsubscribe_path(client, "id1")
    await one_click(client, path)
    r = await client.post(
        "/v1/inbound/email-events", json={"type": "bounce", "address": ID2_EMAIL, "permanent": True}
    )
    assert r.status_code == 200, r.text
    (listed,) = await suppressions(client)
    assert (listed["reason"], listed["scope"]) == ("bounce", "all")
    ref = api.rt.pseudonyms.address_ref("email", ID2_EMAIL)
    assert suppression_events(await ledger(client, "id2"))[-1][2] == {
        "suppressed": True,
        "address_ref": ref,
        "reason": "bounce",
    }
    assert (await decisions(client, "orders", ["id2"]))["id2"] == ("deny", "suppressed")
    gate_rows_consistent(api)

    n = len(await ledger(client, "id2"))
    await one_click(client, path)
    async with api.rt.store.write() as tx:  # a marketing-only suppress of it: no downgrade, no event
        added, holders = await suppress(tx, api.rt, "email", ref, "unsubscribe", "admin", marketing_only=True)
    assert (added, holders) == (False, ["id1", "id2"])
    r = await client.put("/v1/customers/id1/preferences", json=prefs(channel="email", topics=["promotions"]))
    assert r.status_code == 200
    (listed,) = await suppressions(client)
    assert (listed["reason"], listed["scope"]) == ("bounce", "all")
    assert len(await ledger(client, "id2")) == n


# ---------------------------------------------------------------------------------------------------
# email identity: case, IDNA


async def test_edge_13_a_punycode_bounce_suppresses_the_unicode_address(api: Api, client: Roles) -> None:
    """COMPLIANCE edge 13 (issue 16, item 1): ``user@bücher.example`` is stored with its Unicode domain;
    a bounce for ``user@xn--bcher-kva.example`` suppresses it (it suppressed an address nobody had)."""
    r = await client.put("/v1/customers/idn", json=profile(IDN.upper()))
    assert r.status_code == 201, r.text
    r = await client.put("/v1/customers/idn/preferences", json=prefs(channel="email", topics=["promotions"]))
    assert r.status_code == 200
    await client.put("/v1/campaigns/promo", json=PROMOTIONS)
    r = await client.post(
        "/v1/inbound/email-events", json={"type": "bounce", "address": PUNYCODE, "permanent": True}
    )
    assert r.json()["customers"] == 1, r.text
    assert await decisions(client, "promo", ["idn"]) == {"idn": ("deny", "suppressed")}
    p = api.rt.pseudonyms
    assert (
        len(
            {
                p.address_ref("email", a)
                for a in (IDN, PUNYCODE, "USER@BÜCHER.EXAMPLE", "User@XN--BCHER-KVA.example")
            }
        )
        == 1
    )
    assert p.address_ref("email", IDN) != p.address_ref("email", "user@bucher.example")


class PreIdnaPseudonyms(Pseudonymizer):
    """What prefcenter computed before migration 0012: the whole email address casefolded."""

    def address_ref(self, channel: str, address: str) -> str:
        return self.pre_idna_address_ref(channel, address)


@pytest.fixture
async def pre_idna(settings: Settings, db_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """A database written with the refs of before migration 0012: ``idn`` holds ``user@bücher.example``
    and was complained about; ``puny`` holds ``other@bücher.example``, whose punycode bounce was kept
    under the punycode's ref (matching nobody then); ``leaver``'s IDN address was bounced, then the
    leaver erased. Then the app of today starts on it (migrates, upgrades)."""
    async with database_at(settings, db_path, clock, pseudonyms=PreIdnaPseudonyms(SECRET)) as (old, headers):
        pass  # every migration: the refs are the old ones, not the schema
    async with AsyncTestClient(app=create_app(old)) as c:
        writer = Roles(Api(c, old, headers))
        await setup(writer, {"idn": IDN, "puny": "other@bücher.example", "leaver": "gone@bücher.example"})
        for kind, address in (
            ("complaint", IDN),
            ("bounce", "other@xn--bcher-kva.example"),
            ("bounce", "gone@bücher.example"),
        ):
            r = await writer.post(
                "/v1/inbound/email-events", json={"type": kind, "address": address, "permanent": True}
            )
            assert r.status_code == 200, r.text
        assert (await writer.delete("/v1/customers/leaver")).status_code == 204
    conn = sqlite3.connect(db_path)
    with conn:  # as migration 0012 found such a database
        conn.execute(
            "UPDATE address_refs_idna SET pending = "
            "EXISTS (SELECT 1 FROM contacts WHERE channel = 'email' AND address GLOB '*[^ -~]*')"
        )
        assert conn.execute("SELECT pending FROM address_refs_idna").fetchone() == (1,)
    conn.close()
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db_path),
        pseudonyms=Pseudonymizer(SECRET),
        now=clock,
        policy=load_policy_file(POLICY_FILE),
    )
    async with AsyncTestClient(app=create_app(rt)) as c:
        yield Api(c, rt, headers)


@pytest.mark.sqlite_only  # database_at, sqlite3 on the file
async def test_edge_13_refs_of_idn_addresses_are_rekeyed_at_start_up(pre_idna: Api) -> None:
    """COMPLIANCE edge 13: contacts with a non-ASCII domain get the IDNA ref at start-up, the
    suppression held under the old ref follows them (still denied), the punycode bounce kept under the
    punycode's ref now matches its Unicode-stored address, and the erased customer's bounce follows the
    address the first time it is seen again."""
    api = pre_idna
    client = Roles(api)
    p = api.rt.pseudonyms
    contacts = query(api, "SELECT customer_id, address, address_ref FROM contacts ORDER BY customer_id")
    assert [(cid, ref == p.address_ref("email", a)) for cid, a, ref in contacts] == [
        ("idn", True),
        ("puny", True),
    ]
    assert query(api, "SELECT pending FROM address_refs_idna") == [(0,)]
    gate_rows_consistent(api)
    assert await decisions(client, "orders", ["idn", "puny"]) == {  # transactional: hard ones deny it too
        "idn": ("deny", "suppressed"),  # the complaint followed the contact
        "puny": ("deny", "suppressed"),  # the punycode bounce matches now
    }
    listed = {(s["address_ref"], s["reason"]) for s in await suppressions(client)}
    assert (p.address_ref("email", IDN), "complaint") in listed
    assert (p.address_ref("email", "other@bücher.example"), "bounce") in listed
    assert (p.pre_idna_address_ref("email", "gone@bücher.example"), "bounce") in listed  # nobody holds it

    r = await client.put("/v1/customers/newcomer", json=profile("Gone@BÜCHER.example"))
    assert r.status_code == 201
    r = await client.put(
        "/v1/customers/newcomer/preferences", json=prefs(channel="email", topics=["promotions"])
    )
    assert r.status_code == 200
    assert await decisions(client, "promo", ["newcomer"]) == {"newcomer": ("deny", "suppressed")}
    listed = {(s["address_ref"], s["reason"]) for s in await suppressions(client)}
    assert (p.address_ref("email", "gone@bücher.example"), "bounce") in listed
    assert len(listed) == 3
    gate_rows_consistent(api)
    second = await upgrade_address_refs(api.rt)
    assert (second.idna_contacts, second.idna_moved, second.phone_places) == (0, 0, 0)
    assert (await client.get("/v1/consent-events/verify")).json()["ok"] is True


# ---------------------------------------------------------------------------------------------------
# phone places for the gate (migration 0012)


async def test_phone_places_are_stored_with_the_contacts_and_filled_at_start_up(
    api: Api, client: Roles
) -> None:
    """COMPLIANCE item 22 and edge 5 need where each number is registered; the gate reads it from the
    customers row (written with the contacts), not from phonenumbers per decision. A row without it (a
    database of before migration 0012) is placed from its contacts, and filled at start-up."""
    numbers = {"sms": "+12135550199", "voice": "+13055550123", "whatsapp": "+48600100200"}
    r = await client.put("/v1/customers/c1", json=profile("c1@example.org", **numbers))
    assert r.status_code == 201, r.text
    r = await client.put("/v1/customers/c2", json=profile("c2@example.org"))
    assert r.status_code == 201, r.text
    expected = {ch: place_of(n) for ch, n in numbers.items()}
    assert expected["sms"].region == "US-CA" and expected["voice"].region == "US-FL"
    assert "America/Los_Angeles" in expected["sms"].zones and expected["whatsapp"].country == "PL"

    async def places() -> dict[str, dict[str, PhonePlace]]:
        inputs = await api.rt.store.gate_inputs(["c1", "c2"], "promotions", "promo")
        return {cid: state.places for cid, state in inputs.states.items()}

    assert await places() == {"c1": expected, "c2": {}}
    assert query(api, "SELECT phone_places FROM customers WHERE id = 'c2'") == [("",)]

    # as before migration 0012's start-up step
    query(api, "UPDATE customers SET phone_places = NULL")
    query(api, "UPDATE phone_places_data SET version = ''")
    assert await places() == {"c1": expected, "c2": {}}  # placed from the contacts meanwhile
    # an unreadable stored value fails closed: placed from the contacts
    query(api, "UPDATE customers SET phone_places = '{\"sms\": 7}' WHERE id = 'c1'")
    assert (await places())["c1"] == expected

    assert (await upgrade_address_refs(api.rt)).phone_places == 1
    stored = query(api, "SELECT id, phone_places FROM customers ORDER BY id")
    assert stored[1] == ("c2", "") and stored[0][1].startswith('{"sms":')
    assert await places() == {"c1": expected, "c2": {}}
    assert (await upgrade_address_refs(api.rt)).phone_places == 0  # same phonenumbers data: nothing to do

    r = await client.put("/v1/customers/c1", json=profile("c1@example.org", sms="+48600100200"))
    assert r.status_code == 200
    assert (await places())["c1"] == {"sms": place_of("+48600100200")}


def test_edge_13_email_identity_is_case_insensitive_with_the_domain_as_idna() -> None:
    """COMPLIANCE edge 13: the local part casefolded, the domain as IDNA (UTS 46): case variants, an IDN
    in NFC or NFD and its punycode share one ref; other addresses do not; a domain IDNA refuses (a
    domain literal, a disallowed character) is casefolded rather than refused."""
    p = Pseudonymizer(SECRET)
    same = ["Same.User@Example.COM", "same.user@example.com", " SAME.USER@example.com "]
    assert len({p.address_ref("email", a) for a in same}) == 1
    idn = [
        "user@bücher.example",
        "user@bu\u0308cher.example",
        "USER@BÜCHER.EXAMPLE",
        "user@XN--BCHER-KVA.example",
    ]
    assert len({p.address_ref("email", a) for a in idn}) == 1
    assert p.address_ref("email", "user@bücher.example") != p.address_ref("email", "user@bucher.example")
    assert p.address_ref("email", "other@bücher.example") != p.address_ref("email", "user@bücher.example")
    for odd in ("user@[192.0.2.1]", "user@bü_cher.example", "no-at-sign"):
        assert p.address_ref("email", odd) == p.address_ref("email", odd.upper())
    # before migration 0012 only a non-ASCII domain had another ref
    assert p.pre_idna_address_ref("email", "Same.User@Example.COM") == p.address_ref("email", same[1])
    assert p.pre_idna_address_ref("email", idn[0]) != p.address_ref("email", idn[0])
    assert p.address_ref("sms", "+48600100200") == p.address_ref("voice", "+48600100200")


async def test_compliance_27_an_imported_fresh_choice_lifts_the_unsubscribe_as_a_put_does(
    api: Api, client: Roles
) -> None:
    """The bulk import runs the same rule: a new customer imported with the unsubscribed address and the
    channel chosen lifts the unsubscribe, with the lift's event recorded under that customer too (the
    import used to ask the database who holds the address before its chunk was written, and missed them)."""
    await setup(client, {"id1": ID1_EMAIL})
    await one_click(client, await unsubscribe_path(client, "id1"))
    provenance = {**PROVENANCE, "source": "api"}
    body = prefs(channel="email", topics=["promotions"])
    body.pop("provenance")
    line = {
        "customer_id": "id3",
        "profile": profile(ID2_EMAIL),
        "preferences": body,
        "provenance": provenance,
    }
    r = await api.client.post(
        "/v1/customers/import",
        content=json.dumps(line).encode() + b"\n",
        headers={**api.as_("marketing"), "Content-Type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    assert await suppressions(client) == []
    ref = api.rt.pseudonyms.address_ref("email", ID1_EMAIL)
    lifted = {"suppressed": False, "address_ref": ref, "reason": "opt_in", "scope": "marketing"}
    assert suppression_events(await ledger(client, "id3"))[-1] == ("api", "system", lifted)
    assert suppression_events(await ledger(client, "id1"))[-1] == ("api", "system", lifted)
