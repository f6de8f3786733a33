"""Migrations: applied in order, each recorded once; a failed one leaves the database as it was."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from prefcenter.store.base import MigrationError
from prefcenter.store.sqlite import SqliteStore, default_migrations_dir

pytestmark = pytest.mark.sqlite_only  # SqliteStore on a file, sqlite3 (PostgreSQL: test_schema_parity.py)


def tables(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    finally:
        conn.close()


async def test_applied_once_in_order_and_recorded(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "m.db")
    await store.open()
    try:
        assert await store.pending_migrations() == [
            p.name for p in sorted(default_migrations_dir().glob("*.sql"))
        ]
        first = await store.migrate()
        assert first and await store.migrate() == [] and await store.pending_migrations() == []
    finally:
        await store.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert [r[1] for r in rows] == first
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(default_migrations_dir(), migrations)
    (migrations / "9001_half_broken.sql").write_text(
        "CREATE TABLE half_done (x INTEGER);\nINSERT INTO half_done VALUES (1);\nTHIS IS NOT SQL;\n"
    )
    db = tmp_path / "m.db"
    store = SqliteStore(db, migrations_dir=migrations)
    await store.open()
    try:
        with pytest.raises(MigrationError, match=r"9001_half_broken\.sql"):
            await store.migrate()
        assert await store.pending_migrations() == ["9001_half_broken.sql"]
        assert not store.writer.in_transaction
    finally:
        await store.close()
    assert "half_done" not in tables(db)
    assert "consent_events" in tables(db)  # the good migrations before it stay applied


async def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    (migrations / "add-things.sql").write_text("SELECT 1;")
    store = SqliteStore(tmp_path / "m.db", migrations_dir=migrations)
    await store.open()
    try:
        with pytest.raises(MigrationError, match="NNNN_"):
            await store.migrate()
    finally:
        await store.close()
