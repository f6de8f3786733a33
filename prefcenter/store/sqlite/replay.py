"""SQLite: :class:`prefcenter.store.replay.ReplayStore` (reads on the reader connection).

Each chunk is five statements over the chunk's customer ids (``json_each``), each served by an index:
``decisions_by_customer`` (the keyset and the chunk's decisions), the customers' primary key,
``consent_events_by_customer`` (customer_ref, seq: each customer's events come in seq order as that
index holds them, without a sort of the chunk; the service checks the order all the same), the
contacts' primary key with the suppressions' (channel, address_ref), ``outbox_by_customer``."""

from __future__ import annotations

from collections.abc import AsyncIterator

from prefcenter.domain.model import CampaignView
from prefcenter.store.replay import (
    CAMPAIGNS_SQL,
    DOUBLE_OPT_IN_SQL,
    REPLAY_CHUNK,
    ReplayChunk,
    campaign_view_from_row,
    chunk_from_rows,
)
from prefcenter.store.sqlite.reads import SqliteReads
from prefcenter.store.sqlite.rows import json_encode

# The last customer of the chunk after ``?``: the customer of the chunk-th decision from there on.
_BOUNDARY_SQL = (
    "SELECT customer_id FROM decisions WHERE customer_id > ? ORDER BY customer_id LIMIT 1 OFFSET ?"
)
_DECISIONS_SQL = (
    "SELECT customer_id, campaign_id || char(31) || at || char(31) || verdict || char(31) || reason "
    "|| char(31) || coalesce(channel, '') FROM decisions "
    "WHERE customer_id > ? {upper} ORDER BY customer_id, id"
)
_PROFILES_SQL = """
SELECT c.id, c.ref, c.timezone, c.country, c.contact_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN (SELECT json_group_object(k.channel, k.address) FROM contacts k
            WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END,
       c.created_at
FROM json_each(?) j JOIN customers c ON c.id = j.value
"""
_EVENTS_SQL = """
SELECT c.id, e.seq, e.at, e.action, e.subject, e.value, e.source
FROM json_each(?) j JOIN customers c ON c.id = j.value JOIN consent_events e ON e.customer_ref = c.ref
"""
_CONTACTS_SQL = """
SELECT k.customer_id, k.channel, k.address_ref, s.scope, s.since
FROM json_each(?) j JOIN contacts k ON k.customer_id = j.value
LEFT JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
"""
_FAILURES_SQL = """
SELECT o.customer_id, o.campaign_id, o.updated_at
FROM json_each(?) j JOIN outbox o ON o.customer_id = j.value WHERE o.status IN ('failed', 'suppressed')
"""


class SqliteReplay(SqliteReads):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`SqliteStore`."""

    async def replay_campaigns(self) -> dict[str, CampaignView]:
        async with self.reader.execute(CAMPAIGNS_SQL) as cur:
            return {row[0]: campaign_view_from_row(row) for row in await cur.fetchall()}

    async def replay_double_opt_in_topics(self) -> set[str]:
        async with self.reader.execute(DOUBLE_OPT_IN_SQL) as cur:
            return {row[0] for row in await cur.fetchall()}

    async def iter_replay(self, *, chunk: int = REPLAY_CHUNK) -> AsyncIterator[ReplayChunk]:
        db = self.reader
        lower = ""  # every customer id is longer than this
        while True:
            async with db.execute(_BOUNDARY_SQL, (lower, max(chunk, 1) - 1)) as cur:
                row = await cur.fetchone()
            upper: str | None = None if row is None else row[0]
            params: tuple[str, ...]
            if upper is None:
                sql, params = _DECISIONS_SQL.format(upper=""), (lower,)
            else:
                sql, params = _DECISIONS_SQL.format(upper="AND customer_id <= ?"), (lower, upper)
            async with db.execute(sql, params) as cur:
                decisions = await cur.fetchall()
            if not decisions:
                return
            ids: list[str] = []
            last = None
            for d in decisions:
                if d[0] != last:
                    last = d[0]
                    ids.append(last)
            packed = (json_encode(ids).decode(),)
            async with db.execute(_PROFILES_SQL, packed) as cur:
                profiles = await cur.fetchall()
            async with db.execute(_EVENTS_SQL, packed) as cur:
                events = await cur.fetchall()
            async with db.execute(_CONTACTS_SQL, packed) as cur:
                contacts = await cur.fetchall()
            async with db.execute(_FAILURES_SQL, packed) as cur:
                failures = await cur.fetchall()
            yield chunk_from_rows(decisions, profiles, events, contacts, failures)
            if upper is None:
                return
            lower = upper
