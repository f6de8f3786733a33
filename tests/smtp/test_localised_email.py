"""Content per locale and text-only email (API.md "Content per locale"; issue 12 item 5): the body is
the translation of the recipient's locale (exact tag, then its language), else ``content``, and the
footer (and SMS STOP line) is in the language of the body chosen. Mail is sent through the real SMTP
transport to the aiosmtpd sink and read back with Python's email package."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import msgspec

from prefcenter.domain.campaigns import Campaign
from prefcenter.messaging.email import render
from prefcenter.messaging.transports.smtp import SmtpTransport
from prefcenter.services.links import mint_links
from tests.api.test_approvals import campaign, customer
from tests.conftest import CAMPAIGN, PROFILE, Api
from tests.smtp.helpers import dispatcher, send
from tests.smtp.sink import Handler

PL_FOOTER = "Zarządzaj preferencjami wiadomości"
EN_FOOTER = "Manage your message preferences"
RO_FOOTER = "Gestionați preferințele pentru mesaje"
EMAIL: dict[str, Any] = CAMPAIGN["content"]["email"]  # type: ignore[index]
LOCALISED: dict[str, Any] = {
    **CAMPAIGN,
    "translations": {
        "PL": {
            "email": {
                "subject": "Cześć {{ customer_id }}",
                "text": "Oferta po polsku. {{ manage_url }}",
                "html": "<p>Oferta po polsku</p>",
            },
            "sms": {"text": "Oferta! {{ unsubscribe_url }}"},
        },
        "pl-pl": {
            "email": {"subject": "Cześć z Polski", "text": "Oferta dla pl-PL. {{ manage_url }}"},
            "sms": {"text": "Oferta pl-PL {{ unsubscribe_url }}"},
        },
    },
}


def plain_and_html(msg: EmailMessage) -> tuple[str, str | None]:
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None
    return plain.get_content(), None if html is None else html.get_content()


async def person(api: Api, cid: str, locale: str) -> Any:
    await customer(api, cid, {**PROFILE, "locale": locale})
    got = await api.rt.store.get_customer(cid)
    assert got is not None
    return got


async def deliver(api: Api, port: int, camp: Campaign, cid: str, locale: str, channel: str = "email") -> Any:
    """Render ``camp`` for a stored customer of ``locale`` and, for email, send it through the SMTP
    transport to the sink."""
    who = await person(api, cid, locale)
    rendered = render(
        public_url_links=mint_links(api.rt, who, camp.topic),
        campaign_id="bf",
        campaign=camp,
        marketing=True,
        customer=who,
        channel=channel,
        from_address="Shop <news@shop.example>",
        controller=api.rt.settings.controller,
    )
    if channel == "email":
        transport = SmtpTransport(
            msgspec.structs.replace(api.rt.settings, smtp_port=port), api.rt.now, timeout=5.0
        )
        try:
            outcome = await transport.send(rendered)
        finally:
            await transport.close()
        assert outcome.kind == "sent", outcome
    return rendered


def localised() -> Campaign:
    return msgspec.convert(LOCALISED, Campaign)


async def test_language_match_gets_translation_and_its_footer(api: Api, sink: tuple[Handler, int]) -> None:
    """``pl-PL`` has its own translation (exact tag wins); ``pl-Latn`` falls back to its language ``pl``; the
    footer is Polish exactly when the body is."""
    handler, port = sink
    camp = localised()
    assert sorted(camp.translations) == ["pl", "pl-PL"]  # tags in their conventional case
    await deliver(api, port, camp, "exact", "pl-PL")
    await deliver(api, port, camp, "lang", "pl-Latn")
    await deliver(api, port, camp, "ro", "ro-RO")
    exact, lang, ro = handler.messages
    assert exact["Subject"] == "Cześć z Polski" and exact.get_content_type() == "text/plain"
    text, _ = plain_and_html(exact)
    assert text.startswith("Oferta dla pl-PL.") and PL_FOOTER in text and EN_FOOTER not in text
    assert lang["Subject"] == "Cześć lang" and lang.get_content_type() == "multipart/alternative"
    text, html = plain_and_html(lang)
    assert text.startswith("Oferta po polsku.") and PL_FOOTER in text
    assert html is not None and html.startswith("<p>Oferta po polsku</p>") and PL_FOOTER in html
    assert 'lang="pl"' in html
    # ro has no translation: content (written in the campaign's locale, default en) with an English
    # footer, not a Romanian one under an English body (the bug of issue 12).
    assert ro["Subject"] == "Hi ro"
    text, html = plain_and_html(ro)
    assert text.startswith("Offer. Manage:") and EN_FOOTER in text and RO_FOOTER not in text
    assert html is not None and 'lang="en"' in html and RO_FOOTER not in html


async def test_content_locale_sets_the_footer_of_content(api: Api, sink: tuple[Handler, int]) -> None:
    handler, port = sink
    camp = msgspec.convert({**LOCALISED, "locale": "RO"}, Campaign)
    assert camp.locale == "ro"
    await deliver(api, port, camp, "el", "el")
    (msg,) = handler.messages
    text, _ = plain_and_html(msg)
    assert text.startswith("Offer. Manage:") and RO_FOOTER in text


async def test_sms_stop_line_follows_the_body(api: Api, sink: tuple[Handler, int]) -> None:
    _, port = sink
    camp = localised()
    pl = await deliver(api, port, camp, "p", "pl", channel="sms")
    assert pl.text.startswith("Oferta! ") and pl.text.endswith("\nOdpowiedz STOP, aby zrezygnować")
    ro = await deliver(api, port, camp, "r", "ro", channel="sms")
    assert ro.text.startswith("Offer! ") and ro.text.endswith("\nReply STOP to opt out")


async def test_text_only_marketing_email_end_to_end(api: Api, sink: tuple[Handler, int]) -> None:
    """No ``html``: one text/plain part (not multipart) with the footer, and for marketing both
    RFC 8058 headers; PUT, store, dispatcher and SMTP are the real ones."""
    handler, port = sink
    text_only = {"subject": "Hi {{ customer_id }}", "text": "Plain offer. {{ unsubscribe_url }}"}
    await campaign(api, content={**CAMPAIGN["content"], "email": text_only})  # type: ignore[dict-item]
    got = (await api.client.get("/v1/campaigns/black-friday", headers=api.as_("auditor"))).json()
    assert got["content"]["email"] == text_only
    await customer(api, "c1")
    await send(api, ["c1"])
    d = dispatcher(api, port)
    assert await d.run_until_idle() == 1
    await d.close()
    (msg,) = handler.messages
    assert msg.get_content_type() == "text/plain" and not msg.is_multipart()
    body = msg.get_content()
    assert body.startswith("Plain offer. http://127.0.0.1:8000/u/")
    assert "\n--\n" in body and EN_FOOTER in body and "Unsubscribe: http://127.0.0.1:8000/u/" in body
    assert msg["List-Unsubscribe"] == f"<{body.split()[2]}>"
    assert msg.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]


async def test_put_get_translations_and_their_400s(api: Api) -> None:
    async def put(body: dict[str, Any]) -> Any:
        return await api.client.put("/v1/campaigns/bf", json=body, headers=api.as_("marketing"))

    def fields(r: Any) -> list[str]:
        assert r.status_code == 400, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        return [e["field"] for e in r.json()["errors"]]

    good = LOCALISED["translations"]["PL"]
    assert fields(await put({**CAMPAIGN, "translations": {"no tag!": good}})) == ["translations.no tag!"]
    bad_placeholder = {**good, "email": {**good["email"], "text": "{{ customer_id|upper }}"}}
    assert fields(await put({**CAMPAIGN, "translations": {"pl": bad_placeholder}})) == [
        "translations.pl.email.text"
    ]
    assert fields(await put({**CAMPAIGN, "translations": {"pl": {"email": good["email"]}}})) == [
        "translations.pl.sms"
    ]
    assert fields(await put({**CAMPAIGN, "translations": {"pl": good, "PL": good}})) == ["translations.PL"]
    assert fields(await put({**CAMPAIGN, "locale": "not a tag"})) == ["locale"]
    unknown = await put({**CAMPAIGN, "translations": {"pl": {**good, "fax": {"text": "x"}}}})
    assert unknown.status_code == 400 and "fax" in unknown.text
    assert (await api.client.get("/v1/campaigns/bf", headers=api.as_("auditor"))).status_code == 404
    r = await put(LOCALISED)
    assert r.status_code == 201, r.text
    assert sorted(r.json()["translations"]) == ["pl", "pl-PL"]


async def test_get_campaign_returns_translations(api: Api) -> None:
    r = await api.client.put(
        "/v1/campaigns/bf", json={**LOCALISED, "locale": "en-GB"}, headers=api.as_("marketing")
    )
    assert r.status_code == 201, r.text
    got = (await api.client.get("/v1/campaigns/bf", headers=api.as_("auditor"))).json()
    assert got["locale"] == "en-GB" and sorted(got["translations"]) == ["pl", "pl-PL"]
    assert got["translations"]["pl-PL"]["email"] == LOCALISED["translations"]["pl-pl"]["email"]


async def test_translations_end_to_end_through_store_and_dispatcher(
    api: Api, sink: tuple[Handler, int]
) -> None:
    """PUT with translations, the real store, the sends path and the dispatcher: pl-PL gets its exact
    translation (text-only) under a Polish footer, pl-Latn the pl one, ro the content with the footer
    of the campaign's locale (en-GB -> English)."""
    handler, port = sink
    r = await api.client.put(
        "/v1/campaigns/black-friday", json={**LOCALISED, "locale": "en-GB"}, headers=api.as_("marketing")
    )
    assert r.status_code == 201, r.text
    for cid, locale in (("c-exact", "pl-PL"), ("c-lang", "pl-Latn"), ("c-ro", "ro")):
        await customer(api, cid, {**PROFILE, "locale": locale})
    await send(api, ["c-exact", "c-lang", "c-ro"])
    d = dispatcher(api, port)
    assert await d.run_until_idle() == 3
    await d.close()
    by_to = {m["Subject"]: m for m in handler.messages}
    exact = by_to["Cześć z Polski"]
    assert exact.get_content_type() == "text/plain" and PL_FOOTER in exact.get_content()
    text, html = plain_and_html(by_to["Cześć c-lang"])
    assert (
        text.startswith("Oferta po polsku.") and PL_FOOTER in text and html is not None and PL_FOOTER in html
    )
    text, html = plain_and_html(by_to["Hi c-ro"])
    assert text.startswith("Offer. Manage:") and EN_FOOTER in text and RO_FOOTER not in text
    assert all(m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click" for m in handler.messages)
