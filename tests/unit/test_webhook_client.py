"""The deliverer's HTTP/1.1 client against a real socket server on 127.0.0.1 answering scripted bytes:
keep-alive, chunked and close-delimited bodies, 1xx, a kept connection the server closed, malformed
answers and the deadline."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from prefcenter.services.webhook_client import HttpError, HttpTimeout, WebhookClient


class Scripted:
    """Answers each request (read whole by Content-Length) with the next scripted bytes; ``b""`` closes
    without answering; ``None`` never answers."""

    def __init__(self, answers: list[bytes | None]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length")
                )
                self.requests.append(head + await reader.readexactly(length))
                answer = self.answers.pop(0)
                if answer is None:
                    await asyncio.sleep(5)
                    return
                if not answer:
                    return
                writer.write(answer)
                await writer.drain()
                if b"connection: close" in answer.lower():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/in?x=1"


@pytest.fixture
async def scripted() -> AsyncIterator[Scripted]:
    s = Scripted([])
    s.server = await asyncio.start_server(s.serve, "127.0.0.1", 0)
    try:
        yield s
    finally:
        s.server.close()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


async def test_keep_alive_chunked_1xx_and_close(scripted: Scripted) -> None:
    scripted.answers = [
        OK,
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 503 X\r\ntransfer-encoding: chunked\r\nretry-after: 7\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        b"HTTP/1.1 201 X\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        OK,
    ]
    client = WebhookClient(timeout=2)
    try:
        assert (await client.post(scripted.url, b"{}", {"webhook-id": "a"}))[0] == 200
        assert (await client.post(scripted.url, b"{}", {}))[0] == 204
        status, headers = await client.post(scripted.url, b"{}", {})
        assert status == 503 and headers["retry-after"] == "7"
        assert scripted.connections == 1  # kept alive through all three
        assert (await client.post(scripted.url, b"{}", {}))[0] == 201
        assert (await client.post(scripted.url, b"[1]", {}))[0] == 200
        assert scripted.connections == 2  # the close was honoured
    finally:
        await client.aclose()
    first = scripted.requests[0]
    assert first.startswith(b"POST /in?x=1 HTTP/1.1\r\n") and b"\r\nwebhook-id: a\r\n" in first
    assert first.endswith(b"\r\n\r\n{}") and b"content-type: application/json" in first
    assert scripted.requests[-1].endswith(b"[1]")


async def test_a_kept_connection_closed_by_the_server_is_retried_once_on_a_new_one(
    scripted: Scripted,
) -> None:
    scripted.answers = [OK, b"", OK]  # the second request's connection closes unanswered
    client = WebhookClient(timeout=2)
    try:
        assert (await client.post(scripted.url, b"{}", {}))[0] == 200
        assert (await client.post(scripted.url, b"{}", {}))[0] == 200
        assert scripted.connections == 2
        scripted.answers = [b""]
        with pytest.raises(HttpError):  # a new connection closing unanswered is an error, not retried
            await client.post(scripted.url, b"{}", {})
    finally:
        await client.aclose()


async def test_malformed_refused_and_slow(scripted: Scripted) -> None:
    client = WebhookClient(timeout=0.3)
    try:
        scripted.answers = [b"SMTP 220 hello\r\n\r\n"]
        with pytest.raises(HttpError):
            await client.post(scripted.url, b"{}", {})
        scripted.answers = [None]
        with pytest.raises(HttpTimeout):
            await client.post(scripted.url, b"{}", {})
        with pytest.raises(HttpError):
            await client.post("http://127.0.0.1:9/nobody", b"{}", {})
    finally:
        await client.aclose()


async def test_a_204_without_length_keeps_the_connection(scripted: Scripted) -> None:
    """204/304 have no body (RFC 9112 6.3): without Content-Length it is not close-delimited (review C1)."""
    scripted.answers = [b"HTTP/1.1 204 No Content\r\n\r\n", OK]
    client = WebhookClient(timeout=2)
    try:
        assert (await client.post(scripted.url, b"{}", {}))[0] == 204
        assert (await client.post(scripted.url, b"{}", {}))[0] == 200
        assert scripted.connections == 1
    finally:
        await client.aclose()


async def test_a_bad_chunk_size_is_not_kept(scripted: Scripted) -> None:
    """A negative or prefixed chunk size is not a chunk size: answered, but the connection is dropped."""
    scripted.answers = [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-5\r\n", OK]
    client = WebhookClient(timeout=2)
    try:
        assert (await client.post(scripted.url, b"{}", {}))[0] == 200
        assert (await client.post(scripted.url, b"{}", {}))[0] == 200
        assert scripted.connections == 2
    finally:
        await client.aclose()
