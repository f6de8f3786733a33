"""The store itself on PostgreSQL: the asyncpg pool (with its schema on ``search_path``), every writing
transaction's begin, deployment-wide lock, commit and failure, the gate transaction and its retries,
the migrations (run under the schema module's advisory lock), and :class:`PgMaintenance`. The reads are
:class:`~prefcenter.store.postgres.reads.PgReads`.

How the guarantees of :mod:`prefcenter.store.base` hold here, with many processes on one database:

- :meth:`PostgresStore.write` takes a transaction-level advisory lock first (guarantee 3: every
  ``write()`` of the deployment, which is the database and schema, runs one at a time); the lock ends
  with the transaction, so a crashed process never leaves it held.
- :meth:`PostgresStore.gate` takes no advisory lock: it locks its recipients' ``customers`` rows in id
  order (guarantee 1) and runs beside the writers; a gate that loses a deadlock or a serialisation race
  is rolled back and run again from the load.
- A failure of the database itself (down, unreachable, out of disk, read-only) is
  :class:`~prefcenter.store.base.StoreUnavailable` (guarantee 6), and readiness reports it until a probe
  write goes through again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

import asyncpg
import structlog
from asyncpg import exceptions as pgerr

from prefcenter.store.base import GateDecide, RateBucket, StoreUnavailable
from prefcenter.store.postgres import gate as pg_gate
from prefcenter.store.postgres.buckets import SharedBucket
from prefcenter.store.postgres.history import PgHistory
from prefcenter.store.postgres.reads import PgReads, describe, unavailable
from prefcenter.store.postgres.replay import PgReplay
from prefcenter.store.postgres.retention import PgRetention
from prefcenter.store.postgres.schema import default_migrations_dir, migrate_locked, pending_locked
from prefcenter.store.postgres.trace import PgTrace
from prefcenter.store.postgres.webhooks import PgWebhooks
from prefcenter.store.postgres.write import PgWriteTx
from prefcenter.store.retention import ReservationBound

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    from prefcenter.store.postgres.rows import Conn

T = TypeVar("T")

log = structlog.get_logger("prefcenter.store")

#: A gate that loses a deadlock or serialisation race is run again this many times at most.
GATE_RETRIES = 5
_RACES = (pgerr.DeadlockDetectedError, pgerr.SerializationError)

#: The tables whose dead rows an erasure leaves (each holds the customer id or their addresses, or held
#: them in a row version the erasure replaced: the ledger's ``customer_id`` set to NULL).
ERASURE_TABLES = (
    "customers",
    "contacts",
    "customer_topics",
    "decisions",
    "inbound_review",
    "outbox",
    "message_history",
    "reservations",
    "notifications",
    "consent_events",
)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_lock_key(schema: str) -> int:
    """The advisory lock every ``write()`` of one deployment takes: a signed 64-bit number of its
    schema's name, so deployments in other schemas of the same database do not wait for each other."""
    digest = hashlib.sha256(f"prefcenter.store.write:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PostgresStore(PgWebhooks, PgHistory, PgTrace, PgReplay, PgRetention, PgReads):
    """The asyncpg adapter of :class:`prefcenter.store.base.Store`."""

    gate_groups = 3  # row locks order overlapping groups; a group's round trips overlap another's

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        migrations_dir: Path | None = None,
        min_size: int = 2,
        max_size: int = 10,
        new_id: Callable[[], str] | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.migrations_dir = migrations_dir or default_migrations_dir()
        self.max_size = max_size
        self.min_size = min(min_size, max_size)  # a pool of one is a pool of at most one
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self.pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._write_key = write_lock_key(schema or "")
        # Why the last write failed for want of the database (None: the last write went through).
        self.write_failure: str | None = None
        self.maintenance = PgMaintenance(self)
        self._write_lock = asyncio.Lock()

    # -- the pool ---------------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the schema when one is given (``CREATE SCHEMA IF NOT EXISTS``) and open the pool, every
        connection with that schema alone on its ``search_path``."""
        if self.pool is not None:
            return
        settings: dict[str, str] = {}
        if "application_name=" not in self.dsn:  # the DSN's own name wins
            settings["application_name"] = "prefcenter"
        if self.schema is not None:
            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            except (pgerr.UniqueViolationError, pgerr.DuplicateSchemaError):
                pass  # another process created it at the same moment
            finally:
                await conn.close()
            settings["search_path"] = quote_ident(self.schema)
        self.pool = await asyncpg.create_pool(
            self.dsn, min_size=self.min_size, max_size=self.max_size, server_settings=settings
        )
        # Without a schema of its own the store lives in the DSN's: the lock is named after that one.
        current = await self.pool.fetchval("SELECT current_schema()")
        self._write_key = write_lock_key(self.schema if self.schema is not None else str(current or ""))

    async def close(self) -> None:
        if self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()

    # -- writes -----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection for a writing transaction. A failure for want of the database becomes
        StoreUnavailable (and the readiness it reports); a socket error (``OSError``) counts only while
        connecting, since after that one comes from the caller's own code (the database's come as the
        driver's errors)."""
        connected = False
        try:
            async with self.db.acquire() as conn:
                connected = True
                yield conn
        except Exception as exc:
            if not unavailable(exc, connecting=not connected):
                raise
            self.write_failure = describe(exc)
            log.error("the database cannot be written", error=self.write_failure)
            raise StoreUnavailable(self.write_failure) from exc
        self.write_failure = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[PgWriteTx]:
        """One writing transaction on a pooled connection, serialised deployment-wide by a
        transaction-level advisory lock (guarantee 3); commits on clean exit, rolls back on an
        exception."""
        # One writer per process queues here, before taking a pooled connection: writers waiting on the
        # advisory lock would otherwise hold every connection of the pool, and the gate, readiness and
        # the rate buckets would wait for one.
        async with self._write_lock, self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", self._write_key)
            yield PgWriteTx(cast("asyncpg.Connection[asyncpg.Record]", conn), self._new_id)

    async def gate(
        self, wanted: dict[str, list[str]], decide: GateDecide[T], bound: ReservationBound | None = None
    ) -> T:
        """One gate transaction (guarantee 1 by the recipients' row locks, no advisory lock), run again
        from the load after a lost deadlock or serialisation race, :data:`GATE_RETRIES` times at most."""
        async with self._connection() as conn:
            return await self._gate(conn, wanted, decide, bound)

    async def _gate(
        self, conn: Conn, wanted: dict[str, list[str]], decide: GateDecide[T], bound: ReservationBound | None
    ) -> T:
        attempt = 0
        while True:
            try:
                async with conn.transaction():
                    return await pg_gate.gate(conn, wanted, decide, bound)
            except _RACES as exc:
                if attempt >= GATE_RETRIES:
                    raise
                attempt += 1
                log.info("gate lost a race; running it again", attempt=attempt, error=describe(exc))
                await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # noqa: S311 (jitter)

    async def write_problem(self) -> str | None:
        """None when the database can be written; else why not. After a write failed for want of the
        database, a probe transaction (a page-sized row inserted and deleted, committed) is tried on each
        call, so readiness comes back as soon as writes would work again."""
        if self.write_failure is None:
            return None
        with contextlib.suppress(StoreUnavailable):
            async with self.write() as tx:
                await tx.conn.execute("INSERT INTO store_probe (filler) VALUES ($1)", os.urandom(8192))
                await tx.conn.execute("DELETE FROM store_probe")
        return self.write_failure

    # -- migrations -------------------------------------------------------------------------------

    async def pending_migrations(self) -> list[str]:
        async with self.db.acquire() as conn:
            return await pending_locked(conn, self.migrations_dir)

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction, each recorded once (under an
        advisory lock: processes starting together apply each once)."""
        async with self.db.acquire() as conn:
            return await migrate_locked(conn, self.migrations_dir)


class PgMaintenance:
    """PostgreSQL's :class:`prefcenter.store.base.Maintenance`: little to do, since the server keeps its
    own WAL (checkpointer, autovacuum) and several dispatchers share one database."""

    def __init__(self, store: PostgresStore) -> None:
        self.store = store

    def rate_bucket(self, channel: str, rate: float) -> RateBucket | None:
        """The deployment-wide bucket: one ``rate_buckets`` row per channel on the server's clock, so
        the policy's rate is a ceiling for every dispatcher of the deployment together."""
        return SharedBucket(self.store.db, channel, rate)

    async def checkpoint(self) -> tuple[int, int]:
        return (0, 0)  # PostgreSQL's checkpointer and autovacuum do this

    async def compact_after_erasure(self) -> bool:
        """A plain ``VACUUM`` of the tables an erasure touches, without blocking the gate (``VACUUM
        FULL`` would: it takes an ACCESS EXCLUSIVE lock). It prunes the erased rows' dead versions,
        removes their index entries (``INDEX_CLEANUP ON``: else a vacuum with few dead rows leaves the
        indexes as they are) and resamples the planner statistics (``ANALYZE``: their most common values
        and histograms quote column values). It cannot make the bytes leave the files (free space in the
        pages, dead ``pg_statistic`` rows sampled while the person existed), so the answer is False: the
        operator's ``VACUUM FULL`` step is in the README (tests/unit/test_pg_erasure_bytes.py)."""
        try:
            await self.store.db.execute(f"VACUUM (INDEX_CLEANUP ON, ANALYZE) {', '.join(ERASURE_TABLES)}")
        except Exception as exc:  # the erasure has committed: a failed vacuum is the operator's to redo
            log.error("vacuum after erasure failed", error=describe(exc))
            return False
        log.warning(
            "erased rows vacuumed; their bytes may remain in free space within table and index pages, in "
            "dead pg_statistic rows, and in WAL segments not yet recycled (and archived WAL, replicas, "
            "backups) until the operator's VACUUM FULL of these tables and of pg_catalog.pg_statistic, "
            "then CHECKPOINT (README: Erasure on PostgreSQL)",
            tables=list(ERASURE_TABLES),
        )
        return False

    async def acquire_dispatcher(self) -> bool:
        return True  # several dispatchers share one PostgreSQL database (claims: FOR UPDATE SKIP LOCKED)

    async def release_dispatcher(self) -> None:
        return None

    async def release_dead_leases(self) -> int:
        return 0  # no dispatcher can prove the others dead: leases only expire (guarantee 5)
