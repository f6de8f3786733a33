"""Double opt-in, scanner-safe (issue 13, item 5; API.md "Auditor's answers"): a topic with
``double_opt_in`` true is in force for a customer only after they confirm it from the mail prefcenter
sends them. Until then the gate denies ``not_confirmed``; ``GET /c/{token}`` (what a link scanner
prefetches) changes nothing; ``POST /c/{token}`` confirms once, with the user agent and the keyed IP hash
in the ledger. The mail goes through the dispatcher to a real SMTP server (aiosmtpd) on loopback."""

from __future__ import annotations

import json
import re
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import msgspec

from prefcenter.domain.tokens import CONFIRM_LIFETIME
from prefcenter.services import links
from tests.conftest import CRM_EVIDENCE, PROFILE, Api, FakeClock, prefs_body, query
from tests.smtp.helpers import dispatcher
from tests.smtp.sink import Handler
from tests.web.test_pages import open_page, page_form, paths, replace_fields, submit

AT = "2026-11-22T12:00:00Z"  # 13:00 in Warsaw: outside quiet hours, inside the sms window
TOPIC = {
    "category": "marketing",
    "names": {"en": "Letters", "pl": "Listy"},
    "descriptions": {},
    "double_opt_in": True,
}
CAMPAIGN = {
    "topic": "letters",
    "channels": ["email", "sms"],
    "content": {"email": {"subject": "Hi", "text": "Hello"}, "sms": {"text": "Hello"}},
}
UA = "Mozilla/5.0 (confirm test)"
PAGE_HEADERS = {
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-robots-tag": "noindex",
}


async def setup(api: Api) -> None:
    r = await api.client.put("/v1/topics/letters", json=TOPIC, headers=api.as_("admin"))
    assert r.status_code == 201, r.text
    r = await api.client.put("/v1/campaigns/news", json=CAMPAIGN, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text


async def profile(api: Api, cid: str = "c1", **changes: Any) -> None:
    r = await api.client.put(
        f"/v1/customers/{cid}", json={**PROFILE, **changes}, headers=api.as_("marketing")
    )
    assert r.status_code in (200, 201), r.text


async def prefs(api: Api, cid: str = "c1", **changes: Any) -> None:
    body = prefs_body(**{"topics": ["letters"], "quiet_hours": None, "max_per_week": None, **changes})
    r = await api.client.put(f"/v1/customers/{cid}/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text


async def gate(api: Api, cid: str = "c1") -> tuple[str, str, str | None]:
    body = {"campaign_id": "news", "customer_ids": [cid], "at": AT, "dry_run": True}
    r = await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    (d,) = r.json()["decisions"]
    return d["verdict"], d["reason"], d["channel"]


async def events(api: Api, cid: str = "c1") -> list[dict[str, Any]]:
    r = await api.client.get(f"/v1/consent-events?customer_id={cid}&limit=1000", headers=api.as_("auditor"))
    assert r.status_code == 200
    found: list[dict[str, Any]] = r.json()["events"]
    return found


def mails(api: Api) -> list[tuple[Any, ...]]:
    return query(
        api,
        "SELECT customer_id, kind, topic, status, attempts FROM notifications "
        "WHERE kind = 'email_double_opt_in' ORDER BY id",
    )


async def drain(api: Api, port: int) -> None:
    # The dispatcher hands the double opt-in mails to the email transport of the settings (until it
    # passes its own: see services/confirmations.send_confirmations), so they point at the sink too.
    api.rt.settings = msgspec.structs.replace(api.rt.settings, smtp_port=port)
    d = dispatcher(api, port, settings={"webhook_url": "http://127.0.0.1:9/unused"})
    await d.run_until_idle()
    await d.close()


def confirm_path(msg: EmailMessage) -> str:
    body = msg.get_body(("plain",))
    assert body is not None
    found = re.search(r"(https?://\S+/c/\S+)", body.get_content())
    assert found, "no confirmation link in the mail"
    return urlsplit(found.group(1)).path


def assert_page_headers(r: Any) -> None:
    for name, value in PAGE_HEADERS.items():
        assert r.headers[name] == value, name
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]


async def test_grant_mail_scanner_get_confirm_once_then_regrant(api: Api, sink: tuple[Handler, int]) -> None:
    handler, port = sink
    await setup(api)
    r = await api.client.get("/v1/topics/letters", headers=api.as_("auditor"))
    assert r.json()["double_opt_in"] is True
    await profile(api)
    await prefs(api)
    assert await gate(api) == ("deny", "not_confirmed", "email")
    assert mails(api) == [("c1", "email_double_opt_in", "letters", "queued", 0)]  # with the write

    await drain(api, port)
    (msg,) = handler.messages
    assert msg["To"] == "ola@example.pl"
    assert msg["Subject"] == "Prosimy o potwierdzenie: Listy"  # the customer's language (pl)
    assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None  # transactional
    assert mails(api) == [("c1", "email_double_opt_in", "letters", "sent", 1)]
    path = confirm_path(msg)

    # A link scanner's GET (and HEAD) changes nothing: same ledger, still not confirmed.
    before = await events(api)
    r = await api.client.get(path)
    assert r.status_code == 200
    assert_page_headers(r)
    assert r.text.count("<button") == 1 and f'action="{path}"' in r.text and 'lang="pl"' in r.text
    assert (await api.client.head(path)).status_code == 200
    assert await events(api) == before
    assert await gate(api) == ("deny", "not_confirmed", "email")

    # The POST (no body, no cookie) confirms: one event, with user agent and keyed IP hash as evidence.
    r = await api.client.post(path, headers={"user-agent": UA})
    assert r.status_code == 200
    assert_page_headers(r)
    assert "Dziękujemy: potwierdzono" in r.text
    after = await events(api)
    assert len(after) == len(before) + 1
    event = after[-1]
    assert (event["action"], event["subject"], event["value"]) == (
        "update",
        "topic:letters",
        {"confirmed": True},
    )
    assert (event["source"], event["actor"]) == ("preference_page", "customer")
    evidence = event["evidence"]
    assert evidence["user_agent"] == UA and evidence["form"] == "confirm"
    assert re.fullmatch(r"[0-9a-f]{64}", evidence["ip_ref"])
    client_host = "testclient"  # what the test client reports as the peer address
    assert client_host not in json.dumps(event)
    assert await gate(api) == ("allow", "allowed", "email")

    # Again: harmless, nothing written.
    r = await api.client.post(path, content=b"anything", headers={"user-agent": UA})
    assert r.status_code == 200 and "Już potwierdzono" in r.text
    assert await events(api) == after

    # Withdrawing and granting again needs a new confirmation, and a new mail goes out.
    await prefs(api, topics=[])
    await prefs(api)
    assert await gate(api) == ("deny", "not_confirmed", "email")
    await drain(api, port)
    assert len(handler.messages) == 2
    assert [m[3] for m in mails(api)] == ["sent", "sent"]
    r = await api.client.post(confirm_path(handler.messages[1]), headers={"user-agent": UA})
    assert r.status_code == 200
    assert await gate(api) == ("allow", "allowed", "email")
    confirmations = [e for e in await events(api) if e["value"] == {"confirmed": True}]
    assert len(confirmations) == 2


async def test_no_email_address_no_mail_and_not_confirmed(api: Api, sink: tuple[Handler, int]) -> None:
    handler, port = sink
    await setup(api)
    await profile(api, contacts={"sms": "+48600100200"})
    await prefs(api, channel="sms")
    assert await gate(api) == ("deny", "not_confirmed", "sms")
    assert mails(api) == []
    await drain(api, port)
    assert handler.messages == []
    assert await gate(api) == ("deny", "not_confirmed", "sms")


async def test_import_and_page_paths_each_queue_a_mail(api: Api, sink: tuple[Handler, int]) -> None:
    handler, port = sink
    await setup(api)
    line = {
        "customer_id": "c2",
        "profile": {**PROFILE, "contacts": {"email": "jan@example.pl"}},
        "preferences": {
            "channel": "email",
            "topics": ["letters"],
            "quiet_hours": None,
            "max_per_week": None,
            "paused_until": None,
        },
        "provenance": {
            "source": "import",
            "actor": "batch-1",
            "notice_version": "2026-10",
            "evidence": CRM_EVIDENCE,
        },
    }
    r = await api.client.post(
        "/v1/customers/import",
        content=json.dumps(line).encode() + b"\n",
        headers={**api.as_("marketing"), "content-type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and r.json()["created"] == 1, r.text
    assert mails(api) == [("c2", "email_double_opt_in", "letters", "queued", 0)]
    assert await gate(api, "c2") == ("deny", "not_confirmed", "email")

    # The preference page: c3 ticks the topic on the page.
    await profile(api, "c3", contacts={"email": "ewa@example.pl"})
    await prefs(api, "c3", topics=[])
    manage, _ = await paths(api, "c3")
    html = await open_page(api, manage)
    r = await submit(api, manage, replace_fields(page_form(html), channel="email", topics=["letters"]))
    assert r.status_code == 303, r.text
    assert mails(api)[-1] == ("c3", "email_double_opt_in", "letters", "queued", 0)
    assert await gate(api, "c3") == ("deny", "not_confirmed", "email")

    await drain(api, port)
    assert sorted(str(m["To"]) for m in handler.messages) == ["ewa@example.pl", "jan@example.pl"]


async def test_bad_foreign_stale_and_expired_tokens_change_nothing(api: Api, clock: FakeClock) -> None:
    await setup(api)
    await profile(api)
    await prefs(api)
    stored = await api.rt.store.get_customer("c1")
    assert stored is not None
    token = links.mint_token(api.rt, stored.customer_ref, "confirm", "letters", gen=stored.link_gen)
    before = await events(api)
    for bad in ("/c/garbage", f"/c/{token[:-2]}xx"):
        assert (await api.client.get(bad)).status_code == 400
        r = await api.client.post(bad)
        assert r.status_code == 400
        assert_page_headers(r)
    # an unsubscribe token is not a confirm token (another salt), and the other way round
    _, unsubscribe = await paths(api, "c1", topic="letters")
    assert (await api.client.post(f"/c/{unsubscribe.rsplit('/', 1)[1]}")).status_code == 400
    assert (
        await api.client.post(
            f"/u/{token}",
            content=b"List-Unsubscribe=One-Click",
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    ).status_code == 400
    assert await events(api) == before

    # a topic the customer no longer has: a page saying so, no change
    await prefs(api, topics=["promotions"])
    before = await events(api)
    r = await api.client.get(f"/c/{token}")
    assert r.status_code == 200 and "Nie ma czego potwierdzać" in r.text and "<button" not in r.text
    r = await api.client.post(f"/c/{token}")
    assert r.status_code == 200 and "Nie ma czego potwierdzać" in r.text
    assert await events(api) == before

    # expired after 30 days: 410, no change
    await prefs(api)
    before = await events(api)
    clock.advance(seconds=CONFIRM_LIFETIME.total_seconds())
    r = await api.client.post(f"/c/{token}")
    assert r.status_code == 410 and "Ten link wygasł" in r.text
    assert await events(api) == before


async def test_a_topic_made_double_opt_in_later_unconfirms_nobody(api: Api) -> None:
    plain = {**TOPIC, "double_opt_in": False}
    assert (
        await api.client.put("/v1/topics/letters", json=plain, headers=api.as_("admin"))
    ).status_code == 201
    r = await api.client.put("/v1/campaigns/news", json=CAMPAIGN, headers=api.as_("marketing"))
    assert r.status_code == 201
    await profile(api)
    await prefs(api)
    assert await gate(api) == ("allow", "allowed", "email")
    assert (
        await api.client.put("/v1/topics/letters", json=TOPIC, headers=api.as_("admin"))
    ).status_code == 200
    assert await gate(api) == ("allow", "allowed", "email")
    assert mails(api) == []
    # a new subscriber after the change must confirm
    await profile(api, "c2")
    await prefs(api, "c2")
    assert await gate(api, "c2") == ("deny", "not_confirmed", "email")


async def test_transactional_topics_and_other_reasons_come_first(api: Api) -> None:
    """Rule 6b comes right after topic_not_subscribed: an earlier rule still decides first."""
    await setup(api)
    await profile(api, contacts={"email": "ola@example.pl"})
    await prefs(api, channel="sms")  # no sms contact: no_address (rule 5) decides
    assert await gate(api) == ("deny", "no_address", "sms")
    await prefs(api, channel="email", topics=["promotions"])  # not subscribed: rule 6
    assert await gate(api) == ("deny", "topic_not_subscribed", "email")


async def test_the_reason_and_the_flag_are_in_the_openapi_document(api: Api) -> None:
    schemas = (await api.client.get("/schema/openapi.json")).json()["components"]["schemas"]
    assert "not_confirmed" in schemas["Decision"]["properties"]["reason"]["enum"]
    flag = schemas["Topic"]["properties"]["double_opt_in"]
    assert flag["type"] == "boolean" and flag["default"] is False and "not_confirmed" in flag["description"]
