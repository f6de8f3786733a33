"""A topic's texts in the reader's language: the one choice the pages (``web/views.py``, which
re-exports these) and the double opt-in mail (``services/confirmations.py``) both make, kept in the
domain so that both layers can use it."""

from __future__ import annotations

from prefcenter.domain.model import Topic


def localized(texts: dict[str, str], lang: str) -> tuple[str, str] | None:
    """A topic's name or description for ``lang``: ``(text, its language)``; falls back to English, then
    to any language; None when there is no text at all."""
    by_primary = {tag.split("-")[0].lower(): tag for tag in texts}
    for wanted in (lang, "en"):
        if wanted in texts:
            return texts[wanted], wanted
        if wanted in by_primary:
            tag = by_primary[wanted]
            return texts[tag], tag
    for tag, text in texts.items():
        return text, tag
    return None


def topic_name(topic: Topic | None, topic_id: str, lang: str) -> str:
    """How a topic is named to a reader of ``lang`` (the pages and the double opt-in mail alike): its
    :func:`localized` name, else its id (a topic that is gone, or has no name at all)."""
    named = localized(topic.names, lang) if topic is not None else None
    return named[0] if named else topic_id
