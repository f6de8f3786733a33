"""Rendering one campaign message for one customer, and the RFC 5322 email built from it.

- Content is the campaign's, per channel, rendered with the sandboxed placeholders ``customer_id``,
  ``manage_url`` and ``unsubscribe_url`` (the unsubscribe link is scoped to the campaign's topic).
- Email: multipart/alternative text + HTML, a footer link to the preference page in both parts (every
  email, transactional too); marketing email also carries ``List-Unsubscribe: <{public_url}/u/{token}>``
  and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058). DKIM signing is the relay's
  job and must cover both List-Unsubscribe headers.
- ``Message-ID`` is the same for every attempt at one (campaign, customer): a duplicate delivery after a
  crash is recognisable as one.
- Marketing SMS gets "Reply STOP to opt out" in the customer's language.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import msgspec
from jinja2.sandbox import SandboxedEnvironment

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.model import Customer
from prefcenter.services.links import mint_links

_text_env = SandboxedEnvironment(autoescape=False)
_html_env = SandboxedEnvironment(autoescape=True)

STOP_LINE = {
    "en": "Reply STOP to opt out",
    "pl": "Odpowiedz STOP, aby zrezygnować",
    "ro": "Răspundeți STOP pentru dezabonare",
    "el": "Απαντήστε STOP για διαγραφή",
    "fa": "برای لغو اشتراک STOP را ارسال کنید",
}
FOOTER = {
    "en": "Manage your message preferences",
    "pl": "Zarządzaj preferencjami wiadomości",
    "ro": "Gestionați preferințele pentru mesaje",
    "el": "Διαχείριση προτιμήσεων μηνυμάτων",
    "fa": "مدیریت ترجیحات پیام",
}


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


def sender_domain(from_address: str) -> str:
    _, addr = parseaddr(from_address)
    return addr.rsplit("@", 1)[1] if "@" in addr else "prefcenter.invalid"


def render(
    *,
    public_url_links: tuple[str, str],
    campaign_id: str,
    campaign: Campaign,
    marketing: bool,
    customer: Customer,
    channel: str,
    from_address: str,
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
    lang = language(customer.profile.locale)
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
        content = campaign.content.email
        if content is None:
            raise ValueError("the campaign has no email content")
        footer = FOOTER[lang]
        text = _text_env.from_string(content.text).render(values)
        html = _html_env.from_string(content.html).render(values)
        text = f"{text.rstrip()}\n\n--\n{footer}: {manage_url}\n"
        link = _html_env.from_string('<hr><p><a href="{{ u }}">{{ f }}</a></p>').render(
            u=manage_url, f=footer
        )
        html = f"{html}\n{link}\n"
        subject = _text_env.from_string(content.subject).render(values).replace("\r", " ").replace("\n", " ")
        return Rendered(
            **base,
            text=text,
            subject=subject,
            html=html,
            unsubscribe_url=unsubscribe_url if marketing else None,
            manage_url=manage_url,
        )
    part = getattr(campaign.content, channel)
    if part is None:
        raise ValueError(f"the campaign has no {channel} content")
    text = _text_env.from_string(part.text).render(values)
    if marketing and channel == "sms":
        text = f"{text.rstrip()}\n{STOP_LINE[lang]}"
    return Rendered(**base, text=text, manage_url=manage_url)


def build_email(message: Rendered, from_address: str, date: datetime) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = message.address
    msg["Subject"] = message.subject or ""
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = message.message_id
    if message.marketing and message.unsubscribe_url:
        msg["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(message.text)
    if message.html is not None:
        msg.add_alternative(message.html, subtype="html")
    return msg


__all__ = ["Rendered", "build_email", "message_id", "mint_links", "render"]
