"""Benchmark: the dispatcher delivering a queued email campaign over SMTP. Prints JSON.

    python tests/benchmarks/bench_dispatch.py [--recipients 20000] [--limited-rate 200] [--smoke]

Each run seeds a fresh SQLite file with N customers (email, subscribed, no quiet hours), queues one
marketing campaign to all of them through the real sends path (gate, reservations, outbox, in one
transaction per 10,000), then starts ``prefcenter dispatch`` as its own process against an aiosmtpd
server in a third process on 127.0.0.1, and times the arrivals at the server.

- ``ceiling``: the policy's email rate set far above what the machine can do: messages/s delivered
  (first to last arrival) and wall time from the dispatcher's start.
- ``limited``: ``email = --limited-rate``: the achieved rate, the busiest calendar second of the run
  and the busiest sliding one-second window (each must stay within rate + burst, burst = one second's
  worth).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the SMTP server process ----------------------------------------------------------------------


def run_sink(port: int, out: Path, expect: int) -> None:
    """aiosmtpd on 127.0.0.1: record each accepted message's arrival time and Message-ID; write them
    to ``out`` once ``expect`` have arrived (or at SIGTERM)."""
    import threading

    from aiosmtpd.controller import Controller

    times: list[float] = []
    ids: list[str] = []
    done = threading.Event()
    mid = re.compile(rb"^Message-ID: (.+?)\r?$", re.M | re.I)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            content: bytes = envelope.content  # type: ignore[attr-defined]
            times.append(time.time())
            m = mid.search(content)
            ids.append(m.group(1).decode() if m else "")
            if len(times) >= expect:
                done.set()
            return "250 OK"

    import uvloop  # the harness's server as fast as it can be: the dispatcher is what is measured

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, loop=uvloop.new_event_loop())
    controller.start()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    controller.stop()
    out.write_text(json.dumps({"times": times, "ids": ids}))


# -- seeding and queueing -------------------------------------------------------------------------


def env_for(tmp: Path, db: Path, policies: Path, smtp_port: int) -> dict[str, str]:
    return {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_POLICY_DIR": str(policies),
        "PREFCENTER_SMTP_PORT": str(smtp_port),
        "PREFCENTER_LOG_LEVEL": "warning",
        "PREFCENTER_ENV": "production",
        "PREFCENTER_CONTROLLER_NAME": "Bench Shop Ltd",
        "PREFCENTER_POSTAL_ADDRESS": "1 High St, Town",
        "PREFCENTER_PRIVACY_URL": "https://shop.example/privacy",
    }


def seed(db: Path, env: dict[str, str], n: int) -> None:
    from prefcenter.domain.pseudonyms import Pseudonymizer

    subprocess.run([sys.executable, "-m", "prefcenter.cli", "migrate"], env=env, check=True, capture_output=True)
    p = Pseudonymizer(SECRET)
    now = "2026-11-01T00:00:00.000000Z"
    conn = sqlite3.connect(db)
    conn.execute(
        "INSERT INTO topics VALUES ('promotions', 'marketing', '{\"en\":\"Offers\"}', '{}', ?, ?)", (now, now)
    )
    content = {
        "email": {
            "subject": "Hello {{ customer_id }}",
            "text": "Our offers this week.\nUnsubscribe: {{ unsubscribe_url }}",
            "html": "<p>Our offers this week.</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>",
        }
    }
    conn.execute(
        "INSERT INTO campaigns VALUES ('bench', 'promotions', '[\"email\"]', NULL, ?, ?, ?)",
        (json.dumps(content), now, now),
    )
    ids = [f"c{i:06d}" for i in range(n)]
    conn.executemany(
        "INSERT INTO customers (id, ref, timezone, locale, country, channel, created_at, updated_at) "
        "VALUES (?, ?, 'Europe/Warsaw', 'pl', 'PL', 'email', ?, ?)",
        [(cid, p.customer_ref(cid), now, now) for cid in ids],
    )
    conn.executemany(
        "INSERT INTO contacts VALUES (?, 'email', ?, ?)",
        [(cid, f"{cid}@example.org", p.address_ref("email", f"{cid}@example.org")) for cid in ids],
    )
    conn.executemany("INSERT INTO customer_topics VALUES (?, 'promotions')", [(cid,) for cid in ids])
    conn.commit()
    conn.close()


def queue(env: dict[str, str], n: int) -> float:
    """Queue the campaign to everyone through the real sends path; returns the seconds it took."""
    from prefcenter.bootstrap import build_runtime
    from prefcenter.config import load_settings
    from prefcenter.logging import configure_logging
    from prefcenter.services.approvals import GateBatcher
    from prefcenter.services.policies import load_active_policy
    from prefcenter.services.sends import SendRequest, send

    async def main() -> float:
        settings = load_settings(env)
        configure_logging(production=settings.production, level=settings.log_level)
        rt = build_runtime(settings)
        rt.policy = load_active_policy(settings)
        await rt.store.open()
        try:
            batcher = GateBatcher(rt)
            ids = [f"c{i:06d}" for i in range(n)]
            t0 = time.perf_counter()
            for start in range(0, n, 10_000):
                answer = await send(rt, batcher, "bench", SendRequest(customer_ids=ids[start : start + 10_000]))
                assert answer.summary.allow == len(answer.decisions), answer.summary
            return time.perf_counter() - t0
        finally:
            await rt.store.close()

    return asyncio.run(main())


# -- one run --------------------------------------------------------------------------------------


def one_run(n: int, rate: float, tmp: Path, profile: str | None = None) -> dict[str, object]:
    policies = tmp / "policies"
    shutil.copytree(ROOT / "policies", policies)
    policy = policies / "default.toml"
    policy.write_text(re.sub(r"(?m)^email = .*$", f"email = {rate:g}", policy.read_text()))
    db = tmp / "bench.db"
    smtp_port = free_port()
    env = env_for(tmp, db, policies, smtp_port)
    seed(db, env, n)
    queue_seconds = queue(env, n)
    out = tmp / "arrivals.json"
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink", str(smtp_port), str(out), str(n)], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    started = time.time()
    log = (tmp / "dispatch.log").open("wb")
    command = [sys.executable, "-m", "prefcenter.cli", "dispatch"]
    if profile:  # sample the dispatcher with py-spy (collapsed stacks), e.g. to find its bottleneck
        command = ["py-spy", "record", "-f", "raw", "-o", profile, "--", *command]
    dispatcher = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log)
    try:
        sink.wait(timeout=max(120, 3 * n / rate + 60))
    except subprocess.TimeoutExpired:
        log.flush()
        tail = (tmp / "dispatch.log").read_text(errors="replace")[-4000:]
        print(f"timed out: reporting what arrived; the dispatcher's log ends:\n{tail}", file=sys.stderr)
    finally:
        dispatcher.send_signal(signal.SIGINT if profile else signal.SIGTERM)  # py-spy saves at SIGINT
        dispatcher.wait(timeout=60)
        if sink.poll() is None:
            sink.terminate()  # the sink writes what arrived at SIGTERM
            sink.wait()
    arrivals = json.loads(out.read_text())
    times = sorted(arrivals["times"])
    delivered = len(times)
    span = times[-1] - times[0] if delivered > 1 else 0.0
    by_second: dict[int, int] = {}
    for t in times:
        by_second[int(t - times[0])] = by_second.get(int(t - times[0]), 0) + 1
    sliding, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        sliding = max(sliding, i - j + 1)
    conn = sqlite3.connect(db)
    statuses = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    conn.close()
    return {
        "rate_configured": rate,
        "recipients": n,
        "queue_seconds": round(queue_seconds, 2),
        "queued_per_s": round(n / queue_seconds),
        "delivered": delivered,
        "duplicates": delivered - len(set(arrivals["ids"])),
        "messages_per_s": round((delivered - 1) / span, 1) if span else None,
        "wall_seconds_from_start": round(times[-1] - started, 2) if times else None,
        "busiest_calendar_second": max(by_second.values()) if by_second else 0,
        "busiest_sliding_second": sliding,
        "outbox": statuses,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=20_000)
    ap.add_argument("--limited-recipients", type=int, default=None, help="default: --recipients")
    ap.add_argument("--limited-rate", type=float, default=200)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--py-spy", dest="profile", help="write the ceiling run's py-spy profile here")
    ap.add_argument("--sink", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), Path(args.sink[1]), int(args.sink[2]))
        return
    n = 50 if args.smoke else args.recipients
    limited_n = 30 if args.smoke else (args.limited_recipients or n)
    limited_rate = 20 if args.smoke else args.limited_rate
    result: dict[str, object] = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmp:
        (Path(tmp) / "a").mkdir()
        result["ceiling"] = one_run(n, 1_000_000, Path(tmp) / "a", args.profile)
    with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmp:
        (Path(tmp) / "b").mkdir()
        limited = one_run(limited_n, limited_rate, Path(tmp) / "b")
        burst = max(1.0, limited_rate)
        rate = limited["messages_per_s"]
        limited["within_5_percent"] = isinstance(rate, float) and abs(rate - limited_rate) <= 0.05 * limited_rate
        limited["no_second_over_rate_plus_burst"] = limited["busiest_sliding_second"] <= limited_rate + burst  # type: ignore[operator]
        result["limited"] = limited
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
