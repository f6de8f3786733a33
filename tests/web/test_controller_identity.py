"""Who is speaking on the pages and in the receipt (issue 16 item 5; API.md "Compliance to the letter"):
the preference page names the controller and links the privacy notice, the unsubscribe page names the
sender, in every language; the consent receipt's pii_controllers come from the same settings
(COMPLIANCE items 15 and 20)."""

from __future__ import annotations

import asyncio
import html as htmllib
import re

import msgspec
import pytest

from prefcenter.config import load_settings
from prefcenter.web.i18n import LANGUAGES, Catalogue
from tests.conftest import Api
from tests.web.conftest import Sink
from tests.web.test_pages import csrf_of, open_page, paths, put_customer, put_prefs, submit

NAME = "Sklep Żabka <Polska> Sp. z o.o."
ADDRESS = "ul. Długa 5 & 7, 00-950 Warszawa, Poland"
PRIVACY = "https://shop.example/privacy?lang=pl&v=2"
# Python's email package re-encodes this display name without its quotes when set as a string
FROM_NAME = "Sklep Żabka <Polska>, Sp. z o.o."


def with_identity(api: Api) -> None:
    parsed = load_settings(
        {
            "PREFCENTER_CONTROLLER_NAME": NAME,
            "PREFCENTER_POSTAL_ADDRESS": "ul. Długa 5 & 7\n00-950 Warszawa\nPoland",
            "PREFCENTER_PRIVACY_URL": PRIVACY,
        }
    )
    api.rt.settings = msgspec.structs.replace(
        api.rt.settings,
        controller_name=parsed.controller_name,
        postal_address=parsed.postal_address,
        privacy_url=parsed.privacy_url,
    )


def text_of(markup: str) -> str:
    """What a reader sees: tags dropped, entities decoded, white space collapsed."""
    return re.sub(r"\s+", " ", htmllib.unescape(re.sub(r"<[^>]+>", "", markup)))


def privacy_links(markup: str) -> list[tuple[str, str]]:
    return [
        (htmllib.unescape(href), text)
        for href, text in re.findall(r'<a href="([^"]*)">([^<]*)</a>', markup)
        if "shop.example" in href
    ]


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_compliance_15_preference_page_names_the_controller_and_links_the_notice(
    api: Api, lang: str
) -> None:
    """COMPLIANCE item 15 (Recital 42, Art. 13(1)(a)): the preference page, where consent is given,
    names the controller (with its postal address) and links the privacy notice, in the customer's
    language; the settings are escaped and the name is isolated (<bdi>) for right-to-left text."""
    with_identity(api)
    await put_customer(api, locale=lang)
    manage, _ = await paths(api)
    page = await open_page(api, manage)
    t = Catalogue(lang)
    seen = text_of(page)
    assert t("prefs.controller", name=NAME) in seen
    assert t("site.controller", name=NAME, address=ADDRESS) in seen
    assert privacy_links(page) == [(PRIVACY, t("site.privacy"))]
    assert (
        "<Polska>" not in page and "&lt;Polska&gt;" in page and f"<bdi>{htmllib.escape(NAME)}</bdi>" in page
    )
    assert f"<title>{htmllib.escape(t('prefs.title'))} · {htmllib.escape(NAME)}</title>" in page


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_compliance_27_unsubscribe_page_names_the_sender(api: Api, lang: str) -> None:
    """COMPLIANCE items 27 and 15: the unsubscribe page (and its confirmation) say who sends the
    messages being stopped, with the controller's address and privacy notice in the footer."""
    with_identity(api)
    await put_customer(api, locale=lang)
    await put_prefs(api)
    _, unsubscribe = await paths(api)
    page = await open_page(api, unsubscribe)
    t = Catalogue(lang)
    assert t("unsub.sender", name=NAME) in text_of(page)
    assert t("site.controller", name=NAME, address=ADDRESS) in text_of(page)
    done = await api.client.post(
        unsubscribe,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 200
    assert t("site.controller", name=NAME, address=ADDRESS) in text_of(done.text)
    assert privacy_links(done.text) == [(PRIVACY, t("site.privacy"))]


async def test_development_pages_name_the_fallback_and_no_notice(api: Api) -> None:
    """Development without the settings: the pages name PREFCENTER_SMS_PROGRAM ("prefcenter") as the
    controller, show no invented address and no privacy link."""
    await put_customer(api, locale="en")
    manage, _ = await paths(api)
    page = await open_page(api, manage)
    assert "Data controller: prefcenter" in text_of(page)
    assert "Privacy notice" not in page


async def test_compliance_15_receipt_names_the_controller(api: Api) -> None:
    """COMPLIANCE items 15 and 20 (ISO/IEC TS 27560 party: id, name, address, contact, type): the
    receipt's pii_controllers is the configured controller, the privacy notice as contact and URL."""
    with_identity(api)
    await put_customer(api)
    await put_prefs(api)
    r = await api.client.get("/v1/customers/c1/consent-receipt", headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    (party,) = r.json()["pii_controllers"]
    assert party == {
        "party_id": party["party_id"],
        "party_name": NAME,
        "party_address": ADDRESS,
        "party_contact": PRIVACY,
        "party_url": PRIVACY,
        "party_type": "dpv:DataController",
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", party["party_id"])
    again = await api.client.get("/v1/customers/c1/consent-receipt", headers=api.as_("auditor"))
    assert again.json()["pii_controllers"][0]["party_id"] == party["party_id"]  # stable


async def test_fresh_link_email_names_the_sender(mail_api: Api, smtp_sink: Sink) -> None:
    """COMPLIANCE item 27: the transactional fresh-link email names the sender and postal address too,
    and its default From carries the controller's name intact (non-ASCII and "<", ">", "," in it)."""
    api = mail_api
    with_identity(api)
    api.rt.settings = msgspec.structs.replace(
        api.rt.settings, controller_name=FROM_NAME, smtp_from_setting=None
    )
    await put_customer(api, locale="pl")
    manage, _ = await paths(api)
    api.rt.now.advance(days=45)  # type: ignore[attr-defined]
    expired = await api.client.get(manage)
    assert expired.status_code == 410
    r = await submit(api, f"{manage}/renew", [("csrf", csrf_of(expired.text))])
    assert r.status_code == 200
    await asyncio.sleep(0)
    (_, _, msg) = smtp_sink.messages[0]
    body = msg.get_content().replace("\r\n", "\n")
    sender = Catalogue("pl")("site.controller", name=FROM_NAME, address=ADDRESS)
    assert body.rstrip().endswith(f"--\n{sender}")
    (author,) = msg["From"].addresses
    assert (author.display_name, author.addr_spec) == (FROM_NAME, "noreply@localhost")
