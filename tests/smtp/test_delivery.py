"""Sending email through a real SMTP server (aiosmtpd on 127.0.0.1): API.md "Sending — throttled
messaging"; COMPLIANCE A1, A2, A8, B12, edge cases 7 and 8."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from tests.api.test_approvals import campaign, customer
from tests.conftest import Api, FakeClock, query
from tests.smtp.helpers import counts, dispatcher, outbox, send
from tests.smtp.sink import Handler

LIST_UNSUB = re.compile(r"^<[^>]+>(\s*,\s*<[^>]+>)*$")


def bodies(msg: object) -> tuple[str, str]:
    text = msg.get_body(preferencelist=("plain",)).get_content()  # type: ignore[attr-defined]
    html = msg.get_body(preferencelist=("html",)).get_content()  # type: ignore[attr-defined]
    return text, html


async def test_marketing_email_headers_and_one_click(api: Api, sink: tuple[Handler, int]) -> None:
    """COMPLIANCE A1/A2: exactly one List-Unsubscribe (angle-bracketed, one http URI) and exactly one
    List-Unsubscribe-Post; A8: the preference link in both parts; the one-click POST to the header's URL
    unsubscribes the customer from the campaign's topic (A4, A5)."""
    handler, port = sink
    await campaign(api)
    await customer(api, "c1")
    answer = await send(api, ["c1"])
    assert answer["decisions"][0]["verdict"] == "allow" and answer["summary"]["allow"] == 1
    assert (await counts(api))["queued"] == 1
    d = dispatcher(api, port)
    assert await d.run_until_idle() == 1
    await d.close()
    assert len(handler.messages) == 1
    msg = handler.messages[0]
    assert msg["To"] == "ola@example.pl" and msg["Subject"] == "Hi c1"
    assert len(msg.get_all("List-Unsubscribe")) == 1
    header = msg["List-Unsubscribe"]
    assert LIST_UNSUB.match(header)
    assert msg.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    url = header[1:-1]
    assert url.startswith("http://127.0.0.1:8000/u/")
    assert msg["Message-ID"].startswith("<black-friday.") and "c1" not in msg["Message-ID"]
    text, html = bodies(msg)
    assert "http://127.0.0.1:8000/p/" in text and 'href="http://127.0.0.1:8000/p/' in html
    assert "Manage your message preferences" in text  # footer in the language of the body (content: en)
    c = await counts(api)
    assert (c["sent"], c["queued"]) == (1, 0)
    r = await api.client.post(
        urlsplit(url).path,
        content="List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    prefs = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("marketing"))).json()
    assert "promotions" not in prefs["topics"]
    # A second send of a sent pair queues nothing more and is answered like a retried approval.
    again = await send(api, ["c1"])
    assert again["decisions"][0]["reason"] == "topic_not_subscribed"
    assert [row[3] for row in outbox(api)] == ["sent"]


async def test_second_send_queues_nothing_more(api: Api, sink: tuple[Handler, int]) -> None:
    """A retried send of a queued pair is the retried approval and adds no outbox row or message."""
    handler, port = sink
    await campaign(api)
    await customer(api, "c1")
    first = await send(api, ["c1"])
    second = await send(api, ["c1"])
    assert first["decisions"] == second["decisions"]
    assert len(outbox(api)) == 1
    assert "prefcenter_outbox_depth 1.0" in (await api.client.get("/metrics")).text
    d = dispatcher(api, port)
    await d.run_until_idle()
    await send(api, ["c1"])
    await d.run_until_idle()
    await d.close()
    assert len(handler.messages) == 1
    metrics = (await api.client.get("/metrics")).text
    assert "prefcenter_outbox_depth 0.0" in metrics
    assert 'prefcenter_dispatched_total{channel="email",outcome="sent"} 1.0' in metrics


async def test_transactional_has_footer_but_no_list_unsubscribe(api: Api, sink: tuple[Handler, int]) -> None:
    """COMPLIANCE B12: one-click headers for marketing only; the preference link in every email."""
    handler, port = sink
    await campaign(api, "receipt", topic="order-updates", channels=["email"])
    await customer(api, "c1", channel=None, topics=[])
    answer = await send(api, ["c1"], "receipt")
    assert answer["decisions"][0]["verdict"] == "allow"
    d = dispatcher(api, port)
    await d.run_until_idle()
    await d.close()
    (msg,) = handler.messages
    assert msg.get_all("List-Unsubscribe") is None and msg.get_all("List-Unsubscribe-Post") is None
    text, html = bodies(msg)
    assert "/p/" in text and "/p/" in html


async def test_withdrawal_between_queueing_and_sending_stops_it(api: Api, sink: tuple[Handler, int]) -> None:
    """COMPLIANCE edge 8: the gate runs again at hand-off; a withdrawal that landed meanwhile stops the
    message (withdrawn) and releases the reservation; a suppression counts as suppressed."""
    handler, port = sink
    await campaign(api)
    await customer(api, "c1")
    await customer(api, "c2", {**_profile("c2")})
    await send(api, ["c1", "c2"])
    await customer(api, "c1", channel=None, topics=[])  # c1 withdraws
    r = await api.client.put("/v1/suppressions/email/c2@example.pl", headers=api.as_("admin"))
    assert r.status_code == 201
    d = dispatcher(api, port)
    await d.run_until_idle()
    await d.close()
    assert handler.messages == []
    c = await counts(api)
    assert (c["withdrawn"], c["suppressed"], c["sent"]) == (1, 1, 0)
    from tests.api.test_approvals import reservations

    assert reservations(api) == []


async def test_withdrawal_mid_campaign_residual_is_bounded(api: Api, sink: tuple[Handler, int]) -> None:
    """COMPLIANCE edge 8, measured: 300 recipients; after the 30th delivery every recipient loses the
    topic in one transaction. Only messages already re-gated (at most one chunk in flight per channel)
    may still leave; the rest are withdrawn."""
    import asyncio

    handler, port = sink
    await campaign(api)
    ids = [f"m{i:03d}" for i in range(300)]
    for cid in ids:
        await customer(api, cid, {**_profile(cid)})
    await send(api, ids)
    cut: list[int] = []

    def withdraw_everyone() -> None:  # a bulk withdrawal straight in the schema: one instant
        query(api, "DELETE FROM customer_topics WHERE topic_id = 'promotions'")

    async def after_send(item: object, outcome: object) -> None:
        if len(handler.messages) >= 30 and not cut:
            cut.append(-1)
            await asyncio.to_thread(withdraw_everyone)
            cut[0] = len(handler.messages)

    d = dispatcher(api, port, chunk_size=20, max_in_flight=40, after_send=after_send)
    await d.run_until_idle()
    await d.close()
    residual = len(handler.messages) - cut[0]
    c = await counts(api)
    assert c["sent"] == len(handler.messages) and c["sent"] + c["withdrawn"] == 300
    assert residual <= 40, residual  # the in-flight bound
    assert c["withdrawn"] >= 300 - cut[0] - 40
    print(f"withdrawal after {cut[0]} deliveries: {residual} more left (in flight), {c['withdrawn']} stopped")


async def send_c1_and_dispatch(api: Api, port: int) -> None:
    """The shipped campaign sent to one customer, c1, and the dispatcher run until nothing is due."""
    await campaign(api)
    await customer(api, "c1")
    await send(api, ["c1"])
    d = dispatcher(api, port)
    await d.run_until_idle()
    await d.close()


def _profile(cid: str) -> dict[str, object]:
    from tests.conftest import PROFILE

    contacts = {**PROFILE["contacts"], "email": f"{cid}@example.pl"}  # type: ignore[dict-item]
    return {**PROFILE, "contacts": contacts}


async def test_quiet_hours_deferral_is_sent_after_the_window(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """A deferred message is queued as deferred, not sent before not_before, sent after it, and reserves
    at the instant it is allowed (API.md: a deferred message reserves when allowed at re-gate)."""
    handler, port = sink
    await campaign(api)
    # 09:00 UTC is 10:00 in Warsaw: quiet until 12:00 local (11:00 UTC).
    await customer(api, "c1", quiet_hours={"start": "09:00", "end": "12:00"})
    answer = await send(api, ["c1"])
    assert answer["decisions"][0]["verdict"] == "defer"
    assert answer["decisions"][0]["not_before"] == "2026-11-22T11:00:00Z"
    assert (await counts(api))["deferred"] == 1
    d = dispatcher(api, port)
    assert await d.run_until_idle() == 0
    clock.advance(hours=1, minutes=59)
    assert await d.run_until_idle() == 0
    clock.advance(minutes=1)
    assert await d.run_until_idle() == 1
    await d.close()
    assert len(handler.messages) == 1
    from tests.api.test_approvals import reservations

    assert reservations(api) == [("c1", "black-friday")]
    assert (await counts(api))["sent"] == 1


async def test_temporary_failure_retries_then_succeeds(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """4xx at RCPT and at DATA: retried with backoff (not before it), then delivered once."""
    handler, port = sink
    handler.rcpt_replies = ["451 4.3.0 try later"]
    handler.data_replies = ["421 4.3.2 busy"]
    await campaign(api)
    await customer(api, "c1")
    await send(api, ["c1"])
    d = dispatcher(api, port)
    await d.run_until_idle()
    assert outbox(api)[0][3:5] == ("queued", 1)
    assert "451" in outbox(api)[0][5]
    clock.advance(seconds=29)
    assert await d.run_until_idle() == 0  # backoff 30 s (jitter pinned to the full delay)
    clock.advance(seconds=1)
    await d.run_until_idle()
    assert handler.messages == []
    clock.advance(seconds=60)
    await d.run_until_idle()
    await d.close()
    assert len(handler.messages) == 1
    assert outbox(api)[0][3:5] == ("sent", 3)


async def test_permanent_rcpt_rejection_suppresses_the_address(api: Api, sink: tuple[Handler, int]) -> None:
    """5xx at RCPT: the address is suppressed (ledger source bounce), the message counted suppressed, the
    reservation released; the next send is denied suppressed."""
    handler, port = sink
    # the reply echoes the address, as many servers' do: it is kept (ledger evidence, which outlives an
    # erasure and goes to webhook receivers; the message's last_error) only with the address redacted
    handler.rcpt_replies = ["550 5.1.1 <Ola.Nowak@example.pl>: no such user +48600100200"]
    await send_c1_and_dispatch(api, port)
    assert handler.messages == []
    kept = str(query(api, "SELECT evidence FROM consent_events")) + str(
        query(api, "SELECT last_error FROM outbox")
    )
    assert "[redacted]" in kept and "example.pl" not in kept.lower() and "600100200" not in kept
    assert (await counts(api))["suppressed"] == 1
    r = await api.client.get("/v1/suppressions?channel=email", headers=api.as_("auditor"))
    (row,) = r.json()["suppressions"]
    assert row["reason"] == "bounce" and "@" not in row["address_ref"]
    events = (await api.client.get("/v1/consent-events?customer_id=c1", headers=api.as_("auditor"))).json()
    last = events["events"][-1]
    assert (last["subject"], last["source"], last["actor"]) == ("suppression:email", "bounce", "system")
    assert last["value"] == {"suppressed": True, "address_ref": row["address_ref"], "reason": "bounce"}
    again = await send(api, ["c1"], "black-friday")
    assert again["decisions"][0]["reason"] == "suppressed"


async def test_other_5xx_fails_without_suppressing(api: Api, sink: tuple[Handler, int]) -> None:
    """A 5xx that is not about the recipient (here: content at DATA) fails the message, suppresses no one."""
    handler, port = sink
    handler.data_replies = ["554 5.6.0 content rejected"]
    await send_c1_and_dispatch(api, port)
    assert (await counts(api))["failed"] == 1
    r = await api.client.get("/v1/suppressions", headers=api.as_("auditor"))
    assert r.json()["suppressions"] == []


async def test_server_down_delays_but_loses_nothing(api: Api, clock: FakeClock) -> None:
    """Connection refused is temporary: the messages stay queued and go once the server is up."""
    from tests.live import free_port
    from tests.smtp.sink import smtp_sink

    port = free_port()
    await campaign(api)
    await customer(api, "c1")
    await customer(api, "c2", _profile("c2"))
    await send(api, ["c1", "c2"])
    d = dispatcher(api, port)
    await d.run_until_idle()
    assert [row[3] for row in outbox(api)] == ["queued", "queued"]
    with smtp_sink(port) as (handler, _):
        clock.advance(minutes=1)
        await d.run_until_idle()
        await d.close()
        assert sorted(m["To"] for m in handler.messages) == ["c2@example.pl", "ola@example.pl"]
    assert (await counts(api))["sent"] == 2


async def test_enhanced_5_1_status_at_data_suppresses(api: Api, sink: tuple[Handler, int]) -> None:
    """API.md: an enhanced status 5.1.x is a permanent rejection of the recipient wherever it comes."""
    handler, port = sink
    handler.data_replies = ["550 5.1.1 mailbox no longer exists"]
    await send_c1_and_dispatch(api, port)
    assert (await counts(api))["suppressed"] == 1
    r = await api.client.get("/v1/suppressions?channel=email", headers=api.as_("auditor"))
    assert [s["reason"] for s in r.json()["suppressions"]] == ["bounce"]
