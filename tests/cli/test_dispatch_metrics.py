"""``prefcenter dispatch`` on its own serves ``GET /metrics`` (the dispatcher's Prometheus counters and
gauges, as ``serve`` does) and ``GET /healthz`` on PREFCENTER_METRICS_HOST:PORT, and one SIGTERM still
exits 0 (issue 12 item 6). A real process on a real SQLite file, email to the aiosmtpd sink."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.benchmarks.bench_dispatch import ROOT, env_for, queue, seed
from tests.live import free_port
from tests.smtp.sink import smtp_sink

pytestmark = pytest.mark.sqlite_only  # the dispatcher process on a sqlite:/// URL, seeded with sqlite3

N = 5


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" (\S+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_dispatch_serves_metrics_that_move_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    db = tmp_path / "metrics.db"
    smtp_port, metrics_port = free_port(), free_port()
    env = env_for({"PREFCENTER_DATABASE_URL": f"sqlite:///{db}"}, policies, smtp_port)
    env.update(PREFCENTER_METRICS_PORT=str(metrics_port), PREFCENTER_LOG_LEVEL="warning")
    seed(db, env, N)
    base = f"http://127.0.0.1:{metrics_port}"
    log = tmp_path / "dispatch.log"
    with smtp_sink(smtp_port) as (handler, _), log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefcenter.cli", "dispatch"], env=env, cwd=ROOT, stdout=out, stderr=out
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                assert proc.poll() is None, log.read_text()[-3000:]
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).json() == {"status": "ok"}:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline, "no /healthz from the dispatcher"
                time.sleep(0.05)
            before = httpx.get(f"{base}/metrics", timeout=5)
            assert before.status_code == 200
            assert before.headers["content-type"].startswith("text/plain; version=")
            assert "# TYPE prefcenter_dispatched_total counter" in before.text
            assert sample(before.text, "prefcenter_dispatched_total", channel="email", outcome="sent") == 0
            assert sample(before.text, "prefcenter_outbox_depth") == 0
            queue(env, N)
            deadline = time.monotonic() + 30
            while len(handler.messages) < N and time.monotonic() < deadline:
                time.sleep(0.02)
            assert len(handler.messages) == N
            sent = 0.0
            while time.monotonic() < deadline:  # the counter moves once the sent marks are written
                after = httpx.get(f"{base}/metrics", timeout=5).text
                sent = sample(after, "prefcenter_dispatched_total", channel="email", outcome="sent")
                if sent == N:
                    break
                time.sleep(0.05)
            assert sent == N and sample(after, "prefcenter_outbox_depth") == 0
            assert httpx.get(f"{base}/nope", timeout=5).status_code == 404
            assert httpx.post(f"{base}/metrics", timeout=5).status_code == 405
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            raise
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_metrics_port_0_is_off_and_a_taken_port_does_not_stop_sending(tmp_path: Path) -> None:
    """Port 0 serves nothing; a port already taken is logged and the dispatcher runs on."""
    import socket

    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    db = tmp_path / "taken.db"
    smtp_port = free_port()
    env = env_for({"PREFCENTER_DATABASE_URL": f"sqlite:///{db}"}, policies, smtp_port)
    seed(db, env, 1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        log = tmp_path / "dispatch.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefcenter.cli", "dispatch", "--metrics-port", str(port)],
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 30
        while "dispatcher metrics not served" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.05)
        assert proc.poll() is None and "dispatcher metrics not served" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()[-3000:]
