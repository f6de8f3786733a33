"""SQLite: :class:`prefcenter.store.replay.ReplayStore` (reads on the reader connection)."""

from __future__ import annotations

from prefcenter.store.sqlite.reads import SqliteReads


class SqliteReplay(SqliteReads):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`SqliteStore`."""
