"""The demo names an example sender (issue 16 item 5): `prefcenter serve --demo-sink` fills in example
PREFCENTER_CONTROLLER_NAME, _POSTAL_ADDRESS and _PRIVACY_URL, so the README's start command shows the
footer and pages a real deployment would (COMPLIANCE items 15 and 27)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from prefcenter.services.demo import DEMO_IDENTITY
from tests.live import free_port, stop


def test_serve_with_demo_sink_names_the_example_sender(tmp_path: Path) -> None:
    """COMPLIANCE item 15: after `prefcenter demo`, the preference page served by `serve --demo-sink`
    names the demo's example controller and links its privacy notice; no identity warning is logged."""
    port, smtp_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFCENTER_")}
    env.update(
        PREFCENTER_DATABASE_URL=f"sqlite:///{tmp_path}/demo.db",
        PREFCENTER_SECRET_KEY="demo-test-secret-key-123",
        PREFCENTER_PORT=str(port),
        PREFCENTER_SMTP_PORT=str(smtp_port),
    )
    cli = [sys.executable, "-m", "prefcenter.cli"]
    seeded = subprocess.run(
        [*cli, "demo", "--customers", "2"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert seeded.returncode == 0, seeded.stderr
    match = re.search(r"preference page:\s+(\S+)", seeded.stdout)
    assert match
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*cli, "serve", "--demo-sink", str(tmp_path / "mail")],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                page = httpx.get(match.group(1), timeout=5)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert page.status_code == 200
        assert f"<bdi>{DEMO_IDENTITY['controller_name']}</bdi>" in page.text  # in the customer's language
        assert DEMO_IDENTITY["postal_address"] in page.text
        assert f'href="{DEMO_IDENTITY["privacy_url"]}"' in page.text
    finally:
        stop(proc)
    assert "CONTROLLER_NAME" not in log.read_text()  # the demo values are set: no identity warning
