"""``prefcenter import FILE``: the bulk import offline, as a real process against a real SQLite file; and
kill -9 mid-import: importing the file again ends in the state one clean import gives."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.bench_import import SECRET, TOPICS, make_lines

ROOT = Path(__file__).resolve().parents[2]


def env_for(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }


def run(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args],
        env=env_for(db),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def fresh_db(tmp_path: Path, name: str) -> Path:
    db = tmp_path / f"{name}.db"
    assert run(db, "migrate").returncode == 0
    with sqlite3.connect(db) as conn:
        for topic in TOPICS:
            conn.execute(
                "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) VALUES "
                "(?, 'marketing', '{\"en\": \"T\"}', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                (topic,),
            )
    return db


def answer(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def state(db: Path) -> tuple[list[tuple[Any, ...]], ...]:
    with sqlite3.connect(db) as conn:
        customers = conn.execute(
            "SELECT id, ref, timezone, locale, country, channel, max_per_week FROM customers ORDER BY id"
        ).fetchall()
        contacts = conn.execute("SELECT * FROM contacts ORDER BY customer_id, channel").fetchall()
        topics = conn.execute("SELECT * FROM customer_topics ORDER BY customer_id, topic_id").fetchall()
        events = conn.execute(
            "SELECT seq, customer_id, customer_ref, action, subject, value, source, actor, notice_version, "
            "evidence FROM consent_events ORDER BY seq"
        ).fetchall()
        notifications = conn.execute(
            "SELECT customer_id, kind FROM notifications ORDER BY customer_id"
        ).fetchall()
    return customers, contacts, topics, events, notifications


def test_import_file(tmp_path: Path) -> None:
    db = fresh_db(tmp_path, "one")
    data = tmp_path / "in.ndjson"
    data.write_bytes(b"".join(make_lines(300)) + b"{bad\n\n")
    out = run(db, "import", str(data))
    assert out.returncode == 1, out.stderr  # a rejected line: exit 1
    got = answer(out)
    assert got == {
        "created": 300,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
        "errors": [{"line": 301, "field": "", "message": got["errors"][0]["message"]}],
    }
    assert "\r" not in out.stderr  # no progress when stderr is no terminal
    data.write_bytes(b"".join(make_lines(300)))
    again = run(db, "import", str(data))
    assert again.returncode == 0 and answer(again)["unchanged"] == 300
    verified = json.loads(run(db, "consent", "verify").stdout)
    assert verified["ok"] is True and verified["events"] == len(state(db)[3])


def test_kill_9_mid_import_then_reimport_equals_one_clean_import(tmp_path: Path) -> None:
    n = 30000
    data = tmp_path / "big.ndjson"
    data.write_bytes(b"".join(make_lines(n)))
    killed = fresh_db(tmp_path, "killed")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefcenter.cli", "import", str(data)],
        env=env_for(killed),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 120
    stored = 0
    while time.monotonic() < deadline and proc.poll() is None:
        with sqlite3.connect(killed, timeout=5) as conn:
            stored = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
        if stored >= 4000:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the import ended before it could be killed: make the file bigger"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    with sqlite3.connect(killed) as conn:
        partial = conn.execute("SELECT count(*) FROM customers").fetchone()[0]
    assert 0 < partial < n
    resumed = run(killed, "import", str(data))
    assert resumed.returncode == 0, resumed.stderr
    got = answer(resumed)
    assert got["created"] == n - partial and got["unchanged"] == partial and got["rejected"] == 0

    clean = fresh_db(tmp_path, "clean")
    assert run(clean, "import", str(data)).returncode == 0
    assert state(killed) == state(clean)
    for db in (killed, clean):
        verified = json.loads(run(db, "consent", "verify").stdout)
        assert verified["ok"] is True, verified
