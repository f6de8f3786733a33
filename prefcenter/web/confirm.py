"""The double opt-in confirmation page (issue 13, item 5): ``GET /c/{token}`` shows one button and
changes nothing (link scanners prefetch); ``POST /c/{token}`` confirms the token's topic
(:func:`prefcenter.services.double_opt_in.confirm`) and answers 200 with a page saying so.

The POST needs no cookie and no CSRF field, and takes any body or none: the token, mailed to the
customer's address, is the proof (as for the RFC 8058 one-click, anyone holding the URL could POST it
anyway). The ledger records the user agent and a keyed hash of the IP address, never the address. A
second POST writes nothing ("already confirmed"); a token for a topic the customer no longer has shows a
page saying so and changes nothing. A bad token: 400; a customer who is gone: 404; an expired link
(30 days): 410, with what to do. Every response carries the pages' security headers
(``web/pages.py``); HEAD answers as GET without the body. Nothing here logs a token or a customer id.
"""

from __future__ import annotations

from typing import Any

import structlog
from litestar import Controller, Request, Response, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_400_BAD_REQUEST, HTTP_404_NOT_FOUND, HTTP_410_GONE
from litestar.types import ControllerRouterHandler

from prefcenter.services.double_opt_in import confirm
from prefcenter.services.runtime import Runtime
from prefcenter.services.self_service import LinkProblem, open_link
from prefcenter.web.notice import page_notice
from prefcenter.web.pages import (  # the pages' own language choice and client, shared
    GET_OR_HEAD,
    PAGE_BODY_LIMIT,
    PageController,
    _catalogue,
    _client,
    message_page,
    render,
)
from prefcenter.web.views import topic_name

log = structlog.get_logger("prefcenter.web")

_OUTCOME_KEYS = {"confirmed": "confirmed", "already": "confirm_already", "not_held": "confirm_gone"}


def _problem_page(request: Request[Any, Any, Any], rt: Runtime, problem: LinkProblem) -> Response[str]:
    t = _catalogue(request, problem.customer)
    if problem.kind == "invalid":
        return message_page(rt, t, "invalid", HTTP_400_BAD_REQUEST)
    if problem.kind == "unknown" or problem.customer is None:
        return message_page(rt, t, "unknown", HTTP_404_NOT_FOUND)
    return message_page(rt, t, "confirm_expired", HTTP_410_GONE)


async def _topic_name(rt: Runtime, topic_id: str, lang: str) -> str:
    return topic_name(await rt.store.get_topic(topic_id), topic_id, lang)


class ConfirmController(Controller):
    """The confirmation link of a double opt-in topic; no API key, no login, no cookie."""

    path = "/"
    include_in_schema = False
    request_max_body_size = PAGE_BODY_LIMIT
    exception_handlers = PageController.exception_handlers  # HTML pages, never problem+json

    @route("/c/{token:str}", http_method=GET_OR_HEAD, name="confirm-page")
    async def confirm_page(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """One Confirm button; a GET alone changes nothing."""
        try:
            customer, claims = await open_link(rt, token, "confirm")
        except LinkProblem as problem:
            return _problem_page(request, rt, problem)
        t = _catalogue(request, customer)
        assert claims.topic is not None
        topic = await _topic_name(rt, claims.topic, t.lang)
        if claims.topic not in customer.preferences.topics:
            return message_page(
                rt,
                t,
                "confirm_gone",
                HTTP_200_OK,
                paragraphs=[t("confirm_gone.text", topic=topic)],
                alert=False,
            )
        return render(rt, t, "confirm.html", title=t("confirm.title"), token=token, topic=topic)

    @post("/c/{token:str}", name="confirm", status_code=HTTP_200_OK)
    async def confirm(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """Confirm the topic (any body or none); 200 with a page saying what happened."""
        try:
            customer, _ = await open_link(rt, token, "confirm")
            t = _catalogue(request, customer)
            outcome, customer, claims = await confirm(
                rt, token, _client(request), notice=page_notice(rt.settings).shown(t.lang)
            )
        except LinkProblem as problem:
            return _problem_page(request, rt, problem)
        assert claims.topic is not None
        key = _OUTCOME_KEYS[outcome]
        topic = await _topic_name(rt, claims.topic, t.lang)
        return message_page(rt, t, key, HTTP_200_OK, paragraphs=[t(f"{key}.text", topic=topic)], alert=False)


CONFIRM_HANDLERS: list[ControllerRouterHandler] = [ConfirmController]
