"""Benchmark: a customer's consent state at an instant out of a large ledger (issue 13 item 1: p99 <= 10
ms for one customer out of 1,000,000 events; it must not scan the ledger). Prints JSON.

    python tests/benchmarks/bench_consent_state.py [--customers 100000] [--events-per-customer 10]
        [--queries 5000] [--engine sqlite|postgres|both] [--postgres-url postgresql://...] [--smoke]

Each run seeds a fresh store (a SQLite file, or a PostgreSQL schema ``pc_<hex>`` migrated, filled by
``COPY`` and dropped at the end) with customers x events-per-customer ledger rows written straight into
``consent_events`` (the chain's hashes are not computed: timing needs the rows' shape and distribution,
not a valid chain): round r writes the r-th event of every customer, so one customer's events lie
100,000 seqs apart across the whole ledger, as a real ledger's do. Subjects cycle through channel
grants and switches, topics, quiet hours, the cap and the pause. It then times answers for random
customers at random instants, through the service (``services.consent_state.consent_state``: the
indexed read and the fold) and through HTTP (the real app in process, ``GET
/v1/customers/{id}/consent-state?at=``, an auditor key), and reports p50 / p99 / max in ms, with the
read's query plan.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from prefcenter.config import load_settings  # noqa: E402
from prefcenter.domain.ledger import EVENT_SHAPE, format_at  # noqa: E402
from prefcenter.domain.pseudonyms import Pseudonymizer  # noqa: E402
from prefcenter.services.runtime import Runtime  # noqa: E402
from prefcenter.store.base import Store  # noqa: E402
from prefcenter.store.codec import EVENT_COLUMNS  # noqa: E402
from tests.seeding import migrate_sqlite, postgres_schema_store  # noqa: E402

SECRET = "benchmark-secret-key-0123"
BASE = datetime(2026, 1, 1, tzinfo=UTC)
# the r-th event of every customer: (action, subject, value JSON)
ROUNDS = [
    ("grant", "channel:email", "null"),
    ("grant", "topic:promotions", "null"),
    ("update", "quiet_hours", '{"start":"21:00","end":"08:00"}'),
    ("update", "max_per_week", "3"),
    ("grant", "topic:product-news", "null"),
    ("update", "pause", '"2026-12-01T00:00:00Z"'),
    ("withdraw", "channel:email", "null"),
    ("grant", "channel:sms", "null"),
    ("withdraw", "topic:promotions", "null"),
    ("update", "max_per_week", "5"),
]
COLUMNS = EVENT_COLUMNS.split(", ")


def rows(customers: int, per_customer: int) -> tuple[list[tuple[Any, ...]], tuple[int, str]]:
    """The ledger rows (in EVENT_COLUMNS order) and the head."""
    p = Pseudonymizer(SECRET)
    refs = [p.customer_ref(f"c{i}") for i in range(customers)]
    out: list[tuple[Any, ...]] = []
    seq, digest = 0, "0" * 64
    for r in range(per_customer):
        action, subject, value = ROUNDS[r % len(ROUNDS)]
        for i in range(customers):
            seq += 1
            prev, digest = digest, hashlib.sha256(seq.to_bytes(8, "big")).hexdigest()
            out.append(
                (
                    seq,
                    f"e{seq}",
                    format_at(BASE + timedelta(seconds=seq)),
                    f"c{i}",
                    refs[i],
                    action,
                    subject,
                    value,
                    "import",
                    "bench",
                    "2026-10",
                    None,
                    '{"batch":1}',
                    prev,
                    digest,
                    EVENT_SHAPE,
                )
            )
    return out, (seq, digest)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def figures(ms: list[float]) -> dict[str, float]:
    return {
        "n": len(ms),
        "p50_ms": round(statistics.median(ms), 3),
        "p99_ms": round(pct(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def asgi_get(app: Any, path: str, query: str, key: str) -> int:
    """One GET straight through the ASGI app on this loop (no client, no thread hop): its status, once
    the whole body is sent."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("bench", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def time_answers(
    store: Store, settings: Any, customers: int, n_events: int, queries: int
) -> dict[str, Any]:
    from prefcenter.api.app import create_app
    from prefcenter.services import keys
    from prefcenter.services.consent_state import consent_state
    from prefcenter.services.policies import load_policy_file

    rt = Runtime(
        settings=settings,
        store=store,
        pseudonyms=Pseudonymizer(SECRET),
        policy=load_policy_file(ROOT / "policies" / "default.toml"),
    )
    rng = random.Random(13)

    def ask() -> tuple[str, datetime]:
        return f"c{rng.randrange(customers)}", BASE + timedelta(seconds=rng.uniform(0, n_events + 10))

    _, key = await keys.create_key(rt, "auditor", "bench")
    app = create_app(rt, manage_store=False)  # the store is open already; nothing else runs
    gc.collect()
    gc.freeze()  # as the app's lifespan does once everything is built (api/app.py)
    for _ in range(50):  # warm up
        cid, at = ask()
        await consent_state(rt, cid, at)
    service: list[float] = []
    folded = 0
    for _ in range(queries):
        cid, at = ask()
        t0 = time.perf_counter()
        answer = await consent_state(rt, cid, at)
        service.append((time.perf_counter() - t0) * 1000)
        folded += len(answer.events)
    http: list[float] = []
    for i in range(queries // 2 + 50):
        cid, at = ask()
        t0 = time.perf_counter()
        status = await asgi_get(app, f"/v1/customers/{cid}/consent-state", f"at={quote(at.isoformat())}", key)
        took = (time.perf_counter() - t0) * 1000
        assert status == 200, status
        if i >= 50:
            http.append(took)
    return {
        "service": figures(service),
        "http_asgi": figures(http),
        "proof_events_per_answer": round(folded / queries, 2),
    }


async def run_sqlite(customers: int, per_customer: int, queries: int) -> dict[str, Any]:
    from prefcenter.store.sqlite import SqliteStore
    from prefcenter.store.sqlite.history import CUSTOMER_EVENTS_UNTIL_SQL
    from prefcenter.store.sqlite.rows import INSERT_EVENT_SQL

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ledger.db"
        await migrate_sqlite(path)
        t0 = time.perf_counter()
        data, head = rows(customers, per_customer)
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA synchronous = OFF")
        conn.executemany(INSERT_EVENT_SQL, data)
        conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", head)
        conn.commit()
        plan = [
            r[-1]
            for r in conn.execute(
                "EXPLAIN QUERY PLAN " + CUSTOMER_EVENTS_UNTIL_SQL, (data[0][4], format_at(BASE))
            )
        ]
        conn.close()
        del data
        seeded = time.perf_counter() - t0
        settings = load_settings({}, database_url=f"sqlite:///{path}", secret_key=SECRET)
        store = SqliteStore(path)
        await store.open()
        try:
            timed = await time_answers(store, settings, customers, head[0], queries)
        finally:
            await store.close()
        return {
            "seed_s": round(seeded, 1),
            "db_mb": round(path.stat().st_size / 2**20, 1),
            **timed,
            "plan": plan,
        }


async def run_postgres(customers: int, per_customer: int, queries: int, dsn: str) -> dict[str, Any]:
    from prefcenter.store.postgres.history import CUSTOMER_EVENTS_UNTIL_SQL

    async with postgres_schema_store(dsn, max_size=4) as store:
        assert store.pool is not None
        t0 = time.perf_counter()
        data, head = rows(customers, per_customer)
        async with store.pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("consent_events", records=data, columns=COLUMNS)
            await conn.execute("UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1", *head)
        await store.pool.execute("VACUUM (ANALYZE) consent_events")
        seeded = time.perf_counter() - t0
        found = await store.pool.fetch("EXPLAIN " + CUSTOMER_EVENTS_UNTIL_SQL, data[0][4], format_at(BASE))
        plan = [r[0] for r in found]
        del data
        settings = load_settings({}, database_url=dsn, database_schema=store.schema, secret_key=SECRET)
        timed = await time_answers(store, settings, customers, head[0], queries)
    return {"seed_s": round(seeded, 1), **timed, "plan": plan}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events-per-customer", type=int, default=10)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--smoke", action="store_true", help="300 customers, 200 queries")
    args = parser.parse_args()
    customers, queries = (300, 200) if args.smoke else (args.customers, args.queries)
    per = args.events_per_customer
    report: dict[str, Any] = {"customers": customers, "events": customers * per, "queries": queries}
    from prefcenter.logging import configure_logging

    configure_logging(production=False, level="warning")  # on stderr, and not each migration applied
    if args.engine in ("sqlite", "both"):
        report["sqlite"] = asyncio.run(run_sqlite(customers, per, queries))
    if args.engine in ("postgres", "both"):
        from tests import engines

        url = args.postgres_url or engines.postgres_url()
        report["postgres"] = asyncio.run(run_postgres(customers, per, queries, url))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
