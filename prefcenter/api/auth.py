"""Bearer API keys and role checks, exactly as API.md's role table gives them.

Missing or unknown key: 401. Known key, wrong role: 403. A handler declares its roles once with
:func:`access`; the same declaration drives the check (:func:`role_check`, an ASGI middleware that
runs after routing) and the OpenAPI documentation. The check is a middleware rather than a litestar
guard because litestar copies the route handler for every guard call, on every request.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from prefcenter.api.problems import PROBLEM, problem_body
from prefcenter.domain.model import Role
from prefcenter.services.keys import KeyCache
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import ApiKey

ROLES_OPT = "roles"
ALL: tuple[Role, ...] = ("admin", "marketing", "auditor")
WRITE: tuple[Role, ...] = ("admin", "marketing")
READ_AUDIT: tuple[Role, ...] = ("admin", "auditor")


def access(*roles: Role) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the roles (checked by :func:`role_check`) and the
    OpenAPI security requirement."""
    return {"opt": {ROLES_OPT: roles}, "security": [{"bearer": []}]}


async def _refuse(send: Send, status: int, detail: str, challenge: str | None) -> None:
    body = msgspec.json.encode(problem_body(status, detail))
    headers: list[tuple[bytes, bytes]] = [
        (b"content-type", PROBLEM.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(end)


def role_check(app: ASGIApp) -> ASGIApp:
    """401 without a valid key, 403 with the wrong role, for every handler declared with access()."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope.get("route_handler")
        roles: tuple[str, ...] | None = handler.opt.get(ROLES_OPT) if handler is not None else None
        if not roles:
            await app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"authorization"), b"").decode("latin-1")
        scheme, _, presented = header.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented:
            await _refuse(
                send, 401, "Send an API key as 'Authorization: Bearer <key>'.", 'Bearer realm="prefcenter"'
            )
            return
        state = scope["app"].state
        rt: Runtime = state.runtime
        cache: KeyCache = state.key_cache
        key = await cache.authenticate(rt, presented)
        if key is None:
            await _refuse(send, 401, "Unknown or revoked API key.", 'Bearer error="invalid_token"')
            return
        if key.role not in roles:
            await _refuse(send, 403, f"A {key.role} key may not do this (needs: {', '.join(roles)}).", None)
            return
        scope.setdefault("state", {})["api_key"] = key
        await app(scope, receive, send)

    return middleware


def current_key(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKey:
    key: ApiKey = connection.scope["state"]["api_key"]
    return key
