"""Campaigns: what is sent, on which channels, until when; content templates are checked at PUT."""

from __future__ import annotations

from typing import Annotated

import msgspec
from jinja2 import TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment

from prefcenter.domain.model import AwareDatetime, Channel, FieldError, InvalidInput, TopicId

PLACEHOLDERS = frozenset({"customer_id", "manage_url", "unsubscribe_url"})
Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
_templates = SandboxedEnvironment(autoescape=False)


class EmailContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998)]
    text: Text
    html: Text


class TextContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]


class PushContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)]
    title: Annotated[str, msgspec.Meta(max_length=200)] | None = None


class Content(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    email: EmailContent | None = None
    sms: TextContent | None = None
    push: PushContent | None = None
    voice: TextContent | None = None
    whatsapp: TextContent | None = None


class Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/campaigns/{id}``."""

    topic: TopicId
    channels: Annotated[list[Channel], msgspec.Meta(min_length=1, max_length=5)]
    content: Content
    send_by: AwareDatetime | None = None


def check_campaign(campaign: Campaign, topic_exists: bool) -> None:
    """Topic exists, channels unique, each offered channel has content, templates parse and use only
    the known placeholders."""
    errors: list[FieldError] = []
    if not topic_exists:
        errors.append(FieldError("topic", f"no topic {campaign.topic!r}"))
    if len(set(campaign.channels)) != len(campaign.channels):
        errors.append(FieldError("channels", "channels must not repeat"))
    for channel in campaign.channels:
        if getattr(campaign.content, channel) is None:
            errors.append(
                FieldError(f"content.{channel}", f"the campaign offers {channel} but has no content for it")
            )
    for channel in ("email", "sms", "push", "voice", "whatsapp"):
        part = getattr(campaign.content, channel)
        if part is None:
            continue
        for name in part.__struct_fields__:
            source = getattr(part, name)
            if source is None:
                continue
            field = f"content.{channel}.{name}"
            try:
                used = meta.find_undeclared_variables(_templates.parse(source))
            except TemplateSyntaxError as exc:
                errors.append(FieldError(field, f"template syntax error on line {exc.lineno}: {exc.message}"))
                continue
            unknown = sorted(used - PLACEHOLDERS)
            if unknown:
                errors.append(
                    FieldError(
                        field,
                        f"unknown placeholder(s) {', '.join(unknown)}; use {', '.join(sorted(PLACEHOLDERS))}",
                    )
                )
    if errors:
        raise InvalidInput(errors)
