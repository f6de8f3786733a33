"""The preference page's own notice: what the page tells a person about consent, per language, and its
version (COMPLIANCE items 15, 16, edge 21).

The notice is the page's paragraphs about consent, in page order (:data:`PAGE_NOTICE_KEYS`): who is
asking (the controller, ``PREFCENTER_CONTROLLER_NAME``), the purposes, and that consent can be withdrawn
at any time. Each language's text is those paragraphs exactly as the page renders them in that language
(the catalogue's English fallback included, the controller's name filled in), joined by blank lines.
The footer's privacy notice link is a document of its own, not part of these words.

Its version is ``PREFCENTER_PAGE_NOTICE_VERSION`` (a prefix), ``-`` and the first 12 hex digits of the
SHA-256 of the texts' canonical JSON: editing a locale file or renaming the controller makes a new
version (old events keep pointing at the old words) instead of a conflict. The app registers it at
start-up (as ``PUT /v1/notices/{version}`` would), the page footer shows it, and every page write
records it with the page's language, so its ``notice_sha256`` is the hash of the text the person read.
"""

from __future__ import annotations

import functools
import hashlib
import json

from prefcenter.config import Settings
from prefcenter.domain.ledger import nfc
from prefcenter.services.notices import ShownNotice
from prefcenter.web.i18n import LANGUAGES, Catalogue

#: The catalogue keys of the page's paragraphs about consent, in the order the page shows them; each
#: key is shown on the preference page (``templates/preferences.html``) exactly as ``t(key, ...)`` renders it.
PAGE_NOTICE_KEYS: tuple[str, ...] = ("prefs.controller", "prefs.intro", "prefs.withdraw")
VERSION_DIGITS = 12


def page_notice_paragraphs(t: Catalogue, controller: str) -> list[str]:
    """The page's paragraphs about consent in ``t``'s language, as rendered (placeholders filled)."""
    values = {"name": controller}
    return [t(key, **values) for key in PAGE_NOTICE_KEYS]


@functools.cache
def _page_notice(prefix: str, controller: str) -> PageNotice:
    texts = {
        lang: nfc("\n\n".join(page_notice_paragraphs(Catalogue(lang), controller))) for lang in LANGUAGES
    }
    canonical = json.dumps(texts, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    version = f"{prefix}-{hashlib.sha256(canonical).hexdigest()[:VERSION_DIGITS]}"
    return PageNotice(version=version, texts=texts)


class PageNotice:
    """The page's notice: its version and its text per page language."""

    __slots__ = ("texts", "version")

    def __init__(self, version: str, texts: dict[str, str]) -> None:
        self.version = version
        self.texts = texts

    def shown(self, language: str) -> ShownNotice:
        """The notice as recorded for a write made on the page in ``language``."""
        return ShownNotice(version=self.version, language=language)


def page_notice(settings: Settings) -> PageNotice:
    """The page's notice for these settings (computed once per prefix and controller name)."""
    return _page_notice(settings.page_notice_version, settings.controller.name)
