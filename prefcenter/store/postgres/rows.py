"""Rows to Structs on PostgreSQL: the column lists the reads and the write transaction share, and the
lookups both make. The decoders are the engine-neutral ones of :mod:`prefcenter.store.codec`: an
asyncpg ``Record`` indexes like a tuple, and each SELECT here returns the columns of its SQLite twin
(``store/sqlite/rows.py``) in the same order, the JSON aggregates as text that decodes to the same
values (PostgreSQL's ``json_object_agg`` text has spaces SQLite's has not; NULL over no rows where
SQLite gives ``{}`` / ``[]``: the decoders read both as empty)."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.ledger import Notice
from prefcenter.domain.model import Customer, Topic
from prefcenter.store.codec import (
    EVENT_COLUMN_COUNT,
    EVENT_COLUMNS,
    campaign_from_row,
    customer_from_row,
    event_from_row,
    event_row,
    notice_from_row,
    topic_from_row,
)

if TYPE_CHECKING:  # the stubs' generics are not subscriptable at run time
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    #: A connection inside a transaction: a plain one, or one of the pool's.
    Conn: TypeAlias = asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]
    #: Where a lookup may run: a connection (in its transaction) or the pool (a connection of its own).
    Source: TypeAlias = Conn | asyncpg.Pool[asyncpg.Record]

__all__ = [
    "CUSTOMERS_SQL",
    "CUSTOMER_BY_REF_SQL",
    "CUSTOMER_SQL",
    "EVENT_COLUMNS",
    "INSERT_EVENT_SQL",
    "customer_from_row",
    "event_from_row",
    "event_row",
    "get_campaign",
    "get_customer",
    "get_customers",
    "get_notice",
    "get_topic",
]

_CUSTOMER_COLUMNS = """
SELECT c.id, c.ref, c.timezone, c.locale, c.country, c.channel, c.quiet_start, c.quiet_end,
       c.max_per_week, c.paused_until, c.created_at, c.updated_at,
       (SELECT json_object_agg(k.channel, k.address)::text FROM contacts k WHERE k.customer_id = c.id),
       (SELECT json_agg(t.topic_id)::text FROM customer_topics t WHERE t.customer_id = c.id),
       c.link_gen
FROM customers c"""
CUSTOMER_SQL = _CUSTOMER_COLUMNS + " WHERE c.id = $1"
CUSTOMER_BY_REF_SQL = _CUSTOMER_COLUMNS + " WHERE c.ref = $1"
CUSTOMERS_SQL = _CUSTOMER_COLUMNS + " WHERE c.id = ANY($1::text[])"
NOTICE_SQL = "SELECT version, texts, sha256, registered_at FROM notices WHERE version = $1"
INSERT_EVENT_SQL = (
    f"INSERT INTO consent_events ({EVENT_COLUMNS}) "
    f"VALUES ({', '.join(f'${i}' for i in range(1, EVENT_COLUMN_COUNT + 1))})"
)
_TOPIC_SQL = "SELECT category, names, descriptions, double_opt_in FROM topics WHERE id = $1"
_CAMPAIGN_SQL = "SELECT topic, channels, send_by, content FROM campaigns WHERE id = $1"


async def get_notice(conn: Source, notice_version: str) -> Notice | None:
    row = await conn.fetchrow(NOTICE_SQL, notice_version)
    return None if row is None else notice_from_row(row)


async def get_customer(conn: Source, customer_id: str) -> Customer | None:
    row = await conn.fetchrow(CUSTOMER_SQL, customer_id)
    return None if row is None else customer_from_row(row)


async def get_customers(conn: Source, ids: list[str]) -> dict[str, Customer]:
    """Many customers in one query (the dispatcher renders a batch at once); the ids found."""
    if not ids:
        return {}
    return {row[0]: customer_from_row(row) for row in await conn.fetch(CUSTOMERS_SQL, ids)}


async def get_topic(conn: Source, topic_id: str) -> Topic | None:
    row = await conn.fetchrow(_TOPIC_SQL, topic_id)
    return None if row is None else topic_from_row(row)


async def get_campaign(conn: Source, campaign_id: str) -> Campaign | None:
    row = await conn.fetchrow(_CAMPAIGN_SQL, campaign_id)
    return None if row is None else campaign_from_row(row)
