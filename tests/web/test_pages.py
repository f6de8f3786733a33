"""The customer pages through the real app on a real SQLite file (API.md "Customer pages").

Every test cites the COMPLIANCE.md item it checks.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec
import pytest
import structlog

from prefcenter.domain.model import Topic
from prefcenter.services import links, topics
from prefcenter.web.csrf import csrf_token
from prefcenter.web.i18n import LANGUAGES, Catalogue, catalogue_texts, choose_language, placeholders
from prefcenter.web.notice import page_notice
from prefcenter.web.views import mask_email, mask_phone
from tests.conftest import PROFILE, Api, prefs_body
from tests.web.conftest import Sink, free_port

ONE_CLICK = "List-Unsubscribe=One-Click"
FORM = {"content-type": "application/x-www-form-urlencoded"}
PAGE_HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-robots-tag": "noindex",
}
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# ---------------------------------------------------------------------------------------------------
# helpers


async def put_customer(api: Api, cid: str = "c1", **profile: Any) -> None:
    body = {**PROFILE, **profile}
    r = await api.client.put(f"/v1/customers/{cid}", json=body, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text


async def put_prefs(api: Api, cid: str = "c1", **prefs: Any) -> None:
    r = await api.client.put(
        f"/v1/customers/{cid}/preferences", json=prefs_body(**prefs), headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text


async def get_prefs(api: Api, cid: str = "c1") -> dict[str, Any]:
    r = await api.client.get(f"/v1/customers/{cid}/preferences", headers=api.as_("auditor"))
    assert r.status_code == 200
    body: dict[str, Any] = r.json()
    return body


async def events(api: Api, cid: str = "c1") -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/consent-events?customer_id={cid}&limit=1000", headers=api.as_("auditor"))
    assert r.status_code == 200
    found: list[dict[str, Any]] = r.json()["events"]
    return found


async def paths(api: Api, cid: str = "c1", topic: str | None = None) -> tuple[str, str]:
    """(manage path, unsubscribe path) minted through the API."""
    body = {"topic": topic} if topic else {}
    r = await api.client.post(f"/v1/customers/{cid}/links", json=body, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    return urlsplit(r.json()["manage_url"]).path, urlsplit(r.json()["unsubscribe_url"]).path


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no csrf field on the page"
    return match.group(1)


async def open_page(api: Api, path: str) -> str:
    r = await api.client.get(path)
    assert r.status_code == 200, r.text
    return r.text


def checked(html: str, input_id: str) -> bool:
    match = re.search(rf'<input [^>]*id="{re.escape(input_id)}"[^>]*>', html)
    assert match, f"no input #{input_id}"
    return " checked" in match.group(0)


def value_of(html: str, input_id: str) -> str:
    match = re.search(rf'<input [^>]*id="{re.escape(input_id)}"[^>]*value="([^"]*)"', html)
    assert match, f"no input #{input_id}"
    return match.group(1)


def page_form(html: str) -> list[tuple[str, str]]:
    """The main form exactly as a browser would submit it untouched."""
    form = html.split('class="prefs">', 1)[1].split("</form>", 1)[0]
    fields: list[tuple[str, str]] = []
    for tag in re.findall(r"<input [^>]*>", form):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        assert name and kind
        if kind.group(1) in ("radio", "checkbox") and " checked" not in tag:
            continue
        fields.append((name.group(1), value.group(1) if value else ""))
    return fields


def replace_fields(fields: list[tuple[str, str]], **new: str | list[str]) -> list[tuple[str, str]]:
    out = [(k, v) for k, v in fields if k not in new]
    for k, v in new.items():
        out.extend((k, item) for item in (v if isinstance(v, list) else [v]))
    return out


async def submit(
    api: Api, path: str, fields: list[tuple[str, str]], headers: dict[str, str] | None = None
) -> Any:
    """POST the fields as a browser would (urlencoded, repeated names kept)."""
    return await api.client.post(
        path, content=urlencode(fields), headers={**FORM, **(headers or {})}, follow_redirects=False
    )


def change_shape(evts: list[dict[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(e["action"], e["subject"], e["value"]) for e in evts]


def assert_page_headers(r: Any) -> None:
    for name, value in PAGE_HEADERS.items():
        assert r.headers[name] == value, name
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src" not in csp and "default-src 'none'" in csp
    assert r.headers["content-type"].startswith("text/html")


def flipped(token: str, i: int) -> str:
    """The token with character i replaced by the next one of the base64url alphabet (the smallest
    change: for the last signature character it touches only the spare bits)."""
    alphabet = B64URL + "."
    c = token[i]
    replacement = alphabet[(alphabet.index(c) + 1) % len(alphabet)] if c in alphabet else "A"
    return token[:i] + replacement + token[i + 1 :]


# ---------------------------------------------------------------------------------------------------
# the preference page


async def test_fresh_page_ticks_nothing_and_untouched_submit_writes_nothing(api: Api) -> None:
    """COMPLIANCE C13: on a fresh page every marketing control is off; the untouched form creates zero
    consent events."""
    await put_customer(api)
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    assert checked(html, "channel-none")
    assert not any(checked(html, f"topic-{t}") for t in ("promotions", "product-news"))
    assert checked(html, "quiet-none")
    assert not re.search(r'type="checkbox"[^>]* checked', html)
    r = await submit(api, manage, page_form(html))
    assert r.status_code == 303 and r.headers["location"].endswith("?result=unchanged")
    assert await events(api) == []


async def test_page_shows_current_preferences_and_untouched_submit_changes_nothing(api: Api) -> None:
    """COMPLIANCE C13/C16: the page shows exactly what is stored (pause in the customer's own zone) and
    re-submitting it untouched writes no event, even for a pause that is not at local midnight."""
    await put_customer(api)
    await put_prefs(
        api,
        channel="sms",
        topics=["promotions"],
        quiet_hours={"start": "22:30", "end": "07:15"},
        max_per_week=4,
        paused_until="2026-12-24T15:45:00Z",
    )
    before = await events(api)
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    assert checked(html, "channel-sms") and not checked(html, "channel-none")
    assert checked(html, "topic-promotions") and not checked(html, "topic-product-news")
    assert checked(html, "quiet-on")
    assert value_of(html, "quiet-start") == "22:30" and value_of(html, "quiet-end") == "07:15"
    assert value_of(html, "max-per-week") == "4"
    assert value_of(html, "paused-until") == "2026-12-24"  # 16:45 in Warsaw
    # Contacts shown partly masked, never in full.
    assert "o**@example.pl" in html and "+48 *** *** 200" in html
    assert "ola@example.pl" not in html and "+48600100200" not in html
    # Transactional topics are shown as always-on service messages, not as consent boxes.
    assert "Order updates" in html and 'id="topic-order-updates"' not in html
    r = await submit(api, manage, page_form(html))
    assert r.status_code == 303 and r.headers["location"].endswith("?result=unchanged")
    assert await events(api) == before
    saved = await open_page(api, r.headers["location"])
    assert 'role="status"' in saved and "Nic się nie zmieniło" in saved  # the customer's locale is pl


async def test_saving_changes_state_and_ledger_exactly_as_a_put(api: Api) -> None:
    """COMPLIANCE C14/C16: a page save writes the same events (action, subject, value) as a PUT with the
    same values on a twin customer, attributed to the page: source preference_page, actor customer, the
    page's notice version, the user agent and a keyed hash of the IP (never the IP)."""
    for cid in ("page", "twin"):
        await put_customer(api, cid)
        await put_prefs(api, cid, channel="email", topics=["promotions"], quiet_hours=None, max_per_week=None)
    steps: list[dict[str, Any]] = [
        {
            "channel": "sms",
            "topics": ["product-news"],
            "quiet_hours": {"start": "21:00", "end": "08:00"},
            "max_per_week": 3,
            "paused_until": "2026-12-01",
        },
        {"channel": None, "topics": ["product-news", "promotions"], "quiet_hours": None, "max_per_week": 50},
    ]
    manage, _ = await paths(api, "page")
    for step in steps:
        baseline = {cid: len(await events(api, cid)) for cid in ("page", "twin")}
        html = await open_page(api, manage)
        new: dict[str, str | list[str]] = {
            "channel": step["channel"] or "none",
            "topics": step["topics"],
            "quiet": "on" if step["quiet_hours"] else "none",
            "quiet_start": step["quiet_hours"]["start"] if step["quiet_hours"] else "",
            "quiet_end": step["quiet_hours"]["end"] if step["quiet_hours"] else "",
            "max_per_week": str(step["max_per_week"] or ""),
        }
        if "paused_until" in step:
            new["paused_until"] = step["paused_until"]
        r = await submit(
            api, manage, replace_fields(page_form(html), **new), {"user-agent": "Mozilla/5.0 (test) Pages/1"}
        )
        assert r.status_code == 303 and r.headers["location"].endswith("?result=saved"), r.text
        put = {k: v for k, v in step.items() if k != "paused_until"}
        if "paused_until" in step:
            put["paused_until"] = "2026-11-30T23:00:00Z"  # 2026-12-01 00:00 in Europe/Warsaw
        else:
            put["paused_until"] = (await get_prefs(api, "twin"))["paused_until"]
        await put_prefs(api, "twin", **put)
        page_events = (await events(api, "page"))[baseline["page"] :]
        twin_events = (await events(api, "twin"))[baseline["twin"] :]
        assert page_events and change_shape(page_events) == change_shape(twin_events)
        assert await get_prefs(api, "page") == await get_prefs(api, "twin")
        for e in page_events:
            assert (e["source"], e["actor"], e["notice_version"]) == (
                "preference_page",
                "customer",
                page_notice(api.rt.settings).version,  # "pages-v1-" and the hash of its texts
            )
            assert e["evidence"]["user_agent"] == "Mozilla/5.0 (test) Pages/1"
            assert e["evidence"]["ip_ref"] == api.rt.pseudonyms.ip_ref("testclient")
            assert "testclient" not in str(e)
    verify = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert verify.json()["ok"] is True


async def test_stop_all_marketing_is_one_click(api: Api) -> None:
    """COMPLIANCE C17: withdrawal as easy as giving: one button on the page stops all marketing (no
    channel, no topics); quiet hours, cap and pause are kept."""
    await put_customer(api)
    await put_prefs(api, channel="email", topics=["promotions", "product-news"], max_per_week=2)
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    assert "prefs.withdraw" not in html and "at any time" not in html  # pl page: the text is translated
    r = await submit(api, manage, [("csrf", csrf_of(html)), ("action", "stop_all")])
    assert r.status_code == 303 and r.headers["location"].endswith("?result=stopped")
    prefs = await get_prefs(api)
    assert prefs["channel"] is None and prefs["topics"] == []
    assert prefs["max_per_week"] == 2 and prefs["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    new = [e for e in await events(api) if e["source"] == "preference_page"]
    ref = api.rt.pseudonyms.address_ref("email", "ola@example.pl")  # PROFILE's
    assert change_shape(new) == [
        ("withdraw", "channel:email", None),
        ("withdraw", "topic:product-news", None),
        ("withdraw", "topic:promotions", None),
        # the address too (COMPLIANCE item 27, edge 13; tests/api/test_address_optouts.py)
        ("update", "suppression:email", {"suppressed": True, "address_ref": ref, "reason": "unsubscribe", "scope": "marketing"}),
    ]
    page = await open_page(api, r.headers["location"])
    assert 'role="status"' in page


async def test_english_page_says_consent_can_be_withdrawn_any_time(api: Api) -> None:
    """COMPLIANCE C17: the consent text says withdrawal is possible at any time."""
    await put_customer(api, locale="en")
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    assert "withdraw your consent at any time" in html


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"quiet": "on", "quiet_start": "21:00", "quiet_end": "21:00"}, "quiet", "different times"),
        ({"quiet": "on", "quiet_start": "21:00", "quiet_end": ""}, "quiet", "Enter both times"),
        ({"quiet": "on", "quiet_start": "25:00", "quiet_end": "07:00"}, "quiet", "such as 21:00"),
        ({"quiet": "none", "quiet_start": "22:00", "quiet_end": "06:00"}, "quiet", "No quiet hours"),
        ({"max_per_week": "51"}, "max-per-week", "from 1 to 50"),
        ({"max_per_week": "two"}, "max-per-week", "from 1 to 50"),
        ({"paused_until": "2026-11-22"}, "paused-until", "after today"),
        ({"paused_until": "22/12/2026"}, "paused-until", "such as 2026-12-24"),
        ({"channel": "pigeon"}, "channel", "Choose one of the channels"),
        ({"topics": ["order-updates"]}, "topics", "no longer offered"),
        ({"topics": ["nope"]}, "topics", "no longer offered"),
    ],
)
async def test_errors_are_shown_next_to_the_field_and_nothing_changes(
    api: Api, change: dict[str, Any], field: str, message: str
) -> None:
    """COMPLIANCE H35 (3.3.1/3.3.3: errors named with a fix, next to the field) and C13 (no partial
    write): a bad form is shown again (400) with a role=alert summary and the error tied to its field."""
    await put_customer(api, locale="en")
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    r = await submit(api, manage, replace_fields(page_form(html), **{"channel": "email", **change}))
    assert r.status_code == 400
    assert_page_headers(r)
    page = r.text
    assert 'role="alert"' in page and message in page
    assert f'id="{field}-error"' in page
    assert re.search(rf'aria-describedby="[^"]*{field}-error', page)
    assert 'href="#' in page  # the summary links to the field
    if field != "channel":
        assert checked(page, "channel-email")  # what was typed is kept
    assert await events(api) == []
    assert (await get_prefs(api))["channel"] is None


async def test_persian_digits_and_the_customers_timezone(api: Api) -> None:
    """COMPLIANCE C16 (the user's zone): a pause date is 00:00 of that date in the customer's own time
    zone; digits typed in Persian script are understood."""
    await put_customer(api, locale="fa", timezone="Asia/Tehran")
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    r = await submit(
        api, manage, replace_fields(page_form(html), max_per_week="۳", paused_until="2026-12-01")
    )
    assert r.status_code == 303
    prefs = await get_prefs(api)
    assert prefs["max_per_week"] == 3
    assert prefs["paused_until"] == "2026-11-30T20:30:00Z"  # Tehran is +03:30


# ---------------------------------------------------------------------------------------------------
# CSRF


async def test_csrf_is_required_on_page_forms(api: Api) -> None:
    """Page forms carry CSRF protection (API.md): no cookie, a wrong field, or a field made for another
    link is refused with 403 and changes nothing."""
    await put_customer(api)
    await put_customer(api, "c2")
    manage, _ = await paths(api)
    other, _ = await paths(api, "c2")
    html = await open_page(api, manage)
    fields = replace_fields(page_form(html), channel="email")
    # 1. no cookie (another site's form posting into the page cannot make the browser's cookie match)
    saved_cookies = dict(api.client.cookies)
    api.client.cookies.clear()
    r = await submit(api, manage, fields)
    assert r.status_code == 403
    assert_page_headers(r)
    assert "Reload the page" in r.text or "Odśwież stronę" in r.text
    api.client.cookies.update(saved_cookies)
    # 2. a wrong field, 3. no field
    r = await submit(api, manage, replace_fields(fields, csrf="A" * 43))
    assert r.status_code == 403
    r = await submit(api, manage, [(k, v) for k, v in fields if k != "csrf"])
    assert r.status_code == 403
    # 4. the field of another customer's page
    other_csrf = csrf_of(await open_page(api, other))
    r = await submit(api, manage, replace_fields(fields, csrf=other_csrf))
    assert r.status_code == 403
    # stop-all is protected too
    r = await submit(api, manage, [("action", "stop_all")])
    assert r.status_code == 403
    assert await events(api) == []
    # and the right one works
    r = await submit(api, manage, fields)
    assert r.status_code == 303
    assert (await get_prefs(api))["channel"] == "email"


# ---------------------------------------------------------------------------------------------------
# one-click unsubscribe


async def test_get_never_changes_anything(api: Api) -> None:
    """COMPLIANCE A7 and edge 10 (scanners): GETs of both pages, however many, leave state and ledger
    as they were; the unsubscribe page shows a confirm button."""
    await put_customer(api)
    await put_prefs(api)
    manage, unsubscribe = await paths(api, topic="promotions")
    _, unsubscribe_all = await paths(api)
    before = (await get_prefs(api), await events(api))
    for path in (manage, unsubscribe, unsubscribe_all) * 3:
        r = await api.client.get(path)
        assert r.status_code == 200
        assert_page_headers(r)
    page = (await api.client.get(unsubscribe)).text
    assert 'name="List-Unsubscribe" value="One-Click"' in page and 'method="post"' in page
    assert "Oferty" in page  # the topic's name in the customer's language (pl)
    assert (await get_prefs(api), await events(api)) == before


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
async def test_one_click_works_without_cookies_in_both_encodings(api: Api, encoding: str) -> None:
    """COMPLIANCE A5/A6: the POST works with no cookie and no Authorization, urlencoded (Gmail) and
    multipart (the SHOULD); 200, no redirect, no Location; a repeat is 200 and writes nothing new."""
    await put_customer(api)
    await put_prefs(api, channel="email", topics=["promotions", "product-news"])
    _, unsubscribe = await paths(api)
    api.client.cookies.clear()
    for _attempt in range(2):
        if encoding == "urlencoded":
            r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM, follow_redirects=False)
        else:
            r = await api.client.post(
                unsubscribe, files={"List-Unsubscribe": (None, "One-Click")}, follow_redirects=False
            )
        assert "cookie" not in r.request.headers and "authorization" not in r.request.headers
        assert r.status_code == 200 and "location" not in r.headers
        assert_page_headers(r)
        assert 'href="/p/' in r.text  # a fresh link to the preference page
        prefs = await get_prefs(api)
        assert prefs["channel"] is None and prefs["topics"] == []
        one_click = [e for e in await events(api) if e["source"] == "one_click_unsubscribe"]
        assert len(one_click) == 4  # written by the first POST only (3 withdrawals, the address's suppression)
        version = page_notice(api.rt.settings).version
        own = [e for e in one_click if not e["subject"].startswith("suppression:")]  # the address's: system
        assert len(own) == 3 and all(e["actor"] == "customer" and e["notice_version"] == version for e in own)
        assert one_click[0]["evidence"]["scope"] == "all"


async def test_the_confirmation_links_to_a_working_preference_page(api: Api) -> None:
    """COMPLIANCE A8: the page works without logging in; the confirmation offers the preference page."""
    await put_customer(api, locale="en")
    await put_prefs(api)
    _, unsubscribe = await paths(api, topic="promotions")
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert "You will get no more messages about “Offers”." in r.text
    manage = re.search(r'href="(/p/[^"]+)"', r.text)
    assert manage
    page = await api.client.get(manage.group(1))
    assert page.status_code == 200 and not checked(page.text, "topic-promotions")


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ("List-Unsubscribe=One-Click&extra=1", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=one-click", "application/x-www-form-urlencoded"),
        ("list-unsubscribe=One-Click", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=One-Click ", "application/x-www-form-urlencoded"),
        ("", "application/x-www-form-urlencoded"),
        ("List-Unsubscribe=One-Click", "text/plain"),
        ('{"List-Unsubscribe": "One-Click"}', "application/json"),
        ("List-Unsubscribe=One-Click", None),
        ("List-Unsubscribe=One-Click", "multipart/form-data"),  # no boundary: unparseable
        ("--x\r\nnot a part\r\n--x--\r\n", "multipart/form-data; boundary=x"),
    ],
)
async def test_a_post_with_any_other_body_is_400_and_changes_nothing(
    api: Api, content: str, content_type: str | None
) -> None:
    """COMPLIANCE A7: a POST whose body isn't exactly List-Unsubscribe=One-Click is rejected."""
    await put_customer(api)
    await put_prefs(api)
    _, unsubscribe = await paths(api)
    before = await events(api)
    headers = {"content-type": content_type} if content_type else {}
    r = await api.client.post(unsubscribe, content=content, headers=headers)
    assert r.status_code == 400
    assert_page_headers(r)  # an HTML page, not problem+json
    assert await events(api) == before


@pytest.mark.parametrize(
    "files",
    [
        {"List-Unsubscribe": (None, "One-Click"), "other": (None, "x")},
        {"List-Unsubscribe": (None, "Yes")},
        {"List-Unsubscribe": ("file.txt", b"One-Click", "text/plain")},
    ],
)
async def test_multipart_with_anything_else_is_400(api: Api, files: dict[str, Any]) -> None:
    """COMPLIANCE A7, multipart/form-data: exactly the one field, with exactly that value."""
    await put_customer(api)
    await put_prefs(api)
    _, unsubscribe = await paths(api)
    before = await events(api)
    r = await api.client.post(unsubscribe, files=files)
    assert r.status_code == 400
    assert await events(api) == before


async def test_an_oversized_form_is_refused_with_a_page(api: Api) -> None:
    """A bad request to the pages is a 4xx HTML page and changes nothing (API.md)."""
    await put_customer(api)
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    r = await submit(api, manage, [*page_form(html), ("padding", "x" * 100_000)])
    assert r.status_code == 413
    assert_page_headers(r)
    assert await events(api) == []


async def test_topic_scoped_link_removes_only_that_topic(api: Api) -> None:
    """COMPLIANCE A4: a valid token unsubscribes exactly that customer from exactly that list."""
    await put_customer(api)
    await put_customer(api, "c2", contacts={"email": "someone.else@example.pl"})  # the same address: edge 13
    for cid in ("c1", "c2"):
        await put_prefs(api, cid, channel="email", topics=["promotions", "product-news"])
    _, unsubscribe = await paths(api, topic="promotions")
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200
    prefs = await get_prefs(api)
    assert prefs["channel"] == "email" and prefs["topics"] == ["product-news"]
    assert (await get_prefs(api, "c2"))["topics"] == ["product-news", "promotions"]
    last = (await events(api))[-1]
    assert (last["action"], last["subject"], last["source"]) == (
        "withdraw",
        "topic:promotions",
        "one_click_unsubscribe",
    )
    assert last["evidence"]["scope"] == "topic:promotions"


async def test_old_link_replayed_after_resubscribe_unsubscribes_again(api: Api) -> None:
    """COMPLIANCE edge 9 (rule: latest action wins) and A5: an unsubscribe link minted before the
    customer opted in again still unsubscribes, and is recorded each time it changes something."""
    await put_customer(api)
    await put_prefs(api, channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api)
    with structlog.testing.capture_logs() as logs:
        assert (await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)).status_code == 200
        api.rt.now.advance(days=3)  # type: ignore[attr-defined]
        await put_prefs(api, channel="email", topics=["promotions"])  # opted in again
        assert (await get_prefs(api))["channel"] == "email"
        assert (await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)).status_code == 200
    prefs = await get_prefs(api)
    assert prefs["channel"] is None and prefs["topics"] == []
    one_click = [e for e in await events(api) if e["source"] == "one_click_unsubscribe"]
    assert len(one_click) == 6  # two withdrawals and the address's suppression, twice
    replays = [e for e in logs if e["event"] == "one-click unsubscribe"]
    assert [e["link_older_than_last_change"] for e in replays] == [False, True]


# ---------------------------------------------------------------------------------------------------
# bad, tampered, foreign and expired links


async def test_every_byte_flip_of_a_token_is_rejected_through_the_app(api: Api) -> None:
    """COMPLIANCE A4: a tampered token changes nothing, at every position (the signature's spare bits
    included), on the one-click POST and on the preference page."""
    await put_customer(api, locale="en")
    await put_prefs(api)
    manage, unsubscribe = await paths(api)
    before = await events(api)
    for path in (unsubscribe, manage):
        prefix, token = path.rsplit("/", 1)
        for i in range(len(token)):
            bad = f"{prefix}/{flipped(token, i)}"
            if prefix == "/u":
                r = await api.client.post(bad, content=ONE_CLICK, headers=FORM)
            else:
                r = await api.client.get(bad)
            assert r.status_code == 400, (path, i)
    assert await events(api) == before
    r = await api.client.get(f"/p/{flipped(manage.rsplit('/', 1)[1], 5)}")
    assert_page_headers(r)
    assert "This link does not work" in r.text and "latest message" in r.text  # what to do


async def test_foreign_and_wrong_purpose_tokens_are_rejected(api: Api) -> None:
    """COMPLIANCE A4: a token signed with another key, or minted for the other page, changes nothing."""
    await put_customer(api)
    await put_prefs(api)
    manage, unsubscribe = await paths(api)
    foreign_rt = msgspec.structs.replace(api.rt.settings, link_keys=("another-deployment-key-000",))
    other = links.mint_token(
        type(api.rt)(settings=foreign_rt, store=api.rt.store, pseudonyms=api.rt.pseudonyms, now=api.rt.now),
        api.rt.pseudonyms.customer_ref("c1"),
        "unsubscribe",
    )
    before = await events(api)
    assert (await api.client.post(f"/u/{other}", content=ONE_CLICK, headers=FORM)).status_code == 400
    manage_token = manage.rsplit("/", 1)[1]
    assert (await api.client.post(f"/u/{manage_token}", content=ONE_CLICK, headers=FORM)).status_code == 400
    assert (await api.client.get(f"/p/{unsubscribe.rsplit('/', 1)[1]}")).status_code == 400
    assert (await api.client.get("/p/not-a-token")).status_code == 400
    assert (await api.client.get("/u/" + "A" * 2000)).status_code == 400
    assert await events(api) == before


async def test_link_of_an_erased_customer_is_404_with_advice(api: Api) -> None:
    """A bad token: a 4xx page that says what to do, no change (API.md)."""
    await put_customer(api, locale="en")
    manage, unsubscribe = await paths(api)
    r = await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))
    assert r.status_code == 204
    for path in (manage, unsubscribe):
        r = await api.client.get(path)
        assert r.status_code == 404
        assert_page_headers(r)
        assert "no longer works" in r.text.lower() or "nie działa" in r.text
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 404


async def test_expiry_with_the_clock(api: Api) -> None:
    """COMPLIANCE C27/F27/F28: manage links work 30 days; unsubscribe links still work after 31 and 60
    days (400 in all); an expired manage link changes nothing and offers a fresh link."""
    await put_customer(api, locale="en")
    await put_prefs(api, channel="email", topics=["promotions"])
    manage, unsubscribe = await paths(api)
    api.rt.now.advance(days=30, seconds=-1)  # type: ignore[attr-defined]
    assert (await api.client.get(manage)).status_code == 200
    api.rt.now.advance(seconds=1)  # type: ignore[attr-defined]
    r = await api.client.get(manage)
    assert r.status_code == 410
    assert_page_headers(r)
    assert "has expired" in r.text and "Email me a fresh link" in r.text and "/renew" in r.text
    r = await submit(api, manage, [("csrf", "x"), ("channel", "sms")])
    assert r.status_code == 410
    assert (await get_prefs(api))["channel"] == "email"
    api.rt.now.advance(days=31)  # type: ignore[attr-defined]  # 61 days: the unsubscribe link still works
    assert (await api.client.get(unsubscribe)).status_code == 200
    api.rt.now.advance(days=400 - 61, seconds=-1)  # type: ignore[attr-defined]
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 200 and (await get_prefs(api))["channel"] is None
    api.rt.now.advance(seconds=1)  # type: ignore[attr-defined]
    r = await api.client.get(unsubscribe)
    assert r.status_code == 410 and "too old" in r.text


# ---------------------------------------------------------------------------------------------------
# the fresh-link email (a real SMTP server on loopback)


async def test_expired_manage_link_emails_a_fresh_one(mail_api: Api, smtp_sink: Sink) -> None:
    """API.md: an expired manage link whose signature is valid offers one button (POST, CSRF) that sends
    a fresh link to the customer's address on file, and nothing else (edge 14: GET does not send)."""
    api = mail_api
    await put_customer(api, locale="en")
    manage, _ = await paths(api)
    api.rt.now.advance(days=45)  # type: ignore[attr-defined]
    r = await api.client.get(manage)
    assert r.status_code == 410 and smtp_sink.messages == []
    renew = f"{manage}/renew"
    assert (await submit(api, renew, [("csrf", "forged")])).status_code == 403
    assert smtp_sink.messages == []
    r = await submit(api, renew, [("csrf", csrf_of(r.text))])
    assert r.status_code == 200
    assert_page_headers(r)
    assert "We have sent a fresh link to o**@example.pl" in r.text
    await asyncio.sleep(0)
    assert len(smtp_sink.messages) == 1
    mail_from, rcpt_tos, msg = smtp_sink.messages[0]
    assert rcpt_tos == ["ola@example.pl"] and mail_from == "prefs@shop.example"
    assert msg["Subject"] == "Your link to your message preferences"
    body = msg.get_content()
    fresh = re.search(r"http://127\.0\.0\.1:8000(/p/\S+)", body)
    assert fresh and fresh.group(1) != manage
    assert (await api.client.get(fresh.group(1))).status_code == 200
    # Asking again at once is throttled; nothing more is sent.
    r = await submit(api, renew, [("csrf", csrf_of((await api.client.get(manage)).text))])
    assert r.status_code == 429 and len(smtp_sink.messages) == 1
    assert await events(api) == []


async def test_expired_unsubscribe_link_offers_a_fresh_manage_link(mail_api: Api, smtp_sink: Sink) -> None:
    """API.md (unsubscribe links work at least 60 days; 400 here): past that, the page offers the same
    button, which emails a link to the preference page; the old link still changes nothing."""
    api = mail_api
    await put_customer(api, locale="en")
    await put_prefs(api, channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api)
    api.rt.now.advance(days=401)  # type: ignore[attr-defined]
    r = await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
    assert r.status_code == 410 and (await get_prefs(api))["channel"] == "email"
    page = await api.client.get(unsubscribe)
    assert page.status_code == 410 and f'action="{unsubscribe}/renew"' in page.text
    r = await submit(api, f"{unsubscribe}/renew", [("csrf", csrf_of(page.text))])
    assert r.status_code == 200 and len(smtp_sink.messages) == 1
    fresh = re.search(r"http://127\.0\.0\.1:8000(/p/\S+)", smtp_sink.messages[0][2].get_content())
    assert fresh and (await api.client.get(fresh.group(1))).status_code == 200


async def test_expired_link_without_an_email_address_says_so(mail_api: Api, smtp_sink: Sink) -> None:
    """API.md: the fresh link goes only to the address on file; with none, the page says so."""
    api = mail_api
    await put_customer(api, locale="en", contacts={"sms": "+48600100200"})
    manage, _ = await paths(api)
    api.rt.now.advance(days=31)  # type: ignore[attr-defined]
    r = await api.client.get(manage)
    assert r.status_code == 410 and "We have no email address for you" in r.text and "/renew" not in r.text
    secret = api.client.cookies.get("prefcenter_csrf") or "x" * 43
    api.client.cookies.set("prefcenter_csrf", secret)
    token = manage.rsplit("/", 1)[1]
    r = await submit(api, f"{manage}/renew", [("csrf", csrf_token(api.rt, secret, token))])
    assert r.status_code == 200 and "We have no email address for you" in r.text
    assert smtp_sink.messages == []


async def test_fresh_link_when_the_mail_server_is_down(api: Api) -> None:
    """API.md (the expired-link button): a temporary SMTP failure: a clear page (503), nothing changes, the customer may try again."""
    api.rt.settings = msgspec.structs.replace(api.rt.settings, smtp_port=free_port())
    await put_customer(api, locale="en")
    manage, _ = await paths(api)
    api.rt.now.advance(days=31)  # type: ignore[attr-defined]
    html = (await api.client.get(manage)).text
    r = await submit(api, f"{manage}/renew", [("csrf", csrf_of(html))])
    assert r.status_code == 503 and "could not be sent" in r.text


# ---------------------------------------------------------------------------------------------------
# languages


@pytest.mark.parametrize("lang", LANGUAGES)
async def test_each_language_renders(api: Api, lang: str) -> None:
    """COMPLIANCE H34 (html-lang, valid-lang; dir="rtl" for fa): every page in every language."""
    await put_customer(api, locale=lang)
    await put_prefs(api)
    manage, unsubscribe = await paths(api, topic="promotions")
    t = Catalogue(lang)
    direction = "rtl" if lang == "fa" else "ltr"
    pages = [await api.client.get(manage), await api.client.get(unsubscribe)]
    pages.append(await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM))
    for r in pages:
        assert r.status_code == 200
        assert f'<html lang="{lang}" dir="{direction}">' in r.text
    assert t("prefs.title") in pages[0].text and t("stop.button") in pages[0].text
    assert t("unsub.button") in pages[1].text
    assert t("done.title") in pages[2].text


async def test_language_falls_back_to_accept_language_then_english(api: Api) -> None:
    """API.md: the customer's locale, else Accept-Language, else English; error pages use the header."""
    await put_customer(api, locale="de-AT")
    manage, _ = await paths(api)
    r = await api.client.get(manage, headers={"accept-language": "de;q=1, el-GR;q=0.8, en;q=0.5"})
    assert '<html lang="el" dir="ltr">' in r.text
    r = await api.client.get(manage, headers={"accept-language": "de, fr"})
    assert '<html lang="en" dir="ltr">' in r.text
    r = await api.client.get("/p/bogus", headers={"accept-language": "fa-IR,fa;q=0.9"})
    assert r.status_code == 400 and '<html lang="fa" dir="rtl">' in r.text
    await put_customer(api, "c2", locale="ro-RO")
    manage2, _ = await paths(api, "c2")
    r = await api.client.get(manage2, headers={"accept-language": "pl"})
    assert '<html lang="ro" dir="ltr">' in r.text


def test_every_key_exists_in_every_language() -> None:
    """COMPLIANCE H34 (every locale): each catalogue has every key of en.toml, nothing more, non-empty,
    with the same {placeholders}."""
    reference = catalogue_texts("en")
    for lang in LANGUAGES:
        texts = catalogue_texts(lang)
        assert set(texts) == set(reference), lang
        for key, text in texts.items():
            assert text.strip(), (lang, key)
            assert placeholders(text) == placeholders(reference[key]), (lang, key)
    assert "\u200c" in catalogue_texts("fa")["prefs.title"]  # Persian spelled properly (ZWNJ)


def test_choose_language() -> None:
    """API.md / COMPLIANCE H34 (3.1.1): the customer's locale, else Accept-Language by q, else English."""
    assert choose_language("pl-PL", "en") == "pl"
    assert choose_language("fa_IR", None) == "fa"
    assert choose_language("xx", "ro;q=0.2, el;q=0.9") == "el"
    assert choose_language(None, "*;q=0.5, de") == "en"
    assert choose_language(None, "el;q=0, ro") == "ro"
    assert choose_language(None, "garbage;;;,") == "en"


# ---------------------------------------------------------------------------------------------------
# details


async def test_topic_names_are_escaped_and_localised(api: Api) -> None:
    """COMPLIANCE H34 (valid-lang, 3.1.2) and edge 21 (RTL notice text): autoescape on: a topic name can never inject markup; names fall back to English, marked lang."""
    await topics.put_topic(
        api.rt, "weird", Topic(category="marketing", names={"en": "<script>alert(1)</script> & more"})
    )
    await put_customer(api, locale="el")
    manage, _ = await paths(api)
    html = await open_page(api, manage)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in html
    assert '<bdi lang="en">Offers</bdi>' in html


def test_masking() -> None:
    """Contacts are shown partly masked on the page (API.md; the brief's examples)."""
    assert mask_email("ola@example.pl") == "o**@example.pl"
    assert mask_email("a@b.c") == "a**@b.c"
    assert mask_phone("+48600100200") == "+48 *** *** 200"
    assert mask_phone("+14155550123") == "+1 *** *** 123"


async def test_static_stylesheet_is_served(api: Api) -> None:
    """COMPLIANCE H35 (2.4.7): the one stylesheet is served, with visible focus styles."""
    r = await api.client.get("/static/pages.css")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/css")
    assert "focus-visible" in r.text


async def test_logs_never_contain_tokens_or_customer_ids(api: Api) -> None:
    """API.md (tokens carry no personal data; erasure leaves none): logs hold route templates and pseudonyms only: no token, no customer id (here an email)."""
    cid = "ola@example.pl"
    await put_customer(api, cid)
    await put_prefs(api, cid)
    manage, unsubscribe = await paths(api, cid)
    with structlog.testing.capture_logs() as logs:
        html = await open_page(api, manage)
        await submit(api, manage, replace_fields(page_form(html), channel="sms"))
        await api.client.get(unsubscribe)
        await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)
        await api.client.get(f"/p/{flipped(manage.rsplit('/', 1)[1], 3)}")
        await api.client.post(unsubscribe, content="nope", headers=FORM)
    text = repr(logs)
    assert logs
    for secret in (manage.rsplit("/", 1)[1], unsubscribe.rsplit("/", 1)[1], cid, "ola"):
        assert secret not in text
    assert any(e.get("route") == "/u/{token}" for e in logs)
