"""The demo's local SMTP sink (`prefcenter serve --demo-sink DIR`): each accepted email is a .eml file."""

from __future__ import annotations

import email
import email.policy
import smtplib
from pathlib import Path

from prefcenter.messaging.sink import start_sink
from tests.live import free_port


def test_sink_saves_each_message_as_an_eml_file(tmp_path: Path) -> None:
    folder = tmp_path / "mail"
    port = free_port()
    sink = start_sink(folder, port)
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=5) as client:
            for n in range(2):
                client.sendmail("a@shop.example", [f"c{n}@example.org"], f"Subject: hi {n}\r\n\r\nbody {n}\r\n")
    finally:
        sink.stop()
    files = sorted(folder.glob("*.eml"))
    assert len(files) == 2 and not list(folder.glob("*.tmp"))
    subjects = sorted(str(email.message_from_bytes(f.read_bytes(), policy=email.policy.default)["Subject"]) for f in files)
    assert subjects == ["hi 0", "hi 1"]
