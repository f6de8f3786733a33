"""Issue 16 item 9: one SIGTERM stops ``prefcenter serve`` within seconds with exit status 0 — idle, with
the demo SMTP sink, and while the dispatcher has a message in the hands of a transport that does not
answer (a hanging webhook held shutdown for 30 s; uvicorn then re-raised the signal, so the process died
of it with status 143 and the sink was never stopped). Real processes on 127.0.0.1, a real SQLite file."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PROFILE, SECRET, prefs_body
from tests.live import free_port

ROOT = Path(__file__).resolve().parents[2]
BOUND = 10.0  # seconds from the one SIGTERM to the exit


@pytest.fixture
def hanging_hook() -> Iterator[tuple[str, threading.Event]]:
    """A webhook receiver that takes each POST and never answers (until the test ends)."""
    release = threading.Event()
    got = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.set()
            release.wait(60)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    finally:
        release.set()
        server.shutdown()
        server.server_close()


def environment(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PREFCENTER_DATABASE_URL": f"sqlite:///{tmp / 'serve.db'}",
        "PREFCENTER_SECRET_KEY": SECRET,
        "PREFCENTER_POLICY_DIR": str(ROOT / "policies"),
        "PREFCENTER_PORT": str(free_port()),
        "PREFCENTER_SMTP_PORT": str(free_port()),
        "PREFCENTER_LOG_LEVEL": "warning",
        **extra,
    }


def start(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], str]:
    base = f"http://127.0.0.1:{env['PREFCENTER_PORT']}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefcenter", "serve", *args],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("the server did not start")


def one_sigterm(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    proc.send_signal(signal.SIGTERM)
    began = time.monotonic()
    try:
        code = proc.wait(timeout=BOUND)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(f"one SIGTERM did not stop the server within {BOUND} s") from None
    return code, time.monotonic() - began


@pytest.mark.parametrize("demo_sink", [False, True])
def test_one_sigterm_stops_serve_with_status_0(tmp_path: Path, demo_sink: bool) -> None:
    for attempt in range(2):
        env = environment(tmp_path / str(attempt))
        args = ["--demo-sink", str(tmp_path / f"mail{attempt}")] if demo_sink else []
        proc, _ = start(env, *args)
        time.sleep(0.2 * attempt)  # a little later each time: the dispatcher's idle wait, a checkpoint
        code, took = one_sigterm(proc)
        assert code == 0, (code, proc.stderr.read().decode()[-3000:] if proc.stderr else "")
        assert took < BOUND


def test_one_sigterm_stops_serve_while_a_transport_holds_a_message(
    tmp_path: Path, hanging_hook: tuple[str, threading.Event]
) -> None:
    """The SMS opt-in confirmation is in the hands of a webhook that never answers: one SIGTERM still
    stops the server in seconds, and the message is not lost (it stays queued for the next start)."""
    url, got = hanging_hook
    env = environment(tmp_path, PREFCENTER_WEBHOOK_URL=url)
    made = subprocess.run(
        [sys.executable, "-m", "prefcenter", "keys", "create", "--role", "admin", "--name", "t"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip().splitlines()[-1]
    proc, base = start(env)
    try:
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            topic = {"category": "marketing", "names": {"en": "Offers"}}
            assert client.put("/v1/topics/promotions", json=topic).status_code == 201
            profile = {**PROFILE, "contacts": {"sms": "+48600100200"}}
            assert client.put("/v1/customers/c1", json=profile).status_code == 201
            r = client.put("/v1/customers/c1/preferences", json=prefs_body(channel="sms"))
            assert r.status_code == 200, r.text
        assert got.wait(15), "the dispatcher did not hand the confirmation to the webhook"
    except BaseException:
        proc.kill()
        raise
    code, took = one_sigterm(proc)
    assert code == 0, (code, proc.stderr.read().decode()[-3000:] if proc.stderr else "")
    assert took < BOUND
    conn = sqlite3.connect(tmp_path / "serve.db")
    try:
        assert conn.execute("SELECT status, attempts FROM notifications").fetchall() == [("queued", 1)]
    finally:
        conn.close()
