"""Campaigns: what is sent, on which channels, until when; content is checked at PUT.

Content is the placeholder language of ``prefcenter.domain.placeholders`` (three placeholders, no
statements, filters or expressions: nothing to evaluate, so no render can loop). Sizes: each part is
capped by its field (subject 998 characters, email text and HTML 100,000 each, other texts 4096, push
title 200) and the whole content by ``MAX_CONTENT_BYTES`` of UTF-8, checked at PUT (not in the type,
so that campaigns already stored still load).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from prefcenter.domain.model import CHANNELS, AwareDatetime, Channel, FieldError, InvalidInput, TopicId
from prefcenter.domain.placeholders import PLACEHOLDERS, PlaceholderError, parse

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
MAX_CONTENT_BYTES = 256 * 1024


class EmailContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998, examples=["Hi {{ customer_id }}"])]
    text: Annotated[Text, msgspec.Meta(examples=["Our offer. Manage: {{ manage_url }}"])]
    html: Annotated[Text, msgspec.Meta(examples=["<p>Our offer</p>"])]


class TextContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: Annotated[
        str, msgspec.Meta(min_length=1, max_length=4096, examples=["Offer! {{ unsubscribe_url }}"])
    ]


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


def content_parts(content: Content) -> list[tuple[str, str]]:
    """``(field, source)`` of every part present, e.g. ``("content.email.html", "<p>...")``."""
    parts: list[tuple[str, str]] = []
    for channel in CHANNELS:
        part = getattr(content, channel)
        if part is None:
            continue
        for name in part.__struct_fields__:
            source = getattr(part, name)
            if source is not None:
                parts.append((f"content.{channel}.{name}", source))
    return parts


def check_campaign(campaign: Campaign, topic_exists: bool) -> None:
    """Topic exists, channels unique, each offered channel has content, the whole content is at most
    ``MAX_CONTENT_BYTES`` of UTF-8, and every part is the placeholder language (the first error of each
    part is reported with its line and column)."""
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
    parts = content_parts(campaign.content)
    size = sum(len(source.encode("utf-8", "surrogatepass")) for _, source in parts)
    if size > MAX_CONTENT_BYTES:
        errors.append(
            FieldError(
                "content",
                f"the content is {size} bytes of UTF-8 in all; at most {MAX_CONTENT_BYTES} are allowed",
            )
        )
    for field, source in parts:
        try:
            parse(source)
        except PlaceholderError as exc:
            errors.append(FieldError(field, str(exc)))
    if errors:
        raise InvalidInput(errors)


__all__ = [
    "MAX_CONTENT_BYTES",
    "PLACEHOLDERS",
    "Campaign",
    "Content",
    "EmailContent",
    "PushContent",
    "TextContent",
    "check_campaign",
    "content_parts",
]
