from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.live import free_port
from tests.smtp.sink import Handler, smtp_sink


@pytest.fixture
def sink() -> Iterator[tuple[Handler, int]]:
    with smtp_sink() as pair:
        yield pair


class Hook:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.replies: list[int] = []  # statuses for the next requests (then 200)


@pytest.fixture
def hook() -> Iterator[tuple[Hook, str]]:
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = state.replies.pop(0) if state.replies else 200
            if status == 200:
                assert self.headers["Content-Type"] == "application/json"
                state.bodies.append(json.loads(body))
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
