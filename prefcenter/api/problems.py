"""Every error leaves as ``application/problem+json`` (RFC 9457); validation errors name the field."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from prefcenter.domain.model import FieldError, InvalidInput
from prefcenter.services.errors import ServiceError
from prefcenter.store.base import StoreUnavailable

log = structlog.get_logger("prefcenter.api")

PROBLEM = "application/problem+json"
RETRY_AFTER_SECONDS = 30
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


class Problem(msgspec.Struct, frozen=True, omit_defaults=True):
    """An error, as RFC 9457 problem details (``application/problem+json``). A validation error lists
    each invalid field in ``errors`` (``field`` is a dotted path such as ``contacts.email``; ``""`` is
    the body as a whole)."""

    type: Annotated[str, msgspec.Meta(examples=["about:blank"])]
    title: Annotated[str, msgspec.Meta(examples=["Bad request"])]
    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    detail: str
    errors: list[FieldError] = []


#: What each error status means, as the OpenAPI document describes it.
ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad input (malformed id, body, query or field); `errors` names each invalid field.",
    401: "Missing or unknown API key.",
    403: "The key's role may not do this.",
    404: "No such resource.",
    409: "Conflicts with the current state.",
    412: "`If-Match` does not match the current ETag; nothing was changed.",
    413: "The body (or its list of ids) is too large.",
    415: "The body is not `application/json`.",
    503: "Not ready, or the database cannot be written right now; nothing was changed (see `Retry-After`).",
}


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """The ``responses=`` of a route decorator: each error status the operation can answer, each an
    ``application/problem+json`` :class:`Problem`. (A 400 here also replaces litestar's default
    ``{status_code, detail, extra}`` validation response, which prefcenter never sends.)"""
    return {
        status: ResponseSpec(
            data_container=Problem,
            generate_examples=False,
            description=ERROR_DESCRIPTIONS[status],
            media_type=PROBLEM,
        )
        for status in sorted(set(statuses))
    }


#: The errors of every operation with a role: no key (401), the wrong role (403).
AUTH_ERRORS = (401, 403)
#: The errors of every operation with a JSON body: bad (400), too large (413), not JSON (415).
BODY_ERRORS = (400, 413, 415)


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
        errors.append({"field": key, "message": message})
    return errors


def on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    found = _field_errors(exc.extra)
    if any(e["field"] == "" and e["message"] == "'data'" for e in found):
        # litestar's words for a body that is not there (its parameter is called ``data``)
        return missing_body()
    detail = (
        exc.detail if not exc.detail.startswith("Validation failed") else "The request has invalid fields."
    )
    return problem(400, detail, errors=found) if found else problem(400, exc.detail)


def missing_body() -> Response[Any]:
    return problem(
        400,
        "The request body is missing: send a JSON object with 'Content-Type: application/json'.",
        errors=[{"field": "", "message": "a JSON body is required"}],
    )


def _json_media_type(request: Request[Any, Any, Any]) -> str | None:
    """Why the Content-Type is not JSON (None when it is ``application/json``, with any parameters
    and a UTF-8 charset if one is named)."""
    header = request.headers.get("content-type")
    if header is None:
        return "no Content-Type"
    media_type, _, params = header.partition(";")
    if media_type.strip().lower() != "application/json":
        return f"Content-Type {media_type.strip()[:100]!r}"
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return "a charset other than UTF-8"
    return None


_AT_PATH = re.compile(r" - at `\$\.?(.*)`$")


def _strictly(body: bytes, request: Request[Any, Any, Any]) -> None:
    """Decode ``body`` as the handler's ``data`` type with msgspec's ``strict=True``, as the OpenAPI
    document describes it. litestar converts bodies with ``strict=False``, which would take ``0`` for
    ``false``, ``"5"`` for ``5`` and a number of seconds for a date-time; here that is a 400 naming the
    field, as litestar names it. Malformed JSON is left to litestar (the same 400 as ever)."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    if data is None:
        return
    try:
        try:
            msgspec.json.decode(body, type=data.annotation, strict=True)
        except msgspec.ValidationError:
            # JSON Schema's "integer" includes 19.0 (as litestar's conversion does): try again with
            # integral numbers as integers; any other mismatch fails again, and is reported.
            msgspec.convert(_integral(msgspec.json.decode(body)), type=data.annotation, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        at = _AT_PATH.search(message)
        key = at.group(1) if at else ""
        raise ValidationException(
            detail="Validation failed",
            extra=[{"message": message[: at.start()] if at else message, "key": key, "source": "body"}],
        ) from None
    except msgspec.DecodeError:
        return


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value


async def _check_json(request: Request[Any, Any, Any], *, required: bool) -> Response[Any] | None:
    body = await request.body()  # bounded by the app's request_max_body_size (413 beyond it)
    if not body.strip():
        return missing_body() if required else None
    why = _json_media_type(request)
    if why is not None:
        return problem(
            415,
            f"The body must be JSON sent as 'Content-Type: application/json' (UTF-8); got {why}.",
        )
    _strictly(body, request)
    return None


async def json_body(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``before_request`` of an operation with a required JSON body: a missing body is a 400 that says
    so, a body of another media type a 415; both before litestar decodes anything."""
    return await _check_json(request, required=True)


async def optional_json_body(request: Request[Any, Any, Any]) -> Response[Any] | None:
    """``before_request`` of an operation whose JSON body may be left out: no body is fine, a body of
    another media type is a 415."""
    return await _check_json(request, required=False)


def on_invalid_input(request: Request[Any, Any, Any], exc: InvalidInput) -> Response[Any]:
    return problem(400, exc.detail, errors=[{"field": e.field, "message": e.message} for e in exc.errors])


def on_service_error(request: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return problem(exc.status, exc.detail)


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    headers = dict(exc.headers or {})
    return problem(exc.status_code, exc.detail, headers=headers or None)


def on_store_unavailable(request: Request[Any, Any, Any], exc: StoreUnavailable) -> Response[Any]:
    """Disk full or an I/O error: nothing was written, and the same request may succeed later."""
    return problem(
        503,
        "The database cannot be written right now (disk full or I/O error); nothing was changed. "
        "Try again later.",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def on_too_deep(request: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    """msgspec stops decoding JSON nested deeper than the interpreter's recursion limit (10,000-deep
    arrays as a body or as evidence): bad input, not a server fault."""
    return problem(
        400, "The JSON body is nested too deeply.", errors=[{"field": "", "message": "nested too deeply"}]
    )


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("unhandled error", exc_info=exc)
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "An internal error occurred; it has been logged.")


EXCEPTION_HANDLERS: dict[Any, Any] = {
    ValidationException: on_validation,
    InvalidInput: on_invalid_input,
    ServiceError: on_service_error,
    HTTPException: on_http_exception,
    RecursionError: on_too_deep,
    StoreUnavailable: on_store_unavailable,
    Exception: on_unexpected,
}
