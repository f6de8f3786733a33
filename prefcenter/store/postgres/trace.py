"""PostgreSQL: :class:`prefcenter.store.trace.TraceStore`."""

from __future__ import annotations

from prefcenter.store.postgres.reads import PgReads


class PgTrace(PgReads):
    """The :class:`prefcenter.store.trace.TraceStore` part of :class:`PostgresStore`."""
