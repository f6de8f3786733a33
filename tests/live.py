"""The real app served by uvicorn on 127.0.0.1 in a background thread, for tests that need a server."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from prefcenter.api.app import create_app
from prefcenter.services.runtime import Runtime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(rt: Runtime, port: int | None = None) -> Iterator[str]:
    """Serve ``rt`` until the block ends; yields the base URL. The store is opened by the app's lifespan
    on the server's own loop, so the test must talk to it over HTTP (or read the file with sqlite3)."""
    port = port or free_port()
    config = uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30) -> None:
    """Ask a server process to stop (graceful shutdown), killing it if it has not within ``timeout``."""
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
