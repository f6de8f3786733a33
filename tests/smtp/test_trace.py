"""One trace per message (issue 13, API.md "Auditor's answers"): ``GET
/v1/campaigns/{campaign_id}/trace/{customer_id}`` and ``prefcenter trace``, through a real SMTP server
(aiosmtpd on 127.0.0.1), on both engines.

Each story is scripted on the fake clock, and the trace's decisions, message history, consent and
inbound events are written out by hand (the ledger events' full objects are compared with the export's).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import msgspec

from prefcenter.domain.policy import policy_version
from tests.api.test_approvals import campaign, customer
from tests.conftest import POLICY_FILE, PROFILE, SECRET, Api, FakeClock, prefs_body, query
from tests.smtp.helpers import dispatcher, send
from tests.smtp.sink import Handler

PHONE = "+48600100200"  # PROFILE's sms and voice number
POLICY = policy_version(POLICY_FILE.read_bytes())  # the shipped policy's version, as every decision records it


def profile(email: str, phone: str = PHONE) -> dict[str, Any]:
    return {**PROFILE, "contacts": {"email": email, "sms": phone, "voice": phone}}


async def trace(api: Api, customer_id: str, cid: str = "black-friday", role: str = "auditor") -> Any:
    return await api.client.get(f"/v1/campaigns/{cid}/trace/{customer_id}", headers=api.as_(role))


async def ledger(api: Api) -> dict[int, dict[str, Any]]:
    """Every ledger event as the export gives it, by seq."""
    r = await api.client.get("/v1/consent-events?limit=1000", headers=api.as_("auditor"))
    assert r.status_code == 200, r.text
    return {e["seq"]: e for e in r.json()["events"]}


def allowed(at: str, kind: str) -> dict[str, Any]:
    return {
        "at": at,
        "kind": kind,
        "verdict": "allow",
        "reason": "allowed",
        "channel": "email",
        "not_before": None,
        "policy_version": POLICY,
        "explain": {"rule": "allowed"},
    }


async def delivered_after_a_4xx(api: Api, handler: Handler, port: int, clock: FakeClock) -> None:
    """c1 (opted in at 09:00:00) is sent black-friday at 09:00:05; the server answers its first DATA
    with a 4xx quoting the address (09:00:06), accepts the retry 30 s later (the backoff, jitter pinned)."""
    handler.data_replies = ["421 4.3.2 busy, try <ola@example.pl> later"]
    await campaign(api)
    await customer(api, "c1")  # seq 1, 2
    clock.advance(seconds=5)
    answer = await send(api, ["c1"])
    assert answer["decisions"][0]["verdict"] == "allow"
    d = dispatcher(api, port)
    try:
        clock.advance(seconds=1)
        assert await d.run_until_idle() == 1
        clock.advance(seconds=29)
        assert await d.run_until_idle() == 0  # not before its backoff
        clock.advance(seconds=1)
        assert await d.run_until_idle() == 1
    finally:
        await d.close()
    assert len(handler.messages) == 1


DELIVERED_HISTORY = [
    {"at": "2026-11-22T09:00:05Z", "event": "queued", "detail": {"channel": "email"}},
    {"at": "2026-11-22T09:00:06Z", "event": "handoff", "detail": {"attempt": 1, "channel": "email"}},
    {
        "at": "2026-11-22T09:00:06Z",
        "event": "temporary_failure",
        "detail": {
            "attempt": 1,
            "code": 421,
            "reply": "421 4.3.2 busy, try <[redacted]> later",
            "retry_at": "2026-11-22T09:00:36Z",
        },
    },
    {"at": "2026-11-22T09:00:36Z", "event": "handoff", "detail": {"attempt": 2, "channel": "email"}},
    {"at": "2026-11-22T09:00:36Z", "event": "accepted", "detail": {"attempt": 2, "code": 250}},
    {"at": "2026-11-22T09:00:36Z", "event": "sent", "detail": None},
]


async def test_the_story_of_one_message(api: Api, sink: tuple[Handler, int], clock: FakeClock) -> None:
    """Opt-in, send, a 4xx then delivery, then a STOP from the customer's number: the decisions, the
    history (redacted reply), the ledger up to the last decision, and every suppression event of the
    customer's addresses, also those written for another customer with the same number, but not those
    of someone else's number."""
    handler, port = sink
    await delivered_after_a_4xx(api, handler, port, clock)
    await customer(api, "c2", profile("c2@example.pl"))  # the same phone: seq 3, 4
    await customer(api, "c3", profile("c3@example.pl", "+48600999888"))  # seq 5, 6
    clock.advance(minutes=5)
    for sender in (PHONE, "+48600999888"):
        r = await api.client.post(
            "/v1/inbound/sms", json={"from": sender, "text": "STOP"}, headers=api.as_("marketing")
        )
        assert r.status_code == 200, r.text

    r = await trace(api, "c1")
    assert r.status_code == 200, r.text
    body = r.json()
    assert list(body) == ["campaign_id", "customer_id", "decisions", "message", "consent", "inbound"]
    assert (body["campaign_id"], body["customer_id"]) == ("black-friday", "c1")
    assert body["decisions"] == [allowed("2026-11-22T09:00:05Z", "send")]
    assert body["message"] == {"status": "sent", "attempts": 2, "history": DELIVERED_HISTORY}
    events = await ledger(api)
    # c1's opt-in (at 09:00:00, before the send's decision); its STOP events came after it
    assert [(e["seq"], e["subject"], e["action"], e["source"]) for e in body["consent"]] == [
        (1, "channel:email", "grant", "crm"),
        (2, "topic:promotions", "grant", "crm"),
    ]
    assert body["consent"] == [events[1], events[2]]
    # the STOP of c1's number: an sms and a voice (marketing-only) event for each customer holding it;
    # c1's trace shows c1's, never those written for c2 (another person's id and pseudonym)
    assert [
        (e["seq"], e["customer_id"], e["subject"], e["source"])
        for e in events.values()
        if 7 <= e["seq"] <= 10
    ] == [
        (7, "c1", "suppression:sms", "sms_keyword"),
        (8, "c2", "suppression:sms", "sms_keyword"),
        (9, "c1", "suppression:voice", "sms_keyword"),
        (10, "c2", "suppression:voice", "sms_keyword"),
    ]
    assert body["inbound"] == [events[7], events[9]]
    assert '"c2"' not in r.text and events[8]["customer_ref"] not in r.text
    assert [e["customer_id"] for e in events.values() if e["seq"] > 10] == ["c3", "c3"]  # not c1's
    assert "example.pl" not in r.text and "600100200" not in r.text  # no address anywhere
    # the history rows as stored: in the order written, no address in any detail
    rows = query(api, "SELECT event FROM message_history WHERE customer_id = 'c1' ORDER BY id")
    assert [row[0] for row in rows] == [h["event"] for h in DELIVERED_HISTORY[1:]]

    # c2 has a decision for no campaign and no message: its trace is its record's
    r = await trace(api, "c2")
    assert r.status_code == 200, r.text
    assert (r.json()["decisions"], r.json()["message"]) == ([], None)
    assert [e["seq"] for e in r.json()["consent"]] == [3, 4, 8, 10]  # no decision: all of its events
    assert [e["seq"] for e in r.json()["inbound"]] == [8, 10]  # its own, not c1's


async def test_a_bounce_after_delivery_is_inbound(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """A permanent bounce reported after the message went (inbound email event): the customer's own
    bounce-sourced suppression event is in ``inbound``; the message's history is unchanged."""
    handler, port = sink
    await delivered_after_a_4xx(api, handler, port, clock)
    clock.advance(hours=1)
    r = await api.client.post(
        "/v1/inbound/email-events",
        json={"type": "bounce", "address": "ola@example.pl"},
        headers=api.as_("marketing"),
    )
    assert r.status_code == 200, r.text
    body = (await trace(api, "c1")).json()
    assert body["message"]["history"] == DELIVERED_HISTORY
    assert [(e["seq"], e["subject"], e["source"], e["value"]["reason"]) for e in body["inbound"]] == [
        (3, "suppression:email", "bounce", "bounce")
    ]
    assert [e["seq"] for e in body["consent"]] == [1, 2]


async def test_withdrawn_and_deferred_at_the_re_gate(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """c1 opts out and c2 pauses after the send queued them: the dispatcher's re-gate withdraws c1's
    message and defers c2's; both are re-gate decisions and history events, nothing is handed off."""
    handler, port = sink
    await campaign(api)
    await customer(api, "c1")  # seq 1, 2
    await customer(api, "c2", profile("c2@example.pl"))  # seq 3, 4
    clock.advance(seconds=5)
    await send(api, ["c1", "c2"])
    clock.advance(seconds=5)
    await customer(api, "c1", channel=None, topics=[])  # 09:00:10, seq 5, 6: withdraws
    paused = prefs_body(quiet_hours=None, max_per_week=None, paused_until="2026-11-25T00:00:00Z")
    r = await api.client.put("/v1/customers/c2/preferences", json=paused, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    clock.advance(seconds=5)
    d = dispatcher(api, port)
    try:
        assert await d.run_until_idle() == 2
    finally:
        await d.close()
    assert handler.messages == []

    body = (await trace(api, "c1")).json()
    denied = {**allowed("2026-11-22T09:00:15Z", "regate"), "verdict": "deny", "channel": None}
    denied |= {"reason": "no_channel", "explain": {"rule": "no_channel"}}
    assert body["decisions"] == [allowed("2026-11-22T09:00:05Z", "send"), denied]
    assert body["message"] == {
        "status": "withdrawn",
        "attempts": 0,
        "history": [
            {"at": "2026-11-22T09:00:05Z", "event": "queued", "detail": {"channel": "email"}},
            {"at": "2026-11-22T09:00:15Z", "event": "withdrawn", "detail": {"reason": "no_channel"}},
        ],
    }
    # the revocation at 09:00:10 is before the last decision (09:00:15)
    assert [(e["seq"], e["subject"], e["action"]) for e in body["consent"]] == [
        (1, "channel:email", "grant"),
        (2, "topic:promotions", "grant"),
        (5, "channel:email", "withdraw"),
        (6, "topic:promotions", "withdraw"),
    ]
    assert body["inbound"] == []

    body = (await trace(api, "c2")).json()
    (queued, regate) = body["decisions"]
    assert queued == allowed("2026-11-22T09:00:05Z", "send")
    assert regate == {
        "at": "2026-11-22T09:00:15Z",
        "kind": "regate",
        "verdict": "defer",
        "reason": "paused",
        "channel": "email",
        "not_before": "2026-11-25T00:00:00Z",
        "policy_version": POLICY,
        "explain": {"rule": "pause", "until": "2026-11-25T00:00:00Z"},  # domain/explain.py's, kept
    }
    assert body["message"] == {
        "status": "deferred",
        "attempts": 0,
        "history": [
            {"at": "2026-11-22T09:00:05Z", "event": "queued", "detail": {"channel": "email"}},
            {
                "at": "2026-11-22T09:00:15Z",
                "event": "deferred",
                "detail": {"reason": "paused", "not_before": "2026-11-25T00:00:00Z"},
            },
        ],
    }
    assert [(e["seq"], e["subject"]) for e in body["consent"]] == [
        (3, "channel:email"),
        (4, "topic:promotions"),
        (7, "pause"),
    ]


async def test_erasure_removes_the_history_and_the_trace(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """The history rows go with the customer; after the erasure the trace is a 404 (no record, no
    decision, no message). Unknown campaigns and customers are 404s, bad ids 400s; marketing may not
    read it (API.md: admin and auditor)."""
    handler, port = sink
    await delivered_after_a_4xx(api, handler, port, clock)
    await customer(api, "c2", profile("c2@example.pl"))
    await send(api, ["c2"])
    d = dispatcher(api, port)
    try:
        await d.run_until_idle()
    finally:
        await d.close()
    count = "SELECT customer_id, count(*) FROM message_history GROUP BY customer_id ORDER BY 1"
    assert query(api, count) == [("c1", 5), ("c2", 3)]

    assert (await trace(api, "c1", role="marketing")).status_code == 403
    as_admin = await trace(api, "c1", role="admin")  # admin: everything (API.md "Roles")
    assert as_admin.json() == (await trace(api, "c1")).json()
    r = await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))
    assert r.status_code == 204, r.text
    assert query(api, count) == [("c2", 3)]
    r = await trace(api, "c1")
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    assert (await trace(api, "nobody")).status_code == 404
    assert (await trace(api, "c2", cid="no-such-campaign")).status_code == 404
    assert (await trace(api, "c2", cid="Bad Campaign!")).status_code == 400
    assert (await trace(api, "c2")).status_code == 200  # the remaining customer still answers


def run_cli(api: Api, *args: str) -> subprocess.CompletedProcess[str]:
    settings = api.rt.settings
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": settings.database_url,
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    if settings.database_schema:
        env["PREFCENTER_DATABASE_SCHEMA"] = settings.database_schema
    return subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_the_command_prints_the_same_json(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    """``prefcenter trace CAMPAIGN CUSTOMER`` reads the configured database and prints the API's answer;
    an unknown customer is an error naming it."""
    handler, port = sink
    await delivered_after_a_4xx(api, handler, port, clock)
    r = await trace(api, "c1")
    assert r.status_code == 200, r.text
    done = await asyncio.to_thread(run_cli, api, "trace", "black-friday", "c1")
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout) == r.json()
    assert done.stdout.strip() == r.text
    assert msgspec.json.decode(done.stdout)["message"]["history"] == DELIVERED_HISTORY
    done = await asyncio.to_thread(run_cli, api, "trace", "black-friday", "nobody")
    assert done.returncode == 1 and "no customer 'nobody'" in done.stderr
