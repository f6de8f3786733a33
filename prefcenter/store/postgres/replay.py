"""PostgreSQL: :class:`prefcenter.store.replay.ReplayStore` (twin of ``store/sqlite/replay.py``: the
same statements over ``= ANY($1::text[])``, the same orderings; text columns are ``COLLATE "C"``, so
the keyset over customer ids orders as SQLite's BINARY does)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from prefcenter.domain.model import CampaignView
from prefcenter.store.postgres.reads import PgReads, reading
from prefcenter.store.replay import (
    CAMPAIGNS_SQL,
    DOUBLE_OPT_IN_SQL,
    REPLAY_CHUNK,
    ReplayChunk,
    campaign_view_from_row,
    chunk_from_rows,
)

_BOUNDARY_SQL = (
    "SELECT customer_id FROM decisions WHERE customer_id > $1 ORDER BY customer_id LIMIT 1 OFFSET $2"
)
_DECISIONS_SQL = (
    "SELECT customer_id, campaign_id || chr(31) || at || chr(31) || verdict || chr(31) || reason "
    "|| chr(31) || coalesce(channel, '') FROM decisions "
    "WHERE customer_id > $1 {upper} ORDER BY customer_id, id"
)
_PROFILES_SQL = """
SELECT c.id, c.ref, c.timezone, c.country, c.contact_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN (SELECT json_object_agg(k.channel, k.address)::text
            FROM contacts k WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END,
       c.created_at
FROM customers c WHERE c.id = ANY($1::text[])
"""
_EVENTS_SQL = """
SELECT c.id, e.seq, e.at, e.action, e.subject, e.value, e.source
FROM customers c JOIN consent_events e ON e.customer_ref = c.ref WHERE c.id = ANY($1::text[])
ORDER BY c.id, e.seq
"""
_CONTACTS_SQL = """
SELECT k.customer_id, k.channel, k.address_ref, s.scope, s.since
FROM contacts k LEFT JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref
WHERE k.customer_id = ANY($1::text[])
"""
_FAILURES_SQL = """
SELECT o.customer_id, o.campaign_id, o.updated_at
FROM outbox o WHERE o.customer_id = ANY($1::text[]) AND o.status IN ('failed', 'suppressed')
"""


class PgReplay(PgReads):
    """The :class:`prefcenter.store.replay.ReplayStore` part of :class:`PostgresStore`."""

    async def replay_campaigns(self) -> dict[str, CampaignView]:
        with reading():
            rows = await self.db.fetch(CAMPAIGNS_SQL)
        return {row[0]: campaign_view_from_row(row) for row in rows}

    async def replay_double_opt_in_topics(self) -> set[str]:
        with reading():
            rows = await self.db.fetch(DOUBLE_OPT_IN_SQL)
        return {row[0] for row in rows}

    async def iter_replay(self, *, chunk: int = REPLAY_CHUNK) -> AsyncIterator[ReplayChunk]:
        lower = ""  # every customer id is longer than this
        while True:
            with reading():
                upper: str | None = await self.db.fetchval(_BOUNDARY_SQL, lower, max(chunk, 1) - 1)
                if upper is None:
                    decisions = await self.db.fetch(_DECISIONS_SQL.format(upper=""), lower)
                else:
                    decisions = await self.db.fetch(
                        _DECISIONS_SQL.format(upper="AND customer_id <= $2"), lower, upper
                    )
            if not decisions:
                return
            ids: list[str] = []
            last = None
            for d in decisions:
                if d[0] != last:
                    last = d[0]
                    ids.append(last)
            with reading():
                profiles = await self.db.fetch(_PROFILES_SQL, ids)
                events = await self.db.fetch(_EVENTS_SQL, ids)
                contacts = await self.db.fetch(_CONTACTS_SQL, ids)
                failures = await self.db.fetch(_FAILURES_SQL, ids)
            yield chunk_from_rows(decisions, profiles, events, contacts, failures)
            if upper is None:
                return
            lower = upper
