"""The pages' languages: message catalogues and choosing one per request.

Catalogues are plain TOML files, one per language, in ``web/locales/<lang>.toml``: ``"key" = "text"``,
with ``{name}`` placeholders kept as they are (a test checks that every language has every key of
``en.toml`` and the same placeholders). A translator edits one file; no compile step. They are decoded
with msgspec into ``dict[str, str]`` once per process.

Each request gets its own :class:`Catalogue`, passed to the template as ``t`` in the render context, so
no language is ever installed globally in the Jinja environment (the gettext pitfall in DESIGN.md).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import msgspec

from prefcenter.domain.model import RTL_LANGUAGES

LOCALES_DIR = Path(__file__).parent / "locales"
LANGUAGES: tuple[str, ...] = ("en", "ro", "pl", "el", "fa")
DEFAULT_LANGUAGE = "en"
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_ACCEPT_ITEM = re.compile(r"^\s*([A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*|\*)\s*(?:;\s*q\s*=\s*([0-9.]+))?\s*\Z")


@functools.cache
def catalogue_texts(lang: str) -> dict[str, str]:
    path = LOCALES_DIR / f"{lang}.toml"
    return msgspec.toml.decode(path.read_bytes(), type=dict[str, str])


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


class Catalogue:
    """One language's texts; calling it looks a key up and fills ``{placeholders}`` (plain text: the
    template autoescapes the result)."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.dir = "rtl" if lang in RTL_LANGUAGES else "ltr"
        self._texts = catalogue_texts(lang)
        self._fallback = catalogue_texts(DEFAULT_LANGUAGE)

    def __call__(self, key: str, **values: object) -> str:
        text = self._texts.get(key) or self._fallback[key]
        if not values:
            return text
        return _PLACEHOLDER.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)


def primary_language(tag: str) -> str:
    return tag.strip().split("-")[0].split("_")[0].lower()


def parse_accept_language(header: str) -> list[str]:
    """Language tags from ``Accept-Language`` by preference (q descending, then order); q=0 dropped."""
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(header.split(",")[:50]):
        match = _ACCEPT_ITEM.match(item)
        if not match:
            continue
        try:
            q = float(match.group(2)) if match.group(2) else 1.0
        except ValueError:
            continue
        if q <= 0:
            continue
        ranked.append((-q, index, match.group(1)))
    return [tag for _, _, tag in sorted(ranked)]


def choose_language(customer_locale: str | None, accept_language: str | None) -> str:
    """The customer's own locale if we have it, else the browser's preference, else English."""
    if customer_locale and (lang := primary_language(customer_locale)) in LANGUAGES:
        return lang
    for tag in parse_accept_language(accept_language or ""):
        if (lang := primary_language(tag)) in LANGUAGES:
            return lang
    return DEFAULT_LANGUAGE
