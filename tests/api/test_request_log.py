"""The request line: one per request at INFO (method, route template, status, time, request id), none
below it. The line's level is checked before the structlog call (prefcenter/api/app.py), so these tests
pin that the check follows the configured level, also when it changes while the service runs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator

import pytest
import structlog
from litestar.types import Receive, Scope, Send

from prefcenter.api import app as app_module
from prefcenter.api.app import request_context
from prefcenter.logging import configure_logging


async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _call(request_id: bytes) -> list[object]:
    sent: list[object] = []

    async def receive() -> object:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: object) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v1/x", "headers": [(b"x-request-id", request_id)]}
    asyncio.run(request_context(_answer)(scope, receive, send))  # type: ignore[arg-type]
    return sent


@pytest.fixture
def logging_restored(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The standard library's root logger and structlog as they were, and the middleware's logger a
    fresh one for the test: a structlog logger caches its chain on first use, so the module's own,
    used under this test's configuration, would keep filtering by level in the tests after it (a
    ``capture_logs`` there saw no request line)."""
    monkeypatch.setattr(app_module, "log", structlog.get_logger("prefcenter.http"))
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _request_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == "request"]


@pytest.mark.usefixtures("logging_restored")
def test_one_request_line_at_info_and_none_below(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(production=True, level="info")
    _call(b"first-call")
    (line,) = _request_lines(capsys.readouterr().err)
    assert line["request_id"] == "first-call" and line["method"] == "POST" and line["status"] == 204
    assert line["route"] == "unmatched" and isinstance(line["ms"], float) and line["level"] == "info"

    logging.getLogger().setLevel(logging.WARNING)  # the level changed while running
    sent = _call(b"second-call")
    assert _request_lines(capsys.readouterr().err) == []
    assert (b"x-request-id", b"second-call") in sent[0]["headers"]  # type: ignore[index]

    logging.getLogger().setLevel(logging.INFO)
    _call(b"third-call")
    assert [line["request_id"] for line in _request_lines(capsys.readouterr().err)] == ["third-call"]
