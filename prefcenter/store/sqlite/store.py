"""The store itself: its connections and their PRAGMAs (the writer, the gate's reader and the
checkpointer each on a thread the store owns, :class:`SqliteThread`; the reader through aiosqlite), every
writing transaction's lock, begin, commit and failure, the gate transaction, the migrations run on the
writer, and :class:`SqliteMaintenance` (WAL checkpoints, the dispatcher's ``flock``). The reads are
:class:`SqliteReads`."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import structlog

from prefcenter.store import migrations
from prefcenter.store.base import GateDecide, StoreUnavailable
from prefcenter.store.retention import ReservationBound
from prefcenter.store.sqlite.gate import GateBusy, begin_sync, gate_now_sync, gate_sync
from prefcenter.store.sqlite.history import SqliteHistory
from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.replay import SqliteReplay
from prefcenter.store.sqlite.retention import SqliteRetention
from prefcenter.store.sqlite.schema import SqliteMigrations, default_migrations_dir
from prefcenter.store.sqlite.thread import SqliteThread, not_waiting
from prefcenter.store.sqlite.trace import SqliteTrace
from prefcenter.store.sqlite.webhooks import SqliteWebhooks
from prefcenter.store.sqlite.write import SqliteWriteTx, commit_sync

T = TypeVar("T")

log = structlog.get_logger("prefcenter.store")

# Above this many bytes of frames in the WAL, a busy (not idle) background checkpoint is one that lets
# the next write start the WAL over (SqliteStore._restart), not a PASSIVE one: under back-to-back writes
# a write nearly always comes between a PASSIVE checkpoint and the next write, or a reader is on the
# WAL, so a PASSIVE checkpoint copies every frame yet no write can start the file over, and it grows
# without end (180 MB after 30 daily 10,000-id calls).
WAL_RESTART_ABOVE = 32 * 1024 * 1024
# Bytes of WAL file kept when a write starts it over: above what it reaches between two restarts, so a
# restart does not cut the file, which the next restart would grow again (on a file system mounted with
# `discard` the cut freed the blocks inside that write: 20-40 ms with the write lock held, every restart;
# single-id p99 32-45 -> 18-21 ms). Idle, the background TRUNCATE still takes the file to zero.
JOURNAL_SIZE_LIMIT = 2 * WAL_RESTART_ABOVE
#: A gate transaction for at most this many ids runs on the event loop's thread (SqliteStore.gate).
INLINE_GATE_IDS = 64

# Primary result codes (the low byte of the extended code) that say the file cannot be written now,
# through nobody's fault of input: disk full, an I/O error, a read-only or vanished file.
_UNAVAILABLE = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)


def _unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _UNAVAILABLE


def _connect_sync(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    """A connection for a :class:`SqliteThread` (autocommit: transactions are begun explicitly)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in (
        f"busy_timeout = {int(busy_timeout_ms)}",
        "foreign_keys = ON",
        "synchronous = NORMAL",
        "secure_delete = ON",
    ):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class SqliteStore(SqliteWebhooks, SqliteHistory, SqliteTrace, SqliteReplay, SqliteRetention, SqliteReads):
    """The aiosqlite adapter of :class:`prefcenter.store.base.Store`."""

    gate_groups = 1  # one writer: a second group would only queue for it, and gather less

    def __init__(
        self,
        path: str | Path,
        *,
        migrations_dir: Path | None = None,
        busy_timeout_ms: int = 10_000,
        new_id: Any = None,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = Path(path)
        self.migrations_dir = migrations_dir or default_migrations_dir()
        self.busy_timeout_ms = busy_timeout_ms
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self._writer: SqliteThread | None = None
        self._gate_reader: SqliteThread | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # With autocheckpoint off, a commit never stops to copy the WAL into the database (a p99 spike
        # for every writer queued behind it): the server runs checkpoint() in the background instead.
        self.autocheckpoint = autocheckpoint
        self._checkpointer: SqliteThread | None = None
        self._page_size = 4096
        # Why the last write failed for want of disk (None: the last write went through).
        self.write_failure: str | None = None
        self._last_write = time.monotonic()
        # Idle this long (no write), a background checkpoint also truncates the WAL file to zero.
        self.truncate_after_idle_seconds = 2.0
        self.maintenance = SqliteMaintenance(self)

    # -- connections ------------------------------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA secure_delete = ON")
        return conn

    async def _thread(self, name: str) -> SqliteThread:
        thread = SqliteThread(self.path, lambda path: _connect_sync(path, self.busy_timeout_ms), name)
        await thread.open()
        return thread

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._thread("prefcenter-sqlite-writer")
        async with self._writer.execute("PRAGMA journal_mode = WAL") as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise RuntimeError(f"could not switch {self.path} to WAL mode (got {row})")
        self._reader = await self._connect()
        self._gate_reader = await self._thread("prefcenter-sqlite-gate-reader")
        # Each time a checkpoint resets the WAL, SQLite cuts the file back to this size.
        await self._writer.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        if not self.autocheckpoint:
            await self._writer.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = await self._thread("prefcenter-sqlite-checkpointer")
            async with self._writer.execute("PRAGMA page_size") as cur:
                self._page_size = int((await cur.fetchone() or (4096,))[0])
            # A checkpoint never makes writers wait long for it: it tries again next second.
            await self._checkpointer.execute("PRAGMA busy_timeout = 100")

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self.checkpoint()
            await self._checkpointer.close()
            self._checkpointer = None
        for conn in (self._reader, self._gate_reader):
            if conn is not None:
                await conn.close()
        async with self._write_lock:  # a write still in hand finishes (or rolls back) first
            if self._writer is not None:
                await self._writer.close()
        self._reader = self._gate_reader = self._writer = None

    async def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint on its own connection: writers go on meanwhile. When no write came for
        ``truncate_after_idle_seconds``, a TRUNCATE one instead, so the WAL file does not keep its
        high-water mark while the service is idle; when the WAL is above ``WAL_RESTART_ABOVE``, one the
        next write starts the WAL over after (:meth:`_restart`). Returns (WAL frames, frames copied).
        Only for stores opened with ``autocheckpoint=False``."""
        conn = self._checkpointer
        if conn is None:
            return (0, 0)
        idle = time.monotonic() - self._last_write >= self.truncate_after_idle_seconds
        wal = self.path.with_name(self.path.name + "-wal")
        size = wal.stat().st_size if wal.exists() else 0
        mode = "TRUNCATE" if idle and size > 0 else "PASSIVE"
        try:
            row = await conn.run(_checkpoint_sync, mode)
            # The file keeps its size when a write starts it over: its frames count (header + page).
            if mode == "PASSIVE" and row[1] * (self._page_size + 24) > WAL_RESTART_ABOVE:
                row = await self._restart(conn)
        except sqlite3.OperationalError as exc:  # busy: a reader or writer holds it; next second
            log.debug("checkpoint skipped", mode=mode, error=str(exc))
            return (0, 0)
        return (row[1], row[2])

    async def _restart(self, conn: SqliteThread) -> tuple[int, int, int]:
        """A checkpoint that copies every frame, after which the next write starts the WAL over
        (below ``WAL_RESTART_ABOVE`` a PASSIVE one is enough only when no write comes between it and
        the next, which under steady writes never happens). Its last part holds off this process's
        writers, so it is made short:

        1. more PASSIVE checkpoints back to back on the checkpointer's thread, writes going on, until one
           copies only a few frames (each also syncs what came meanwhile: the sync is most of the cost);
        2. under the write lock, a RESTART on the writer's connection on this thread, not waiting for
           anyone (busy timeout 0): it copies and syncs the frames of the last hop, a few milliseconds
           (the RESTART on another thread, waiting in SQLite's busy handler, held writers 55-85 ms
           under single-id load: a p99 of 105 ms);
        3. only when a reader is still on the WAL (or the writer's thread is busy), the RESTART of
           before on the checkpointer: it waits for the reader (its busy timeout, 100 ms), still under
           the write lock, so the next write finds the WAL free."""
        await conn.run(_catch_up_sync)
        async with self._write_lock:
            writer = self.writer
            if writer.idle:
                here = writer.conn
                with contextlib.suppress(sqlite3.OperationalError), not_waiting(here, self.busy_timeout_ms):
                    row = _checkpoint_sync(here, "RESTART")
                    if row[0] == 0:
                        return row
            return await conn.run(_checkpoint_sync, "RESTART")

    async def compact_after_erasure(self, attempts: int = 40) -> bool:
        """Checkpoint and truncate the WAL so erased rows leave no old frames (``secure_delete`` has
        zeroed them in the database file); True when it completed."""
        for _ in range(attempts):
            async with self._write_lock, self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return True
            await asyncio.sleep(0.05)
        log.error("wal checkpoint after erasure did not complete: a long reader holds old frames")
        return False

    async def write_problem(self) -> str | None:
        """None when the database can be written; else why not. After a write failed for want of
        disk, a probe transaction (a page-sized row inserted and deleted, committed) is tried on each
        call, so readiness comes back as soon as writes would work again."""
        if self.write_failure is None:
            return None
        with contextlib.suppress(StoreUnavailable):
            async with self.write() as tx:
                await tx.conn.execute("INSERT INTO store_probe (filler) VALUES (zeroblob(8192))")
                await tx.conn.execute("DELETE FROM store_probe")
        return self.write_failure

    @property
    def writer(self) -> SqliteThread:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    async def ping(self) -> None:
        async with self.reader.execute("SELECT 1") as cur:
            await cur.fetchone()

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[SqliteThread]:
        """The write lock and the writer, with a failure for want of disk turned into StoreUnavailable
        (and the readiness it reports), and the last write's time for the idle WAL truncate."""
        async with self._write_lock:
            conn = self.writer
            changes = conn.total_changes
            try:
                yield conn
            except sqlite3.Error as exc:
                if not _unavailable(exc):
                    raise
                self.write_failure = f"{type(exc).__name__}: {exc}"
                log.error("the database cannot be written", error=self.write_failure)
                raise StoreUnavailable(self.write_failure) from exc
            self.write_failure = None
            if conn.total_changes != changes:  # the dispatcher's empty claims are not writes: idle stays idle
                self._last_write = time.monotonic()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[SqliteWriteTx]:
        """One writing transaction: ``BEGIN IMMEDIATE`` on the one writer, so writers queue (guarantee
        3 of store.base; and 1, 2 and 4 follow from it)."""
        async with self._writing() as conn:
            try:
                await conn.run(begin_sync)
                yield SqliteWriteTx(conn, self._new_id)
            except BaseException:
                # On the writer's thread, after whatever is queued there (a BEGIN whose caller was
                # cancelled still runs): shielded, so a second cancel cannot drop the rollback.
                await asyncio.shield(conn.run(_rollback_sync))
                raise
            await conn.run(commit_sync)

    async def gate(
        self, wanted: dict[str, list[str]], decide: GateDecide[T], bound: ReservationBound | None = None
    ) -> T:
        """The gate transaction as one function (begin, load, ``decide``, writes, commit), no other writer
        meanwhile. A small one (the single-id asks of a group commit) runs on the event loop's thread
        itself, when the writer's thread has nothing in hand and no other process holds the write lock:
        a transaction of a few hundred microseconds costs less than the hop to the writer's thread and
        back, and the two threads no longer take the GIL from each other at every statement. A larger
        one runs on the writer's thread, in one hop."""
        async with self._writing() as conn:
            if conn.idle and sum(len(ids) for ids in wanted.values()) <= INLINE_GATE_IDS:
                with contextlib.suppress(GateBusy):
                    return gate_now_sync(conn.conn, wanted, decide, bound, self.busy_timeout_ms)
            return await conn.run(gate_sync, wanted, decide, bound)

    # -- migrations -------------------------------------------------------------------------------

    async def pending_migrations(self) -> list[str]:
        async with self._write_lock:
            return await migrations.pending_migrations(SqliteMigrations(self.writer), self.migrations_dir)

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction, each recorded once."""
        async with self._write_lock:
            return await migrations.apply_pending(SqliteMigrations(self.writer), self.migrations_dir)


def _checkpoint_sync(conn: sqlite3.Connection, mode: str) -> tuple[int, int, int]:
    """``PRAGMA wal_checkpoint(mode)``: (1 when it could not finish for a reader or writer, WAL frames,
    frames copied)."""
    row = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    return (int(row[0]), int(row[1]), int(row[2]))


def _catch_up_sync(conn: sqlite3.Connection, passes: int = 8, few: int = 64) -> None:
    """PASSIVE checkpoints back to back until one copies fewer than ``few`` frames (or the WAL was
    started over meanwhile: fewer frames copied than before), at most ``passes``."""
    copied = 0
    for _ in range(passes):
        busy, _, now = _checkpoint_sync(conn, "PASSIVE")
        if busy or now - copied < few:
            return
        copied = now


def _rollback_sync(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("ROLLBACK")


class SqliteMaintenance:
    """SQLite's :class:`prefcenter.store.base.Maintenance`: WAL checkpoints, the WAL truncate after an
    erasure, and the one dispatcher per database."""

    def __init__(self, store: SqliteStore) -> None:
        self.store = store
        self._dispatcher_lock: int | None = None

    def rate_bucket(self, channel: str, rate: float) -> None:
        return None  # one dispatcher per database: its own buckets are the deployment's ceiling

    async def checkpoint(self) -> tuple[int, int]:
        return await self.store.checkpoint()

    async def compact_after_erasure(self) -> bool:
        return await self.store.compact_after_erasure()

    async def acquire_dispatcher(self) -> bool:
        """Take the database's dispatcher lock; False when another dispatcher holds it. With SQLite every
        process of a deployment is on this host, so the lock is an exclusive ``flock`` on
        ``<database>.dispatcher.lock``: the OS drops it when its process dies, however it dies, so a
        dispatcher restarted after a crash takes over at once (and releases the dead one's leases)."""
        if self._dispatcher_lock is not None:
            return True
        fd = os.open(f"{self.store.path}.dispatcher.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._dispatcher_lock = fd
        return True

    async def release_dispatcher(self) -> None:
        if self._dispatcher_lock is not None:
            os.close(self._dispatcher_lock)  # closing the descriptor releases the flock
            self._dispatcher_lock = None

    async def release_dead_leases(self) -> int:
        """Holding the dispatcher lock proves every other dispatcher of this database dead (guarantee 5),
        so every lease left is a dead one's: release them (the messages go at once, not after the lease
        runs out). Without the lock, nothing is released."""
        if self._dispatcher_lock is None:
            return 0
        async with self.store.write() as tx:
            return await tx.release_dead_leases()
