"""Benchmark: export and verify a consent ledger of N events (default 1,000,000). Prints JSON.

    python tests/benchmarks/bench_ledger.py [--events 1000000] [--smoke]

Seeds a real SQLite file with a valid hash chain (the same chain_events code the service uses), then
times the streamed JSONL and CSV exports and the full verification through the service layer, and
reports events/s and the process's peak RSS before and after (constant memory: it must not grow
with N).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefcenter.config import load_settings
from prefcenter.domain.ledger import GENESIS, Attribution, Change, chain_events
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.consent import export_events, verify_ledger
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import EventFilter
from prefcenter.store.sqlite import SqliteStore
from prefcenter.store.sqlite.rows import INSERT_EVENT_SQL, event_row

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root: tests.seeding
from tests.seeding import migrate_sqlite, peak_rss_mb

SECRET = "benchmark-secret-key-0123"


def seed(path: Path, n: int) -> float:
    started = time.perf_counter()
    p = Pseudonymizer(SECRET)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous = OFF")
    counter = itertools.count()
    ids = itertools.count(1)
    seq, prev = 0, GENESIS
    at = datetime(2026, 1, 1, tzinfo=UTC)
    subjects = ["channel:email", "topic:promotions", "topic:product-news", "quiet_hours", "max_per_week"]
    batch = 10_000
    while seq < n:
        rows = []
        for _ in range(min(batch, n - seq) // 5 or 1):
            cid = f"c{next(counter) % 200_000}"
            events = chain_events(
                [
                    Change("grant", s) if s.startswith(("channel", "topic")) else Change("update", s, 3)
                    for s in subjects
                ],
                customer_id=cid,
                customer_ref=p.customer_ref(cid),
                attribution=Attribution("import", "bench", "2026-10", {"batch": seq // batch}),
                head_seq=seq,
                head_hash=prev,
                at=at,
                new_id=lambda: f"e{next(ids)}",
            )
            seq, prev = events[-1].seq, events[-1].hash
            at += timedelta(seconds=1)
            rows.extend(event_row(e) for e in events)
        conn.executemany(INSERT_EVENT_SQL, rows)
    conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (seq, prev))
    conn.commit()
    conn.close()
    return time.perf_counter() - started


async def measure(path: Path, n_expected: int) -> dict[str, object]:
    settings = load_settings({}, database_url=f"sqlite:///{path}", secret_key=SECRET)
    rt = Runtime(settings=settings, store=SqliteStore(path), pseudonyms=Pseudonymizer(SECRET))
    await rt.store.open()
    out: dict[str, object] = {"rss_mb_before": round(peak_rss_mb(), 1)}
    try:
        for fmt in ("jsonl", "csv"):
            started = time.perf_counter()
            size = 0
            async for chunk in export_events(rt, EventFilter(), fmt):  # type: ignore[arg-type]
                size += len(chunk)
            took = time.perf_counter() - started
            out[f"export_{fmt}"] = {
                "seconds": round(took, 2),
                "events_per_s": round(n_expected / took),
                "bytes": size,
            }
        started = time.perf_counter()
        result = await verify_ledger(rt)
        took = time.perf_counter() - started
        assert result.ok and result.events == n_expected, result
        out["verify"] = {"seconds": round(took, 2), "events_per_s": round(n_expected / took)}
    finally:
        await rt.store.close()
    out["rss_mb_peak_after"] = round(peak_rss_mb(), 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="a tiny run (CI smoke)")
    args = parser.parse_args()
    n = 2_000 if args.smoke else args.events
    n -= n % 5
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        asyncio.run(migrate_sqlite(path))
        seeded = seed(path, n)
        figures = asyncio.run(measure(path, n))
        report = {
            "events": n,
            "seed_seconds": round(seeded, 1),
            "db_mb": round(path.stat().st_size / 2**20, 1),
            **figures,
        }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
