"""How long a customer link works, and for whom (API.md "Customer pages"; issue 9, items 7-9).

- A link dies with the person it was minted for: after erasure, a new customer with the same
  ``customer_id`` does not inherit the old links (the link generation signed into the claims differs).
- An unsubscribe link keeps working for the same person for its whole life (400 days), whatever else
  changes; links minted before link generations existed (3-element claims) keep working for a customer
  whose generation is ``''``.
- An unsubscribe page never grants more than the manage link's 30 days of access: ``GET /u/{token}``
  holds no manage link; it offers "Email me a link to my preferences" instead.
- A CSRF field that is not ASCII is a 403 page, not a 500.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sqlite3
from pathlib import Path

import msgspec
import pytest

from prefcenter.domain.tokens import MANAGE_LIFETIME, expires_at
from prefcenter.services import links
from prefcenter.services.runtime import Runtime
from prefcenter.services.self_service import Client, LinkProblem, one_click_unsubscribe
from prefcenter.store.sqlite import SqliteStore, default_migrations_dir
from prefcenter.web.csrf import csrf_token, csrf_valid
from prefcenter.web.i18n import LANGUAGES, Catalogue
from tests.api.test_links import payload_bytes
from tests.conftest import PROFILE, Api, FakeClock
from tests.web.conftest import Sink
from tests.web.test_pages import (
    FORM,
    ONE_CLICK,
    assert_page_headers,
    csrf_of,
    events,
    get_prefs,
    page_form,
    paths,
    put_customer,
    put_prefs,
    replace_fields,
    submit,
)

OTHER_PERSON = {
    **PROFILE,
    "locale": "en",
    "contacts": {"email": "someone.else@example.com", "sms": "+48600999888"},
}
EMAIL_ME = "Email me a link to my preferences"
MANAGE_LINK = re.compile(r"http://127\.0\.0\.1:8000(/p/[A-Za-z0-9._-]+)")


def token_of(path: str) -> str:
    return path.rsplit("/", 1)[1]


def claim_count(path: str) -> int:
    """How many elements the token's (readable, signed) claims array has."""
    return len(msgspec.json.decode(payload_bytes(token_of(path))))


async def link_gen(api: Api, cid: str) -> str:
    customer = await api.rt.store.get_customer(cid)
    assert customer is not None
    return customer.link_gen


def set_link_gen(db_path: Path, cid: str, gen: str) -> None:
    """What a customer created before migration 0009 looks like (``''``), or any other generation."""
    conn = sqlite3.connect(db_path)
    try:
        with conn:
            conn.execute("UPDATE customers SET link_gen = ? WHERE id = ?", (gen, cid))
    finally:
        conn.close()


async def erase(api: Api, cid: str) -> None:
    r = await api.client.delete(f"/v1/customers/{cid}", headers=api.as_("admin"))
    assert r.status_code == 204, r.text


# ---------------------------------------------------------------------------------------------------
# item 8: a link dies with the person it was minted for


async def test_erased_persons_links_do_not_open_a_new_customer_with_the_same_id(
    mail_api: Api, smtp_sink: Sink
) -> None:
    """API.md "A link dies with the person it was minted for" (issue 9, item 8): erase pg2, create pg2
    again for someone else: the old manage link is the bad-link page (404) and changes nothing, the old
    unsubscribe links (all-scope and topic) unsubscribe nobody, the old links' email button sends nothing;
    links minted for the new pg2 work."""
    api = mail_api
    await put_customer(api, "pg2", locale="en")
    await put_prefs(api, "pg2", channel="email", topics=["promotions"])
    old_manage, old_unsubscribe = await paths(api, "pg2")
    _, old_topic_unsubscribe = await paths(api, "pg2", topic="promotions")
    old_page = (await api.client.get(old_manage)).text
    old_gen = await link_gen(api, "pg2")

    await erase(api, "pg2")
    r = await api.client.put("/v1/customers/pg2", json=OTHER_PERSON, headers=api.as_("marketing"))
    assert r.status_code == 201
    await put_prefs(api, "pg2", channel="email", topics=["promotions", "product-news"])
    new_gen = await link_gen(api, "pg2")
    assert new_gen and new_gen != old_gen
    before = (await get_prefs(api, "pg2"), await events(api, "pg2"))

    # The old links still carry a genuine signature and the same ref: only the generation differs.
    verified = links.verify_token(api.rt, token_of(old_manage), "manage")
    assert verified is not None and not verified.expired
    assert verified.claims.ref == api.rt.pseudonyms.customer_ref("pg2")

    r = await api.client.get(old_manage)
    assert r.status_code == 404
    assert_page_headers(r)
    assert "This link no longer works" in r.text and "someone.else" not in r.text and "s**@" not in r.text
    r = await submit(api, old_manage, replace_fields(page_form(old_page), channel="sms"))
    assert r.status_code == 404
    r = await submit(api, old_manage, [("csrf", csrf_of(old_page)), ("action", "stop_all")])
    assert r.status_code == 404
    for path in (old_unsubscribe, old_topic_unsubscribe):
        assert (await api.client.get(path)).status_code == 404
        r = await api.client.post(path, content=ONE_CLICK, headers=FORM)
        assert r.status_code == 404 and "This link no longer works" in r.text
    for path in (old_manage, old_unsubscribe):
        r = await submit(api, f"{path}/renew", [("csrf", csrf_of(old_page))])
        assert r.status_code == 404
    await asyncio.sleep(0)
    assert smtp_sink.messages == []
    assert (await get_prefs(api, "pg2"), await events(api, "pg2")) == before

    # Links minted for the new pg2 work.
    manage, unsubscribe = await paths(api, "pg2")
    assert (await api.client.get(manage)).status_code == 200
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    prefs = await get_prefs(api, "pg2")
    assert prefs["channel"] is None and prefs["topics"] == []


async def test_a_link_checked_before_a_recreation_writes_nothing_after_it(api: Api) -> None:
    """Item 8, inside the transaction: the writing functions check the generation again, so a link
    resolved just before pg2 was erased and re-created cannot change the new pg2."""
    await put_customer(api, "pg2")
    await put_prefs(api, "pg2", channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api, "pg2")
    verified = links.verify_token(api.rt, token_of(unsubscribe), "unsubscribe")
    assert verified is not None
    await erase(api, "pg2")
    await put_customer(api, "pg2", **OTHER_PERSON)
    await put_prefs(api, "pg2", channel="email", topics=["promotions"])
    before = (await get_prefs(api, "pg2"), await events(api, "pg2"))
    with pytest.raises(LinkProblem) as caught:
        await one_click_unsubscribe(api.rt, "pg2", verified.claims, Client(user_agent="t", ip=None))
    assert caught.value.kind == "unknown"
    assert (await get_prefs(api, "pg2"), await events(api, "pg2")) == before


async def test_replacing_a_profile_keeps_the_generation(api: Api) -> None:
    """Item 8: only a new person gets a new generation; PUT on an existing customer keeps it."""
    await put_customer(api, "c1")
    gen = await link_gen(api, "c1")
    assert re.fullmatch(r"[0-9a-f]{16}", gen)
    await put_customer(api, "c1", **OTHER_PERSON)
    assert await link_gen(api, "c1") == gen
    await put_customer(api, "c2")
    assert await link_gen(api, "c2") != gen


# ---------------------------------------------------------------------------------------------------
# the same person: for the link's whole life, and legacy links


async def test_unsubscribe_link_works_for_the_same_person_through_changes_for_400_days(
    api: Api, clock: FakeClock
) -> None:
    """API.md (unsubscribe links work at least 60 days; 400 here; honoured every time): profile
    replacements, API preference changes and page saves do not end an unsubscribe link; it works until
    the last second of its 400 days and not after (410, no change)."""
    await put_customer(api, "c1", locale="en")
    await put_prefs(api, "c1", channel="email", topics=["promotions", "product-news"])
    manage, unsubscribe = await paths(api, "c1")
    _, topic_unsubscribe = await paths(api, "c1", topic="promotions")
    clock.advance(days=5)
    await put_customer(api, "c1", **OTHER_PERSON)  # new contacts and locale
    page = (await api.client.get(manage)).text
    r = await submit(api, manage, replace_fields(page_form(page), channel="sms", max_per_week="3"))
    assert r.status_code == 303 and r.headers["location"].endswith("?result=saved")
    clock.advance(days=195)
    r = await api.client.post(topic_unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    assert (await get_prefs(api, "c1"))["topics"] == ["product-news"]
    await put_prefs(api, "c1", channel="email", topics=["promotions"])
    clock.advance(days=200, seconds=-1)  # 400 days minus one second after minting
    assert (await api.client.get(unsubscribe)).status_code == 200
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    prefs = await get_prefs(api, "c1")
    assert prefs["channel"] is None and prefs["topics"] == []
    await put_prefs(api, "c1", channel="email", topics=["promotions"])
    before = (await get_prefs(api, "c1"), await events(api, "c1"))
    clock.advance(seconds=1)
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 410 and "too old" in r.text
    assert (await get_prefs(api, "c1"), await events(api, "c1")) == before


@pytest.mark.sqlite_only  # set_link_gen() writes the SQLite file at db_path
async def test_legacy_three_element_tokens_work_for_a_customer_without_a_generation(
    api: Api, db_path: Path
) -> None:
    """Links in emails sent before link generations existed carry ``[ref, scope, issued]``: they keep
    working for a customer whose generation is ``''`` (created before migration 0009), whose new links
    are still 3-element; a 3-element token does not open a customer who has a generation, and a token
    with a generation does not open a legacy customer."""
    await put_customer(api, "old", locale="en")
    await put_prefs(api, "old", channel="email", topics=["promotions"])
    gen = await link_gen(api, "old")
    with_gen_manage, with_gen_unsubscribe = await paths(api, "old")
    assert claim_count(with_gen_manage) == claim_count(with_gen_unsubscribe) == 4
    ref = api.rt.pseudonyms.customer_ref("old")
    legacy_manage = f"/p/{links.mint_token(api.rt, ref, 'manage')}"
    legacy_unsubscribe = f"/u/{links.mint_token(api.rt, ref, 'unsubscribe', 'promotions')}"
    assert claim_count(legacy_manage) == claim_count(legacy_unsubscribe) == 3
    # A customer with a generation: legacy tokens open nothing.
    assert (await api.client.get(legacy_manage)).status_code == 404
    assert (await api.client.post(legacy_unsubscribe, content=ONE_CLICK, headers=FORM)).status_code == 404

    set_link_gen(db_path, "old", "")  # as if created before migration 0009
    assert (await api.client.get(with_gen_manage)).status_code == 404
    assert (await api.client.post(with_gen_unsubscribe, content=ONE_CLICK, headers=FORM)).status_code == 404
    assert (await get_prefs(api, "old"))["topics"] == ["promotions"]
    page = await api.client.get(legacy_manage)
    assert page.status_code == 200
    r = await submit(api, legacy_manage, replace_fields(page_form(page.text), max_per_week="4"))
    assert r.status_code == 303 and (await get_prefs(api, "old"))["max_per_week"] == 4
    r = await api.client.post(legacy_unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200 and (await get_prefs(api, "old"))["topics"] == []
    # New links for a legacy customer are minted exactly as before (3 elements) and work.
    manage, unsubscribe = await paths(api, "old")
    assert claim_count(manage) == claim_count(unsubscribe) == 3
    assert (await api.client.get(manage)).status_code == 200
    # Erasure and re-creation gives the id a generation: the legacy links die with the person.
    await erase(api, "old")
    await put_customer(api, "old", locale="en")
    assert await link_gen(api, "old") not in ("", gen)
    for path in (legacy_manage, manage):
        assert (await api.client.get(path)).status_code == 404


@pytest.mark.sqlite_only  # SqliteStore at an older migration
async def test_migration_0009_gives_existing_customers_the_empty_generation(tmp_path: Path) -> None:
    """Customers created before 0009 get ``''`` (their sent links keep working); the migrations before
    it are untouched."""
    before = tmp_path / "before"
    shutil.copytree(default_migrations_dir(), before)
    for path in before.glob("*.sql"):
        if path.name >= "0009":
            path.unlink()
    db = tmp_path / "m.db"
    store = SqliteStore(db, migrations_dir=before)
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(
            "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at) "
            "VALUES ('c1', ?, 'Europe/Warsaw', 'pl', 'PL', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
            ("0" * 64,),
        )
    conn.close()
    store = SqliteStore(db)
    await store.open()
    try:
        assert "0009_link_generation.sql" in await store.migrate()
        customer = await store.get_customer("c1")
        assert customer is not None and customer.link_gen == ""
    finally:
        await store.close()


# ---------------------------------------------------------------------------------------------------
# item 9: an unsubscribe page grants no more than a manage link's 30 days


async def test_unsubscribe_page_has_no_manage_link_and_emails_one_valid_30_days(
    mail_api: Api, smtp_sink: Sink, clock: FakeClock
) -> None:
    """API.md "An unsubscribe page never grants more than the manage link's 30 days of access" (issue 9,
    item 9): GET /u/{token} holds no /p/ link; its "Email me a link to my preferences" button (POST,
    CSRF, throttled) sends one email, to the address on file, with a manage link that works 30 days."""
    api = mail_api
    await put_customer(api, "c1", locale="en")
    await put_prefs(api, "c1", channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api, "c1", topic="promotions")
    clock.advance(days=200)  # the unsubscribe link is still good; any manage link from then is not
    r = await api.client.get(unsubscribe)
    assert r.status_code == 200
    assert_page_headers(r)
    assert "/p/" not in r.text
    assert EMAIL_ME in r.text and f'action="{unsubscribe}/renew"' in r.text
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text  # the one-click form is unchanged
    page = r.text
    await asyncio.sleep(0)
    assert smtp_sink.messages == []  # a GET sends nothing
    assert (await submit(api, f"{unsubscribe}/renew", [("csrf", "forged")])).status_code == 403
    api.client.cookies.clear()
    assert (await submit(api, f"{unsubscribe}/renew", [("csrf", csrf_of(page))])).status_code == 403
    assert smtp_sink.messages == []
    page = (await api.client.get(unsubscribe)).text  # sets the cookie again
    r = await submit(api, f"{unsubscribe}/renew", [("csrf", csrf_of(page))])
    assert r.status_code == 200
    assert_page_headers(r)
    assert "We have sent a fresh link to o**@example.pl" in r.text and "/p/" not in r.text
    await asyncio.sleep(0)
    assert len(smtp_sink.messages) == 1
    _, rcpt_tos, msg = smtp_sink.messages[0]
    assert rcpt_tos == ["ola@example.pl"]
    found = MANAGE_LINK.search(msg.get_content())
    assert found
    manage = found.group(1)
    verified = links.verify_token(api.rt, token_of(manage), "manage")
    assert verified is not None and not verified.expired
    assert expires_at(verified.claims, "manage") == clock().replace(microsecond=0) + MANAGE_LIFETIME
    assert verified.claims.gen == await link_gen(api, "c1")
    assert (await api.client.get(manage)).status_code == 200
    # Asking again at once is throttled, like the expired-link button.
    r = await submit(api, f"{unsubscribe}/renew", [("csrf", csrf_of(page))])
    assert r.status_code == 429 and len(smtp_sink.messages) == 1
    clock.advance(days=30, seconds=-1)
    assert (await api.client.get(manage)).status_code == 200
    clock.advance(seconds=1)
    assert (await api.client.get(manage)).status_code == 410
    assert [e for e in await events(api, "c1") if e["source"] != "crm"] == []  # nothing was unsubscribed


async def test_unsubscribe_page_without_an_email_address_offers_no_button(api: Api) -> None:
    """Item 9: the fresh link goes only to the email address on file; with none, there is no button (and
    still no manage link)."""
    await put_customer(api, "c1", locale="en", contacts={"sms": "+48600100200"})
    _, unsubscribe = await paths(api, "c1")
    r = await api.client.get(unsubscribe)
    assert r.status_code == 200
    assert "/p/" not in r.text and "/renew" not in r.text and EMAIL_ME not in r.text
    assert 'name="csrf"' not in r.text and "set-cookie" not in r.headers
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_the_email_me_button_is_localised(api: Api, lang: str) -> None:
    """Item 9, API.md (pages are localised): the button and its text in the customer's language."""
    await put_customer(api, "c1", locale=lang)
    _, unsubscribe = await paths(api, "c1")
    r = await api.client.get(unsubscribe)
    t = Catalogue(lang)
    assert t("unsub.manage_button") in r.text and t("unsub.manage_text") in r.text
    assert lang == "en" or EMAIL_ME not in r.text


async def test_one_click_confirmation_grants_no_more_than_30_days(
    mail_api: Api, smtp_sink: Sink, clock: FakeClock
) -> None:
    """Item 9 for the one-click confirmation: RFC 8058 behaviour unchanged (no cookie needed, 200, no
    redirect, and no cookie set); its link to the preference page ends when a manage link minted with
    the unsubscribe link would (30 days after its issue); after that the page offers the email button
    to a browser that has the page's cookie, and no link."""
    api = mail_api
    await put_customer(api, "c1", locale="en")
    await put_prefs(api, "c1", channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api, "c1")
    issued = links.verify_token(api.rt, token_of(unsubscribe), "unsubscribe")
    assert issued is not None
    clock.advance(days=10)
    api.client.cookies.clear()
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM, follow_redirects=False)
    assert r.status_code == 200 and "location" not in r.headers and "set-cookie" not in r.headers
    link = re.search(r'href="(/p/[^"]+)"', r.text)
    assert link
    verified = links.verify_token(api.rt, token_of(link.group(1)), "manage")
    assert verified is not None and verified.claims.issued == issued.claims.issued
    assert (await api.client.get(link.group(1))).status_code == 200
    clock.advance(days=20)  # 30 days after the unsubscribe link was minted
    assert (await api.client.get(link.group(1))).status_code == 410
    api.client.cookies.clear()
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM, follow_redirects=False)
    assert r.status_code == 200 and "location" not in r.headers and "set-cookie" not in r.headers
    assert "/p/" not in r.text and "/renew" not in r.text and "latest message" in r.text
    # A browser that came through the page has its cookie: the confirmation offers the email button.
    await api.client.get(unsubscribe)
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM, follow_redirects=False)
    assert r.status_code == 200 and "/p/" not in r.text and EMAIL_ME in r.text
    r = await submit(api, f"{unsubscribe}/renew", [("csrf", csrf_of(r.text))])
    assert r.status_code == 200
    await asyncio.sleep(0)
    assert len(smtp_sink.messages) == 1 and MANAGE_LINK.search(smtp_sink.messages[0][2].get_content())


# ---------------------------------------------------------------------------------------------------
# item 7: a CSRF field that is not ASCII


@pytest.mark.parametrize("body", ["csrf=%C3%A9", "csrf=%C3%A9&action=stop_all", "csrf=%E2%80%8B&channel=sms"])
async def test_non_ascii_csrf_field_is_a_403_page(api: Api, body: str) -> None:
    """Issue 9, item 7: a cookie of 43 ``A`` and ``csrf=é`` used to be a 500 (hmac.compare_digest raises
    TypeError on a non-ASCII str); it is the 403 "try again" page, and nothing changes."""
    await put_customer(api, "c1", locale="en")
    await put_prefs(api, "c1", channel="email", topics=["promotions"])
    manage, unsubscribe = await paths(api, "c1")
    before = (await get_prefs(api, "c1"), await events(api, "c1"))
    api.client.cookies.clear()
    api.client.cookies.set("prefcenter_csrf", "A" * 43)
    for path in (manage, f"{manage}/renew", f"{unsubscribe}/renew"):
        r = await api.client.post(path, content=body, headers=FORM, follow_redirects=False)
        assert r.status_code == 403, (path, r.text)
        assert_page_headers(r)
        assert "Please try again" in r.text
    assert (await get_prefs(api, "c1"), await events(api, "c1")) == before


def test_csrf_valid_never_raises(rt: Runtime) -> None:
    """Item 7 at the unit level: any presented text is True or False, never an exception."""
    token = links.mint_token(rt, rt.pseudonyms.customer_ref("c1"), "manage")
    secret = "A" * 43
    good = csrf_token(rt, secret, token)
    assert csrf_valid(rt, secret, token, good)
    for presented in ("é", good[:-1] + "é", "\udcff", "\u200b" + good, good + "\x00", ""):
        assert csrf_valid(rt, secret, token, presented) is False
    assert csrf_valid(rt, None, token, good) is False
