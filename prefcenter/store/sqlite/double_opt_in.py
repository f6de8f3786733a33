"""Double opt-in on SQLite (migration 0021): the customer's topics written so that a newly gained
``double_opt_in`` topic is pending and gets its confirmation mail queued (``notifications`` kind
``email_double_opt_in``) in the same transaction, and the confirmation itself. Plain functions of a
``sqlite3`` connection, run on the writer's thread (``SqliteThread.run``) inside the caller's
transaction.

A topic the customer keeps keeps its row (and so its pending flag); a topic they lose loses its row, so
regaining it is a new grant: pending again and a new mail. A customer without an email address gets
the pending flag but no mail (they cannot confirm)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import datetime

from prefcenter.domain.ledger import format_at
from prefcenter.domain.timewindows import to_us
from prefcenter.store.sqlite.rows import json_encode

EMAIL_DOUBLE_OPT_IN = "email_double_opt_in"

_DOI_TOPICS_SQL = "SELECT id FROM topics WHERE double_opt_in = 1"
_DROP_SQL = (
    "DELETE FROM customer_topics WHERE customer_id = ? AND topic_id NOT IN (SELECT value FROM json_each(?))"
)
# Before the topic's row is added: only a topic the customer does not hold yet is gained. At most one
# waiting per (customer, kind, topic): the partial unique index notifications_waiting.
_QUEUE_SQL = (
    "INSERT OR IGNORE INTO notifications (customer_id, kind, status, not_before_us, created_at, "
    "updated_at, topic) SELECT ?1, 'email_double_opt_in', 'queued', ?2, ?3, ?3, ?4 "
    "WHERE EXISTS (SELECT 1 FROM contacts WHERE customer_id = ?1 AND channel = 'email') "
    "AND NOT EXISTS (SELECT 1 FROM customer_topics WHERE customer_id = ?1 AND topic_id = ?4)"
)
_ADD_SQL = (
    "INSERT INTO customer_topics (customer_id, topic_id, pending) VALUES (?, ?, ?) "
    "ON CONFLICT (customer_id, topic_id) DO NOTHING"
)


def write_topics_sync(conn: sqlite3.Connection, rows: Sequence[tuple[str, Sequence[str], datetime]]) -> None:
    """Each ``(customer_id, topics, at)``: the customer's topics become ``topics``; a double opt-in topic
    gained is pending, with its confirmation mail queued (due at ``at``)."""
    if not rows:
        return
    doi = {row[0] for row in conn.execute(_DOI_TOPICS_SQL)}
    conn.executemany(_DROP_SQL, [(cid, json_encode(list(topics)).decode()) for cid, topics, _ in rows])
    if doi:
        conn.executemany(
            _QUEUE_SQL,
            [(cid, to_us(at), format_at(at), t) for cid, topics, at in rows for t in topics if t in doi],
        )
    conn.executemany(_ADD_SQL, [(cid, t, int(t in doi)) for cid, topics, _ in rows for t in topics])


def confirm_topic_sync(conn: sqlite3.Connection, customer_id: str, topic: str) -> bool:
    """The customer's pending ``topic`` becomes confirmed; False when it is not pending (confirmed
    already, or not the customer's). Delete and insert, so the gate-row triggers see it."""
    cur = conn.execute(
        "DELETE FROM customer_topics WHERE customer_id = ? AND topic_id = ? AND pending = 1",
        (customer_id, topic),
    )
    if cur.rowcount != 1:
        return False
    conn.execute(
        "INSERT INTO customer_topics (customer_id, topic_id, pending) VALUES (?, ?, 0)", (customer_id, topic)
    )
    return True
