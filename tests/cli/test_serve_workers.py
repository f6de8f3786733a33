"""``prefcenter serve --workers N``: refused with SQLite (one writer per file); with PostgreSQL the parent
migrates once, binds the socket once and runs N worker processes that all answer on it; a worker that
dies is reported (not replaced) while the others go on; one SIGTERM stops them all with exit status 0. Real processes on 127.0.0.1; PostgreSQL in a schema of its own
(``pc_<hex>``, dropped at the end) at ``PREFCENTER_TEST_PG_DSN`` (default the local test server):
unreachable, the PostgreSQL test skips, except under ``CI=true``, where it fails."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from click.testing import CliRunner

from prefcenter.cli import main
from tests import engines
from tests.conftest import SECRET
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
PG_DSN = engines.postgres_url()
START_SECONDS = 45.0  # N spawned interpreters importing the app, on a busy machine
STOP_SECONDS = 15.0  # from the one SIGTERM to the parent's exit
WORKERS = 2


def test_workers_need_postgresql(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'one.db'}",
        "PREFCENTER_SECRET_KEY": None,  # unset: the refusal generates no development key either
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    started = time.monotonic()
    result = CliRunner().invoke(main, ["serve", "--workers", "2"], env=env)
    assert result.exit_code == 1, result.output
    assert "--workers 2 needs PostgreSQL" in result.output
    assert "run one process; SQLite has one writer" in result.output
    assert not list(tmp_path.iterdir())  # refused before anything was opened or generated
    assert time.monotonic() - started < 5
    assert CliRunner().invoke(main, ["serve", "--workers", "0"], env=env).exit_code == 2  # a usage error


def _pg(sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


def _pg_reachable() -> None:
    try:
        _pg("SELECT 1")
    except engines.UNREACHABLE as exc:
        engines.postgres_unavailable(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


def _workers_of(parent: int) -> list[int]:
    """The worker processes (multiprocessing's spawned interpreters) whose parent is ``parent``: read
    from /proc (the resource tracker the 'spawn' context also starts is not one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rpartition(")")[2].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return sorted(found)


@pytest.mark.postgres
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_workers_serve_one_socket_and_stop_on_one_sigterm(tmp_path: Path) -> None:
    _pg_reachable()
    schema = f"pc_{uuid.uuid4().hex}"
    port = free_port()
    env = {
        **os.environ,
        "PREFCENTER_DATABASE_URL": PG_DSN,
        "PREFCENTER_DATABASE_SCHEMA": schema,
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_POLICY_DIR": str(ROOT / "policies"),
        "PREFCENTER_PORT": str(port),
        "PREFCENTER_SMTP_PORT": str(free_port()),
        "PREFCENTER_LOG_LEVEL": "warning",
    }
    base = f"http://127.0.0.1:{port}"
    err = tmp_path / "stderr.txt"
    try:
        with err.open("wb") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefcenter", "serve", "--workers", str(WORKERS)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            deadline = time.monotonic() + START_SECONDS
            workers: list[int] = []
            ready = 0
            while time.monotonic() < deadline and (len(workers) < WORKERS or ready < 5):
                assert proc.poll() is None, err.read_text()[-3000:]
                workers = _workers_of(proc.pid)
                try:  # a new connection each time: the kernel hands it to whichever worker accepts
                    r = httpx.get(f"{base}/readyz", timeout=2)
                    ready = ready + 1 if r.status_code == 200 else 0
                except httpx.HTTPError:
                    ready = 0
                    time.sleep(0.1)
            assert len(workers) == WORKERS, (workers, err.read_text()[-3000:])
            assert ready >= 5, err.read_text()[-3000:]
            # both workers up (each started its server: their pids are alive children), and every
            # request of a burst on fresh connections is answered, whichever worker takes it
            ids = set()
            for _ in range(20):
                r = httpx.get(f"{base}/healthz", timeout=5)
                assert r.status_code == 200
                ids.add(r.headers["x-request-id"].split("-")[0])  # the answering process's prefix
            assert 1 <= len(ids) <= WORKERS
            assert _workers_of(proc.pid) == workers
            # a worker that dies is reported and not replaced; the others go on serving
            os.kill(workers[0], signal.SIGKILL)
            until = time.monotonic() + 10
            while _workers_of(proc.pid) != workers[1:] and time.monotonic() < until:
                time.sleep(0.1)
            assert _workers_of(proc.pid) == workers[1:]
            for _ in range(5):
                assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
            until = time.monotonic() + 5
            while "a worker stopped" not in err.read_text() and time.monotonic() < until:
                time.sleep(0.1)
            assert "a worker stopped" in err.read_text()
            assert proc.poll() is None
            proc.send_signal(signal.SIGTERM)
            began = time.monotonic()
            try:
                code = proc.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"one SIGTERM did not stop serve --workers within {STOP_SECONDS} s"
                ) from None
            assert code == 0, (code, err.read_text()[-3000:])
            assert time.monotonic() - began < STOP_SECONDS
            assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()]  # reaped by the parent
        finally:
            if proc.poll() is None:
                for pid in _workers_of(proc.pid):
                    os.kill(pid, signal.SIGKILL)
                proc.kill()
                proc.wait(timeout=10)
    finally:
        _pg(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
