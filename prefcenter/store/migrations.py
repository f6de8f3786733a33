"""The migration runner, engine-neutral: ``NNNN_lowercase_name.sql`` files in a folder, applied in
order, each in its own transaction and recorded once with its checksum.

What only a database engine can do (the record table, the versions it holds, one file applied with
its record in one transaction) is a :class:`MigrationEngine`; the store calls the runner under its
own write lock. Everything else is here: finding and checking the files, checksums, deciding what is
pending, warning when an applied file has changed since, and the errors.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

from prefcenter.domain.ledger import format_at
from prefcenter.store.base import MigrationError

log = structlog.get_logger("prefcenter.store")

MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql\Z")


class MigrationFile(msgspec.Struct, frozen=True):
    """One migration file: its four-digit version and where it is."""

    version: str
    path: Path

    @property
    def name(self) -> str:
        return self.path.name


class MigrationRecord(msgspec.Struct, frozen=True):
    """The record of one applied migration, as the record table holds it (``applied_at`` RFC 3339 Z)."""

    version: str
    name: str
    checksum: str
    applied_at: str


class MigrationEngine(Protocol):
    """What a database engine gives the runner. Calls come one at a time."""

    async def create_record_table(self) -> None:
        """The record table (version, name, checksum, applied_at), unless it exists."""
        ...

    async def applied_checksums(self) -> dict[str, str]:
        """Version -> checksum of every migration recorded as applied."""
        ...

    async def apply(self, sql: str, record: MigrationRecord) -> None:
        """``sql`` and its ``record`` in one transaction; on failure, rolled back and the error raised."""
        ...


def packaged_migrations_dir(engine: str) -> Path:
    """The SQL migrations of ``engine`` shipped inside the package (a wheel carries the repository's
    top-level ``migrations/`` as ``prefcenter/migrations``), or that top-level folder in a checkout."""
    from prefcenter.config import packaged_dir

    return packaged_dir("migrations") / engine


def migration_files(folder: Path) -> list[MigrationFile]:
    """The migrations in ``folder`` in version order; MigrationError for a badly named file or two
    files with one number."""
    files = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_RE.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        files.append(MigrationFile(version=match.group(1), path=path))
    versions = [f.version for f in files]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{folder}: two migrations share a number")
    return files


def checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def applied_checksums(engine: MigrationEngine) -> dict[str, str]:
    """Version -> checksum of the applied migrations (the record table is created first if need be)."""
    await engine.create_record_table()
    return await engine.applied_checksums()


async def pending_migrations(engine: MigrationEngine, folder: Path) -> list[str]:
    """The file names of the migrations in ``folder`` not applied yet, in order."""
    applied = await applied_checksums(engine)
    return [f.name for f in migration_files(folder) if f.version not in applied]


async def apply_pending(engine: MigrationEngine, folder: Path) -> list[str]:
    """Apply pending migrations in order, each in its own transaction, each recorded once; the file
    names applied. A failed one raises MigrationError (those before it stay applied)."""
    done: list[str] = []
    applied = await applied_checksums(engine)
    for migration in migration_files(folder):
        sql = migration.path.read_text(encoding="utf-8")
        digest = checksum(sql)
        if migration.version in applied:
            if applied[migration.version] != digest:
                log.warning("applied migration file has changed since", migration=migration.name)
            continue
        record = MigrationRecord(
            version=migration.version,
            name=migration.name,
            checksum=digest,
            applied_at=format_at(datetime.now(UTC)),
        )
        try:
            await engine.apply(sql, record)
        except Exception as exc:
            raise MigrationError(f"{migration.name} failed and was rolled back: {exc}") from exc
        log.info("applied migration", migration=migration.name)
        done.append(migration.name)
    return done
