"""Address refs v2 (issue 9, item 10): customer_ref, address_ref and ip_ref are separate families, and a
database written with the v1 refs is upgraded without losing a single suppression."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings
from prefcenter.domain.ledger import Attribution
from prefcenter.domain.model import NO_PREFERENCES, Customer, Preferences, Profile
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services import refs_upgrade
from prefcenter.services.customers import erase_customer, write_preferences
from prefcenter.services.policies import load_policy_file
from prefcenter.services.refs_upgrade import RefsUpgrade, upgrade_address_refs
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import suppress
from prefcenter.store.sqlite import SqliteStore
from tests.api.test_approvals import approve, campaign, customer
from tests.api.test_gate_row import RECOMPUTED, as_set
from tests.api.test_inbound import sms
from tests.conftest import POLICY_FILE, PROFILE, SECRET, Api, FakeClock, database_at, query
from tests.web.test_pages import csrf_of, open_page, paths, submit

KNOWN_EMAIL = "ola@example.pl"  # PROFILE's: the customer "known" holds it, complained in v1
KNOWN_NUMBER = "+48600100200"  # PROFILE's sms and voice: an admin voice suppression and a review text
GONE = "gone@example.com"  # an erased customer's complained address: nobody holds it at the upgrade
UNKNOWN = "+48600999888"  # a STOP (and a text for review) from a number nobody ever held


async def listed(api: Api, channel: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    q = f"?channel={channel}" if channel else ""
    r = await api.client.get(f"/v1/suppressions{q}", headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    return {(s["channel"], s["address_ref"]): s for s in r.json()["suppressions"]}


async def ledger(api: Api, customer_id: str | None = None) -> list[dict[str, Any]]:
    params = {"limit": "1000", **({"customer_id": customer_id} if customer_id else {})}
    r = await api.client.get("/v1/consent-events", params=params, headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    return list(r.json()["events"])


async def verified(api: Api) -> bool:
    r = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    return bool(r.json()["ok"])


async def decision(api: Api, cid: str) -> tuple[str, str]:
    d = (await approve(api, [cid], dry_run=True)).json()["decisions"][0]
    return d["verdict"], d["reason"]


def gate_rows_consistent(api: Api) -> None:
    for row in query(api, RECOMPUTED):
        cid, stored_c, real_c, stored_s, real_s, stored_t, real_t, stored_m, real_m = row
        assert (as_set(stored_c), as_set(stored_s), as_set(stored_t), as_set(stored_m)) == (
            as_set(real_c),
            as_set(real_s),
            as_set(real_t),
            as_set(real_m),
        ), cid


# ---------------------------------------------------------------------------------------------------
# the reproduction


async def test_a_customer_id_never_meets_its_address_ref(api: Api) -> None:
    """Issue 9, item 10: the customer id ``email:ola@example.pl`` had a customer_ref equal to the
    suppression address_ref of ``ola@example.pl``. Now they differ, and customer_ref is still the
    documented HMAC of the id."""
    cid = f"email:{KNOWN_EMAIL}"
    await customer(api, cid)
    r = await api.client.post(
        "/v1/inbound/email-events", json={"type": "complaint", "address": KNOWN_EMAIL}, headers=api.as_("marketing")
    )
    assert r.json() == {"action": "suppressed", "customers": 1}
    evs = await ledger(api, cid)
    customer_ref = evs[0]["customer_ref"]
    assert customer_ref == hmac.new(SECRET.encode(), cid.encode(), hashlib.sha256).hexdigest()
    suppressed = await listed(api)
    assert len(suppressed) == 1
    ((_, address_ref),) = suppressed
    assert address_ref != customer_ref
    assert address_ref == api.rt.pseudonyms.address_ref("email", KNOWN_EMAIL)
    refs_in_events = [e["value"]["address_ref"] for e in evs if e["subject"].startswith("suppression:")]
    assert refs_in_events == [address_ref]
    # the v1 formula is what made them meet
    assert api.rt.pseudonyms.legacy_address_ref("email", KNOWN_EMAIL) == customer_ref
    assert await verified(api)


async def test_an_ip_customer_id_never_meets_the_pages_ip_hash(api: Api) -> None:
    """The same for ``ip:`` ids and the keyed IP hash the pages put in the ledger's evidence (the test
    client's address is ``testclient``)."""
    cid = "ip:testclient"
    await customer(api, cid)
    manage, _ = await paths(api, cid)
    html = await open_page(api, manage)
    r = await submit(api, manage, [("csrf", csrf_of(html)), ("action", "stop_all")])
    assert r.status_code == 303, r.text
    page_events = [e for e in await ledger(api, cid) if e["source"] == "preference_page"]
    assert page_events
    customer_ref = page_events[0]["customer_ref"]
    for e in page_events:
        assert e["evidence"]["ip_ref"] == api.rt.pseudonyms.ip_ref("testclient") != customer_ref
    assert hmac.new(SECRET.encode(), b"ip:testclient", hashlib.sha256).hexdigest() == customer_ref  # v1


async def test_a_fresh_database_has_nothing_to_upgrade(api: Api) -> None:
    assert await upgrade_address_refs(api.rt) == RefsUpgrade(contacts=0, converted=0, remaining=0)
    assert api.rt.store in refs_upgrade._NO_V1_REFS  # the lazy conversions cost nothing from now on
    assert query(api, "SELECT count(*) FROM address_refs_v1") == [(0,)]


# ---------------------------------------------------------------------------------------------------
# a database written with v1 refs


class V1Pseudonyms(Pseudonymizer):
    """What prefcenter computed before migration 0010: address refs keyed with the secret key itself."""

    def address_ref(self, channel: str, address: str) -> str:
        return self.legacy_address_ref(channel, address)


async def write_v1_database(settings: Settings, db: Path, clock: FakeClock) -> dict[str, dict[str, str]]:
    """Every migration but 0010 (today's store calls write today's columns; 0010 runs last, at the app's
    start, as it did on a v1 database) and, through the store calls the v1 code made, with v1 refs: two
    customers, a complaint of each, an admin voice suppression of the known number, a STOP from an unknown
    number, texts kept for review from both numbers, and then the erasure of one customer. Returns the
    API keys' headers."""
    async with database_at(
        settings, db, clock, pseudonyms=V1Pseudonyms(SECRET), keep=lambda name: not name.startswith("0010_")
    ) as (rt, headers):
        p = rt.pseudonyms
        prefs = msgspec.structs.replace(NO_PREFERENCES, channel="email", topics=["promotions"])
        assert isinstance(prefs, Preferences)
        async with rt.store.write() as tx:
            for cid, contacts in (("known", PROFILE["contacts"]), ("leaver", {"email": GONE, "sms": "+48600999111"})):
                profile = msgspec.convert({**PROFILE, "contacts": contacts}, Profile)
                person = Customer(
                    customer_id=cid,
                    customer_ref=p.customer_ref(cid),
                    profile=profile,
                    preferences=NO_PREFERENCES,
                    created_at=clock(),
                    updated_at=clock(),
                )
                refs: dict[str, str] = {ch: p.address_ref(ch, addr) for ch, addr in profile.contacts.items()}
                await tx.put_customer(person, refs, created=True)
                await write_preferences(tx, rt, person, prefs, Attribution("api", "test", None, {}))
            await suppress(tx, rt, "email", p.address_ref("email", KNOWN_EMAIL), "complaint", "complaint")
            await suppress(tx, rt, "email", p.address_ref("email", GONE), "complaint", "complaint")
            await suppress(tx, rt, "voice", p.address_ref("voice", KNOWN_NUMBER), "admin", "admin")
            await suppress(tx, rt, "sms", p.address_ref("sms", UNKNOWN), "sms_keyword", "sms_keyword")
            await tx.keep_for_review("sms", p.address_ref("sms", KNOWN_NUMBER), "ARRÊTEZ", clock())
            await tx.keep_for_review("sms", p.address_ref("sms", UNKNOWN), "REZYGNUJĘ", clock())
        clock.advance(minutes=1)
        await erase_customer(rt, "leaver", api_key_id=1)
    return headers


@pytest.fixture
async def upgraded(settings: Settings, db_path: Path, clock: FakeClock) -> AsyncIterator[Api]:
    """The v1 database, then the app of today on it (its start-up migrates and upgrades)."""
    headers = await write_v1_database(settings, db_path, clock)
    conn = sqlite3.connect(db_path)
    assert conn.execute("SELECT suppressed_channels FROM customers WHERE id = 'known'").fetchone() == ("email,voice",)
    conn.close()
    clock.advance(minutes=1)
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db_path),
        pseudonyms=Pseudonymizer(SECRET),
        now=clock,
        policy=load_policy_file(POLICY_FILE),
    )
    async with AsyncTestClient(app=create_app(rt)) as client:
        yield Api(client, rt, headers)


@pytest.mark.sqlite_only  # a SQLite file at an older migration (database_at)
async def test_the_upgrade_rekeys_contacts_and_keeps_every_suppression(upgraded: Api) -> None:
    api = upgraded
    p = api.rt.pseudonyms
    contacts = query(api, "SELECT channel, address, address_ref FROM contacts")
    assert len(contacts) == 4 and all(ref == p.address_ref(ch, addr) for ch, addr, ref in contacts)
    suppressed = await listed(api)
    assert {k: v["reason"] for k, v in suppressed.items()} == {
        ("email", p.address_ref("email", KNOWN_EMAIL)): "complaint",  # a contact holds it: v2
        ("voice", p.address_ref("voice", KNOWN_NUMBER)): "admin",
        ("email", p.legacy_address_ref("email", GONE)): "complaint",  # nobody holds it: its stored ref
        ("sms", p.legacy_address_ref("sms", UNKNOWN)): "sms_keyword",
    }
    assert len({v["since"] for v in suppressed.values()}) == 1  # each kept its own since (v1's clock)
    assert query(api, "SELECT address_ref, text FROM inbound_review ORDER BY id") == [
        (p.address_ref("sms", KNOWN_NUMBER), "ARRÊTEZ"),
        (p.legacy_address_ref("sms", UNKNOWN), "REZYGNUJĘ"),
    ]
    assert query(api, "SELECT suppressed_channels FROM customers WHERE id = 'known'") == [("email,voice",)]
    gate_rows_consistent(api)
    # ledger events are immutable: those written before keep the v1 refs
    old = {e["value"]["address_ref"] for e in await ledger(api) if e["subject"].startswith("suppression:")}
    assert old == {p.legacy_address_ref(ch, a) for ch, a in (("email", KNOWN_EMAIL), ("email", GONE), ("voice", KNOWN_NUMBER), ("sms", UNKNOWN))}
    assert await verified(api)  # (d)

    await campaign(api)
    # (a) the suppressed known contact is still denied
    assert await decision(api, "known") == ("deny", "suppressed")

    # (b) the erased customer's complaint still blocks a new customer with that address
    before = suppressed[("email", p.legacy_address_ref("email", GONE))]
    await customer(api, "newcomer", {**PROFILE, "contacts": {"email": "Gone@Example.com"}})
    assert await decision(api, "newcomer") == ("deny", "suppressed")
    now = await listed(api, "email")
    assert ("email", p.legacy_address_ref("email", GONE)) not in now
    assert now[("email", p.address_ref("email", GONE))] == {**before, "address_ref": p.address_ref("email", GONE)}
    gate_rows_consistent(api)

    # (c) a STOP from the number a v1 STOP suppressed is still a stop, and blocks whoever takes it
    assert (await sms(api, "STOP", sender=UNKNOWN))["action"] == "stop"
    assert list(await listed(api, "sms")) == [("sms", p.address_ref("sms", UNKNOWN))]
    await customer(api, "texter", {**PROFILE, "contacts": {"sms": UNKNOWN}}, channel="sms")
    assert await decision(api, "texter") == ("deny", "suppressed")
    assert query(api, "SELECT address_ref FROM inbound_review ORDER BY id") == [
        (p.address_ref("sms", KNOWN_NUMBER),),
        (p.address_ref("sms", UNKNOWN),),
    ]
    gate_rows_consistent(api)

    # erasure still finds the review texts of the person's numbers (they were re-keyed with the contacts)
    assert (await api.client.delete("/v1/customers/known", headers=api.as_("admin"))).status_code == 204
    assert query(api, "SELECT address_ref FROM inbound_review") == [(p.address_ref("sms", UNKNOWN),)]
    assert len(await listed(api)) == 5  # erasure lifts no suppression (the 5th: the STOP's voice side)

    assert await verified(api)  # (d)
    assert await upgrade_address_refs(api.rt) == RefsUpgrade(contacts=0, converted=0, remaining=0)
    assert query(api, "SELECT count(*) FROM address_refs_v1") == [(0,)]
    assert query(api, "SELECT contacts_v1 FROM address_refs_upgrade") == [(0,)]


@pytest.mark.sqlite_only  # database_at
async def test_start_and_admin_delete_lift_v1_suppressions(upgraded: Api) -> None:
    """A lift by address finds the v1 suppression too: START from the number, an admin DELETE."""
    api = upgraded
    p = api.rt.pseudonyms
    assert (await sms(api, "START", sender=UNKNOWN))["action"] == "start"
    r = await api.client.delete(f"/v1/suppressions/email/{GONE}", headers=api.as_("admin"))
    assert r.status_code == 204
    assert set(await listed(api)) == {
        ("email", p.address_ref("email", KNOWN_EMAIL)),
        ("voice", p.address_ref("voice", KNOWN_NUMBER)),
    }
    lifts = [e["value"] for e in await ledger(api) if e["subject"].startswith("suppression:") and not e["value"]["suppressed"]]
    assert lifts == [
        {"suppressed": False, "address_ref": p.address_ref("sms", UNKNOWN), "reason": "sms_keyword"},
        {"suppressed": False, "address_ref": p.address_ref("email", GONE), "reason": "admin"},
    ]
    await campaign(api)
    await customer(api, "texter", {**PROFILE, "contacts": {"sms": UNKNOWN}}, channel="sms")
    await customer(api, "newcomer", {**PROFILE, "contacts": {"email": GONE}})
    assert await decision(api, "texter") == ("allow", "allowed")
    assert await decision(api, "newcomer") == ("allow", "allowed")
    assert await verified(api)


@pytest.mark.sqlite_only  # database_at
async def test_admin_put_of_a_v1_suppressed_address_is_the_same_suppression(upgraded: Api) -> None:
    api = upgraded
    p = api.rt.pseudonyms
    n = len(await ledger(api))
    r = await api.client.put(f"/v1/suppressions/email/{GONE.upper()}", headers=api.as_("admin"))
    assert r.status_code == 200  # it existed already: replaced, not created
    assert len(await ledger(api)) == n
    suppressed = await listed(api, "email")
    assert suppressed[("email", p.address_ref("email", GONE))]["reason"] == "complaint"
    assert len(suppressed) == 2
