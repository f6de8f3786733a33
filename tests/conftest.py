"""Shared fixtures: a real SQLite file per test, the real ASGI app, a clock the test controls."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from prefcenter.api.app import create_app
from prefcenter.config import Settings, load_settings
from prefcenter.domain.model import Topic
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services import keys, topics
from prefcenter.services.policies import load_policy_file
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore, default_migrations_dir

SECRET = "test-secret-key-0123456789"
POLICY_FILE = Path(__file__).resolve().parents[1] / "policies" / "default.toml"


class FakeClock:
    def __init__(self, start: datetime) -> None:
        self.t = start

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **delta: float) -> None:
        self.t += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2026, 11, 22, 9, 0, tzinfo=UTC))


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "prefcenter.db"


@pytest.fixture
def settings(db_path: Path) -> Settings:
    return load_settings({}, database_url=f"sqlite:///{db_path}", secret_key=SECRET, key_cache_seconds=0)


@pytest.fixture
def rt(settings: Settings, db_path: Path, clock: FakeClock) -> Runtime:
    return Runtime(
        settings=settings,
        store=SqliteStore(db_path),
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


def query(api: Api, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` (with ``params``), read from the API's database file."""
    conn = sqlite3.connect(api.rt.store.path)  # type: ignore[attr-defined]
    try:
        return conn.execute(sql, params).fetchall()
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
        yield rt, await keys_and_topics(rt)
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
