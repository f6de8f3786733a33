"""SQLite's part of the migration runner (:mod:`prefcenter.store.migrations`): the record table, the
versions it holds, and one migration applied with its record in one transaction."""

from __future__ import annotations

from pathlib import Path

from prefcenter.store.migrations import MigrationRecord, packaged_migrations_dir
from prefcenter.store.sqlite.thread import SqliteThread


def default_migrations_dir() -> Path:
    """The SQL migrations shipped inside the package (a wheel carries the repository's top-level
    ``migrations/`` as ``prefcenter/migrations``), or that top-level folder in a checkout."""
    return packaged_migrations_dir("sqlite")


class SqliteMigrations:
    """A :class:`prefcenter.store.migrations.MigrationEngine` on the writer connection (the caller
    holds the write lock)."""

    def __init__(self, conn: SqliteThread) -> None:
        self.conn = conn

    async def create_record_table(self) -> None:
        await self.conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL, "
            "checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )

    async def applied_checksums(self) -> dict[str, str]:
        async with self.conn.execute("SELECT version, checksum FROM schema_migrations") as cur:
            return {row[0]: row[1] async for row in cur}

    async def apply(self, sql: str, record: MigrationRecord) -> None:
        """One script, so that a file of many statements and its record commit together (the record's
        values are a checked file name, its version, a hex digest and a timestamp: no quotes)."""
        script = (
            "BEGIN IMMEDIATE;\n"
            f"{sql}\n;\n"
            "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES "
            f"('{record.version}', '{record.name}', '{record.checksum}', '{record.applied_at}');\n"
            "COMMIT;"
        )
        try:
            await self.conn.executescript(script)
        except Exception:
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")
            raise
