"""``GET /metrics`` and ``GET /healthz`` for a dispatcher run on its own (``prefcenter dispatch``).

The same registry and gauges as ``serve``'s ``/metrics`` (``prefcenter.api.ops``): the runtime's
``Metrics``, with the outbox depth and overdue inbound reviews read from the store at each scrape. A
deliberately small HTTP/1.0-style server on the dispatcher's own event loop (one request per
connection, GET only, the request head capped at 8 KiB and 5 s): it answers Prometheus and a liveness
probe, nothing else, and binds 127.0.0.1 unless told otherwise (``PREFCENTER_METRICS_HOST``).
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from prefcenter.services import inbound
from prefcenter.services.runtime import Runtime

log = structlog.get_logger("prefcenter.dispatch")
MAX_HEAD = 8192
READ_SECONDS = 5.0


async def metrics_body(rt: Runtime) -> bytes:
    """The Prometheus text, gauges refreshed from the store (a store failure leaves them as they were:
    the counters are still worth a scrape)."""
    try:
        rt.metrics.outbox_depth.set(await rt.store.outbox_due_count())
        rt.metrics.inbound_review_overdue.set(await inbound.overdue_count(rt))
    except Exception as exc:  # the scrape still answers with the counters
        log.warning("metrics gauges not refreshed", error=type(exc).__name__)
    return generate_latest(rt.metrics.registry)


def _response(status: str, body: bytes, content_type: str, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    return head if head_only else head + body


class MetricsServer:
    """Started with :meth:`start` (binds, or raises ``OSError``), stopped with :meth:`stop`."""

    def __init__(self, rt: Runtime, host: str, port: int) -> None:
        self.rt = rt
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=MAX_HEAD)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("dispatcher metrics listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_SECONDS)
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            method, target = (parts[0], parts[1]) if len(parts) == 3 else (b"", b"")
            path = target.split(b"?", 1)[0]
            head_only = method == b"HEAD"
            if method not in (b"GET", b"HEAD"):
                reply = _response("405 Method Not Allowed", b"GET only\n", "text/plain; charset=utf-8")
            elif path == b"/metrics":
                reply = _response("200 OK", await metrics_body(self.rt), CONTENT_TYPE_LATEST, head_only)
            elif path == b"/healthz":
                reply = _response("200 OK", b'{"status":"ok"}', "application/json", head_only)
            else:
                reply = _response("404 Not Found", b"not found\n", "text/plain; charset=utf-8", head_only)
            writer.write(reply)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


__all__ = ["MetricsServer", "metrics_body"]
