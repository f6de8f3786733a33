"""Rendering one campaign message for one customer, and the RFC 5322 email built from it.

- Content is the campaign's, per channel, in the placeholder language of
  ``prefcenter.domain.placeholders``: ``customer_id``, ``manage_url`` and ``unsubscribe_url`` (the
  unsubscribe link is scoped to the campaign's topic) substituted linearly — text parts as they are, HTML
  parts HTML-escaped; nothing is evaluated. Content stored before the language was enforced that is not
  that language (Jinja statements, filters, ...) fails its message with a ``ValueError``.
- The body is the campaign's translation for the customer's locale (exact tag, then its language), else
  its ``content`` (written in the campaign's ``locale``, default ``en``); the footer and the SMS STOP line
  are in the language of the body chosen (English where prefcenter has no footer for that language), so
  a body and its footer never differ in language.
- Email: multipart/alternative text + HTML, or, for content without ``html``, a single ``text/plain``
  part; the footer in the body's language in each part (:func:`footer_text`, :func:`footer_html`). Every
  email's footer links the preference page and names the sender and its postal address
  (``PREFCENTER_CONTROLLER_NAME``, ``PREFCENTER_POSTAL_ADDRESS``); marketing email's footer also has a
  visible "Unsubscribe" link (the one-click URL), the right to object to direct marketing at any time
  (GDPR Art. 21(2)-(4)) and the privacy notice link (COMPLIANCE 8, 18, 27). Marketing email also carries
  ``List-Unsubscribe: <{public_url}/u/{token}>`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click``
  (RFC 8058). DKIM signing is the relay's job and must cover both List-Unsubscribe headers.
- ``Message-ID`` is the same for every attempt at one (campaign, customer): a duplicate delivery after a
  crash is recognisable as one.
- Marketing SMS gets "Reply STOP to opt out" in the language of the body chosen.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from datetime import datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

import msgspec
from markupsafe import escape

from prefcenter.config import Controller
from prefcenter.domain.campaigns import Campaign, select_content
from prefcenter.domain.model import RTL_LANGUAGES, Customer
from prefcenter.domain.placeholders import PlaceholderError, parse


def _html_escape(value: str) -> str:
    return str(escape(value))


def _substitute(field: str, source: str, values: Mapping[str, str], html: bool = False) -> str:
    """``source`` with its placeholders replaced (parsed once per content, cached); content that is not
    the placeholder language is a ``ValueError`` naming the field, never evaluated."""
    try:
        template = parse(source)
    except PlaceholderError as exc:
        raise ValueError(f"{field} is not the placeholder language ({exc})") from None
    return template.render(values, _html_escape if html else str)


STOP_LINE = {
    "en": "Reply STOP to opt out",
    "pl": "Odpowiedz STOP, aby zrezygnować",
    "ro": "Răspundeți STOP pentru dezabonare",
    "el": "Απαντήστε STOP για διαγραφή",
    "fa": "برای لغو اشتراک STOP را ارسال کنید",
}
# The email footer per language. ``sender`` keeps ``{name}`` and ``{address}``; ``object`` names the
# ``unsubscribe`` label as the reader sees it.
FOOTER_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "unsubscribe": "Unsubscribe",
        "manage": "Manage your message preferences",
        "object": "You have the right to object at any time, free of charge, to the use of your personal "
        "data for direct marketing: use the Unsubscribe link, or stop all marketing on your preference page.",
        "sender": "Sent by {name}, {address}",
        "privacy": "Privacy notice",
    },
    "pl": {
        "unsubscribe": "Wypisz się",
        "manage": "Zarządzaj preferencjami wiadomości",
        "object": "Masz prawo w każdej chwili bezpłatnie wnieść sprzeciw wobec wykorzystywania Twoich danych "
        "osobowych do marketingu bezpośredniego: kliknij „Wypisz się” albo wyłącz cały marketing na stronie "
        "preferencji.",
        "sender": "Nadawca: {name}, {address}",
        "privacy": "Polityka prywatności",
    },
    "ro": {
        "unsubscribe": "Dezabonare",
        "manage": "Gestionați preferințele pentru mesaje",
        "object": "Aveți dreptul să vă opuneți oricând, gratuit, utilizării datelor dumneavoastră personale "
        "în scop de marketing direct: folosiți linkul „Dezabonare” sau opriți tot marketingul pe pagina de "
        "preferințe.",
        "sender": "Expeditor: {name}, {address}",
        "privacy": "Politica de confidențialitate",
    },
    "el": {
        "unsubscribe": "Απεγγραφή",
        "manage": "Διαχείριση προτιμήσεων μηνυμάτων",
        "object": "Έχετε δικαίωμα να αντιταχθείτε ανά πάσα στιγμή, δωρεάν, στη χρήση των προσωπικών σας "
        "δεδομένων για απευθείας εμπορική προώθηση: πατήστε «Απεγγραφή» ή σταματήστε όλα τα "
        "διαφημιστικά μηνύματα στη σελίδα προτιμήσεων.",
        "sender": "Αποστολέας: {name}, {address}",
        "privacy": "Πολιτική απορρήτου",
    },
    "fa": {
        "unsubscribe": "لغو اشتراک",
        "manage": "مدیریت ترجیحات پیام",
        "object": "شما حق دارید هر زمان و به‌طور رایگان به استفاده از داده‌های شخصی‌تان برای بازاریابی "
        "مستقیم اعتراض کنید: روی «لغو اشتراک» بزنید یا در صفحهٔ ترجیحات، همهٔ پیام‌های تبلیغاتی را متوقف کنید.",
        "sender": "فرستنده: {name}، {address}",
        "privacy": "سیاست حریم خصوصی",
    },
}
# Shown for a missing PREFCENTER_POSTAL_ADDRESS (development only: production refuses to start).
NO_ADDRESS = "[postal address not set: PREFCENTER_POSTAL_ADDRESS]"


def language(locale: str) -> str:
    lang = locale.split("-")[0].split("_")[0].lower()
    return lang if lang in STOP_LINE else "en"


class Rendered(msgspec.Struct, frozen=True):
    campaign_id: str
    customer_id: str
    channel: str
    address: str
    message_id: str
    marketing: bool
    text: str
    subject: str | None = None
    html: str | None = None
    unsubscribe_url: str | None = None
    manage_url: str | None = None


def message_id(campaign_id: str, customer_ref: str, domain: str) -> str:
    """Stable per (campaign, customer); carries no personal data (only a hash of the pseudonym)."""
    digest = hashlib.sha256(f"{campaign_id}\x00{customer_ref}".encode()).hexdigest()[:32]
    return f"<{campaign_id}.{digest}@{domain}>"


@lru_cache(maxsize=16)
def sender_domain(from_address: str) -> str:
    _, addr = parseaddr(from_address)
    return addr.rsplit("@", 1)[1] if "@" in addr else "prefcenter.invalid"


def footer_text(
    lang: str, controller: Controller, manage_url: str, unsubscribe_url: str | None, marketing: bool
) -> str:
    """The text part's footer, after a ``--`` line: for marketing the Unsubscribe link, the preference
    link, the right to object, the sender and the privacy notice; otherwise the preference link and the
    sender."""
    t = FOOTER_TEXTS[lang]
    sender = t["sender"].replace("{address}", controller.postal_address or NO_ADDRESS)
    sender = sender.replace("{name}", controller.name)
    lines = ["--"]
    if marketing and unsubscribe_url:
        lines.append(f"{t['unsubscribe']}: {unsubscribe_url}")
    lines.append(f"{t['manage']}: {manage_url}")
    if marketing:
        lines.append(t["object"])
    lines.append(sender)
    if marketing and controller.privacy_url:
        lines.append(f"{t['privacy']}: {controller.privacy_url}")
    return "\n".join(lines) + "\n"


def footer_html(
    lang: str, controller: Controller, manage_url: str, unsubscribe_url: str | None, marketing: bool
) -> str:
    """The HTML part's footer, the same pieces as :func:`footer_text`, in a block marked with its
    language and direction (``dir="rtl"`` for Persian); every setting and URL is HTML-escaped, the name
    and address isolated in ``<bdi>`` so a Latin name cannot reorder Persian text."""
    t = FOOTER_TEXTS[lang]
    direction = "rtl" if lang in RTL_LANGUAGES else "ltr"
    name = f"<bdi>{escape(controller.name)}</bdi>"
    address = f"<bdi>{escape(controller.postal_address or NO_ADDRESS)}</bdi>"
    sender = str(escape(t["sender"])).replace("{address}", address).replace("{name}", name)
    links = []
    if marketing and unsubscribe_url:
        links.append(f'<a href="{escape(unsubscribe_url)}">{escape(t["unsubscribe"])}</a>')
    links.append(f'<a href="{escape(manage_url)}">{escape(t["manage"])}</a>')
    parts = [f'<hr>\n<div class="prefcenter-footer" lang="{lang}" dir="{direction}">']
    parts.append(f"<p>{' | '.join(links)}</p>")
    if marketing:
        parts.append(f"<p>{escape(t['object'])}</p>")
    if marketing and controller.privacy_url:
        sender += f' | <a href="{escape(controller.privacy_url)}">{escape(t["privacy"])}</a>'
    parts.append(f"<p>{sender}</p>")
    parts.append("</div>")
    return "\n".join(parts) + "\n"


def render(
    *,
    public_url_links: tuple[str, str],
    campaign_id: str,
    campaign: Campaign,
    marketing: bool,
    customer: Customer,
    channel: str,
    from_address: str,
    controller: Controller,
) -> Rendered:
    manage_url, unsubscribe_url = public_url_links
    values = {
        "customer_id": customer.customer_id,
        "manage_url": manage_url,
        "unsubscribe_url": unsubscribe_url,
    }
    address = getattr(customer.profile.contacts, channel, None)
    if not address:
        raise ValueError(f"customer has no {channel} contact")
    tag, prefix, chosen = select_content(campaign, customer.profile.locale)
    lang = language(tag)
    mid = message_id(campaign_id, customer.customer_ref, sender_domain(from_address))
    base = {
        "campaign_id": campaign_id,
        "customer_id": customer.customer_id,
        "channel": channel,
        "address": address,
        "message_id": mid,
        "marketing": marketing,
    }
    if channel == "email":
        content = chosen.email
        if content is None:
            raise ValueError(f"the campaign has no email content in {prefix}")
        text = _substitute(f"{prefix}.email.text", content.text, values)
        text = f"{text.rstrip()}\n\n{footer_text(lang, controller, manage_url, unsubscribe_url, marketing)}"
        html = None
        if content.html is not None:
            html = _substitute(f"{prefix}.email.html", content.html, values, html=True)
            html = f"{html}\n{footer_html(lang, controller, manage_url, unsubscribe_url, marketing)}"
        subject = _substitute(f"{prefix}.email.subject", content.subject, values)
        subject = subject.replace("\r", " ").replace("\n", " ")
        return Rendered(
            **base,
            text=text,
            subject=subject,
            html=html,
            unsubscribe_url=unsubscribe_url if marketing else None,
            manage_url=manage_url,
        )
    part = getattr(chosen, channel)
    if part is None:
        raise ValueError(f"the campaign has no {channel} content in {prefix}")
    text = _substitute(f"{prefix}.{channel}.text", part.text, values)
    if marketing and channel == "sms":
        text = f"{text.rstrip()}\n{STOP_LINE[lang]}"
    return Rendered(**base, text=text, manage_url=manage_url)


def _header(name: str, value: str) -> bytes:
    """One header line: ASCII values as they are, anything else as RFC 2047 encoded words (so are
    values with leading or trailing white space, which a reader would otherwise strip)."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"line break in the {name} header")
    if value.isascii() and value == value.strip():
        return f"{name}: {value}\r\n".encode("ascii")
    # folded with CRLF, as the whole message is (the transport announces its length as the SMTP SIZE)
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _address_header(name: str, value: str) -> bytes:
    """From/To: a non-ASCII display name is encoded, the address itself is kept (SMTPUTF8 otherwise)."""
    if value.isascii():
        return _header(name, value)
    display, addr = parseaddr(value)
    if not addr.isascii():
        raise ValueError(f"{name} address {addr!r} needs SMTPUTF8, which prefcenter does not use")
    return _header(name, formataddr((display, addr), charset="utf-8"))


@lru_cache(maxsize=16)
def _from_line(from_address: str) -> bytes:
    """The From line: the same for every message of a sender (built once, not per message)."""
    return _address_header("From", from_address)


@lru_cache(maxsize=4)
def _date_line(second: datetime) -> bytes:
    """The Date line, which has whole seconds: the same for every message built within one."""
    return _header("Date", format_datetime(second))


def _part(subtype: str, body: str) -> bytes:
    encoded = base64.encodebytes(body.encode("utf-8")).replace(b"\n", b"\r\n")
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'.encode("ascii")
        + b"Content-Transfer-Encoding: base64\r\n\r\n"
        + encoded
    )


def build_email(message: Rendered, from_address: str, date: datetime) -> bytes:
    """The RFC 5322 bytes of one email: multipart/alternative (text, then HTML) in UTF-8 base64, or a
    single text part. Built directly rather than with ``email.message.EmailMessage``, which costs about
    2 ms a message — more than the whole rest of a delivery; tests parse the result with the email
    package (no defects) and compare every header and part."""
    boundary = "=_" + hashlib.sha256(message.message_id.encode()).hexdigest()[:32]
    head = [
        _from_line(from_address),
        _address_header("To", message.address),
        _header("Subject", message.subject or ""),
        _date_line(date.replace(microsecond=0)),
        _header("Message-ID", message.message_id),
    ]
    if message.marketing and message.unsubscribe_url:
        head.append(_header("List-Unsubscribe", f"<{message.unsubscribe_url}>"))
        head.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    head.append(b"MIME-Version: 1.0\r\n")
    if message.html is None:
        return b"".join(head) + _part("plain", message.text)
    head.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii"))
    sep = f"--{boundary}\r\n".encode("ascii")
    return b"".join(
        [
            *head,
            sep,
            _part("plain", message.text),
            sep,
            _part("html", message.html),
            f"--{boundary}--\r\n".encode("ascii"),
        ]
    )


__all__ = ["Rendered", "build_email", "footer_html", "footer_text", "message_id", "render"]
