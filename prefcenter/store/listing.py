"""The list reads both engines share (API.md "Lists"): keyset pagination over an immutable key, so an
item written while a client pages is seen at most once. The SQL differs only in its placeholders and in
how the topics are aggregated; each adapter passes those in and runs the statement on its reader."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from prefcenter.domain.model import Preferences, QuietHours
from prefcenter.store import decision_log
from prefcenter.store.codec import json_decode, parse_time
from prefcenter.store.decision_log import Engine

Placeholder = Callable[[int], str]


def customers_sql(
    ph: Placeholder,
    topics_expr: str,
    *,
    topic: str | None,
    channel: str | None,
    updated_since: str | None,
    after: str | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """Customers in id order. ``channel`` "none": those without one. With a topic the walk is over
    customer_topics (topic_id, customer_id), without one over the customers' primary key (or, with a
    channel, customers (channel, id))."""
    params: list[Any] = []

    def p(value: Any) -> str:
        params.append(value)
        return ph(len(params))

    clauses: list[str] = []
    if topic is not None:
        source = "customer_topics t JOIN customers c ON c.id = t.customer_id"
        key = "t.customer_id"
        clauses.append(f"t.topic_id = {p(topic)}")
    else:
        source = "customers c"
        key = "c.id"
    if after is not None:
        clauses.append(f"{key} > {p(after)}")
    if channel == "none":
        clauses.append("c.channel IS NULL")
    elif channel is not None:
        clauses.append(f"c.channel = {p(channel)}")
    if updated_since is not None:
        clauses.append(f"c.updated_at >= {p(updated_since)}")
    where = " AND ".join(clauses) or "1 = 1"
    sql = (
        "SELECT c.id, c.channel, c.quiet_start, c.quiet_end, c.max_per_week, c.paused_until, c.updated_at, "
        f"({topics_expr}) FROM {source} WHERE {where} ORDER BY {key} LIMIT {p(limit)}"
    )
    return sql, params


def customer_item(row: Any) -> dict[str, Any]:
    topics = sorted(json_decode(row[7])) if row[7] else []
    return {
        "customer_id": row[0],
        "preferences": Preferences(
            channel=row[1],
            topics=topics,
            quiet_hours=QuietHours(start=row[2], end=row[3]) if row[2] is not None else None,
            max_per_week=row[4],
            paused_until=parse_time(row[5]) if row[5] else None,
        ),
        "updated_at": parse_time(row[6]),
    }


def campaigns_sql(ph: Placeholder, *, after: str | None, limit: int) -> tuple[str, list[Any]]:
    if after is None:
        return f"SELECT id, topic, channels, send_by FROM campaigns ORDER BY id LIMIT {ph(1)}", [limit]
    return (
        f"SELECT id, topic, channels, send_by FROM campaigns WHERE id > {ph(1)} ORDER BY id LIMIT {ph(2)}",
        [after, limit],
    )


def campaign_item(row: Any) -> dict[str, Any]:
    send_by = row[3]
    return {
        "campaign_id": row[0],
        "topic": row[1],
        "channels": json_decode(row[2]),
        "send_by": parse_time(send_by) if isinstance(send_by, str) else send_by,
    }


MESSAGE_COLUMNS = (
    "campaign_id, customer_id, channel, status, attempts, not_before_us, last_error, sent_at, updated_at"
)


def messages_sql(
    ph: Placeholder,
    *,
    campaign_id: str | None,
    customer_id: str | None,
    status: str | None,
    after: str | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """One campaign's outbox rows in customer order, or one customer's in campaign order (both keys are
    the primary key's columns: immutable)."""
    params: list[Any] = []

    def p(value: Any) -> str:
        params.append(value)
        return ph(len(params))

    if campaign_id is not None:
        clauses = [f"campaign_id = {p(campaign_id)}"]
        key = "customer_id"
    else:
        clauses = [f"customer_id = {p(customer_id)}"]
        key = "campaign_id"
    if status is not None:
        clauses.append(f"status = {p(status)}")
    if after is not None:
        clauses.append(f"{key} > {p(after)}")
    sql = (
        f"SELECT {MESSAGE_COLUMNS} FROM outbox WHERE {' AND '.join(clauses)} ORDER BY {key} LIMIT {p(limit)}"
    )
    return sql, params


def message_item(row: Any) -> dict[str, Any]:
    return {
        "campaign_id": row[0],
        "customer_id": row[1],
        "channel": row[2],
        "status": row[3],
        "attempts": row[4],
        "not_before": datetime.fromtimestamp(row[5] / 1_000_000, UTC),
        "last_error": row[6],
        "sent_at": parse_time(row[7]) if row[7] else None,
        "updated_at": parse_time(row[8]),
    }


DECISION_PAGE_COLUMNS = (
    "id, customer_id, campaign_id, at, verdict, reason, channel, not_before, policy_version, kind, explain"
)


DECISION_LOG_COLUMNS = (
    "customer_id, campaign_id, at, verdict, reason, channel, not_before, policy_version, kind, explain"
)


def decisions_sql(
    engine: Engine,
    ph: Placeholder,
    *,
    customer_id: str,
    campaign_id: str | None,
    after: int | None = None,
    limit: int | None = None,
    columns: str = DECISION_PAGE_COLUMNS,
) -> tuple[str, list[Any]]:
    """One customer's decisions in id order (the decision log's order), after decision ``after``: with
    a campaign one seek on ``decisions_by_campaign``, without one a seek per logged campaign
    (store/decision_log.py)."""
    params: list[Any] = []
    clauses: list[str] = []
    if campaign_id is not None:
        params.append(campaign_id)
        clauses.append(f"campaign_id = {ph(len(params))}")
    params.append(customer_id)
    clauses.append(f"customer_id = {ph(len(params))}")
    if after is not None:
        params.append(after)
        clauses.append(f"id > {ph(len(params))}")
    tail = "ORDER BY id"
    if limit is not None:
        params.append(limit)
        tail += f" LIMIT {ph(len(params))}"
    where = " AND ".join(clauses)
    if campaign_id is not None:
        return f"SELECT {columns} FROM decisions WHERE {where} {tail}", params
    return decision_log.customer_rows_sql(engine, columns, where, tail), params


def decision_log_sql(
    engine: Engine, ph: Placeholder, customer_id: str, campaign_id: str | None
) -> tuple[str, list[Any]]:
    """The decision log rows (:data:`DECISION_LOG_COLUMNS`) of one customer, or one message."""
    return decisions_sql(
        engine, ph, customer_id=customer_id, campaign_id=campaign_id, columns=DECISION_LOG_COLUMNS
    )


def suppressions_sql(
    ph: Placeholder, *, channel: str | None, after: tuple[str, str] | None, limit: int
) -> tuple[str, list[Any]]:
    """Suppressions in primary-key order (channel, address_ref): immutable, unlike ``since``."""
    params: list[Any] = []
    clauses: list[str] = []
    if channel is not None:
        params.append(channel)
        clauses.append(f"channel = {ph(len(params))}")
    if after is not None:
        params += list(after)
        clauses.append(f"(channel, address_ref) > ({ph(len(params) - 1)}, {ph(len(params))})")
    params.append(limit)
    where = " AND ".join(clauses) or "1 = 1"
    sql = (
        "SELECT channel, address_ref, reason, since, scope FROM suppressions "
        f"WHERE {where} ORDER BY channel, address_ref LIMIT {ph(len(params))}"
    )
    return sql, params
