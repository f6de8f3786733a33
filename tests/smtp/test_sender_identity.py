"""Who is speaking in email (issue 16 item 5; API.md "Compliance to the letter"): the footer of real mail
captured by the aiosmtpd sink, in the text and the HTML part, in the customer's language; the default
From. COMPLIANCE items 27 (CAN-SPAM: sender, postal address, a plain opt-out), 18 (the right to object,
stated by every marketing message) and 8 (the visible link in both parts)."""

from __future__ import annotations

import html as htmllib
import re
from email.message import EmailMessage
from typing import Any

import msgspec
import pytest

from prefcenter.config import load_settings
from prefcenter.messaging.email import FOOTER_TEXTS
from tests.api.test_approvals import campaign, customer
from tests.conftest import PROFILE, Api
from tests.smtp.helpers import dispatcher, send
from tests.smtp.sink import Handler

# As an operator writes them: a non-ASCII name with a comma, an address over several lines, and
# characters that must be escaped in HTML.
IDENTITY_ENV = {
    "PREFCENTER_CONTROLLER_NAME": "Sklep Żabka <Polska>, Sp. z o.o.",
    "PREFCENTER_POSTAL_ADDRESS": "ul. Długa 5 & 7\n00-950 Warszawa\nPoland",
    "PREFCENTER_PRIVACY_URL": "https://shop.example/privacy?lang=pl&v=2",
}
NAME = "Sklep Żabka <Polska>, Sp. z o.o."
ADDRESS = "ul. Długa 5 & 7, 00-950 Warszawa, Poland"
PRIVACY = "https://shop.example/privacy?lang=pl&v=2"
PEOPLE = {
    "en": {**PROFILE, "locale": "en-GB", "country": "GB", "timezone": "Europe/London"},
    "pl": PROFILE,
    "fa": {**PROFILE, "locale": "fa", "country": "IR", "timezone": "Asia/Tehran"},
}


def with_identity(api: Api, **env: str) -> None:
    """The app's settings with the sender identity as PREFCENTER_* variables give it (parsed, checked)."""
    parsed = load_settings({**IDENTITY_ENV, **env})
    api.rt.settings = msgspec.structs.replace(
        api.rt.settings,
        controller_name=parsed.controller_name,
        postal_address=parsed.postal_address,
        privacy_url=parsed.privacy_url,
        smtp_from_setting=parsed.smtp_from_setting,
    )


async def deliver(api: Api, sink: tuple[Handler, int], cid: str, ids: list[str]) -> list[EmailMessage]:
    handler, port = sink
    answer = await send(api, ids, cid)
    assert [d["verdict"] for d in answer["decisions"]] == ["allow"] * len(ids), answer
    d = dispatcher(api, port)
    await d.run_until_idle()
    await d.close()
    assert len(handler.messages) == len(ids)
    return list(handler.messages)


def parts(msg: EmailMessage) -> tuple[str, str]:
    text, rich = msg.get_body(preferencelist=("plain",)), msg.get_body(preferencelist=("html",))
    assert text is not None and rich is not None
    return str(text.get_content()), str(rich.get_content())


def html_footer(html: str) -> tuple[dict[str, str], str]:
    """The HTML footer block's attributes and its markup."""
    match = re.search(r'<div class="prefcenter-footer" lang="(\w+)" dir="(\w+)">(.*?)</div>', html, re.S)
    assert match, html
    return {"lang": match.group(1), "dir": match.group(2)}, match.group(3)


def links(markup: str) -> dict[str, str]:
    """Link text -> href (unescaped) in ``markup``."""
    return {
        htmllib.unescape(t): htmllib.unescape(h)
        for h, t in re.findall(r'<a href="([^"]*)">([^<]*)</a>', markup)
    }


@pytest.mark.parametrize("lang", ["en", "pl", "fa"])
async def test_compliance_27_marketing_footer_names_sender_address_and_unsubscribe(
    api: Api, sink: tuple[Handler, int], lang: str
) -> None:
    """COMPLIANCE item 27 (15 U.S.C. 7704(a)(3)-(5)) and item 8: every commercial email carries the
    sender's name and postal address and a visible "Unsubscribe" link that is the one-click URL of
    List-Unsubscribe, beside the preference link, in both parts and in the customer's language; the
    HTML footer is marked with its language and direction (Persian: rtl) and escapes the settings."""
    with_identity(api)
    await campaign(api, channels=["email"], locale=PEOPLE[lang]["locale"])  # the footer follows the body
    await customer(api, f"c-{lang}", PEOPLE[lang])
    (msg,) = await deliver(api, sink, "black-friday", [f"c-{lang}"])
    t = FOOTER_TEXTS[lang]
    one_click = msg["List-Unsubscribe"][1:-1]
    assert "/u/" in one_click
    text, html = parts(msg)

    footer = text.rsplit("\n--\n", 1)[1]
    assert f"{t['unsubscribe']}: {one_click}\n" in footer
    assert re.search(rf"^{re.escape(t['manage'])}: http://127\.0\.0\.1:8000/p/\S+$", footer, re.M)
    sender = t["sender"].replace("{name}", NAME).replace("{address}", ADDRESS)
    assert sender in footer.splitlines()
    assert f"{t['privacy']}: {PRIVACY}" in footer.splitlines()

    attrs, markup = html_footer(html)
    assert attrs == {"lang": lang, "dir": "rtl" if lang == "fa" else "ltr"}
    found = links(markup)
    assert found[t["unsubscribe"]] == one_click
    assert found[t["manage"]].startswith("http://127.0.0.1:8000/p/")
    assert found[t["privacy"]] == PRIVACY
    # the settings are escaped, never markup: the name's "<Polska>" is text
    assert "<Polska>" not in html and "&lt;Polska&gt;" in markup and "5 &amp; 7" in markup
    plain = htmllib.unescape(re.sub(r"<[^>]+>", "", markup))
    assert sender in plain


@pytest.mark.parametrize("lang", ["en", "pl", "fa"])
async def test_compliance_18_every_marketing_email_states_the_right_to_object(
    api: Api, sink: tuple[Handler, int], lang: str
) -> None:
    """COMPLIANCE item 18 (GDPR Art. 21(2)-(4)): the right to object to direct marketing at any time is
    stated explicitly, as a paragraph of its own, in both parts of every marketing email, in the
    customer's language; a transactional email does not carry it."""
    with_identity(api)
    await campaign(api, channels=["email"], locale=PEOPLE[lang]["locale"])  # the footer follows the body
    await campaign(api, "receipt", topic="order-updates", channels=["email"], locale=PEOPLE[lang]["locale"])
    await customer(api, f"c-{lang}", PEOPLE[lang])
    (marketing,) = await deliver(api, sink, "black-friday", [f"c-{lang}"])
    sink[0].messages.clear()
    (transactional,) = await deliver(api, sink, "receipt", [f"c-{lang}"])
    line = FOOTER_TEXTS[lang]["object"]
    text, html = parts(marketing)
    assert line in text.rsplit("\n--\n", 1)[1].splitlines()
    assert f"<p>{htmllib.escape(line, quote=False)}</p>" in html_footer(html)[1]
    text, html = parts(transactional)
    assert line not in text and htmllib.escape(line, quote=False) not in html


async def test_compliance_27_transactional_footer_names_sender_without_opt_out(
    api: Api, sink: tuple[Handler, int]
) -> None:
    """COMPLIANCE item 27 / B12: a transactional email keeps the preference link and names the sender
    and postal address, with no Unsubscribe link, no objection line and no List-Unsubscribe headers."""
    with_identity(api)
    await campaign(api, "receipt", topic="order-updates", channels=["email"], locale="pl")
    await customer(api, "c1", channel=None, topics=[])
    (msg,) = await deliver(api, sink, "receipt", ["c1"])
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
    t = FOOTER_TEXTS["pl"]
    text, html = parts(msg)
    footer = text.rsplit("\n--\n", 1)[1]
    assert t["sender"].replace("{name}", NAME).replace("{address}", ADDRESS) in footer.splitlines()
    assert f"{t['manage']}: http://127.0.0.1:8000/p/" in footer
    assert t["unsubscribe"] not in footer and "/u/" not in footer
    _, markup = html_footer(html)
    assert list(links(markup)) == [t["manage"]]


async def test_compliance_27_default_from_carries_the_controller_name(
    api: Api, sink: tuple[Handler, int]
) -> None:
    """COMPLIANCE item 27 (7704(a)(1): header information not misleading): without PREFCENTER_SMTP_FROM
    the From is the controller's name at noreply@localhost, RFC 2047-encoded for a non-ASCII name (and
    quoted for its comma); PREFCENTER_SMTP_FROM, when set, wins."""
    with_identity(api)
    await campaign(api, channels=["email"])
    await customer(api, "c1")
    (msg,) = await deliver(api, sink, "black-friday", ["c1"])
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (NAME, "noreply@localhost")
    sink[0].messages.clear()
    with_identity(api, PREFCENTER_SMTP_FROM="Newsletter <news@shop.example>")
    contacts = {"email": "jan@example.pl"}
    await customer(api, "c2", {**PROFILE, "contacts": contacts})
    (msg,) = await deliver(api, sink, "black-friday", ["c2"])
    (sender,) = msg["From"].addresses
    assert (sender.display_name, sender.addr_spec) == ("Newsletter", "news@shop.example")


async def test_development_without_identity_says_so_in_the_footer(
    api: Api, sink: tuple[Handler, int]
) -> None:
    """Development with none of the three set: the footer still names a sender (PREFCENTER_SMS_PROGRAM,
    "prefcenter") and says plainly that the postal address is not set, instead of inventing one; no
    privacy link; the From uses the same name."""
    await campaign(api, channels=["email"])
    await customer(api, "c1", {**PROFILE, "locale": "en"})
    (msg,) = await deliver(api, sink, "black-friday", ["c1"])
    text, html = parts(msg)
    assert "Sent by prefcenter, [postal address not set: PREFCENTER_POSTAL_ADDRESS]" in text
    assert "Privacy notice" not in text and "Privacy notice" not in html
    assert msg["From"].addresses[0].display_name == "prefcenter"


def test_every_footer_language_has_every_text() -> None:
    """The footer's texts exist in every language prefcenter speaks, with the same placeholders."""
    keys: dict[str, Any] = {k: sorted(re.findall(r"\{\w+\}", v)) for k, v in FOOTER_TEXTS["en"].items()}
    assert set(FOOTER_TEXTS) == {"en", "ro", "pl", "el", "fa"}
    for texts in FOOTER_TEXTS.values():
        assert {k: sorted(re.findall(r"\{\w+\}", v)) for k, v in texts.items()} == keys
        assert f"„{texts['unsubscribe']}”" in texts["object"] or texts["unsubscribe"] in texts["object"]
