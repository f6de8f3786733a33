"""Benchmark: the send-approval gate end to end. Prints JSON.

    python tests/benchmarks/bench_approvals.py [--customers 50000] [--seconds 10] [--smoke]

(a) engine-only decisions/s is bench_engine.py. Here:
(b) POST /v1/approvals with 10,000 ids through the real app served by uvicorn on 127.0.0.1 (a separate
    process): decisions/s including the reservations and the decision log written to SQLite;
(c) single-id approvals/s and p50/p99 under 32 concurrent connections for N seconds, load from wrk in
    a second process, and in the same run the same figures for a bare litestar endpoint that decodes and
    returns a small msgspec Struct, served the same way (the ceiling of this stack on this machine).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.keys import hash_key
from prefcenter.store.codec import places_text

ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123"
KEY = "pck_benchmark-key-not-secret"
ZONES = [
    "Europe/Warsaw",
    "Europe/Bucharest",
    "Europe/Athens",
    "Europe/London",
    "America/New_York",
    "America/Los_Angeles",
    "Asia/Tehran",
    "Asia/Tokyo",
    "Australia/Sydney",
    "America/Sao_Paulo",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed(db: Path, n: int) -> None:
    """Customers straight into the schema (the benchmark measures the gate, not the seeding)."""
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "migrate"], env=env, check=True, capture_output=True
    )
    p = Pseudonymizer(SECRET)
    rng = random.Random(1)
    conn = sqlite3.connect(db)
    now = "2026-11-01T00:00:00.000000Z"
    conn.execute(
        "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) VALUES ('bench', 'admin', ?, 'pck_bench', ?)",
        (hash_key(KEY), now),
    )
    conn.execute(
        "INSERT INTO topics VALUES ('promotions', 'marketing', '{\"en\":\"Offers\"}', '{}', ?, ?)", (now, now)
    )
    content = json.dumps(
        {
            "email": {"subject": "Hi", "text": "t", "html": "<p>h</p>"},
            "sms": {"text": "t"},
            "push": {"text": "t"},
        }
    )
    for i in range(8):
        conn.execute(
            'INSERT INTO campaigns VALUES (?, \'promotions\', \'["email","sms","push"]\', NULL, ?, ?, ?)',
            (f"camp{i}", content, now, now),
        )
    customers, contacts, topics, reservations = [], [], [], []
    at0 = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 10**6)
    for i in range(n):
        cid = f"c{i:06d}"
        channel = rng.choices(["email", "sms", "push", None], [60, 20, 10, 10])[0]
        quiet = rng.random() < 0.4
        customers.append(
            (
                cid,
                p.customer_ref(cid),
                rng.choice(ZONES),
                "en",
                "PL",
                channel,
                "22:00" if quiet else None,
                "07:00" if quiet else None,
                rng.choice([None, None, 2, 5]),
                None,
                now,
                now,
            )
        )
        contacts.append((cid, "email", f"{cid}@example.org", p.address_ref("email", f"{cid}@example.org")))
        if rng.random() < 0.6:
            number = f"+48600{i:06d}"
            contacts.append((cid, "sms", number, p.address_ref("sms", number)))
        if rng.random() < 0.8:
            topics.append((cid, "promotions"))
        if rng.random() < 0.2:  # some recent sends
            reservations.append((cid, "camp7", at0 - rng.randrange(1, 6 * 86_400) * 10**6, "email", 1))
    conn.executemany(
        "INSERT INTO customers (id, ref, timezone, locale, country, channel, quiet_start, quiet_end, max_per_week, paused_until, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        customers,
    )
    conn.executemany("INSERT INTO contacts VALUES (?,?,?,?)", contacts)
    # as the write path does (migration 0012): where each phone number is registered, stored once
    held: dict[str, list[tuple[str, str]]] = {}
    for cid, channel, address, _ in contacts:
        held.setdefault(cid, []).append((channel, address))
    conn.executemany(
        "UPDATE customers SET phone_places = ? WHERE id = ?",
        [(places_text(pairs), cid) for cid, pairs in held.items()],
    )
    conn.executemany("INSERT INTO customer_topics VALUES (?,?)", topics)
    conn.executemany("INSERT INTO reservations VALUES (?,?,?,?,?)", reservations)
    conn.commit()
    conn.close()


class Server:
    def __init__(self, args: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.log = log.open("wb")  # a file, not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.log.close()


def uvicorn_args(app: str, port: int, factory: bool = False) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return args + (["--factory"] if factory else [])


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer %(key)s"
math.randomseed(%(seed)d)
request = function()
  local body = string.format('%(body)s', math.random(0, %(n)d - 1))
  return wrk.format(nil, "%(path)s", nil, body)
end
"""


def run_wrk(url: str, path: str, body: str, n: int, seconds: int, tmp: Path) -> dict[str, float]:
    script = tmp / f"wrk{abs(hash(path))}.lua"
    script.write_text(WRK_SCRIPT % {"key": KEY, "seed": 7, "body": body, "n": n, "path": path})
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 2)

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": round(rps),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 2_000 if args.smoke else args.customers
    seconds = 2 if args.smoke else args.seconds
    batch = min(10_000, n)
    report: dict[str, object] = {"customers": n, "batch": batch}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        db = tmp / "bench.db"
        seed(db, n)
        env = {
            **os.environ,
            "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
            "PREFCENTER_SECRET_KEY": SECRET,
            "PREFCENTER_LOG_LEVEL": "warning",
            "PREFCENTER_POLICY_DIR": str(ROOT / "policies"),
            "PREFCENTER_KEY_CACHE_SECONDS": "30",
        }
        port = free_port()
        server = Server(
            [sys.executable, "-m", "prefcenter.cli", "serve", "--port", str(port)],
            env,
            port,
            tmp / "server.log",
        )
        try:
            base = f"http://127.0.0.1:{port}"
            headers = {"Authorization": f"Bearer {KEY}"}
            rng = random.Random(3)
            ids_all = [f"c{i:06d}" for i in range(n)]
            runs = []
            with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                for i in range(5 if not args.smoke else 2):
                    ids = rng.sample(ids_all, batch)
                    at = (datetime(2026, 11, 22, 12, tzinfo=UTC) + timedelta(hours=3 * i)).isoformat()
                    for dry in (True, False):
                        body = {"campaign_id": f"camp{i}", "customer_ids": ids, "at": at, "dry_run": dry}
                        started = time.perf_counter()
                        r = client.post("/v1/approvals", json=body)
                        took = time.perf_counter() - started
                        assert r.status_code == 200, r.text
                        runs.append(
                            {
                                "dry_run": dry,
                                "seconds": round(took, 3),
                                "decisions_per_s": round(batch / took),
                                "summary": {k: v for k, v in r.json()["summary"].items() if k != "by_reason"},
                            }
                        )
            real = [r["decisions_per_s"] for r in runs if not r["dry_run"]]
            dry = [r["decisions_per_s"] for r in runs if r["dry_run"]]
            report["b_approvals_10k"] = {
                "real_decisions_per_s_median": sorted(real)[len(real) // 2],
                "dry_run_decisions_per_s_median": sorted(dry)[len(dry) // 2],
                "runs": runs,
            }
            if shutil.which("wrk"):
                body = '{"campaign_id":"camp6","customer_ids":["c%06d"],"at":"2026-11-23T12:00:00Z"}'
                report["c_single_id_approvals"] = run_wrk(base, "/v1/approvals", body, n, seconds, tmp)
        finally:
            server.stop()
        port = free_port()
        bare = Server(uvicorn_args("tests.benchmarks.bare_app:app", port), env, port, tmp / "bare.log")
        try:
            if shutil.which("wrk"):
                body = '{"campaign_id":"camp6","customer_ids":["c%06d"]}'
                report["c_bare_litestar"] = run_wrk(
                    f"http://127.0.0.1:{port}", "/echo", body, n, seconds, tmp
                )
        finally:
            bare.stop()
        if "c_single_id_approvals" in report and "c_bare_litestar" in report:
            a, b = report["c_single_id_approvals"], report["c_bare_litestar"]
            report["c_ratio"] = round(a["requests_per_s"] / b["requests_per_s"], 2)  # type: ignore[index]
        else:
            report["c"] = "wrk not installed (apt-get install -y wrk): (c) not measured"
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
