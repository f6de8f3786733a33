"""The gate's reads and writes as plain functions of a ``sqlite3`` connection, each run on the
connection's own thread in one hop (:meth:`prefcenter.store.sqlite.thread.SqliteThread.run`): the gate
inputs of a chunk of recipients, the campaign views, the gate load (both at once), the record of what
the gate decided, and :func:`gate_sync`, one whole gate transaction."""

from __future__ import annotations

import sqlite3
from typing import TypeVar, cast

import msgspec
import structlog

from prefcenter.domain.ledger import format_at
from prefcenter.domain.model import CampaignView
from prefcenter.store.base import DecisionRow, GateDecide, GateInputs, QueueRow, Reservation
from prefcenter.store.codec import gate_inputs_from_rows, places_from_contacts
from prefcenter.store.retention import EVERY_RESERVATION, ReservationBound
from prefcenter.store.sqlite.rows import json_decode, json_encode, parse_time
from prefcenter.store.sqlite.thread import not_waiting

log = structlog.get_logger("prefcenter.store")

T = TypeVar("T")


# ``phone_places`` is NULL only for a row written before migration 0012 and not yet filled at start-up
# (or written around the store): its phone contacts are read instead and placed here.
_GATE_STATES_SQL = """
SELECT c.id, c.timezone, c.country, c.channel, c.quiet_start, c.quiet_end, c.max_per_week, c.paused_until,
       c.contact_channels, c.suppressed_channels, instr(c.topic_list, ',' || ?1 || ',') > 0,
       c.marketing_suppressed_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN (SELECT json_group_object(k.channel, k.address) FROM contacts k
            WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END,
       c.pending_topics <> ',' AND instr(c.pending_topics, ',' || ?1 || ',') > 0
FROM customers c WHERE c.id IN (SELECT value FROM json_each(?2))
"""
# Only what the rules can use (issue 14, :class:`prefcenter.store.retention.ReservationBound`): the
# marketing reservations inside the longest window of a cap that counts them (an older one lies outside
# every window a candidate at or after ``at`` can be in), and the campaign's own one at any age (a
# retry's memory). The first is ONE range seek per id on ``reservations_by_time (customer_id, at_us,
# marketing, channel)`` (covering: migration 0024) from the earlier of the two bounds (?5; = ?3 when
# no channel has a longer cap), keeping a row past ?3 or on such a channel (two seeks per id, one per
# bound, cost ~20% more), so it reads only rows inside the longest window however many older ones a
# customer has; the second a primary-key lookup per id (CROSS JOIN keeps the ids the outer loop: never
# a walk of the campaign's reservations).
_GATE_RESERVATIONS_SQL = """
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM json_each(?1) j JOIN reservations r INDEXED BY reservations_by_time
     ON r.customer_id = j.value AND r.at_us > ?5
WHERE r.marketing = 1 AND r.campaign_id <> ?2
  AND (r.at_us > ?3 OR r.channel IN (SELECT value FROM json_each(?4)))
UNION ALL
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM json_each(?1) j CROSS JOIN reservations r ON r.customer_id = j.value AND r.campaign_id = ?2
"""


def _phone_contacts_sync(conn: sqlite3.Connection, customer_id: str) -> str | None:
    row = conn.execute(
        "SELECT json_group_object(channel, address) FROM contacts WHERE customer_id = ? "
        "AND channel IN ('sms', 'voice', 'whatsapp')",
        (customer_id,),
    ).fetchone()
    return None if row is None else cast(str | None, row[0])


def gate_inputs_sync(
    conn: sqlite3.Connection,
    ids: list[str],
    topic: str,
    campaign_id: str,
    snapshot: bool,
    bound: ReservationBound | None = None,
) -> GateInputs:
    """Both gate queries and the engine's inputs built from them (``snapshot``: in a read transaction
    of their own, so the two queries see the same data; ``bound``: see
    :data:`_GATE_RESERVATIONS_SQL`, None for every reservation)."""
    packed = json_encode(ids).decode()
    if snapshot:
        conn.execute("BEGIN")
    try:
        rows = conn.execute(_GATE_STATES_SQL, (topic, packed)).fetchall()
        b = EVERY_RESERVATION if bound is None else bound
        long_since = min(b.long_since_us, b.since_us) if b.long_channels else b.since_us
        args = (packed, campaign_id, b.since_us, json_encode(b.long_channels).decode(), long_since)
        reserved = conn.execute(_GATE_RESERVATIONS_SQL, args).fetchall()
    finally:
        if snapshot:
            conn.execute("COMMIT")
    inputs, unplaced = gate_inputs_from_rows(rows, reserved)
    for cid in unplaced:
        state = inputs.states[cid]
        inputs.states[cid] = msgspec.structs.replace(
            state, places=places_from_contacts(_phone_contacts_sync(conn, cid))
        )
    return inputs


_CAMPAIGN_VIEWS_SQL = (
    "SELECT c.id, c.topic, t.category, c.channels, c.send_by FROM json_each(?) j "
    "JOIN campaigns c ON c.id = j.value JOIN topics t ON t.id = c.topic"
)


def campaign_views_sync(conn: sqlite3.Connection, campaign_ids: list[str]) -> dict[str, CampaignView]:
    rows = conn.execute(_CAMPAIGN_VIEWS_SQL, (json_encode(campaign_ids).decode(),)).fetchall()
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


def gate_load_sync(
    conn: sqlite3.Connection, wanted: dict[str, list[str]], bound: ReservationBound | None = None
) -> tuple[dict[str, CampaignView], dict[str, GateInputs]]:
    """The views of the campaigns in ``wanted`` and, per campaign found, the gate inputs of its ids."""
    views = campaign_views_sync(conn, sorted(wanted))
    inputs = {
        camp: gate_inputs_sync(conn, ids, views[camp].topic, camp, False, bound)
        for camp, ids in wanted.items()
        if camp in views
    }
    return views, inputs


_DELETE_RESERVATION_SQL = "DELETE FROM reservations WHERE customer_id = ? AND campaign_id = ?"
_UPSERT_RESERVATION_SQL = (
    "INSERT OR REPLACE INTO reservations (customer_id, campaign_id, at_us, channel, marketing) "
    "VALUES (?, ?, ?, ?, ?)"
)
_INSERT_DECISION_SQL = (
    "INSERT INTO decisions (customer_id, campaign_id, at, verdict, reason, channel, not_before, "
    "policy_version, kind, explain) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _by_customer(row: DecisionRow) -> str:
    return row[0]


def record_gate_sync(
    conn: sqlite3.Connection,
    upsert: list[tuple[str, str, Reservation]],
    delete: list[tuple[str, str]],
    decisions: list[DecisionRow],
) -> None:
    """In key order, so each B-tree page is visited once per batch rather than once per row (the sort
    is stable: a customer's decision-log rows keep their order)."""
    if delete:
        conn.executemany(_DELETE_RESERVATION_SQL, sorted(delete))
    if upsert:
        conn.executemany(
            _UPSERT_RESERVATION_SQL,
            sorted((cid, camp, r.at_us, r.channel, int(r.marketing)) for cid, camp, r in upsert),
        )
    if decisions:
        ordered = sorted(decisions, key=_by_customer)
        conn.executemany(_INSERT_DECISION_SQL, ordered)


# One outbox row per (campaign, customer): a pair already queued or sent is left alone (a deferred one
# becomes queued when it is now allowed; a withdrawn, failed or suppressed one is queued again).
_QUEUE_SQL = (
    "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, customer_id) DO UPDATE SET "
    "channel = excluded.channel, status = excluded.status, not_before_us = excluded.not_before_us, "
    "lease_until_us = NULL, last_error = NULL, updated_at = excluded.updated_at "
    "WHERE outbox.status IN ('withdrawn', 'failed', 'suppressed') "
    "OR (outbox.status = 'deferred' AND excluded.status = 'queued' "
    "AND outbox.lease_until_us IS NULL)"
)


def queue_sync(conn: sqlite3.Connection, rows: list[QueueRow], stamp: str) -> int:
    """Queue outbox rows (see :data:`_QUEUE_SQL`); the number of rows queued or re-queued."""
    if not rows:
        return 0
    before = conn.total_changes
    conn.executemany(_QUEUE_SQL, [(*row, stamp, stamp) for row in rows])
    return conn.total_changes - before


def gate_sync(
    conn: sqlite3.Connection,
    wanted: dict[str, list[str]],
    decide: GateDecide[T],
    bound: ReservationBound | None = None,
) -> T:
    """One whole gate transaction on the writer's thread: ``BEGIN IMMEDIATE``, the load, ``decide``, its
    writes and the ``COMMIT``; a failure anywhere rolls back and raises (the caller holds the write
    lock, so nothing else runs on this connection meanwhile)."""
    begin_sync(conn)
    return gate_body_sync(conn, wanted, decide, bound)


class GateBusy(Exception):
    """Another connection (another process's writer) holds the database's write lock right now."""


def gate_now_sync(
    conn: sqlite3.Connection,
    wanted: dict[str, list[str]],
    decide: GateDecide[T],
    bound: ReservationBound | None,
    busy_timeout_ms: int,
) -> T:
    """:func:`gate_sync` for the event loop's own thread: its ``BEGIN IMMEDIATE`` does not wait for a
    write lock another process holds (``GateBusy``: run :func:`gate_sync` on the writer's thread
    instead), so the loop is never blocked for longer than the transaction's own work."""
    try:
        with not_waiting(conn, busy_timeout_ms):
            begin_sync(conn)
    except sqlite3.OperationalError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY:
            raise GateBusy from exc
        raise
    return gate_body_sync(conn, wanted, decide, bound)


def gate_body_sync(
    conn: sqlite3.Connection,
    wanted: dict[str, list[str]],
    decide: GateDecide[T],
    bound: ReservationBound | None,
) -> T:
    """The gate transaction after its BEGIN: the load, ``decide``, its writes and the ``COMMIT``, or a
    ROLLBACK and the failure."""
    try:
        views, inputs = gate_load_sync(conn, wanted, bound)
        result, writes = decide(views, inputs)
        record_gate_sync(conn, writes.reserve, writes.release, writes.decisions)
        if writes.queue:
            assert writes.at is not None, "GateWrites.queue needs GateWrites.at"
            queue_sync(conn, writes.queue, format_at(writes.at))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def begin_sync(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE on the writer's thread, first healing what a cancelled caller can leave behind:
    a task cancelled while its BEGIN was queued on the writer's thread never reaches its ``try``, so the
    BEGIN still runs and leaves a transaction nobody owns (every later BEGIN would fail). Calls run on
    this thread in order and the caller holds the write lock, so such a transaction is nobody's work:
    roll it back."""
    if conn.in_transaction:
        log.warning("rolling back a transaction left open by a cancelled caller")
        conn.rollback()
    conn.execute("BEGIN IMMEDIATE")
