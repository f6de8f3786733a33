"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it accepts and can misbehave on cue."""

from __future__ import annotations

import email
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.live import free_port


class Handler:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.rcpt_replies: list[str] = []  # replies for the next RCPTs (then accept)
        self.data_replies: list[str] = []  # replies for the next DATAs (then accept)
        self.lock = threading.Lock()
        self.times: list[float] = []  # time.monotonic() of each accepted message

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        with self.lock:
            if self.rcpt_replies:
                return self.rcpt_replies.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            if self.data_replies:
                return self.data_replies.pop(0)
            raw = envelope.original_content or envelope.content
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
            self.times.append(time.monotonic())
        return "250 Message accepted for delivery"


@contextmanager
def smtp_sink(port: int | None = None) -> Iterator[tuple[Handler, int]]:
    handler = Handler()
    port = port or free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()
