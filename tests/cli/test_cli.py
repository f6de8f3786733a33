"""The prefcenter command, run as a real process against a real SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec


def run(tmp_path: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path}/cli.db",
        "PREFCENTER_SECRET_KEY": "cli-test-secret-key-123",
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    result = subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_migrate_keys_demo_export_verify(tmp_path: Path) -> None:
    assert "applied 0001_foundation.sql" in run(tmp_path, "migrate").stdout
    assert run(tmp_path, "migrate").stdout.strip() == "nothing to apply"

    created = run(tmp_path, "keys", "create", "--role", "auditor", "--name", "auditor-bot").stdout
    key = created.strip().splitlines()[-1]
    assert key.startswith("pck_") and len(key) > 40
    listing = run(tmp_path, "keys", "list").stdout
    assert "auditor-bot" in listing and key not in listing and "active" in listing
    assert "revoked" in run(tmp_path, "keys", "revoke", "1").stdout
    assert "revoked" in run(tmp_path, "keys", "list").stdout
    assert run(tmp_path, "keys", "revoke", "99", check=False).returncode != 0
    assert run(tmp_path, "keys", "create", "--role", "root", "--name", "x", check=False).returncode != 0

    demo = run(tmp_path, "demo", "--customers", "30").stdout
    assert "30 customers created" in demo and demo.strip().splitlines()[-1].startswith("pck_")
    assert "/v1/campaigns/demo-newsletter/sends" in demo
    export = tmp_path / "events.jsonl"
    run(tmp_path, "consent", "export", "--format", "jsonl", "-o", str(export))
    lines = export.read_bytes().splitlines()
    assert len(lines) > 30
    verified = msgspec.json.decode(run(tmp_path, "consent", "verify").stdout)
    assert verified["ok"] and verified["events"] == len(lines)
    from_file = msgspec.json.decode(run(tmp_path, "consent", "verify", "--file", str(export)).stdout)
    assert from_file == verified

    broken = tmp_path / "broken.jsonl"
    broken.write_bytes(b"\n".join(lines[:5] + lines[6:]) + b"\n")
    failed = run(tmp_path, "consent", "verify", "--file", str(broken), check=False)
    assert failed.returncode == 1 and msgspec.json.decode(failed.stdout)["first_bad_seq"] == 6

    csv_out = run(tmp_path, "consent", "export", "--format", "csv", "--customer-id", "demo-0001").stdout
    assert csv_out.startswith("seq,id,at,customer_id,customer_ref,action")
    bad = run(tmp_path, "consent", "export", "--since", "2026-01-01", check=False)
    assert bad.returncode != 0 and "since" in bad.stderr


def test_bad_configuration_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PREFCENTER_PORT": "not-a-port"}
    result = subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "PREFCENTER_PORT" in result.stderr


def test_inbound_review_prints_kept_texts(tmp_path: Path) -> None:
    import json
    import sqlite3

    run(tmp_path, "migrate")
    conn = sqlite3.connect(tmp_path / "cli.db")
    with conn:
        conn.executemany(
            "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES ('sms', ?, ?, ?)",
            [("ref1", "REZYGNUJĘ", "2026-11-20T10:00:00.000000Z"), ("ref2", "لغو", "2026-11-22T10:00:00.000000Z")],
        )
    conn.close()
    rows = [json.loads(line) for line in run(tmp_path, "inbound", "review").stdout.splitlines()]
    assert [r["text"] for r in rows] == ["REZYGNUJĘ", "لغو"] and rows[0]["address_ref"] == "ref1"
    later = run(tmp_path, "inbound", "review", "--since", "2026-11-22T11:00:00+01:00").stdout.splitlines()
    assert [json.loads(line)["text"] for line in later] == ["لغو"]
