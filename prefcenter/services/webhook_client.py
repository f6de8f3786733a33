"""The webhook deliverer's HTTP/1.1 client: POST only, keep-alive connections per origin, one deadline per
request (connect, send and answer), TLS with certificate checks for ``https://``.

Why not httpx: on this project's machines httpx 0.28 (httpcore's pool) tops out at a few hundred POSTs a
second with 16-64 in flight, far below the issue's 2,000 events/s; this client does what delivery needs
(the status and ``Retry-After``) on asyncio streams at several thousand a second. A response body is read
and dropped (at most :data:`MAX_BODY` bytes, ``Content-Length`` or chunked); a connection is kept only when
the response was read whole on HTTP/1.1 without ``Connection: close``. An idle kept connection the
receiver has closed meanwhile is retried once on a new one (delivery is at-least-once anyway)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from urllib.parse import urlsplit

MAX_HEAD = 64 * 1024
MAX_BODY = 1024 * 1024
_HEX = re.compile(rb"[0-9A-Fa-f]{1,8}")  # a chunk size (at most 4 GiB - 1; MAX_BODY bounds it anyway)


class HttpTimeout(Exception):
    """No complete answer within the deadline."""


class HttpError(Exception):
    """A network or protocol failure (refused, reset, TLS, a malformed answer)."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class _Stale(Exception):
    """A kept connection gave no answer at all (closed by the receiver while idle)."""


class WebhookClient:
    def __init__(
        self, *, timeout: float = 10.0, max_idle: int = 128, user_agent: str = "prefcenter-webhooks"
    ) -> None:
        self.timeout = timeout
        self.max_idle = max_idle
        self.user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str]]:
        """POST ``body``; the status and the response headers (names in lower case)."""
        parts = urlsplit(url)
        scheme, host = parts.scheme, parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{port}"
        lines = [
            f"POST {target} HTTP/1.1",
            f"host: {netloc}",
            f"user-agent: {self.user_agent}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            async with asyncio.timeout(self.timeout):
                conn = self._take(key)
                if conn is not None:
                    try:
                        return await self._exchange(key, conn, request)
                    except _Stale:
                        pass
                conn = await self._connect(scheme, host, port)
                try:
                    return await self._exchange(key, conn, request)
                except _Stale as exc:
                    raise HttpError("the connection closed without an answer") from exc
        except TimeoutError as exc:
            raise HttpTimeout(f"no answer within {self.timeout:g} s") from exc
        except (
            OSError,
            ssl.SSLError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ) as exc:
            raise HttpError(type(exc).__name__) from exc

    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        conns = self._idle.get(key)
        while conns:
            conn = conns.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _keep(self, key: tuple[str, str, int], conn: _Conn) -> None:
        conns = self._idle.setdefault(key, [])
        if len(conns) < self.max_idle:
            conns.append(conn)
        else:
            conn.close()

    async def _connect(self, scheme: str, host: str, port: int) -> _Conn:
        if scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self._ssl, server_hostname=host, limit=MAX_HEAD
            )
        else:
            reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD)
        return _Conn(reader, writer)

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Conn, request: bytes
    ) -> tuple[int, dict[str, str]]:
        keep = False
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            while True:
                try:
                    head = await conn.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial:
                        raise _Stale from exc
                    raise
                status, version, headers = _parse_head(head)
                if 100 <= status < 200:
                    continue  # informational: the answer follows
                break
            keep = await _drain_body(conn.reader, headers, status) and version == "HTTP/1.1"
            keep = keep and "close" not in headers.get("connection", "").lower()
            return status, headers
        except ConnectionError as exc:
            if isinstance(exc, ConnectionResetError | BrokenPipeError) and not keep:
                raise _Stale from exc
            raise
        finally:
            if keep:
                self._keep(key, conn)
            else:
                conn.close()


def _parse_head(head: bytes) -> tuple[int, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError("not an HTTP/1.x status line")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError("malformed header line")
        headers[name.strip().lower()] = value.strip()
    return int(code), version, headers


async def _drain_body(reader: asyncio.StreamReader, headers: dict[str, str], status: int) -> bool:
    """Read and drop the body; True when it was read whole (the connection may be kept)."""
    if status in (204, 304):
        return True  # no body by definition (RFC 9112 6.3)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        total = 0
        while True:
            size_line = await reader.readuntil(b"\r\n")
            digits = size_line.split(b";", 1)[0].strip()
            if not _HEX.fullmatch(digits):
                return False  # not a chunk size: the connection is not kept
            size = int(digits, 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                    pass
                return True
            total += size
            if total > MAX_BODY:
                return False
            if (await reader.readexactly(size + 2))[-2:] != b"\r\n":
                return False
    length = headers.get("content-length")
    if length is None:
        return False  # delimited by the close: not kept
    n = int(length)
    if n > MAX_BODY:
        return False
    if n:
        await reader.readexactly(n)
    return True
