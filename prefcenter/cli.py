"""The ``prefcenter`` command."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click
import structlog
import uvloop

from prefcenter.bootstrap import build_runtime
from prefcenter.config import (
    ConfigError,
    Settings,
    identity_warnings,
    load_settings,
    production_warnings,
    resolve_secret_key,
    unknown_variable_warnings,
)
from prefcenter.logging import configure_logging, secret_values
from prefcenter.services import refs_upgrade
from prefcenter.services.runtime import Runtime

if TYPE_CHECKING:
    from litestar import Litestar

T = TypeVar("T")


def _settings(*, secret: bool = True, **overrides: Any) -> Settings:
    """The settings, and logging configured to never print the secrets among them. ``secret``: the
    command uses the secret key (in development it is generated now if it does not exist yet, as
    ``build_runtime`` would, so that the log hides it from the first line on)."""
    try:
        settings = load_settings(**overrides)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None

    _configure_logging(settings, settings.secret_key)
    if secret and settings.secret_key is None:
        try:
            _configure_logging(settings, resolve_secret_key(settings))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    for warning in unknown_variable_warnings():  # once per variable, names only (never a value)
        structlog.get_logger("prefcenter.config").warning(warning)
    return settings


def _configure_logging(settings: Settings, secret_key: str | None) -> None:
    """Logging as the settings ask, never printing ``secret_key`` or the other secrets among them."""
    hidden = secret_values(secret_key, settings.link_keys, settings.smtp_password, *settings.database_secrets)
    configure_logging(production=settings.production, level=settings.log_level, secrets=hidden)


def _warn_settings(settings: Settings) -> None:
    for warning in [*production_warnings(settings), *identity_warnings(settings)]:
        structlog.get_logger("prefcenter.cli").warning(warning)


def _with_runtime(settings: Settings, work: Callable[[Runtime], Awaitable[T]], *, migrate: bool = True) -> T:
    async def main() -> T:
        rt = build_runtime(settings)
        await rt.store.open()
        try:
            if migrate:
                await refs_upgrade.migrate(rt)
            return await work(rt)
        finally:
            await rt.store.close()

    try:
        return uvloop.run(main())  # what uvicorn runs `serve` on too
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.group()
@click.version_option(package_name="prefcenter")
def main() -> None:
    """prefcenter: consent and preference management with a send-approval gate."""


#: How long ``serve`` lets HTTP requests still running at a SIGTERM finish before it cancels them.
SHUTDOWN_SECONDS = 5

#: How long ``serve --workers N`` waits for its workers after passing a SIGTERM/SIGINT on, before it kills
#: those still running: their requests' SHUTDOWN_SECONDS, the dispatcher's stop (DISPATCHER_STOP_SECONDS
#: of api/app.py, 5 s) and a margin.
WORKER_STOP_SECONDS = SHUTDOWN_SECONDS + 7


@main.command()
@click.option("--host", default=None, help="Address to listen on (PREFCENTER_HOST).")
@click.option("--port", default=None, type=int, help="Port to listen on (PREFCENTER_PORT).")
@click.option(
    "--demo-sink",
    "demo_sink",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Also run a local SMTP sink on 127.0.0.1:PREFCENTER_SMTP_PORT saving each email as a .eml "
    "file in this folder (development only; nothing is relayed).",
)
@click.option("--no-dispatcher", is_flag=True, help="Serve only; run `prefcenter dispatch` elsewhere.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Server processes on one listening socket, each with its own dispatcher unless --no-dispatcher "
    "(more than one needs PostgreSQL).",
)
def serve(
    host: str | None, port: int | None, demo_sink: Path | None, no_dispatcher: bool, workers: int
) -> None:
    """Migrate if needed, load the policy, serve the API and pages, and run the dispatcher."""
    # --workers N needs PostgreSQL, which requires the secret key: a refused SQLite run generates none
    settings = _settings(secret=workers == 1, host=host, port=port)
    if demo_sink is not None:
        from prefcenter.services.demo import with_demo_identity

        settings = with_demo_identity(settings)  # example sender values where none are set
    if workers > 1:
        _check_workers_engine(settings, workers)
    _warn_settings(settings)
    if workers > 1:
        _serve_workers(settings, workers, demo_sink=demo_sink, run_dispatcher=not no_dispatcher)
        return
    app = _build_app(settings, run_dispatcher=not no_dispatcher)
    sink = _start_sink(settings, demo_sink)
    click.echo(f"prefcenter serving on http://{settings.host}:{settings.port} (API docs: /schema)", err=True)
    try:
        started = _run_server(app, settings)
    finally:
        if sink is not None:
            sink.stop()
    if not started:
        sys.exit(3)  # uvicorn's start-up failure status (it has logged why)


def _build_app(settings: Settings, *, run_dispatcher: bool) -> Litestar:
    """The runtime and the app of one server process (the policy is loaded here: a bad one is the
    command's error, with its file, field and reason)."""
    from prefcenter.api.app import create_app
    from prefcenter.domain.policy import PolicyError

    try:
        rt = build_runtime(settings, server=True)
        return create_app(rt, run_dispatcher=run_dispatcher)
    except (ConfigError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the policy {settings.policy_path}: {exc}") from None


def _start_sink(settings: Settings, folder: Path | None) -> Any:
    """``--demo-sink``: the local SMTP sink (None without the option)."""
    if folder is None:
        return None
    from prefcenter.messaging.sink import start_sink

    try:
        sink = start_sink(folder, settings.smtp_port)
    except OSError as exc:
        raise click.ClickException(
            f"cannot start the SMTP sink on port {settings.smtp_port}: {exc}"
        ) from None
    click.echo(
        f"demo SMTP sink on 127.0.0.1:{settings.smtp_port}: emails are saved in {folder.resolve()}",
        err=True,
    )
    return sink


def _run_server(app: Litestar, settings: Settings, sockets: list[socket.socket] | None = None) -> bool:
    """Serve ``app`` with uvicorn until a SIGTERM or SIGINT has stopped it gracefully: on
    ``settings.host``/``port``, or on ``sockets`` already bound (a worker of ``serve --workers N``).
    Whether the server started (when not, uvicorn has logged why)."""
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, except that once a SIGTERM or SIGINT has shut it down gracefully the signal
        is not raised again (uvicorn re-raises it under the default handler: the process died of it,
        exit status 143, before the demo sink was stopped). One signal is a clean stop: exit status 0."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                try:
                    yield
                finally:
                    self._captured_signals.clear()

    # No access log and no websockets: uvicorn logs their raw paths (/p/<token>) and query strings. A
    # request still running at shutdown gets SHUTDOWN_SECONDS, then is cancelled.
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    server = Server(config)
    server.run(sockets=sockets)
    return bool(server.started)


def _check_workers_engine(settings: Settings, workers: int) -> None:
    try:
        engine = settings.engine
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if engine != "postgres":
        raise click.ClickException(
            f"--workers {workers} needs PostgreSQL (PREFCENTER_DATABASE_URL=postgresql://...): with SQLite "
            "run one process; SQLite has one writer (and one dispatcher) per database file"
        )


def _serve_workers(settings: Settings, workers: int, *, demo_sink: Path | None, run_dispatcher: bool) -> None:
    """``serve --workers N`` (PostgreSQL): check the policy and migrate once here, bind the listening
    socket once, and start N worker processes ('spawn'), each the single-process server on that socket
    with its own runtime, pool and (unless --no-dispatcher) dispatcher. A SIGTERM or SIGINT is passed on
    to the workers as a SIGTERM (a SIGINT from the terminal has reached them already, and a second SIGINT
    would make uvicorn cut its graceful stop short); those still running after WORKER_STOP_SECONDS are
    killed, and the command exits 0. A worker that stops by itself is logged and not started again; once
    none is left the command exits 1."""
    import multiprocessing
    import os
    import signal
    import time
    from multiprocessing.connection import wait
    from multiprocessing.process import BaseProcess

    from prefcenter.domain.policy import PolicyError
    from prefcenter.services.policies import load_active_policy

    log = structlog.get_logger("prefcenter.cli")
    try:
        load_active_policy(settings)  # a bad policy stops the command here, once, not in every worker
    except (ConfigError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the policy {settings.policy_path}: {exc}") from None
    try:
        applied = _with_runtime(settings, refs_upgrade.migrate, migrate=False)  # once, before any worker
    except click.ClickException:
        raise
    except Exception as exc:
        raise click.ClickException(
            f"cannot migrate {settings.database_label}: {type(exc).__name__}: {exc}"
        ) from None
    for name in applied:
        log.info("migration applied", migration=name)

    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
        sock.listen(2048)  # connections wait in the backlog while the workers start
    except OSError as exc:
        sock.close()
        raise click.ClickException(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None

    signals: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    sink = None
    alive: dict[int, BaseProcess] = {}  # by sentinel
    code = 0

    def reap(timeout: float, *, stopping: bool) -> None:
        for sentinel in wait(list(alive), timeout=timeout):
            gone = alive.pop(cast(int, sentinel))
            gone.join()
            if not stopping:
                log.error(
                    "a worker stopped; it is not started again",
                    pid=gone.pid,
                    exitcode=gone.exitcode,
                    workers_left=len(alive),
                )

    try:
        sink = _start_sink(settings, demo_sink)
        click.echo(
            f"prefcenter serving on http://{settings.host}:{settings.port} with {workers} worker processes "
            "(API docs: /schema)",
            err=True,
        )
        spawn = multiprocessing.get_context("spawn")
        for n in range(1, workers + 1):
            if signals:
                break
            worker = spawn.Process(
                target=_serve_worker,
                args=(settings, sock, run_dispatcher, os.getpid()),
                name=f"prefcenter-worker-{n}",
            )
            worker.start()
            alive[worker.sentinel] = worker
            log.info("worker started", worker=n, pid=worker.pid)
        while alive and not signals:
            reap(0.5, stopping=False)
        if not signals:
            log.error("every worker has stopped")
            code = 1
    finally:
        if alive:  # a signal (or a failure here): stop the rest, gracefully first
            how = signal.Signals(signals[0]).name if signals else "error"
            log.info("stopping the workers", signal=how, workers=len(alive))
            for proc in alive.values():
                proc.terminate()  # SIGTERM: uvicorn's graceful stop
            deadline = time.monotonic() + WORKER_STOP_SECONDS
            while alive and len(signals) <= 1 and time.monotonic() < deadline:  # a second signal: kill now
                reap(0.2, stopping=True)
            for proc in alive.values():
                log.error("a worker did not stop in time; killing it", pid=proc.pid)
                proc.kill()
                proc.join(5)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
        if sink is not None:
            sink.stop()
    if code:
        sys.exit(code)


def _watch_parent(parent: int) -> None:
    """A worker's guard: when its parent is gone (killed without passing a signal on), stop gracefully."""
    import os
    import signal
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _serve_worker(settings: Settings, sock: socket.socket, run_dispatcher: bool, parent: int) -> None:
    """One worker process of ``serve --workers N``: the single-process server on the parent's socket
    (exit status 3 when it could not start, as ``serve``)."""
    import threading

    try:
        _configure_logging(settings, settings.secret_key)
        threading.Thread(target=_watch_parent, args=(parent,), name="watch-parent", daemon=True).start()
        try:
            app = _build_app(settings, run_dispatcher=run_dispatcher)
        except click.ClickException as exc:
            structlog.get_logger("prefcenter.cli").error("worker cannot start", error=exc.message)
            sys.exit(3)
        if not _run_server(app, settings, [sock]):
            sys.exit(3)
    except KeyboardInterrupt:  # a Ctrl-C before the server took over the signals: the parent stops too
        return


async def _start_dispatch_metrics(rt: Runtime) -> Any:
    """The dispatcher's own ``/metrics`` and ``/healthz`` on PREFCENTER_METRICS_HOST:PORT (None when
    the port is 0). A port that cannot be bound (e.g. a second dispatcher on the host) is logged as an
    error and the dispatcher runs on without it: sending does not wait for observability."""
    from prefcenter.services.dispatch_metrics import MetricsServer

    if rt.settings.metrics_port == 0:
        return None
    server = MetricsServer(rt, rt.settings.metrics_host, rt.settings.metrics_port)
    try:
        await server.start()
    except OSError as exc:
        structlog.get_logger("prefcenter.cli").error(
            "dispatcher metrics not served: set PREFCENTER_METRICS_PORT (0: off)",
            host=rt.settings.metrics_host,
            port=rt.settings.metrics_port,
            error=exc.strerror or type(exc).__name__,
        )
        return None
    return server


@main.command()
@click.option("--metrics-host", default=None, help="Address of /metrics (PREFCENTER_METRICS_HOST).")
@click.option(
    "--metrics-port",
    default=None,
    type=click.IntRange(0, 65535),
    help="Port of /metrics, 0: off (PREFCENTER_METRICS_PORT).",
)
def dispatch(metrics_host: str | None, metrics_port: int | None) -> None:
    """Run the dispatcher alone until SIGINT/SIGTERM (with SQLite: one dispatcher per deployment),
    serving its Prometheus metrics on 127.0.0.1:9464 unless told otherwise."""
    import signal

    from prefcenter.services.dispatch import Dispatcher, default_transports
    from prefcenter.services.policies import load_active_policy
    from prefcenter.services.webhooks import WebhookDeliverer

    settings = _settings(metrics_host=metrics_host, metrics_port=metrics_port)
    _warn_settings(settings)

    async def work(rt: Runtime) -> bool:
        rt.policy = load_active_policy(settings)
        metrics = await _start_dispatch_metrics(rt)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        dispatcher = Dispatcher(
            rt, default_transports(rt), lease=timedelta(seconds=settings.dispatch_lease_seconds)
        )
        hooks = WebhookDeliverer(rt)  # the webhook outbox goes where the dispatcher runs
        hooks.start()
        try:
            return await dispatcher.run(stop)
        finally:
            await hooks.stop()
            await dispatcher.close()
            if metrics is not None:
                await metrics.stop()

    click.echo("prefcenter dispatcher running (Ctrl-C stops it after the batch in hand)", err=True)
    if not _with_runtime(settings, work):
        raise click.ClickException(
            "another dispatcher is running on this database (`prefcenter serve` runs one unless given "
            "--no-dispatcher); with SQLite there is one per deployment"
        )


@main.command()
def migrate() -> None:
    """Apply pending migrations."""
    settings = _settings()

    applied = _with_runtime(settings, refs_upgrade.migrate, migrate=False)
    click.echo("\n".join(f"applied {name}" for name in applied) or "nothing to apply")


@main.command()
@click.option("--now", "now_text", default=None, help="Prune as of this instant (RFC 3339 with offset).")
@click.option("--batch", default=1000, type=click.IntRange(1, 100_000), help="Rows per delete transaction.")
def prune(now_text: str | None, batch: int) -> None:
    """One pruning pass as the active policy's [retention] says (`serve` runs one every
    PREFCENTER_PRUNE_INTERVAL_SECONDS); prints what it deleted as JSON. The consent ledger is never
    pruned."""
    import msgspec

    from prefcenter.api.params import parse_instant
    from prefcenter.domain.model import InvalidInput
    from prefcenter.domain.policy import PolicyError
    from prefcenter.services import retention
    from prefcenter.services.policies import load_active_policy

    settings = _settings()
    try:
        loaded = load_active_policy(settings)
        now = parse_instant(now_text, "now")
    except (ConfigError, PolicyError) as exc:
        raise click.ClickException(str(exc)) from None
    except InvalidInput as exc:
        raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the policy {settings.policy_path}: {exc}") from None

    async def work(rt: Runtime) -> retention.PruneReport:
        return await retention.prune(rt.store, loaded, now or rt.now(), batch=batch)

    click.echo(msgspec.json.encode(_with_runtime(settings, work)).decode())


@main.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(["admin", "marketing", "auditor"]))
@click.option("--name", required=True, help="Who or what uses the key (no personal data).")
def keys_create(role: str, name: str) -> None:
    """Mint a key; it is printed once, as the last line of stdout, and stored only as a hash."""
    from prefcenter.services.keys import create_key

    settings = _settings()

    async def work(rt: Runtime) -> Any:
        try:
            return await create_key(rt, role, name)  # type: ignore[arg-type]
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    record, key = _with_runtime(settings, work)
    click.echo(f"created {record.role} key #{record.id} ({record.name}); it is shown only now:")
    click.echo(key)


@keys.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    settings = _settings()

    async def work(rt: Runtime) -> Any:
        return await rt.store.list_keys()

    for k in _with_runtime(settings, work):
        state = f"revoked {k.revoked_at}" if k.revoked_at else "active"
        click.echo(f"{k.id}\t{k.role}\t{k.name}\t{k.prefix}…\tcreated {k.created_at}\t{state}")


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key by its id (see ``keys list``)."""
    from prefcenter.services.errors import NotFound
    from prefcenter.services.keys import revoke_key

    settings = _settings()

    async def work(rt: Runtime) -> None:
        try:
            await revoke_key(rt, key_id)
        except NotFound as exc:
            raise click.ClickException(exc.detail) from None

    _with_runtime(settings, work)
    click.echo(f"revoked key #{key_id}")


@main.group()
def policy() -> None:
    """Check a policy file and run the policy's test cases."""


@policy.command("check")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def policy_check(file: Path) -> None:
    """Validate a policy file; print its version, or the file, field and reason it fails on."""
    from prefcenter.domain.policy import PolicyError
    from prefcenter.services.policies import load_policy_file

    try:
        loaded = load_policy_file(file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{file}: ok ({loaded.policy.name}, {loaded.version})")


@policy.command("test")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The policy to test (default: the active policy).",
)
@click.option(
    "--cases",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="The folder of case files (default: tests/ beside the policy).",
)
def policy_test(file: Path | None, cases: Path | None) -> None:
    """Run the policy's test cases (policies/tests/*.toml) and print PASS/FAIL per case, like opa test."""
    from prefcenter.domain.policy import PolicyError
    from prefcenter.services.policies import active_policy_path, load_policy_file
    from prefcenter.services.policy_tests import PolicyTestError, format_report, run_policy_tests

    settings = _settings(secret=False)
    try:
        path = file or active_policy_path(settings)
        loaded = load_policy_file(path)
        folder = cases or path.parent / "tests"
        click.echo(f"testing {path} with the cases in {folder}", err=True)
        results = run_policy_tests(loaded, folder)
    except (ConfigError, PolicyError, PolicyTestError) as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the policy or its cases: {exc}") from None
    click.echo(format_report(results))
    if not results or not all(r.passed for r in results):
        sys.exit(1)


@policy.command("replay")
@click.option(
    "--policy",
    "file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The candidate policy file (validated as `policy check` does).",
)
@click.option("--since", default=None, help="RFC 3339 with offset, inclusive (decision instants).")
@click.option("--until", default=None, help="RFC 3339 with offset, exclusive.")
@click.option("--json", "as_json", is_flag=True, help="Also print the answer as JSON, as the last line.")
def policy_replay(file: Path, since: str | None, until: str | None, as_json: bool) -> None:
    """Re-decide every logged decision in [since, until) with the candidate policy, against the consent
    state and reservations in force at each decision's instant, and print how many would change, by
    (old reason -> new reason), with a sample of customers (pseudonyms). Writes nothing."""
    import msgspec

    from prefcenter.api.params import parse_instant
    from prefcenter.domain.model import InvalidInput
    from prefcenter.domain.policy import PolicyError
    from prefcenter.services.policies import load_policy_file
    from prefcenter.services.replay import ReplayResult, format_summary, replay

    try:
        candidate = load_policy_file(file)
    except PolicyError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot read the policy {file}: {exc}") from None
    try:
        start, end = parse_instant(since, "since"), parse_instant(until, "until")
    except InvalidInput as exc:
        raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
    if start is not None and end is not None and end <= start:
        raise click.ClickException("until: must be later than since")
    settings = _settings()

    async def work(rt: Runtime) -> ReplayResult:
        return await replay(rt, candidate, start, end)

    result = _with_runtime(settings, work, migrate=False)  # reads only: not even a migration
    for line in format_summary(result, str(file)):
        click.echo(line)
    if as_json:
        click.echo(msgspec.json.encode(result.as_json()).decode())


@main.group()
def consent() -> None:
    """The auditor's export and verification, offline."""


@consent.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--customer-id", default=None)
@click.option("--since", default=None, help="RFC 3339 with offset, inclusive.")
@click.option("--until", default=None, help="RFC 3339 with offset, exclusive.")
def consent_export(
    fmt: str, output: Path | None, customer_id: str | None, since: str | None, until: str | None
) -> None:
    """Export consent events (JSONL recomputes the chain; CSV for spreadsheets)."""
    from prefcenter.api.params import parse_instant
    from prefcenter.domain.model import InvalidInput
    from prefcenter.services.consent import event_filter, export_events

    settings = _settings()

    async def work(rt: Runtime) -> int:
        try:
            flt = event_filter(rt, customer_id, parse_instant(since, "since"), parse_instant(until, "until"))
        except InvalidInput as exc:
            raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
        out = output.open("wb") if output else sys.stdout.buffer
        size = 0
        try:
            async for chunk in export_events(rt, flt, fmt):  # type: ignore[arg-type]
                out.write(chunk)
                size += len(chunk)
        finally:
            if output:
                out.close()
            else:
                out.flush()
        return size

    _with_runtime(settings, work)


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path))
def import_file(file: Path) -> None:
    """Import customers from an NDJSON FILE (``-``: standard input), as POST /v1/customers/import does
    (with an admin's rights); the answer object is the last line printed. Exit 1 when a line was rejected."""
    import msgspec

    from prefcenter.services.imports import ImportResult, import_ndjson

    settings = _settings()
    tty = sys.stderr.isatty()

    def progress(result: ImportResult) -> None:
        if tty:
            r = result
            click.echo(
                f"\r{r.lines} lines: {r.created} created, {r.updated} updated, {r.unchanged} unchanged, "
                f"{r.rejected} rejected",
                err=True,
                nl=False,
            )

    async def work(rt: Runtime) -> ImportResult:
        async def blocks() -> Any:
            with click.open_file(str(file), "rb") as fh:
                while block := fh.read(1 << 20):
                    yield block

        return await import_ndjson(rt, blocks(), caller_role="admin", progress=progress)

    result = _with_runtime(settings, work)
    if tty:
        click.echo("", err=True)
    click.echo(msgspec.json.encode(result).decode())
    if result.rejected:
        sys.exit(1)


class _UsageError(click.ClickException):
    """A one-line error (``Error: ...``) with the usage-error exit code, 2."""

    exit_code = 2


@consent.command("verify")
@click.option("--head", default=None, help="A head hash recorded earlier; it must lie on the chain.")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Verify a JSONL export (format=jsonl; a CSV export cannot be verified) instead of the database "
    "(the chain alone; no stored head).",
)
def consent_verify(head: str | None, file: Path | None) -> None:
    """Recompute the hash chain; exit 1 and name the first bad seq when it is broken."""
    import msgspec

    from prefcenter.domain.ledger import ChainVerifier, VerifyResult
    from prefcenter.services.consent import verify_ledger

    settings = _settings(secret=file is None)
    if file is not None:
        # One JSON event per line. A file whose first line is no JSON object is no JSONL export (a CSV
        # export, say): a usage error (exit 2, one line). A later line that is no JSON object is damage
        # to the export: the chain breaks there (exit 1, like any other tampering).
        verifier = ChainVerifier()
        if head is not None:
            verifier.want_head(head)
        damaged: VerifyResult | None = None
        with file.open("rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    event = msgspec.json.decode(line)
                except msgspec.DecodeError:
                    event = None
                if not isinstance(event, dict):
                    if verifier.count == 0 and verifier.failure is None:
                        csv = line.removeprefix(b"\xef\xbb\xbf").startswith(b"seq,")
                        kind = (
                            "a CSV export" if csv else f"not a JSONL export (line {number} is no JSON object)"
                        )
                        raise _UsageError(
                            f"{file} is {kind}: JSONL is the format to verify; CSV exports cannot be "
                            "verified, re-export with format=jsonl"
                        )
                    damaged = VerifyResult(
                        ok=False,
                        first_bad_seq=verifier.last_seq + 1,
                        problem=f"line {number} is no JSON object",
                    )
                    break
                if not verifier.feed(event):
                    break
        result = damaged or verifier.finish(None, None)
    else:

        async def work(rt: Runtime) -> Any:
            return await verify_ledger(rt, head)

        result = _with_runtime(settings, work)
    click.echo(msgspec.json.encode(result.as_dict()).decode())
    if not result.ok:
        sys.exit(1)


@consent.command("state")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="A JSONL export (consent export, or /v1/consent-events/export?format=jsonl).",
)
@click.option("--customer-ref", default=None, help="The customer's pseudonym (erased customers too).")
@click.option(
    "--customer-id", default=None, help="The customer id (needs PREFCENTER_SECRET_KEY: the refs' key)."
)
@click.option("--at", default=None, help="RFC 3339 with offset; default: now.")
def consent_state(file: Path, customer_ref: str | None, customer_id: str | None, at: str | None) -> None:
    """Print one customer's consent state in force at --at, rebuilt from a JSONL export, with its proof:
    the same JSON document as GET /v1/customers/{id}/consent-state (head: the file's last event)."""
    from datetime import UTC, datetime

    import msgspec

    from prefcenter.api.params import parse_instant
    from prefcenter.domain.model import InvalidInput, check_customer_id
    from prefcenter.domain.pseudonyms import Pseudonymizer
    from prefcenter.services import consent_state as states

    if (customer_ref is None) == (customer_id is None):
        raise click.UsageError("give one of --customer-ref REF and --customer-id ID")
    settings = _settings(secret=False)
    try:
        moment = parse_instant(at, "at") or datetime.now(UTC)
        if customer_id is not None:
            check_customer_id(customer_id)
    except InvalidInput as exc:
        raise _UsageError("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
    if customer_id is not None:
        key = settings.secret_key
        dev_key = (
            settings.engine == "sqlite"
            and settings.sqlite_path.with_name(settings.sqlite_path.name + ".key").exists()
        )
        if key is None and not dev_key:  # a key generated now would give a ref no event has
            raise _UsageError(
                "--customer-id needs PREFCENTER_SECRET_KEY (the ledger's key); or --customer-ref"
            )
        customer_ref = Pseudonymizer(key or resolve_secret_key(settings)).customer_ref(customer_id)
    assert customer_ref is not None
    try:
        states.check_customer_ref(customer_ref)
        answer = states.state_from_file(file, customer_ref, moment, customer_id=customer_id)
    except states.ExportError as exc:
        raise click.ClickException(f"{file}: {exc} (is it a JSONL export?)") from None
    except ValueError as exc:
        raise _UsageError(f"--customer-ref: {exc}") from None
    click.echo(msgspec.json.encode(answer).decode())


@main.group()
def inbound() -> None:
    """Inbound messages."""


@inbound.command("review")
@click.option("--since", default=None, help="RFC 3339 with offset, inclusive.")
@click.option("--all", "resolved", is_flag=True, help="Resolved texts too.")
@click.option("--resolve", "review_id", type=int, default=None, help="Resolve the text with this id.")
@click.option("--as", "resolution", type=click.Choice(["stop", "none"]), default=None, help="With --resolve.")
@click.option("--by", default=None, help="With --resolve: who decides (recorded as the ledger actor).")
def inbound_review(
    since: str | None, resolved: bool, review_id: int | None, resolution: str | None, by: str | None
) -> None:
    """Print, as JSON lines, oldest first, the open inbound SMS that matched no keyword (kept for a person
    to review: a revocation in other words or another language must still be honoured), each with its
    due date (10 US business days after receipt, a New York date) and "overdue": true once it is past.
    With --resolve ID --as stop|none --by NAME, resolve one: `stop` does what a texted STOP does for the
    number it came from; the resolved text is printed."""
    import msgspec

    from prefcenter.api.params import parse_instant
    from prefcenter.domain.model import InvalidInput
    from prefcenter.services import inbound as inbound_service
    from prefcenter.services.errors import ServiceError

    if review_id is not None and (resolution is None or by is None):
        raise click.UsageError("--resolve needs --as stop|none and --by NAME")
    if review_id is None and (resolution is not None or by is not None):
        raise click.UsageError("--as and --by go with --resolve ID")
    settings = _settings()
    try:
        moment = parse_instant(since, "since")
    except InvalidInput as exc:
        raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None

    async def work(rt: Runtime) -> list[dict[str, Any]]:
        if review_id is not None and resolution is not None and by is not None:
            return [await inbound_service.resolve_review(rt, review_id, resolution, by)]
        return await inbound_service.review_list(rt, moment, resolved)

    try:
        rows = _with_runtime(settings, work)
    except InvalidInput as exc:
        raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
    except ServiceError as exc:
        raise click.ClickException(exc.detail) from None
    for row in rows:
        click.echo(msgspec.json.encode(row).decode())


@main.command("trace")
@click.argument("campaign_id")
@click.argument("customer_id")
def trace_command(campaign_id: str, customer_id: str) -> None:
    """Print the trace of CAMPAIGN_ID's message to CUSTOMER_ID as JSON, as GET
    /v1/campaigns/{campaign_id}/trace/{customer_id} answers it (decisions, message history, consent,
    inbound)."""
    import msgspec

    from prefcenter.domain.model import InvalidInput
    from prefcenter.services.errors import ServiceError
    from prefcenter.services.trace import Trace, trace

    settings = _settings()

    async def work(rt: Runtime) -> Trace:
        try:
            return await trace(rt, campaign_id, customer_id)
        except InvalidInput as exc:
            raise click.ClickException("; ".join(f"{e.field}: {e.message}" for e in exc.errors)) from None
        except ServiceError as exc:
            raise click.ClickException(exc.detail) from None

    answer = _with_runtime(settings, work, migrate=False)  # reads only: not even a migration
    click.echo(msgspec.json.encode(answer).decode())


@main.command()
@click.option("--customers", "count", default=1000, show_default=True, help="How many demo customers.")
def demo(count: int) -> None:
    """Seed demo data (idempotent) and print an admin key and URLs to try. The demo key is replaced on
    every run: the previous ``demo-admin`` key is revoked, so one demo key only is ever live."""
    from prefcenter.services.demo import DEMO_CAMPAIGN_ID, DEMO_KEY_NAME, rotate_demo_key, seed_demo

    settings = _settings()
    logging.getLogger("prefcenter").setLevel(logging.WARNING)  # one line per seeded row is noise

    async def work(rt: Runtime) -> Any:
        from prefcenter.services.links import mint_links

        created = await seed_demo(rt, count)
        _, key, revoked = await rotate_demo_key(rt)
        customer = await rt.store.get_customer("demo-0001")
        links = mint_links(rt, customer, None) if customer else ("", "")
        return created, key, revoked, links

    created, key, revoked, (manage, unsubscribe) = _with_runtime(settings, work)
    base = settings.listen_url  # the API as `serve` listens; the pages' links follow PUBLIC_URL
    click.echo(f"demo data ready in {settings.database_label} ({created} customers created now)")
    if revoked:
        ids = ", ".join(f"#{i}" for i in revoked)
        click.echo(f"revoked the previous {DEMO_KEY_NAME} key {ids}: only the key below works now")
    click.echo("try, once `prefcenter serve` runs:")
    click.echo(f"  API docs:     {base}/schema")
    click.echo(
        f"  a customer:   curl -H 'Authorization: Bearer {key}' {base}/v1/customers/demo-0001/preferences"
    )
    click.echo(f"  the ledger:   curl -H 'Authorization: Bearer {key}' {base}/v1/consent-events/verify")
    click.echo(f"  demo-0001's preference page:  {manage}")
    click.echo(f"  demo-0001's unsubscribe page: {unsubscribe}")
    ids = ",".join(f'"demo-{i:04d}"' for i in range(1, 11))
    click.echo(
        "  send the demo newsletter to ten customers (with `serve --demo-sink DIR` the mail lands in DIR):\n"
        f"    curl -X POST -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
        f"-d '{{\"customer_ids\": [{ids}]}}' {base}/v1/campaigns/{DEMO_CAMPAIGN_ID}/sends"
    )
    click.echo("admin key (shown once):")
    click.echo(key)


if __name__ == "__main__":  # pragma: no cover
    main()
