"""Shared fixtures: a real database per test (a SQLite file, or with ``--engine=postgres`` a PostgreSQL
schema of its own: tests/engines.py), the real ASGI app, a clock the test controls."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
import structlog
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings, load_settings
from prefcenter.domain.model import Topic
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services import keys, topics
from prefcenter.services.policies import load_policy_file
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import Store
from prefcenter.store.sqlite import SqliteStore, default_migrations_dir
from tests import engines

SECRET = "test-secret-key-0123456789"
POLICY_FILE = Path(__file__).resolve().parents[1] / "policies" / "default.toml"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        choices=engines.ENGINES,
        default=engines.default_engine(),
        help=f"the store the tests run on (default ${engines.ENGINE_ENV} or sqlite); postgres: a schema of "
        f"its own per test in ${engines.POSTGRES_URL_ENV} (default {engines.DEFAULT_POSTGRES_URL})",
    )


def engine_of(config: pytest.Config) -> str:
    engine: str = config.getoption("engine")
    return engine


def pytest_configure(config: pytest.Config) -> None:
    if engine_of(config) not in engines.ENGINES:  # the env default is not checked by argparse's choices
        raise pytest.UsageError(f"--engine / ${engines.ENGINE_ENV}: one of {', '.join(engines.ENGINES)}")


def pytest_report_header(config: pytest.Config) -> str:
    if engine_of(config) == "postgres":
        return f"engine: postgres ({engines.postgres_url()}, a schema per test)"
    return "engine: sqlite"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On PostgreSQL, deselect (never skip) the tests marked ``sqlite_only`` and those that ask for no
    engine fixture (``settings``, ``rt``, ``api``: they would run exactly as on SQLite)."""
    if engine_of(config) != "postgres":
        return
    keep: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if item.get_closest_marker("sqlite_only") or not names & engines.ENGINE_FIXTURES:
            dropped.append(item)
        else:
            keep.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> None:
        self.t += timedelta(**delta)


@pytest.fixture(autouse=True)
def _structlog_config() -> Iterator[None]:
    """Each test starts and ends with the same structlog configuration: a command run in-process (a
    CliRunner ``serve``) configures logging for the whole process (its level filter included), which
    would otherwise hide later tests' log lines from ``structlog.testing.capture_logs``."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "prefcenter.db"


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """PostgreSQL only: this test's schema (the store creates it as it opens), dropped afterwards."""
    schema = engines.new_schema()
    yield schema
    engines.drop_schema(engines.postgres_url(), schema)


@pytest.fixture
async def pg_stores() -> AsyncIterator[list[engines.LoopStore]]:
    """PostgreSQL only: the test's stores; afterwards, on the test's loop, the pools they hold there
    (the app's own loop closes its pool as it shuts down)."""
    stores: list[engines.LoopStore] = []
    yield stores
    for store in stores:
        await store.close_here()


@pytest.fixture
def settings(request: pytest.FixtureRequest, db_path: Path) -> Settings:
    if engine_of(request.config) == "postgres":
        schema: str = request.getfixturevalue("pg_schema")
        return load_settings(
            {},
            database_url=engines.postgres_url(),
            database_schema=schema,
            secret_key=SECRET,
            key_cache_seconds=0,
        )
    return load_settings({}, database_url=f"sqlite:///{db_path}", secret_key=SECRET, key_cache_seconds=0)


def engine_store(request: pytest.FixtureRequest, settings: Settings, db_path: Path) -> Store:
    """The store ``settings`` name: the SQLite file ``db_path``, or the PostgreSQL schema (a
    :class:`~tests.engines.LoopStore`, its pools closed after the test)."""
    if settings.engine == "postgres":
        store = engines.LoopStore(settings.database_url, schema=settings.database_schema)
        request.getfixturevalue("pg_stores").append(store)
        return store
    return SqliteStore(db_path)


@pytest.fixture
def rt(request: pytest.FixtureRequest, settings: Settings, db_path: Path, clock: FakeClock) -> Runtime:
    return Runtime(
        settings=settings,
        store=engine_store(request, settings, db_path),
        pseudonyms=Pseudonymizer(SECRET),
        now=clock,
        policy=load_policy_file(POLICY_FILE),
    )


@dataclass
class Api:
    client: AsyncTestClient[Any]
    rt: Runtime
    headers: dict[str, dict[str, str]]

    def as_(self, role: str) -> dict[str, str]:
        return self.headers[role]


def query(api: Api | Runtime, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (SQLite's ``?`` placeholders, with ``params``), run on a connection of its own
    to the database of ``api`` (or of a Runtime): the SQLite file, or the PostgreSQL schema (``?`` as
    ``$1..$n``); committed, so a test may also write straight into the schema with it."""
    store: Any = (api.rt if isinstance(api, Api) else api).store
    if not isinstance(store, SqliteStore):
        return engines.pg_query(store.dsn, store.schema, sql, params)
    conn = sqlite3.connect(store.path)
    try:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()


TOPICS = {
    "promotions": Topic(category="marketing", names={"en": "Offers", "pl": "Oferty"}),
    "product-news": Topic(category="marketing", names={"en": "Product news"}),
    "order-updates": Topic(category="transactional", names={"en": "Order updates"}),
}


async def keys_and_topics(rt: Runtime) -> dict[str, dict[str, str]]:
    """On an open, migrated store: one API key per role (``test-<role>``) and the TOPICS. Returns the
    keys' headers by role."""
    headers = {}
    for role in ("admin", "marketing", "auditor"):
        _, key = await keys.create_key(rt, role, f"test-{role}")
        headers[role] = {"Authorization": f"Bearer {key}"}
    for topic_id, topic in TOPICS.items():
        await topics.put_topic(rt, topic_id, topic)
    return headers


@asynccontextmanager
async def database_at(
    settings: Settings,
    db: Path,
    clock: FakeClock,
    *,
    pseudonyms: Pseudonymizer | None = None,
    keep: Callable[[str], bool] | None = None,
) -> AsyncIterator[tuple[Runtime, dict[str, dict[str, str]]]]:
    """A database at an older migration: the shipped migrations, minus the ``.sql`` files whose names
    ``keep`` rejects, copied to ``db.parent / "migrations-old"``; a Runtime on ``db`` with them (and
    ``pseudonyms``, by default today's), opened and migrated, with keys_and_topics. Yields the Runtime,
    still open, and the keys' headers; closes the store on the way out."""
    migrations = db.parent / "migrations-old"
    shutil.copytree(default_migrations_dir(), migrations)
    if keep is not None:
        for path in migrations.glob("*.sql"):
            if not keep(path.name):
                path.unlink()
    rt = Runtime(
        settings=settings,
        store=SqliteStore(db, migrations_dir=migrations),
        pseudonyms=pseudonyms if pseudonyms is not None else Pseudonymizer(SECRET),
        now=clock,
        policy=load_policy_file(POLICY_FILE),
    )
    await rt.store.open()
    try:
        await rt.store.migrate()
        headers = {}
        for role in ("admin", "marketing", "auditor"):
            _, key = await keys.create_key(rt, role, f"test-{role}")
            headers[role] = {"Authorization": f"Bearer {key}"}
        # the topics with the columns of migration 0001 (today's put_topic writes later ones too)
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, '2026-11-01T00:00:00.000000Z', '2026-11-01T00:00:00.000000Z')",
                [
                    (tid, t.category, msgspec.json.encode(t.names).decode(), msgspec.json.encode(t.descriptions).decode())
                    for tid, t in TOPICS.items()
                ],
            )
        yield rt, headers
    finally:
        await rt.store.close()


@pytest.fixture
async def api(rt: Runtime) -> AsyncIterator[Api]:
    app = create_app(rt)
    async with AsyncTestClient(app=app) as client:
        yield Api(client, rt, await keys_and_topics(rt))


PROFILE = {
    "timezone": "Europe/Warsaw",
    "locale": "pl",
    "country": "PL",
    "contacts": {
        "email": "ola@example.pl",
        "sms": "+48600100200",
        "push": "device-token",
        "voice": "+48600100200",
    },
}


# COMPLIANCE edge 11: a crm or import grant carries the proof of the original consent.
CRM_EVIDENCE = {
    "ticket": "A-991",
    "source_party": "Example Shop sp. z o.o.",
    "consented_at": "2026-10-01T10:00:00Z",
    "method": "web_form",
}


def prefs_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "channel": "email",
        "topics": ["promotions"],
        "quiet_hours": {"start": "21:00", "end": "08:00"},
        "max_per_week": 2,
        "paused_until": None,
        "provenance": {
            "source": "crm",
            "actor": "agent-17",
            "notice_version": "2026-10",
            "evidence": CRM_EVIDENCE,
        },
    }
    body.update(overrides)
    return body


CAMPAIGN = {
    "topic": "promotions",
    "channels": ["email", "sms"],
    "content": {
        "email": {"subject": "Hi {{ customer_id }}", "text": "Offer. Manage: {{ manage_url }}", "html": "<p>Offer</p>"},
        "sms": {"text": "Offer! {{ unsubscribe_url }}"},
    },
}
