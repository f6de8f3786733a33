"""Campaign content is the placeholder language and nothing more, checked at PUT (API.md "Campaigns";
issue 9 item 6: a loop in a template stalled the event loop)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from markupsafe import escape

from prefcenter.domain.campaigns import MAX_CONTENT_BYTES
from prefcenter.messaging.email import render
from prefcenter.services.links import mint_links
from tests.api.test_approvals import customer
from tests.conftest import CAMPAIGN, Api, query

LOOP = "{% for i in range(100000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}"
EMAIL = CAMPAIGN["content"]["email"]  # type: ignore[index]


def with_content(**parts: Any) -> dict[str, Any]:
    return {**CAMPAIGN, "content": {**CAMPAIGN["content"], **parts}}  # type: ignore[dict-item]


async def put(api: Api, body: dict[str, Any], cid: str = "bf") -> Any:
    return await api.client.put(f"/v1/campaigns/{cid}", json=body, headers=api.as_("marketing"))


def problem(r: Any) -> list[dict[str, str]]:
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    errors: list[dict[str, str]] = r.json()["errors"]
    return errors


async def test_the_loop_reproduction_is_a_400_naming_field_and_position(api: Api) -> None:
    start = time.perf_counter()
    r = await put(api, with_content(sms={"text": LOOP}))
    assert time.perf_counter() - start < 2.0
    errors = problem(r)
    assert errors[0]["field"] == "content.sms.text" and len(errors) == 1
    assert errors[0]["message"].startswith("line 1, column 1: ")
    r = await put(api, with_content(email={**EMAIL, "html": "<p>Hi</p>\n<p>x {% if 1 %}y{% endif %}</p>"}))
    errors = problem(r)
    assert errors[0]["field"] == "content.email.html"
    assert "line 2, column 6" in errors[0]["message"]
    assert (await api.client.get("/v1/campaigns/bf", headers=api.as_("auditor"))).status_code == 404


@pytest.mark.parametrize(
    ("part", "source"),
    [
        ("subject", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
        ("text", "{{ cycler.__init__.__globals__.os }}"),
        ("html", "{{ customer_id|upper }}"),
        ("html", "{{ customer_id + 1 }}"),
        ("text", "{# note #}"),
        ("text", "{{ customer_id"),
        ("subject", "{{ secret_key }}"),
    ],
)
async def test_sandbox_escapes_filters_and_expressions_are_rejected_at_put(
    api: Api, part: str, source: str
) -> None:
    errors = problem(await put(api, with_content(email={**EMAIL, part: f"ok {source}"})))
    assert [e["field"] for e in errors] == [f"content.email.{part}"]
    assert "line 1, column 4" in errors[0]["message"]


async def test_every_bad_part_is_reported(api: Api) -> None:
    body = with_content(email={**EMAIL, "text": "{% x %}"}, sms={"text": "a\nb {{ nope }}"})
    errors = problem(await put(api, body))
    assert {e["field"]: e["message"][:18] for e in errors} == {
        "content.email.text": "line 1, column 1: ",
        "content.sms.text": "line 2, column 3: ",
    }


async def test_oversized_content_is_a_400(api: Api) -> None:
    # One part over its own cap.
    errors = problem(await put(api, with_content(email={**EMAIL, "html": "a" * 100_001})))
    assert [e["field"] for e in errors] == ["content.email.html"]
    # Every part within its cap, the whole over MAX_CONTENT_BYTES of UTF-8 (ł is two bytes).
    body = with_content(email={**EMAIL, "text": "ł" * 100_000, "html": "ł" * 100_000})
    errors = problem(await put(api, body))
    assert [e["field"] for e in errors] == ["content"]
    assert str(MAX_CONTENT_BYTES) in errors[0]["message"]
    # Just under the whole cap is fine.
    fits = MAX_CONTENT_BYTES - len(json.dumps(CAMPAIGN["content"]).encode())  # an upper bound of the rest
    r = await put(api, with_content(email={**EMAIL, "html": "ł" * (fits // 4), "text": "ł" * (fits // 4)}))
    assert r.status_code == 201, r.text


async def test_css_braces_are_fine(api: Api) -> None:
    html = "<style>@media print{a{color:red}} p{margin:0}</style><p>{{ customer_id }}</p>"
    r = await put(api, with_content(email={**EMAIL, "html": html}))
    assert r.status_code == 201, r.text


async def test_a_valid_campaign_renders_its_placeholders(api: Api) -> None:
    content = {
        "email": {
            "subject": "Hi {{customer_id}}\nthere",
            "text": "You are {{ customer_id }}. Stop: {{ unsubscribe_url }}",
            "html": '<p>{{ customer_id }}</p><a href="{{ unsubscribe_url }}">stop</a> {a{b}}',
        },
        "sms": {"text": "{{\tcustomer_id\t}}: {{ manage_url }}"},
    }
    assert (await put(api, {**CAMPAIGN, "content": content})).status_code == 201
    await customer(api, "o.neil@x")
    rt = api.rt
    stored = await rt.store.get_campaign("bf")
    person = await rt.store.get_customer("o.neil@x")
    assert stored is not None and person is not None
    links = mint_links(rt, person, stored.topic)
    manage, unsub = links
    args: dict[str, Any] = {
        "public_url_links": links,
        "campaign_id": "bf",
        "campaign": stored,
        "marketing": True,
        "customer": person,
        "from_address": "Shop <news@shop.example>",
        "controller": rt.settings.controller,
    }
    email = render(channel="email", **args)
    assert email.subject == "Hi o.neil@x there"
    assert email.text.startswith(f"You are o.neil@x. Stop: {unsub}\n")
    assert email.html is not None
    assert email.html.startswith(f'<p>o.neil@x</p><a href="{escape(unsub)}">stop</a> {{a{{b}}}}\n')
    assert email.unsubscribe_url == unsub and "{{" not in email.text + email.html
    sms = render(channel="sms", **args)
    assert sms.text.startswith(f"o.neil@x: {manage}\n")


async def test_stored_jinja_content_fails_at_render_and_is_not_evaluated(api: Api) -> None:
    """Content stored before the language was enforced may hold Jinja: rendering refuses it (the
    dispatcher fails just that message with ``render: ...``) and never runs it."""
    assert (await put(api, CAMPAIGN)).status_code == 201
    await customer(api, "c1")
    old = {**CAMPAIGN["content"], "sms": {"text": LOOP}}  # type: ignore[dict-item]
    old["email"] = {**EMAIL, "html": "<p>{{ customer_id|upper }}</p>"}
    query(api, "UPDATE campaigns SET content = ? WHERE id = 'bf'", json.dumps(old))
    rt = api.rt
    stored = await rt.store.get_campaign("bf")
    person = await rt.store.get_customer("c1")
    assert stored is not None and person is not None
    args: dict[str, Any] = {
        "public_url_links": mint_links(rt, person, stored.topic),
        "campaign_id": "bf",
        "campaign": stored,
        "marketing": True,
        "customer": person,
        "from_address": "news@shop.example",
        "controller": rt.settings.controller,
    }
    start = time.perf_counter()
    with pytest.raises(
        ValueError, match=r"content\.sms\.text is not the placeholder language .*line 1, column 1"
    ):
        render(channel="sms", **args)
    with pytest.raises(ValueError, match=r"content\.email\.html .*line 1, column 4"):
        render(channel="email", **args)
    assert time.perf_counter() - start < 1.0
