"""``GET /v1/customers/{id}/consent-state?at=T`` and ``prefcenter consent state`` from the auditor's side
(API.md "Auditor's answers", issue 13 item 1).

One scripted history, the clock moved by hand, every event's seq known: grants (crm), an API change
(channel switch, topic, quiet hours, cap, pause), a second customer's page save (stop all marketing), a
texted STOP, an erasure and a new customer with the same id. For several instants the expected state
and proof are written out here; each proof is checked against the JSONL export (each event with that
seq has that hash, subject and customer_ref), the chain is recomputed from the export up to the
answer's head (and ``/verify?head=`` agrees), and the CLI over the export prints the same document.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgspec
import pytest

from prefcenter.domain.ledger import verify_events
from prefcenter.domain.pseudonyms import Pseudonymizer
from tests.conftest import PROFILE, SECRET, Api, FakeClock, prefs_body, query

FORM = {"content-type": "application/x-www-form-urlencoded"}
PROFILE2 = {
    "timezone": "Europe/Bucharest",
    "locale": "en",
    "country": "RO",
    "contacts": {"email": "ana@example.ro", "sms": "+40712345678"},
}
QUIET = {"start": "21:00", "end": "08:00"}
NOTHING: dict[str, Any] = {
    "channel": None,
    "topics": [],
    "quiet_hours": None,
    "max_per_week": None,
    "paused_until": None,
}
REF = Pseudonymizer(SECRET).customer_ref


def api_prefs(**overrides: Any) -> dict[str, Any]:
    """A preferences body from the API caller (source api), nothing set unless given."""
    body: dict[str, Any] = {
        "channel": None,
        "topics": [],
        "quiet_hours": None,
        "max_per_week": None,
        "paused_until": None,
    }
    provenance = {"source": "api", "actor": "app", "notice_version": "2026-10", "evidence": {}}
    return prefs_body(**{**body, "provenance": provenance, **overrides})


async def put(api: Api, path: str, body: Any, role: str = "marketing") -> None:
    r = await api.client.put(path, json=body, headers=api.as_(role))
    assert r.status_code in (200, 201), r.text


async def state(api: Api, cid: str, at: str | None = None, role: str = "auditor") -> dict[str, Any]:
    params = {"at": at} if at is not None else {}
    r = await api.client.get(f"/v1/customers/{cid}/consent-state", params=params, headers=api.as_(role))
    assert r.status_code == 200, r.text
    answer: dict[str, Any] = r.json()
    return answer


def proof(*events: tuple[int, str]) -> list[tuple[int, str]]:
    return list(events)


def shape(answer: dict[str, Any]) -> tuple[str, dict[str, Any], list[tuple[int, str]], int]:
    """(at, state, [(seq, subject)], head seq) of an answer (the hashes are checked on the export)."""
    return (
        answer["at"],
        answer["state"],
        [(e["seq"], e["subject"]) for e in answer["events"]],
        answer["head"]["seq"],
    )


async def page_stop_all(api: Api, cid: str) -> None:
    """The customer's own page: one click on "stop all marketing" (a page save, source preference_page)."""
    r = await api.client.post(f"/v1/customers/{cid}/links", json={}, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    manage = urlsplit(r.json()["manage_url"]).path
    page = await api.client.get(manage)
    assert page.status_code == 200, page.text
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    r = await api.client.post(
        manage,
        content=urlencode([("csrf", match.group(1)), ("action", "stop_all")]),
        headers=FORM,
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text


async def history(api: Api, clock: FakeClock) -> dict[str, dict[str, Any]]:
    """The scripted history (each step's events and seqs in the comments); returns the answers asked
    for "now" (no ``at``) along the way, by name."""
    live: dict[str, dict[str, Any]] = {}
    clock.t = clock.t.replace(hour=8, minute=0)
    await put(api, "/v1/customers/c1", PROFILE)
    await put(api, "/v1/customers/c2", PROFILE2)
    live["before"] = await state(api, "c1")  # a customer without events: nothing, head 0
    clock.t = clock.t.replace(hour=9)
    # 1 grant channel:email, 2 grant topic:promotions (crm)
    await put(api, "/v1/customers/c1/preferences", prefs_body(quiet_hours=None, max_per_week=None))
    clock.t = clock.t.replace(minute=30)
    # 3 grant channel:email, 4 grant topic:promotions (c2)
    await put(api, "/v1/customers/c2/preferences", prefs_body(quiet_hours=None, max_per_week=None))
    clock.t = clock.t.replace(hour=10, minute=0)
    # 5 withdraw channel:email, 6 grant channel:sms, 7 grant topic:product-news, 8 update quiet_hours
    await put(
        api,
        "/v1/customers/c1/preferences",
        api_prefs(channel="sms", topics=["promotions", "product-news"], quiet_hours=QUIET),
    )
    clock.t = clock.t.replace(hour=11)
    # 9 update max_per_week 3, 10 update pause
    await put(
        api,
        "/v1/customers/c1/preferences",
        api_prefs(
            channel="sms",
            topics=["product-news", "promotions"],
            quiet_hours=QUIET,
            max_per_week=3,
            paused_until="2026-12-01T01:00:00+01:00",
        ),
    )
    clock.t = clock.t.replace(minute=30)
    # 11 withdraw channel:email, 12 withdraw topic:promotions, 13 suppression:email (c2's page)
    await page_stop_all(api, "c2")
    clock.t = clock.t.replace(hour=12, minute=0)
    # 14 suppression:sms, 15 withdraw channel:sms (sms_keyword), 16 suppression:voice (c1's number)
    r = await api.client.post(
        "/v1/inbound/sms", json={"from": "+48600100200", "text": "STOP"}, headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text
    live["after_stop"] = await state(api, "c1", role="marketing")
    clock.t = clock.t.replace(hour=13)
    # 17 withdraw topic:product-news, 18 withdraw topic:promotions, 19-21 quiet_hours, max, pause -> null
    r = await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))
    assert r.status_code == 204, r.text
    clock.t = clock.t.replace(minute=30)
    live["erased"] = await state(api, "c1")  # no customer row: answered from the ledger, by id
    clock.t = clock.t.replace(hour=14, minute=0)
    # a new person with the same id: 22 grant channel:email, 23 grant topic:product-news
    await put(api, "/v1/customers/c1", {**PROFILE, "contacts": {"email": "ola@example.pl"}})
    await put(api, "/v1/customers/c1/preferences", api_prefs(channel="email", topics=["product-news"]))
    return live


async def export(api: Api) -> list[bytes]:
    r = await api.client.get("/v1/consent-events/export?format=jsonl", headers=api.as_("auditor"))
    assert r.status_code == 200
    return [line for line in r.content.splitlines() if line.strip()]


async def check_proof(api: Api, answer: dict[str, Any], lines: list[bytes], ref: str) -> None:
    """Every proof event is in the export with that hash and subject, and the customer's; the chain
    recomputed from the export up to the head ends at the head's hash; /verify?head= agrees."""
    events = [msgspec.json.decode(line) for line in lines]
    for e in answer["events"]:
        exported = events[e["seq"] - 1]
        assert exported["seq"] == e["seq"]
        assert (exported["hash"], exported["subject"], exported["customer_ref"]) == (
            e["hash"],
            e["subject"],
            ref,
        )
        assert datetime.fromisoformat(exported["at"]) <= datetime.fromisoformat(answer["at"])
    head = answer["head"]
    if head["seq"] == 0:
        assert head["hash"] == "0" * 64
        return
    assert events[head["seq"] - 1]["hash"] == head["hash"]
    result = verify_events(events[: head["seq"]], customer_ref=REF)
    assert result.ok and result.events == head["seq"] and result.head == head["hash"]
    r = await api.client.get(
        "/v1/consent-events/verify", params={"head": head["hash"]}, headers=api.as_("auditor")
    )
    assert r.json()["ok"] is True, r.json()


def cli_state(tmp_path: Path, file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    return subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "consent", "state", "--file", str(file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


# (customer, at, expected at, expected state, expected [(seq, subject)]) — the head is 23 for all.
EXPECTED: list[tuple[str, str, str, dict[str, Any], list[tuple[int, str]]]] = [
    ("c1", "2026-11-22T08:59:59Z", "2026-11-22T08:59:59Z", NOTHING, []),
    (
        "c1",
        "2026-11-22T09:00:00Z",
        "2026-11-22T09:00:00Z",
        {**NOTHING, "channel": "email", "topics": ["promotions"]},
        proof((1, "channel:email"), (2, "topic:promotions")),
    ),
    (
        "c1",
        "2026-11-22T09:59:59.999999Z",
        "2026-11-22T09:59:59.999999Z",
        {**NOTHING, "channel": "email", "topics": ["promotions"]},
        proof((1, "channel:email"), (2, "topic:promotions")),
    ),
    (
        "c1",
        "2026-11-22T11:00:00+01:00",  # 10:00 UTC: the instant of the API change
        "2026-11-22T10:00:00Z",
        {**NOTHING, "channel": "sms", "topics": ["product-news", "promotions"], "quiet_hours": QUIET},
        proof(
            (2, "topic:promotions"),
            (5, "channel:email"),
            (6, "channel:sms"),
            (7, "topic:product-news"),
            (8, "quiet_hours"),
        ),
    ),
    (
        "c1",
        "2026-11-22T11:15:00Z",
        "2026-11-22T11:15:00Z",
        {
            "channel": "sms",
            "topics": ["product-news", "promotions"],
            "quiet_hours": QUIET,
            "max_per_week": 3,
            "paused_until": "2026-12-01T00:00:00Z",
        },
        proof(
            (2, "topic:promotions"),
            (5, "channel:email"),
            (6, "channel:sms"),
            (7, "topic:product-news"),
            (8, "quiet_hours"),
            (9, "max_per_week"),
            (10, "pause"),
        ),
    ),
    (
        "c1",
        "2026-11-22T12:00:00Z",  # the STOP: no channel; the suppressions are not part of the state
        "2026-11-22T12:00:00Z",
        {
            "channel": None,
            "topics": ["product-news", "promotions"],
            "quiet_hours": QUIET,
            "max_per_week": 3,
            "paused_until": "2026-12-01T00:00:00Z",
        },
        proof(
            (2, "topic:promotions"),
            (5, "channel:email"),
            (7, "topic:product-news"),
            (8, "quiet_hours"),
            (9, "max_per_week"),
            (10, "pause"),
            (15, "channel:sms"),
        ),
    ),
    (
        "c1",
        "2026-11-22T13:00:00Z",  # erased: nothing, proved by the erasure's own events
        "2026-11-22T13:00:00Z",
        NOTHING,
        proof(
            (17, "topic:product-news"),
            (18, "topic:promotions"),
            (19, "quiet_hours"),
            (20, "max_per_week"),
            (21, "pause"),
        ),
    ),
    (
        "c1",
        "2026-11-22T14:00:00Z",  # the new person with the same id starts from nothing
        "2026-11-22T14:00:00Z",
        {**NOTHING, "channel": "email", "topics": ["product-news"]},
        proof(
            (18, "topic:promotions"),
            (19, "quiet_hours"),
            (20, "max_per_week"),
            (21, "pause"),
            (22, "channel:email"),
            (23, "topic:product-news"),
        ),
    ),
    (
        "c2",
        "2026-11-22T11:29:59Z",
        "2026-11-22T11:29:59Z",
        {**NOTHING, "channel": "email", "topics": ["promotions"]},
        proof((3, "channel:email"), (4, "topic:promotions")),
    ),
    (
        "c2",
        "2026-11-22T11:30:00Z",  # the page's stop all marketing
        "2026-11-22T11:30:00Z",
        NOTHING,
        proof((11, "channel:email"), (12, "topic:promotions")),
    ),
]


async def test_scripted_history_answers_by_hand_with_proof(
    api: Api, clock: FakeClock, tmp_path: Path
) -> None:
    live = await history(api, clock)
    lines = await export(api)
    assert len(lines) == 23
    sources = [msgspec.json.decode(line)["source"] for line in lines]
    assert (
        sources[10:16] == ["preference_page"] * 3 + ["sms_keyword"] * 3 and sources[16:21] == ["erasure"] * 5
    )
    file = tmp_path / "export.jsonl"
    file.write_bytes(b"\n".join(lines) + b"\n")

    for cid, at, want_at, want_state, want_events in EXPECTED:
        answer = await state(api, cid, at)
        assert answer["customer_id"] == cid
        assert shape(answer) == (want_at, want_state, want_events, 23), (cid, at)
        await check_proof(api, answer, lines, REF(cid))

    # asked "now" along the way: the state then, and the head then (on the chain: /verify?head=)
    assert shape(live["before"]) == ("2026-11-22T08:00:00Z", NOTHING, [], 0)
    assert live["before"]["head"]["hash"] == "0" * 64
    at_stop = await state(api, "c1", "2026-11-22T12:00:00Z")
    assert shape(live["after_stop"]) == ("2026-11-22T12:00:00Z", at_stop["state"], shape(at_stop)[2], 16)
    assert live["erased"]["customer_id"] == "c1"
    assert shape(live["erased"]) == ("2026-11-22T13:30:00Z", NOTHING, EXPECTED[6][4], 21)
    for answer in live.values():
        await check_proof(api, answer, lines, REF("c1"))

    # the CLI over the export: the same document (by id with the key, by pseudonym without)
    for cid, at, *_ in (EXPECTED[4], EXPECTED[6], EXPECTED[7], EXPECTED[9]):
        answer = await state(api, cid, at)
        by_id = cli_state(tmp_path, file, "--customer-id", cid, "--at", at)
        assert by_id.returncode == 0, by_id.stderr
        assert json.loads(by_id.stdout) == answer
        by_ref = cli_state(tmp_path, file, "--customer-ref", REF(cid), "--at", at)
        assert by_ref.returncode == 0, by_ref.stderr
        assert json.loads(by_ref.stdout) == {**answer, "customer_id": None}


async def test_every_reading_role_may_ask_and_bad_input_is_a_400(api: Api, clock: FakeClock) -> None:
    await put(api, "/v1/customers/c1", PROFILE)
    await put(api, "/v1/customers/c1/preferences", prefs_body())
    for role in ("admin", "marketing", "auditor"):
        answer = await state(api, "c1", role=role)
        assert answer["state"]["channel"] == "email" and answer["at"] == "2026-11-22T09:00:00Z"
    r = await api.client.get("/v1/customers/c1/consent-state")
    assert r.status_code == 401
    for bad in ("2026-11-22T09:00:00", "yesterday", "2026-11-22", "0001-01-01T00:00:00+01:00"):
        r = await api.client.get(
            "/v1/customers/c1/consent-state", params={"at": bad}, headers=api.as_("auditor")
        )
        assert r.status_code == 400, (bad, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "at" in r.text
    r = await api.client.get("/v1/customers/bad$id/consent-state", headers=api.as_("auditor"))
    assert r.status_code == 400
    for edge, status in (
        ("1900-01-01T00:00:00Z", 200),
        ("8999-12-31T23:59:59.999999Z", 200),
        ("1899-12-31T23:59:59Z", 400),
        ("9000-01-01T00:00:00.000001Z", 400),
    ):
        r = await api.client.get(
            "/v1/customers/c1/consent-state", params={"at": edge}, headers=api.as_("auditor")
        )
        assert r.status_code == status, (edge, r.text)
    r = await api.client.get(
        "/v1/customers/c1/consent-state?at=1900-01-01T00:00:00Z", headers=api.as_("auditor")
    )
    assert r.json()["state"] == NOTHING and r.json()["events"] == []
    doc = (await api.client.get("/schema/openapi.json")).json()
    op = doc["paths"]["/v1/customers/{customer_id}/consent-state"]["get"]
    assert op["operationId"] == "getConsentState" and op["security"] == [{"bearer": []}]
    roles = next(line for line in op["description"].splitlines() if line.startswith("**Roles:**"))
    assert {r.strip(" .") for r in roles.removeprefix("**Roles:**").split(",")} == {
        "admin",
        "marketing",
        "auditor",
    }
    assert [p["name"] for p in op["parameters"] if p["in"] == "query"] == ["at"]
    assert set(op["responses"]) == {"200", "400", "401", "403", "404"}


async def test_an_id_without_customer_or_events_is_404_an_erased_one_is_not(
    api: Api, clock: FakeClock
) -> None:
    r = await api.client.get("/v1/customers/nobody/consent-state", headers=api.as_("auditor"))
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    await put(api, "/v1/customers/c9", PROFILE)  # no preferences: no event, but a customer
    assert (await state(api, "c9"))["state"] == NOTHING
    r = await api.client.delete("/v1/customers/c9", headers=api.as_("admin"))
    assert r.status_code == 204
    # erased with nothing set: no erasure events, no row: unknown again
    r = await api.client.get("/v1/customers/c9/consent-state", headers=api.as_("auditor"))
    assert r.status_code == 404
    await put(api, "/v1/customers/c8", PROFILE)
    await put(api, "/v1/customers/c8/preferences", prefs_body(quiet_hours=None, max_per_week=None))
    clock.advance(minutes=5)
    assert (await api.client.delete("/v1/customers/c8", headers=api.as_("admin"))).status_code == 204
    answer = await state(api, "c8", "2026-11-22T09:00:00Z")  # before the erasure: what was in force
    assert answer["state"] == {**NOTHING, "channel": "email", "topics": ["promotions"]}
    assert [e["subject"] for e in answer["events"]] == ["channel:email", "topic:promotions"]
    assert (await state(api, "c8"))["state"] == NOTHING


async def test_the_answer_reads_the_ledger_alone(api: Api, clock: FakeClock) -> None:
    """The customers table says nothing to it: a row changed behind the API's back leaves the answer."""
    await put(api, "/v1/customers/c1", PROFILE)
    await put(api, "/v1/customers/c1/preferences", prefs_body())
    before = await state(api, "c1")
    query(api, "UPDATE customers SET channel = 'sms', max_per_week = 9 WHERE id = 'c1'")
    assert await state(api, "c1") == before
    assert before["state"] == {
        "channel": "email",
        "topics": ["promotions"],
        "quiet_hours": QUIET,
        "max_per_week": 2,
        "paused_until": None,
    }


@pytest.mark.sqlite_only
async def test_sqlite_reads_the_customer_index_not_the_ledger(api: Api) -> None:
    from prefcenter.store.sqlite.history import CUSTOMER_EVENTS_UNTIL_SQL

    plan = query(
        api, "EXPLAIN QUERY PLAN " + CUSTOMER_EVENTS_UNTIL_SQL, "a" * 64, "2026-11-22T09:00:00.000000Z"
    )
    details = [row[-1] for row in plan]
    assert any("consent_events_by_customer" in d for d in details), details
    assert not any(re.fullmatch(r"SCAN (e|x|consent_events)\b.*", d) for d in details), details


def test_the_cli_needs_one_customer_and_an_export(tmp_path: Path) -> None:
    file = tmp_path / "export.csv"
    file.write_text("seq,id,at\n1,x,y\n")
    r = cli_state(tmp_path, file, "--customer-ref", "0" * 64)
    assert r.returncode == 1 and "line 1" in r.stderr and "Traceback" not in r.stderr
    r = cli_state(tmp_path, file)
    assert r.returncode == 2 and "--customer-ref" in r.stderr
    r = cli_state(tmp_path, file, "--customer-ref", "nothex")
    assert r.returncode == 2 and "64 lowercase hex" in r.stderr
    r = cli_state(tmp_path, file, "--customer-ref", "0" * 64, "--at", "tomorrow")
    assert r.returncode == 2 and "at:" in r.stderr
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    r = cli_state(tmp_path, empty, "--customer-ref", "0" * 64, "--at", "2026-11-22T09:00:00Z")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {
        "customer_id": None,
        "at": "2026-11-22T09:00:00Z",
        "state": NOTHING,
        "events": [],
        "head": {"seq": 0, "hash": "0" * 64},
    }
