"""Benchmark: the send-approval gate end to end, on SQLite and/or PostgreSQL. Prints JSON.

    python tests/benchmarks/bench_approvals.py [--customers 50000] [--seconds 10] [--smoke]
        [--engine sqlite|postgres|both] [--processes 1,3] [--postgres-url postgresql://...] [--repeat R]

(a) engine-only decisions/s is bench_engine.py. Here, for each configuration (SQLite: one process, as
always; PostgreSQL: each of ``--processes``, served by ``prefcenter serve --workers N`` on one socket), on
a store freshly seeded with the same customers:

(b) POST /v1/approvals with 10,000 ids through the real app served by uvicorn on 127.0.0.1 (a separate
    process): decisions/s including the reservations and the decision log written to the store, for
    real calls and dry runs, five rounds (median and range over the calls). With N > 1 processes each
    round sends N calls at once from N clients (disjoint ids when there are enough customers), so every
    process works: the figure is the round's aggregate decisions/s (all its decisions over the time from
    the first call's start to the last one's end);
(c) single-id approvals/s and p50/p99 under 32 concurrent connections for N seconds, load from wrk in
    a second process, and in the same run the same figures for a bare litestar endpoint that decodes and
    returns a small msgspec Struct, served the same way (uvicorn with as many worker processes: the
    ceiling of this stack on this machine). The bare endpoint's server runs beside the configurations
    and is measured straight after each one's wrk run, so each ratio compares runs a few seconds apart.
    ``--repeat R``: R such rounds (a wrk run on prefcenter, then one on the bare endpoint) per
    configuration; ``c_ratio`` and ``c_p99_ratio`` are the medians of the rounds' ratios and
    ``c_rounds`` lists every round (one round's ratio moved 0.54-0.81 here between rounds minutes
    apart). The figures under ``c_single_id_approvals`` and ``c_bare_litestar`` are the first round's.

Each phase also reports the CPU seconds the API processes and (PostgreSQL) the server backends of this
run spent, read from /proc: where the time went when the figure disappoints.

SQLite is seeded by writing the rows straight into the migrated file; PostgreSQL with the same rows by
``COPY`` (asyncpg ``copy_records_to_table``) into a fresh schema ``pcbench_<hex>`` that the store migrated
(its triggers fill the gate row as on SQLite), analysed and vacuumed like a settled database, and dropped
at the end. The PostgreSQL server is whatever ``--postgres-url`` names (default
``$PREFCENTER_TEST_POSTGRES_URL`` or the local test server): on the same machine it shares the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.keys import hash_key
from prefcenter.store.codec import places_text

ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123"
KEY = "pck_benchmark-key-not-secret"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
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
#: The issue's targets on PostgreSQL (one API process).
TARGET_P99_MS = 25.0
TARGET_10K_PER_S = 50_000
ROUNDS, SMOKE_ROUNDS = 5, 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the rows ---------------------------------------------------------------------------------------


@dataclass
class Rows:
    """What both engines are seeded with, table by table, in each table's column order below."""

    api_keys: list[tuple[Any, ...]] = field(default_factory=list)
    topics: list[tuple[Any, ...]] = field(default_factory=list)
    campaigns: list[tuple[Any, ...]] = field(default_factory=list)
    customers: list[tuple[Any, ...]] = field(default_factory=list)  # without phone_places
    contacts: list[tuple[Any, ...]] = field(default_factory=list)
    customer_topics: list[tuple[Any, ...]] = field(default_factory=list)
    reservations: list[tuple[Any, ...]] = field(default_factory=list)
    phone_places: dict[str, str] = field(default_factory=dict)  # customer id -> as the write path stores


COLUMNS = {
    "api_keys": ("name", "role", "key_hash", "key_prefix", "created_at"),
    "topics": ("id", "category", "names", "descriptions", "created_at", "updated_at"),
    "campaigns": ("id", "topic", "channels", "send_by", "content", "created_at", "updated_at"),
    "customers": (
        "id",
        "ref",
        "timezone",
        "locale",
        "country",
        "channel",
        "quiet_start",
        "quiet_end",
        "max_per_week",
        "paused_until",
        "created_at",
        "updated_at",
    ),
    "contacts": ("customer_id", "channel", "address", "address_ref"),
    "customer_topics": ("customer_id", "topic_id"),
    "reservations": ("customer_id", "campaign_id", "at_us", "channel", "marketing"),
}


def make_rows(n: int) -> Rows:
    """The benchmark's customers (the same random draws as ever: the SQLite figures stay comparable)."""
    p = Pseudonymizer(SECRET)
    rng = random.Random(1)
    now = "2026-11-01T00:00:00.000000Z"
    rows = Rows()
    rows.api_keys.append(("bench", "admin", hash_key(KEY), "pck_bench", now))
    rows.topics.append(("promotions", "marketing", '{"en":"Offers"}', "{}", now, now))
    content = json.dumps(
        {
            "email": {"subject": "Hi", "text": "t", "html": "<p>h</p>"},
            "sms": {"text": "t"},
            "push": {"text": "t"},
        }
    )
    for i in range(8):
        rows.campaigns.append((f"camp{i}", "promotions", '["email","sms","push"]', None, content, now, now))
    at0 = int(datetime(2026, 11, 22, 12, tzinfo=UTC).timestamp() * 10**6)
    for i in range(n):
        cid = f"c{i:06d}"
        channel = rng.choices(["email", "sms", "push", None], [60, 20, 10, 10])[0]
        quiet = rng.random() < 0.4
        rows.customers.append(
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
        rows.contacts.append(
            (cid, "email", f"{cid}@example.org", p.address_ref("email", f"{cid}@example.org"))
        )
        if rng.random() < 0.6:
            number = f"+48600{i:06d}"
            rows.contacts.append((cid, "sms", number, p.address_ref("sms", number)))
        if rng.random() < 0.8:
            rows.customer_topics.append((cid, "promotions"))
        if rng.random() < 0.2:  # some recent sends
            rows.reservations.append((cid, "camp7", at0 - rng.randrange(1, 6 * 86_400) * 10**6, "email", 1))
    # as the write path does (migration 0012): where each phone number is registered, stored once
    held: dict[str, list[tuple[str, str]]] = {}
    for cid, channel, address, _ in rows.contacts:
        held.setdefault(cid, []).append((channel, address))
    rows.phone_places = {cid: places_text(pairs) for cid, pairs in held.items()}
    return rows


# -- SQLite -----------------------------------------------------------------------------------------


def seed_sqlite(db: Path, rows: Rows) -> None:
    """Customers straight into the migrated file (the benchmark measures the gate, not the seeding)."""
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{db}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "migrate"], env=env, check=True, capture_output=True
    )
    conn = sqlite3.connect(db)
    for table in (
        "api_keys",
        "topics",
        "campaigns",
        "customers",
        "contacts",
        "customer_topics",
        "reservations",
    ):
        columns = COLUMNS[table]
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
            getattr(rows, table),
        )
    conn.executemany(
        "UPDATE customers SET phone_places = ? WHERE id = ?", [(v, k) for k, v in rows.phone_places.items()]
    )
    conn.commit()
    conn.close()


# -- PostgreSQL -------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def with_app_name(dsn: str, name: str) -> str:
    """``dsn`` naming its connections ``name`` (pg_stat_activity.application_name: this run's backends)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}"


async def seed_postgres(dsn: str, schema: str, rows: Rows) -> None:
    """Migrate a fresh ``schema`` with the store, record the phonenumbers version as ``prefcenter
    migrate`` does on an empty database, then COPY the rows in one transaction (the gate-row triggers run
    as for any insert) and VACUUM ANALYZE the tables, as a settled database has them."""
    from prefcenter.logging import configure_logging
    from prefcenter.store.postgres import PostgresStore

    configure_logging(production=False, level="warning")  # on stderr, and not each migration applied
    store = PostgresStore(dsn, schema=schema, min_size=1, max_size=2)
    await store.open()
    try:
        await store.migrate()
        async with store.write() as tx:
            await tx.fill_phone_places()  # an empty database: only records the version
        assert store.pool is not None
        async with store.pool.acquire() as conn, conn.transaction():
            for table in ("api_keys", "topics", "campaigns"):
                await conn.copy_records_to_table(table, records=getattr(rows, table), columns=COLUMNS[table])
            customers = [(*row, rows.phone_places.get(row[0])) for row in rows.customers]
            await conn.copy_records_to_table(
                "customers", records=customers, columns=(*COLUMNS["customers"], "phone_places")
            )
            for table in ("contacts", "customer_topics", "reservations"):
                await conn.copy_records_to_table(table, records=getattr(rows, table), columns=COLUMNS[table])
        tables = (
            "customers",
            "contacts",
            "customer_topics",
            "reservations",
            "campaigns",
            "topics",
            "api_keys",
        )
        await store.pool.execute(f"VACUUM (ANALYZE) {', '.join(tables)}")
    finally:
        await store.close()


async def drop_postgres(dsn: str, schema: str, app_name: str) -> None:
    """End this run's leftover connections (by their application name: only ours) and drop the schema."""
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"lock_timeout": "30s"})
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 "
            "AND pid <> pg_backend_pid()",
            app_name,
        )
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
    finally:
        await conn.close()


async def backend_pids(dsn: str, app_name: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            app_name,
        )
        return [int(r[0]) for r in found]
    finally:
        await conn.close()


def postgres_reachable(dsn: str) -> str | None:
    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# -- processes and their CPU ------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


def worker_pids(pid: int) -> list[int]:
    """``serve --workers N``'s worker processes (its 'spawn' children), else the process itself."""
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return [pid]
    workers = []
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
        except OSError:
            pass
    return workers or [pid]


class CpuMeter:
    """CPU seconds spent by the API processes and (PostgreSQL) this run's server backends over a phase."""

    def __init__(self, server: Server, dsn: str | None, app_name: str | None) -> None:
        self.server, self.dsn, self.app_name = server, dsn, app_name

    def _backends(self) -> dict[int, float]:
        if self.dsn is None or self.app_name is None:
            return {}
        return {pid: cpu_seconds(pid) for pid in asyncio.run(backend_pids(self.dsn, self.app_name))}

    @contextmanager
    def phase(self, into: dict[str, object]) -> Iterator[None]:
        workers = worker_pids(self.server.proc.pid)
        api0 = {pid: cpu_seconds(pid) for pid in workers}
        pg0 = self._backends()
        sampler = WaitSampler(self.dsn, self.app_name) if self.dsn and self.app_name else None
        wall0 = time.perf_counter()
        try:
            yield
        finally:
            if sampler is not None:
                sampler.stop()
        wall = time.perf_counter() - wall0
        api = [round(cpu_seconds(pid) - api0[pid], 2) for pid in workers]
        pg1 = self._backends()
        figures: dict[str, object] = {"wall_s": round(wall, 2), "api_processes_cpu_s": api}
        if self.dsn is not None:
            # a backend that appeared during the phase spent all its CPU in it
            figures["postgres_backends_cpu_s"] = round(
                sum(t - pg0.get(pid, 0.0) for pid, t in pg1.items()), 2
            )
            figures["postgres_backends"] = len(pg1)
        if sampler is not None:
            figures["postgres_sessions"] = sampler.report()
        into["cpu"] = figures


class WaitSampler:
    """Every 50 ms, what this run's server sessions are doing (pg_stat_activity: state and wait event,
    and the statement of the active ones): the share of samples for each, the most frequent first."""

    SQL = (
        "SELECT state, coalesce(wait_event_type || ':' || wait_event, '-'), "
        "CASE WHEN state = 'active' THEN left(regexp_replace(query, '\\s+', ' ', 'g'), 70) END "
        "FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()"
    )

    def __init__(self, dsn: str, app_name: str) -> None:
        self.dsn, self.app_name = dsn, app_name
        self.states: Counter[str] = Counter()
        self.statements: Counter[str] = Counter()
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn)
        try:
            while not self._stop.is_set():
                for state, wait, query in await conn.fetch(self.SQL, self.app_name):
                    self.states[f"{state} {wait}"] += 1
                    if query:
                        self.statements[query] += 1
                self.samples += 1
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def report(self) -> dict[str, object]:
        """Per state: the average number of sessions in it (sessions x share of the time)."""
        n = max(1, self.samples)
        return {
            "samples": self.samples,
            "avg_sessions_by_state": {k: round(v / n, 2) for k, v in self.states.most_common(8)},
            "avg_active_by_statement": {k: round(v / n, 2) for k, v in self.statements.most_common(6)},
        }


class Server:
    def __init__(
        self,
        args: list[str],
        env: dict[str, str],
        port: int,
        log: Path,
        *,
        ready: Any = None,
    ) -> None:
        self.port = port
        self.log_path = log
        self.log = log.open("wb")  # a file, not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                if ready is None or ready():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start: {log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def uvicorn_args(app: str, port: int, workers: int = 1) -> list[str]:
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
    return args + (["--workers", str(workers)] if workers > 1 else [])


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


def run_wrk(url: str, path: str, body: str, n: int, seconds: int, tmp: Path) -> dict[str, object]:
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

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rps, out
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "requests_per_s": round(float(rps.group(1))),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


# -- one configuration ------------------------------------------------------------------------------


@dataclass
class Config:
    engine: str  # sqlite | postgres
    processes: int
    n: int
    batch: int
    rounds: int
    seconds: int
    dsn: str
    repeat: int = 1  # (c) rounds


def approve(client: httpx.Client, body: dict[str, object]) -> tuple[float, float, dict[str, object]]:
    """One call: (start, end) on the perf counter and the summary without by_reason."""
    started = time.perf_counter()
    r = client.post("/v1/approvals", json=body)
    ended = time.perf_counter()
    assert r.status_code == 200, r.text[:2000]
    summary = {k: v for k, v in r.json()["summary"].items() if k != "by_reason"}
    return started, ended, summary


def concurrent_calls(
    clients: list[httpx.Client], bodies: list[dict[str, object]]
) -> list[tuple[float, float, dict[str, object]]]:
    """``approve`` each body on its own client, all released at once (a barrier), from threads."""
    gate = threading.Barrier(len(clients))

    def call(j: int) -> tuple[float, float, dict[str, object]]:
        gate.wait()
        return approve(clients[j], bodies[j])

    if len(clients) == 1:
        return [approve(clients[0], bodies[0])]
    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(call, range(len(clients))))


def connections_by_worker(workers: list[int], port: int) -> dict[int, int]:
    """The established TCP connections on ``port`` that each worker process holds (its socket fds in
    /proc/<pid>/fd, matched by inode in /proc/net/tcp)."""
    owner: dict[str, int] = {}
    for pid in workers:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                owner[target[8:-1]] = pid
    counts = dict.fromkeys(workers, 0)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and f[3] == "01" and f[9] in owner:  # 01: established
                counts[owner[f[9]]] += 1
    return counts


class Clients:
    """One keep-alive HTTP client per API process: with ``serve --workers N`` on one socket, the kernel
    hands each new connection to whichever worker accepts first, so :meth:`spread` reconnects until every
    worker holds exactly one of them (checked in /proc), and all of them work in a concurrent round."""

    def __init__(self, base: str, k: int, server_pid: int, port: int) -> None:
        self.base, self.k, self.server_pid, self.port = base, k, server_pid, port
        self.clients: list[httpx.Client] = []
        self.reconnects = 0
        self.unspread = 0  # rounds run with some worker holding no client (gave up reconnecting)

    def _connect(self) -> None:
        self.close()
        headers = {"Authorization": f"Bearer {KEY}"}
        self.clients = [httpx.Client(base_url=self.base, headers=headers, timeout=300) for _ in range(self.k)]
        for c in self.clients:
            c.get("/healthz").raise_for_status()  # the connection is made, and kept

    def spread(self) -> list[httpx.Client]:
        if not self.clients:
            self._connect()
        if self.k == 1:
            return self.clients
        workers = worker_pids(self.server_pid)
        for _ in range(100):
            for c in self.clients:  # a connection the server closed (keep-alive timeout) is made again
                c.get("/healthz").raise_for_status()
            counts = connections_by_worker(workers, self.port)
            if len(workers) == self.k and all(v == 1 for v in counts.values()):
                return self.clients
            self.reconnects += 1
            self._connect()
        self.unspread += 1
        return self.clients

    def close(self) -> None:
        for c in self.clients:
            c.close()
        self.clients = []


def ten_k_calls(base: str, cfg: Config, server: Server) -> tuple[list[dict[str, object]], dict[str, int]]:
    """The rounds of (b): per round a dry run then a real one, each as ``cfg.processes`` concurrent
    calls of ``cfg.batch`` ids (one client on each API process; disjoint ids while there are enough
    customers). Also how often the clients were reconnected to spread them over the processes."""
    rng = random.Random(3)
    ids_all = [f"c{i:06d}" for i in range(cfg.n)]
    k = cfg.processes
    clients = Clients(base, k, server.proc.pid, server.port)
    runs: list[dict[str, object]] = []
    try:
        for i in range(cfg.rounds):
            if k == 1:
                samples = [rng.sample(ids_all, cfg.batch)]  # the same draws as ever
            elif cfg.n >= k * cfg.batch:
                drawn = rng.sample(ids_all, k * cfg.batch)
                samples = [drawn[j * cfg.batch : (j + 1) * cfg.batch] for j in range(k)]
            else:
                samples = [rng.sample(ids_all, cfg.batch) for _ in range(k)]
            at = (datetime(2026, 11, 22, 12, tzinfo=UTC) + timedelta(hours=3 * i)).isoformat()
            for dry in (True, False):
                bodies: list[dict[str, object]] = [
                    {"campaign_id": f"camp{i}", "customer_ids": ids, "at": at, "dry_run": dry}
                    for ids in samples
                ]
                done = concurrent_calls(clients.spread(), bodies)
                took = max(e for _, e, _ in done) - min(s for s, _, _ in done)
                run: dict[str, object] = {
                    "dry_run": dry,
                    "seconds": round(took, 3),
                    "decisions_per_s": round(k * cfg.batch / took),
                }
                if k == 1:
                    run["summary"] = done[0][2]
                else:
                    run["calls_decisions_per_s"] = [round(cfg.batch / (e - s)) for s, e, _ in done]
                    run["summary"] = {
                        key: sum(int(str(d[2][key])) for d in done)
                        for key in done[0][2]
                        if all(isinstance(d[2][key], int) for d in done)
                    }
                runs.append(run)
    finally:
        clients.close()
    return runs, {"reconnects": clients.reconnects, "rounds_not_spread": clients.unspread}


def spread(values: list[int]) -> dict[str, object]:
    return {"median": round(statistics.median(values)), "range": [min(values), max(values)]}


def run_config(cfg: Config, rows: Rows, tmp: Path, bare: Server | None) -> dict[str, object]:
    """Seed a fresh store, serve it, run (b) and (c) (when wrk is here, with ``bare`` serving the bare
    endpoint at as many processes), stop, clean up."""
    out: dict[str, object] = {"engine": cfg.engine, "processes": cfg.processes}
    env = {
        **os.environ,
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_LOG_LEVEL": "warning",
        "PREFCENTER_POLICY_DIR": str(ROOT / "policies"),
        "PREFCENTER_KEY_CACHE_SECONDS": "30",
    }
    schema = app_name = dsn = None
    db = tmp / "bench.db"
    if cfg.engine == "sqlite":
        env["PREFCENTER_DATABASE_URL"] = f"sqlite:///{db}"
    else:
        schema = "pcbench_" + uuid.uuid4().hex
        app_name = schema  # this run's connections, to find their backends and end leftovers
        dsn = with_app_name(cfg.dsn, app_name)
        env["PREFCENTER_DATABASE_URL"] = dsn
        env["PREFCENTER_DATABASE_SCHEMA"] = schema
    try:
        started = time.perf_counter()  # the seeding, migrations included
        if schema is None:
            db.unlink(missing_ok=True)
            seed_sqlite(db, rows)
        else:
            assert dsn is not None
            asyncio.run(seed_postgres(dsn, schema, rows))
        out["seed_seconds"] = round(time.perf_counter() - started, 1)
        port = free_port()
        command = [sys.executable, "-m", "prefcenter.cli", "serve", "--port", str(port)]
        ready = None
        if cfg.processes > 1:
            command += ["--workers", str(cfg.processes)]
            expected = 2 * cfg.processes  # each worker's pool opens min_size = 2 before it serves

            def ready() -> bool:
                assert dsn is not None and app_name is not None
                return len(asyncio.run(backend_pids(dsn, app_name))) >= expected

        server = Server(command, env, port, tmp / f"server-{cfg.engine}-{cfg.processes}.log", ready=ready)
        meter = CpuMeter(server, dsn, app_name)
        try:
            base = f"http://127.0.0.1:{port}"
            b: dict[str, object] = {}
            with meter.phase(b):
                runs, spreading = ten_k_calls(base, cfg, server)
            if cfg.processes > 1:
                b["clients_spread_over_processes"] = spreading
            real = [int(str(r["decisions_per_s"])) for r in runs if not r["dry_run"]]
            dry = [int(str(r["decisions_per_s"])) for r in runs if r["dry_run"]]
            out["b_approvals_10k"] = {
                "real_decisions_per_s": spread(real),
                "dry_run_decisions_per_s": spread(dry),
                **b,
                "runs": runs,
            }
            if bare is not None:
                body = '{"campaign_id":"camp6","customer_ids":["c%06d"],"at":"2026-11-23T12:00:00Z"}'
                c: dict[str, object] = {}
                rounds = []
                for r in range(cfg.repeat):
                    with meter.phase(c) if r == 0 else contextlib.nullcontext():
                        figures = run_wrk(base, "/v1/approvals", body, cfg.n, cfg.seconds, tmp)
                    rounds.append(
                        {"approvals": figures, "bare": run_bare_round(bare, cfg.n, cfg.seconds, tmp)}
                    )
                out["c_single_id_approvals"] = {**rounds[0]["approvals"], **c}
                out["c_rounds"] = [{**one, **round_ratios(one)} for one in rounds]
        finally:
            server.stop()
    finally:
        if schema is not None and app_name is not None:
            asyncio.run(drop_postgres(cfg.dsn, schema, app_name))
    return out


def start_bare(processes: int, tmp: Path) -> Server:
    port = free_port()
    env = {**os.environ, "PREFCENTER_LOG_LEVEL": "warning"}
    args = uvicorn_args("tests.benchmarks.bare_app:app", port, processes)
    return Server(args, env, port, tmp / f"bare-{processes}.log")


def run_bare_round(bare: Server, n: int, seconds: int, tmp: Path) -> dict[str, object]:
    body = '{"campaign_id":"camp6","customer_ids":["c%06d"]}'
    return run_wrk(f"http://127.0.0.1:{bare.port}", "/echo", body, n, seconds, tmp)


def round_ratios(one: dict[str, dict[str, Any]]) -> dict[str, float]:
    """A round's single-id approvals over the bare endpoint: requests/s, and p99 latency."""
    approvals, bare = one["approvals"], one["bare"]
    return {
        "ratio": round(approvals["requests_per_s"] / bare["requests_per_s"], 3),
        "p99_ratio": round(approvals["p99_ms"] / bare["p99_ms"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--processes", default="1,3", help="PostgreSQL: API processes to measure with (SQLite: always 1)"
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("PREFCENTER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="the PostgreSQL database (a schema of its own is created in it and dropped)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="(c): rounds of prefcenter then the bare endpoint, medians"
    )
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat: a number >= 1")
    n = 2_000 if args.smoke else args.customers
    seconds = 2 if args.smoke else args.seconds
    rounds = SMOKE_ROUNDS if args.smoke else ROUNDS
    batch = min(10_000, n)
    processes = sorted({int(p) for p in args.processes.split(",") if p.strip()})
    if not processes or min(processes) < 1:
        parser.error("--processes: a list of numbers >= 1, e.g. 1,3")
    plan = []
    if args.engine in ("sqlite", "both"):
        plan.append(Config("sqlite", 1, n, batch, rounds, seconds, args.postgres_url, args.repeat))
    if args.engine in ("postgres", "both"):
        problem = postgres_reachable(args.postgres_url)
        if problem:
            parser.error(f"PostgreSQL at {args.postgres_url} cannot be reached: {problem}")
        plan += [
            Config("postgres", p, n, batch, rounds, seconds, args.postgres_url, args.repeat)
            for p in processes
        ]
    report: dict[str, object] = {
        "customers": n,
        "batch": batch,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    configs: dict[str, object] = {}
    bare: dict[str, object] = {}
    ratios: dict[str, float] = {}
    p99_ratios: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmpdir:
        tmp = Path(tmpdir)
        rows = make_rows(n)
        wrk = shutil.which("wrk") is not None
        if not wrk:
            report["c"] = "wrk not installed (apt-get install -y wrk): (c) not measured"
        for cfg in plan:
            label = f"{cfg.engine}_{cfg.processes}"
            server = start_bare(cfg.processes, tmp) if wrk else None
            try:
                figures = configs[label] = run_config(cfg, rows, tmp, server)
            finally:
                if server is not None:
                    server.stop()
            c_rounds = figures.get("c_rounds")
            if isinstance(c_rounds, list):
                bare.setdefault(str(cfg.processes), c_rounds[0]["bare"])
                ratios[label] = round(statistics.median(one["ratio"] for one in c_rounds), 2)
                p99_ratios[label] = round(statistics.median(one["p99_ratio"] for one in c_rounds), 2)
                if cfg.repeat == 1:
                    del figures["c_rounds"]  # the old shape: its one round is the figures shown
    report["configs"] = configs
    report["c_bare_litestar"] = bare  # by processes: the first configuration's first round
    # single-id approvals / the bare endpoint at as many processes (medians over the rounds)
    report["c_ratio"] = ratios
    report["c_p99_ratio"] = p99_ratios
    pg1 = configs.get("postgres_1")
    if isinstance(pg1, dict):
        b = pg1["b_approvals_10k"]
        real = b["real_decisions_per_s"]["median"]
        single = pg1.get("c_single_id_approvals")
        report["postgres_targets"] = {
            f"10k_real_median_ge_{TARGET_10K_PER_S}": real >= TARGET_10K_PER_S,
            f"single_id_p99_le_{TARGET_P99_MS:g}ms": isinstance(single, dict)
            and single["p99_ms"] <= TARGET_P99_MS,
        }
    report["seconds_total"] = round(time.perf_counter() - started)
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
