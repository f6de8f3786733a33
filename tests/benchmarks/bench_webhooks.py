"""Benchmark: preference-change webhooks to a local receiver in a process of its own
(``python -m tests.webhook_receiver``, which verifies every signature with ``standardwebhooks``). SQLite.
Prints JSON.

    python tests/benchmarks/bench_webhooks.py [--customers 20000] [--concurrency 16] [--smoke]

``backlog``: ``prefcenter import`` writes N customers' events (the trigger queues one delivery each)
with no deliverer running; then one :class:`WebhookDeliverer` (this process) drains them: events/s, end
to end, signatures included. ``live``: the deliverer runs while a second import writes N more; the
delay is the receiver's clock at receipt minus the event's ``at`` (p50/p99/max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_import import ROOT, env_for, free_port, fresh_db, make_lines

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2"  # 33 bytes


def receiver(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.webhook_receiver", "--secret", SECRET, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def receiver_figures(proc: subprocess.Popen[str]) -> dict[str, Any]:
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def write_file(path: Path, n: int, prefix: str) -> None:
    with path.open("wb") as fh:
        for start in range(0, n, 10000):
            fh.write(b"".join(make_lines(min(10000, n - start), start=start, prefix=prefix)))


def pending(db: Path) -> int:
    with sqlite3.connect(db, timeout=30) as conn:
        return int(
            conn.execute("SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'").fetchone()[0]
        )


async def bench(db: Path, directory: Path, n: int, port: int, concurrency: int) -> dict[str, Any]:
    from prefcenter.bootstrap import build_runtime
    from prefcenter.config import load_settings
    from prefcenter.logging import configure_logging
    from prefcenter.services.webhooks import WebhookBody, WebhookDeliverer, put_webhook

    settings = load_settings(env_for(db))
    configure_logging(production=False, level="warning")
    rt = build_runtime(settings)
    await rt.store.open()
    report: dict[str, Any] = {"customers_per_phase": n, "concurrency": concurrency}
    try:
        await put_webhook(rt, "bench", WebhookBody(url=f"http://127.0.0.1:{port}/hook", secret=SECRET))
        # backlog
        backlog = directory / "backlog.ndjson"
        write_file(backlog, n, "b")
        subprocess.run(
            [sys.executable, "-m", "prefcenter.cli", "import", str(backlog)],
            env=env_for(db),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        queued = pending(db)
        proc = receiver(port)
        d = WebhookDeliverer(rt, concurrency=concurrency, batch=2048)
        t0 = time.perf_counter()
        while await d.run_once():
            pass
        seconds = time.perf_counter() - t0
        figures = receiver_figures(proc)
        report["backlog"] = {
            "events": queued,
            "seconds": round(seconds, 2),
            "events_per_s": round(queued / seconds),
            "receiver": figures,
            "left_pending": pending(db),
        }
        # live
        live = directory / "live.ndjson"
        write_file(live, n, "l")
        proc = receiver(port)
        d.start()
        t0 = time.perf_counter()
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "prefcenter.cli", "import", str(live)],
            env=env_for(db),
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        while pending(db):
            await asyncio.sleep(0.05)
        seconds = time.perf_counter() - t0
        await d.stop()
        figures = receiver_figures(proc)
        report["live"] = {
            "events": figures["distinct"],
            "seconds_import_to_drained": round(seconds, 2),
            "receiver": figures,
        }
    finally:
        await rt.store.close()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    n = 200 if args.smoke else args.customers
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        db = fresh_db(directory, "hooks")
        report = asyncio.run(bench(db, directory, n, free_port(), args.concurrency))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
