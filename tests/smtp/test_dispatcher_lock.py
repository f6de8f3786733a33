"""One dispatcher per database (SQLite): a second one does not start, in-process or as a process, and a
dispatcher killed with SIGKILL does not keep the lock (the OS drops its flock)."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefcenter.services.dispatch import Dispatcher
from prefcenter.store.sqlite import SqliteStore
from tests.benchmarks.bench_dispatch import ROOT, env_for, seed
from tests.conftest import Api
from tests.live import free_port
from tests.smtp.helpers import dispatcher
from tests.smtp.sink import Handler

pytestmark = pytest.mark.sqlite_only  # SQLite's one dispatcher per file (flock); PostgreSQL runs many


async def test_a_second_dispatcher_does_not_start(api: Api, sink: tuple[Handler, int]) -> None:
    """Another process's dispatcher is another store on the same file: it finds the lock taken."""
    _, port = sink
    first = dispatcher(api, port, idle_seconds=0.01)
    other = dataclasses.replace(api.rt, store=SqliteStore(api.rt.store.path))  # type: ignore[attr-defined]
    second = Dispatcher(other, first.transports)
    stop_first = asyncio.Event()
    running = asyncio.create_task(first.run(stop_first))
    await asyncio.sleep(0.05)
    assert await asyncio.wait_for(second.run(asyncio.Event()), 5) is False  # at once, doing nothing
    stop_first.set()
    assert await asyncio.wait_for(running, 5) is True
    assert await other.store.maintenance.acquire_dispatcher() is True  # free again once the first stopped
    await other.store.maintenance.release_dispatcher()
    await first.close()


def test_dispatch_command_refuses_a_second_and_takes_over_after_kill_9(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    db = tmp_path / "lock.db"
    env = env_for({"PREFCENTER_DATABASE_URL": f"sqlite:///{db}"}, policies, free_port())
    seed(db, env, 1)
    command = [sys.executable, "-m", "prefcenter.cli", "dispatch"]

    def started(proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the log line written once the lock is held
            line = proc.stderr.readline()
            if "dispatcher started" in line:
                return
        raise AssertionError("the dispatcher did not start")

    env_info = {**env, "PREFCENTER_LOG_LEVEL": "info"}  # "dispatcher started" is an info line
    first = subprocess.Popen(command, env=env_info, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    third: subprocess.Popen[str] | None = None
    try:
        started(first)
        second = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=30)
        assert second.returncode == 1 and "another dispatcher is running" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        third = subprocess.Popen(command, env=env_info, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        started(third)  # at once: the killed one's flock went with it
        third.send_signal(signal.SIGTERM)
        assert third.wait(timeout=30) == 0
    finally:
        for proc in (first, third):
            if proc is not None and proc.poll() is None:
                proc.kill()
