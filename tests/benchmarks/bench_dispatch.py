"""Benchmark: the dispatcher delivering a queued email campaign over SMTP, on SQLite and/or PostgreSQL.
Prints JSON.

    python tests/benchmarks/bench_dispatch.py [--recipients 20000] [--limited-rate 200] [--smoke]
        [--engine sqlite|postgres|both] [--dispatchers 1,2] [--repeat R] [--postgres-url postgresql://...]

Each run seeds a fresh store with N customers (email, subscribed, no quiet hours): a SQLite file, or a
fresh PostgreSQL schema ``pcbench_<hex>`` that the store migrated, filled by ``COPY`` and dropped at the
end. It queues one marketing campaign to all of them through the real sends path (gate, reservations,
outbox, in one transaction per 10,000), then starts ``prefcenter dispatch`` as its own process(es)
against an aiosmtpd server in another process on 127.0.0.1, and times the arrivals at the server.

- ``ceiling_<k>``: the policy's email rate set far above what the machine can do, ``k`` dispatcher
  processes (SQLite: 1, its dispatcher lock admits one; PostgreSQL: each of ``--dispatchers``, sharing
  the outbox with ``FOR UPDATE SKIP LOCKED`` claims): messages/s delivered (first to last arrival),
  wall time from the dispatchers' start, and duplicates (a Message-ID arriving twice).
- ``limited_<k>``: ``email = --limited-rate`` (PostgreSQL: with the most dispatchers of
  ``--dispatchers``, whose buckets are one deployment-wide row): the achieved rate, the busiest calendar
  second of the run and the busiest sliding one-second window (each must stay within rate + burst,
  burst = one second's worth: the ceiling for the whole deployment, however many dispatchers).

Each run also reports the CPU seconds each dispatcher process spent (from /proc, start-up included), the
SMTP server's, and on PostgreSQL those of the run's server backends (a local server), against its wall
time: on a machine with few cores, whether the run was CPU-bound.

``bare_transport``: the bare aiosmtplib client's ceiling (see :func:`bare_transport`), measured right
after the first ceiling run; ``ratio_dispatcher_to_bare``: each ceiling run's rate over it. With
``--repeat R`` the ceiling runs and the bare one are made R times in turn (one run's ratio moved
0.61-0.81 here), each ratio taken within its own round; ``ratio_dispatcher_to_bare`` is then the median
of the rounds' ratios, ``rounds`` has every round's rates and ratios, and the figures shown per run are
the first round's. The limited runs are made once, after the rounds.
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
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

ROOT = Path(__file__).resolve().parents[2]
SECRET = "benchmark-secret-key-0123"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TICK = os.sysconf("SC_CLK_TCK")


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
    sizes: list[int] = []
    peers: set[str] = set()  # the client connections seen (host:port): how many the sender used
    sample: list[bytes] = []  # one message as received: the bare-transport phase's template
    done = threading.Event()
    mid = re.compile(rb"^Message-ID: (.+?)\r?$", re.M | re.I)

    class Handler:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            content: bytes = envelope.content  # type: ignore[attr-defined]
            times.append(time.time())
            m = mid.search(content)
            ids.append(m.group(1).decode() if m else "")
            sizes.append(len(content))
            peers.add(repr(getattr(session, "peer", None)))
            if not sample:
                sample.append(content)
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
    if sample:  # a file of its own beside ``out``, never printed (it holds a recipient's address)
        out.with_suffix(".sample.eml").write_bytes(sample[0])
    summary = {"times": times, "ids": ids, "cpu_s": time.process_time(), "connections": len(peers)}
    summary["message_bytes_median"] = sorted(sizes)[len(sizes) // 2] if sizes else 0
    out.write_text(json.dumps(summary))


# -- seeding and queueing -------------------------------------------------------------------------


def env_for(database: dict[str, str], policies: Path, smtp_port: int) -> dict[str, str]:
    """The processes' environment; ``database``: PREFCENTER_DATABASE_URL (and _SCHEMA on PostgreSQL)."""
    return {
        **os.environ,
        **database,
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_POLICY_DIR": str(policies),
        "PREFCENTER_SMTP_PORT": str(smtp_port),
        "PREFCENTER_LOG_LEVEL": "warning",
        "PREFCENTER_ENV": "production",
        "PREFCENTER_CONTROLLER_NAME": "Bench Shop Ltd",
        "PREFCENTER_POSTAL_ADDRESS": "1 High St, Town",
        "PREFCENTER_PRIVACY_URL": "https://shop.example/privacy",
    }


NOW = "2026-11-01T00:00:00.000000Z"
CONTENT = {
    "email": {
        "subject": "Hello {{ customer_id }}",
        "text": "Our offers this week.\nUnsubscribe: {{ unsubscribe_url }}",
        "html": "<p>Our offers this week.</p><p><a href='{{ unsubscribe_url }}'>Unsubscribe</a></p>",
    }
}


def rows_for(n: int) -> dict[str, list[tuple[Any, ...]]]:
    """The seeded rows by table (columns as in COLUMNS): the same for both engines."""
    from prefcenter.domain.pseudonyms import Pseudonymizer

    p = Pseudonymizer(SECRET)
    ids = [f"c{i:06d}" for i in range(n)]
    return {
        "topics": [("promotions", "marketing", '{"en":"Offers"}', "{}", NOW, NOW)],
        "campaigns": [("bench", "promotions", '["email"]', None, json.dumps(CONTENT), NOW, NOW)],
        "customers": [
            (cid, p.customer_ref(cid), "Europe/Warsaw", "pl", "PL", "email", NOW, NOW) for cid in ids
        ],
        "contacts": [
            (cid, "email", f"{cid}@example.org", p.address_ref("email", f"{cid}@example.org")) for cid in ids
        ],
        "customer_topics": [(cid, "promotions") for cid in ids],
    }


COLUMNS = {
    "topics": ("id", "category", "names", "descriptions", "created_at", "updated_at"),
    "campaigns": ("id", "topic", "channels", "send_by", "content", "created_at", "updated_at"),
    "customers": ("id", "ref", "timezone", "locale", "country", "channel", "created_at", "updated_at"),
    "contacts": ("customer_id", "channel", "address", "address_ref"),
    "customer_topics": ("customer_id", "topic_id"),
}


def seed(db: Path, env: dict[str, str], n: int) -> None:
    """SQLite: migrate the file with ``prefcenter migrate``, then write the rows straight in."""
    subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "migrate"], env=env, check=True, capture_output=True
    )
    conn = sqlite3.connect(db)
    for table, rows in rows_for(n).items():
        columns = COLUMNS[table]
        conn.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", rows
        )
    conn.commit()
    conn.close()


# -- PostgreSQL -------------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def with_app_name(dsn: str, name: str) -> str:
    """``dsn`` naming its connections ``name`` (pg_stat_activity.application_name: this run's)."""
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}"


async def seed_postgres(dsn: str, schema: str, n: int) -> None:
    """Migrate a fresh ``schema`` with the store, record the phonenumbers version as ``prefcenter
    migrate`` does on an empty database, then COPY the same rows in (the gate-row triggers run as for
    any insert) and VACUUM ANALYZE the tables, as a settled database has them."""
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
        rows = rows_for(n)
        async with store.pool.acquire() as conn, conn.transaction():
            for table, records in rows.items():
                await conn.copy_records_to_table(table, records=records, columns=COLUMNS[table])
        await store.pool.execute(f"VACUUM (ANALYZE) {', '.join(rows)}")
    finally:
        await store.close()


async def pg_statuses(dsn: str, schema: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(dsn, server_settings={"search_path": quote_ident(schema)})
    try:
        found = await conn.fetch("SELECT status, count(*) FROM outbox GROUP BY status")
        return {str(r[0]): int(r[1]) for r in found}
    finally:
        await conn.close()


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


async def backends_cpu(dsn: str, app_name: str) -> float:
    """The CPU seconds spent so far by the server backends of this run's connections (a local server)."""
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        found = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            app_name,
        )
    finally:
        await conn.close()
    return sum(cpu_seconds(int(r[0])) for r in found)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK


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
                chunk = SendRequest(customer_ids=ids[start : start + 10_000])
                answer = await send(rt, batcher, "bench", chunk)
                assert answer.summary.allow == len(answer.decisions), answer.summary
            return time.perf_counter() - t0
        finally:
            await rt.store.close()

    return asyncio.run(main())


# -- one run --------------------------------------------------------------------------------------


def one_run(
    n: int,
    rate: float,
    tmp: Path,
    *,
    engine: str = "sqlite",
    dispatchers: int = 1,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    profile: str | None = None,
    keep_sample: Path | None = None,
) -> dict[str, object]:
    """Seed, queue, start the sink and ``dispatchers`` dispatcher processes, time the arrivals.
    ``keep_sample``: where to copy one message as the sink received it (the bare phase's template)."""
    policies = tmp / "policies"
    shutil.copytree(ROOT / "policies", policies)
    policy = policies / "default.toml"
    policy.write_text(re.sub(r"(?m)^email = .*$", f"email = {rate:g}", policy.read_text()))
    smtp_port = free_port()
    db = tmp / "bench.db"
    schema = app_name = None
    if engine == "sqlite":
        env = env_for({"PREFCENTER_DATABASE_URL": f"sqlite:///{db}"}, policies, smtp_port)
    else:
        schema = app_name = "pcbench_" + uuid.uuid4().hex  # its connections are named after it
        dsn = with_app_name(postgres_url, app_name)
        database = {"PREFCENTER_DATABASE_URL": dsn, "PREFCENTER_DATABASE_SCHEMA": schema}
        env = env_for(database, policies, smtp_port)
    try:
        if schema is None:
            seed(db, env, n)
        else:
            asyncio.run(seed_postgres(dsn, schema, n))
        backends = (lambda: asyncio.run(backends_cpu(postgres_url, app_name))) if app_name else None
        figures = deliver(n, rate, tmp, env, smtp_port, dispatchers, profile, backends)
        if keep_sample is not None and (tmp / "arrivals.sample.eml").exists():
            shutil.copyfile(tmp / "arrivals.sample.eml", keep_sample)
        if schema is None:
            conn = sqlite3.connect(db)
            statuses = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
            conn.close()
        else:
            statuses = asyncio.run(pg_statuses(postgres_url, schema))
    finally:
        if schema is not None and app_name is not None:
            asyncio.run(drop_postgres(postgres_url, schema, app_name))
    return {"engine": engine, "dispatchers": dispatchers, **figures, "outbox": statuses}


def deliver(
    n: int,
    rate: float,
    tmp: Path,
    env: dict[str, str],
    smtp_port: int,
    dispatchers: int,
    profile: str | None,
    backends: Callable[[], float] | None = None,
) -> dict[str, object]:
    """Queue, start the sink and the dispatchers, wait for the arrivals; the figures. ``backends``: the
    CPU seconds this run's PostgreSQL backends have spent (read before the dispatchers stop)."""
    queue_seconds = queue(env, n)
    out = tmp / "arrivals.json"
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink", str(smtp_port), str(out), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    started = time.time()
    procs: list[subprocess.Popen[bytes]] = []
    logs = [tmp / f"dispatch-{k}.log" for k in range(dispatchers)]
    handles = [path.open("wb") for path in logs]
    for k, log in enumerate(handles):
        command = [sys.executable, "-m", "prefcenter.cli", "dispatch"]
        if profile and k == 0:  # sample the first dispatcher with py-spy (collapsed stacks): its bottleneck
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")  # venv's own
            command = [spy, "record", "-f", "raw", "-o", profile, "--", *command]
        procs.append(subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=log))
    cpu: list[float] = []
    try:
        sink.wait(timeout=max(120, 3 * n / rate + 60))
    except subprocess.TimeoutExpired:
        for log in handles:
            log.flush()
        tails = "\n".join(path.read_text(errors="replace")[-3000:] for path in logs)
        print(f"timed out: reporting what arrived; the dispatchers' logs end:\n{tails}", file=sys.stderr)
    finally:
        # py-spy's child is the dispatcher: read the CPU of the process that does the work
        pg_cpu = backends() if backends is not None else None
        cpu = [
            round(cpu_seconds(dispatcher_pid(proc, bool(profile and k == 0))), 2)
            for k, proc in enumerate(procs)
        ]
        for k, proc in enumerate(procs):
            proc.send_signal(
                signal.SIGINT if profile and k == 0 else signal.SIGTERM
            )  # py-spy saves at SIGINT
        for proc in procs:
            proc.wait(timeout=60)
        for log in handles:
            log.close()
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
        "dispatcher_cpu_s": cpu,
        "sink_cpu_s": round(float(arrivals.get("cpu_s", 0.0)), 2),
        "smtp_connections": int(arrivals.get("connections", 0)),
        "message_bytes": int(arrivals.get("message_bytes_median", 0)),
        **({"postgres_backends_cpu_s": round(pg_cpu, 2)} if pg_cpu is not None else {}),
    }


def dispatcher_pid(proc: subprocess.Popen[bytes], under_py_spy: bool) -> int:
    if not under_py_spy:
        return proc.pid
    try:
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    except OSError:
        return proc.pid
    return int(children[0]) if children else proc.pid


# -- the bare transport: the ceiling the dispatcher is measured against ------------------------------


def run_bare_client(port: int, template: Path, n: int, connections: int) -> None:
    """A bare aiosmtplib client: ``n`` prebuilt messages (``template``, one message as the sink received
    it from the dispatcher, each given a Message-ID of its own of the same length) sent over
    ``connections`` persistent connections, each greeted once and then a loop taking the next message:
    MAIL (with SIZE), RCPT and DATA, the steps SmtpTransport takes (cheaper than ``sendmail``, which
    parses both addresses again and counts the size by normalising the message once more), on uvloop
    as the dispatcher runs. No store, no gate, no rendering: what the transport alone can do."""
    import aiosmtplib
    import uvloop

    raw = template.read_bytes()
    m = re.search(rb"^Message-ID: (.+?)\r?$", raw, re.M | re.I)
    head, tail = (raw[: m.start(1)], raw[m.end(1) :]) if m else (raw, b"")
    width = len(m.group(1)) if m else 0
    messages = [head + f"<b{i:0{max(6, width - 16)}d}@bare.example>".encode() + tail for i in range(n)]

    async def main() -> dict[str, object]:
        clients = [aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=30) for _ in range(connections)]
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(*(c.ehlo() for c in clients))
        next_i = 0
        failed = 0

        async def worker(client: aiosmtplib.SMTP) -> None:
            nonlocal next_i, failed
            while next_i < n:
                i = next_i
                next_i += 1
                try:
                    await client.mail("bench@shop.example", options=[f"SIZE={len(messages[i])}"])
                    await client.rcpt(f"c{i:06d}@example.org")
                    await client.data(messages[i])
                except aiosmtplib.SMTPException:
                    failed += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        took = time.perf_counter() - t0
        await asyncio.gather(*(c.quit() for c in clients), return_exceptions=True)
        return {"client_seconds": round(took, 3), "failed": failed, "cpu_s": round(time.process_time(), 2)}

    print(json.dumps(uvloop.run(main())), flush=True)


def bare_transport(n: int, connections: int, template: Path, tmp: Path) -> dict[str, object]:
    """A fresh sink process of the same kind, and the bare client in a process of its own sending ``n``
    messages over ``connections`` connections: messages/s measured at the sink as for the dispatcher
    (first to last arrival)."""
    port = free_port()
    out = tmp / "bare-arrivals.json"
    sink = subprocess.Popen(
        [sys.executable, __file__, "--sink", str(port), str(out), str(n)], stdout=subprocess.PIPE, text=True
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    command = [sys.executable, __file__, "--bare-client", str(port), str(template), str(n), str(connections)]
    client = subprocess.run(command, capture_output=True, text=True, timeout=600)
    try:
        sink.wait(timeout=60)
    except subprocess.TimeoutExpired:
        sink.terminate()  # the sink writes what arrived at SIGTERM
        sink.wait()
    if client.returncode != 0:
        raise RuntimeError(f"bare client failed: {client.stderr[-2000:]}")
    arrivals = json.loads(out.read_text())
    times = sorted(arrivals["times"])
    span = times[-1] - times[0] if len(times) > 1 else 0.0
    return {
        "recipients": n,
        "delivered": len(times),
        "connections": connections,
        "connections_seen_by_sink": int(arrivals.get("connections", 0)),
        "message_bytes": int(arrivals.get("message_bytes_median", 0)),
        "messages_per_s": round((len(times) - 1) / span, 1) if span else None,
        "client": json.loads(client.stdout.strip().splitlines()[-1]),
        "sink_cpu_s": round(float(arrivals.get("cpu_s", 0.0)), 2),
    }


def limits(figures: dict[str, object], rate: float) -> None:
    """The limited run's checks: the achieved rate within 5 % of what the bucket allows, no sliding
    second above rate + burst. The bucket starts full: ``burst`` messages leave at once and the other
    ``n - burst`` at ``rate``, so first to last arrival is ``(n - burst) / rate`` and the achieved rate
    ``(n - 1) * rate / (n - burst)`` (2,000 messages at 200/s: 222/s, not 200)."""
    burst = max(1.0, rate)
    achieved = figures["messages_per_s"]
    busiest = figures["busiest_sliding_second"]
    n = figures["delivered"]
    expected = (n - 1) * rate / (n - burst) if isinstance(n, int) and n > burst else None
    figures["expected_per_s"] = round(expected, 1) if expected else None
    figures["within_5_percent"] = (
        isinstance(achieved, float) and expected is not None and abs(achieved - expected) <= 0.05 * expected
    )
    figures["no_second_over_rate_plus_burst"] = isinstance(busiest, int) and busiest <= rate + burst


def median_ratios(rounds: list[dict[str, object]]) -> dict[str, float | None]:
    """Per ceiling run, the median of its ratio to the bare client over the rounds (each within its
    own round)."""
    out: dict[str, float | None] = {}
    for label in cast(dict[str, object], rounds[0]["ratio_dispatcher_to_bare"]):
        given = [
            float(str(ratio))
            for r in rounds
            if (ratio := cast(dict[str, object], r["ratio_dispatcher_to_bare"]).get(label)) is not None
        ]
        out[label] = round(statistics.median(given), 3) if given else None
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipients", type=int, default=20_000)
    ap.add_argument("--limited-recipients", type=int, default=None, help="default: --recipients")
    ap.add_argument("--limited-rate", type=float, default=200)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs")
    ap.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    ap.add_argument(
        "--dispatchers",
        default="1,2",
        help="PostgreSQL: dispatcher processes for the ceiling runs; the limited run uses the most "
        "(SQLite: always 1)",
    )
    ap.add_argument(
        "--postgres-url",
        default=os.environ.get("PREFCENTER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL,
        help="the PostgreSQL database (a schema of its own is created in it per run and dropped)",
    )
    ap.add_argument(
        "--py-spy", dest="profile", help="write each ceiling run's py-spy profile here (.<engine>_<k> added)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="rounds of ceiling and bare runs (medians)")
    ap.add_argument(
        "--bare-connections",
        type=int,
        default=0,
        help="the bare-transport phase's connections (default: as many as the sink saw the first "
        "ceiling run's dispatcher use)",
    )
    ap.add_argument("--sink", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--bare-client", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), Path(args.sink[1]), int(args.sink[2]))
        return
    if args.bare_client:
        port, template, count, conns = args.bare_client
        run_bare_client(int(port), Path(template), int(count), int(conns))
        return
    n = 50 if args.smoke else args.recipients
    limited_n = 30 if args.smoke else (args.limited_recipients or n)
    limited_rate = 20 if args.smoke else args.limited_rate
    counts = sorted({int(k) for k in args.dispatchers.split(",") if k.strip()})
    if not counts or counts[0] < 1:
        ap.error("--dispatchers: a list of numbers >= 1, e.g. 1,2")
    if args.repeat < 1:
        ap.error("--repeat must be >= 1")
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    if "postgres" in engines and (problem := postgres_reachable(args.postgres_url)):
        ap.error(f"PostgreSQL at {args.postgres_url} cannot be reached: {problem}")
    result: dict[str, object] = {
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    rounds: list[dict[str, object]] = []
    runs: dict[str, dict[str, object]] = {engine: {} for engine in engines}
    bare_dir = tempfile.TemporaryDirectory(prefix="prefcenter-bench-bare-")
    template = Path(bare_dir.name) / "template.eml"
    for _ in range(args.repeat):
        ceilings: dict[str, float | None] = {}
        bare: dict[str, object] | None = None
        for engine in engines:
            for k in counts if engine == "postgres" else [1]:
                label = f"{engine}_{k}"
                with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmp:
                    figures = one_run(
                        n,
                        1_000_000,
                        Path(tmp),
                        engine=engine,
                        dispatchers=k,
                        postgres_url=args.postgres_url,
                        profile=f"{args.profile}.{label}" if args.profile else None,
                        keep_sample=template if not rounds and bare is None else None,
                    )
                runs[engine].setdefault(f"ceiling_{k}", figures)  # the first round's figures
                rate = figures["messages_per_s"]
                ceilings[f"{engine}_ceiling_{k}"] = rate if isinstance(rate, float) else None
                # right after the round's first ceiling run: its message, as many connections
                if bare is None:
                    conns = args.bare_connections or int(str(figures["smtp_connections"])) or 8
                    with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmp:
                        bare = bare_transport(n, conns, template, Path(tmp))
                    result.setdefault("bare_transport", bare)
        assert bare is not None
        bare_rate = bare["messages_per_s"]
        rounds.append(
            {
                "bare_messages_per_s": bare_rate,
                "messages_per_s": ceilings,
                "ratio_dispatcher_to_bare": {
                    label: round(rate / float(str(bare_rate)), 3) if rate and bare_rate else None
                    for label, rate in ceilings.items()
                },
            }
        )
    bare_dir.cleanup()
    for engine in engines:
        k = counts[-1] if engine == "postgres" else 1
        with tempfile.TemporaryDirectory(prefix="prefcenter-bench-") as tmp:
            limited = one_run(
                limited_n,
                limited_rate,
                Path(tmp),
                engine=engine,
                dispatchers=k,
                postgres_url=args.postgres_url,
            )
        limits(limited, limited_rate)
        runs[engine][f"limited_{k}"] = limited
        result[engine] = runs[engine]
    result["ratio_dispatcher_to_bare"] = median_ratios(rounds)
    if args.repeat > 1:
        result["rounds"] = rounds
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
