"""Benchmark: the send-approval gate as history piles up, one campaign a day. Prints JSON.

    python tests/benchmarks/bench_history.py [--customers 10000] [--days 30] [--smoke]
        [--engine sqlite|postgres|both] [--prune | --no-prune] [--no-send-by] [--repeat R]
        [--checkpoint-daily] [--vacuum-daily] [--postgres-url ...]

A fresh store (SQLite file, or a fresh PostgreSQL schema ``pcbench_<hex>`` dropped at the end) is seeded
with bench_approvals.py's customers (the same random mix of channels, zones, quiet hours, own weekly
caps and subscriptions; none of its pre-made reservations) and one marketing email campaign per day:
campaign ``day<d>``, ``send_by`` = its day's instant + 1 day (a daily newsletter that expires;
``--no-send-by``: none). The real app is served by ``prefcenter serve`` (uvicorn) on 127.0.0.1 in its
own process (its background pruner off), warmed up by one dry run (which writes nothing); then each
day d this script sends ONE real ``POST /v1/approvals`` with every customer id (up to 10,000) and
``at`` = day d's instant (12:00 UTC): the allowed decisions reserve a slot, every decision is logged,
so the reservations and the decision log grow day by day as they would in production.

With ``--prune`` (the default), before each day's call the retention pruner runs once "as of that day"
(``prefcenter.services.retention.prune(store, policy, now=day d)``, in this process, on a store opened
on the same database). Where that module does not exist (the code before issue 14) pruning is reported
as ``"unavailable"`` and the run goes on unpruned. ``--checkpoint-daily`` (SQLite, a diagnosis):
checkpoint and truncate the -wal from outside before each call. ``--vacuum-daily`` (PostgreSQL, a
diagnosis): ``VACUUM (ANALYZE)`` the reservations and the decision log from outside before each call,
after that day's pruning, as autovacuum would have had the time to between two real days.

The JSON: per day the call's decisions/s (client side, the whole HTTP call), the same per CPU second
the API process (PostgreSQL: and its server backends) spent on the call (a figure other work on the
machine moves much less), its verdict counts and the database size then; the first and last day's
figures and their ratios (also the medians of the first and last three days: one call is noisy; and
the last three days' over days 7-9, once the caps' week is full of reservations to read); at
the end the database size (SQLite: the file plus its -wal, after the server stopped; PostgreSQL:
``pg_total_relation_size`` of every table of the schema) and the row counts of the growing tables; the
pruner's totals and time. Only ratios within one run mean much on a shared machine.

``--repeat R`` runs the whole history R times per engine (the engines taking turns, each time on a fresh
store): one run's ratio moved 0.64-1.07 here. Each engine's figures are then its first run's, with
``repeats``: each ratio of every run and their median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_approvals beside this file

import bench_approvals as ba

ROOT = ba.ROOT
#: Day 0's instant; day d is this + d days (noon UTC: most of the customers' zones are awake).
DAY0 = datetime(2026, 11, 2, 12, tzinfo=UTC)
#: The tables that grow with history (counted at the end).
GROWING = ("reservations", "decisions", "outbox", "message_history", "consent_events")


def day_at(d: int) -> datetime:
    return DAY0 + timedelta(days=d)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def history_rows(n: int, days: int, send_by: bool) -> ba.Rows:
    """bench_approvals' customers, without its reservations, and one email campaign per day."""
    rows = ba.make_rows(n)
    rows.reservations = []
    content = json.dumps({"email": {"subject": "Daily", "text": "t", "html": "<p>h</p>"}})
    created = "2026-11-01T00:00:00.000000Z"
    rows.campaigns = [
        (
            f"day{d:03d}",
            "promotions",
            '["email"]',
            iso(day_at(d) + timedelta(days=1)) if send_by else None,
            content,
            created,
            created,
        )
        for d in range(days)
    ]
    return rows


# -- the pruner (issue 14), when the code has one ---------------------------------------------------


class Pruner:
    """The retention pruner run in this process on a store of its own on the same database, each day
    "as of" that day; ``available`` False when the code has no ``prefcenter.services.retention``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.available = False
        self.reason = ""
        self.totals: dict[str, int] = {}
        self.seconds = 0.0
        self.runs = 0
        self._runner = asyncio.Runner()
        try:
            from prefcenter.services import retention
        except ImportError as exc:
            self.reason = f"unavailable: {exc}"
            return
        from prefcenter.bootstrap import build_runtime
        from prefcenter.config import load_settings
        from prefcenter.logging import configure_logging
        from prefcenter.services.policies import load_active_policy

        settings = load_settings(env)
        configure_logging(production=False, level="warning")
        self._prune = retention.prune
        self._rt = build_runtime(settings)
        self._policy = load_active_policy(settings)
        self._runner.run(self._rt.store.open())
        self.available = True

    def run(self, now: datetime) -> dict[str, int] | None:
        if not self.available:
            return None
        import msgspec

        t0 = time.perf_counter()
        report = self._runner.run(self._prune(self._rt.store, self._policy, now))
        self.seconds += time.perf_counter() - t0
        self.runs += 1
        counts = {k: v for k, v in msgspec.structs.asdict(report).items() if isinstance(v, int)}
        for k, v in counts.items():
            self.totals[k] = self.totals.get(k, 0) + v
        return counts

    def close(self) -> None:
        try:
            if self.available:
                self._runner.run(self._rt.store.close())
        finally:
            self._runner.close()

    def report(self, wanted: bool) -> dict[str, object]:
        if not wanted:
            return {"status": "off (--no-prune)"}
        if not self.available:
            return {"status": self.reason}
        return {
            "status": "ran",
            "runs": self.runs,
            "totals": self.totals,
            "seconds_total": round(self.seconds, 3),
            "seconds_mean": round(self.seconds / max(1, self.runs), 4),
        }


# -- sizes and counts -------------------------------------------------------------------------------


def sqlite_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in (db, Path(f"{db}-wal")) if p.exists())


def child_pid(pid: int) -> int:
    """The first child of ``pid`` (py-spy's: the API process), else ``pid``."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pid
    return int(children[0]) if children else pid


def cpu_of(server_pid: int, backends: list[int]) -> tuple[float, float]:
    """CPU seconds so far of the API process (all its threads: the SQLite writer thread too), and of
    the PostgreSQL backends given (a local server)."""
    return ba.cpu_seconds(server_pid), sum(ba.cpu_seconds(pid) for pid in backends)


def checkpoint(db: Path) -> list[int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)`` from a connection of our own: [busy, wal frames, frames
    checkpointed] (busy = 1: a reader or writer held it off, the -wal could not be truncated)."""
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [int(x) for x in conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()]
    finally:
        conn.close()


def sqlite_counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in GROWING}
    finally:
        conn.close()


async def pg_vacuum(dsn: str, schema: str) -> float:
    """``VACUUM (ANALYZE)`` of the growing tables from outside, as autovacuum would between two days
    (the benchmark's days are seconds apart); its seconds."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": ba.quote_ident(schema)})
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE) reservations, decisions")
        return round(time.perf_counter() - started, 3)
    finally:
        await conn.close()


async def pg_size_and_counts(dsn: str, schema: str) -> tuple[int, dict[str, int]]:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": ba.quote_ident(schema)})
    try:
        size = await conn.fetchval(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
            schema,
        )
        counts = {t: int(await conn.fetchval(f"SELECT count(*) FROM {t}")) for t in GROWING}
        return int(size), counts
    finally:
        await conn.close()


async def pg_relation_kb(dsn: str, schema: str) -> dict[str, int]:
    """The growing tables' heaps and indexes, each in KiB (whether an index grows while its table's
    rows stay bounded)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT c.relname, pg_relation_size(c.oid) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'i') "
            "AND c.relname LIKE ANY($2::text[]) ORDER BY c.relname",
            schema,
            [f"{t}%" for t in ("reservations", "decisions", "customers")],
        )
        return {name: size // 1024 for name, size in rows}
    finally:
        await conn.close()


# -- one engine -------------------------------------------------------------------------------------


def run_engine(engine: str, args: argparse.Namespace, n: int, days: int, tmp: Path) -> dict[str, object]:
    env = {
        **os.environ,
        "PREFCENTER_SECRET_KEY": ba.SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
        "PREFCENTER_POLICY_DIR": str(ROOT / "policies"),
        "PREFCENTER_KEY_CACHE_SECONDS": "30",
        # no background pass in the server: it would prune as of the wall clock, not the day simulated
        "PREFCENTER_PRUNE_INTERVAL_SECONDS": "0",
    }
    out: dict[str, object] = {
        "engine": engine,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    rows = history_rows(n, days, not args.no_send_by)
    db = tmp / f"history-{engine}.db"
    schema = app_name = dsn = None
    if engine == "sqlite":
        env["PREFCENTER_DATABASE_URL"] = f"sqlite:///{db}"
    else:
        schema = app_name = "pcbench_" + uuid.uuid4().hex
        dsn = ba.with_app_name(args.postgres_url, app_name)
        env["PREFCENTER_DATABASE_URL"] = dsn
        env["PREFCENTER_DATABASE_SCHEMA"] = schema

    def size_counts() -> tuple[int, dict[str, int]]:
        if schema is None:
            return sqlite_bytes(db), sqlite_counts(db)
        return asyncio.run(pg_size_and_counts(args.postgres_url, schema))

    pruner: Pruner | None = None
    pruner_report: dict[str, object] = {"status": "off (--no-prune)"}
    try:
        t0 = time.perf_counter()
        if schema is None:
            ba.seed_sqlite(db, rows)
        else:
            assert dsn is not None
            asyncio.run(ba.seed_postgres(dsn, schema, rows))
        out["seed_seconds"] = round(time.perf_counter() - t0, 1)
        pruner = Pruner(env) if args.prune else None
        port = ba.free_port()
        command = [sys.executable, "-m", "prefcenter.cli", "serve", "--port", str(port)]
        profile = f"{args.py_spy}.{engine}" if args.py_spy else None
        if profile:  # py-spy's collapsed stacks of the API process over the whole run
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")  # venv's own
            command = [spy, "record", "-f", "raw", "-o", profile, "--", *command]
        server = ba.Server(command, env, port, tmp / f"server-{engine}.log")
        api_pid = child_pid(server.proc.pid) if profile else server.proc.pid
        per_day: list[dict[str, Any]] = []
        ids = [f"c{i:06d}" for i in range(n)][: min(10_000, n)]
        try:
            headers = {"Authorization": f"Bearer {ba.KEY}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=600) as client:
                client.get("/healthz").raise_for_status()  # the connection is made, and kept
                # a warm-up that writes nothing (a dry run of day 0): day 0's figure is not the cold start
                warm = {"campaign_id": "day000", "customer_ids": ids, "at": iso(day_at(0)), "dry_run": True}
                client.post("/v1/approvals", json=warm).raise_for_status()
                for d in range(days):
                    day: dict[str, Any] = {"day": d}
                    if args.checkpoint_daily and schema is None:
                        day["checkpoint"] = checkpoint(db)
                    if pruner is not None:
                        p0 = time.perf_counter()
                        counts = pruner.run(day_at(d))
                        if counts is not None:
                            day["prune_seconds"] = round(time.perf_counter() - p0, 3)
                            day["pruned"] = counts
                    if args.vacuum_daily and schema is not None:  # after the pruner: its deletes too
                        day["vacuum_seconds"] = asyncio.run(pg_vacuum(args.postgres_url, schema))
                    body = {"campaign_id": f"day{d:03d}", "customer_ids": ids, "at": iso(day_at(d))}
                    backends = asyncio.run(ba.backend_pids(dsn, app_name)) if dsn and app_name else []
                    cpu0 = cpu_of(api_pid, backends)
                    started = time.perf_counter()
                    r = client.post("/v1/approvals", json=body)
                    took = time.perf_counter() - started
                    api_cpu, backend_cpu = (
                        b - a for a, b in zip(cpu0, cpu_of(api_pid, backends), strict=True)
                    )
                    cpu = api_cpu + backend_cpu
                    assert r.status_code == 200, r.text[:2000]
                    summary = r.json()["summary"]
                    day["seconds"] = round(took, 3)
                    day["decisions_per_s"] = round(len(ids) / took)
                    # the server's CPU for the call (PostgreSQL: and its backends'): less moved by load
                    day["cpu_seconds"] = round(cpu, 3)
                    day["decisions_per_cpu_s"] = round(len(ids) / cpu) if cpu > 0 else None
                    day["summary"] = {k: summary.get(k, 0) for k in ("allow", "deny", "defer")}
                    day["db_bytes"] = size_counts()[0]
                    if schema is not None:  # which side's time grows, and which relation
                        day["api_cpu_seconds"] = round(api_cpu, 3)
                        day["backend_cpu_seconds"] = round(backend_cpu, 3)
                        day["relation_kb"] = asyncio.run(pg_relation_kb(args.postgres_url, schema))
                    if schema is None:  # the -wal alone: whether checkpoints keep up
                        wal = Path(f"{db}-wal")
                        day["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
                    day["load_average_1m"] = round(os.getloadavg()[0], 2)
                    per_day.append(day)
        finally:
            if profile:  # py-spy writes its profile at SIGINT; then the server it ran is stopped
                server.proc.send_signal(signal.SIGINT)
                server.proc.wait(timeout=120)
                if api_pid != server.proc.pid:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(api_pid, signal.SIGTERM)
                out["py_spy_profile"] = profile
            server.stop()
            if pruner is not None:  # its connections closed too: the size is the server's to settle
                pruner.close()
                pruner_report = pruner.report(True)
                pruner = None
        rates = [int(day["decisions_per_s"]) for day in per_day]
        first, last = rates[0], rates[-1]
        cpu_first, cpu_last = per_day[0]["decisions_per_cpu_s"], per_day[-1]["decisions_per_cpu_s"]
        k = min(3, len(rates))
        first3, last3 = statistics.median(rates[:k]), statistics.median(rates[-k:])
        # From day 7 on the caps' week is full: the gate reads about as many reservations each day as it
        # will every day after (day 0 reads none). Days 7-9 are the same weekdays as days 0-2.
        week = statistics.median(rates[7:10]) if len(rates) >= 13 else None
        size, counts = size_counts()
        out.update(
            {
                "customers": n,
                "ids_per_call": len(ids),
                "days": days,
                "send_by": not args.no_send_by,
                "first_day_decisions_per_s": first,
                "last_day_decisions_per_s": last,
                "ratio_last_to_first": round(last / first, 3),
                "first3_median_decisions_per_s": round(first3),
                "last3_median_decisions_per_s": round(last3),
                "ratio_last3_to_first3": round(last3 / first3, 3),
                "days_7_9_median_decisions_per_s": round(week) if week else None,
                "ratio_last3_to_days_7_9": round(last3 / week, 3) if week else None,
                "first_day_decisions_per_cpu_s": cpu_first,
                "last_day_decisions_per_cpu_s": cpu_last,
                "ratio_cpu_last_to_first": round(cpu_last / cpu_first, 3) if cpu_first and cpu_last else None,
                "db_bytes_end": size,
                "db_mb_end": round(size / 2**20, 2),
                "db_mb_peak_while_serving": round(max(d["db_bytes"] for d in per_day) / 2**20, 2),
                **({"wal_bytes_end": sqlite_bytes(db) - db.stat().st_size} if schema is None else {}),
                "rows_end": counts,
                "prune": pruner_report,
                "per_day": per_day,
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    finally:
        if pruner is not None:
            pruner.close()
        if schema is not None and app_name is not None:
            asyncio.run(ba.drop_postgres(args.postgres_url, schema, app_name))
    return out


#: The ratios ``--repeat`` gives the median of.
RATIOS = (
    "ratio_last_to_first",
    "ratio_last3_to_first3",
    "ratio_last3_to_days_7_9",
    "ratio_cpu_last_to_first",
)


def repeats(runs: list[dict[str, object]]) -> dict[str, object]:
    """Every run's ratios and, per ratio, their median (None where a run could not give it)."""
    out: dict[str, object] = {"runs": len(runs)}
    for key in RATIOS:
        each = [r.get(key) for r in runs]
        given = [float(str(x)) for x in each if x is not None]
        out[key] = {"each": each, "median": round(statistics.median(given), 3) if given else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=None, help="default 30 (--smoke: 3)")
    ap.add_argument("--smoke", action="store_true", help="tiny: 200 customers, 3 days unless --days")
    ap.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument(
        "--prune",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the retention pruner as of each day before its call (default: on)",
    )
    ap.add_argument("--no-send-by", action="store_true", help="daily campaigns without a send_by")
    ap.add_argument("--repeat", type=int, default=1, help="run each engine's history R times (medians)")
    ap.add_argument("--py-spy", help="record the API process with py-spy (collapsed stacks) here")
    ap.add_argument(
        "--checkpoint-daily",
        action="store_true",
        help="SQLite, a diagnosis: checkpoint and truncate the -wal from outside before each day's call",
    )
    ap.add_argument(
        "--vacuum-daily",
        action="store_true",
        help="PostgreSQL, a diagnosis: VACUUM (ANALYZE) the reservations and decisions before each day's call",
    )
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("PREFCENTER_TEST_POSTGRES_URL") or ba.DEFAULT_POSTGRES_URL,
        help="the PostgreSQL database (a schema of its own is created in it and dropped)",
    )
    args = ap.parse_args()
    n = 200 if args.smoke else args.customers
    days = args.days if args.days is not None else 3 if args.smoke else 30
    if n < 1 or days < 1 or args.repeat < 1:
        ap.error("--customers, --days and --repeat must be >= 1")
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    if "postgres" in engines and (problem := ba.postgres_reachable(args.postgres_url)):
        ap.error(f"PostgreSQL at {args.postgres_url} cannot be reached: {problem}")
    report: dict[str, object] = {"cpus": os.cpu_count(), "prune_requested": args.prune}
    started = time.perf_counter()
    runs: dict[str, list[dict[str, object]]] = {engine: [] for engine in engines}
    for _ in range(args.repeat):
        for engine in engines:
            with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmpdir:
                runs[engine].append(run_engine(engine, args, n, days, Path(tmpdir)))
    for engine, done in runs.items():
        report[engine] = {**done[0], "repeats": repeats(done)} if args.repeat > 1 else done[0]
    report["seconds_total"] = round(time.perf_counter() - started)
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
