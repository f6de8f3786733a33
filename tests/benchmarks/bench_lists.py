"""Benchmark: keyset pages of ``GET /v1/customers`` (API.md "Lists") over a large customers table, on
SQLite and/or PostgreSQL. Prints JSON.

    python tests/benchmarks/bench_lists.py [--customers 100000] [--engine sqlite|postgres|both]
        [--postgres-url postgresql://...] [--smoke]

Each run seeds a fresh store (a SQLite file, or a PostgreSQL schema ``pc_<hex>`` that the store
migrated, filled by ``COPY`` and dropped at the end) with N customers: channel email (70 %), sms (20 %)
or none (10 %); every one subscribed to ``promotions``, one in a hundred also to ``product-news``; one
in a hundred updated a day later than the rest. It then times the store's page read (what the handler
calls; 100 items, the median of 7 reads, in ms): the first page, a page from the middle (a cursor at
N/2), the first and a middle page filtered by the rare topic, by channel sms, by ``channel=none``, and
by ``updated_since`` (the later 1 %), and prints each filter's query plan (EXPLAIN QUERY PLAN /
EXPLAIN): none of the id-ordered walks may sort or scan the whole table, except ``updated_since`` alone,
which walks the customers in id order and skips those updated earlier (documented in the report).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.seeding import migrate_sqlite, postgres_schema_store  # noqa: E402

NOW = "2026-11-01T10:00:00.000000Z"
LATER = "2026-11-02T10:00:00.000000Z"
SINCE = "2026-11-02T00:00:00.000000Z"
LIMIT = 100
REPEAT = 7


def rows_for(n: int) -> dict[str, list[tuple[Any, ...]]]:
    ids = [f"c{i:07d}" for i in range(n)]

    def channel(i: int) -> str | None:
        return "none" if i % 10 == 0 else ("sms" if i % 10 < 3 else "email")

    customers = []
    for i, cid in enumerate(ids):
        ch = channel(i)
        at = LATER if i % 100 == 7 else NOW
        customers.append(
            (cid, f"ref-{cid}", "Europe/Warsaw", "pl", "PL", None if ch == "none" else ch, NOW, at)
        )
    topics = [(cid, "promotions") for cid in ids] + [(cid, "product-news") for cid in ids[3::100]]
    return {
        "topics": [
            ("promotions", "marketing", '{"en":"Offers"}', "{}", NOW, NOW),
            ("product-news", "marketing", '{"en":"News"}', "{}", NOW, NOW),
        ],
        "customers": customers,
        "customer_topics": topics,
    }


COLUMNS = {
    "topics": ("id", "category", "names", "descriptions", "created_at", "updated_at"),
    "customers": ("id", "ref", "timezone", "locale", "country", "channel", "created_at", "updated_at"),
    "customer_topics": ("customer_id", "topic_id"),
}

CASES: dict[str, dict[str, Any]] = {
    "all": {},
    "topic_rare": {"topic": "product-news"},
    "channel_sms": {"channel": "sms"},
    "channel_none": {"channel": "none"},
    "updated_since": {"updated_since": SINCE},
}


async def time_pages(store: Any, n: int) -> dict[str, Any]:
    middle = f"c{n // 2:07d}"
    figures: dict[str, Any] = {}
    for name, flt in CASES.items():
        args = {"topic": None, "channel": None, "updated_since": None, **flt}
        for where, after in (("first", None), ("middle", middle)):
            times = []
            got = 0
            for _ in range(REPEAT):
                t0 = time.perf_counter()
                rows = await store.list_customers(**args, after=after, limit=LIMIT + 1)
                times.append((time.perf_counter() - t0) * 1000)
                got = len(rows)
            figures[f"{name}_{where}_page_ms"] = round(statistics.median(times), 3)
            figures[f"{name}_{where}_page_items"] = min(got, LIMIT)
    return figures


def plans_sql(ph: Any, topics_expr: str) -> dict[str, tuple[str, list[Any]]]:
    from prefcenter.store import listing

    out = {}
    for name, flt in CASES.items():
        args = {"topic": None, "channel": None, "updated_since": None, **flt}
        out[name] = listing.customers_sql(ph, topics_expr, **args, after="c0000500", limit=LIMIT + 1)
    return out


async def run_sqlite(n: int) -> dict[str, Any]:
    import sqlite3

    from prefcenter.store.sqlite import reads
    from prefcenter.store.sqlite.store import SqliteStore

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.db"
        await migrate_sqlite(path)
        conn = sqlite3.connect(path)
        t0 = time.perf_counter()
        for table, rows in rows_for(n).items():
            cols = COLUMNS[table]
            conn.executemany(
                f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows
            )
        conn.commit()
        conn.execute("ANALYZE")
        seeded = time.perf_counter() - t0
        plans = {}
        for name, (sql, params) in plans_sql(reads._ph, reads.TOPICS_EXPR).items():
            plans[name] = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params)]
        conn.close()
        store = SqliteStore(path)
        await store.open()
        try:
            figures = await time_pages(store, n)
        finally:
            await store.close()
    return {"seed_s": round(seeded, 2), **figures, "plans": plans}


async def run_postgres(n: int, dsn: str) -> dict[str, Any]:
    from prefcenter.store.postgres import reads

    async with postgres_schema_store(dsn, max_size=2) as store:
        assert store.pool is not None
        t0 = time.perf_counter()
        rows = rows_for(n)
        async with store.pool.acquire() as conn, conn.transaction():
            for table, records in rows.items():
                await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
        await store.pool.execute(f"VACUUM (ANALYZE) {', '.join(rows)}")
        seeded = time.perf_counter() - t0
        plans = {}
        for name, (sql, params) in plans_sql(reads._ph, reads.TOPICS_EXPR).items():
            found = await store.pool.fetch("EXPLAIN " + sql, *params)
            plans[name] = [r[0] for r in found]
        figures = await time_pages(store, n)
    return {"seed_s": round(seeded, 2), **figures, "plans": plans}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--smoke", action="store_true", help="2,000 customers")
    args = parser.parse_args()
    n = 2000 if args.smoke else args.customers
    report: dict[str, Any] = {"customers": n, "limit": LIMIT}
    from prefcenter.logging import configure_logging

    configure_logging(production=False, level="warning")  # on stderr, and not each migration applied
    if args.engine in ("sqlite", "both"):
        report["sqlite"] = asyncio.run(run_sqlite(n))
    if args.engine in ("postgres", "both"):
        from tests import engines

        report["postgres"] = asyncio.run(run_postgres(n, args.postgres_url or engines.postgres_url()))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
