"""The hot path of ``POST /v1/approvals``: a handler middleware that answers a well-formed call itself.

A single-id approval spends more of its time in litestar's per-request work (the ``before_request``
hook, dependency resolution, the body decoded twice: strictly by ``problems.json_body`` and then again
by litestar, the response object and its conversion to ASGI) than in the gate. This middleware sits
where that work starts, inside the app's own middleware (the request id and its log line, the metrics,
``Cache-Control: no-store`` and the role check have all run), and for a call whose ``Content-Type`` is
exactly ``application/json`` and whose body decodes strictly as an :class:`ApprovalRequest`, it calls
:func:`prefcenter.services.approvals.approve` and sends the encoded answer, the same bytes and headers
litestar sends for it (tests/api/test_approval_path.py compares them).

Everything else goes on to the litestar handler, with the body replayed, and is answered as it always
was: a missing, malformed, oversized or non-strict body, another media type (a charset parameter
included). A call that fails in ``approve`` (an unknown campaign, too many ids, the store unavailable)
goes to the handler too, which raises that same exception instead of deciding again, so the error
answer is the one the app's exception handlers give, and nothing is decided twice.
"""

from __future__ import annotations

import contextlib
from typing import Any, cast

import msgspec
from litestar.handlers import HTTPRouteHandler
from litestar.types import ASGIApp, HTTPRequestEvent, Receive, ReceiveMessage, Scope, Send

from prefcenter.services import approvals

#: Where the middleware leaves the exception ``approve`` raised, for the handler to raise.
FAILED = "prefcenter.approval_failed"
_JSON = b"application/json"
_decoder = msgspec.json.Decoder(approvals.ApprovalRequest, strict=True)
_encoder = msgspec.json.Encoder()


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == name), None)


async def _read_body(receive: Receive, limit: int) -> tuple[list[bytes], bool]:
    """The body's chunks as far as ``limit`` bytes, and whether all of it was read."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # a disconnect: the handler path sees it too
            return chunks, False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return chunks, True
        if size > limit:
            return chunks, False


def _replay(chunks: list[bytes], complete: bool, receive: Receive) -> Receive:
    """A ``receive`` that gives the chunks already read, then (when there is more) the rest."""
    given = False

    async def again() -> ReceiveMessage:
        nonlocal given
        if given:
            return await receive()
        given = True
        replayed: HTTPRequestEvent = {
            "type": "http.request",
            "body": b"".join(chunks),
            "more_body": not complete,
        }
        return replayed

    return again


def approval_path(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        # with no limit set (the app sets one) or no Content-Length, the handler reads the body
        limit = cast(HTTPRouteHandler, scope["route_handler"]).resolve_request_max_body_size() or 0
        length = _header(scope, b"content-length") or b""
        if _header(scope, b"content-type") != _JSON or not length.isdigit() or int(length) > limit:
            await app(scope, receive, send)
            return
        chunks, complete = await _read_body(receive, limit)
        request: approvals.ApprovalRequest | None = None
        if complete:
            with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
                request = _decoder.decode(b"".join(chunks))
        if request is None:
            await app(scope, _replay(chunks, complete, receive), send)
            return
        state: Any = scope["app"].state
        try:
            answer = await approvals.approve(state.runtime, state.gate_batcher, request)
        except Exception as exc:
            scope.setdefault("state", {})[FAILED] = exc
            await app(scope, _replay(chunks, complete, receive), send)
            return
        body = _encoder.encode(answer)
        headers = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    return middleware


def raise_failed(scope: Scope) -> None:
    """In the handler: raise what ``approve`` raised on the hot path, if it did."""
    failed = scope.get("state", {}).pop(FAILED, None)
    if failed is not None:
        raise failed
