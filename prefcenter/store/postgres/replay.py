"""PostgreSQL: :class:`prefcenter.store.replay.ReplayStore`."""

from __future__ import annotations

from prefcenter.store.postgres.reads import PgReads


class PgReplay(PgReads):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`PostgresStore`."""
