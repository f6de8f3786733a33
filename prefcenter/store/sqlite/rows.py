"""Rows to Structs: the column lists the reader and the write transaction share, the mapping of a row
to a Customer, an event or a key, and the lookups both connections make."""

from __future__ import annotations

import aiosqlite

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
    json_decode,
    json_encode,
    key_from_row,
    notice_from_row,
    parse_time,
    topic_from_row,
)
from prefcenter.store.sqlite.thread import SqliteThread

# The reader (aiosqlite) and the writer (a SqliteThread) answer the same awaitable calls.
Conn = aiosqlite.Connection | SqliteThread

__all__ = [
    "CUSTOMER_BY_REF_SQL",
    "CUSTOMER_SQL",
    "EVENT_COLUMNS",
    "INSERT_EVENT_SQL",
    "customer_from_row",
    "event_from_row",
    "event_row",
    "get_campaign",
    "get_customer",
    "get_notice",
    "get_topic",
    "json_decode",
    "json_encode",
    "key_from_row",
    "parse_time",
]


CUSTOMER_SQL = """
SELECT c.id, c.ref, c.timezone, c.locale, c.country, c.channel, c.quiet_start, c.quiet_end,
       c.max_per_week, c.paused_until, c.created_at, c.updated_at,
       (SELECT json_group_object(channel, address) FROM contacts WHERE customer_id = c.id),
       (SELECT json_group_array(topic_id) FROM customer_topics WHERE customer_id = c.id),
       c.link_gen
FROM customers c WHERE c.id = ?
"""
CUSTOMER_BY_REF_SQL = CUSTOMER_SQL.replace("WHERE c.id = ?", "WHERE c.ref = ?")
NOTICE_SQL = "SELECT version, texts, sha256, registered_at FROM notices WHERE version = ?"
INSERT_EVENT_SQL = (
    f"INSERT INTO consent_events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * EVENT_COLUMN_COUNT)})"
)


async def get_notice(conn: Conn, notice_version: str) -> Notice | None:
    async with conn.execute(NOTICE_SQL, (notice_version,)) as cur:
        row = await cur.fetchone()
    return None if row is None else notice_from_row(row)


async def get_customer(conn: Conn, customer_id: str) -> Customer | None:
    async with conn.execute(CUSTOMER_SQL, (customer_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else customer_from_row(row)


async def get_topic(conn: Conn, topic_id: str) -> Topic | None:
    async with conn.execute(
        "SELECT category, names, descriptions, double_opt_in FROM topics WHERE id = ?", (topic_id,)
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else topic_from_row(row)


async def get_campaign(conn: Conn, campaign_id: str) -> Campaign | None:
    async with conn.execute(
        "SELECT topic, channels, send_by, content FROM campaigns WHERE id = ?", (campaign_id,)
    ) as cur:
        row = await cur.fetchone()
    return None if row is None else campaign_from_row(row)
