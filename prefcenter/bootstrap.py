"""Builds a :class:`Runtime` from settings: the store for the database URL, the pseudonym key."""

from __future__ import annotations

from prefcenter.config import Settings, resolve_secret_key
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.services.runtime import Runtime
from prefcenter.store.sqlite import SqliteStore


def build_runtime(settings: Settings, *, server: bool = False) -> Runtime:
    """``server``: the long-running process, which checkpoints the WAL in the background."""
    store = SqliteStore(settings.sqlite_path, autocheckpoint=not server)
    return Runtime(settings=settings, store=store, pseudonyms=Pseudonymizer(resolve_secret_key(settings)))
