"""The PostgreSQL schema is the SQLite schema in PostgreSQL's terms (migrations/postgres against
migrations/sqlite): the same tables, columns (type family, NOT NULL, default), primary keys, indexes,
foreign keys and triggers, the same seed rows, and the same behaviour where triggers and constraints
decide it: the ledger's append-only guard, the gate-row strings and the CHECKs.

Each test gets a fresh PostgreSQL schema of its own (``pc_<hex>``, dropped at the end) migrated with
:class:`PgMigrations`, and a fresh SQLite file migrated by :class:`SqliteStore`, read here with plain
``sqlite3``. PostgreSQL: ``PREFCENTER_TEST_PG_DSN`` (default the local test server); unreachable, the
tests skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from prefcenter.store import migrations
from prefcenter.store.base import MigrationError
from prefcenter.store.postgres.schema import (
    MIGRATION_LOCK_KEY,
    PgMigrations,
    default_migrations_dir,
    migrate_locked,
    pending_locked,
)
from prefcenter.store.sqlite import SqliteStore
from prefcenter.store.sqlite import default_migrations_dir as sqlite_migrations_dir
from tests import engines

PG_DSN = engines.postgres_url()

# -- fixtures ---------------------------------------------------------------------------------------


async def _connect(schema: str) -> asyncpg.Connection:
    """A connection whose names resolve in ``schema`` (commits not waiting for the disk: test data);
    PostgreSQL unreachable: the test skips, or fails under CI=true."""
    try:
        return await asyncpg.connect(
            PG_DSN, timeout=5, server_settings={"search_path": schema, "synchronous_commit": "off"}
        )
    except engines.UNREACHABLE as exc:
        engines.postgres_unavailable(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


@asynccontextmanager
async def pg_schema() -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A connection on a new, empty schema of its own, dropped (CASCADE) at the end."""
    schema = f"pc_{uuid.uuid4().hex}"
    conn = await _connect(schema)
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield conn, schema
        finally:
            await conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    finally:
        await conn.close()


async def pg_migrate(conn: asyncpg.Connection) -> float:
    """Apply every PostgreSQL migration with :class:`PgMigrations`; the seconds it took."""
    started = time.perf_counter()
    applied = await migrations.apply_pending(PgMigrations(conn), default_migrations_dir())
    assert applied == [p.name for p in sorted(default_migrations_dir().glob("*.sql"))]
    return time.perf_counter() - started


async def lite_migrated(path: Path) -> sqlite3.Connection:
    """A SQLite file migrated by the SQLite store, opened with plain sqlite3 (foreign keys on, as the
    store has them)."""
    store = SqliteStore(path)
    await store.open()
    try:
        await store.migrate()
    finally:
        await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@pytest.fixture
async def pg_empty() -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    async with pg_schema() as pair:
        yield pair


@pytest.fixture
async def pg(pg_empty: tuple[asyncpg.Connection, str]) -> tuple[asyncpg.Connection, str]:
    """A schema of its own, migrated, for a test that writes."""
    await pg_migrate(pg_empty[0])
    return pg_empty


@pytest.fixture
async def lite(tmp_path: Path) -> AsyncIterator[sqlite3.Connection]:
    conn = await lite_migrated(tmp_path / "parity.db")
    try:
        yield conn
    finally:
        conn.close()


# -- reading the two schemas ------------------------------------------------------------------------

TYPE_FAMILY_SQLITE = {"TEXT": "text", "INTEGER": "integer", "REAL": "real", "BLOB": "blob"}
TYPE_FAMILY_PG = {"text": "text", "bigint": "integer", "double precision": "real", "bytea": "blob"}
FK_ACTION_PG = {"a": "NO ACTION", "r": "RESTRICT", "c": "CASCADE", "n": "SET NULL", "d": "SET DEFAULT"}


def lite_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return [r[0] for r in rows]


async def pg_tables(conn: asyncpg.Connection, schema: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1 "
        "AND table_type = 'BASE TABLE' ORDER BY table_name COLLATE \"C\"",
        schema,
    )
    return [r[0] for r in rows]


def lite_columns(db: sqlite3.Connection, table: str) -> list[tuple[str, str, bool, str | None]]:
    """(name, type family, NOT NULL, default) in column order. A primary key column counts as NOT NULL
    (PostgreSQL's are; SQLite leaves its NOT NULL flag off on a rowid alias, which is never NULL, and on
    the TEXT key of a rowid table, which by an old quirk it does not enforce)."""
    return [
        (name, TYPE_FAMILY_SQLITE[decl], bool(notnull) or pk > 0, default)
        for _cid, name, decl, notnull, default, pk in db.execute(f"PRAGMA table_info({table})")
    ]


async def pg_columns(
    conn: asyncpg.Connection, schema: str, table: str
) -> list[tuple[str, str, bool, str | None]]:
    rows = await conn.fetch(
        "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
        "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
        schema,
        table,
    )
    out = []
    for name, data_type, nullable, default in rows:
        assert data_type in TYPE_FAMILY_PG, f"{table}.{name}: {data_type} is none of the four types"
        if default is not None:  # ''::text -> '' ; 0 -> 0 (as SQLite gives them)
            default = re.sub(r"::(text|bigint|double precision|bytea)$", "", default)
        out.append((name, TYPE_FAMILY_PG[data_type], nullable == "NO", default))
    return out


def lite_primary_key(db: sqlite3.Connection, table: str) -> list[str]:
    cols = [(pk, name) for _cid, name, _t, _nn, _d, pk in db.execute(f"PRAGMA table_info({table})") if pk]
    return [name for _pk, name in sorted(cols)]


PG_INDEXES = """
SELECT t.relname AS table_name, i.relname AS index_name, x.indisunique, x.indisprimary,
       x.indpred IS NOT NULL AS partial,
       EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.contype = 'u') AS constraint,
       array(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n) AS columns
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = $1
"""


def lite_indexes(db: sqlite3.Connection) -> tuple[dict[str, tuple[str, tuple[str, ...], bool, bool]], set]:
    """Named indexes (CREATE INDEX): name -> (table, columns, unique, partial); and the UNIQUE
    constraints as (table, columns)."""
    named: dict[str, tuple[str, tuple[str, ...], bool, bool]] = {}
    uniques: set[tuple[str, tuple[str, ...]]] = set()
    for table in lite_tables(db):
        for _seq, name, unique, origin, partial in db.execute(f"PRAGMA index_list({table})"):
            cols = tuple(r[2] for r in db.execute(f"PRAGMA index_info({name})"))
            if origin == "c":
                named[name] = (table, cols, bool(unique), bool(partial))
            elif origin == "u":
                uniques.add((table, cols))
    return named, uniques


async def pg_indexes(
    conn: asyncpg.Connection, schema: str
) -> tuple[dict[str, tuple[str, tuple[str, ...], bool, bool]], set, dict[str, list[str]]]:
    named: dict[str, tuple[str, tuple[str, ...], bool, bool]] = {}
    uniques: set[tuple[str, tuple[str, ...]]] = set()
    primary: dict[str, list[str]] = {}
    for r in await conn.fetch(PG_INDEXES, schema):
        cols = tuple(r["columns"])
        if r["indisprimary"]:
            primary[r["table_name"]] = list(cols)
        elif r["constraint"]:
            uniques.add((r["table_name"], cols))
        else:
            named[r["index_name"]] = (r["table_name"], cols, r["indisunique"], r["partial"])
    return named, uniques, primary


def lite_foreign_keys(
    db: sqlite3.Connection,
) -> set[tuple[str, tuple[str, ...], str, tuple[str, ...], str, str]]:
    out = set()
    for table in lite_tables(db):
        by_id: dict[int, list[Any]] = {}
        for fid, _seq, ref, col, to, on_update, on_delete, _match in db.execute(
            f"PRAGMA foreign_key_list({table})"
        ):
            by_id.setdefault(fid, [table, [], ref, [], on_update, on_delete])
            by_id[fid][1].append(col)
            by_id[fid][3].append(to)
        for t, cols, ref, tos, upd, dele in by_id.values():
            out.add((t, tuple(cols), ref, tuple(tos), upd, dele))
    return out


PG_FOREIGN_KEYS = """
SELECT t.relname AS table_name, r.relname AS ref,
       array(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n) AS cols,
       array(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n) AS tos,
       c.confupdtype, c.confdeltype
FROM pg_constraint c
JOIN pg_class t ON t.oid = c.conrelid
JOIN pg_class r ON r.oid = c.confrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE c.contype = 'f' AND n.nspname = $1
"""


async def pg_foreign_keys(conn: asyncpg.Connection, schema: str) -> set:
    return {
        (
            r["table_name"],
            tuple(r["cols"]),
            r["ref"],
            tuple(r["tos"]),
            FK_ACTION_PG[r["confupdtype"].decode()],  # "char": bytes
            FK_ACTION_PG[r["confdeltype"].decode()],
        )
        for r in await conn.fetch(PG_FOREIGN_KEYS, schema)
    }


TRIGGER_RE = re.compile(
    r"CREATE TRIGGER (\w+)\s+(BEFORE|AFTER)\s+(INSERT|DELETE|TRUNCATE|UPDATE(?:\s+OF\s+\w+(?:\s*,\s*\w+)*)?)"
    r"\s+ON\s+(?:\w+\.)?(\w+)",
    re.IGNORECASE,
)


def _trigger(sql: str) -> tuple[str, tuple[str, str, str, str]]:
    m = TRIGGER_RE.match(" ".join(sql.split()))
    assert m, sql
    name, timing, event, table = m.groups()
    event = re.sub(r"\s*,\s*", ", ", re.sub(r"\s+", " ", event)).upper()
    return name, (table, timing.upper(), event, "ROW")


def lite_triggers(db: sqlite3.Connection) -> dict[str, tuple[str, str, str, str]]:
    """name -> (table, timing, event, level): every SQLite trigger is FOR EACH ROW."""
    rows = db.execute("SELECT sql FROM sqlite_schema WHERE type = 'trigger'")
    return dict(_trigger(r[0]) for r in rows)


async def pg_triggers(conn: asyncpg.Connection, schema: str) -> dict[str, tuple[str, str, str, str]]:
    rows = await conn.fetch(
        "SELECT pg_get_triggerdef(g.oid) FROM pg_trigger g JOIN pg_class t ON t.oid = g.tgrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = $1 AND NOT g.tgisinternal",
        schema,
    )
    out = {}
    for (definition,) in rows:
        name, (table, timing, event, _) = _trigger(definition)
        level = re.search(r"FOR EACH (ROW|STATEMENT)", definition)
        assert level, definition
        out[name] = (table, timing, event, level.group(1))
    return out


# -- the two engines side by side -------------------------------------------------------------------


def lite_run(db: sqlite3.Connection, sql: str) -> str | None:
    """None, or the error (its message)."""
    try:
        db.execute(sql)
    except sqlite3.Error as exc:
        return str(exc)
    return None


async def pg_run(conn: asyncpg.Connection, sql: str) -> str | None:
    try:
        await conn.execute(sql)
    except asyncpg.PostgresError as exc:
        return str(exc.message)  # without the DETAIL line
    return None


def lite_rows(db: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in db.execute(sql)]


async def pg_rows(conn: asyncpg.Connection, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in await conn.fetch(sql)]


# -- the migrations themselves ----------------------------------------------------------------------


# What only PostgreSQL has, by migration file -> its tables: the deployment-wide rate buckets (several
# dispatchers share a PostgreSQL database; SQLite's one dispatcher keeps its buckets in process).
POSTGRES_ONLY = {"0016_rate_buckets.sql": ("rate_buckets",)}
POSTGRES_ONLY_TABLES = {t for tables in POSTGRES_ONLY.values() for t in tables}


def test_same_migration_files() -> None:
    assert [
        p.name for p in sorted(default_migrations_dir().glob("*.sql")) if p.name not in POSTGRES_ONLY
    ] == [p.name for p in sorted(sqlite_migrations_dir().glob("*.sql"))]
    assert set(POSTGRES_ONLY) <= {p.name for p in default_migrations_dir().glob("*.sql")}
    assert default_migrations_dir().name == "postgres"


def test_lock_key_is_the_documented_one() -> None:
    digest = hashlib.sha256(b"prefcenter-migrate").digest()
    assert int.from_bytes(digest[:8], "big", signed=True) == MIGRATION_LOCK_KEY


async def test_applied_once_recorded_and_locked(pg_empty: tuple[asyncpg.Connection, str]) -> None:
    """Two processes starting at once: one applies every file, the other waits and finds none left;
    the lock is released afterwards; a second run applies nothing."""
    conn, schema = pg_empty
    names = [p.name for p in sorted(default_migrations_dir().glob("*.sql"))]
    assert await pending_locked(conn) == names
    other = await _connect(schema)
    try:
        started = time.perf_counter()
        runs = await asyncio.gather(migrate_locked(conn), migrate_locked(other, default_migrations_dir()))
        elapsed = time.perf_counter() - started
    finally:
        await other.close()
    assert sorted(runs, key=len) == [[], names], runs
    assert elapsed < 5, f"migrating took {elapsed:.2f} s"
    assert await migrate_locked(conn) == [] and await pending_locked(conn) == []
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [r["name"] for r in rows] == names
    for r in rows:
        text = (default_migrations_dir() / r["name"]).read_text(encoding="utf-8")
        assert r["checksum"] == migrations.checksum(text)
    held = await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    )
    assert held == 0


async def test_a_failed_file_is_rolled_back(pg_empty: tuple[asyncpg.Connection, str], tmp_path: Path) -> None:
    conn, _schema = pg_empty
    (tmp_path / "0001_fine.sql").write_text("CREATE TABLE fine (id bigint PRIMARY KEY);\n")
    (tmp_path / "0002_broken.sql").write_text(
        "CREATE TABLE half (id bigint);\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN 1; END; $$;\n"
        "INSERT INTO nowhere VALUES (1);\n"
    )
    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed and was rolled back"):
        await migrate_locked(conn, tmp_path)
    assert await conn.fetchval("SELECT to_regclass('half')") is None
    assert await conn.fetchval("SELECT to_regclass('fine')") is not None
    assert [r[0] for r in await conn.fetch("SELECT name FROM schema_migrations")] == ["0001_fine.sql"]
    assert await pending_locked(conn, tmp_path) == ["0002_broken.sql"]


# -- structure: both schemas read once, after a migration each ----------------------------------------


@dataclass
class Schema:
    tables: list[str]
    columns: dict[str, list[tuple[str, str, bool, str | None]]]
    primary: dict[str, list[str]]
    indexes: dict[str, tuple[str, tuple[str, ...], bool, bool]]
    uniques: set[tuple[str, tuple[str, ...]]]
    foreign_keys: set[tuple[str, tuple[str, ...], str, tuple[str, ...], str, str]]
    triggers: dict[str, tuple[str, str, str, str]]
    rows: dict[str, list[tuple[Any, ...]]]  # every table but schema_migrations
    migrations: list[tuple[str, str]]  # (version, name)
    not_c_text: list[tuple[str, str, str | None]]  # PostgreSQL: text columns of another collation


def lite_snapshot(db: sqlite3.Connection) -> Schema:
    tables = lite_tables(db)
    indexes, uniques = lite_indexes(db)
    return Schema(
        tables=tables,
        columns={t: lite_columns(db, t) for t in tables},
        primary={t: lite_primary_key(db, t) for t in tables},
        indexes=indexes,
        uniques=uniques,
        foreign_keys=lite_foreign_keys(db),
        triggers=lite_triggers(db),
        rows={t: lite_rows(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables if t != "schema_migrations"},
        migrations=lite_rows(db, "SELECT version, name FROM schema_migrations ORDER BY version"),
        not_c_text=[],
    )


async def pg_snapshot(conn: asyncpg.Connection, schema: str) -> Schema:
    """The PostgreSQL schema without what only PostgreSQL has (:data:`POSTGRES_ONLY`, checked present)."""
    tables = await pg_tables(conn, schema)
    assert set(tables) >= POSTGRES_ONLY_TABLES
    tables = [t for t in tables if t not in POSTGRES_ONLY_TABLES]
    indexes, uniques, primary = await pg_indexes(conn, schema)
    indexes = {name: ix for name, ix in indexes.items() if ix[0] not in POSTGRES_ONLY_TABLES}
    uniques = {u for u in uniques if u[0] not in POSTGRES_ONLY_TABLES}
    primary = {t: cols for t, cols in primary.items() if t not in POSTGRES_ONLY_TABLES}
    not_c = await conn.fetch(
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = $1 AND data_type = 'text' AND collation_name IS DISTINCT FROM 'C'",
        schema,
    )
    return Schema(
        tables=tables,
        columns={t: await pg_columns(conn, schema, t) for t in tables},
        primary=primary,
        indexes=indexes,
        uniques=uniques,
        foreign_keys=await pg_foreign_keys(conn, schema),
        triggers=await pg_triggers(conn, schema),
        rows={
            t: await pg_rows(conn, f"SELECT * FROM {t} ORDER BY 1")
            for t in tables
            if t != "schema_migrations"
        },
        migrations=[
            row
            for row in await pg_rows(conn, "SELECT version, name FROM schema_migrations ORDER BY version")
            if row[1] not in POSTGRES_ONLY
        ],
        not_c_text=[tuple(r) for r in not_c],
    )


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Schema, Schema]:
    """(SQLite, PostgreSQL): each migrated once, read, and (PostgreSQL) dropped, for the tests that
    only read the structure."""

    async def read() -> tuple[Schema, Schema]:
        db = await lite_migrated(tmp_path_factory.mktemp("parity") / "parity.db")
        try:
            lite_schema = lite_snapshot(db)
        finally:
            db.close()
        async with pg_schema() as (conn, schema):
            await pg_migrate(conn)
            return lite_schema, await pg_snapshot(conn, schema)

    return asyncio.run(read())


def test_tables_and_columns(schemas: tuple[Schema, Schema]) -> None:
    lite_schema, pg_schema_ = schemas
    assert pg_schema_.tables == lite_schema.tables
    for table in lite_schema.tables:
        assert pg_schema_.columns[table] == lite_schema.columns[table], table
    assert pg_schema_.migrations == lite_schema.migrations


def test_every_text_column_sorts_in_bytes(schemas: tuple[Schema, Schema]) -> None:
    assert schemas[1].not_c_text == []


#: Indexes defined differently on purpose, (SQLite's, PostgreSQL's): migration 0024 makes SQLite's
#: reservations_by_time cover the gate's reservation seek, which measured faster there and slower on
#: PostgreSQL.
DIFFERENT_INDEXES = {
    "reservations_by_time": (
        ("reservations", ("customer_id", "at_us", "marketing", "channel"), False, False),
        ("reservations", ("customer_id", "at_us"), False, False),
    )
}


def test_primary_keys_indexes_and_uniques(schemas: tuple[Schema, Schema]) -> None:
    lite_schema, pg_schema_ = schemas
    assert pg_schema_.primary == lite_schema.primary
    lite_indexes, pg_indexes_ = dict(lite_schema.indexes), dict(pg_schema_.indexes)
    for name, (on_sqlite, on_postgres) in DIFFERENT_INDEXES.items():
        assert (lite_indexes.pop(name), pg_indexes_.pop(name)) == (on_sqlite, on_postgres), name
    assert pg_indexes_ == lite_indexes
    assert pg_schema_.uniques == lite_schema.uniques


def test_foreign_keys(schemas: tuple[Schema, Schema]) -> None:
    assert schemas[1].foreign_keys == schemas[0].foreign_keys


def test_triggers(schemas: tuple[Schema, Schema]) -> None:
    """Every SQLite trigger exists in PostgreSQL under its name, on the same table, event and timing,
    for each row; PostgreSQL adds only the TRUNCATE guards (SQLite has no TRUNCATE)."""
    ours, theirs = schemas[0].triggers, schemas[1].triggers
    assert {name: theirs.get(name) for name in ours} == ours
    assert {name: t[2] for name, t in theirs.items() if name not in ours} == {
        "consent_events_append_only_truncate": "TRUNCATE",
        "notices_registered_once_truncate": "TRUNCATE",
    }


def test_seed_rows(schemas: tuple[Schema, Schema]) -> None:
    """What the migrations leave in a new database, table by table."""
    lite_schema, pg_schema_ = schemas
    assert pg_schema_.rows == lite_schema.rows
    assert {t: rows for t, rows in lite_schema.rows.items() if rows} == {
        "address_refs_idna": [(1, 0)],
        "address_refs_upgrade": [(1, 0)],
        "ledger_head": [(1, 0, "0" * 64)],
        "phone_places_data": [(1, "")],
    }


# -- behaviour --------------------------------------------------------------------------------------

SETUP = [
    "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) VALUES "
    "('news', 'marketing', '{}', '{}', 't', 't'), ('Offers', 'marketing', '{}', '{}', 't', 't'), "
    "('a_b', 'transactional', '{}', '{}', 't', 't'), ('zeta', 'marketing', '{}', '{}', 't', 't'), "
    "('a-b', 'marketing', '{}', '{}', 't', 't')",
    "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at) VALUES "
    "('c1', 'ref1', 'UTC', 'en', 'US', 't', 't'), ('c2', 'ref2', 'UTC', 'en', 'US', 't', 't'), "
    "('c3', 'ref3', 'UTC', 'en', 'US', 't', 't')",
]

EVENT = (
    "INSERT INTO consent_events (seq, id, at, customer_id, customer_ref, action, subject, value, source, "
    "actor, notice_version, evidence, prev_hash, hash, notice_sha256, shape) VALUES "
    "(1, 'e1', '2026-01-01T00:00:00Z', 'c1', 'ref1', 'grant', 'topic:news', 'true', 'api', 'admin', "
    "NULL, '{}', '0', 'h1', 'ab', 2)"
)

# (statement, allowed): run in order on both engines; the guard decides the same on each.
APPEND_ONLY = [
    ("UPDATE consent_events SET hash = 'forged' WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = NULL, hash = 'forged' WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = NULL, customer_ref = NULL WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = NULL, notice_sha256 = NULL WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = NULL, notice_version = 'v1' WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = NULL, seq = 2 WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = 'c2' WHERE seq = 1", False),
    ("UPDATE consent_events SET customer_id = customer_id WHERE seq = 1", False),  # not erased: refused
    ("DELETE FROM consent_events WHERE seq = 1", False),
    ("DELETE FROM consent_events", False),
    ("UPDATE consent_events SET customer_id = NULL WHERE customer_id = 'c1'", True),  # the erasure
    ("UPDATE consent_events SET customer_id = NULL WHERE seq = 1", True),  # erased again: no change
    ("UPDATE consent_events SET customer_id = 'c1' WHERE seq = 1", False),
    ("UPDATE consent_events SET shape = 1, notice_sha256 = NULL WHERE seq = 1", False),
    ("DELETE FROM consent_events WHERE seq = 1", False),
]


async def test_ledger_is_append_only(pg: tuple[asyncpg.Connection, str], lite: sqlite3.Connection) -> None:
    conn, _schema = pg
    second = EVENT.replace("(1, 'e1'", "(2, 'e2'").replace("'0', 'h1'", "'h1', 'h2'")
    for sql in [*SETUP, EVENT, second]:
        assert lite_run(lite, sql) is None and await pg_run(conn, sql) is None, sql
    rows = "SELECT * FROM consent_events ORDER BY seq"
    for sql, allowed in APPEND_ONLY:
        lite_error, pg_error = lite_run(lite, sql), await pg_run(conn, sql)
        if allowed:
            assert (lite_error, pg_error) == (None, None), sql
        else:
            assert lite_error == "consent events are append-only", sql
            assert pg_error == "consent events are append-only", sql
        assert await pg_rows(conn, rows) == lite_rows(lite, rows), sql
    assert lite_rows(lite, "SELECT customer_id, hash FROM consent_events ORDER BY seq") == [
        (None, "h1"),
        (None, "h2"),
    ]
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await conn.execute("UPDATE consent_events SET hash = 'forged'")
    with pytest.raises(asyncpg.IntegrityConstraintViolationError, match="append-only"):
        await conn.execute("TRUNCATE consent_events")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        lite.execute("UPDATE consent_events SET hash = 'forged'")
    assert await conn.fetchval("SELECT count(*) FROM consent_events") == 2


async def test_notices_are_registered_once(
    pg: tuple[asyncpg.Connection, str], lite: sqlite3.Connection
) -> None:
    conn, _schema = pg
    cases = [
        ("INSERT INTO notices (version, texts, sha256, registered_at) VALUES ('v1', '{}', '{}', 't')", None),
        ("INSERT INTO notices (version, texts, sha256, registered_at) VALUES ('v2', '{}', '{}', 't')", None),
        ("UPDATE notices SET texts = '{\"en\":\"x\"}' WHERE version = 'v1'", "notices are registered once"),
        ("DELETE FROM notices WHERE version = 'v2'", "notices are registered once"),
    ]
    for sql, error in cases:
        assert lite_run(lite, sql) == error, sql
        assert await pg_run(conn, sql) == error, sql
    assert await pg_run(conn, "TRUNCATE notices") == "notices are registered once"
    assert await pg_rows(conn, "SELECT version FROM notices ORDER BY 1") == [("v1",), ("v2",)]


GATE_COLUMNS = (
    "SELECT id, contact_channels, suppressed_channels, marketing_suppressed_channels, topic_list "
    "FROM customers ORDER BY id"
)


def contact(customer: str, channel: str, ref: str) -> str:
    return (
        "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES "
        f"('{customer}', '{channel}', 'addr-{customer}-{channel}', '{ref}')"
    )


def suppression(channel: str, ref: str, scope: str = "all") -> str:
    return (
        "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES "
        f"('{channel}', '{ref}', 'bounce', 't', '{scope}')"
    )


# (statement, expected gate columns of one customer afterwards or None: (customer, contact_channels,
# suppressed_channels, marketing_suppressed_channels, topic_list)). Every step also compares every
# customer's gate columns between the two engines.
GATE_STEPS: list[tuple[str, tuple[str, str, str, str, str] | None]] = [
    ("SELECT 1", ("c1", "", "", "", ",")),  # a new customer: the columns' defaults
    (contact("c1", "sms", "r-phone"), ("c1", "sms", "", "", ",")),
    (contact("c1", "email", "r-mail"), ("c1", "email,sms", "", "", ",")),  # channel order, not insertion
    (contact("c2", "email", "r-mail"), ("c2", "email", "", "", ",")),  # one address, two customers
    (contact("c2", "voice", "r-phone"), ("c2", "email,voice", "", "", ",")),
    (suppression("email", "r-mail"), ("c2", "email,voice", "email", "", ",")),
    (suppression("sms", "r-phone", "marketing"), ("c1", "email,sms", "email", "sms", ",")),
    (
        "UPDATE suppressions SET scope = 'all' WHERE channel = 'sms'",
        ("c1", "email,sms", "email,sms", "", ","),
    ),
    (
        "UPDATE suppressions SET scope = 'marketing' WHERE channel = 'email'",
        ("c2", "email,voice", "", "email", ","),
    ),
    (
        "UPDATE contacts SET address_ref = 'r-other' WHERE customer_id = 'c1' AND channel = 'email'",
        ("c1", "email,sms", "sms", "", ","),
    ),
    (
        "UPDATE contacts SET address_ref = 'r-mail' WHERE customer_id = 'c1' AND channel = 'email'",
        ("c1", "email,sms", "sms", "email", ","),
    ),
    (
        "UPDATE contacts SET channel = 'whatsapp' WHERE customer_id = 'c2' AND channel = 'voice'",
        ("c2", "email,whatsapp", "", "email", ","),
    ),
    (
        "UPDATE contacts SET channel = 'sms' WHERE customer_id = 'c2' AND channel = 'whatsapp'",
        ("c2", "email,sms", "sms", "email", ","),
    ),  # now on the suppressed (sms, r-phone)
    ("UPDATE contacts SET address = 'elsewhere' WHERE customer_id = 'c2'", None),  # no ref change: no trigger
    (
        "UPDATE suppressions SET address_ref = 'r-gone' WHERE channel = 'email'",
        ("c2", "email,sms", "sms", "", ","),
    ),
    (
        "UPDATE suppressions SET address_ref = 'r-mail', scope = 'all' WHERE channel = 'email'",
        ("c2", "email,sms", "email,sms", "", ","),
    ),
    ("UPDATE suppressions SET reason = 'complaint'", None),
    ("DELETE FROM suppressions WHERE channel = 'sms'", ("c1", "email,sms", "email", "", ",")),
    (suppression("push", "r-push", "marketing"), None),  # before any contact has it
    (contact("c3", "push", "r-push"), ("c3", "push", "", "push", ",")),
    (contact("c3", "whatsapp", "r-wa"), None),
    (contact("c3", "voice", "r-phone"), None),
    (contact("c3", "sms", "r-phone"), None),
    (contact("c3", "email", "r-mail"), ("c3", "email,push,sms,voice,whatsapp", "email", "push", ",")),
    (
        "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES ('c3', 'push', 'p', 'r-new') "
        "ON CONFLICT (customer_id, channel) DO UPDATE SET address_ref = excluded.address_ref",
        ("c3", "email,push,sms,voice,whatsapp", "email", "", ","),
    ),
    (
        "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES "
        "('whatsapp', 'r-wa', 'stop', 't', 'all') ON CONFLICT (channel, address_ref) DO UPDATE SET scope = excluded.scope",
        ("c3", "email,push,sms,voice,whatsapp", "email,whatsapp", "", ","),
    ),
    (
        "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES "
        "('whatsapp', 'r-wa', 'stop', 't', 'marketing') ON CONFLICT (channel, address_ref) DO UPDATE SET scope = excluded.scope",
        ("c3", "email,push,sms,voice,whatsapp", "email", "whatsapp", ","),
    ),
    (
        "DELETE FROM contacts WHERE customer_id = 'c3' AND channel IN ('email', 'sms', 'voice')",
        ("c3", "push,whatsapp", "", "whatsapp", ","),
    ),
    ("DELETE FROM contacts WHERE customer_id = 'c1'", ("c1", "", "", "", ",")),  # many rows, one statement
    (
        "INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c1', 'zeta')",
        ("c1", "", "", "", ",zeta,"),
    ),
    (
        "INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c1', 'news'), ('c1', 'Offers'), ('c1', 'a_b')",
        ("c1", "", "", "", ",Offers,a_b,news,zeta,"),
    ),  # bytes: 'O' < '_' < 'n'
    (
        "INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c1', 'a-b')",
        ("c1", "", "", "", ",Offers,a-b,a_b,news,zeta,"),
    ),
    (
        "INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c2', 'news')",
        ("c2", "email,sms", "email", "", ",news,"),
    ),
    (
        "DELETE FROM customer_topics WHERE customer_id = 'c1' AND topic_id = 'news'",
        ("c1", "", "", "", ",Offers,a-b,a_b,zeta,"),
    ),
    # No trigger on UPDATE of customer_topics in either schema: the list stays as it was.
    (
        "UPDATE customer_topics SET topic_id = 'news' WHERE customer_id = 'c1' AND topic_id = 'zeta'",
        ("c1", "", "", "", ",Offers,a-b,a_b,zeta,"),
    ),
    ("DELETE FROM customer_topics WHERE customer_id = 'c1'", ("c1", "", "", "", ",,")),  # none left: ',,'
    ("DELETE FROM customers WHERE id = 'c2'", None),  # cascades through the triggers without error
    ("DELETE FROM suppressions", ("c3", "push,whatsapp", "", "", ",")),
]


async def test_gate_rows(pg: tuple[asyncpg.Connection, str], lite: sqlite3.Connection) -> None:
    conn, _schema = pg
    for sql in SETUP:
        assert lite_run(lite, sql) is None and await pg_run(conn, sql) is None, sql
    for sql, expected in GATE_STEPS:
        assert lite_run(lite, sql) is None, sql
        assert await pg_run(conn, sql) is None, sql
        rows = lite_rows(lite, GATE_COLUMNS)
        assert await pg_rows(conn, GATE_COLUMNS) == rows, sql
        if expected is not None:
            assert next(r for r in rows if r[0] == expected[0]) == expected, sql
    assert [r[0] for r in lite_rows(lite, GATE_COLUMNS)] == ["c1", "c3"]


async def test_gate_rows_from_another_search_path(pg: tuple[asyncpg.Connection, str]) -> None:
    """The trigger functions keep the search_path they were created with: a session that names the
    tables with their schema (psql, say) keeps the gate row right."""
    conn, schema = pg
    for sql in SETUP:
        await conn.execute(sql)
    other = await asyncpg.connect(PG_DSN, timeout=5, server_settings={"search_path": "pg_catalog"})
    try:
        await other.execute(
            f'INSERT INTO "{schema}".contacts (customer_id, channel, address, address_ref) '
            "VALUES ('c1', 'sms', 'a', 'r'), ('c1', 'email', 'b', 'q')"
        )
        await other.execute(f"INSERT INTO \"{schema}\".customer_topics VALUES ('c1', 'news')")
        await other.execute(f"INSERT INTO \"{schema}\".suppressions VALUES ('sms', 'r', 'stop', 't', 'all')")
    finally:
        await other.close()
    assert await pg_rows(conn, GATE_COLUMNS) == [
        ("c1", "email,sms", "sms", "", ",news,"),
        ("c2", "", "", "", ","),
        ("c3", "", "", "", ","),
    ]


# (statement, accepted): each alone, in order, on both engines (SETUP and EVENT first).
CONSTRAINTS = [
    (
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, quiet_start) "
        "VALUES ('q', 'rq', 'UTC', 'en', 'US', 't', 't', '22:00')",
        False,
    ),
    (
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, quiet_start, quiet_end) "
        "VALUES ('q', 'rq', 'UTC', 'en', 'US', 't', 't', '22:00', '07:00')",
        True,
    ),
    (
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, channel) "
        "VALUES ('f', 'rf', 'UTC', 'en', 'US', 't', 't', 'fax')",
        False,
    ),
    (
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at) "
        "VALUES ('dup', 'ref1', 'UTC', 'en', 'US', 't', 't')",
        False,
    ),
    (
        "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES ('c1', 'fax', 'a', 'r')",
        False,
    ),
    (
        "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES ('nobody', 'sms', 'a', 'r')",
        False,
    ),
    ("INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c1', 'no-such-topic')", False),
    ("INSERT INTO customer_topics (customer_id, topic_id) VALUES ('c1', 'news')", True),
    ("DELETE FROM topics WHERE id = 'news'", False),
    (
        "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES ('sms', 'r', 'x', 't', 'some')",
        False,
    ),
    ("INSERT INTO ledger_head (id, seq, hash) VALUES (2, 0, 'x')", False),
    (
        "INSERT INTO consent_events (seq, id, at, action, subject, value, source, actor, evidence, prev_hash, hash, "
        "shape) VALUES (2, 'e2', 't', 'a', 's', 'v', 'api', 'x', '{}', 'h1', 'h2', 3)",
        False,
    ),
    (
        "INSERT INTO consent_events (seq, id, at, action, subject, value, source, actor, evidence, prev_hash, hash, "
        "notice_sha256) VALUES (2, 'e2', 't', 'a', 's', 'v', 'api', 'x', '{}', 'h1', 'h2', 'ab')",
        False,
    ),
    (
        "INSERT INTO consent_events (seq, id, at, action, subject, value, source, actor, evidence, prev_hash, hash) "
        "VALUES (2, 'e2', 't', 'a', 's', 'v', 'api', 'x', '{}', 'h1', 'h2')",
        True,
    ),
    (
        "INSERT INTO consent_events (seq, id, at, action, subject, value, source, actor, evidence, prev_hash, hash) "
        "VALUES (2, 'e3', 't', 'a', 's', 'v', 'api', 'x', '{}', 'h2', 'h3')",
        False,
    ),
    (
        "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) VALUES ('k', 'root', 'kh', 'p', 't')",
        False,
    ),
    (
        "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) VALUES ('k', 'admin', 'kh', 'p', 't')",
        True,
    ),
    (
        "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) VALUES ('k2', 'admin', 'kh', 'p', 't')",
        False,
    ),
    (
        "INSERT INTO campaigns (id, topic, channels, content, created_at, updated_at) "
        "VALUES ('k1', 'news', '[]', '{}', 't', 't')",
        True,
    ),
    (
        "INSERT INTO reservations (customer_id, campaign_id, at_us, channel, marketing) VALUES ('c1', 'k1', 1, 'sms', 2)",
        False,
    ),
    (
        "INSERT INTO reservations (customer_id, campaign_id, at_us, channel, marketing) VALUES ('c1', 'k1', 1, 'sms', 1)",
        True,
    ),
    (
        "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, created_at, updated_at) "
        "VALUES ('k1', 'c1', 'sms', 'lost', 0, 't', 't')",
        False,
    ),
    (
        "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, created_at, updated_at) "
        "VALUES ('k1', 'c1', 'sms', 'queued', 0, 't', 't')",
        True,
    ),
    (
        "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at) "
        "VALUES ('c1', 'sms_opt_in', 'queued', 0, 't', 't')",
        True,
    ),
    (
        "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at) "
        "VALUES ('c1', 'sms_opt_in', 'queued', 0, 't', 't')",
        False,
    ),  # one waiting per customer and kind
    (
        "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at) "
        "VALUES ('c1', 'sms_opt_in', 'sent', 0, 't', 't')",
        True,
    ),
    (
        "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at) "
        "VALUES ('c1', 'email_opt_in', 'queued', 0, 't', 't')",
        False,
    ),
    (
        "INSERT INTO inbound_review (channel, address_ref, text, received_at, resolution) "
        "VALUES ('sms', 'r', 'HALT', 't', 'maybe')",
        False,
    ),
    (
        "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES ('sms', 'r', 'HALT', 't')",
        True,
    ),
    ("UPDATE address_refs_upgrade SET contacts_v1 = 2", False),
    ("UPDATE address_refs_idna SET pending = 1", True),
    ("INSERT INTO phone_places_data (id, version) VALUES (2, 'x')", False),
    ("DELETE FROM customers WHERE id = 'c1'", True),  # cascades to contacts, topics, reservations, outbox...
]

# The tables the cases write, and their columns compared: not the generated ids, because a PostgreSQL
# identity spends a value on a refused insert (and never reuses one) where SQLite's rowid does not.
CONSTRAINED_TABLES = {
    "customers": "*",
    "customer_topics": "*",
    "consent_events": "*",
    "campaigns": "*",
    "api_keys": "name, role, key_hash, key_prefix, created_at, revoked_at",
    "reservations": "*",
    "outbox": "*",
    "notifications": "customer_id, kind, status, not_before_us, lease_until_us, attempts, last_error, "
    "created_at, updated_at, sent_at",
    "inbound_review": "channel, address_ref, text, received_at, resolved_at, resolution, resolved_by",
    "address_refs_upgrade": "*",
    "address_refs_idna": "*",
}


async def test_constraints(pg: tuple[asyncpg.Connection, str], lite: sqlite3.Connection) -> None:
    """CHECKs, UNIQUEs, foreign keys, defaults and generated ids decide the same on both engines."""
    conn, _schema = pg
    for sql in [*SETUP, EVENT]:
        assert lite_run(lite, sql) is None and await pg_run(conn, sql) is None, sql
    for sql, accepted in CONSTRAINTS:
        lite_error, pg_error = lite_run(lite, sql), await pg_run(conn, sql)
        assert (lite_error is None, pg_error is None) == (accepted, accepted), (sql, lite_error, pg_error)
    for table, columns in CONSTRAINED_TABLES.items():
        query = f"SELECT {columns} FROM {table}"
        assert sorted(await pg_rows(conn, query), key=repr) == sorted(lite_rows(lite, query), key=repr), table
