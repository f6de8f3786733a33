"""The one place the ASGI app is wired: :class:`PrefcenterPlugin` adds the controllers, errors, request
context, OpenAPI, lifespan, dependencies and state to a Litestar app config; :func:`create_app` builds the
app with it."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import structlog
from litestar import Litestar
from litestar.config.app import AppConfig
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins import InitPlugin
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from prefcenter.api.auth import ROLES_OPT, role_check
from prefcenter.api.campaigns import CampaignController, approve
from prefcenter.api.consent import ConsentController
from prefcenter.api.customers import CustomerController
from prefcenter.api.docs import BundledSwaggerUI
from prefcenter.api.headers import no_store
from prefcenter.api.imports import IMPORT_HANDLERS
from prefcenter.api.inbound import INBOUND_HANDLERS
from prefcenter.api.links import LinkController
from prefcenter.api.lists import HANDLERS as LIST_HANDLERS
from prefcenter.api.notices import NoticeController
from prefcenter.api.openapi import complete_document
from prefcenter.api.ops import healthz, metrics, readyz
from prefcenter.api.problems import EXCEPTION_HANDLERS
from prefcenter.api.sends import send_campaign
from prefcenter.api.topics import TopicController
from prefcenter.api.webhooks import WebhookController
from prefcenter.services import refs_upgrade, retention
from prefcenter.services.approvals import GateBatcher
from prefcenter.services.dispatch import Dispatcher, default_transports
from prefcenter.services.keys import KeyCache
from prefcenter.services.notices import register_page_notice
from prefcenter.services.policies import load_active_policy
from prefcenter.services.runtime import Runtime
from prefcenter.services.webhooks import WebhookDeliverer
from prefcenter.web.confirm import CONFIRM_HANDLERS
from prefcenter.web.notice import page_notice
from prefcenter.web.pages import PAGE_HANDLERS

log = structlog.get_logger("prefcenter.http")


def _info_enabled() -> bool:
    """Whether the request line would be written, asked before the call: below the level a structlog
    call still builds its event and runs it into filter_by_level (about 5 us, a twentieth of a
    single-id approval). False exactly when that call would be dropped: the logger's chain (its own,
    which a cached logger keeps across a reconfiguration) starts with filter_by_level, as
    :func:`prefcenter.logging.configure_logging` sets it up, and its standard-library logger, at its
    level as it is now, is above INFO (filter_by_level's own test, word for word). Any other chain (a
    test's ``capture_logs``, structlog unconfigured) gets every call, as before. (``_processors`` and
    ``_logger`` are structlog's BoundLoggerBase attributes; constraints.txt pins the version.)"""
    bound: Any = log.bind()
    processors = bound._processors
    if not processors or processors[0] is not structlog.stdlib.filter_by_level:
        return True
    logger = bound._logger
    return not logger.disabled and logger.getEffectiveLevel() <= logging.INFO


MAX_BODY_BYTES = 4 * 1024 * 1024


def route_template(scope: Scope) -> str:
    """The matched route's path template (never the raw path: ids and tokens stay out of logs)."""
    handler = scope.get("route_handler")
    if handler is None:
        return "unmatched"
    template = scope.get("path_template")
    if isinstance(template, str):
        return template
    return next(iter(sorted(handler.paths)), "unknown")


_PROCESS_ID = uuid.uuid4().hex[:12]
_request_numbers = itertools.count(1)


def next_request_id() -> str:
    """Unique across processes and cheap: a random per-process prefix and a counter."""
    return f"{_PROCESS_ID}-{next(_request_numbers):x}"


def request_context(app: ASGIApp) -> ASGIApp:
    """Bind a request id to every log line of a request, echo it, log and count the request."""
    # Per (method, route, status): the labelled metric children (labels() takes a lock and builds a
    # key on every call).
    children: dict[tuple[str, str, int], tuple[Any, Any, Any]] = {}

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        method = scope["method"]
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"").decode("latin-1")
        request_id = incoming if 0 < len(incoming) <= 128 and incoming.isprintable() else next_request_id()
        echoed = (b"x-request-id", request_id.encode("latin-1"))
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() != b"x-request-id"]
                headers.append(echoed)
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            rt: Runtime | None = getattr(scope["app"].state, "runtime", None) if "app" in scope else None
            if rt is not None:
                key = (method, route, status)
                pair = children.get(key)
                if pair is None or pair[2] is not rt.metrics:
                    if len(children) > 10_000:  # routes are templates, so this is only a safety net
                        children.clear()
                    pair = children[key] = (
                        rt.metrics.http_requests.labels(method, route, str(status)),
                        rt.metrics.http_seconds.labels(route),
                        rt.metrics,
                    )
                pair[0].inc()
                pair[1].observe(elapsed)
            if _info_enabled():
                log.info("request", method=method, route=route, status=status, ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")

    return middleware


def _annotate_roles(app: Litestar) -> None:
    """Write each operation's roles (from the same declaration the guard uses) into the OpenAPI doc."""
    schema = app.openapi_schema
    by_operation: dict[str, tuple[str, ...]] = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            roles = handler.opt.get(ROLES_OPT)
            if roles and handler.operation_id:
                by_operation[str(handler.operation_id)] = roles
    for path_item in (schema.paths or {}).values():
        for method in ("get", "put", "post", "delete", "patch"):
            op = getattr(path_item, method, None)
            if op is None:
                continue
            roles = by_operation.get(op.operation_id or "")
            if roles:
                note = f"**Roles:** {', '.join(roles)}."
                op.description = f"{op.description}\n\n{note}" if op.description else note


#: How long a stopping server waits for the dispatcher's messages already handed to a transport (a slow
#: webhook or SMTP server held shutdown for up to 30 s, long enough to look hung: issue 16 item 9).
DISPATCHER_STOP_SECONDS = 5.0


class PrefcenterPlugin(InitPlugin):
    """Adds prefcenter to a Litestar app config: route handlers, exception handlers, middleware, the
    lifespan, the OpenAPI config, the ``rt`` and ``gate_batcher`` dependencies and the app state (the
    role middleware reads ``runtime`` and ``key_cache`` from it).

    With ``manage_store`` the lifespan opens and migrates the store; with ``run_dispatcher`` it also runs
    the dispatcher as a background task (stopped gracefully: nothing more is handed off, what is in flight
    gets ``DISPATCHER_STOP_SECONDS``; nothing is lost either way)."""

    __slots__ = ("manage_store", "run_dispatcher", "runtime")

    def __init__(self, runtime: Runtime, *, manage_store: bool = True, run_dispatcher: bool = False) -> None:
        self.runtime = runtime
        self.manage_store = manage_store
        self.run_dispatcher = run_dispatcher

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        runtime = self.runtime
        if runtime.policy is None:
            # A bad policy stops start-up here, with the file, the field and the reason.
            runtime.policy = load_active_policy(runtime.settings)
            log.info("policy loaded", source=runtime.policy.source, version=runtime.policy.version)
        app_config.route_handlers.extend(
            [
                CustomerController,
                *IMPORT_HANDLERS,
                TopicController,
                ConsentController,
                CampaignController,
                approve,
                send_campaign,
                *INBOUND_HANDLERS,
                healthz,
                readyz,
                metrics,
                LinkController,
                NoticeController,
                WebhookController,
                *PAGE_HANDLERS,
                *CONFIRM_HANDLERS,
                *LIST_HANDLERS,
            ]
        )
        app_config.exception_handlers.update(EXCEPTION_HANDLERS)
        app_config.middleware.extend([request_context, no_store, role_check])
        app_config.lifespan.append(self.lifespan)
        batcher = GateBatcher(runtime)

        # Handler parameters by name. The providers take no request values (a provider that takes
        # ``state`` costs ~10 µs a request to parse it), and gate_batcher takes ``rt`` (the batcher is
        # that runtime's) so litestar resolves the two in turn: two independent dependencies of one
        # handler are resolved in an anyio task group, ~0.1 ms a request on the approval path.
        def provide_runtime() -> Runtime:
            return runtime

        def provide_gate_batcher(rt: NamedDependency[Runtime]) -> GateBatcher:
            return batcher

        app_config.dependencies.update(
            {
                "rt": Provide(provide_runtime, sync_to_thread=False),
                "gate_batcher": Provide(provide_gate_batcher, sync_to_thread=False),
            }
        )
        # Litestar 2.25 takes the body limit from its constructor argument, not from the config (see
        # create_app); set here as well so the config tells the whole story.
        app_config.request_max_body_size = MAX_BODY_BYTES
        app_config.openapi_config = OpenAPIConfig(
            title="prefcenter",
            version="0.1.0",
            description=(
                "Consent and preference management with a send-approval gate and a tamper-evident "
                "consent ledger. Every /v1 call carries `Authorization: Bearer <api key>`; each "
                "operation lists the roles that may call it."
            ),
            path="/schema",
            render_plugins=[BundledSwaggerUI()],
            components=Components(security_schemes={"bearer": SecurityScheme(type="http", scheme="bearer")}),
        )
        app_config.logging_config = None
        app_config.debug = False
        # The role middleware reads runtime and key_cache from here; the dependencies above give the same
        # runtime and batcher.
        app_config.state.runtime = runtime
        app_config.state.key_cache = KeyCache(runtime.settings.key_cache_seconds)
        app_config.state.gate_batcher = batcher
        return app_config

    async def checkpoints(self) -> None:
        """The engine's background upkeep off the request path (SQLite: copy the WAL into the database,
        see SqliteStore.autocheckpoint)."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self.runtime.store.maintenance.checkpoint()
            except Exception:  # a failed checkpoint is retried next second; log, never crash
                log.exception("background checkpoint failed")

    @asynccontextmanager
    async def lifespan(self, app: Litestar) -> AsyncIterator[None]:
        runtime = self.runtime
        if self.manage_store:
            await runtime.store.open()
            await refs_upgrade.migrate(runtime)
            # The preference page's notice, from its locale files (COMPLIANCE 15, edge 21).
            notice = page_notice(runtime.settings)
            await register_page_notice(runtime, notice.version, notice.texts)
        checkpointer = asyncio.create_task(self.checkpoints())
        interval = runtime.settings.prune_interval_seconds
        pruner = None
        if interval and runtime.policy is not None:  # the policy's [retention], every `interval` s
            pruner = asyncio.create_task(retention.run(runtime, interval))
        stop = asyncio.Event()
        lease = timedelta(seconds=runtime.settings.dispatch_lease_seconds)
        dispatcher = (
            Dispatcher(runtime, default_transports(runtime), lease=lease) if self.run_dispatcher else None
        )
        sender = asyncio.create_task(dispatcher.run(stop)) if dispatcher else None
        hooks = WebhookDeliverer(runtime) if self.run_dispatcher else None  # its own start/stop
        if hooks is not None:
            hooks.start()
        # Everything built so far (modules, the app, the policy) lives as long as the process: keep it
        # out of the cyclic collector, whose full passes over it were 50-60 ms pauses under load.
        gc.freeze()
        try:
            yield
        finally:
            if sender is not None and dispatcher is not None:
                stop.set()  # no further hand-off; those in flight get DISPATCHER_STOP_SECONDS to answer
                try:
                    await asyncio.wait_for(sender, timeout=DISPATCHER_STOP_SECONDS)
                except TimeoutError:  # cancelled: those messages stay queued and go at the next start
                    log.warning("the transport did not answer in time; messages in flight go again at start")
                await dispatcher.close()
            if hooks is not None:
                await hooks.stop()
            for task in (checkpointer, pruner):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self.manage_store:
                await runtime.store.close()


def create_app(runtime: Runtime, *, manage_store: bool = True, run_dispatcher: bool = False) -> Litestar:
    """Build the app around ``runtime`` with :class:`PrefcenterPlugin` (which see for the flags), then
    finish its OpenAPI document."""
    app = Litestar(
        plugins=[PrefcenterPlugin(runtime, manage_store=manage_store, run_dispatcher=run_dispatcher)],
        # Litestar 2.25 reads this constructor argument, not AppConfig.request_max_body_size.
        request_max_body_size=MAX_BODY_BYTES,
    )
    _annotate_roles(app)
    complete_document(app)  # schemas as strict as the server, errors, headers, links (api/openapi.py)
    return app


__all__ = ["PrefcenterPlugin", "create_app"]
