"""PostgreSQL: :class:`prefcenter.store.replay.ReplayStore` (twin of ``store/sqlite/replay.py``: the
same statements, from ``store/replay.py``, over ``= ANY($1::text[])``, the same orderings; text
columns are ``COLLATE "C"``, so the keyset over customer ids and the bounds on ``at`` order as
SQLite's BINARY does)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefcenter.domain.model import CampaignView
from prefcenter.store.postgres.reads import PgReads, reading
from prefcenter.store.replay import (
    CAMPAIGNS_SQL,
    DOUBLE_OPT_IN_SQL,
    ChunkedReplay,
    campaign_view_from_row,
    replay_statements,
)


class PgReplay(PgReads, ChunkedReplay):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`PostgresStore`."""

    _replay_sql = replay_statements("postgres")

    async def replay_campaigns(self) -> dict[str, CampaignView]:
        with reading():
            rows = await self.db.fetch(CAMPAIGNS_SQL)
        return {row[0]: campaign_view_from_row(row) for row in rows}

    async def replay_double_opt_in_topics(self) -> set[str]:
        with reading():
            rows = await self.db.fetch(DOUBLE_OPT_IN_SQL)
        return {row[0] for row in rows}

    async def _replay_value(self, sql: str, *params: Any) -> Any:
        with reading():
            return await self.db.fetchval(sql, *params)

    async def _replay_rows(self, sql: str, *params: Any) -> Sequence[Any]:
        with reading():
            return await self.db.fetch(sql, *params)

    def _replay_ids(self, ids: list[str]) -> list[str]:
        return ids  # $1::text[]
