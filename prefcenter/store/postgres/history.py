"""PostgreSQL: :class:`prefcenter.store.history.HistoryStore`."""

from __future__ import annotations

from prefcenter.store.postgres.reads import PgReads


class PgHistory(PgReads):
    """The :class:`prefcenter.store.history.HistoryStore` part of :class:`PostgresStore`."""
