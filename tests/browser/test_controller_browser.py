"""Who is speaking, as a reader sees it in Chromium (issue 16 item 5): the controller's name, address and
privacy notice link on the preference and unsubscribe pages, in a left-to-right and the right-to-left
language (COMPLIANCE items 15 and 27; the axe-core run in test_pages_browser.py covers these pages)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import CHAR_LEFTS, Server

LABELS = {
    "en": ("Data controller: Example Shop Ltd., 1 Example Street, 00-950 Warszawa, Poland", "Privacy notice"),
    "fa": (
        "مسئول پردازش داده‌ها: Example Shop Ltd.، 1 Example Street, 00-950 Warszawa, Poland",
        "سیاست حریم خصوصی",
    ),
}


@pytest.mark.parametrize("lang", ["en", "fa"])
def test_compliance_15_the_reader_sees_who_is_speaking(server: Server, page: Any, lang: str) -> None:
    """COMPLIANCE item 15: the preference page and the unsubscribe page show the controller with its
    address and a visible privacy notice link; in Persian the Latin name and address keep their own
    left-to-right order inside the right-to-left sentence."""
    manage, unsubscribe = server.customer(f"browser-who-{lang}", lang, channel="email", topics=["promotions"])
    controller, privacy = LABELS[lang]
    for url in (manage, unsubscribe):
        page.goto(url)
        footer = page.locator(".site-footer .controller")
        assert footer.is_visible() and footer.inner_text().strip() == controller
        link = page.get_by_role("link", name=privacy)
        assert link.is_visible() and link.get_attribute("href") == "https://shop.example/privacy"
        assert "Example Shop Ltd." in page.title()
        for bdi in [*footer.locator("bdi").all(), page.locator(".site-name bdi")]:
            lefts = bdi.evaluate(CHAR_LEFTS)
            assert lefts == sorted(lefts), (url, bdi.inner_text(), lefts)  # "." after "Ltd", at the right
    assert page.get_by_text("Example Shop Ltd.", exact=False).first.is_visible()
