"""Campaigns: what is sent, on which channels, until when; content is checked at PUT.

Content is the placeholder language of ``prefcenter.domain.placeholders`` (three placeholders, no
statements, filters or expressions: nothing to evaluate, so no render can loop). Sizes: each part is
capped by its field (subject 998 characters, email text and HTML 100,000 each, other texts 4096, push
title 200) and the whole content by ``MAX_CONTENT_BYTES`` of UTF-8, checked at PUT (not in the type,
so that campaigns already stored still load).

Content per locale (API.md "Content per locale"): ``content`` is written in the campaign's ``locale``
(a BCP 47 tag, default ``en``); ``translations`` maps more BCP 47 tags (at most ``MAX_TRANSLATIONS``) to
a content each, checked exactly like ``content`` (every offered channel, sizes, placeholders; errors
under ``translations.<tag>...``). Tags are stored in their standard case (``PL-pl`` -> ``pl-PL``). A
recipient gets :func:`select_content` of their profile locale: the translation of the exact tag, else
of its language (``pl-PL`` -> ``pl``), else ``content``; the footer follows the body's language.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from prefcenter.domain.model import (
    CHANNELS,
    AwareDatetime,
    Channel,
    FieldError,
    InvalidInput,
    LocaleTag,
    TopicId,
    locale_error,
)
from prefcenter.domain.placeholders import PLACEHOLDERS, PlaceholderError, parse

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=100_000)]
MAX_CONTENT_BYTES = 256 * 1024
MAX_TRANSLATIONS = 50
DEFAULT_CONTENT_LOCALE = "en"


class EmailContent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Without ``html`` the email is one ``text/plain`` part (still with the footer)."""

    subject: Annotated[str, msgspec.Meta(min_length=1, max_length=998, examples=["Hi {{ customer_id }}"])]
    text: Annotated[Text, msgspec.Meta(examples=["Our offer. Manage: {{ manage_url }}"])]
    html: Annotated[Text, msgspec.Meta(examples=["<p>Our offer</p>"])] | None = None


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


def canonical_tag(tag: str) -> str:
    """A BCP 47 tag in its conventional case (RFC 5646 2.1.1): ``PL-pl`` -> ``pl-PL``, ``sr-latn`` ->
    ``sr-Latn``; ``_`` is read as ``-``. Only the case changes: the tag is not otherwise rewritten."""
    subtags = tag.replace("_", "-").split("-")
    out = [subtags[0].lower()]
    private = len(subtags[0]) == 1
    for sub in subtags[1:]:
        if private or len(sub) == 1:
            private = True  # after a singleton (extension or x-) everything is lower case
            out.append(sub.lower())
        elif len(sub) == 2:
            out.append(sub.upper())
        elif len(sub) == 4 and sub.isalpha():
            out.append(sub.title())
        else:
            out.append(sub.lower())
    return "-".join(out)


class Campaign(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/campaigns/{id}``. ``content`` is written in ``locale`` (default ``en``: the language of
    its footer); ``translations`` adds content per BCP 47 tag, each checked like ``content``. Tags are
    kept in their conventional case (``pl-pl`` is stored as ``pl-PL``)."""

    topic: TopicId
    channels: Annotated[list[Channel], msgspec.Meta(min_length=1, max_length=5)]
    content: Content
    send_by: AwareDatetime | None = None
    locale: Annotated[
        LocaleTag,
        msgspec.Meta(
            examples=["en"],
            description="The BCP 47 language of `content` (and of its footer); default `en`",
        ),
    ] = DEFAULT_CONTENT_LOCALE
    translations: Annotated[
        dict[LocaleTag, Content],
        msgspec.Meta(
            max_length=MAX_TRANSLATIONS,
            description="Content per BCP 47 tag: a recipient gets the translation of their locale "
            "(exact tag, then its language), else `content`; the footer is in the same language",
        ),
    ] = {}

    def __post_init__(self) -> None:
        # Valid tags in their conventional case; invalid ones (and keys that would collide once
        # normalised) are kept as given so that check_campaign names them.
        if self.locale != (tag := canonical_tag(self.locale)) and locale_error(self.locale) is None:
            msgspec.structs.force_setattr(self, "locale", tag)
        if self.translations:
            normal = {
                (canonical_tag(tag) if locale_error(tag) is None else tag): content
                for tag, content in self.translations.items()
            }
            if len(normal) == len(self.translations) and list(normal) != list(self.translations):
                msgspec.structs.force_setattr(self, "translations", normal)


def select_content(campaign: Campaign, locale: str | None) -> tuple[str, str, Content]:
    """``(tag, field prefix, content)`` for a recipient of ``locale``: the translation of that exact tag,
    else of its language (``pl-PL`` -> ``pl``), else ``content`` (tag ``campaign.locale``). Tags compare
    case-insensitively."""
    if locale and campaign.translations:
        wanted = canonical_tag(locale.strip())
        by_lower = {tag.lower(): tag for tag in campaign.translations}
        for candidate in (wanted.lower(), wanted.split("-")[0].lower()):
            tag = by_lower.get(candidate)
            if tag is not None:
                return tag, f"translations.{tag}", campaign.translations[tag]
    return campaign.locale, "content", campaign.content


def content_column(campaign: Campaign) -> Content | dict[str, Any]:
    """What the stores write in ``campaigns.content``: the ``content`` object as before, with
    ``locale`` and ``translations`` beside its channels when the campaign has them (those keys are no
    channel, so a campaign without them is stored exactly as before this field existed)."""
    if not campaign.translations and campaign.locale == DEFAULT_CONTENT_LOCALE:
        return campaign.content
    stored: dict[str, Any] = msgspec.to_builtins(campaign.content)
    stored["locale"] = campaign.locale
    if campaign.translations:
        stored["translations"] = msgspec.to_builtins(campaign.translations)
    return stored


def campaign_columns(stored: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`content_column`: ``{"content", "locale"?, "translations"?}`` for
    ``msgspec.convert`` into :class:`Campaign` with the other columns."""
    content = dict(stored)
    fields: dict[str, Any] = {}
    for name in ("locale", "translations"):
        if name in content:
            fields[name] = content.pop(name)
    return {"content": content, **fields}


def content_parts(content: Content, prefix: str = "content") -> list[tuple[str, str]]:
    """``(field, source)`` of every part present, e.g. ``("content.email.html", "<p>...")``."""
    parts: list[tuple[str, str]] = []
    for channel in CHANNELS:
        part = getattr(content, channel)
        if part is None:
            continue
        for name in part.__struct_fields__:
            source = getattr(part, name)
            if source is not None:
                parts.append((f"{prefix}.{channel}.{name}", source))
    return parts


def _check_content(content: Content, prefix: str, channels: list[Channel], errors: list[FieldError]) -> None:
    for channel in channels:
        if getattr(content, channel) is None:
            errors.append(
                FieldError(f"{prefix}.{channel}", f"the campaign offers {channel} but has no content for it")
            )
    parts = content_parts(content, prefix)
    size = sum(len(source.encode("utf-8", "surrogatepass")) for _, source in parts)
    if size > MAX_CONTENT_BYTES:
        errors.append(
            FieldError(
                prefix,
                f"the content is {size} bytes of UTF-8 in all; at most {MAX_CONTENT_BYTES} are allowed",
            )
        )
    for field, source in parts:
        try:
            parse(source)
        except PlaceholderError as exc:
            errors.append(FieldError(field, str(exc)))


def check_campaign(campaign: Campaign, topic_exists: bool) -> None:
    """Topic exists, channels unique, each offered channel has content, the whole content is at most
    ``MAX_CONTENT_BYTES`` of UTF-8, and every part is the placeholder language (the first error of each
    part is reported with its line and column). ``locale`` and each translation's tag are BCP 47 (a
    translation's errors are named ``translations.<tag>...``), and each translation is checked exactly
    like ``content`` (each at most ``MAX_CONTENT_BYTES``)."""
    errors: list[FieldError] = []
    if not topic_exists:
        errors.append(FieldError("topic", f"no topic {campaign.topic!r}"))
    if len(set(campaign.channels)) != len(campaign.channels):
        errors.append(FieldError("channels", "channels must not repeat"))
    if (msg := locale_error(campaign.locale)) is not None:
        errors.append(FieldError("locale", msg))
    _check_content(campaign.content, "content", campaign.channels, errors)
    for tag, content in campaign.translations.items():
        field = f"translations.{tag}"
        if (msg := locale_error(tag)) is not None:
            errors.append(FieldError(field, msg))
            continue
        if canonical_tag(tag) != tag:
            errors.append(FieldError(field, f"{tag!r} repeats another tag (tags are case-insensitive)"))
            continue
        _check_content(content, field, campaign.channels, errors)
    if errors:
        raise InvalidInput(errors)


__all__ = [
    "DEFAULT_CONTENT_LOCALE",
    "MAX_CONTENT_BYTES",
    "MAX_TRANSLATIONS",
    "PLACEHOLDERS",
    "Campaign",
    "Content",
    "EmailContent",
    "PushContent",
    "TextContent",
    "campaign_columns",
    "canonical_tag",
    "check_campaign",
    "content_column",
    "content_parts",
    "select_content",
]
