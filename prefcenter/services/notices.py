"""Notices: what a person was told when they consented (COMPLIANCE items 15, 16, edge 13 and 21).

A notice version's texts are registered once (``PUT /v1/notices/{notice_version}``): stored
NFC-normalised with the hex SHA-256 of each text's UTF-8 bytes, and never changed. Registering the same
version again with the same texts (compared after NFC) changes nothing and answers 200; other texts for
a registered version are a 409 and change nothing: new words need a new version. A consent event whose
``notice_version`` is registered carries ``notice_sha256``, the hash of the text in the person's language
(:func:`notice_sha256`; the language rule is :func:`prefcenter.domain.ledger.notice_language`).

The preference page's own notice is registered at start-up from the texts the page shows
(:func:`register_page_notice`; the web layer builds them from its locale files).
"""

from __future__ import annotations

import re
from typing import Annotated

import msgspec
import structlog

from prefcenter.domain.ledger import (
    NOTICE_LANGUAGES_MAX,
    NOTICE_TEXT_MAX_BYTES,
    Attribution,
    Notice,
    notice_hash_for,
    notice_texts,
)
from prefcenter.domain.model import FieldError, InvalidInput, LocaleTag, NoticeVersion, locale_error
from prefcenter.services.errors import Conflict, NotFound
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.notices")

_VERSION_TYPE = msgspec.inspect.type_info(NoticeVersion)
if isinstance(_VERSION_TYPE, msgspec.inspect.Metadata):
    _VERSION_TYPE = _VERSION_TYPE.type
assert isinstance(_VERSION_TYPE, msgspec.inspect.StrType) and _VERSION_TYPE.pattern
NOTICE_VERSION_RE = re.compile(_VERSION_TYPE.pattern)  # the one grammar of provenance.notice_version
NoticeText = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=NOTICE_TEXT_MAX_BYTES,
        description=f"The notice's words in one language: not empty, at most {NOTICE_TEXT_MAX_BYTES} "
        "bytes of UTF-8 after NFC normalisation; line breaks and tabs allowed, other control characters "
        "not",
    ),
]
# Control characters a text may hold: tab and line breaks.
_ALLOWED_CONTROLS = frozenset("\t\n\r")


class NoticeWrite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/notices/{notice_version}``: the notice's texts by BCP 47 language tag."""

    texts: Annotated[
        dict[LocaleTag, NoticeText],
        msgspec.Meta(
            min_length=1,
            max_length=NOTICE_LANGUAGES_MAX,
            examples=[
                {
                    "en": "Shop Example Ltd sends you offers on the channel you choose. You can withdraw "
                    "your consent at any time."
                }
            ],
        ),
    ]


class ShownNotice(msgspec.Struct, frozen=True):
    """The notice a page showed: its version and the language it was shown in."""

    version: str
    language: str


def check_notice_version(notice_version: str) -> None:
    if not NOTICE_VERSION_RE.match(notice_version):
        raise InvalidInput(
            [FieldError("notice_version", "must be 1-64 characters of A-Za-z0-9._:-")],
            "Malformed notice version.",
        )


def _text_errors(tag: str, text: str) -> list[FieldError]:
    where = f"texts.{tag}" if tag.isprintable() else f"texts[{tag!r}]"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return [FieldError(where, "not valid Unicode (lone surrogate)")]
    if not text.strip():
        return [FieldError(where, "must not be empty or only white space")]
    if any(not c.isprintable() and c not in _ALLOWED_CONTROLS and ord(c) < 0xA0 for c in text):
        return [FieldError(where, "control characters other than tab and line breaks are not allowed")]
    return []


def check_notice(write: NoticeWrite) -> None:
    """Every language tag valid BCP 47 and distinct regardless of case; every text valid Unicode, not
    blank, without control characters, and within the size limit after NFC."""
    errors: list[FieldError] = []
    seen: dict[str, str] = {}
    for tag, text in write.texts.items():
        where = f"texts.{tag}" if tag.isprintable() else f"texts[{tag!r}]"
        try:
            tag.encode("utf-8")
            bad_tag = locale_error(tag)
        except UnicodeEncodeError:
            bad_tag = "not valid Unicode (lone surrogate)"
        if bad_tag is not None:
            errors.append(FieldError(where, bad_tag))
            continue
        if tag.lower() in seen:
            errors.append(FieldError(where, f"the same language as {seen[tag.lower()]!r} (tags ignore case)"))
            continue
        seen[tag.lower()] = tag
        errors.extend(_text_errors(tag, text))
    if not errors:
        normal, _ = notice_texts(write.texts)
        for tag, text in normal.items():
            if len(text.encode("utf-8")) > NOTICE_TEXT_MAX_BYTES:
                errors.append(FieldError(f"texts.{tag}", f"at most {NOTICE_TEXT_MAX_BYTES} bytes of UTF-8"))
    if errors:
        raise InvalidInput(errors)


async def put_notice(rt: Runtime, notice_version: str, write: NoticeWrite) -> tuple[Notice, bool]:
    """Register a notice version once. Returns (the notice as stored, created). The same texts again
    (after NFC): the stored notice, not created. Other texts: Conflict, nothing changes."""
    check_notice_version(notice_version)
    check_notice(write)
    texts, hashes = notice_texts(write.texts)
    async with rt.store.write() as tx:
        existing = await tx.get_notice(notice_version)
        if existing is not None:
            if existing.texts != texts:
                raise Conflict(
                    f"notice version {notice_version!r} is registered with other texts; a notice never "
                    "changes: register the new texts under a new version"
                )
            return existing, False
        notice = Notice(notice_version=notice_version, texts=texts, sha256=hashes, registered_at=rt.now())
        await tx.add_notice(notice)
    log.info("notice registered", notice_version=notice_version, languages=sorted(texts))
    return notice, True


async def get_notice(rt: Runtime, notice_version: str) -> Notice:
    check_notice_version(notice_version)
    notice = await rt.store.get_notice(notice_version)
    if notice is None:
        raise NotFound(f"no notice {notice_version!r}")
    return notice


async def with_notice_sha256(
    tx: WriteTx, attribution: Attribution, customer_id: str | None, language: str | None
) -> Attribution:
    """``attribution`` with the ``notice_sha256`` its events carry: the hash of the registered text of
    its notice version in ``language`` (None: the customer's profile locale), exact tag first, then
    the base language; null when the version is not registered or has no text in that language."""
    if attribution.notice_version is None or attribution.notice_sha256 is not None:
        return attribution
    notice = await tx.get_notice(attribution.notice_version)
    if notice is None:
        return attribution
    if language is None and customer_id is not None:
        customer = await tx.get_customer(customer_id)
        language = customer.profile.locale if customer is not None else None
    return msgspec.structs.replace(attribution, notice_sha256=notice_hash_for(notice, language))


async def register_page_notice(rt: Runtime, notice_version: str, texts: dict[str, str]) -> bool:
    """Register the preference page's notice at start-up (a no-op when it is registered already).
    Its version names its texts' hash, so other texts under it mean someone registered that version
    by hand: start-up stops rather than let page consents point at words the page never showed."""
    try:
        _, created = await put_notice(rt, notice_version, NoticeWrite(texts=texts))
    except Conflict as exc:
        raise RuntimeError(
            f"the preference page's notice {notice_version!r} is registered with other texts: {exc.detail}"
        ) from None
    return created


__all__ = [
    "NoticeWrite",
    "ShownNotice",
    "check_notice",
    "get_notice",
    "put_notice",
    "register_page_notice",
    "with_notice_sha256",
]
