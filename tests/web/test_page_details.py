"""Customer-page details seen from outside: HEAD answers as GET without a body and changes nothing;
one charset; in right-to-left pages, contacts, numbers and identifiers are isolated left-to-right and
untranslated (English fallback) topic texts are isolated with ``dir="auto"``."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest

from prefcenter.domain.model import Topic
from prefcenter.services import topics
from prefcenter.web.notice import page_notice
from tests.conftest import PROFILE, Api, prefs_body

IRAN = {
    "timezone": "Asia/Tehran",
    "locale": "fa",
    "country": "IR",
    "contacts": {"email": "9reza@example.ir", "sms": "+989121234567", "voice": "+989121234567"},
}
VOLATILE = {"x-request-id", "set-cookie", "date"}


async def customer(api: Api, cid: str = "c1", profile: dict[str, Any] | None = None, **prefs: Any) -> None:
    r = await api.client.put(f"/v1/customers/{cid}", json=profile or PROFILE, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text
    r = await api.client.put(
        f"/v1/customers/{cid}/preferences", json=prefs_body(**prefs), headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text


async def paths(api: Api, cid: str = "c1", topic: str | None = None) -> tuple[str, str]:
    body = {"topic": topic} if topic else {}
    r = await api.client.post(f"/v1/customers/{cid}/links", json=body, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    return urlsplit(r.json()["manage_url"]).path, urlsplit(r.json()["unsubscribe_url"]).path


async def ledger(api: Api) -> list[dict[str, Any]]:
    r = await api.client.get("/v1/consent-events?limit=1000", headers=api.as_("auditor"))
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def asgi(
    api: Api, method: str, path: str, cookie: str | None = None
) -> tuple[int, dict[str, list[str]], bytes]:
    """One request straight through the ASGI app: (status, headers, every body byte the app sent)."""
    target, _, query = path.partition("?")
    headers = [(b"host", b"testserver"), (b"user-agent", b"test")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await api.client.app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    got: dict[str, list[str]] = {}
    for k, v in start["headers"]:
        got.setdefault(k.decode().lower(), []).append(v.decode())
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], got, body


def stable(headers: dict[str, list[str]]) -> dict[str, list[str]]:
    return {k: v for k, v in headers.items() if k not in VOLATILE}


# ---------------------------------------------------------------------------------------------------
# HEAD


@pytest.mark.parametrize("which", ["manage", "unsubscribe"])
async def test_head_answers_as_get_without_a_body(api: Api, which: str) -> None:
    await customer(api, channel="email", topics=["promotions"])
    manage, unsubscribe = await paths(api, topic="promotions")
    path = manage if which == "manage" else unsubscribe
    status, first, body = await asgi(api, "GET", path)
    assert status == 200 and body
    cookie = first["set-cookie"][0].split(";")[0]
    # With the browser's cookie both answers are fully determined: the same status and headers.
    get_status, get_headers, get_body = await asgi(api, "GET", path, cookie)
    head_status, head_headers, head_body = await asgi(api, "HEAD", path, cookie)
    assert (head_status, head_body) == (get_status, b"")
    assert stable(head_headers) == stable(get_headers)
    assert head_headers["content-length"] == [str(len(get_body))]
    assert head_headers["content-type"] == ["text/html; charset=utf-8"]
    # Without one, HEAD sets the cookie as GET does (same attributes).
    head_status, head_headers, head_body = await asgi(api, "HEAD", path)
    assert head_status == 200 and head_body == b""
    attributes = [part.strip() for part in head_headers["set-cookie"][0].split(";")[1:]]
    assert attributes == [part.strip() for part in first["set-cookie"][0].split(";")[1:]]
    # Through the test client too.
    r = await api.client.head(path)
    assert r.status_code == 200 and r.content == b"" and r.headers["cache-control"] == "no-store"


async def test_head_changes_nothing(api: Api) -> None:
    await customer(api, channel="email", topics=["promotions"])
    manage, unsubscribe = await paths(api)
    before_prefs = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("auditor"))).json()
    before = await ledger(api)
    for path in (manage, f"{manage}?result=saved", unsubscribe):
        for _ in range(2):
            r = await api.client.head(path)
            assert r.status_code == 200
    assert await ledger(api) == before
    after_prefs = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("auditor"))).json()
    assert after_prefs == before_prefs
    assert (await api.client.get(unsubscribe)).status_code == 200  # the link still works


async def test_head_of_a_bad_or_expired_link_has_the_get_status(api: Api) -> None:
    await customer(api)
    manage, _ = await paths(api)
    for path in ("/p/bogus", "/u/bogus", manage[:-3] + "AAA"):
        get_status, get_headers, _ = await asgi(api, "GET", path)
        head_status, head_headers, head_body = await asgi(api, "HEAD", path)
        assert head_status == get_status and 400 <= head_status < 500 and head_body == b"", path
        assert stable(head_headers) == stable(get_headers)
    api.rt.now.advance(days=31)  # type: ignore[attr-defined]
    get_status, _, _ = await asgi(api, "GET", manage)
    head_status, _, head_body = await asgi(api, "HEAD", manage)
    assert head_status == get_status == 410 and head_body == b""


async def test_post_only_routes_still_refuse_head(api: Api) -> None:
    await customer(api)
    manage, unsubscribe = await paths(api)
    assert (await api.client.head(f"{manage}/renew")).status_code == 405
    assert (await api.client.head(f"{unsubscribe}/renew")).status_code == 405


# ---------------------------------------------------------------------------------------------------
# right-to-left pages


def tag_with_text(html: str, text: str) -> str:
    """The opening tag of the innermost element whose text is exactly ``text``."""
    match = re.search(rf"<(\w+)([^>]*)>{re.escape(text)}</\1>", html)
    assert match, f"no element holding {text!r}"
    return match.group(0)


async def test_persian_page_isolates_contacts_numbers_and_ids_left_to_right(api: Api) -> None:
    await customer(api, profile=IRAN, channel="sms", topics=["promotions"], quiet_hours=None)
    manage, _ = await paths(api)
    r = await api.client.get(manage)
    assert r.status_code == 200 and '<html lang="fa" dir="rtl">' in r.text
    html = r.text
    assert html.count('<bdi dir="ltr">+98 *** *** 567</bdi>') == 2  # sms and voice
    assert '<bdi dir="ltr">9**@example.ir</bdi>' in html  # starts with a digit: would reorder in RTL
    assert html.count('<bdi dir="ltr">Asia/Tehran</bdi>') == 2  # the quiet-hours and pause hints
    assert f'<bdi dir="ltr">{page_notice(api.rt.settings).version}</bdi>' in html  # the footer's notice version
    assert r.headers["content-type"] == "text/html; charset=utf-8"


async def test_untranslated_topic_texts_are_isolated_with_dir_auto(api: Api) -> None:
    await topics.put_topic(
        api.rt,
        "digest",
        Topic(
            category="marketing",
            names={"en": "Weekly digest (v2.0)!", "fa": "خلاصهٔ هفتگی"},
            descriptions={"en": "Our 5 best offers, every Monday."},
        ),
    )
    await customer(api, profile=IRAN, channel="email", topics=["promotions"])
    manage, unsubscribe = await paths(api, topic="promotions")
    html = (await api.client.get(manage)).text
    # The name has a translation: no isolation needed, no lang; "Offers" has none: lang="en", isolated.
    assert '<label for="topic-digest">خلاصهٔ هفتگی</label>' in html
    offers = tag_with_text(html, "Offers")
    assert offers.startswith("<bdi") and 'lang="en"' in offers
    # The description is English in a Persian page: isolated, dir="auto", inside a paragraph that keeps
    # the page's direction (so it lines up with its checkbox, at the right).
    description = tag_with_text(html, "Our 5 best offers, every Monday.")
    assert description.startswith("<bdi") and 'dir="auto"' in description and 'lang="en"' in description
    paragraph = re.search(r'<p [^>]*id="topic-digest-description"[^>]*>', html)
    assert paragraph and "dir=" not in paragraph.group(0)
    # The service topic's English name, and the topic named in the unsubscribe page's sentences.
    assert tag_with_text(html, "Order updates").startswith("<bdi")
    unsub = (await api.client.get(unsubscribe)).text
    assert "«<bdi>Offers</bdi>»" in unsub
    from tests.web.test_pages import FORM, ONE_CLICK

    done = (await api.client.post(unsubscribe, content=ONE_CLICK, headers=FORM)).text
    assert "«<bdi>Offers</bdi>»" in done


async def test_left_to_right_pages_keep_their_sentences_plain(api: Api) -> None:
    """In an LTR page the topic needs no isolation: the sentence stays as the catalogue has it."""
    await customer(api, channel="email", topics=["promotions"])
    _, unsubscribe = await paths(api, topic="promotions")
    r = await api.client.get(unsubscribe)
    assert "<bdi" not in r.text.split("<h1>", 1)[1].split("</p>", 1)[0]
