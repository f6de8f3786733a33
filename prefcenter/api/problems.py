"""Every error leaves as ``application/problem+json`` (RFC 9457); validation errors name the field."""

from __future__ import annotations

import re
from typing import Any

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from prefcenter.domain.model import InvalidInput
from prefcenter.services.errors import ServiceError

log = structlog.get_logger("prefcenter.api")

PROBLEM = "application/problem+json"
_NAMED_FIELD = re.compile(r"(?:missing required field|unknown field) `([^`]+)`")
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    412: "Precondition failed",
    413: "Payload too large",
    415: "Unsupported media type",
    428: "Precondition required",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


def problem_body(status: int, detail: str, **extra: Any) -> dict[str, Any]:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    body.update(extra)
    return body


def problem(
    status: int, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> Response[Any]:
    return Response(
        problem_body(status, detail, **extra), status_code=status, media_type=PROBLEM, headers=headers
    )


def _field_errors(extra: Any) -> list[dict[str, str]]:
    errors = []
    for item in extra if isinstance(extra, list) else []:
        if not isinstance(item, dict):
            continue
        message = str(item.get("message", "invalid"))
        key = str(item.get("key") or "")
        if key == "data":
            key = ""
        named = _NAMED_FIELD.search(message)
        if named:
            key = f"{key}.{named.group(1)}" if key else named.group(1)
        source = item.get("source")
        if source in ("query", "path", "header", "cookie") and key:
            key = f"{source}:{key}"
        errors.append({"field": key, "message": message})
    return errors


def on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    errors = _field_errors(exc.extra)
    detail = (
        exc.detail if not exc.detail.startswith("Validation failed") else "The request has invalid fields."
    )
    return problem(400, detail, errors=errors) if errors else problem(400, exc.detail)


def on_invalid_input(request: Request[Any, Any, Any], exc: InvalidInput) -> Response[Any]:
    return problem(400, exc.detail, errors=[{"field": e.field, "message": e.message} for e in exc.errors])


def on_service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return problem(exc.status, exc.detail)


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    headers = dict(exc.headers or {})
    return problem(exc.status_code, exc.detail, headers=headers or None)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "An internal error occurred; it has been logged.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: on_validation,
    InvalidInput: on_invalid_input,
    ServiceError: on_service_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
