"""SQLite: :class:`prefcenter.store.history.HistoryStore` (reads on the reader connection)."""

from __future__ import annotations

from prefcenter.store.sqlite.reads import SqliteReads


class SqliteHistory(SqliteReads):
    """The :class:`prefcenter.store.history.HistoryStore` part of :class:`SqliteStore`."""
