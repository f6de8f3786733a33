"""SQLite: :class:`prefcenter.store.replay.ReplayStore` (reads on the reader connection).

The statements are ``store/replay.py``'s (:func:`~prefcenter.store.replay.replay_statements`). Each
chunk is five statements over the chunk's customer ids (``json_each``), each served by an index:
the customers' primary key (the keyset, the profiles), ``decisions_by_campaign`` (the chunk's
decisions: one seek per logged campaign),
``consent_events_by_customer`` (customer_ref, seq: each customer's events come in seq order as that
index holds them, without a sort of the chunk; the service checks the order all the same), the
contacts' primary key with the suppressions' (channel, address_ref), ``outbox_by_customer``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefcenter.domain.model import CampaignView
from prefcenter.store.replay import (
    CAMPAIGNS_SQL,
    DOUBLE_OPT_IN_SQL,
    ChunkedReplay,
    campaign_view_from_row,
    replay_statements,
)
from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.rows import json_encode


class SqliteReplay(SqliteReads, ChunkedReplay):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`SqliteStore`."""

    _replay_sql = replay_statements("sqlite")

    async def replay_campaigns(self) -> dict[str, CampaignView]:
        async with self.reader.execute(CAMPAIGNS_SQL) as cur:
            return {row[0]: campaign_view_from_row(row) for row in await cur.fetchall()}

    async def replay_double_opt_in_topics(self) -> set[str]:
        async with self.reader.execute(DOUBLE_OPT_IN_SQL) as cur:
            return {row[0] for row in await cur.fetchall()}

    async def _replay_value(self, sql: str, *params: Any) -> Any:
        async with self.reader.execute(sql, params) as cur:
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _replay_rows(self, sql: str, *params: Any) -> Sequence[Any]:
        async with self.reader.execute(sql, params) as cur:
            return await cur.fetchall()  # type: ignore[return-value]  # a list of tuples

    def _replay_ids(self, ids: list[str]) -> str:
        return json_encode(ids).decode()  # one JSON array: json_each(?)
