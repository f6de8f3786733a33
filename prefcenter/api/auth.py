"""Bearer API keys and role guards, exactly as API.md's role table gives them.

Missing or unknown key: 401. Known key, wrong role: 403. A handler declares its roles once with
:func:`access`; the same declaration drives the guard and the OpenAPI documentation.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from prefcenter.domain.model import Role
from prefcenter.services.keys import KeyCache
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import ApiKey

ROLES_OPT = "roles"
ALL: tuple[Role, ...] = ("admin", "marketing", "auditor")
WRITE: tuple[Role, ...] = ("admin", "marketing")
READ_AUDIT: tuple[Role, ...] = ("admin", "auditor")


async def role_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    roles: tuple[str, ...] = handler.opt[ROLES_OPT]
    header = connection.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise NotAuthorizedException(
            "Send an API key as 'Authorization: Bearer <key>'.",
            headers={"WWW-Authenticate": 'Bearer realm="prefcenter"'},
        )
    rt: Runtime = connection.app.state.runtime
    cache: KeyCache = connection.app.state.key_cache
    key = await cache.authenticate(rt, presented.strip())
    if key is None:
        raise NotAuthorizedException(
            "Unknown or revoked API key.", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )
    if key.role not in roles:
        raise PermissionDeniedException(f"A {key.role} key may not do this (needs: {', '.join(roles)}).")
    connection.scope["state"]["api_key"] = key


def access(*roles: Role) -> dict[str, Any]:
    """Keyword arguments for a route decorator: the role guard, its opt and the OpenAPI security."""
    return {
        "guards": [role_guard],
        "opt": {ROLES_OPT: roles},
        "security": [{"bearer": []}],
    }


def current_key(connection: ASGIConnection[Any, Any, Any, Any]) -> ApiKey:
    key: ApiKey = connection.scope["state"]["api_key"]
    return key
