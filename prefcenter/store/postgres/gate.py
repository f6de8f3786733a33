"""The gate's reads and writes on PostgreSQL, each a function of a connection inside the caller's
transaction (PostgreSQL twin of ``store/sqlite/gate.py``): the recipients' row locks (guarantee 1 of
:mod:`prefcenter.store.base`), the gate inputs of a chunk of recipients, the campaign views, the record
of what the gate decided, the outbox rows it queues, and :func:`gate`, one whole gate transaction's
work.

Batches are written as one statement over arrays (``unnest``) or, for the decision log, with ``COPY``:
one round trip each, where ``executemany`` pays one statement execution per row."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog

from prefcenter.domain.ledger import format_at
from prefcenter.domain.model import CampaignView
from prefcenter.store.base import DecisionRow, GateDecide, GateInputs, QueueRow, Reservation
from prefcenter.store.codec import gate_inputs_from_rows, json_decode, parse_time, places_from_contacts
from prefcenter.store.retention import EVERY_RESERVATION, ReservationBound

if TYPE_CHECKING:
    from prefcenter.store.postgres.rows import Conn

log = structlog.get_logger("prefcenter.store")

T = TypeVar("T")

# The rows are locked in id order as the sort hands them up; only their count comes back.
_LOCK_SQL = (
    "SELECT count(*) FROM (SELECT 1 FROM customers WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE) l"
)

# ``phone_places`` is NULL only for a row written before migration 0012 and not yet filled at start-up
# (or written around the store): its phone contacts are read instead and placed here.
_GATE_STATES_SQL = """
SELECT c.id, c.timezone, c.country, c.channel, c.quiet_start, c.quiet_end, c.max_per_week, c.paused_until,
       c.contact_channels, c.suppressed_channels, strpos(c.topic_list, ',' || $1 || ',') > 0,
       c.marketing_suppressed_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN (SELECT json_object_agg(k.channel, k.address)::text
            FROM contacts k WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END,
       c.pending_topics <> ',' AND strpos(c.pending_topics, ',' || $1 || ',') > 0
FROM customers c WHERE c.id = ANY($2::text[])
"""
# Only what the rules can use (issue 14; see store/sqlite/gate.py): marketing reservations later
# than ``bound``, and the campaign's own one at any age.
_GATE_RESERVATIONS_SQL = """
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM reservations r WHERE r.customer_id = ANY($1::text[]) AND r.at_us > $3
AND r.marketing = 1 AND r.campaign_id <> $2
UNION ALL
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM reservations r WHERE r.customer_id = ANY($1::text[]) AND r.at_us > $5 AND r.at_us <= $3
AND r.marketing = 1 AND r.campaign_id <> $2 AND r.channel = ANY($4::text[])
UNION ALL
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM reservations r WHERE r.customer_id = ANY($1::text[]) AND r.campaign_id = $2
"""
_PHONE_CONTACTS_SQL = (
    "SELECT json_object_agg(channel, address)::text FROM contacts WHERE customer_id = $1 "
    "AND channel IN ('sms', 'voice', 'whatsapp')"
)


async def lock_customers(conn: Conn, ids: Iterable[str]) -> None:
    """Lock these customers' rows until the transaction ends, in id order (so two gates over
    overlapping customers queue instead of deadlocking); ids without a row are skipped."""
    wanted = sorted(set(ids))
    if wanted:
        await conn.fetchval(_LOCK_SQL, wanted)


async def gate_inputs(
    conn: Conn, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
) -> GateInputs:
    """Both gate queries and the engine's inputs built from them (the caller's transaction decides what
    they see: after :func:`lock_customers`, the latest committed state of those customers;
    ``bound``: see :data:`_GATE_RESERVATIONS_SQL`, None for every reservation)."""
    rows = await conn.fetch(_GATE_STATES_SQL, topic, ids)
    b = EVERY_RESERVATION if bound is None else bound
    long_since = min(b.long_since_us, b.since_us) if b.long_channels else b.since_us
    reserved = await conn.fetch(
        _GATE_RESERVATIONS_SQL, ids, campaign_id, b.since_us, list(b.long_channels), long_since
    )
    inputs, unplaced = gate_inputs_from_rows(rows, reserved)
    for cid in unplaced:
        contacts = await conn.fetchval(_PHONE_CONTACTS_SQL, cid)
        inputs.states[cid] = msgspec.structs.replace(
            inputs.states[cid], places=places_from_contacts(contacts)
        )
    return inputs


_CAMPAIGN_VIEWS_SQL = (
    "SELECT c.id, c.topic, t.category, c.channels, c.send_by FROM campaigns c "
    "JOIN topics t ON t.id = c.topic WHERE c.id = ANY($1::text[])"
)


async def campaign_views(conn: Conn, campaign_ids: list[str]) -> dict[str, CampaignView]:
    """The gate's view of these campaigns (with their topics' categories), in one query."""
    if not campaign_ids:
        return {}
    rows = await conn.fetch(_CAMPAIGN_VIEWS_SQL, campaign_ids)
    return {
        row[0]: CampaignView(
            campaign_id=row[0],
            topic=row[1],
            category=row[2],
            channels=tuple(json_decode(row[3])),
            send_by=parse_time(row[4]) if row[4] else None,
        )
        for row in rows
    }


_DELETE_RESERVATIONS_SQL = (
    "DELETE FROM reservations r USING unnest($1::text[], $2::text[]) AS d(customer_id, campaign_id) "
    "WHERE r.customer_id = d.customer_id AND r.campaign_id = d.campaign_id"
)
_UPSERT_RESERVATIONS_SQL = (
    "INSERT INTO reservations (customer_id, campaign_id, at_us, channel, marketing) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[]) "
    "ON CONFLICT (customer_id, campaign_id) DO UPDATE SET at_us = excluded.at_us, "
    "channel = excluded.channel, marketing = excluded.marketing"
)
_DECISION_COLUMNS = (
    "customer_id",
    "campaign_id",
    "at",
    "verdict",
    "reason",
    "channel",
    "not_before",
    "policy_version",
    "kind",
    "explain",
)


def _by_customer(row: DecisionRow) -> str:
    return row[0]


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows as ``width`` column arrays (the parameters of an ``unnest`` statement)."""
    return [list(col) for col in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


async def record_gate(
    conn: Conn,
    upsert: list[tuple[str, str, Reservation]],
    delete: list[tuple[str, str]],
    decisions: list[DecisionRow],
) -> None:
    """Reservations released ((customer, campaign)), then made ((customer, campaign, reservation)), then
    the decision-log rows, in key order as SQLite writes them (the sort is stable: a customer's
    decision-log rows keep their order, and their ``id``\\s follow it: ``COPY`` inserts in order). An
    upsert of one key twice keeps the last (as SQLite's ``INSERT OR REPLACE``)."""
    if delete:
        customers, campaigns = _columns(sorted(set(delete)), 2)
        await conn.execute(_DELETE_RESERVATIONS_SQL, customers, campaigns)
    if upsert:
        last = {(cid, camp): r for cid, camp, r in upsert}
        rows = [(cid, camp, r.at_us, r.channel, int(r.marketing)) for (cid, camp), r in sorted(last.items())]
        await conn.execute(_UPSERT_RESERVATIONS_SQL, *_columns(rows, 5))
    if decisions:
        ordered = sorted(decisions, key=_by_customer)
        await conn.copy_records_to_table("decisions", records=ordered, columns=_DECISION_COLUMNS)


# One outbox row per (campaign, customer): a pair already queued or sent is left alone (a deferred one
# becomes queued when it is now allowed; a withdrawn, failed or suppressed one is queued again).
_QUEUE_SQL = (
    "INSERT INTO outbox AS o (campaign_id, customer_id, channel, status, not_before_us, created_at, "
    "updated_at) SELECT q.campaign_id, q.customer_id, q.channel, q.status, q.not_before_us, "
    "$6::text, $6::text "
    "FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[]) "
    "AS q(campaign_id, customer_id, channel, status, not_before_us) "
    "ON CONFLICT (campaign_id, customer_id) DO UPDATE SET "
    "channel = excluded.channel, status = excluded.status, not_before_us = excluded.not_before_us, "
    "lease_until_us = NULL, last_error = NULL, updated_at = excluded.updated_at "
    "WHERE o.status IN ('withdrawn', 'failed', 'suppressed') "
    "OR (o.status = 'deferred' AND excluded.status = 'queued' AND o.lease_until_us IS NULL)"
)


def _rounds(rows: list[QueueRow]) -> list[list[QueueRow]]:
    """The rows in rounds of distinct (campaign, customer) pairs, the n-th row of a pair in round n:
    one ``INSERT ... ON CONFLICT DO UPDATE`` may not touch a row twice, and rows of different pairs are
    independent, so running the rounds in order is running the rows in order."""
    rounds: list[list[QueueRow]] = []
    seen: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (row[0], row[1])
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append([])
        rounds[n].append(row)
    return rounds


async def queue_messages(conn: Conn, rows: list[QueueRow], stamp: str) -> int:
    """Queue outbox rows (see :data:`_QUEUE_SQL`), ``stamp`` their created_at / updated_at; the number
    of rows queued or re-queued."""
    count = 0
    for batch in _rounds(rows):
        status = await conn.execute(_QUEUE_SQL, *_columns(batch, 5), stamp)
        count += int(status.rsplit(" ", 1)[-1])  # "INSERT 0 <rows inserted or updated>"
    return count


async def gate(
    conn: Conn, wanted: dict[str, list[str]], decide: GateDecide[T], bound: ReservationBound | None = None
) -> T:
    """One gate transaction's work, in the caller's transaction: lock every wanted customer (in id
    order, one statement), load the views and, per campaign found, the inputs of its ids, ``decide``,
    and write what it returned. The caller commits, or rolls back and may run it all again."""
    await lock_customers(conn, (cid for ids in wanted.values() for cid in ids))
    views = await campaign_views(conn, sorted(wanted))
    inputs = {
        camp: await gate_inputs(conn, ids, views[camp].topic, camp, bound)
        for camp, ids in wanted.items()
        if camp in views
    }
    result, writes = decide(views, inputs)
    await record_gate(conn, writes.reserve, writes.release, writes.decisions)
    if writes.queue:
        assert writes.at is not None, "GateWrites.queue needs GateWrites.at"
        await queue_messages(conn, writes.queue, format_at(writes.at))
    return result
