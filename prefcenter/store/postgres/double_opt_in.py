"""Double opt-in on PostgreSQL (migration 0021; twin of ``store/sqlite/double_opt_in.py``): the
customer's topics written so that a newly gained ``double_opt_in`` topic is pending and gets its
confirmation mail queued (``notifications`` kind ``email_double_opt_in``) in the same transaction, and
the confirmation itself. Functions of a connection inside the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prefcenter.domain.ledger import format_at
from prefcenter.domain.timewindows import to_us

if TYPE_CHECKING:
    from prefcenter.store.postgres.rows import Conn

_DOI_TOPICS_SQL = "SELECT id FROM topics WHERE double_opt_in = 1"
_DROP_SQL = "DELETE FROM customer_topics WHERE customer_id = $1 AND NOT (topic_id = ANY($2::text[]))"
# Before the topic's row is added: only a topic the customer does not hold yet is gained. At most one
# waiting per (customer, kind, topic): the partial unique index notifications_waiting.
_QUEUE_SQL = (
    "INSERT INTO notifications (customer_id, kind, status, not_before_us, created_at, updated_at, topic) "
    "SELECT $1, 'email_double_opt_in', 'queued', $2, $3, $3, $4 "
    "WHERE EXISTS (SELECT 1 FROM contacts WHERE customer_id = $1 AND channel = 'email') "
    "AND NOT EXISTS (SELECT 1 FROM customer_topics WHERE customer_id = $1 AND topic_id = $4) "
    "ON CONFLICT (customer_id, kind, topic) WHERE status = 'queued' DO NOTHING"
)
_ADD_SQL = (
    "INSERT INTO customer_topics (customer_id, topic_id, pending) "
    "SELECT $1, t, CASE WHEN t = ANY($3::text[]) THEN 1 ELSE 0 END FROM unnest($2::text[]) AS t "
    "ON CONFLICT (customer_id, topic_id) DO NOTHING"
)


async def write_topics(conn: Conn, rows: Sequence[tuple[str, Sequence[str], datetime]]) -> None:
    """Each ``(customer_id, topics, at)``: the customer's topics become ``topics``; a double opt-in topic
    gained is pending, with its confirmation mail queued (due at ``at``)."""
    if not rows:
        return
    doi = {row[0] for row in await conn.fetch(_DOI_TOPICS_SQL)}
    await conn.executemany(_DROP_SQL, [(cid, list(topics)) for cid, topics, _ in rows])
    queue = [(cid, to_us(at), format_at(at), t) for cid, topics, at in rows for t in topics if t in doi]
    if queue:
        await conn.executemany(_QUEUE_SQL, queue)
    added = [(cid, list(topics), sorted(doi.intersection(topics))) for cid, topics, _ in rows if topics]
    if added:
        await conn.executemany(_ADD_SQL, added)


async def confirm_topic(conn: Conn, customer_id: str, topic: str) -> bool:
    """The customer's pending ``topic`` becomes confirmed; False when it is not pending (confirmed
    already, or not the customer's). Delete and insert, so the gate-row triggers see it."""
    status = await conn.execute(
        "DELETE FROM customer_topics WHERE customer_id = $1 AND topic_id = $2 AND pending = 1",
        customer_id,
        topic,
    )
    if status != "DELETE 1":
        return False
    await conn.execute(
        "INSERT INTO customer_topics (customer_id, topic_id, pending) VALUES ($1, $2, 0)", customer_id, topic
    )
    return True
