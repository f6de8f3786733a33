"""A ``sqlite3`` connection that lives on one thread the store owns (as datasette's ``execute_write_fn``
does): every call runs there, in order, and answers through the event loop.

:meth:`SqliteThread.run` runs a whole function of the connection in one hop (the gate's transaction);
the small awaitable API below (``execute``, ``executemany``, ``executescript``, cursors whose rows are
already fetched) is for the write transaction's many one-statement calls. A statement's rows are read on
the connection's thread before the answer comes back, so no cursor is ever used from another thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]


@contextmanager
def not_waiting(conn: sqlite3.Connection, busy_timeout_ms: int) -> Iterator[None]:
    """Busy timeout 0 meanwhile, then ``busy_timeout_ms`` again: for a statement run on the event
    loop's own thread, which must get SQLITE_BUSY at once rather than wait there for another
    connection's lock."""
    conn.execute("PRAGMA busy_timeout = 0")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")


class Rows:
    """One statement's answer: its rows (all fetched), ``rowcount`` and ``lastrowid``."""

    __slots__ = ("_rows", "lastrowid", "rowcount")

    def __init__(self, rows: list[Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.lastrowid = lastrowid

    async def fetchone(self) -> Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[Row]:
        return self._rows

    def __aiter__(self) -> AsyncIterator[Row]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Row]:
        for row in self._rows:
            yield row


class _Statement:
    """``await conn.execute(...)`` and ``async with conn.execute(...) as rows`` alike."""

    __slots__ = ("_call",)

    def __init__(self, call: asyncio.Future[Rows]) -> None:
        self._call = call

    def __await__(self) -> Generator[Any, None, Rows]:
        return self._call.__await__()

    async def __aenter__(self) -> Rows:
        return await self._call

    async def __aexit__(self, *exc: object) -> None:
        return None


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> Rows:
    cur = conn.execute(sql, params)
    try:
        return Rows(cur.fetchall(), cur.rowcount, cur.lastrowid)
    finally:
        cur.close()


def _executemany(conn: sqlite3.Connection, sql: str, rows: Iterable[Sequence[Any]]) -> Rows:
    cur = conn.executemany(sql, rows)
    try:
        return Rows([], cur.rowcount, cur.lastrowid)
    finally:
        cur.close()


class SqliteThread:
    """One connection, one thread (``name``); ``connect`` opens the connection on that thread."""

    def __init__(self, path: Path, connect: Callable[[Path], sqlite3.Connection], name: str) -> None:
        self._path = path
        self._connect = connect
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._conn: sqlite3.Connection | None = None
        # calls sent to the thread (counted on the loop's thread) and finished there (on its own): each
        # counter has one writer, so no lock
        self._sent = 0
        self._done = 0

    async def open(self) -> None:
        self._conn = await asyncio.get_running_loop().run_in_executor(self._pool, self._connect, self._path)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(connection, *args)`` on the connection's thread, in one hop."""
        work = self._pool.submit(fn, self.conn, *args)
        self._sent += 1
        work.add_done_callback(self._finished)  # on the thread, when the call has run (or was cancelled)
        return asyncio.wrap_future(work)

    def _finished(self, _: object) -> None:
        self._done += 1

    @property
    def idle(self) -> bool:
        """Nothing sent to the thread is still running or queued there (a caller cancelled while its
        call was queued or running leaves it to run): only then may the write lock's holder use the
        connection from its own thread."""
        return self._sent == self._done

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Statement:
        return _Statement(self.run(_execute, sql, params))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Rows:
        return await self.run(_executemany, sql, list(rows))

    async def executescript(self, script: str) -> None:
        await self.run(sqlite3.Connection.executescript, script)

    @property
    def total_changes(self) -> int:
        return self.conn.total_changes

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    async def close(self) -> None:
        if self._conn is not None:
            await self.run(sqlite3.Connection.close)
            self._conn = None
        self._pool.shutdown(wait=False)  # its one call, the close, has run: nothing to wait for
