"""Builds a :class:`Runtime` from settings: the store for the database URL, the pseudonym key."""

from __future__ import annotations

from prefcenter.config import Settings, resolve_secret_key
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import Store
from prefcenter.store.postgres import PostgresStore
from prefcenter.store.sqlite import SqliteStore


def build_store(settings: Settings, *, server: bool = False) -> Store:
    """The store ``PREFCENTER_DATABASE_URL`` names. ``server``: the long-running process, which
    checkpoints SQLite's WAL in the background."""
    if settings.engine == "postgres":
        return PostgresStore(
            settings.database_url, schema=settings.database_schema, max_size=settings.database_pool_size
        )
    return SqliteStore(settings.sqlite_path, autocheckpoint=not server)


def build_runtime(settings: Settings, *, server: bool = False) -> Runtime:
    store = build_store(settings, server=server)
    return Runtime(settings=settings, store=store, pseudonyms=Pseudonymizer(resolve_secret_key(settings)))
