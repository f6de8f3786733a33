"""A real HTTP/1.1 webhook receiver on 127.0.0.1 (plain asyncio, keep-alive) that verifies every request's
signature with ``standardwebhooks.Webhook(secret).verify``, for the webhook tests and benchmark.

In a test: ``Receiver(secret)``, ``await start()`` / ``await stop()`` (stopped, connections are refused),
``answer`` decides each status (e.g. 503 while "down"). As a process (the benchmark):
``python -m tests.webhook_receiver --secret S --port P``: prints ``ready`` and, at SIGTERM, one JSON line of
figures (requests, verified, bad signatures, delays from the event's ``at`` to receipt: p50/p99/max)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from standardwebhooks import Webhook

#: (verified payload, headers) -> status, or (status, extra response headers)
Answer = Callable[[dict[str, Any], dict[str, str]], int | tuple[int, dict[str, str]]]


class Receiver:
    def __init__(self, secret: str, port: int = 0) -> None:
        self.signer = Webhook(secret)
        self.port = port
        self.answer: Answer = lambda payload, headers: 200
        self.delay = 0.0  # seconds before answering (a slow receiver: the sender's timeout)
        self.attempts: list[tuple[str, int]] = []  # (webhook-id, status answered), in arrival order
        self.delivered: list[tuple[str, dict[str, Any]]] = []  # (webhook-id, payload) answered 2xx
        self.bodies: list[bytes] = []
        self.bad_signatures = 0
        self.delays: list[float] = []  # receipt (wall clock) - the event's at, seconds
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Down: the listening socket closes (new connections are refused) and so do open ones."""
        if self._server is not None:
            self._server.close()
            for w in list(self._writers):
                w.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status, extra = self._handle(body, headers)
                if self.delay:
                    await asyncio.sleep(self.delay)
                if writer.is_closing():
                    return
                extra_lines = "".join(f"{k}: {v}\r\n" for k, v in extra.items())
                writer.write(
                    f"HTTP/1.1 {status} X\r\ncontent-length: 0\r\n{extra_lines}\r\n".encode("latin-1")
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:  # the loop ends with a slow answer pending: end quietly
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    def _handle(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        msg_id = headers.get("webhook-id", "")
        try:
            payload = self.signer.verify(body, headers)
        except Exception:
            self.bad_signatures += 1
            self.attempts.append((msg_id, 401))
            return 401, {}
        answer = self.answer(payload, headers)
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        self.attempts.append((msg_id, status))
        if 200 <= status < 300:
            self.delivered.append((msg_id, payload))
            self.bodies.append(body)
            at = datetime.fromisoformat(payload["data"]["at"].replace("Z", "+00:00"))
            self.delays.append(time.time() - at.timestamp())
        return status, extra


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _main(secret: str, port: int) -> None:
    receiver = Receiver(secret, port)
    await receiver.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await receiver.stop()
    seen = [m for m, s in receiver.attempts if s == 200]
    print(
        json.dumps(
            {
                "requests": len(receiver.attempts),
                "delivered": len(seen),
                "distinct": len(set(seen)),
                "bad_signatures": receiver.bad_signatures,
                "delay_p50_ms": round(_pct(receiver.delays, 0.50) * 1000, 1),
                "delay_p99_ms": round(_pct(receiver.delays, 0.99) * 1000, 1),
                "delay_max_ms": round(max(receiver.delays, default=0.0) * 1000, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--secret", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(_main(args.secret, args.port))
    sys.exit(0)
