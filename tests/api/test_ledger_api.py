"""The consent ledger through the app and the SQLite file: export, verify, tampering, erasure, concurrency."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prefcenter.domain.ledger import EVENT_FIELDS, verify_events
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore
from tests.conftest import CRM_EVIDENCE, PROFILE, SECRET, Api, prefs_body


async def seed(api: Api, n: int = 3) -> None:
    for i in range(n):
        await api.client.put(f"/v1/customers/c{i}", json=PROFILE, headers=api.as_("marketing"))
        await api.client.put(
            f"/v1/customers/c{i}/preferences", json=prefs_body(), headers=api.as_("marketing")
        )
        api.rt.now.advance(minutes=1)  # type: ignore[attr-defined]


async def verify(api: Api, **params: str) -> dict[str, Any]:
    r = await api.client.get("/v1/consent-events/verify", params=params, headers=api.as_("auditor"))
    assert r.status_code == 200
    return r.json()


def tamper(db: Path, *statements: str) -> None:
    """What an attacker with the file can do: drop the append-only triggers, then edit."""
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER consent_events_append_only_update")
    conn.execute("DROP TRIGGER consent_events_append_only_delete")
    for sql in statements:
        conn.execute(sql)
    conn.commit()
    conn.close()


async def test_paging_and_filters(api: Api) -> None:
    await seed(api, 3)  # 4 events per customer, one minute apart
    r = await api.client.get("/v1/consent-events?limit=5", headers=api.as_("auditor"))
    page = r.json()
    assert [e["seq"] for e in page["events"]] == [1, 2, 3, 4, 5] and page["next_after_seq"] == 5
    r = await api.client.get("/v1/consent-events?limit=5&after_seq=10", headers=api.as_("auditor"))
    assert [e["seq"] for e in r.json()["events"]] == [11, 12] and r.json()["next_after_seq"] is None
    r = await api.client.get("/v1/consent-events?customer_id=c1", headers=api.as_("auditor"))
    assert {e["customer_id"] for e in r.json()["events"]} == {"c1"}
    r = await api.client.get(
        "/v1/consent-events",
        params={"since": "2026-11-22T09:01:00Z", "until": "2026-11-22T10:02:00+01:00"},
        headers=api.as_("auditor"),
    )
    assert [e["customer_id"] for e in r.json()["events"]] == ["c1"] * 4
    for bad in ({"since": "2026-11-22T09:01:00"}, {"until": "yesterday"}, {"limit": "0"}, {"limit": "1001"}):
        r = await api.client.get("/v1/consent-events", params=bad, headers=api.as_("auditor"))
        assert r.status_code == 400, bad


async def test_jsonl_export_recomputes_the_chain_and_csv_has_the_same_fields(api: Api) -> None:
    await seed(api, 3)
    r = await api.client.get("/v1/consent-events/export?format=jsonl", headers=api.as_("auditor"))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    events = [msgspec.json.decode(line) for line in r.content.splitlines()]
    assert len(events) == 12 and list(events[0]) == list(EVENT_FIELDS)
    head = await verify(api)
    result = verify_events(events, customer_ref=Pseudonymizer(SECRET).customer_ref)
    assert result.ok and result.head == head["head"]

    r = await api.client.get(
        "/v1/consent-events/export?format=csv&customer_id=c2", headers=api.as_("auditor")
    )
    rows = list(csv.reader(io.StringIO(r.text)))
    assert tuple(rows[0]) == EVENT_FIELDS and len(rows) == 5
    by_name = dict(zip(rows[0], rows[3], strict=True))
    assert (
        by_name["value"] == '{"start":"21:00","end":"08:00"}'
        and json.loads(by_name["evidence"]) == CRM_EVIDENCE
    )
    assert dict(zip(rows[0], rows[1], strict=True))["value"] == "null"
    r = await api.client.get("/v1/consent-events/export?format=xml", headers=api.as_("auditor"))
    assert r.status_code == 400


@pytest.mark.sqlite_only  # tamper(): drops SQLite triggers in the file
async def test_verify_names_the_first_bad_seq(api: Api) -> None:
    await seed(api, 3)
    ok = await verify(api)
    assert ok["ok"] and ok["events"] == 12
    db = api.rt.store.path  # type: ignore[attr-defined]
    tamper(db, "UPDATE consent_events SET value = '5' WHERE seq = 8")
    bad = await verify(api)
    assert bad == {"ok": False, "first_bad_seq": 8, "problem": bad["problem"]} and bad["problem"]


@pytest.mark.sqlite_only  # tamper()
async def test_verify_catches_removed_middle_and_newest_events(api: Api) -> None:
    await seed(api, 3)
    db = api.rt.store.path  # type: ignore[attr-defined]
    tamper(db, "DELETE FROM consent_events WHERE seq >= 11")
    result = await verify(api)
    assert not result["ok"] and result["first_bad_seq"] == 11
    tamper_more = sqlite3.connect(db)
    tamper_more.execute("DELETE FROM consent_events WHERE seq = 4")
    tamper_more.commit()
    tamper_more.close()
    result = await verify(api)
    assert result["first_bad_seq"] == 4


@pytest.mark.sqlite_only  # tamper()
async def test_verify_catches_reordered_rows(api: Api) -> None:
    await seed(api, 2)
    db = api.rt.store.path  # type: ignore[attr-defined]
    tamper(
        db,
        "UPDATE consent_events SET seq = -1 WHERE seq = 3",
        "UPDATE consent_events SET seq = 3 WHERE seq = 6",
        "UPDATE consent_events SET seq = 6 WHERE seq = -1",
    )
    result = await verify(api)
    assert not result["ok"] and result["first_bad_seq"] == 3


async def test_verify_with_an_auditor_head(api: Api) -> None:
    await seed(api, 1)
    earlier = (await verify(api))["head"]
    await seed(api, 2)
    assert (await verify(api, head=earlier))["ok"]
    result = await verify(api, head="0" * 63 + "1")
    assert not result["ok"]


@pytest.mark.sqlite_only  # sqlite3.IntegrityError (PostgreSQL: tests/unit/test_schema_parity.py)
async def test_events_are_append_only_in_the_database(api: Api) -> None:
    """COMPLIANCE C16: UPDATE/DELETE on events is refused."""
    await seed(api, 1)
    conn = sqlite3.connect(api.rt.store.path)  # type: ignore[attr-defined]
    for sql in (
        "UPDATE consent_events SET action = 'withdraw' WHERE seq = 1",
        "UPDATE consent_events SET customer_id = 'x' WHERE seq = 1",
        "DELETE FROM consent_events WHERE seq = 1",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    conn.close()


@pytest.mark.sqlite_only  # greps the SQLite file and its WAL
async def test_erasure_leaves_no_personal_data_in_the_files_and_the_ledger_verifies(api: Api) -> None:
    """API.md: after DELETE no byte of the person's contacts or id remains in the database files."""
    cid = "erase-me.7f3a9@example.org"
    secrets_ = [cid, "zofia.kowalska.91@example.pl", "+48601234567", "push-token-zk-8841"]
    profile = {**PROFILE, "contacts": {"email": secrets_[1], "sms": secrets_[2], "push": secrets_[3]}}
    assert (
        await api.client.put(f"/v1/customers/{cid}", json=profile, headers=api.as_("marketing"))
    ).status_code == 201
    for channel in ("email", "sms", "email"):
        await api.client.put(
            f"/v1/customers/{cid}/preferences", json=prefs_body(channel=channel), headers=api.as_("marketing")
        )
    await seed(api, 2)  # other people stay
    db = Path(api.rt.store.path)  # type: ignore[attr-defined]

    def files_contain(needle: str) -> list[str]:
        hits = []
        for f in db.parent.glob(db.name + "*"):
            data = f.read_bytes()
            for form in (needle.encode(), needle.encode("utf-16-le")):
                if form in data:
                    hits.append(f.name)
        return hits

    assert files_contain(secrets_[1])  # the check can see the data before erasure
    r = await api.client.delete(f"/v1/customers/{cid}", headers=api.as_("admin"))
    assert r.status_code == 204
    for needle in secrets_:
        assert files_contain(needle) == [], needle
    result = await verify(api)
    assert result["ok"]
    assert (await api.client.get(f"/v1/customers/{cid}", headers=api.as_("admin"))).status_code == 404
    # the pseudonymous proof remains: the withdrawal by erasure is on the chain
    ref = Pseudonymizer(SECRET).customer_ref(cid)
    events = [
        msgspec.json.decode(line)
        for line in (
            await api.client.get("/v1/consent-events/export", headers=api.as_("auditor"))
        ).content.splitlines()
    ]
    mine = [e for e in events if e["customer_ref"] == ref]
    assert mine and all(e["customer_id"] is None for e in mine)
    assert [(e["action"], e["subject"], e["source"]) for e in mine if e["source"] == "erasure"] == [
        ("withdraw", "channel:email", "erasure"),
        ("withdraw", "topic:promotions", "erasure"),
        ("update", "quiet_hours", "erasure"),  # every setting's end is on the chain too
        ("update", "max_per_week", "erasure"),
    ]
    assert (await api.client.delete(f"/v1/customers/{cid}", headers=api.as_("admin"))).status_code == 404


async def test_concurrent_preference_writes_never_lose_an_event_or_break_the_chain(api: Api) -> None:
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    channels = ["email", "sms", "push", "voice", None] * 8
    results = await asyncio.gather(
        *[
            api.client.put(
                "/v1/customers/c1/preferences",
                json=prefs_body(channel=ch, topics=["promotions"] if i % 2 else ["product-news"]),
                headers=api.as_("marketing"),
            )
            for i, ch in enumerate(channels)
        ]
    )
    assert all(r.status_code == 200 for r in results)
    assert (await verify(api))["ok"]
    events = (await api.client.get("/v1/consent-events?limit=1000", headers=api.as_("auditor"))).json()[
        "events"
    ]
    # replaying the events gives exactly the stored state: no change was lost between state and ledger
    channel, topics = None, set()
    for e in events:
        kind, _, name = e["subject"].partition(":")
        if kind == "channel":
            channel = name if e["action"] == "grant" else (None if channel == name else channel)
        elif kind == "topic":
            (topics.add if e["action"] == "grant" else topics.discard)(name)
    final = (await api.client.get("/v1/customers/c1/preferences", headers=api.as_("auditor"))).json()
    assert (channel, sorted(topics)) == (final["channel"], final["topics"])


@pytest.mark.sqlite_only  # a second SqliteStore on the file
async def test_two_processes_writing_one_file_keep_one_chain(api: Api, rt: Runtime) -> None:
    """Two stores on the same file (as two processes would be): BEGIN IMMEDIATE + busy_timeout serialise them."""
    await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    await api.client.put("/v1/customers/c2", json=PROFILE, headers=api.as_("marketing"))
    from prefcenter.domain.model import PreferencesWrite
    from prefcenter.services.customers import put_preferences

    other = Runtime(
        settings=rt.settings, store=SqliteStore(rt.store.path), pseudonyms=rt.pseudonyms, now=rt.now
    )  # type: ignore[attr-defined]
    await other.store.open()
    try:

        async def writes(r: Runtime, cid: str) -> None:
            for i in range(15):
                body = prefs_body(channel=["email", "sms", None][i % 3])
                await put_preferences(
                    r, cid, msgspec.convert(body, PreferencesWrite), if_match=None, caller_role="marketing"
                )

        await asyncio.gather(writes(rt, "c1"), writes(other, "c2"))
    finally:
        await other.store.close()
    result = await verify(api)
    assert result["ok"]
    seqs = [
        e["seq"]
        for e in (await api.client.get("/v1/consent-events?limit=1000", headers=api.as_("auditor"))).json()[
            "events"
        ]
    ]
    assert seqs == list(range(1, len(seqs) + 1))


async def test_consent_receipt_shows_when_and_how(api: Api) -> None:
    await seed(api, 1)
    r = await api.client.get("/v1/customers/c0/consent-receipt", headers=api.as_("auditor"))
    assert r.status_code == 200
    receipt = r.json()
    assert receipt["pii_principal_id"] == Pseudonymizer(SECRET).customer_ref("c0")
    assert [c["processing_method"] for c in receipt["consents"]] == ["channel:email", "topic:promotions"]
    for c in receipt["consents"]:
        assert (
            c["collection_method"] == "crm"
            and c["privacy_notice"] == "2026-10"
            and c["entity_id"] == "agent-17"
        )
        assert c["event"]["event_time"] == "2026-11-22T09:00:00.000000Z" and c["event"]["ledger_seq"] >= 1
    assert receipt["settings"]["quiet_hours"] == {"start": "21:00", "end": "08:00"}
    assert (
        await api.client.get("/v1/customers/none/consent-receipt", headers=api.as_("auditor"))
    ).status_code == 404
