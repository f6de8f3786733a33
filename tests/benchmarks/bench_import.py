"""Benchmark: bulk import of N customers with preferences (default 1,000,000) from one NDJSON file into
a fresh SQLite file, ledger included. Prints JSON.

    python tests/benchmarks/bench_import.py [--customers 1000000] [--via cli,http] [--smoke]

``cli``: ``prefcenter import FILE`` in a process of its own. ``http``: ``prefcenter serve`` in a process
of its own and this process streaming the file to ``POST /v1/customers/import`` in 1 MiB pieces.
Customers per second are end to end (process start included for the CLI); peak RSS is the importing
process's (the server's for ``http``), from wait4.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123"
PROOF = {"source_party": "Example Shop", "consented_at": "2026-10-01T10:00:00Z", "method": "web_form"}
TOPICS = ("promotions", "product-news")


def make_lines(n: int, *, start: int = 0, prefix: str = "cust") -> Iterator[bytes]:
    """N import lines: every customer with an email address, every 4th also an SMS number; channel
    email and one or two marketing topics, from an ``import`` with its proof."""
    for i in range(start, start + n):
        contacts: dict[str, str] = {"email": f"user{i}@example.com"}
        if i % 4 == 0:
            contacts["sms"] = f"+48600{i % 1000000:06d}"
        line = {
            "customer_id": f"{prefix}-{i:08d}",
            "profile": {"timezone": "Europe/Warsaw", "locale": "pl", "country": "PL", "contacts": contacts},
            "preferences": {
                "channel": "email",
                "topics": list(TOPICS[: 1 + i % 2]),
                "quiet_hours": None,
                "max_per_week": 3,
                "paused_until": None,
            },
            "provenance": {
                "source": "import",
                "actor": "bench",
                "notice_version": "2026-10",
                "evidence": PROOF,
            },
        }
        yield json.dumps(line, separators=(",", ":")).encode() + b"\n"


def env_for(db: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }


def cli(db: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args],
        env=env_for(db),
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=ROOT,
    )
    if out.returncode not in (0, 1):
        raise RuntimeError(out.stderr[-2000:])
    return out.stdout


def fresh_db(directory: Path, name: str) -> Path:
    db = directory / f"{name}.db"
    cli(db, "migrate")
    with sqlite3.connect(db) as conn:
        for topic in TOPICS:
            conn.execute(
                "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) "
                "VALUES (?, 'marketing', '{\"en\": \"T\"}', '{}', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
                (topic,),
            )
    return db


def run_waited(cmd: list[str], env: dict[str, str]) -> tuple[str, float]:
    """Run ``cmd``; (its stdout, its peak RSS in MiB)."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return out.read().decode(), usage.ru_maxrss / 1024


def via_cli(directory: Path, data: Path, n: int) -> dict[str, object]:
    db = fresh_db(directory, "cli")
    started = time.perf_counter()
    stdout, rss = run_waited([sys.executable, "-m", "prefcenter.cli", "import", str(data)], env_for(db))
    seconds = time.perf_counter() - started
    answer = json.loads(stdout.strip().splitlines()[-1])
    assert answer["created"] == n, answer
    events = sqlite3.connect(db).execute("SELECT count(*) FROM consent_events").fetchone()[0]
    return {
        "cli_seconds": round(seconds, 2),
        "cli_customers_per_s": round(n / seconds),
        "cli_peak_rss_mb": round(rss, 1),
        "cli_events": events,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def via_http(directory: Path, data: Path, n: int) -> dict[str, object]:
    import httpx

    db = fresh_db(directory, "http")
    key = cli(db, "keys", "create", "--role", "marketing", "--name", "bench").strip().splitlines()[-1]
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "prefcenter.cli", "serve", "--port", str(port), "--no-dispatcher"],
        env=env_for(db),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.1)

        def body() -> Iterator[bytes]:
            with data.open("rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        started = time.perf_counter()
        r = httpx.post(
            f"{base}/v1/customers/import",
            content=body(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
            timeout=3600,
        )
        seconds = time.perf_counter() - started
        answer = r.json()
        assert r.status_code == 200 and answer["created"] == n, r.text[:500]
    finally:
        server.send_signal(signal.SIGTERM)
        _, _, usage = os.wait4(server.pid, 0)
        server.returncode = 0
    return {
        "http_seconds": round(seconds, 2),
        "http_customers_per_s": round(n / seconds),
        "http_server_peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--via", default="cli,http")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 2000 if args.smoke else args.customers
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        data = directory / "customers.ndjson"
        with data.open("wb") as fh:
            for chunk_start in range(0, n, 10000):
                fh.write(b"".join(make_lines(min(10000, n - chunk_start), start=chunk_start)))
        report: dict[str, object] = {"customers": n, "file_mb": round(data.stat().st_size / 2**20, 1)}
        vias = args.via.split(",")
        if "cli" in vias:
            report.update(via_cli(directory, data, n))
        if "http" in vias:
            report.update(via_http(directory, data, n))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
