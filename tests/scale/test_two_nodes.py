"""Scale-out on real servers (the scale-out issue's "Done means"): three API processes (`prefcenter serve
--no-dispatcher`, real uvicorn, one port each) and two dispatchers (`prefcenter dispatch`) share one
PostgreSQL schema, and deliver to a real SMTP server (aiosmtpd in its own process) on 127.0.0.1 that
records each message's Message-ID, recipient, arrival time and which dispatcher process sent it.

- ``test_burst_across_nodes_keeps_every_guarantee``: client tasks spread over the three API processes run
  approvals (identical requests racing on different nodes), sends for overlapping customers and campaigns,
  and preference changes (customers withdrawing and re-granting a topic mid-burst), all at once; then the
  two dispatchers deliver the filled outbox, and a second wave of approvals and withdrawals races their
  re-gates. Then: (a) no cap is exceeded in any rolling window (the reservations, and the decision log's
  allows); (b) every reservation has its allow in the decision log, at most one message per (campaign,
  customer); (c) no message is delivered twice; (d) the ledger verifies on every node, seq 1..N without
  gaps, each prev_hash the previous event's hash; (e) before the wave, the busiest sliding second at the
  SMTP server stays within the policy's deployment-wide rate + burst while both dispatchers are busy (each
  alone could send the whole rate with its own bucket, so two own buckets would send about twice it), and
  over the whole run no more than the burst and the rate for the span went out.
- ``test_killed_dispatcher_loses_nothing``: SIGKILL one of the two dispatchers mid-campaign: every
  message still arrives (the survivor takes the dead one's claims once their leases expire, after
  PREFCENTER_DISPATCH_LEASE_SECONDS), and only messages in flight at the kill arrive twice.

PostgreSQL: ``PREFCENTER_TEST_POSTGRES_URL`` (tests/engines.py; default the local test server), whatever
``--engine`` says; each test uses a schema of its own with a random name, dropped at the end. Unreachable,
the module skips, except under CI=true, where it fails. The SMTP server process is this module run as
``python -m tests.scale.test_two_nodes --sink``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from prefcenter.config import Settings
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.messaging.email import message_id, sender_domain
from prefcenter.services.dispatch import Dispatcher
from tests import engines
from tests.engines import postgres_url
from tests.live import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = postgres_url()
SECRET = "scale-test-secret-key-0123456789"
LEASE_SECONDS = 5
QUIET_SECONDS = 2.0  # of delivery by both dispatchers before the second wave
API_NODES = 3
DISPATCHERS = 2
US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400 * US
MARKETING = ["m0", "m1", "m2", "m3"]  # on the two marketing topics, alternately
TRANSACTIONAL = ["t0", "t1", "t2"]  # on one transactional topic: not capped, so they make the volume


@pytest.fixture(scope="module", autouse=True)
def postgres_reachable() -> None:
    async def probe() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        engines.postgres_unavailable(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


# -- the SMTP server process ----------------------------------------------------------------------

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.M | re.I)


def socket_owner(local_port: int, remote_port: int, pids: list[int]) -> int:
    """The pid among ``pids`` holding the TCP socket 127.0.0.1:local_port -> :remote_port (0: none)."""
    inode = None
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            parts = line.split()
            local, remote = parts[1].split(":"), parts[2].split(":")
            if int(local[1], 16) == local_port and int(remote[1], 16) == remote_port:
                inode = parts[9]
                break
    if inode is None:
        return 0
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return 0


def run_sink(port: int, out: Path, pids_file: Path) -> None:
    """aiosmtpd on 127.0.0.1:port, accepting everything: one JSON line per message to ``out`` (flushed),
    ``{"t": time.monotonic(), "mid": Message-ID, "rcpt": [...], "pid": the sending process}``, the pid
    found once per connection among the pids listed in ``pids_file`` (0 while unknown). Until SIGTERM."""
    import threading

    import uvloop
    from aiosmtpd.controller import Controller

    stop = threading.Event()
    sink = out.open("a", encoding="utf-8")

    class Recorder:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            arrived = time.monotonic()
            found = _MESSAGE_ID.search(envelope.original_content or envelope.content)
            pid = getattr(session, "scale_pid", 0)
            if not pid and isinstance(session.peer, tuple):
                with contextlib.suppress(OSError, ValueError):
                    pids = [int(p) for p in pids_file.read_text().split()]
                    pid = session.scale_pid = socket_owner(int(session.peer[1]), port, pids)
            line = {
                "t": arrived,
                "mid": found.group(1).decode() if found else "",
                "rcpt": list(envelope.rcpt_tos),
                "pid": pid,
            }
            sink.write(json.dumps(line) + "\n")
            sink.flush()
            return "250 OK"

    controller = Controller(Recorder(), hostname="127.0.0.1", port=port, loop=uvloop.new_event_loop())
    controller.start()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    controller.stop()
    sink.close()


# -- the deployment -------------------------------------------------------------------------------


def child_env(schema: str, policies: Path, smtp_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PREFCENTER_")}
    env.update(
        PREFCENTER_DATABASE_URL=PG_DSN,
        PREFCENTER_DATABASE_SCHEMA=schema,
        PREFCENTER_DATABASE_POOL_SIZE="6",  # 5 processes x 6 connections, well under max_connections
        PREFCENTER_SECRET_KEY=SECRET,
        PREFCENTER_POLICY_DIR=str(policies),
        PREFCENTER_SMTP_PORT=str(smtp_port),
        PREFCENTER_LOG_LEVEL="warning",
        PREFCENTER_KEY_CACHE_SECONDS="60",
        PREFCENTER_DISPATCH_LEASE_SECONDS=str(LEASE_SECONDS),  # a dead dispatcher's claims come back then
    )
    return env


def prefcenter(*args: str) -> list[str]:
    return [sys.executable, "-m", "prefcenter", *args]


@dataclass
class Cluster:
    tmp: Path
    schema: str
    env: dict[str, str]
    policy_caps: list[tuple[int, int]]  # (limit, window in microseconds), marketing, all channels
    bases: list[str]
    keys: dict[str, str]  # role -> key
    arrivals_path: Path
    pids_path: Path
    procs: list[tuple[str, subprocess.Popen[bytes]]]
    dispatchers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.tmp / "logs" / f"{name}.log").open("ab")
        with log:
            proc = subprocess.Popen(prefcenter(*args), env=self.env, cwd=ROOT, stdout=log, stderr=log)
        self.procs.append((name, proc))
        return proc

    def start_dispatchers(self) -> list[subprocess.Popen[bytes]]:
        for i in range(DISPATCHERS):
            self.dispatchers.append(self.spawn(f"dispatch{i}", "dispatch"))
        self.pids_path.write_text(" ".join(str(p.pid) for p in self.dispatchers))
        return self.dispatchers

    def arrivals(self) -> list[dict[str, Any]]:
        if not self.arrivals_path.exists():
            return []
        lines = self.arrivals_path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.endswith("}")]

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(PG_DSN, timeout=10, server_settings={"search_path": self.schema})

    def log_tails(self) -> str:
        out = []
        for path in sorted((self.tmp / "logs").glob("*.log")):
            out.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(out)


def write_policy(tmp: Path, rate: float) -> tuple[Path, list[tuple[int, int]]]:
    """A policy folder of the test's own: the shipped one with the email rate set to ``rate``."""
    policies = tmp / "policies"
    shutil.copytree(ROOT / "policies", policies)
    policy = policies / "default.toml"
    text, n = re.subn(r"(?m)^email = .*$", f"email = {rate:g}", policy.read_text())
    assert n == 1, "policies/default.toml has no `email = ` rate line any more"
    policy.write_text(text)
    caps = tomllib.loads(text)["caps"]
    windows = [(int(caps["per_day"]), DAY_US), (int(caps["per_week"]), 7 * DAY_US)]
    windows += [(int(x["limit"]), int(x["hours"]) * 3600 * US) for x in caps.get("extra", [])]
    return policies, windows


async def wait_ready(base: str, proc: subprocess.Popen[bytes], seconds: float = 45) -> None:
    deadline = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=base, timeout=2) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"the API process for {base} exited with {proc.returncode}"
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise AssertionError(f"{base} was not ready within {seconds} s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.asynccontextmanager
async def cluster(tmp: Path, rate: float) -> AsyncIterator[Cluster]:
    """A fresh schema, migrated once; the SMTP server; three API nodes; keys per role. Dispatchers are
    started by the test (``start_dispatchers``). Every process is stopped and the schema dropped after."""
    schema = f"pc_{uuid.uuid4().hex}"
    (tmp / "logs").mkdir()
    policies, caps = write_policy(tmp, rate)
    smtp_port = free_port()
    env = child_env(schema, policies, smtp_port)
    c = Cluster(
        tmp=tmp,
        schema=schema,
        env=env,
        policy_caps=caps,
        bases=[],
        keys={},
        arrivals_path=tmp / "arrivals.jsonl",
        pids_path=tmp / "dispatcher-pids",
        procs=[],
    )
    failed = True
    try:
        migrated = subprocess.run(
            prefcenter("migrate"), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        sink_files = [str(c.arrivals_path), str(c.pids_path)]
        sink = subprocess.Popen(
            [sys.executable, "-m", "tests.scale.test_two_nodes", "--sink", str(smtp_port), *sink_files],
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        c.procs.append(("sink", sink))
        assert sink.stdout is not None and sink.stdout.readline().strip() == b"ready"
        makers = {
            role: subprocess.Popen(
                prefcenter("keys", "create", "--role", role, "--name", f"scale-{role}"),
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for role in ("admin", "marketing", "auditor")
        }
        c.procs.extend((f"keys-{role}", p) for role, p in makers.items())
        servers = []
        for i in range(API_NODES):
            port = free_port()
            servers.append(c.spawn(f"api{i}", "serve", "--no-dispatcher", "--port", str(port)))
            c.bases.append(f"http://127.0.0.1:{port}")
        for role, maker in makers.items():
            out, err = maker.communicate(timeout=60)
            assert maker.returncode == 0, err.decode()[-3000:]
            c.keys[role] = out.decode().strip().splitlines()[-1]
        await asyncio.gather(*(wait_ready(b, p) for b, p in zip(c.bases, servers, strict=True)))
        yield c
        failed = False
    finally:
        for _, proc in reversed(c.procs):
            stop_process(proc)
        if failed:
            print(c.log_tails())
        conn = await asyncpg.connect(PG_DSN, timeout=10)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


# -- data -----------------------------------------------------------------------------------------

PROVENANCE = {"source": "api", "actor": "scale-test", "notice_version": "2026-10", "evidence": {}}


def preferences(topics: list[str], max_per_week: int | None) -> dict[str, Any]:
    return {
        "channel": "email",
        "topics": topics,
        "quiet_hours": None,
        "max_per_week": max_per_week,
        "paused_until": None,
        "provenance": PROVENANCE,
    }


def own_cap(i: int) -> int | None:
    return [1, 2, None][i % 3]  # the customer's max_per_week: low, or none (the policy's caps only)


def campaign(topic: str, marketing: bool) -> dict[str, Any]:
    text = "Offer. Manage: {{ manage_url }}" if marketing else "Your order has shipped. {{ manage_url }}"
    email = {"subject": "Hi", "text": text, "html": f"<p>{text}</p>"}
    return {"topic": topic, "channels": ["email"], "content": {"email": email}}


async def seed(c: Cluster, n: int, campaigns: dict[str, dict[str, Any]]) -> tuple[list[str], int]:
    """Topics, ``n`` customers (email, both marketing topics, no quiet hours, own_cap), the campaigns,
    spread over the API nodes. Returns the customer ids and the ledger events written."""
    admin = httpx.AsyncClient(base_url=c.bases[0], headers=c.headers("admin"), timeout=30)
    clients = [httpx.AsyncClient(base_url=b, headers=c.headers("marketing"), timeout=30) for b in c.bases]
    customers = [f"c{i:04d}" for i in range(n)]
    events = 0
    try:
        for topic, category in (
            ("promotions", "marketing"),
            ("news", "marketing"),
            ("orders", "transactional"),
        ):
            r = await admin.put(f"/v1/topics/{topic}", json={"category": category, "names": {"en": topic}})
            assert r.status_code == 201, r.text
        slots = asyncio.Semaphore(12)

        async def one(i: int, cid: str) -> int:
            client = clients[i % len(clients)]
            profile = {
                "timezone": "Europe/Warsaw",
                "locale": "en",
                "country": "PL",
                "contacts": {"email": f"{cid}@example.org"},
            }
            async with slots:
                r = await client.put(f"/v1/customers/{cid}", json=profile)
                assert r.status_code == 201, r.text
                r = await client.put(
                    f"/v1/customers/{cid}/preferences", json=preferences(["promotions", "news"], own_cap(i))
                )
                assert r.status_code == 200, r.text
            return 3 + (own_cap(i) is not None)  # channel, two topics, the own cap

        events = sum(await asyncio.gather(*(one(i, cid) for i, cid in enumerate(customers))))
        for i, (camp, body) in enumerate(campaigns.items()):
            r = await clients[i % len(clients)].put(f"/v1/campaigns/{camp}", json=body)
            assert r.status_code == 201, r.text
    finally:
        await admin.aclose()
        for client in clients:
            await client.aclose()
    return customers, events


async def wait_delivered(
    c: Cluster, conn: asyncpg.Connection, seconds: float, alive: list[subprocess.Popen[bytes]]
) -> dict[str, int]:
    """Until no outbox row is due and the SMTP server has seen every sent one (the ``alive`` dispatchers
    still running); the outbox by status."""
    deadline = time.monotonic() + seconds
    while True:
        now_us = int(time.time() * US)
        due = await conn.fetchval(
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'deferred') AND not_before_us <= $1",
            now_us,
        )
        sent = await conn.fetchval("SELECT count(*) FROM outbox WHERE status = 'sent'")
        if due == 0 and len(c.arrivals()) >= sent:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM outbox GROUP BY status")
            return {r["status"]: r["n"] for r in rows}
        assert time.monotonic() < deadline, f"delivery did not finish: {due} due, {sent} sent"
        assert all(p.poll() is None for p in alive), "a dispatcher died"
        await asyncio.sleep(0.2)


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any sliding window [t - 1 s, t]."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] < t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


def expected_ids(pairs: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Message-ID -> (campaign, customer), as the dispatcher makes them."""
    p = Pseudonymizer(SECRET)
    domain = sender_domain(Settings().smtp_from)
    return {message_id(camp, p.customer_ref(cid), domain): (camp, cid) for camp, cid in pairs}


def microseconds(text: str) -> int:
    return (datetime.fromisoformat(text) - EPOCH) // timedelta(microseconds=1)


def customer_caps(policy_caps: list[tuple[int, int]], max_per_week: int | None) -> list[tuple[int, int]]:
    """The (limit, window) caps on one customer's marketing: the policy's and their own weekly one."""
    return policy_caps + ([(max_per_week, 7 * DAY_US)] if max_per_week is not None else [])


def over_cap(sends: list[int], limit: int, window: int) -> list[int] | None:
    """A window (end - W, end] holding more than ``limit`` of ``sends``, or None. The windows ending at
    each send hold the maxima."""
    for end in sends:
        held = [s for s in sends if end - window < s <= end]
        if len(held) > limit:
            return held
    return None


# -- the burst ------------------------------------------------------------------------------------


async def test_burst_across_nodes_keeps_every_guarantee(tmp_path: Path) -> None:
    began = time.monotonic()
    rate = 150
    campaigns = {m: campaign(["promotions", "news"][i % 2], True) for i, m in enumerate(MARKETING)}
    campaigns |= {t: campaign("orders", False) for t in TRANSACTIONAL}
    async with cluster(tmp_path, rate) as c:
        customers, events = await seed(c, 300, campaigns)
        togglers = customers[5::25]  # they withdraw and re-grant "promotions" mid-burst

        def connect() -> list[httpx.AsyncClient]:
            return [
                httpx.AsyncClient(base_url=b, headers=c.headers("marketing"), timeout=60) for b in c.bases
            ]

        clients = connect()
        now = datetime.now(UTC)
        answers: list[dict[str, Any]] = []

        async def approvals(task: int, seed: int, requests: int) -> None:
            rng = random.Random(seed)  # tasks with one seed send the same requests to other nodes
            for i in range(requests):
                body = {
                    "campaign_id": rng.choice(MARKETING),
                    "customer_ids": rng.sample(customers, 30),
                    "at": (now + timedelta(hours=rng.uniform(1, 240))).isoformat(),
                }
                r = await clients[(task + i) % API_NODES].post("/v1/approvals", json=body)
                assert r.status_code == 200, r.text
                answers.append(r.json())

        async def sends(task: int, names: list[str], width: int) -> None:
            for k, camp in enumerate(names):
                for n, start in enumerate(range(0, len(customers), 50)):  # windows overlap their neighbours
                    ids = customers[start : start + width]
                    r = await clients[(task + k + n) % API_NODES].post(
                        f"/v1/campaigns/{camp}/sends", json={"customer_ids": ids}
                    )
                    assert r.status_code == 202, r.text
                    answers.append(r.json())

        changes = 0

        async def toggle(task: int, cid: str, cycles: int, pause: float) -> None:
            nonlocal changes
            i = customers.index(cid)
            for cycle in range(cycles):
                for topics in (["news"], ["promotions", "news"]):
                    client = clients[(task + cycle) % API_NODES]
                    r = await client.put(
                        f"/v1/customers/{cid}/preferences", json=preferences(topics, own_cap(i))
                    )
                    assert r.status_code == 200, r.text
                    changes += 1
                    await asyncio.sleep(pause)

        burst = time.monotonic()
        try:
            await asyncio.wait_for(
                asyncio.gather(
                    *(approvals(t, t % 3, 10) for t in range(6)),
                    *(sends(t, MARKETING, 75) for t in range(2)),
                    *(sends(t, TRANSACTIONAL, 60) for t in range(2)),
                    *(toggle(t, cid, 3, 0.05) for t, cid in enumerate(togglers)),
                ),
                timeout=45,
            )
            burst_seconds = time.monotonic() - burst
            # The dispatchers start on the filled outbox (so both are busy from their first second);
            # after QUIET_SECONDS of delivery a second wave of approvals and withdrawals races their
            # re-gates.
            c.start_dispatchers()
            deadline = time.monotonic() + 30
            while len({a["pid"] for a in c.arrivals()} - {0}) < DISPATCHERS:
                assert time.monotonic() < deadline, "a dispatcher delivered nothing within 30 s of its start"
                await asyncio.sleep(0.05)
            await asyncio.sleep(QUIET_SECONDS)  # both busy that long, and the first one longer
            # new connections: uvicorn closes idle ones after 5 s, and a reuse may race that close
            for client in clients:
                await client.aclose()
            clients[:] = connect()
            wave_began = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(
                    *(approvals(t, 100 + t % 2, 4) for t in range(4)),
                    *(toggle(t, cid, 1, 0.3) for t, cid in enumerate(togglers)),
                ),
                timeout=30,
            )
        finally:
            for client in clients:
                await client.aclose()
        conn = await c.connect()
        try:
            outbox = await wait_delivered(c, conn, 60, c.dispatchers)
            reservations = await conn.fetch(
                "SELECT customer_id, campaign_id, at_us, marketing FROM reservations"
            )
            decisions = await conn.fetch(
                "SELECT customer_id, campaign_id, at, verdict FROM decisions ORDER BY id"
            )
            queued = await conn.fetch("SELECT campaign_id, customer_id, status, attempts FROM outbox")
            own: dict[str, int | None] = {
                r["id"]: r["max_per_week"] for r in await conn.fetch("SELECT id, max_per_week FROM customers")
            }
            ledger = await conn.fetch("SELECT seq, prev_hash, hash FROM consent_events ORDER BY seq")
            head = await conn.fetchrow("SELECT seq, hash FROM ledger_head")
        finally:
            await conn.close()
        verified = []
        async with httpx.AsyncClient(headers=c.headers("auditor"), timeout=30) as auditor:
            for base in c.bases:
                verified.append((await auditor.get(f"{base}/v1/consent-events/verify")).json())
        arrivals = c.arrivals()

    # (a) No cap exceeded in any rolling window: the reservations, all channels together (marketing).
    assert all(own[cid] == own_cap(i) for i, cid in enumerate(customers)), "a customer's own cap changed"
    marketing: dict[str, list[int]] = defaultdict(list)
    for row in reservations:
        if row["marketing"]:
            marketing[row["customer_id"]].append(row["at_us"])
    for cid, sends_at in marketing.items():
        caps = customer_caps(c.policy_caps, own[cid])
        for limit, window in caps:
            assert over_cap(sorted(sends_at), limit, window) is None, (cid, limit, window, sorted(sends_at))
    assert sum(len(v) for v in marketing.values()) > len(customers) // 2, "too few marketing allows to judge"
    # ... and from the decision log: for a customer whose preferences never changed nothing is released,
    # so the first allow of each (campaign, customer) is the one that reserved, at its own instant.
    first_allow: dict[tuple[str, str], int] = {}
    for row in decisions:
        if row["verdict"] == "allow":
            first_allow.setdefault((row["customer_id"], row["campaign_id"]), microseconds(row["at"]))
    held = {(r["customer_id"], r["campaign_id"]): r["at_us"] for r in reservations}
    steady = {(cid, camp): at for (cid, camp), at in first_allow.items() if cid not in togglers}
    assert steady == {pair: at for pair, at in held.items() if pair[0] not in togglers}
    by_customer: dict[str, list[int]] = defaultdict(list)
    for (cid, camp), at in steady.items():
        if camp in MARKETING:
            by_customer[cid].append(at)
    for cid, sends_at in by_customer.items():
        caps = customer_caps(c.policy_caps, own[cid])
        for limit, window in caps:
            assert over_cap(sorted(sends_at), limit, window) is None, (cid, limit, window, sorted(sends_at))

    # (b) Each (campaign, customer) reserved once: every reservation has its allow in the decision log,
    # and at most one message was queued per (campaign, customer), sent only with a reservation held
    # (or, for a toggler, withdrawn at the re-gate, its reservation released).
    assert set(held) <= set(first_allow), set(held) - set(first_allow)
    pairs = Counter((r["campaign_id"], r["customer_id"]) for r in queued)
    assert max(pairs.values()) == 1
    sent = [(r["campaign_id"], r["customer_id"]) for r in queued if r["status"] == "sent"]
    # A sent message keeps its reservation, unless a retry denied later released it (API.md: "a retry
    # that is now denied ... release[s] the reservation", sent or not): a toggler's, after its withdrawal.
    last_verdict = {(r["customer_id"], r["campaign_id"]): r["verdict"] for r in decisions}
    released = [(camp, cid) for camp, cid in sent if (cid, camp) not in held]
    assert all(cid in togglers and last_verdict[cid, camp] == "deny" for camp, cid in released), [
        (camp, cid, cid in togglers, [tuple(r) for r in decisions if (r[0], r[1]) == (cid, camp)])
        for camp, cid in released
    ]
    assert set(outbox) <= {"sent", "deferred", "withdrawn"}, outbox
    assert outbox["sent"] >= len(customers) * len(TRANSACTIONAL)

    # (c) No message delivered twice (nothing crashed), and every sent one arrived, to its customer.
    expected = expected_ids(sent)
    received = Counter(a["mid"] for a in arrivals)
    assert set(received) == set(expected), "a sent message did not arrive, or an unexpected one did"
    assert max(received.values()) == 1, [mid for mid, n in received.items() if n > 1]
    for a in arrivals:
        assert a["rcpt"] == [f"{expected[a['mid']][1]}@example.org"]

    # (d) The ledger verifies on every node: seq 1..N, no gaps, each prev_hash the previous hash.
    n = len(ledger)
    assert n == events + changes, (n, events, changes)
    assert [r["seq"] for r in ledger] == list(range(1, n + 1))
    assert ledger[0]["prev_hash"] == "0" * 64
    assert all(ledger[k]["prev_hash"] == ledger[k - 1]["hash"] for k in range(1, n))
    assert head is not None and (head["seq"], head["hash"]) == (n, ledger[-1]["hash"])
    assert verified == [{"ok": True, "events": n, "head": ledger[-1]["hash"]}] * API_NODES, verified

    # (e) The deployment-wide ceiling, with both dispatchers busy (each could send the whole rate, so
    # two own buckets would send twice it: ~2 x (rate + burst) in the first second): rate + burst (one
    # second's worth) in any sliding second at the receiver, before the wave and with the wave's gates
    # racing the re-gates (a re-gate that waited behind them takes its chunk's tokens again, so the stall
    # is not bunched into one second), and over the whole run no more than the burst and the rate for
    # the span.
    times = [a["t"] for a in arrivals]
    quiet = [t for t in times if t < wave_began]
    busiest_quiet, busiest = busiest_second(quiet), busiest_second(times)
    span = max(times) - min(times)
    share = Counter(a["pid"] for a in arrivals)
    pids = [p.pid for p in c.dispatchers]
    reasons: Counter[str] = Counter()
    for answer in answers:
        reasons.update(answer["summary"]["by_reason"])
    print(
        f"burst {burst_seconds:.1f} s, then a wave ({len(answers)} gate answers {dict(reasons)}, {changes} "
        f"preference changes); "
        f"{len(arrivals)} delivered in {span:.1f} s = {(len(arrivals) - 1) / span:.0f}/s at rate {rate}/s; "
        f"busiest sliding second {busiest_quiet} of {len(quiet)} before the wave, {busiest} in all "
        f"(ceiling {2 * rate}); per dispatcher {[share.get(pid, 0) for pid in pids]} (unknown "
        f"{share.get(0, 0)}); outbox {outbox}; sent, then released by a denied retry: {len(released)}; "
        f"ledger {n} events; test {time.monotonic() - began:.1f} s"
    )
    assert len(quiet) > 2 * rate, "too few deliveries before the wave to judge the first second"
    assert busiest_quiet <= 2 * rate, (
        f"{busiest_quiet} deliveries in one second, over rate + burst {2 * rate}"
    )
    assert busiest <= 2 * rate, f"{busiest} deliveries in one second with the wave, over {2 * rate}"
    assert len(times) <= rate + rate * (span + 1.0), f"{len(times)} in {span:.1f} s at {rate}/s"
    assert all(share.get(pid, 0) >= 0.2 * len(times) for pid in pids), f"a dispatcher was idle: {share}"


# -- the kill -------------------------------------------------------------------------------------


async def test_killed_dispatcher_loses_nothing(tmp_path: Path) -> None:
    began = time.monotonic()
    rate = 100
    names = ["k0", "k1"]
    async with cluster(tmp_path, rate) as c:
        customers, _ = await seed(c, 300, {k: campaign("orders", False) for k in names})
        total = len(customers) * len(names)
        async with httpx.AsyncClient(headers=c.headers("marketing"), timeout=60) as client:
            for i, camp in enumerate(names):
                for n, start in enumerate(range(0, len(customers), 100)):
                    base = c.bases[(i + n) % API_NODES]
                    ids = customers[start : start + 100]
                    r = await client.post(f"{base}/v1/campaigns/{camp}/sends", json={"customer_ids": ids})
                    assert r.status_code == 202, r.text
                    assert r.json()["summary"]["allow"] == len(ids)
        victim, survivor = c.start_dispatchers()
        deadline = time.monotonic() + 40
        while True:
            arrivals = c.arrivals()
            by = Counter(a["pid"] for a in arrivals)
            if by[victim.pid] >= 40 and len(arrivals) >= total // 4:
                break
            assert time.monotonic() < deadline, f"the victim dispatcher sent too little: {by}"
            assert victim.poll() is None and survivor.poll() is None, "a dispatcher died"
            await asyncio.sleep(0.02)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        killed_at = time.monotonic()
        at_kill = len(c.arrivals())
        conn = await c.connect()
        try:
            outbox = await wait_delivered(c, conn, 45, [survivor])
            attempts = dict(
                ((r["campaign_id"], r["customer_id"]), r["attempts"])
                for r in await conn.fetch("SELECT campaign_id, customer_id, attempts FROM outbox")
            )
        finally:
            await conn.close()
        await asyncio.sleep(0.5)  # anything still on its way
        arrivals = c.arrivals()

    expected = expected_ids([(camp, cid) for camp in names for cid in customers])
    received = Counter(a["mid"] for a in arrivals)
    assert outbox == {"sent": total}, outbox
    assert set(received) == set(expected), "a queued message was lost (or an unexpected one sent)"
    twice = {mid: k for mid, k in received.items() if k > 1}
    assert all(k == 2 for k in twice.values()), twice
    assert all(attempts[expected[mid]] >= 2 for mid in twice), "a duplicate not counted in attempts"
    senders = defaultdict(list)
    for a in sorted(arrivals, key=lambda a: a["t"]):
        senders[a["mid"]].append(a["pid"])
    assert all(senders[mid] == [victim.pid, survivor.pid] for mid in twice), "a duplicate not from the kill"
    # Only what the killed one had in the transport's hands (max_in_flight per channel) can repeat.
    assert len(twice) <= Dispatcher.max_in_flight, len(twice)
    by = Counter(a["pid"] for a in arrivals)
    last = max(a["t"] for a in arrivals)
    print(
        f"{total} messages at {rate}/s; killed dispatcher {victim.pid} after {by[victim.pid]} of its "
        f"deliveries ({at_kill} in all); the survivor sent {by[survivor.pid]}; delivered twice: "
        f"{len(twice)}; last arrival {last - killed_at:.1f} s after the kill (lease {LEASE_SECONDS} s); "
        f"test {time.monotonic() - began:.1f} s"
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--sink"]:
        run_sink(int(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
