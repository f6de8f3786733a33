"""What they were told (issue 16 item 6): notice texts registered once with their hashes, consent
events that point at the exact text in the person's language, and the page's own notice."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re
import unicodedata
from typing import Any

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings
from prefcenter.domain.ledger import notice_language
from prefcenter.services.runtime import Runtime
from prefcenter.web.i18n import LANGUAGES, Catalogue
from prefcenter.web.notice import PAGE_NOTICE_KEYS, page_notice, page_notice_paragraphs
from tests.conftest import PROFILE, Api, FakeClock, prefs_body
from tests.web.test_pages import open_page, page_form, paths, replace_fields, submit

TEXTS = {
    "en": "Shop Example Ltd sends you offers on the channel you choose. You may withdraw at any time.",
    "pl": "Shop Example Ltd wysyła Ci oferty wybranym kanałem. Zgodę możesz wycofać w każdej chwili.",
    "pt": "A Shop Example Ltd envia-lhe ofertas. Pode retirar o consentimento a qualquer momento.",
    "fa": "شرکت Shop Example پیشنهادها را برایتان می‌فرستد. هر زمان می‌توانید رضایت خود را پس بگیرید.",
}


def sha(text: str) -> str:
    """What an auditor computes: SHA-256 of the NFC text's UTF-8 bytes."""
    return hashlib.sha256(unicodedata.normalize("NFC", text).encode("utf-8")).hexdigest()


async def put_notice(api: Api, version: str, texts: Any, role: str = "admin") -> Any:
    return await api.client.put(f"/v1/notices/{version}", json={"texts": texts}, headers=api.as_(role))


async def get_notice(api: Api, version: str, role: str = "auditor") -> Any:
    return await api.client.get(f"/v1/notices/{version}", headers=api.as_(role))


async def events(api: Api, cid: str) -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/consent-events?customer_id={cid}&limit=1000", headers=api.as_("auditor"))
    assert r.status_code == 200
    found: list[dict[str, Any]] = r.json()["events"]
    return found


def provenance(version: str) -> dict[str, Any]:
    return {"source": "api", "actor": "signup-form", "notice_version": version, "evidence": {}}


async def customer_with_consent(api: Api, cid: str, locale: str, version: str) -> list[dict[str, Any]]:
    r = await api.client.put(
        f"/v1/customers/{cid}", json={**PROFILE, "locale": locale}, headers=api.as_("marketing")
    )
    assert r.status_code == 201, r.text
    r = await api.client.put(
        f"/v1/customers/{cid}/preferences",
        json=prefs_body(provenance=provenance(version)),
        headers=api.as_("marketing"),
    )
    assert r.status_code == 200, r.text
    return await events(api, cid)


# ---------------------------------------------------------------------------------------------------
# registering


async def test_compliance_15_a_notice_is_registered_once_with_the_hash_of_each_text(
    api: Api, clock: FakeClock
) -> None:
    """COMPLIANCE item 15: each event points to an immutable notice version (SHA-256) holding the
    controller's name, the purposes and the withdrawal statement; editing needs a new version."""
    r = await put_notice(api, "2026-10", TEXTS)
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"notice_version", "texts", "sha256", "registered_at"}
    assert created["notice_version"] == "2026-10" and created["texts"] == TEXTS
    assert created["sha256"] == {tag: sha(text) for tag, text in TEXTS.items()}
    assert created["registered_at"] == "2026-11-22T09:00:00Z"
    for role in ("auditor", "marketing", "admin"):
        r = await get_notice(api, "2026-10", role)
        assert r.status_code == 200 and r.json() == created, role

    # The same texts again: idempotent, nothing changes (not even registered_at).
    clock.advance(days=1)
    r = await put_notice(api, "2026-10", TEXTS)
    assert r.status_code == 200 and r.json() == created

    # Other words under the same version: 409, nothing changes.
    for other in (
        {**TEXTS, "en": TEXTS["en"] + " Edited."},
        {"en": TEXTS["en"]},
        {**TEXTS, "ro": "Text nou."},
    ):
        r = await put_notice(api, "2026-10", other)
        assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")
        assert "new version" in r.json()["detail"]
        assert (await get_notice(api, "2026-10")).json() == created
    # ... they go under a new version, and the old one still resolves to the old words.
    r = await put_notice(api, "2026-11", {**TEXTS, "en": TEXTS["en"] + " Edited."})
    assert r.status_code == 201
    assert (await get_notice(api, "2026-10")).json()["texts"]["en"] == TEXTS["en"]


async def test_edge_13_texts_are_stored_nfc_so_the_hash_is_the_same_for_the_same_words(api: Api) -> None:
    """COMPLIANCE edge 13: Unicode NFC in stored notice text keeps hashes stable."""
    composed = "Zgodę możesz wycofać w każdej chwili. Café, ή"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    r = await put_notice(api, "nfc-1", {"pl": decomposed})
    assert r.status_code == 201
    assert r.json()["texts"]["pl"] == composed
    assert r.json()["sha256"]["pl"] == hashlib.sha256(composed.encode()).hexdigest()
    # The composed form of the same words is the same registration (200), not a conflict.
    r = await put_notice(api, "nfc-1", {"pl": composed})
    assert r.status_code == 200


async def test_notice_roles_and_unknown_versions(api: Api) -> None:
    for role in ("marketing", "auditor"):
        assert (await put_notice(api, "v1", TEXTS, role)).status_code == 403
    assert (await api.client.put("/v1/notices/v1", json={"texts": TEXTS})).status_code == 401
    assert (await api.client.get("/v1/notices/v1")).status_code == 401
    r = await get_notice(api, "never-registered")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await get_notice(api, "bad version")
    assert r.status_code == 400 and r.json()["errors"][0]["field"] == "notice_version"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"texts": {}}, "texts"),
        ({"texts": {"en": "ok"}, "extra": 1}, "extra"),
        ({}, "texts"),
        ({"texts": {"en": ""}}, "texts"),  # msgspec names a dict value texts[...]
        ({"texts": {"en": "   \n"}}, "texts.en"),
        ({"texts": {"en": "bell \x07"}}, "texts.en"),
        ({"texts": {"not a tag": "x"}}, "texts.not a tag"),
        ({"texts": {"en": "a", "EN": "b"}}, "texts.EN"),
        ({"texts": {"en": "é" * 40_000}}, "texts.en"),  # 80,000 bytes of UTF-8
        ({"texts": {"en": 5}}, "texts"),
    ],
)
async def test_bad_notices_are_400_naming_the_field_and_write_nothing(
    api: Api, body: Any, field: str
) -> None:
    r = await api.client.put("/v1/notices/v1", json=body, headers=api.as_("admin"))
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert any(e["field"].startswith(field) for e in r.json()["errors"]), r.text
    assert (await get_notice(api, "v1")).status_code == 404


async def test_a_lone_surrogate_is_400(api: Api) -> None:
    raw = b'{"texts": {"en": "half \\ud800 a character"}}'
    r = await api.client.put(
        "/v1/notices/v1", content=raw, headers={**api.as_("admin"), "content-type": "application/json"}
    )
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json"), r.text
    assert (await get_notice(api, "v1")).status_code == 404


# ---------------------------------------------------------------------------------------------------
# events point at the text


async def test_compliance_16_an_event_carries_the_hash_of_the_text_in_the_customers_language(
    api: Api,
) -> None:
    """COMPLIANCE item 16: what they were told (notice version, language, hash) is in every event; a
    version nobody registered is a label only (null hash)."""
    assert (await put_notice(api, "2026-10", TEXTS)).status_code == 201
    pl = await customer_with_consent(api, "c-pl", "pl", "2026-10")
    assert pl and all(e["notice_version"] == "2026-10" and e["notice_sha256"] == sha(TEXTS["pl"]) for e in pl)
    # A regional tag falls back to its base language (pt-BR -> pt), matched regardless of case.
    br = await customer_with_consent(api, "c-br", "pt-BR", "2026-10")
    assert all(e["notice_sha256"] == sha(TEXTS["pt"]) for e in br)
    # No text in the customer's language: null (nothing is claimed about what they read).
    de = await customer_with_consent(api, "c-de", "de", "2026-10")
    assert de and all("notice_sha256" in e and e["notice_sha256"] is None for e in de)
    # An unregistered version: null too.
    other = await customer_with_consent(api, "c-x", "pl", "unregistered-1")
    assert other and all(e["notice_sha256"] is None for e in other)

    # The export shows it; CSV has the column (empty for null).
    r = await api.client.get(
        "/v1/consent-events/export?format=csv&customer_id=c-pl", headers=api.as_("auditor")
    )
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows and all(row["notice_sha256"] == sha(TEXTS["pl"]) for row in rows)
    r = await api.client.get(
        "/v1/consent-events/export?format=csv&customer_id=c-x", headers=api.as_("auditor")
    )
    assert all(row["notice_sha256"] == "" for row in csv.DictReader(io.StringIO(r.text)))
    # The receipt names the version, the language and the hash of each consent.
    r = await api.client.get("/v1/customers/c-pl/consent-receipt", headers=api.as_("auditor"))
    consents = r.json()["consents"]
    assert consents and all(
        (c["privacy_notice"], c["privacy_notice_language"], c["privacy_notice_sha256"])
        == ("2026-10", "pl", sha(TEXTS["pl"]))
        for c in consents
    )
    verify = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert verify.json()["ok"] is True


def test_the_notice_language_rule() -> None:
    tags = ["en", "pt", "zh-Hant", "pl"]
    assert notice_language(tags, "pl") == "pl"
    assert notice_language(tags, "pt-BR") == "pt"
    assert notice_language(tags, "ZH-hant") == "zh-Hant"
    assert notice_language(tags, "zh-Hans") is None  # neither the tag nor its base language "zh"
    assert notice_language(tags, "de") is None
    assert notice_language(tags, None) is None


# ---------------------------------------------------------------------------------------------------
# the page's own notice


async def test_edge_21_a_consent_given_on_the_persian_page_carries_the_hash_of_the_persian_text(
    api: Api,
) -> None:
    """COMPLIANCE edge 21: for consent given on a Persian (RTL) notice, the export shows the exact text
    that was displayed (its hash, and the text itself behind GET /v1/notices/{version}), not a
    translation. COMPLIANCE item 15: the page's notice names the controller, the purposes and the right
    to withdraw at any time."""
    r = await api.client.put(
        "/v1/customers/c-fa", json={**PROFILE, "locale": "fa"}, headers=api.as_("marketing")
    )
    assert r.status_code == 201
    manage, _ = await paths(api, "c-fa")
    html = await open_page(api, manage)
    assert 'lang="fa"' in html and 'dir="rtl"' in html
    r = await submit(api, manage, replace_fields(page_form(html), channel="email", topics=["promotions"]))
    assert r.status_code == 303, r.text
    saved = await events(api, "c-fa")
    assert saved and all(e["source"] == "preference_page" for e in saved)
    version = saved[0]["notice_version"]
    assert version == page_notice(api.rt.settings).version and version.startswith("pages-v1-")
    assert version in html  # the footer shows the version the events record

    notice = (await get_notice(api, version)).json()
    fa_text = notice["texts"]["fa"]
    assert all(e["notice_sha256"] == notice["sha256"]["fa"] == sha(fa_text) for e in saved)
    assert notice["sha256"]["fa"] != notice["sha256"]["en"]
    # The registered Persian text is what the page displayed, word for word, paragraph by paragraph.
    shown = _text_of(html)
    for paragraph in fa_text.split("\n\n"):
        assert paragraph in shown, paragraph
    assert api.rt.settings.controller.name in fa_text

    # The page's language decides, not the profile's: a "de" profile (no German page) whose browser asks
    # for Persian sees the Persian page, and its consent carries the Persian text's hash.
    r = await api.client.put(
        "/v1/customers/c-de", json={**PROFILE, "locale": "de"}, headers=api.as_("marketing")
    )
    assert r.status_code == 201
    manage, _ = await paths(api, "c-de")
    browser = {"accept-language": "fa-IR, en;q=0.5"}
    page = await api.client.get(manage, headers=browser)
    assert 'lang="fa"' in page.text
    r = await submit(api, manage, replace_fields(page_form(page.text), channel="email"), browser)
    assert r.status_code == 303, r.text
    saved = await events(api, "c-de")
    assert saved and all(e["notice_sha256"] == notice["sha256"]["fa"] for e in saved)


async def test_the_registered_page_notice_is_exactly_what_each_page_language_displays(api: Api) -> None:
    """COMPLIANCE item 15: the registered page notice is the displayed text, in every page language."""
    r = await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code == 201
    manage, _ = await paths(api, "c1")
    notice = page_notice(api.rt.settings)
    registered = (await get_notice(api, notice.version)).json()
    assert registered["texts"] == notice.texts and set(registered["texts"]) == set(LANGUAGES)
    controller = api.rt.settings.controller.name
    for lang in LANGUAGES:
        r = await api.client.put(
            "/v1/customers/c1", json={**PROFILE, "locale": lang}, headers=api.as_("marketing")
        )
        shown = _text_of(await open_page(api, manage))
        paragraphs = page_notice_paragraphs(Catalogue(lang), controller)
        assert registered["texts"][lang] == "\n\n".join(paragraphs)
        assert len(paragraphs) == len(PAGE_NOTICE_KEYS)
        for paragraph in paragraphs:
            assert paragraph in shown, (lang, paragraph)


async def test_a_new_controller_name_is_a_new_page_notice_version_not_a_conflict(
    api: Api, settings: Settings, rt: Runtime
) -> None:
    """COMPLIANCE item 15: editing the notice creates a new version; old events resolve to the old text."""
    first = page_notice(api.rt.settings)
    renamed = msgspec.structs.replace(settings, controller_name="Renamed Shop S.A.")
    second = page_notice(renamed)
    assert second.version != first.version and "Renamed Shop S.A." in second.texts["en"]
    # A restart with the new name registers the new version; the old one stays as it was.
    restarted = Runtime(
        settings=renamed, store=rt.store, pseudonyms=rt.pseudonyms, now=rt.now, policy=rt.policy
    )
    await api.rt.store.close()
    async with AsyncTestClient(app=create_app(restarted)) as client:
        for version, texts in ((first.version, first.texts), (second.version, second.texts)):
            r = await client.get(f"/v1/notices/{version}", headers=api.as_("auditor"))
            assert r.status_code == 200 and r.json()["texts"] == texts


def _text_of(page: str) -> str:
    """The page's text as a reader sees it: tags removed, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))
