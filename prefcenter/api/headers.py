"""``Cache-Control: no-store`` on every ``/v1`` response that does not set its own.

API responses carry personal data (profiles, contacts, preferences, consent events, decisions); no
shared or browser cache may keep them. The pages under ``/p/`` and ``/u/`` set the header themselves
(web/pages.py). An ASGI middleware rather than a litestar ``after_request`` hook: it also covers the
401/403 answers of the role check and the error responses.
"""

from __future__ import annotations

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE = (b"cache-control", b"no-store")


def no_store(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or not scope["path"].startswith("/v1"):
            await app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append(NO_STORE)
                    message["headers"] = headers
            await send(message)

        await app(scope, receive, send_wrapper)

    return middleware
