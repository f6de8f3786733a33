"""Fixtures of the page tests: a real SMTP server on loopback that keeps what it receives, and the app
configured to send the pages' emails (the fresh manage link) to it."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any

import msgspec
import pytest
from aiosmtpd.controller import Controller

from tests.conftest import Api


@dataclass
class Sink:
    port: int
    messages: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content, policy=default_policy)
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), msg))  # type: ignore[arg-type]
        return "250 OK"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def smtp_sink() -> Iterator[Sink]:
    sink = Sink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@pytest.fixture
async def mail_api(api: Api, smtp_sink: Sink) -> AsyncIterator[Api]:
    api.rt.settings = msgspec.structs.replace(
        api.rt.settings, smtp_port=smtp_sink.port, smtp_from_setting="Prefs <prefs@shop.example>"
    )
    yield api
