"""The customer pages in a real browser (Chromium via Playwright) against the app served by uvicorn.

COMPLIANCE H34 (axe-core, WCAG 2.2 AA tags, every locale incl. fa) and H35 (reflow at 320 px, visible
focus, Saved via role=status, dir="rtl"), A5/A7 (the unsubscribe button), C13 (nothing pre-ticked).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import AXE, CHAR_LEFTS, SHOTS, Server

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def axe_violations(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = page.evaluate(
        "async (tags) => await axe.run(document, {runOnly: {type: 'tag', values: tags}})", AXE_TAGS
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
    ]


def test_customer_changes_channel_topics_and_quiet_hours_then_sees_them(server: Server, page: Any) -> None:
    """C13 and H35 (4.1.3): nothing is pre-ticked; a customer changes channel, topics and quiet hours,
    saves, sees "saved" announced (role=status), reloads, and sees the new choices."""
    manage, _ = server.customer("browser-save", "en")
    page.goto(manage)
    assert page.get_by_label("No marketing messages").is_checked()
    assert not page.get_by_label("Offers").is_checked()
    page.get_by_label("Text message (SMS)").check()
    page.get_by_label("Offers").check()
    page.get_by_label("Quiet hours at these times:").check()
    page.get_by_label("From", exact=True).fill("22:00")
    page.get_by_label("Until", exact=True).fill("07:30")
    page.get_by_label("At most this many marketing messages a week").fill("2")
    page.get_by_role("button", name="Save my choices").click()
    page.wait_for_url("**?result=saved")
    assert page.get_by_role("status").inner_text().strip() == "Your choices are saved."
    page.reload()
    assert page.get_by_label("Text message (SMS)").is_checked()
    assert page.get_by_label("Offers").is_checked() and not page.get_by_label("Product news").is_checked()
    assert page.get_by_label("Quiet hours at these times:").is_checked()
    assert page.get_by_label("From", exact=True).input_value() == "22:00"
    assert page.get_by_label("Until", exact=True).input_value() == "07:30"
    assert server.preferences("browser-save") == {
        "channel": "sms",
        "topics": ["promotions"],
        "quiet_hours": {"start": "22:00", "end": "07:30"},
        "max_per_week": 2,
        "paused_until": None,
    }


def test_customer_unsubscribes_with_the_button(server: Server, page: Any) -> None:
    """A5/A7/C17: the unsubscribe page's one button unsubscribes (no redirect) and confirms, with a way
    back to the preference page; opening the page alone changed nothing."""
    _, unsubscribe = server.customer("browser-unsub", "en", channel="email", topics=["promotions"])
    page.goto(unsubscribe)
    assert server.preferences("browser-unsub")["channel"] == "email"  # the GET changed nothing
    page.get_by_role("button", name="Unsubscribe").click()
    page.get_by_role("heading", name="You are unsubscribed").wait_for()
    assert urlsplit(page.url).path == urlsplit(unsubscribe).path  # answered in place, no redirect
    prefs = server.preferences("browser-unsub")
    assert prefs["channel"] is None and prefs["topics"] == []
    page.get_by_role("link", name="Go to your preference page").click()
    assert page.get_by_label("No marketing messages").is_checked()


def test_validation_error_is_tied_to_its_field(server: Server, page: Any) -> None:
    """H35 (3.3.1/3.3.3): an error names the fix next to the field (aria-describedby, aria-invalid), and a
    summary with role=alert links to it."""
    manage, _ = server.customer("browser-error", "en")
    page.goto(manage)
    page.get_by_label("At most this many marketing messages a week").fill("99")
    page.get_by_role("button", name="Save my choices").click()
    alert = page.get_by_role("alert")
    assert "from 1 to 50" in alert.inner_text()
    field = page.get_by_label("At most this many marketing messages a week")
    assert field.get_attribute("aria-invalid") == "true"
    assert "max-per-week-error" in (field.get_attribute("aria-describedby") or "")
    alert.get_by_role("link").click()
    assert page.evaluate("document.activeElement.id") == "max-per-week"


BIDI = """(el) => ({text: el.innerText, direction: getComputedStyle(el).direction,
  right: el.getBoundingClientRect().right, parentRight: el.parentElement.getBoundingClientRect().right,
  parentDirection: getComputedStyle(el.parentElement).direction})"""


def test_persian_page_shows_contacts_left_to_right_and_english_fallbacks_at_the_right(
    server: Server, page: Any
) -> None:
    """Edge 21 (RTL): on the Persian page the masked phone reads ``+98 *** *** 567`` (not ``567 *** ***
    98+``), as do the time zone and the notice version; a topic text shown in its English fallback keeps
    its own left-to-right order (dir="auto") and still lines up at the right, with its checkbox."""
    import httpx

    topic = {
        "category": "marketing",
        "names": {"en": "Weekly digest (v2)!"},
        "descriptions": {"en": "Our 5 best offers, every Monday."},
    }
    profile = {
        "timezone": "Asia/Tehran",
        "locale": "fa",
        "country": "IR",
        "contacts": {"email": "reza@example.ir", "sms": "+989121234567"},
    }
    with httpx.Client(base_url=server.base, headers=server.headers, timeout=10) as client:
        assert client.put("/v1/topics/digest", json=topic).status_code == 201
        try:
            assert client.put("/v1/customers/browser-fa-bidi", json=profile).status_code == 201
            manage = client.post("/v1/customers/browser-fa-bidi/links", json={}).json()["manage_url"]
            page.goto(manage)
            assert page.evaluate("document.documentElement.dir") == "rtl"

            phone = page.locator("#channel-sms + label .address bdi")
            facts = phone.evaluate(BIDI)
            assert facts["text"] == "+98 *** *** 567" and facts["direction"] == "ltr", facts
            lefts = phone.evaluate(CHAR_LEFTS)
            assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts), lefts  # "+" leftmost, "7" last
            for hint in ("#quiet-hint bdi", "#paused-until-hint bdi", ".site-footer .notice-version bdi"):
                el = page.locator(hint)
                assert el.evaluate(BIDI)["direction"] == "ltr", hint
                lefts = el.evaluate(CHAR_LEFTS)
                assert lefts == sorted(lefts), (hint, lefts)
            assert page.locator("#quiet-hint bdi").inner_text() == "Asia/Tehran"

            for selector in ("label[for=topic-digest] bdi", "#topic-digest-description bdi"):
                el = page.locator(selector)
                facts = el.evaluate(BIDI)
                assert facts["direction"] == "ltr" and facts["parentDirection"] == "rtl", (selector, facts)
                assert abs(facts["right"] - facts["parentRight"]) < 2, (selector, facts)  # at the right
                lefts = el.evaluate(CHAR_LEFTS)
                assert lefts == sorted(lefts), (selector, lefts)  # "(v2)!" ends the line: LTR order
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("form.prefs").screenshot(path=str(SHOTS / "preferences-fa-bidi.png"))
        finally:
            assert client.delete("/v1/topics/digest").status_code == 204


def test_focus_is_visible(server: Server, page: Any) -> None:
    """H35 (2.4.7 Focus Visible, 2.1.1 Keyboard): tabbing reaches the controls and shows an outline."""
    manage, _ = server.customer("browser-focus", "en")
    page.goto(manage)
    for _ in range(10):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.name") == "channel":
            break
    assert page.evaluate("document.activeElement.name") == "channel"
    style = page.evaluate(
        "(() => { const s = getComputedStyle(document.activeElement); return [s.outlineStyle, s.outlineWidth]; })()"
    )
    assert style[0] != "none" and float(style[1].rstrip("px")) >= 2


@pytest.mark.parametrize("lang", ["en", "fa"])
def test_pages_reflow_at_320_px(server: Server, browser: Any, lang: str) -> None:
    """H35 (1.4.10 Reflow): at 320 CSS px there is no horizontal scrolling, LTR and RTL."""
    manage, unsubscribe = server.customer(
        f"browser-reflow-{lang}", lang, channel="email", topics=["promotions"]
    )
    context = browser.new_context(viewport={"width": 320, "height": 640})
    try:
        page = context.new_page()
        for url in (manage, unsubscribe, f"{server.base}/p/broken-link"):
            page.goto(url)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 320, (url, width)
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["en", "fa"])
def test_screenshots(server: Server, browser: Any, lang: str) -> None:
    """COMPLIANCE H35 (1.4.10 reflow, dir="rtl"): screenshots of the preference page at 375 px and 1280 px (looked at by a person; see README)."""
    manage, unsubscribe = server.customer(
        f"browser-shots-{lang}",
        lang,
        channel="email",
        topics=["promotions"],
        quiet_hours={"start": "21:00", "end": "08:00"},
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in (375, 1280):
        context = browser.new_context(viewport={"width": width, "height": 900})
        try:
            page = context.new_page()
            page.goto(manage)
            assert page.evaluate("document.documentElement.dir") == ("rtl" if lang == "fa" else "ltr")
            page.screenshot(path=str(SHOTS / f"preferences-{lang}-{width}.png"), full_page=True)
            if width == 375:
                page.goto(unsubscribe)
                page.screenshot(path=str(SHOTS / f"unsubscribe-{lang}-{width}.png"), full_page=True)
        finally:
            context.close()
    assert (SHOTS / f"preferences-{lang}-375.png").stat().st_size > 0


@pytest.mark.parametrize("lang", ["en", "fa"])
def test_axe_finds_no_violations(server: Server, browser: Any, lang: str) -> None:
    """H34: axe-core with wcag2a, wcag2aa, wcag21a, wcag21aa and wcag22aa finds zero violations on the
    preference page (also with errors shown), the unsubscribe page, its confirmation and the error page."""
    manage, unsubscribe = server.customer(f"browser-axe-{lang}", lang, channel="email", topics=["promotions"])
    # bypass_csp: the pages allow no script at all; only axe's injected script needs the exception.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, extra_http_headers={"Accept-Language": lang}
    )
    results: dict[str, list[dict[str, Any]]] = {}
    try:
        page = context.new_page()
        page.goto(manage)
        results["preferences"] = axe_violations(page)
        page.fill("#max-per-week", "99")
        page.locator("form.prefs button[type=submit]").click()
        page.wait_for_selector("[role=alert]")
        results["preferences-with-errors"] = axe_violations(page)
        page.goto(unsubscribe)
        results["unsubscribe"] = axe_violations(page)
        page.locator("form.unsubscribe button").click()
        page.wait_for_selector("h1")
        results["unsubscribed"] = axe_violations(page)
        page.goto(f"{server.base}/u/not-a-valid-token")
        assert page.evaluate("document.documentElement.lang") == lang
        results["error"] = axe_violations(page)
        # The check is not vacuous: a planted unlabelled field is reported.
        page.evaluate("document.body.insertAdjacentHTML('beforeend', '<input type=text id=planted>')")
        assert "label" in {v["id"] for v in axe_violations(page)}
    finally:
        context.close()
    SHOTS.mkdir(parents=True, exist_ok=True)
    (SHOTS / f"axe-{lang}.json").write_text(json.dumps({k: len(v) for k, v in results.items()}, indent=2))
    assert results == {name: [] for name in results}, json.dumps(results, indent=2, ensure_ascii=False)
