"""``prefcenter dispatch`` delivers the webhook outbox (issue 12 item 3: the deliverer runs where the
dispatcher runs): a real dispatcher process on a real SQLite file, customers written by ``prefcenter
import``, a receiver process that verifies every signature with ``standardwebhooks``; SIGTERM exits 0."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from prefcenter.bootstrap import build_runtime
from prefcenter.config import load_settings
from prefcenter.services.webhooks import WebhookBody, put_webhook
from tests.benchmarks.bench_import import ROOT, env_for, fresh_db, make_lines
from tests.live import free_port

pytestmark = pytest.mark.sqlite_only  # the processes on a sqlite:/// file, read with sqlite3

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVowMTIzNDU2"


def counts(db: Path) -> dict[str, int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return dict(
            conn.execute("SELECT status, count(*) FROM webhook_deliveries GROUP BY status").fetchall()
        )


async def test_dispatch_delivers_every_imported_event_signed(tmp_path: Path) -> None:
    db = fresh_db(tmp_path, "hooks")
    port = free_port()
    rt = build_runtime(load_settings(env_for(db)))
    await rt.store.open()
    try:
        await put_webhook(rt, "crm", WebhookBody(url=f"http://127.0.0.1:{port}/in", secret=SECRET))
    finally:
        await rt.store.close()
    data = tmp_path / "customers.ndjson"
    data.write_bytes(b"".join(make_lines(25)))
    subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", "import", str(data)],
        env=env_for(db),
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    queued = counts(db)
    assert set(queued) == {"pending"} and queued["pending"] >= 50
    receiver = subprocess.Popen(
        [sys.executable, "-m", "tests.webhook_receiver", "--secret", SECRET, "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    log = tmp_path / "dispatch.log"
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "prefcenter.cli", "dispatch"],
                env=env_for(db),
                cwd=ROOT,
                stdout=out,
                stderr=out,
            )
            try:
                deadline = time.monotonic() + 60
                while counts(db).get("delivered", 0) < queued["pending"]:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, counts(db)
                    time.sleep(0.1)
            finally:
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    finally:
        receiver.send_signal(signal.SIGTERM)
        out_text, _ = receiver.communicate(timeout=30)
    figures = json.loads(out_text.strip().splitlines()[-1])
    assert figures["bad_signatures"] == 0
    assert figures["distinct"] == queued["pending"] == figures["delivered"]
    assert counts(db) == {"delivered": queued["pending"]}
