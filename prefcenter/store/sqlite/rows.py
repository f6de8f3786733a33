"""Rows to Structs: the column lists the reader and the write transaction share, the mapping of a row
to a Customer, an event or a key, and the lookups both connections make."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import aiosqlite
import msgspec

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.ledger import EVENT_FIELDS, EVENT_SHAPE, ConsentEvent, Notice, shaped
from prefcenter.domain.model import Contacts, Customer, Preferences, Profile, QuietHours, Topic
from prefcenter.store.base import ApiKey

json_encode = msgspec.json.encode
json_decode = msgspec.json.decode

CUSTOMER_SQL = """
SELECT c.id, c.ref, c.timezone, c.locale, c.country, c.channel, c.quiet_start, c.quiet_end,
       c.max_per_week, c.paused_until, c.created_at, c.updated_at,
       (SELECT json_group_object(channel, address) FROM contacts WHERE customer_id = c.id),
       (SELECT json_group_array(topic_id) FROM customer_topics WHERE customer_id = c.id),
       c.link_gen
FROM customers c WHERE c.id = ?
"""
CUSTOMER_BY_REF_SQL = CUSTOMER_SQL.replace("WHERE c.id = ?", "WHERE c.ref = ?")
# Every event column, then the row's shape (migration 0014): which of them its hash covers.
EVENT_COLUMNS = ", ".join((*EVENT_FIELDS, "shape"))
EVENT_COLUMN_COUNT = len(EVENT_FIELDS) + 1
NOTICE_SQL = "SELECT version, texts, sha256, registered_at FROM notices WHERE version = ?"
INSERT_EVENT_SQL = (
    f"INSERT INTO consent_events ({EVENT_COLUMNS}) VALUES ({', '.join('?' * EVENT_COLUMN_COUNT)})"
)


def event_row(e: ConsentEvent) -> tuple[Any, ...]:
    """A new event as the values of :data:`INSERT_EVENT_SQL` (written in today's shape)."""
    return (
        e.seq,
        e.id,
        e.at,
        e.customer_id,
        e.customer_ref,
        e.action,
        e.subject,
        json_encode(e.value).decode(),
        e.source,
        e.actor,
        e.notice_version,
        e.notice_sha256,
        json_encode(e.evidence).decode(),
        e.prev_hash,
        e.hash,
        EVENT_SHAPE,
    )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def customer_from_row(row: Any) -> Customer:
    contacts = json_decode(row[12]) if row[12] else {}
    topics = sorted(json_decode(row[13])) if row[13] else []
    quiet = QuietHours(start=row[6], end=row[7]) if row[6] is not None else None
    return Customer(
        customer_id=row[0],
        customer_ref=row[1],
        profile=Profile(timezone=row[2], locale=row[3], country=row[4], contacts=Contacts(**contacts)),
        preferences=Preferences(
            channel=row[5],
            topics=topics,
            quiet_hours=quiet,
            max_per_week=row[8],
            paused_until=parse_time(row[9]) if row[9] else None,
        ),
        created_at=parse_time(row[10]),
        updated_at=parse_time(row[11]),
        link_gen=row[14],
    )


def event_from_row(row: Any) -> dict[str, Any]:
    """The event with the keys of its shape (an event written before migration 0014 has no
    ``notice_sha256`` key: its hash does not cover one)."""
    event = dict(zip(EVENT_FIELDS, row[:-1], strict=True))
    event["value"] = json_decode(event["value"])
    event["evidence"] = json_decode(event["evidence"])
    return shaped(event, row[-1])


def notice_from_row(row: Any) -> Notice:
    return Notice(
        notice_version=row[0],
        texts=json_decode(row[1]),
        sha256=json_decode(row[2]),
        registered_at=parse_time(row[3]),
    )


async def get_notice(conn: aiosqlite.Connection, notice_version: str) -> Notice | None:
    async with conn.execute(NOTICE_SQL, (notice_version,)) as cur:
        row = await cur.fetchone()
    return None if row is None else notice_from_row(row)


def key_from_row(row: Any) -> ApiKey:
    return ApiKey(id=row[0], name=row[1], role=row[2], prefix=row[3], created_at=row[4], revoked_at=row[5])


async def get_customer(conn: aiosqlite.Connection, customer_id: str) -> Customer | None:
    async with conn.execute(CUSTOMER_SQL, (customer_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else customer_from_row(row)


async def get_topic(conn: aiosqlite.Connection, topic_id: str) -> Topic | None:
    async with conn.execute(
        "SELECT category, names, descriptions FROM topics WHERE id = ?", (topic_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return Topic(category=row[0], names=json_decode(row[1]), descriptions=json_decode(row[2]))


async def get_campaign(conn: aiosqlite.Connection, campaign_id: str) -> Campaign | None:
    async with conn.execute(
        "SELECT topic, channels, send_by, content FROM campaigns WHERE id = ?", (campaign_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return msgspec.convert(
        {
            "topic": row[0],
            "channels": json_decode(row[1]),
            "send_by": row[2],
            "content": json_decode(row[3]),
        },
        Campaign,
    )
