"""SQLite: :class:`prefcenter.store.trace.TraceStore` (reads on the reader connection)."""

from __future__ import annotations

from prefcenter.store.sqlite.reads import SqliteReads


class SqliteTrace(SqliteReads):
    """The :class:`prefcenter.store.trace.TraceStore` part of :class:`SqliteStore`."""
