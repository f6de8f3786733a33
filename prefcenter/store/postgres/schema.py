"""PostgreSQL's part of the migration runner (:mod:`prefcenter.store.migrations`): the record table, the
versions it holds, and one migration applied with its record in one transaction; and the advisory lock
that lets only one process at a time migrate a database (every process of a deployment runs the
migrations when it starts).

The migrations are ``migrations/postgres/NNNN_name.sql``: the same file names as SQLite's, and after the
last one the same tables, columns, indexes and triggers, in PostgreSQL's types (``tests/unit/
test_schema_parity.py`` compares the two). Every name resolves through the connection's ``search_path``:
the files name no schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, Final, Protocol

from prefcenter.store import migrations
from prefcenter.store.migrations import MigrationRecord, packaged_migrations_dir

#: The key of the session-level advisory lock held while migrating:
#: ``int.from_bytes(sha256(b"prefcenter-migrate").digest()[:8], "big", signed=True)``. In ``pg_locks``
#: (locktype ``advisory``) it shows as classid 3799271551, objid 4239170857.
MIGRATION_LOCK_KEY: Final = -2128997009302184663


class PgConnection(Protocol):
    """What this module uses of an ``asyncpg.Connection`` (or a pool's connection proxy)."""

    async def execute(self, query: str, *args: Any) -> str: ...

    async def fetch(self, query: str, *args: Any) -> list[Any]: ...

    def transaction(self) -> AbstractAsyncContextManager[Any]: ...

    def is_closed(self) -> bool: ...


def default_migrations_dir() -> Path:
    """The PostgreSQL migrations shipped inside the package (a wheel carries the repository's top-level
    ``migrations/`` as ``prefcenter/migrations``), or that top-level folder in a checkout."""
    return packaged_migrations_dir("postgres")


class PgMigrations:
    """A :class:`prefcenter.store.migrations.MigrationEngine` on one asyncpg connection, outside any
    transaction (each :meth:`apply` is one). Call it under :func:`migration_lock` (as
    :func:`migrate_locked` and :func:`pending_locked` do): two processes creating the record table or
    applying a file at once would collide."""

    def __init__(self, conn: PgConnection) -> None:
        self.conn = conn

    async def create_record_table(self) -> None:
        await self.conn.execute(
            'CREATE TABLE IF NOT EXISTS schema_migrations (version text COLLATE "C" PRIMARY KEY, '
            'name text COLLATE "C" NOT NULL, checksum text COLLATE "C" NOT NULL, '
            'applied_at text COLLATE "C" NOT NULL)'
        )

    async def applied_checksums(self) -> dict[str, str]:
        rows = await self.conn.fetch("SELECT version, checksum FROM schema_migrations")
        return {row[0]: row[1] for row in rows}

    async def apply(self, sql: str, record: MigrationRecord) -> None:
        """The file and its record in one transaction (rolled back, and the error raised, on failure).
        ``execute`` without arguments sends the file through the simple query protocol, which runs a
        script of many statements (plpgsql bodies between ``$$`` included)."""
        async with self.conn.transaction():
            await self.conn.execute(sql)
            await self.conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES ($1, $2, $3, $4)",
                record.version,
                record.name,
                record.checksum,
                record.applied_at,
            )


@asynccontextmanager
async def migration_lock(conn: PgConnection) -> AsyncIterator[None]:
    """Hold the migration advisory lock (session-level: it spans the many transactions of a run) on
    ``conn``, waiting for a process that holds it. A connection that dies drops it with it."""
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        yield
    finally:
        if not conn.is_closed():
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


async def migrate_locked(conn: PgConnection, folder: Path | None = None) -> list[str]:
    """Apply the pending migrations of ``folder`` (default: the packaged ones) under the migration lock;
    the file names applied. A process that waited for another's run finds nothing left to apply."""
    async with migration_lock(conn):
        return await migrations.apply_pending(PgMigrations(conn), folder or default_migrations_dir())


async def pending_locked(conn: PgConnection, folder: Path | None = None) -> list[str]:
    """The file names of the migrations not applied yet, read under the migration lock (it may create
    the record table)."""
    async with migration_lock(conn):
        return await migrations.pending_migrations(PgMigrations(conn), folder or default_migrations_dir())
