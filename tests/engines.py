"""One suite, two engines: what the fixtures of ``tests/conftest.py`` need to run a test on SQLite (the
default) or on PostgreSQL (``--engine=postgres`` or ``PREFCENTER_TEST_ENGINE=postgres``).

On PostgreSQL every test gets a schema of its own (``t_<uuid hex>``) in the database that
``PREFCENTER_TEST_POSTGRES_URL`` names (default the local test server), migrated by the store as the app
opens it and dropped (``DROP SCHEMA ... CASCADE``) after the test, so parallel runs never meet.

The app under test runs on another event loop than the test: Litestar's ``AsyncTestClient`` runs the
lifespan and every request on a loop of its own in a portal thread, while the test (and
``keys_and_topics``) call the same store on the test's loop. SQLite's store does not mind (each call
hops to its own threads); an asyncpg pool belongs to the loop that made it. So the tests' PostgreSQL
store is :class:`LoopStore`: the adapter itself, whose ``pool`` is one real pool per event loop (the
app's loop and the test's loop each use their own connections, as two processes of a deployment would).

The query helpers are synchronous: the tests call them from inside their running event loop, so each
runs its coroutine on a fresh loop in a worker thread, on a short connection of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, NoReturn, TypeVar

import asyncpg
import pytest

from prefcenter.store.postgres import PostgresStore

Engine = Literal["sqlite", "postgres"]
ENGINES: tuple[Engine, ...] = ("sqlite", "postgres")
ENGINE_ENV = "PREFCENTER_TEST_ENGINE"
POSTGRES_URL_ENV = "PREFCENTER_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"

#: The fixtures through which a test sees the engine: on PostgreSQL a test that asks for none of them
#: (directly or through another fixture) would run exactly as on SQLite, and is deselected.
ENGINE_FIXTURES = frozenset({"settings", "rt", "api"})

T = TypeVar("T")


def default_engine() -> str:
    return os.environ.get(ENGINE_ENV, "sqlite")


def postgres_url() -> str:
    """``$PREFCENTER_TEST_POSTGRES_URL``, else ``$PREFCENTER_TEST_PG_DSN`` (the schema tests' name for
    it), else the local test server."""
    return (
        os.environ.get(POSTGRES_URL_ENV) or os.environ.get("PREFCENTER_TEST_PG_DSN") or DEFAULT_POSTGRES_URL
    )


def new_schema() -> str:
    """A schema name of its own for one test (valid for ``Settings.database_schema``)."""
    return "t_" + uuid.uuid4().hex


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def run_sync(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """The result of the coroutine ``make()`` returns, run to the end on a fresh event loop in a worker
    thread (the caller may be inside a running loop, which must not be blocked re-entrantly)."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="engines") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def numbered(sql: str) -> str:
    """``sql`` with SQLite's ``?`` placeholders as PostgreSQL's ``$1..$n`` (a ``?`` inside a quoted
    literal or identifier is left alone)."""
    out: list[str] = []
    n = 0
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None  # a doubled quote closes and reopens: the same result
        elif ch in ("'", '"'):
            quote = ch
        elif ch == "?":
            n += 1
            out.append(f"${n}")
            continue
        out.append(ch)
    return "".join(out)


async def _connect(dsn: str, schema: str | None) -> asyncpg.Connection[asyncpg.Record]:
    # A lock the app holds while the test's loop is blocked on this call would wait forever: 30 s.
    settings = {"lock_timeout": "30s", "application_name": "prefcenter-tests"}
    if schema is not None:
        settings["search_path"] = quote_ident(schema)
    return await asyncpg.connect(dsn, server_settings=settings)


def pg_query(dsn: str, schema: str | None, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (SQLite placeholders; committed on its own) on ``schema``, as tuples."""

    async def run() -> list[tuple[Any, ...]]:
        conn = await _connect(dsn, schema)
        try:
            return [tuple(row) for row in await conn.fetch(numbered(sql), *params)]
        finally:
            await conn.close()

    return run_sync(run)


def drop_schema(dsn: str, schema: str) -> None:
    """``DROP SCHEMA ... CASCADE``, waiting at most 30 s for a lock a leftover connection holds."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn, server_settings={"lock_timeout": "30s"})
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        finally:
            await conn.close()

    run_sync(run)


#: What asyncpg raises when it cannot reach the server at all (not a failure of the code under test).
UNREACHABLE = (OSError, TimeoutError, asyncpg.CannotConnectNowError)


def postgres_unavailable(reason: str) -> NoReturn:
    """A test that needs PostgreSQL and cannot have it here: skipped with ``reason``, except under
    ``CI=true``, where PostgreSQL is provisioned and its absence is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true)")
    pytest.skip(reason)


def reachable(dsn: str) -> str | None:
    """None when ``dsn`` answers; else why not (for the run's header and a clear failure)."""

    async def run() -> None:
        conn = await asyncpg.connect(dsn, timeout=5)
        await conn.close()

    try:
        run_sync(run)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


class LoopPools:
    """Stands in for an asyncpg pool: the real pool the store opened on one loop, and one more real pool
    for each other loop that uses the store, made on its first use. Every pool method is awaited on the
    calling loop's own pool; ``close()`` closes the calling loop's."""

    def __init__(self, home: Any, sibling: Callable[[], Awaitable[Any]]) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[Any] = loop.create_future()
        ready.set_result(home)
        self._pools: dict[asyncio.AbstractEventLoop, asyncio.Future[Any]] = {loop: ready}
        self._sibling = sibling
        self._lock = threading.Lock()  # the app's loop and the test's run in different threads

    async def here(self) -> Any:
        """This loop's pool (made now if this loop has none yet)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            made = self._pools.get(loop)
            if made is None:
                made = self._pools[loop] = loop.create_future()
                mine = True
            else:
                mine = False
        if mine:
            try:
                made.set_result(await self._sibling())
            except BaseException as exc:
                with self._lock:
                    self._pools.pop(loop, None)
                made.set_exception(exc)
                made.exception()  # retrieved: whoever waits on it gets it too
                raise
        return await made

    def acquire(self, *, timeout: float | None = None) -> _Acquire:
        return _Acquire(self, timeout)

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            made = self._pools.pop(loop, None)
        if made is not None and made.done() and made.exception() is None:
            await made.result().close()

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr(await self.here(), name)(*args, **kwargs)

        return call


class _Acquire:
    """``pool.acquire()`` on the calling loop's pool: ``async with`` (or ``await`` and ``release``)."""

    def __init__(self, pools: LoopPools, timeout: float | None) -> None:
        self._pools = pools
        self._timeout = timeout
        self._ctx: Any = None

    async def __aenter__(self) -> Any:
        self._ctx = (await self._pools.here()).acquire(timeout=self._timeout)
        return await self._ctx.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._ctx.__aexit__(*exc)

    def __await__(self) -> Any:
        async def get() -> Any:
            return await (await self._pools.here()).acquire(timeout=self._timeout)

        return get().__await__()


class LoopStore(PostgresStore):
    """The PostgreSQL adapter as the tests run it: unchanged but for ``pool``, a :class:`LoopPools`
    (see the module's docstring). :meth:`close_here` closes what the calling loop still holds."""

    def __init__(self, dsn: str, **kwargs: Any) -> None:
        self._loop_pools: LoopPools | None = None
        self._retired: list[LoopPools] = []
        super().__init__(dsn, **kwargs)

    @property
    def pool(self) -> Any:
        return self._loop_pools

    @pool.setter
    def pool(self, value: Any) -> None:
        if self._loop_pools is not None:
            self._retired.append(self._loop_pools)
        if value is None or isinstance(value, LoopPools):
            self._loop_pools = value
        else:
            self._loop_pools = LoopPools(value, self._sibling_pool)

    async def _sibling_pool(self) -> Any:
        settings = {"application_name": "prefcenter-tests"}
        if self.schema is not None:
            settings["search_path"] = quote_ident(self.schema)
        return await asyncpg.create_pool(
            self.dsn, min_size=1, max_size=self.max_size, server_settings=settings
        )

    async def close_here(self) -> None:
        for pools in [*self._retired, *([self._loop_pools] if self._loop_pools else [])]:
            await pools.close()
