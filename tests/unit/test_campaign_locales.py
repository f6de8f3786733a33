"""Campaign content per locale in the domain (API.md "Content per locale"): tag case, the choice of
body for a recipient's locale, and the stored form of ``campaigns.content``."""

from __future__ import annotations

import msgspec
import pytest

from prefcenter.domain.campaigns import (
    Campaign,
    campaign_columns,
    canonical_tag,
    check_campaign,
    content_column,
    select_content,
)
from prefcenter.domain.model import InvalidInput

EMAIL = {"subject": "Hi", "text": "Offer {{ manage_url }}"}
BASE = {"topic": "promotions", "channels": ["email"], "content": {"email": EMAIL}}


def camp(**extra: object) -> Campaign:
    return msgspec.convert({**BASE, **extra}, Campaign)


@pytest.mark.parametrize(
    ("tag", "canonical"),
    [
        ("PL", "pl"),
        ("pl-pl", "pl-PL"),
        ("sr-latn-rs", "sr-Latn-RS"),
        ("pt_br", "pt-BR"),
        ("es-419", "es-419"),
        ("de-CH-x-PHONEBK", "de-CH-x-phonebk"),
    ],
)
def test_canonical_tag(tag: str, canonical: str) -> None:
    assert canonical_tag(tag) == canonical


def test_select_content_exact_then_language_then_content() -> None:
    pl = {"email": {**EMAIL, "subject": "pl"}}
    pl_pl = {"email": {**EMAIL, "subject": "pl-PL"}}
    c = camp(translations={"pl": pl, "PL-pl": pl_pl}, locale="EN-gb")
    assert c.locale == "en-GB" and list(c.translations) == ["pl", "pl-PL"]
    assert select_content(c, "pl-PL")[:2] == ("pl-PL", "translations.pl-PL")
    assert select_content(c, "pl_pl")[0] == "pl-PL"
    assert select_content(c, "pl-Latn")[0] == "pl"
    assert select_content(c, "PL")[0] == "pl"
    assert select_content(c, "ro")[:2] == ("en-GB", "content")
    assert select_content(c, None)[2] is c.content
    assert select_content(camp(), "pl")[0] == "en"


def test_stored_column_round_trip_and_unchanged_without_translations() -> None:
    plain = camp()
    assert content_column(plain) is plain.content  # stored exactly as before the feature
    rich = camp(translations={"pl": {"email": {**EMAIL, "html": "<p>x</p>"}}}, locale="de")
    stored = msgspec.json.decode(msgspec.json.encode(content_column(rich)))
    assert set(stored) == {"email", "locale", "translations"}
    back = msgspec.convert(
        {"topic": "promotions", "channels": ["email"], **campaign_columns(stored)}, Campaign
    )
    assert back == rich
    old = msgspec.json.decode(msgspec.json.encode(content_column(plain)))
    assert campaign_columns(old) == {"content": {"email": EMAIL}}


def test_translation_errors_are_named_by_tag() -> None:
    bad = camp(
        translations={"x!": {"email": EMAIL}, "el": {"email": {**EMAIL, "subject": "{{ nope }}"}}, "ro": {}}
    )
    with pytest.raises(InvalidInput) as info:
        check_campaign(bad, topic_exists=True)
    assert [e.field for e in info.value.errors] == [
        "translations.x!",
        "translations.el.email.subject",
        "translations.ro.email",
    ]
    with pytest.raises(msgspec.ValidationError, match="fax"):
        camp(translations={"pl": {"email": EMAIL, "fax": {"text": "x"}}})
