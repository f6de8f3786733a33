"""``/v1/inbound/*`` (SMS keywords, email bounces and complaints) and ``/v1/suppressions``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from prefcenter.api.auth import READ_AUDIT, WRITE, access, current_key
from prefcenter.api.lists import After, Limit
from prefcenter.api.openapi import created
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.services import inbound, lists, suppressions
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime


@post(
    "/v1/inbound/sms",
    operation_id="inboundSms",
    status_code=HTTP_200_OK,
    tags=["inbound"],
    before_request=json_body,
    responses=errors(*AUTH_ERRORS, *BODY_ERRORS, 503),
    **access(*WRITE),
)
async def inbound_sms(rt: NamedDependency[Runtime], data: JSONBody[inbound.InboundSms]) -> inbound.SmsAnswer:
    """An SMS reply. STOP (STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPT OUT; any word of the
    normalised text) suppresses SMS for that number, known or not, withdraws SMS marketing of every
    customer with it and suppresses voice marketing to it; START/UNSTOP (first word) lift those; HELP
    (first word) answers the help text; other text answers none and is kept for review, due in 10 US
    business days."""
    return await inbound.inbound_sms(rt, data)


@post(
    "/v1/inbound/email-events",
    operation_id="inboundEmailEvent",
    status_code=HTTP_200_OK,
    tags=["inbound"],
    before_request=json_body,
    responses=errors(*AUTH_ERRORS, *BODY_ERRORS, 503),
    **access(*WRITE),
)
async def inbound_email_event(
    rt: NamedDependency[Runtime], data: JSONBody[inbound.EmailEvent]
) -> inbound.EmailEventAnswer:
    """A permanent bounce suppresses the address; a complaint suppresses it and withdraws email marketing."""
    return await inbound.email_event(rt, data)


@get(
    "/v1/suppressions",
    operation_id="listSuppressions",
    tags=["suppressions"],
    responses=errors(400, *AUTH_ERRORS),
    **access(*READ_AUDIT),
)
async def list_suppressions(
    rt: NamedDependency[Runtime],
    request: Request[Any, Any, Any],
    channel: Annotated[str | None, QueryParameter(description="only this channel", required=False)] = None,
    limit: Limit = None,
    after: After = None,
) -> Response[suppressions.SuppressionList]:
    """Suppressed addresses (as keyed hashes), optionally of one channel, with their reason and scope
    (``marketing``: an address-level unsubscribe, marketing denied and transactional still sent).
    With ``limit`` (1-1000) a page in (channel, address_ref) order, the next one in a
    ``Link: <...>; rel="next"`` header (absent on the last page); without it, every one."""
    n = lists.parse_limit(limit, default=None)
    if n is None and after is None:
        return Response(suppressions.SuppressionList(await suppressions.list_suppressions(rt, channel)))
    items, nxt = await lists.suppressions_page(rt, channel, limit=n or lists.DEFAULT_LIMIT, after=after)
    link = lists.next_link(request.url.path, list(request.query_params.multi_items()), nxt)
    return Response(suppressions.SuppressionList(items), headers=link)


@put(
    "/v1/suppressions/{channel:str}/{address:str}",
    operation_id="putSuppression",
    tags=["suppressions"],
    responses={**created(dict[str, bool]), **errors(400, *AUTH_ERRORS, 503)},
    **access("admin"),
)
async def put_suppression(
    request: Request[Any, Any, Any],
    rt: NamedDependency[Runtime],
    channel: FromPath[str],
    address: FromPath[str],
) -> Response[dict[str, Any]]:
    """Suppress one address (201 when new, 200 when it already was); a ledger event with source admin."""
    added = await suppressions.admin_put(rt, channel, address, current_key(request).id)
    return Response({"suppressed": True}, status_code=HTTP_201_CREATED if added else HTTP_200_OK)


@delete(
    "/v1/suppressions/{channel:str}/{address:str}",
    operation_id="deleteSuppression",
    tags=["suppressions"],
    status_code=HTTP_204_NO_CONTENT,
    responses=errors(400, *AUTH_ERRORS, 404, 503),
    **access("admin"),
)
async def delete_suppression(
    request: Request[Any, Any, Any],
    rt: NamedDependency[Runtime],
    channel: FromPath[str],
    address: FromPath[str],
) -> None:
    """Lift one suppression (404 when the address is not suppressed); a ledger event with source admin."""
    if not await suppressions.admin_delete(rt, channel, address, current_key(request).id):
        raise NotFound("that address is not suppressed on that channel")


INBOUND_HANDLERS = [inbound_sms, inbound_email_event, list_suppressions, put_suppression, delete_suppression]
