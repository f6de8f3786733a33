"""What the pages show: the preference page's view model (channels with their contacts masked, topics
in the reader's language, the form's values), and the masking and topic texts the other pages use (the
topic texts themselves, :func:`localized` and :func:`topic_name`, are ``domain/texts.py``'s, so the
double opt-in mail of ``services/confirmations.py`` names a topic exactly as the pages do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import phonenumbers

from prefcenter.domain.model import CHANNELS, Customer, Topic
from prefcenter.domain.texts import localized as localized  # re-exported: the pages' topic texts
from prefcenter.domain.texts import topic_name as topic_name
from prefcenter.web.forms import PageForm, form_from_preferences


def mask_email(address: str) -> str:
    """``ola@example.pl`` -> ``o**@example.pl`` (the length of the local part is not shown either)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}**@{domain}" if local else "**"


def mask_phone(number: str) -> str:
    """``+48600100200`` -> ``+48 *** *** 200``."""
    try:
        code = str(phonenumbers.parse(number, None).country_code)
    except phonenumbers.NumberParseException:
        code = number[1:3]
    return f"+{code} *** *** {number[-3:]}"


def masked_address(channel: str, address: str) -> str | None:
    """How the page shows a contact; None for push (a device token means nothing to a person)."""
    if channel == "email":
        return mask_email(address)
    if channel == "push":
        return None
    return mask_phone(address)


@dataclass(frozen=True)
class ChannelOption:
    id: str
    address: str | None  # masked; None when there is no address to show (push, or none on file)
    on_file: bool


@dataclass(frozen=True)
class TopicOption:
    id: str
    name: str
    name_lang: str
    description: str | None = None
    description_lang: str | None = None


@dataclass(frozen=True)
class PageModel:
    """What the preference page shows, for one customer in one language."""

    channels: list[ChannelOption]
    marketing: list[TopicOption]
    service: list[TopicOption]
    timezone: str
    tomorrow: str
    form: PageForm
    email_on_file: bool = field(default=False)


def _topic_option(topic_id: str, topic: Topic, lang: str) -> TopicOption:
    name, name_lang = localized(topic.names, lang) or (topic_id, "en")
    described = localized(topic.descriptions, lang)
    return TopicOption(
        id=topic_id,
        name=name,
        name_lang=name_lang,
        description=described[0] if described else None,
        description_lang=described[1] if described else None,
    )


def page_model(
    customer: Customer, topics: dict[str, Topic], lang: str, now: datetime, form: PageForm | None = None
) -> PageModel:
    """The page for ``customer``: channels with a contact on file (and the chosen one even without),
    marketing topics to tick, service topics shown as always on, and the form's values — the current
    preferences, or ``form`` when a submitted one is shown again with its errors."""
    zone = ZoneInfo(customer.profile.timezone)
    contacts = customer.profile.contacts
    chosen = customer.preferences.channel
    channels = [
        ChannelOption(id=ch, address=masked_address(ch, addr) if addr else None, on_file=addr is not None)
        for ch in CHANNELS
        if (addr := contacts.get(ch)) is not None or ch == chosen
    ]
    return PageModel(
        channels=channels,
        marketing=[
            _topic_option(t, topic, lang) for t, topic in topics.items() if topic.category == "marketing"
        ],
        service=[
            _topic_option(t, topic, lang) for t, topic in topics.items() if topic.category != "marketing"
        ],
        timezone=customer.profile.timezone,
        tomorrow=(now.astimezone(zone).date() + timedelta(days=1)).isoformat(),
        form=form or form_from_preferences(customer.preferences, zone),
        email_on_file=contacts.email is not None,
    )
