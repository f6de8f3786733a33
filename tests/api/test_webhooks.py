"""Preference-change webhooks (API.md "Webhooks"; issue 12 item 3): the subscription API, and the
deliverer against a real HTTP receiver on 127.0.0.1 that verifies every signature with
``standardwebhooks.Webhook(secret).verify`` and goes down and comes back. Both engines."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from structlog.testing import capture_logs

from prefcenter.services.webhooks import (
    WebhookDeliverer,
    decode_cursor,
    encode_cursor,
    retry_after_seconds,
    secret_bytes,
)
from tests.api.test_approvals import customer
from tests.api.test_inbound import sms
from tests.conftest import Api, query
from tests.web.test_pages import FORM, ONE_CLICK, csrf_of, open_page, paths, submit
from tests.webhook_receiver import Receiver

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver(SECRET)
    await r.start()
    try:
        yield r
    finally:
        await r.stop()


async def subscribe(api: Api, url: str, webhook_id: str = "crm", **extra: Any) -> dict[str, Any]:
    r = await api.client.put(
        f"/v1/webhooks/{webhook_id}", json={"url": url, "secret": SECRET, **extra}, headers=api.as_("admin")
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


async def pump(d: WebhookDeliverer, rounds: int = 200) -> int:
    """Rounds until nothing is due; the attempts made."""
    total = 0
    for _ in range(rounds):
        n = await d.run_once()
        if n == 0:
            return total
        total += n
    raise AssertionError("deliveries kept coming")


async def export(api: Api) -> dict[int, dict[str, Any]]:
    r = await api.client.get("/v1/consent-events/export", headers=api.as_("auditor"))
    events = [msgspec.json.decode(line) for line in r.content.splitlines() if line]
    return {e["seq"]: e for e in events}


async def head_seq(api: Api) -> int:
    return int(query(api, "SELECT seq FROM ledger_head")[0][0])


async def deliveries(api: Api, webhook_id: str = "crm", **params: Any) -> Any:
    r = await api.client.get(f"/v1/webhooks/{webhook_id}/deliveries", params=params, headers=api.as_("admin"))
    assert r.status_code == 200, r.text
    return r.json()


def profile(email: str) -> dict[str, Any]:
    return {"timezone": "UTC", "locale": "en", "country": "PL", "contacts": {"email": email}}


def per_customer_in_order(payloads: list[dict[str, Any]]) -> bool:
    last: dict[str, int] = {}
    for p in payloads:
        ref, seq = p["data"]["customer_ref"] or "", p["data"]["seq"]
        if seq <= last.get(ref, 0):
            return False
        last[ref] = seq
    return True


# -- the subscription API ---------------------------------------------------------------------------


async def test_put_get_delete_roles_and_the_secret_stays_hidden(api: Api) -> None:
    body = {"url": "https://crm.example/hooks?x=1", "secret": SECRET}
    assert (
        await api.client.put("/v1/webhooks/crm", json=body, headers=api.as_("marketing"))
    ).status_code == 403
    assert (await api.client.put("/v1/webhooks/crm", json=body)).status_code == 401
    r = await api.client.put("/v1/webhooks/crm", json=body, headers=api.as_("admin"))
    assert r.status_code == 201 and "secret" not in r.json() and r.json()["sources"] is None
    r = await api.client.put(
        "/v1/webhooks/crm", json={**body, "sources": ["erasure", "api"]}, headers=api.as_("admin")
    )
    assert r.status_code == 200 and r.json()["sources"] == ["api", "erasure"]
    r = await api.client.get("/v1/webhooks/crm", headers=api.as_("admin"))
    assert r.status_code == 200 and SECRET not in r.text and "secret" not in r.json()
    assert r.json()["url"] == body["url"] and r.json()["created_at"].endswith("Z")
    assert (await api.client.get("/v1/webhooks/crm", headers=api.as_("auditor"))).status_code == 403
    assert (
        await api.client.get("/v1/webhooks/crm/deliveries", headers=api.as_("marketing"))
    ).status_code == 403
    assert (await api.client.delete("/v1/webhooks/crm", headers=api.as_("marketing"))).status_code == 403
    assert (await api.client.delete("/v1/webhooks/crm", headers=api.as_("admin"))).status_code == 204
    assert (await api.client.get("/v1/webhooks/crm", headers=api.as_("admin"))).status_code == 404
    assert (await api.client.delete("/v1/webhooks/crm", headers=api.as_("admin"))).status_code == 404
    assert (await api.client.get("/v1/webhooks/crm/deliveries", headers=api.as_("admin"))).status_code == 404


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"url": "ftp://crm.example/x"}, "url"),
        ({"url": "https:///no-host"}, "url"),
        ({"url": "https://crm.example/a\nb"}, "url"),
        ({"url": "https://crm.example/a b"}, "url"),
        ({"url": "https://crm.example:99999/"}, "url"),
        ({"url": "https://例え.jp/hooks"}, "url"),  # non-ASCII: the client could not send it (review B1)
        ({"url": "https://crm.example/€"}, "url"),
        ({"url": "https://crm.example/" + "a" * 2100}, "url"),
        ({"secret": "whsec_" + base64.b64encode(b"short-key").decode()}, "secret"),
        ({"secret": base64.b64encode(bytes(32)).decode()}, "secret"),
        ({"secret": "whsec_" + "!" * 44}, "secret"),
        ({"sources": ["api", "api"]}, "sources"),
        ({"sources": ["carrier-pigeon"]}, "sources"),
        ({"sources": []}, "sources"),
        ({"colour": "blue"}, None),
    ],
)
async def test_bad_bodies_are_400_and_write_nothing(
    api: Api, patch: dict[str, Any], field: str | None
) -> None:
    body = {"url": "https://crm.example/hooks", "secret": SECRET, **patch}
    r = await api.client.put("/v1/webhooks/crm", json=body, headers=api.as_("admin"))
    assert r.status_code == 400, r.text
    if field is not None:
        assert any(field in e["field"] for e in r.json()["errors"]), r.json()
    assert query(api, "SELECT count(*) FROM webhooks") == [(0,)]


async def test_bad_ids_limits_and_cursors_are_400(api: Api) -> None:
    h = api.as_("admin")
    body = {"url": "https://crm.example/hooks", "secret": SECRET}
    assert (await api.client.put("/v1/webhooks/Bad%20Id", json=body, headers=h)).status_code == 400
    assert (await api.client.put("/v1/webhooks/-x", json=body, headers=h)).status_code == 400
    await subscribe(api, "https://crm.example/hooks")
    for params in (
        {"limit": 0},
        {"limit": 1001},
        {"after": "nope!"},
        {"after": "d2Qx"},
        {"after": base64.urlsafe_b64encode(b"wd1:-3").decode()},
    ):
        r = await api.client.get("/v1/webhooks/crm/deliveries", params=params, headers=h)
        assert r.status_code == 400, (params, r.text)
    assert decode_cursor(encode_cursor(123)) == 123
    assert secret_bytes(SECRET) == bytes(range(32))
    # http:// is accepted (a warning in production)
    assert (await subscribe(api, "http://127.0.0.1:9/x", "plain"))["url"] == "http://127.0.0.1:9/x"


# -- delivery ---------------------------------------------------------------------------------------


async def test_every_write_path_is_delivered_signed_and_as_exported(api: Api, receiver: Receiver) -> None:
    """Page save, one-click, STOP, bounce, complaint, API and erasure each produce deliveries; each
    payload verifies and its data is the event exactly as the JSONL export gives it."""
    await subscribe(api, receiver.url)
    await customer(api, "c1")  # API (source crm)
    manage, _ = await paths(api, "c1")
    html = await open_page(api, manage)
    r = await submit(api, manage, [("csrf", csrf_of(html)), ("action", "stop_all")])  # page save
    assert r.status_code == 303, r.text
    await customer(api, "c2", topics=["promotions", "product-news"])
    _, unsubscribe = await paths(api, "c2")
    api.client.cookies.clear()
    r = await api.client.post(
        unsubscribe, content=ONE_CLICK, headers=FORM, follow_redirects=False
    )  # one-click
    assert r.status_code == 200
    await customer(api, "c3", channel="sms")
    await sms(api, "STOP")  # STOP
    h = api.as_("marketing")
    await customer(api, "c4", profile=profile("b@example.com"))
    r = await api.client.post(
        "/v1/inbound/email-events",
        json={"type": "bounce", "address": "b@example.com", "permanent": True},
        headers=h,
    )
    assert r.status_code == 200
    await customer(api, "c5", profile=profile("c@example.com"))
    r = await api.client.post(
        "/v1/inbound/email-events", json={"type": "complaint", "address": "c@example.com"}, headers=h
    )
    assert r.status_code == 200
    await customer(api, "c6", profile=profile("e@example.com"))
    assert (
        await api.client.delete("/v1/customers/c6", headers=api.as_("admin"))
    ).status_code == 204  # erasure

    d = WebhookDeliverer(api.rt, concurrency=8)
    try:
        await pump(d)
    finally:
        await d.close()
    exported = await export(api)
    assert receiver.bad_signatures == 0
    got = [p for _, p in receiver.delivered]
    assert sorted(p["data"]["seq"] for p in got) == sorted(exported)  # every event, once
    for msg_id, p in receiver.delivered:
        assert p["type"] == "consent.event" and p["timestamp"].endswith("Z")
        assert p["data"] == exported[p["data"]["seq"]]
        assert msg_id == f"evt_{p['data']['id']}"
    sources = {p["data"]["source"] for p in got}
    assert {
        "crm",
        "preference_page",
        "one_click_unsubscribe",
        "sms_keyword",
        "bounce",
        "complaint",
        "erasure",
    } <= sources
    assert per_customer_in_order(got)
    for body in receiver.bodies:  # no contact data: events hold none
        assert b"example.com" not in body and b"+48600100200" not in body and b"ola@" not in body
    listed = await deliveries(api, limit=1000)
    assert listed["next"] is None
    assert {x["status"] for x in listed["deliveries"]} == {"delivered"}
    assert all(
        x["attempts"] == 1 and x["last_status"] == 200 and x["delivered_at"].endswith("Z")
        for x in listed["deliveries"]
    )
    assert api.rt.metrics.webhook_deliveries.labels("delivered")._value.get() == len(exported)
    metrics = (await api.client.get("/metrics")).text
    assert 'prefcenter_webhook_deliveries_total{outcome="delivered"}' in metrics


async def test_receiver_down_then_back_loses_nothing_and_keeps_order(
    api: Api, receiver: Receiver, clock: Any
) -> None:
    """503s, then refused connections, then back: every event delivered, in seq order per customer,
    with the same webhook-id on every attempt at one event."""
    await subscribe(api, receiver.url)
    first = await head_seq(api)
    for round_ in range(3):
        for i in range(12):
            topics = [["promotions"], ["product-news"], ["promotions", "product-news"]][round_]
            await customer(api, f"k{i}", topics=topics, max_per_week=round_ + 1)
    expected = set(range(first + 1, await head_seq(api) + 1))
    d = WebhookDeliverer(api.rt, concurrency=4, batch=7)  # small batches: several rounds
    try:
        receiver.answer = lambda payload, headers: 503
        await pump(d)
        down = await deliveries(api, limit=1000)
        heads = [x for x in down["deliveries"] if x["attempts"] == 1]
        assert heads and all(x["status"] == "pending" and x["last_status"] == 503 for x in heads)
        assert not receiver.delivered
        await receiver.stop()  # refuses now
        clock.advance(seconds=10)
        assert await pump(d) == len(heads)
        rows = query(
            api, "SELECT last_status, last_error, attempts FROM webhook_deliveries WHERE attempts = 2"
        )
        assert len(rows) == len(heads) and all(r[0] is None and r[1].startswith("network") for r in rows)
        await receiver.start()
        receiver.answer = lambda payload, headers: 200
        for _ in range(40):
            clock.advance(seconds=30)
            await pump(d)
            if not query(api, "SELECT 1 FROM webhook_deliveries WHERE status = 'pending'"):
                break
    finally:
        await d.close()
    assert receiver.bad_signatures == 0
    payloads = [p for _, p in receiver.delivered]
    assert {p["data"]["seq"] for p in payloads} == expected
    assert per_customer_in_order(payloads)
    delivered_ids = {m for m, _ in receiver.delivered}
    refused_ids = {m for m, s in receiver.attempts if s == 503}
    assert refused_ids and refused_ids <= delivered_ids  # the retried ones kept their id
    assert len(delivered_ids) == len(expected)


async def test_retry_after_no_retry_on_400_timeout_and_give_up(
    api: Api, receiver: Receiver, clock: Any
) -> None:
    await subscribe(api, receiver.url)
    start = await head_seq(api)
    await customer(api, "r1")  # two events: channel and topic (at least)
    seqs = [s for (s,) in query(api, "SELECT event_seq FROM webhook_deliveries ORDER BY event_seq")]
    assert seqs and min(seqs) > start
    d = WebhookDeliverer(api.rt, concurrency=4, timeout=0.3, backoff_base=2.0)
    try:
        # 429 with Retry-After: waits exactly that long
        receiver.answer = lambda payload, headers: (429, {"retry-after": "120"})
        assert await pump(d) == 1  # the head only: its customer's later events wait
        ((not_before, status, attempts),) = query(
            api, "SELECT not_before_us, last_status, attempts FROM webhook_deliveries WHERE attempts > 0"
        )
        now_us = int(clock().timestamp() * 1_000_000)
        assert status == 429 and attempts == 1 and not_before == now_us + 120_000_000
        clock.advance(seconds=119)
        assert await pump(d) == 0  # not yet
        # 500: exponential backoff with jitter (base 2 s, second attempt: 4 s +-20 %)
        clock.advance(seconds=1)
        receiver.answer = lambda payload, headers: 500
        assert await pump(d) == 1
        ((not_before,),) = query(api, "SELECT not_before_us FROM webhook_deliveries WHERE attempts = 2")
        now_us = int(clock().timestamp() * 1_000_000)
        assert 3_200_000 <= not_before - now_us <= 4_800_000
        # a timeout is retried
        clock.advance(seconds=5)
        receiver.delay = 0.6
        assert await pump(d) == 1
        receiver.delay = 0.0
        ((error, status),) = query(
            api, "SELECT last_error, last_status FROM webhook_deliveries WHERE attempts = 3"
        )
        assert error == "timeout" and status is None
        # 400: failed at once, and the customer's next event goes
        clock.advance(seconds=60)
        receiver.answer = lambda payload, headers: 400
        assert await pump(d) >= 2  # the failed head no longer holds back the next
        failed = [x for x in (await deliveries(api))["deliveries"] if x["status"] == "failed"]
        assert failed and all(x["last_status"] == 400 for x in failed)
        assert failed[0]["attempts"] == 4 and all(x["attempts"] == 1 for x in failed[1:])
        # give-up: still 503 a day after the event -> failed, visible; later events then go
        receiver.answer = lambda payload, headers: 503
        r2_start = await head_seq(api)
        await customer(api, "r2")
        assert await pump(d) == 1  # r2's head only
        clock.advance(hours=25)
        await pump(d)  # the head's last attempt, given up; r2's later events (as old) one attempt each
        r2 = [x for x in (await deliveries(api, limit=1000))["deliveries"] if x["event_seq"] > r2_start]
        assert len(r2) >= 2 and all(x["status"] == "failed" and x["last_status"] == 503 for x in r2)
        assert r2[0]["attempts"] == 2 and all(x["attempts"] == 1 for x in r2[1:])
        errors = query(api, "SELECT last_error FROM webhook_deliveries WHERE event_seq > ?", r2_start)
        assert all(e.startswith("given up after 86400 s: HTTP 503") for (e,) in errors)
        receiver.answer = lambda payload, headers: 200
        fresh = await head_seq(api)
        await customer(api, "r2", topics=["product-news"])
        assert await pump(d) >= 1
        after = [x for x in (await deliveries(api, limit=1000))["deliveries"] if x["event_seq"] > fresh]
        assert after and all(x["status"] == "delivered" for x in after)
    finally:
        await d.close()
    outcomes = {
        o: api.rt.metrics.webhook_deliveries.labels(o)._value.get()
        for o in ("delivered", "retried", "failed")
    }
    assert outcomes["retried"] >= 4 and outcomes["failed"] >= 3 and outcomes["delivered"] >= 1


async def test_only_events_after_the_subscription_and_only_its_sources(api: Api, receiver: Receiver) -> None:
    await customer(api, "before")
    await subscribe(api, receiver.url)
    await subscribe(api, receiver.url, "erasures", sources=["erasure"])
    await customer(api, "after", topics=["product-news"])
    assert (await api.client.delete("/v1/customers/after", headers=api.as_("admin"))).status_code == 204
    d = WebhookDeliverer(api.rt)
    try:
        await pump(d)
    finally:
        await d.close()
    before_ref = api.rt.pseudonyms.customer_ref("before")
    assert all(p["data"]["customer_ref"] != before_ref for _, p in receiver.delivered)
    crm = (await deliveries(api, "crm", limit=1000))["deliveries"]
    erasures = (await deliveries(api, "erasures", limit=1000))["deliveries"]
    exported = await export(api)
    assert [x["event_seq"] for x in crm] == [
        s for s, e in exported.items() if e["customer_ref"] != before_ref
    ]
    assert erasures and all(exported[x["event_seq"]]["source"] == "erasure" for x in erasures)
    assert len(receiver.delivered) == len(crm) + len(erasures)
    # keyset pages: limit 2 and the cursor, each item once
    seen: list[int] = []
    page = await deliveries(api, "crm", limit=2)
    while True:
        seen += [x["event_seq"] for x in page["deliveries"]]
        if page["next"] is None:
            break
        page = await deliveries(api, "crm", limit=2, after=page["next"])
    assert seen == [x["event_seq"] for x in crm]


async def test_a_pending_delivery_of_an_erased_customer_carries_the_pseudonym_only(
    api: Api, receiver: Receiver
) -> None:
    await subscribe(api, receiver.url)
    cid = "erase-me-4471"
    await customer(api, cid)
    pending = query(api, "SELECT * FROM webhook_deliveries")
    assert pending and cid not in repr(pending)  # the rows never hold the id
    assert (await api.client.delete(f"/v1/customers/{cid}", headers=api.as_("admin"))).status_code == 204
    d = WebhookDeliverer(api.rt)
    try:
        await pump(d)
    finally:
        await d.close()
    ref = api.rt.pseudonyms.customer_ref(cid)
    assert receiver.delivered and all(p["data"]["customer_id"] is None for _, p in receiver.delivered)
    assert all(p["data"]["customer_ref"] == ref for _, p in receiver.delivered)
    assert all(cid.encode() not in body for body in receiver.bodies)
    assert cid not in repr(query(api, "SELECT * FROM webhook_deliveries"))


async def test_deleting_a_subscription_stops_its_deliveries(api: Api, receiver: Receiver) -> None:
    await subscribe(api, receiver.url)
    await customer(api, "d1")
    assert query(api, "SELECT count(*) FROM webhook_deliveries")[0][0] > 0
    assert (await api.client.delete("/v1/webhooks/crm", headers=api.as_("admin"))).status_code == 204
    assert query(api, "SELECT count(*) FROM webhook_deliveries") == [(0,)]
    d = WebhookDeliverer(api.rt)
    try:
        assert await pump(d) == 0
    finally:
        await d.close()
    assert receiver.attempts == []


async def test_a_dead_receiver_does_not_hold_up_another_subscription(api: Api, receiver: Receiver) -> None:
    """Faults stay where they happen: one subscription's refused connections, another's deliveries go."""
    await subscribe(api, receiver.url)
    await subscribe(api, "http://127.0.0.1:9/nobody-listens", "dead")
    await customer(api, "f1")
    d = WebhookDeliverer(api.rt)
    try:
        await pump(d)
    finally:
        await d.close()
    ok = (await deliveries(api, "crm", limit=1000))["deliveries"]
    dead = (await deliveries(api, "dead", limit=1000))["deliveries"]
    assert ok and all(x["status"] == "delivered" for x in ok)
    assert dead and all(x["status"] == "pending" for x in dead) and dead[0]["attempts"] == 1


async def test_two_deliverers_at_once_deliver_each_event_once_in_order(api: Api, receiver: Receiver) -> None:
    """Two deliverers claiming at the same time (PostgreSQL: two pool connections, SKIP LOCKED; SQLite:
    the one writer): no event twice, none lost, each customer's in seq order."""
    await subscribe(api, receiver.url)
    first = await head_seq(api)
    for round_ in range(3):
        for i in range(10):
            await customer(
                api, f"t{i}", max_per_week=round_ + 1, topics=[["promotions"], ["product-news"]][round_ % 2]
            )
    expected = set(range(first + 1, await head_seq(api) + 1))
    a, b = WebhookDeliverer(api.rt, batch=3), WebhookDeliverer(api.rt, batch=3)
    try:
        for _ in range(100):
            done = await asyncio.gather(a.run_once(), b.run_once())
            if done == [0, 0]:
                break
    finally:
        await a.close()
        await b.close()
    ids = [m for m, _ in receiver.delivered]
    assert len(ids) == len(set(ids)) == len(expected)
    assert {p["data"]["seq"] for _, p in receiver.delivered} == expected
    assert per_customer_in_order([p for _, p in receiver.delivered])


async def test_plain_http_is_accepted_and_warned_about_in_production(api: Api) -> None:
    api.rt.settings = msgspec.structs.replace(api.rt.settings, env="production")
    with capture_logs() as logs:
        await subscribe(api, "http://crm.example/hooks")
        await subscribe(api, "https://crm.example/hooks", "tls")
    warned = [e for e in logs if e["log_level"] == "warning" and "plain http" in e["event"]]
    assert [e["webhook_id"] for e in warned] == ["crm"]
    assert SECRET not in repr(logs) and "/hooks" not in repr(logs)  # neither the secret nor the path


def test_a_malformed_retry_after_is_ignored() -> None:
    """'²' passes str.isdigit() but not float(): it raised inside the round (review B2)."""
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert retry_after_seconds("²", now) is None
    assert retry_after_seconds("١٢", now) is None  # Arabic-Indic digits
    assert retry_after_seconds("12", now) == 12.0


async def test_a_fault_in_one_attempt_loses_no_other_record(api: Api, receiver: Receiver) -> None:
    """An unexpected error in one subscription's attempt retries that delivery only: the round still
    records every other subscription's deliveries (it used to escape gather and record nothing)."""
    await subscribe(api, receiver.url)
    await subscribe(api, "http://127.0.0.1:9/broken", "broken")
    await customer(api, "g1")
    d = WebhookDeliverer(api.rt)
    real_post = d.client.post

    async def post(url: str, body: bytes, headers: dict[str, str]) -> Any:
        if "broken" in url:
            raise UnicodeEncodeError("latin-1", "€", 0, 1, "a client fault")
        return await real_post(url, body, headers)

    d.client.post = post  # type: ignore[method-assign]
    try:
        await pump(d)
    finally:
        await d.close()
    ok = (await deliveries(api, "crm", limit=1000))["deliveries"]
    broken = (await deliveries(api, "broken", limit=1000))["deliveries"]
    assert ok and all(x["status"] == "delivered" for x in ok)
    assert broken[0]["status"] == "pending" and broken[0]["attempts"] == 1
