"""The customer pages: ``/p/{token}`` (preferences), ``/u/{token}`` (unsubscribe), their forms, and the
stylesheet. HTML rendered with Jinja2 (autoescape on), usable without JavaScript.

**Links.** A token opens exactly one customer's pages (see ``services/links.py``). A bad, tampered or
foreign token, or one whose customer is gone, gets a 4xx page that says what to do; an expired manage or
unsubscribe link whose signature is valid offers one button that emails a fresh manage link to the
address on file. A link of an erased customer does not open a new customer with the same id (the link
generation in its claims differs): it is treated exactly like a link whose customer is gone. GET never
changes anything (link scanners prefetch); HEAD of ``/p/{token}`` or ``/u/{token}`` answers exactly as
GET (status, headers, cookies) without the body.

**Manage access from an unsubscribe link.** An unsubscribe link lives 400 days, a manage link 30, so an
unsubscribe page never grants more than the 30 days: ``GET /u/{token}`` holds no manage link at all; it
offers "Email me a link to my preferences" (``POST /u/{token}/renew``, CSRF-protected and throttled like
the expired-link button), which mails a fresh manage link to the address on file (not offered without
one). The one-click confirmation links to the preference page only with a manage link that ends when one
minted with the unsubscribe link would (issued at the unsubscribe link's issue time); later it offers the
same email button instead (when the browser has the CSRF cookie: a one-click POST never gets one set).

**CSRF.** Every form on these pages except the RFC 8058 one-click carries a field bound to the browser's
CSRF cookie and the link (``web/csrf.py``); a POST without the cookie or with a field that does not
match is refused (403) and changes nothing.

**One-click.** ``POST /u/{token}`` needs no cookie and no CSRF field: the signed URL is the authority
(RFC 8058 §3-4; anyone holding the URL could POST it anyway). Its body must be exactly
``List-Unsubscribe=One-Click``, urlencoded or multipart, else 400 and no change; it answers 200 with a
confirmation page (no redirect). The page's own Unsubscribe button posts that same body.

Every response of these pages carries ``Referrer-Policy: no-referrer``, ``Cache-Control: no-store``,
``X-Robots-Tag: noindex`` and a Content-Security-Policy that allows no script at all and
``frame-ancestors 'none'``. Nothing here logs a token or a customer id (only the pseudonym).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from litestar import Controller, Request, Response, post, route
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.enums import HttpMethod, MediaType
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import FromPath, FromQuery
from litestar.response.base import ASGIResponse
from litestar.static_files import create_static_files_router
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_303_SEE_OTHER,
    HTTP_400_BAD_REQUEST,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_410_GONE,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ControllerRouterHandler

from prefcenter.domain.model import Customer
from prefcenter.domain.tokens import LinkClaims, Purpose, is_expired
from prefcenter.services import links
from prefcenter.services.link_mailer import LinkMailer, RenewOutcome
from prefcenter.services.runtime import Runtime
from prefcenter.services.self_service import (
    Client,
    LinkProblem,
    one_click_unsubscribe,
    open_link,
    save_choices,
    stop_all_marketing,
)
from prefcenter.web.csrf import browser_secret, csrf_ok, csrf_token, existing_browser_secret
from prefcenter.web.forms import PageForm, form_from_fields
from prefcenter.web.i18n import Catalogue, choose_language
from prefcenter.web.notice import page_notice
from prefcenter.web.views import mask_email, page_model, topic_name

log = structlog.get_logger("prefcenter.web")

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
PAGE_BODY_LIMIT = 64 * 1024
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
}
RESULTS = frozenset({"saved", "unchanged", "stopped"})

_env = Environment(
    loader=FileSystemLoader(TEMPLATES_DIR),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


# ---------------------------------------------------------------------------------------------------
# rendering


class PageResponse(Response[str]):
    """A page. To a ``HEAD`` request it answers exactly as to ``GET`` (status, headers, cookies, the
    ``Content-Length`` of the page) but sends no body (RFC 9110 §9.3.2)."""

    def to_asgi_response(self, app: Any, request: Request[Any, Any, Any], **kwargs: Any) -> ASGIResponse:
        response = super().to_asgi_response(app, request, **kwargs)
        if request.method == HttpMethod.HEAD:
            response.is_head_response = True  # headers as built for the body; the body is not sent
        return response


# GET and HEAD: a HEAD runs the GET handler (which changes nothing) and PageResponse drops the body.
GET_OR_HEAD = [HttpMethod.GET, HttpMethod.HEAD]


def _catalogue(request: Request[Any, Any, Any], customer: Customer | None) -> Catalogue:
    locale = customer.profile.locale if customer is not None else None
    return Catalogue(choose_language(locale, request.headers.get("accept-language")))


def _client(request: Request[Any, Any, Any]) -> Client:
    return Client(
        user_agent=request.headers.get("user-agent", ""),
        ip=request.client.host if request.client else None,
    )


def render(
    rt: Runtime,
    t: Catalogue,
    template: str,
    *,
    title: str,
    status: int = HTTP_200_OK,
    cookies: list[Cookie] | None = None,
    **context: Any,
) -> Response[str]:
    html = _env.get_template(template).render(
        t=t,
        lang=t.lang,
        dir=t.dir,
        title=title,
        notice_version=page_notice(rt.settings).version,
        controller=rt.settings.controller,
        **context,
    )
    return PageResponse(
        html, status_code=status, media_type=MediaType.HTML, headers=PAGE_HEADERS, cookies=cookies or []
    )


def message_page(
    rt: Runtime,
    t: Catalogue,
    key: str,
    status: int,
    *,
    paragraphs: list[str] | None = None,
    alert: bool = True,
    **context: Any,
) -> Response[str]:
    """A page with a title and some text (errors, outcomes); ``key`` names ``<key>.title``/``.text``."""
    context.setdefault("renew_action", None)
    context.setdefault("reload_path", None)
    context.setdefault("csrf", "")
    return render(
        rt,
        t,
        "message.html",
        title=t(f"{key}.title"),
        status=status,
        paragraphs=paragraphs if paragraphs is not None else [t(f"{key}.text")],
        alert=alert,
        **context,
    )


def redirect(path: str) -> Response[str]:
    return PageResponse("", status_code=HTTP_303_SEE_OTHER, headers={**PAGE_HEADERS, "Location": path})


# ---------------------------------------------------------------------------------------------------
# forms


async def form_fields(request: Request[Any, Any, Any]) -> dict[str, list[str]]:
    form = await request.form()
    return {key: [v for v in form.getall(key) if isinstance(v, str)] for key in form}


# ---------------------------------------------------------------------------------------------------
# link problems


def link_problem_page(
    request: Request[Any, Any, Any], rt: Runtime, problem: LinkProblem, token: str, purpose: Purpose
) -> Response[str]:
    t = _catalogue(request, problem.customer)
    if problem.kind == "invalid":
        return message_page(rt, t, "invalid", HTTP_400_BAD_REQUEST)
    if problem.kind == "unknown" or problem.customer is None:
        return message_page(rt, t, "unknown", HTTP_404_NOT_FOUND)
    # Expired, signature valid: offer to email a fresh manage link to the address on file.
    text = t("expired.text") if purpose == "manage" else t("expired.unsubscribe_text")
    if problem.customer.profile.contacts.email is None:
        return message_page(rt, t, "expired", HTTP_410_GONE, paragraphs=[text, t("expired.no_email")])
    secret, cookies = browser_secret(rt, request)
    prefix = "p" if purpose == "manage" else "u"
    return message_page(
        rt,
        t,
        "expired",
        HTTP_410_GONE,
        paragraphs=[text],
        renew_action=f"/{prefix}/{token}/renew",
        csrf=csrf_token(rt, secret, token),
        cookies=cookies,
    )


def csrf_page(rt: Runtime, t: Catalogue, reload_path: str) -> Response[str]:
    return message_page(rt, t, "csrf", HTTP_403_FORBIDDEN, reload_path=reload_path)


def _mailer(request: Request[Any, Any, Any], rt: Runtime) -> LinkMailer:
    state = request.app.state
    mailer: LinkMailer | None = getattr(state, "link_mailer", None)
    if mailer is None:
        mailer = LinkMailer(rt.settings)
        state.link_mailer = mailer
    return mailer


_RENEW_STATUS: dict[RenewOutcome, int] = {
    "sent": HTTP_200_OK,
    "no_email": HTTP_200_OK,
    "throttled": HTTP_429_TOO_MANY_REQUESTS,
    "failed": HTTP_503_SERVICE_UNAVAILABLE,
}


async def renew(request: Request[Any, Any, Any], rt: Runtime, token: str, purpose: Purpose) -> Response[str]:
    """The expired-link page's button, and the unsubscribe page's "Email me a link to my preferences":
    email a fresh manage link to the address on file (CSRF-protected, throttled per customer)."""
    try:
        customer, _ = await open_link(rt, token, purpose, allow_expired=True)
    except LinkProblem as problem:
        return link_problem_page(request, rt, problem, token, purpose)
    t = _catalogue(request, customer)
    fields = await form_fields(request)
    if not csrf_ok(rt, request, token, fields):
        return csrf_page(rt, t, f"/{'p' if purpose == 'manage' else 'u'}/{token}")
    controller = rt.settings.controller
    sender = (
        t("site.controller", name=controller.name, address=controller.postal_address)
        if controller.postal_address
        else t("site.controller_name", name=controller.name)
    )
    outcome, address = await _mailer(request, rt).send_fresh_link(
        rt, customer, t("mail.subject"), f"{t('mail.body')}\n\n--\n{sender}\n"
    )
    key = f"renew.{outcome}"
    text = t(f"{key}.text", address=mask_email(address)) if address else t(f"{key}.text")
    return message_page(
        rt, t, key, _RENEW_STATUS[outcome], paragraphs=[text], alert=outcome in ("failed", "throttled")
    )


async def _topic_name(rt: Runtime, topic_id: str | None, lang: str) -> str | None:
    if topic_id is None:
        return None
    return topic_name(await rt.store.get_topic(topic_id), topic_id, lang)


def _renew_form(
    request: Request[Any, Any, Any], rt: Runtime, customer: Customer, token: str, *, set_cookie: bool
) -> tuple[str | None, str, list[Cookie]]:
    """``(action, csrf field, cookies to set)`` of the "Email me a link to my preferences" form of an
    unsubscribe page; no form (``None``) without an email address on file, or, with ``set_cookie``
    false, when the browser sent no CSRF cookie."""
    if customer.profile.contacts.email is None:
        return None, "", []
    if set_cookie:
        secret, cookies = browser_secret(rt, request)
    else:
        existing, cookies = existing_browser_secret(rt, request), []
        if existing is None:
            return None, "", []
        secret = existing
    return f"/u/{token}/renew", csrf_token(rt, secret, token), cookies


def _bounded_manage_path(rt: Runtime, customer: Customer, claims: LinkClaims) -> str | None:
    """A manage link for the one-click confirmation that grants no more than a manage link minted with
    the unsubscribe link would: issued at the unsubscribe link's issue time, so it ends 30 days after
    that; None once that is over. A path on this host (works whatever the public URL is)."""
    if is_expired(claims, "manage", rt.now()):
        return None
    token = links.mint_token(
        rt, customer.customer_ref, "manage", gen=customer.link_gen, issued_at=claims.issued_at
    )
    return f"/p/{token}"


async def is_one_click_body(request: Request[Any, Any, Any]) -> bool:
    """RFC 8058: exactly ``List-Unsubscribe=One-Click``, urlencoded or as the one multipart field."""
    content_type, _ = request.content_type
    if content_type == "application/x-www-form-urlencoded":
        return await request.body() == ONE_CLICK_BODY
    if content_type == "multipart/form-data":
        form = await request.form()
        items = list(form.multi_items())
        return len(items) == 1 and items[0][0] == "List-Unsubscribe" and items[0][1] == "One-Click"
    return False


_FIELD_ANCHORS = {
    "channel": "channel-none",
    "quiet": "quiet-start",
    "max_per_week": "max-per-week",
    "paused_until": "paused-until",
}


async def form_with_errors(
    request: Request[Any, Any, Any],
    rt: Runtime,
    t: Catalogue,
    token: str,
    customer: Customer,
    form: PageForm,
    errors: dict[str, str],
) -> Response[str]:
    """The submitted form again, with each error next to its field and a summary on top (400)."""
    secret, cookies = browser_secret(rt, request)
    model = page_model(customer, await rt.store.list_topics(), t.lang, rt.now(), form=form)
    first_topic = f"topic-{model.marketing[0].id}" if model.marketing else "topics-hint"
    return render(
        rt,
        t,
        "preferences.html",
        title=t("prefs.title"),
        status=HTTP_400_BAD_REQUEST,
        cookies=cookies,
        model=model,
        form=form,
        token=token,
        csrf=csrf_token(rt, secret, token),
        errors=errors,
        anchors={**_FIELD_ANCHORS, "topics": first_topic},
        result=None,
    )


# ---------------------------------------------------------------------------------------------------
# exception handlers: these pages answer HTML, never problem+json


def _error_page(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    # An exception handler gets no dependencies (litestar calls it with the request and the exception
    # only), so this is the one place the pages read the runtime from the app state.
    rt: Runtime = request.app.state.runtime
    t = _catalogue(request, None)
    status = exc.status_code if isinstance(exc, HTTPException) else HTTP_500_INTERNAL_SERVER_ERROR
    if status >= 500:
        log.error("page error", exc_info=exc, route=request.scope.get("path_template", "unknown"))
        return message_page(rt, t, "server_error", status)
    return message_page(rt, t, "bad_request", status)


# ---------------------------------------------------------------------------------------------------
# the pages


class PageController(Controller):
    """The customer's own pages, reached by a signed link; no API key, no login."""

    path = "/"
    include_in_schema = False
    request_max_body_size = PAGE_BODY_LIMIT
    # Every layer's handlers are merged and the most specific class wins: name the ones the app maps to
    # problem+json, so these pages always answer HTML.
    exception_handlers = {
        ValidationException: _error_page,
        HTTPException: _error_page,
        Exception: _error_page,
    }

    @route("/p/{token:str}", http_method=GET_OR_HEAD, name="preference-page")
    async def preference_page(
        self,
        request: Request[Any, Any, Any],
        rt: NamedDependency[Runtime],
        token: FromPath[str],
        result: FromQuery[str | None] = None,
    ) -> Response[str]:
        """The preference page, showing the current preferences."""
        try:
            customer, _ = await open_link(rt, token, "manage")
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "manage")
        t = _catalogue(request, customer)
        secret, cookies = browser_secret(rt, request)
        model = page_model(customer, await rt.store.list_topics(), t.lang, rt.now())
        return render(
            rt,
            t,
            "preferences.html",
            title=t("prefs.title"),
            cookies=cookies,
            model=model,
            form=model.form,
            token=token,
            csrf=csrf_token(rt, secret, token),
            errors={},
            anchors={},
            result=result if result in RESULTS else None,
        )

    @post("/p/{token:str}", name="preference-save", status_code=HTTP_200_OK)
    async def save_preferences(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """Save the form (``action=save``) or stop all marketing (``action=stop_all``); then redirect
        to the page (303) with the outcome; a form with errors is shown again with them (400)."""
        try:
            customer, claims = await open_link(rt, token, "manage")
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "manage")
        t = _catalogue(request, customer)
        fields = await form_fields(request)
        if not csrf_ok(rt, request, token, fields):
            return csrf_page(rt, t, f"/p/{token}")
        client = _client(request)
        shown = page_notice(rt.settings).shown(t.lang)  # the words this page showed, in its language
        try:
            if (fields.get("action") or [""])[0] == "stop_all":
                await stop_all_marketing(rt, customer.customer_id, client, claims, notice=shown)
                return redirect(f"/p/{token}?result=stopped")
            form = form_from_fields(fields)
            outcome = await save_choices(rt, customer.customer_id, form, client, claims, notice=shown)
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "manage")
        if outcome.errors:
            return await form_with_errors(
                request, rt, t, token, outcome.customer or customer, form, outcome.errors
            )
        return redirect(f"/p/{token}?result={'saved' if outcome.events else 'unchanged'}")

    @post("/p/{token:str}/renew", name="preference-renew", status_code=HTTP_200_OK)
    async def renew_manage_link(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """Email a fresh manage link to the customer's address on file (expired manage link)."""
        return await renew(request, rt, token, "manage")

    @route("/u/{token:str}", http_method=GET_OR_HEAD, name="unsubscribe-page")
    async def unsubscribe_page(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """A page with one Unsubscribe button; a GET alone changes nothing. It holds no manage link (an
        unsubscribe link outlives one): "Email me a link to my preferences" mails one instead."""
        try:
            customer, claims = await open_link(rt, token, "unsubscribe")
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "unsubscribe")
        t = _catalogue(request, customer)
        renew_action, csrf, cookies = _renew_form(request, rt, customer, token, set_cookie=True)
        return render(
            rt,
            t,
            "unsubscribe.html",
            title=t("unsub.title"),
            cookies=cookies,
            token=token,
            topic=await _topic_name(rt, claims.topic, t.lang),
            renew_action=renew_action,
            csrf=csrf,
        )

    @post("/u/{token:str}", name="one-click-unsubscribe", status_code=HTTP_200_OK)
    async def one_click(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """RFC 8058 one-click unsubscribe: body exactly ``List-Unsubscribe=One-Click``; 200, no redirect."""
        try:
            customer, claims = await open_link(rt, token, "unsubscribe")
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "unsubscribe")
        t = _catalogue(request, customer)
        if not await is_one_click_body(request):
            return message_page(rt, t, "bad_request", HTTP_400_BAD_REQUEST)
        try:
            shown = page_notice(rt.settings).shown(t.lang)
            await one_click_unsubscribe(rt, customer.customer_id, claims, _client(request), notice=shown)
        except LinkProblem as problem:
            return link_problem_page(request, rt, problem, token, "unsubscribe")
        manage_path = _bounded_manage_path(rt, customer, claims)
        renew_action, csrf, _ = (
            (None, "", []) if manage_path else _renew_form(request, rt, customer, token, set_cookie=False)
        )
        return render(
            rt,
            t,
            "unsubscribed.html",
            title=t("done.title"),
            topic=await _topic_name(rt, claims.topic, t.lang),
            manage_path=manage_path,
            renew_action=renew_action,
            csrf=csrf,
        )

    @post("/u/{token:str}/renew", name="unsubscribe-renew", status_code=HTTP_200_OK)
    async def renew_from_unsubscribe(
        self, request: Request[Any, Any, Any], rt: NamedDependency[Runtime], token: FromPath[str]
    ) -> Response[str]:
        """Email a fresh manage link to the customer's address on file: the unsubscribe page's "Email me
        a link to my preferences", and the expired unsubscribe link's button."""
        return await renew(request, rt, token, "unsubscribe")


STATIC_FILES = create_static_files_router(
    path="/static",
    directories=[STATIC_DIR],
    name="page-static",
    include_in_schema=False,
    send_as_attachment=False,
)
PAGE_HANDLERS: list[ControllerRouterHandler] = [PageController, STATIC_FILES]
