"""The ledger across migration 0014 (COMPLIANCE item 16): events written before it keep their bytes and
hashes (no ``notice_sha256`` key), events written after carry the key, and the chain verifies in the
database, through the API, offline (``prefcenter consent verify`` and ``--file``), and for an auditor who
recomputes it from the JSONL export with nothing but the rule API.md states."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.policies import load_policy_file
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore
from tests.conftest import POLICY_FILE, PROFILE, SECRET, Api, FakeClock, database_at, prefs_body
from tests.seeding import run_cli

pytestmark = pytest.mark.sqlite_only  # a SQLite file at an older migration (database_at), sqlite3, CLI on it

GENESIS = "0" * 64
PROVENANCE = {"source": "api", "actor": "signup-form", "notice_version": "2026-10", "evidence": {}}
OLD_COLUMNS = (
    "seq", "id", "at", "customer_id", "customer_ref", "action", "subject", "value", "source", "actor",
    "notice_version", "evidence", "prev_hash", "hash",
)  # fmt: skip


def auditor_hash(event: dict[str, Any]) -> str:
    """API.md's rule, re-implemented from its words alone."""
    body = {k: v for k, v in event.items() if k not in ("hash", "customer_id")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(str(event["prev_hash"]).encode() + canonical).hexdigest()


def write_old_events(db: Path, customer_id: str, count: int) -> None:
    """Events as the code before migration 0014 wrote them: the 14 columns, the hash over those keys."""
    p = Pseudonymizer(SECRET)
    conn = sqlite3.connect(db)
    seq, prev = conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1").fetchone()
    for i in range(count):
        seq += 1
        event = {
            "seq": seq, "id": str(uuid.uuid4()), "at": f"2026-11-22T08:0{i}:00.000000Z",
            "customer_id": customer_id, "customer_ref": p.customer_ref(customer_id), "action": "update",
            "subject": "max_per_week", "value": i + 1, "source": "crm", "actor": "old-code",
            "notice_version": "2026-10", "evidence": {"n": i}, "prev_hash": prev,
        }  # fmt: skip
        event["hash"] = prev = auditor_hash(event)
        row = [json.dumps(event[c]) if c in ("value", "evidence") else event[c] for c in OLD_COLUMNS]
        conn.execute(
            f"INSERT INTO consent_events ({', '.join(OLD_COLUMNS)}) VALUES ({', '.join('?' * 14)})", row
        )
    conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))
    conn.commit()
    conn.close()


async def build_pre_0014(settings: Settings, db: Path, clock: FakeClock) -> dict[str, dict[str, str]]:
    """A database at the migrations before 0014 with keys, topics, a customer and old-shape events."""
    async with database_at(settings, db, clock, keep=lambda name: name < "0014") as (_, headers):
        pass
    conn = sqlite3.connect(db)
    assert "notice_sha256" not in {row[1] for row in conn.execute("PRAGMA table_info(consent_events)")}
    conn.execute(
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, link_gen) "
        "VALUES ('old', ?, 'Europe/Warsaw', 'pl', 'PL', '2026-11-22T08:00:00.000000Z', "
        "'2026-11-22T08:00:00.000000Z', 'g')",
        (Pseudonymizer(SECRET).customer_ref("old"),),
    )
    conn.commit()
    conn.close()
    write_old_events(db, "old", 3)
    write_old_events(db, "gone", 2)  # a customer whose events outlive them (no customers row)
    return headers


@pytest.mark.slow
async def test_compliance_16_the_chain_verifies_across_the_notice_migration(
    settings: Settings, db_path: Path, clock: FakeClock, tmp_path: Path
) -> None:
    """COMPLIANCE item 16: a hash chain verifies, deleting a middle event is detected, and UPDATE/DELETE
    on events is refused, on a ledger that holds events from before and after migration 0014."""
    headers = await build_pre_0014(settings, db_path, clock)
    old_rows = sqlite3.connect(db_path).execute("SELECT * FROM consent_events ORDER BY seq").fetchall()
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db_path),
        pseudonyms=Pseudonymizer(SECRET),
        now=clock,
        policy=load_policy_file(POLICY_FILE),
    )
    async with AsyncTestClient(app=create_app(rt)) as client:  # start-up migrates to 0014
        texts = {"pl": "Shop Example Ltd wysyła oferty. Zgodę możesz wycofać w każdej chwili."}
        r = await client.put("/v1/notices/2026-10", json={"texts": texts}, headers=headers["admin"])
        assert r.status_code == 201
        pl_hash = r.json()["sha256"]["pl"]
        for cid in ("old", "new"):
            r = await client.put(f"/v1/customers/{cid}", json=PROFILE, headers=headers["marketing"])
            assert r.status_code in (200, 201), r.text
            r = await client.put(
                f"/v1/customers/{cid}/preferences",
                json=prefs_body(provenance=PROVENANCE),
                headers=headers["marketing"],
            )
            assert r.status_code == 200, r.text
        r = await client.get("/v1/consent-events/export?format=jsonl", headers=headers["auditor"])
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert len(lines) > 5 + 2
        r = await client.get("/v1/consent-events/verify", headers=headers["auditor"])
        assert r.json() == {"ok": True, "events": len(lines), "head": lines[-1]["hash"]}
        r = await client.get("/v1/consent-events/export?format=csv", headers=headers["auditor"])
        assert r.text.splitlines()[0].split(",")[10:12] == ["notice_version", "notice_sha256"]

    # Old events keep exactly their stored bytes; they have no notice_sha256 key, new ones always do.
    conn = sqlite3.connect(db_path)
    assert (
        conn.execute(
            f"SELECT {', '.join(OLD_COLUMNS)} FROM consent_events WHERE seq <= 5 ORDER BY seq"
        ).fetchall()
        == old_rows
    )
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))
    assert all("notice_sha256" not in e for e in lines[:5])
    assert all(e["notice_sha256"] == pl_hash for e in lines[5:])  # profile locale pl, notice 2026-10

    # The auditor recomputes every hash from the export alone.
    prev = GENESIS
    for e in lines:
        assert e["prev_hash"] == prev and auditor_hash(e) == e["hash"], e["seq"]
        prev = e["hash"]

    # Offline, from the database and from the file.
    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in lines), encoding="utf-8")
    for args in (("consent", "verify"), ("consent", "verify", "--file", str(export))):
        result = run_cli(db_path, SECRET, *args)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout.strip().splitlines()[-1]) == {
            "ok": True,
            "events": len(lines),
            "head": prev,
        }

    # The new columns are append-only too.
    for sql in (
        "UPDATE consent_events SET notice_sha256 = 'x' WHERE seq = 7",
        "UPDATE consent_events SET shape = 2 WHERE seq = 1",
        "UPDATE consent_events SET customer_id = NULL, notice_sha256 = NULL WHERE seq = 7",
    ):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute(sql)
    # Tampering with an event's shape is detected at its seq (the hash no longer covers its keys).
    conn.execute("DROP TRIGGER consent_events_append_only_update")
    conn.execute("UPDATE consent_events SET shape = 2 WHERE seq = 2")
    conn.commit()
    result = run_cli(db_path, SECRET, "consent", "verify")
    assert result.returncode == 1 and json.loads(result.stdout)["first_bad_seq"] == 2
    conn.execute("UPDATE consent_events SET shape = 1 WHERE seq = 2")
    conn.execute("DROP TRIGGER consent_events_append_only_delete")
    conn.execute("DELETE FROM consent_events WHERE seq = 8")  # a middle event
    conn.commit()
    conn.close()
    result = run_cli(db_path, SECRET, "consent", "verify")
    assert result.returncode == 1 and json.loads(result.stdout)["first_bad_seq"] == 8


async def test_an_event_written_in_the_old_shape_after_the_migration_still_verifies(api: Api) -> None:
    """A process of the previous version writing during an upgrade writes shape 1 (the column default),
    which is exactly what its hash covers."""
    r = await api.client.put("/v1/customers/c1", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code == 201
    r = await api.client.put(
        "/v1/customers/c1/preferences", json=prefs_body(provenance=PROVENANCE), headers=api.as_("marketing")
    )
    assert r.status_code == 200
    assert isinstance(api.rt.store, SqliteStore)
    written = len((await api.client.get("/v1/consent-events", headers=api.as_("auditor"))).json()["events"])
    write_old_events(api.rt.store.path, "c1", 2)
    r = await api.client.get("/v1/consent-events?customer_id=c1", headers=api.as_("auditor"))
    found = r.json()["events"]
    assert written and ["notice_sha256" in e for e in found] == [True] * written + [False] * 2
    r = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert r.json() == {"ok": True, "events": written + 2, "head": found[-1]["hash"]}
