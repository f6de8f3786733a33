"""The embedded store: one SQLite file through aiosqlite, WAL, one writer at a time.

- Every writing transaction starts with ``BEGIN IMMEDIATE`` on the single writer connection, under an
  asyncio lock, so writers queue instead of failing with SQLITE_BUSY.
- Reads use a separate connection and see committed data only.
- ``secure_delete`` is on, and erasure ends with a ``wal_checkpoint(TRUNCATE)``, so erased rows do not
  linger in free pages or old WAL frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite
import msgspec
import structlog

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.engine import CampaignView, CustomerState
from prefcenter.domain.ledger import EVENT_FIELDS, Attribution, Change, ConsentEvent, chain_events, format_at
from prefcenter.domain.model import (
    Contacts,
    Customer,
    Preferences,
    Profile,
    QuietHours,
    Role,
    Topic,
)
from prefcenter.store.base import (
    ApiKey,
    DecisionRow,
    EventFilter,
    GateInputs,
    MigrationError,
    OutboxItem,
    OutboxUpdate,
    QueueRow,
    Reservation,
    StoreUnavailable,
    Suppression,
)

log = structlog.get_logger("prefcenter.store")

JOURNAL_SIZE_LIMIT = 8 * 1024 * 1024  # bytes of WAL file kept after a checkpoint resets it
MIGRATION_RE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql\Z")
_json_encode = msgspec.json.encode
_json_decode = msgspec.json.decode

_CUSTOMER_SQL = """
SELECT c.id, c.ref, c.timezone, c.locale, c.country, c.channel, c.quiet_start, c.quiet_end,
       c.max_per_week, c.paused_until, c.created_at, c.updated_at,
       (SELECT json_group_object(channel, address) FROM contacts WHERE customer_id = c.id),
       (SELECT json_group_array(topic_id) FROM customer_topics WHERE customer_id = c.id),
       c.link_gen
FROM customers c WHERE c.id = ?
"""
_CUSTOMER_BY_REF_SQL = _CUSTOMER_SQL.replace("WHERE c.id = ?", "WHERE c.ref = ?")
_EVENT_COLUMNS = ", ".join(EVENT_FIELDS)


def default_migrations_dir() -> Path:
    """The SQL migrations shipped inside the package (a wheel carries the repository's top-level
    ``migrations/`` as ``prefcenter/migrations``), or that top-level folder in a checkout."""
    from prefcenter.config import packaged_dir

    return packaged_dir("migrations") / "sqlite"


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _customer_from_row(row: Any) -> Customer:
    contacts = _json_decode(row[12]) if row[12] else {}
    topics = sorted(_json_decode(row[13])) if row[13] else []
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
            paused_until=_parse_time(row[9]) if row[9] else None,
        ),
        created_at=_parse_time(row[10]),
        updated_at=_parse_time(row[11]),
        link_gen=row[14],
    )


def _event_from_row(row: Any) -> dict[str, Any]:
    event = dict(zip(EVENT_FIELDS, row, strict=True))
    event["value"] = _json_decode(event["value"])
    event["evidence"] = _json_decode(event["evidence"])
    return event


def _key_from_row(row: Any) -> ApiKey:
    return ApiKey(id=row[0], name=row[1], role=row[2], prefix=row[3], created_at=row[4], revoked_at=row[5])


def _event_where(flt: EventFilter) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if flt.customer_ref is not None:
        clauses.append("customer_ref = ?")
        params.append(flt.customer_ref)
    if flt.since is not None:
        clauses.append("at >= ?")
        params.append(flt.since)
    if flt.until is not None:
        clauses.append("at < ?")
        params.append(flt.until)
    return (" AND ".join(clauses) or "1"), params


async def _get_customer(conn: aiosqlite.Connection, customer_id: str) -> Customer | None:
    async with conn.execute(_CUSTOMER_SQL, (customer_id,)) as cur:
        row = await cur.fetchone()
    return None if row is None else _customer_from_row(row)


async def _get_topic(conn: aiosqlite.Connection, topic_id: str) -> Topic | None:
    async with conn.execute(
        "SELECT category, names, descriptions FROM topics WHERE id = ?", (topic_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return Topic(category=row[0], names=_json_decode(row[1]), descriptions=_json_decode(row[2]))


_GATE_STATES_SQL = """
SELECT c.id, c.timezone, c.country, c.channel, c.quiet_start, c.quiet_end, c.max_per_week, c.paused_until,
       c.contact_channels, c.suppressed_channels, instr(c.topic_list, ',' || ? || ',') > 0
FROM customers c WHERE c.id IN (SELECT value FROM json_each(?))
"""
_GATE_RESERVATIONS_SQL = """
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM json_each(?) j JOIN reservations r ON r.customer_id = j.value
WHERE r.marketing = 1 OR r.campaign_id = ?
"""
_EMPTY: frozenset[Any] = frozenset()
_PAUSED_FOREVER = datetime.max.replace(tzinfo=UTC)

T = TypeVar("T")


async def _in_one_hop(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3 connection, *args)`` on the connection's own thread, in one hop.

    aiosqlite runs every call on that thread and answers through the event loop: a hop per
    ``execute``, ``fetchall`` and cursor close. The gate's reads and writes are a handful of statements
    each, so they go as one function instead (``Connection._execute`` is what aiosqlite's own methods
    use to do exactly this).
    """
    result = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return cast(T, result)


def _begin_sync(conn: sqlite3.Connection) -> None:
    """BEGIN IMMEDIATE on the writer's thread, first healing what a cancelled caller can leave behind:
    a task cancelled while its BEGIN was queued in aiosqlite's thread never reaches its ``try``, so the
    BEGIN still runs and leaves a transaction nobody owns (every later BEGIN would fail). Calls run on
    this thread in order and the caller holds the write lock, so such a transaction is nobody's work:
    roll it back."""
    if conn.in_transaction:
        log.warning("rolling back a transaction left open by a cancelled caller")
        conn.rollback()
    conn.execute("BEGIN IMMEDIATE")


def _gate_inputs_sync(
    conn: sqlite3.Connection, ids: list[str], topic: str, campaign_id: str, snapshot: bool
) -> GateInputs:
    """Both gate queries and the engine's inputs built from them (``snapshot``: in a read transaction
    of their own, so the two queries see the same data)."""
    packed = _json_encode(ids).decode()
    if snapshot:
        conn.execute("BEGIN")
    try:
        rows = conn.execute(_GATE_STATES_SQL, (topic, packed)).fetchall()
        reserved = conn.execute(_GATE_RESERVATIONS_SQL, (packed, campaign_id)).fetchall()
    finally:
        if snapshot:
            conn.execute("COMMIT")
    held: dict[str, dict[str, Reservation]] = {}
    for cid, camp, at_us, channel, marketing in reserved:
        mine = held.get(cid)
        if mine is None:
            mine = held[cid] = {}
        mine[camp] = Reservation(at_us, channel, marketing == 1)
    states: dict[str, CustomerState] = {}
    parse = _parse_time
    sets: dict[str, frozenset[Any]] = {"": _EMPTY}  # few distinct channel lists: one frozenset each
    quiets: dict[tuple[str, str], tuple[str, str]] = {}
    State = CustomerState
    for cid, zone, country, channel, qs, qe, cap, paused, addresses, suppressed, subscribed in rows:
        a = sets.get(addresses)
        if a is None:
            a = sets[addresses] = frozenset(addresses.split(","))
        s = sets.get(suppressed)
        if s is None:
            s = sets[suppressed] = frozenset(suppressed.split(","))
        quiet = None
        if qs is not None:
            quiet = quiets.get((qs, qe))
            if quiet is None:
                quiet = quiets[(qs, qe)] = (qs, qe)
        pause = None
        if paused:
            try:
                pause = parse(paused)
            except ValueError:  # fail closed: an unreadable pause is a pause without end
                log.warning("unreadable paused_until in a stored customer row; treated as paused")
                pause = _PAUSED_FOREVER
        states[cid] = State(cid, zone, country, channel, a, s, subscribed == 1, quiet, cap, pause)
    return GateInputs(states=states, held=held)


_CAMPAIGN_VIEWS_SQL = (
    "SELECT c.id, c.topic, t.category, c.channels, c.send_by FROM json_each(?) j "
    "JOIN campaigns c ON c.id = j.value JOIN topics t ON t.id = c.topic"
)


def _campaign_views_sync(conn: sqlite3.Connection, campaign_ids: list[str]) -> dict[str, CampaignView]:
    rows = conn.execute(_CAMPAIGN_VIEWS_SQL, (_json_encode(campaign_ids).decode(),)).fetchall()
    return {
        row[0]: CampaignView(
            campaign_id=row[0],
            topic=row[1],
            category=row[2],
            channels=tuple(_json_decode(row[3])),
            send_by=_parse_time(row[4]) if row[4] else None,
        )
        for row in rows
    }


def _gate_load_sync(
    conn: sqlite3.Connection, wanted: dict[str, list[str]], begin: bool
) -> tuple[dict[str, CampaignView], dict[str, GateInputs]]:
    if begin:
        _begin_sync(conn)
    views = _campaign_views_sync(conn, sorted(wanted))
    inputs = {
        camp: _gate_inputs_sync(conn, ids, views[camp].topic, camp, False)
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
    "policy_version) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _by_customer(row: DecisionRow) -> str:
    return row[0]


def _record_gate_sync(
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


async def _get_campaign(conn: aiosqlite.Connection, campaign_id: str) -> Campaign | None:
    async with conn.execute(
        "SELECT topic, channels, send_by, content FROM campaigns WHERE id = ?", (campaign_id,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        return None
    return msgspec.convert(
        {
            "topic": row[0],
            "channels": _json_decode(row[1]),
            "send_by": row[2],
            "content": _json_decode(row[3]),
        },
        Campaign,
    )


def _commit_sync(conn: sqlite3.Connection, writes: list[Callable[[sqlite3.Connection], None]]) -> None:
    """The writes queued for the commit, then COMMIT; ROLLBACK if any of them (or the COMMIT) fails
    and the transaction is still open (SQLite itself rolls back after some errors, SQLITE_FULL
    among them)."""
    try:
        for write in writes:
            write(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# Primary result codes (the low byte of the extended code) that say the file cannot be written now,
# through nobody's fault of input: disk full, an I/O error, a read-only or vanished file.
_UNAVAILABLE = frozenset(
    {sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN}
)


def _unavailable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _UNAVAILABLE


class SqliteWriteTx:
    def __init__(self, conn: aiosqlite.Connection, new_id: Any, *, begun: bool = True) -> None:
        self.conn = conn
        self._new_id = new_id
        self.begun = begun  # False: BEGIN IMMEDIATE goes with gate_load (a gate transaction)
        self.at_commit: list[Callable[[sqlite3.Connection], None]] = []

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await _get_customer(self.conn, customer_id)

    async def put_customer(self, customer: Customer, address_refs: dict[str, str], created: bool) -> None:
        p = customer.profile
        stamp = format_at(customer.updated_at)
        if created:
            await self.conn.execute(
                "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, "
                "link_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    customer.customer_id,
                    customer.customer_ref,
                    p.timezone,
                    p.locale,
                    p.country,
                    format_at(customer.created_at),
                    stamp,
                    customer.link_gen,
                ),
            )
        else:
            await self.conn.execute(
                "UPDATE customers SET timezone = ?, locale = ?, country = ?, updated_at = ? WHERE id = ?",
                (p.timezone, p.locale, p.country, stamp, customer.customer_id),
            )
            await self.conn.execute("DELETE FROM contacts WHERE customer_id = ?", (customer.customer_id,))
        await self.conn.executemany(
            "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES (?, ?, ?, ?)",
            [(customer.customer_id, ch, addr, address_refs[ch]) for ch, addr in p.contacts.items()],
        )

    async def set_preferences(self, customer_id: str, preferences: Preferences, at: datetime) -> None:
        qh = preferences.quiet_hours
        pause = preferences.paused_until
        await self.conn.execute(
            "UPDATE customers SET channel = ?, quiet_start = ?, quiet_end = ?, max_per_week = ?, "
            "paused_until = ?, updated_at = ? WHERE id = ?",
            (
                preferences.channel,
                qh.start if qh else None,
                qh.end if qh else None,
                preferences.max_per_week,
                format_at(pause) if pause else None,
                format_at(at),
                customer_id,
            ),
        )
        await self.conn.execute("DELETE FROM customer_topics WHERE customer_id = ?", (customer_id,))
        await self.conn.executemany(
            "INSERT INTO customer_topics (customer_id, topic_id) VALUES (?, ?)",
            [(customer_id, t) for t in preferences.topics],
        )

    async def erase_customer(self, customer_id: str) -> None:
        await self.conn.execute(
            "UPDATE consent_events SET customer_id = NULL WHERE customer_id = ?", (customer_id,)
        )
        await self.conn.execute("DELETE FROM decisions WHERE customer_id = ?", (customer_id,))
        await self.conn.execute(
            "DELETE FROM inbound_review WHERE address_ref IN "
            "(SELECT address_ref FROM contacts WHERE customer_id = ?)",
            (customer_id,),
        )
        await self.conn.execute("DELETE FROM customers WHERE id = ?", (customer_id,))

    async def topic_categories(self, topic_ids: Iterable[str]) -> dict[str, str]:
        ids = list(topic_ids)
        async with self.conn.execute(
            "SELECT id, category FROM topics WHERE id IN (SELECT value FROM json_each(?))",
            (_json_encode(ids).decode(),),
        ) as cur:
            return {row[0]: row[1] async for row in cur}

    async def get_topic(self, topic_id: str) -> Topic | None:
        return await _get_topic(self.conn, topic_id)

    async def put_topic(self, topic_id: str, topic: Topic, at: datetime) -> bool:
        stamp = format_at(at)
        async with self.conn.execute("SELECT 1 FROM topics WHERE id = ?", (topic_id,)) as cur:
            exists = await cur.fetchone() is not None
        await self.conn.execute(
            "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET category = excluded.category, "
            "names = excluded.names, descriptions = excluded.descriptions, updated_at = excluded.updated_at",
            (
                topic_id,
                topic.category,
                _json_encode(topic.names).decode(),
                _json_encode(topic.descriptions).decode(),
                stamp,
                stamp,
            ),
        )
        return not exists

    async def topic_in_use(self, topic_id: str) -> bool:
        async with self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM customer_topics WHERE topic_id = ?)", (topic_id,)
        ) as cur:
            row = await cur.fetchone()
        if row and row[0]:
            return True
        async with self.conn.execute(
            "SELECT EXISTS (SELECT 1 FROM campaigns WHERE topic = ?)", (topic_id,)
        ) as cur:
            row = await cur.fetchone()
        return bool(row and row[0])

    async def delete_topic(self, topic_id: str) -> bool:
        cur = await self.conn.execute("DELETE FROM topics WHERE id = ?", (topic_id,))
        return cur.rowcount > 0

    async def append_events(
        self,
        changes: list[Change],
        *,
        customer_id: str | None,
        customer_ref: str | None,
        attribution: Attribution,
        at: datetime,
    ) -> list[ConsentEvent]:
        if not changes:
            return []
        async with self.conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1") as cur:
            head = await cur.fetchone()
        assert head is not None, "ledger_head row missing: migration 0001 not applied"
        events = chain_events(
            changes,
            customer_id=customer_id,
            customer_ref=customer_ref,
            attribution=attribution,
            head_seq=head[0],
            head_hash=head[1],
            at=at,
            new_id=self._new_id,
        )
        await self.conn.executemany(
            f"INSERT INTO consent_events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * len(EVENT_FIELDS))})",
            [
                (
                    e.seq,
                    e.id,
                    e.at,
                    e.customer_id,
                    e.customer_ref,
                    e.action,
                    e.subject,
                    _json_encode(e.value).decode(),
                    e.source,
                    e.actor,
                    e.notice_version,
                    _json_encode(e.evidence).decode(),
                    e.prev_hash,
                    e.hash,
                )
                for e in events
            ],
        )
        last = events[-1]
        await self.conn.execute(
            "UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (last.seq, last.hash)
        )
        return events

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return await _get_campaign(self.conn, campaign_id)

    async def put_campaign(self, campaign_id: str, campaign: Campaign, at: datetime) -> bool:
        stamp = format_at(at)
        async with self.conn.execute("SELECT 1 FROM campaigns WHERE id = ?", (campaign_id,)) as cur:
            exists = await cur.fetchone() is not None
        await self.conn.execute(
            "INSERT INTO campaigns (id, topic, channels, send_by, content, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET topic = excluded.topic, "
            "channels = excluded.channels, send_by = excluded.send_by, content = excluded.content, "
            "updated_at = excluded.updated_at",
            (
                campaign_id,
                campaign.topic,
                _json_encode(campaign.channels).decode(),
                format_at(campaign.send_by) if campaign.send_by else None,
                _json_encode(campaign.content).decode(),
                stamp,
                stamp,
            ),
        )
        return not exists

    async def gate_inputs(self, ids: list[str], topic: str, campaign_id: str) -> GateInputs:
        return await _in_one_hop(self.conn, _gate_inputs_sync, ids, topic, campaign_id, False)

    async def campaign_views(self, campaign_ids: list[str]) -> dict[str, CampaignView]:
        """The gate's view of these campaigns (with their topics' categories), in one query."""
        return await _in_one_hop(self.conn, _campaign_views_sync, campaign_ids)

    async def gate_load(
        self, wanted: dict[str, list[str]]
    ) -> tuple[dict[str, CampaignView], dict[str, GateInputs]]:
        """The views of these campaigns and, per campaign found, the gate inputs of its ids: one hop
        (which also begins a gate transaction)."""
        begin = not self.begun
        self.begun = True
        return await _in_one_hop(self.conn, _gate_load_sync, wanted, begin)

    def record_gate_at_commit(
        self,
        upsert: list[tuple[str, str, Reservation]],
        delete: list[tuple[str, str]],
        decisions: list[DecisionRow],
    ) -> None:
        """:meth:`record_gate`, written in the commit's own hop (a failure rolls the transaction back
        and raises from the ``async with``)."""
        if upsert or delete or decisions:
            self.at_commit.append(lambda conn: _record_gate_sync(conn, upsert, delete, decisions))

    async def record_gate(
        self,
        upsert: list[tuple[str, str, Reservation]],
        delete: list[tuple[str, str]],
        decisions: list[DecisionRow],
    ) -> None:
        """Reservations made ((customer, campaign, reservation)) and released ((customer, campaign)),
        and the decision log rows, in one hop."""
        if upsert or delete or decisions:
            await _in_one_hop(self.conn, _record_gate_sync, upsert, delete, decisions)

    async def create_key(self, name: str, role: Role, key_hash: str, prefix: str, at: datetime) -> ApiKey:
        stamp = format_at(at)
        cur = await self.conn.execute(
            "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) VALUES (?, ?, ?, ?, ?)",
            (name, role, key_hash, prefix, stamp),
        )
        assert cur.lastrowid is not None
        return ApiKey(
            id=cur.lastrowid, name=name, role=role, prefix=prefix, created_at=stamp, revoked_at=None
        )

    async def revoke_key(self, key_id: int, at: datetime) -> bool:
        cur = await self.conn.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (format_at(at), key_id)
        )
        return cur.rowcount > 0

    # -- outbox ---------------------------------------------------------------------------------

    async def queue_messages(self, rows: list[QueueRow], at: datetime) -> int:
        """Queue messages; a pair already queued or sent is left alone (a deferred one becomes queued
        when it is now allowed; a withdrawn, failed or suppressed one is queued again)."""
        if not rows:
            return 0
        stamp = format_at(at)
        before = self.conn.total_changes
        await self.conn.executemany(
            "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (campaign_id, customer_id) DO UPDATE SET "
            "channel = excluded.channel, status = excluded.status, not_before_us = excluded.not_before_us, "
            "lease_until_us = NULL, last_error = NULL, updated_at = excluded.updated_at "
            "WHERE outbox.status IN ('withdrawn', 'failed', 'suppressed') "
            "OR (outbox.status = 'deferred' AND excluded.status = 'queued' "
            "AND outbox.lease_until_us IS NULL)",
            [(*row, stamp, stamp) for row in rows],
        )
        return int(self.conn.total_changes - before)

    async def claim_due(self, channel: str, now_us: int, lease_until_us: int, limit: int) -> list[OutboxItem]:
        """Lease up to ``limit`` due messages of one channel, earliest first."""
        async with self.conn.execute(
            "SELECT campaign_id, customer_id, channel, status, not_before_us, attempts FROM outbox "
            "WHERE status IN ('queued', 'deferred') AND not_before_us <= ? AND channel = ? "
            "AND (lease_until_us IS NULL OR lease_until_us <= ?) ORDER BY not_before_us LIMIT ?",
            (now_us, channel, now_us, limit),
        ) as cur:
            rows = await cur.fetchall()
        items = [OutboxItem(*row) for row in rows]
        if items:
            await self.conn.executemany(
                "UPDATE outbox SET lease_until_us = ? WHERE campaign_id = ? AND customer_id = ?",
                [(lease_until_us, i.campaign_id, i.customer_id) for i in items],
            )
        return items

    async def update_outbox(self, updates: list[OutboxUpdate], at: datetime) -> None:
        if not updates:
            return
        stamp = format_at(at)
        await self.conn.executemany(
            "UPDATE outbox SET status = ?, channel = coalesce(?, channel), "
            "not_before_us = coalesce(?, not_before_us), last_error = ?, attempts = attempts + ?, "
            "sent_at = CASE WHEN ? THEN ? ELSE sent_at END, "
            "lease_until_us = CASE WHEN ? THEN lease_until_us ELSE NULL END, updated_at = ? "
            "WHERE campaign_id = ? AND customer_id = ?",
            [
                (
                    u.status,
                    u.channel,
                    u.not_before_us,
                    u.last_error,
                    int(u.attempted),
                    int(u.sent),
                    stamp,
                    int(u.keep_lease),
                    stamp,
                    u.campaign_id,
                    u.customer_id,
                )
                for u in updates
            ],
        )

    async def get_customers(self, customer_ids: list[str]) -> dict[str, Customer]:
        """Many customers in one query (the dispatcher renders a batch at once)."""
        async with self.conn.execute(
            _CUSTOMER_SQL.replace("WHERE c.id = ?", "WHERE c.id IN (SELECT value FROM json_each(?))"),
            (_json_encode(customer_ids).decode(),),
        ) as cur:
            return {row[0]: _customer_from_row(row) for row in await cur.fetchall()}

    async def release_leases(self) -> int:
        cur = await self.conn.execute(
            "UPDATE outbox SET lease_until_us = NULL WHERE lease_until_us IS NOT NULL "
            "AND status IN ('queued', 'deferred')"
        )
        return int(cur.rowcount)

    async def has_reservation(self, customer_id: str, campaign_id: str) -> bool:
        async with self.conn.execute(
            "SELECT 1 FROM reservations WHERE customer_id = ? AND campaign_id = ?", (customer_id, campaign_id)
        ) as cur:
            return await cur.fetchone() is not None

    # -- suppressions ---------------------------------------------------------------------------

    async def add_suppression(self, channel: str, address_ref: str, reason: str, at: datetime) -> bool:
        cur = await self.conn.execute(
            "INSERT OR IGNORE INTO suppressions (channel, address_ref, reason, since) VALUES (?, ?, ?, ?)",
            (channel, address_ref, reason, format_at(at)),
        )
        return cur.rowcount > 0

    async def remove_suppression(self, channel: str, address_ref: str) -> bool:
        cur = await self.conn.execute(
            "DELETE FROM suppressions WHERE channel = ? AND address_ref = ?", (channel, address_ref)
        )
        return cur.rowcount > 0

    async def keep_for_review(self, channel: str, address_ref: str, text: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES (?, ?, ?, ?)",
            (channel, address_ref, text, format_at(at)),
        )

    async def customers_with_address(self, channel: str, address_ref: str) -> list[str]:
        async with self.conn.execute(
            "SELECT customer_id FROM contacts WHERE channel = ? AND address_ref = ? ORDER BY customer_id",
            (channel, address_ref),
        ) as cur:
            return [row[0] for row in await cur.fetchall()]

    # -- address refs v2 (migration 0010; services/refs_upgrade.py) ------------------------------------

    async def contacts_with_v1_refs(self) -> list[tuple[str, str, str]]:
        """(customer_id, channel, address) of every contact while contacts still hold v1 refs, else []."""
        async with self.conn.execute("SELECT contacts_v1 FROM address_refs_upgrade WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None or not row[0]:
            return []
        async with self.conn.execute("SELECT customer_id, channel, address FROM contacts") as cur:
            return [(r[0], r[1], r[2]) for r in await cur.fetchall()]

    async def rewrite_contact_refs(self, rows: list[tuple[str, str, str]]) -> None:
        """(customer_id, channel, v2 ref) for every contact; then contacts hold no v1 ref. Fires no
        gate-row trigger: the caller converts the suppressions of those addresses in the same transaction."""
        await self.conn.executemany(
            "UPDATE contacts SET address_ref = ? WHERE customer_id = ? AND channel = ?",
            [(ref, cid, channel) for cid, channel, ref in rows],
        )
        await self.conn.execute("UPDATE address_refs_upgrade SET contacts_v1 = 0 WHERE id = 1")

    async def v1_refs(self) -> set[str]:
        """The v1 refs suppressions and review texts still hold (markers of refs no row holds any more
        are dropped)."""
        await self.conn.execute(
            "DELETE FROM address_refs_v1 WHERE address_ref NOT IN (SELECT address_ref FROM suppressions) "
            "AND address_ref NOT IN (SELECT address_ref FROM inbound_review)"
        )
        async with self.conn.execute("SELECT address_ref FROM address_refs_v1") as cur:
            return {row[0] for row in await cur.fetchall()}

    async def convert_v1_refs(self, refs: dict[str, str]) -> int:
        """``refs``: v1 ref -> v2 ref of addresses known in plain text. Each suppression under one of
        those v1 refs (any channel) becomes the same suppression (reason, since) under the v2 ref, by
        DELETE and INSERT so that the gate-row triggers see it (the v2 one is kept when it exists
        already); review texts take the v2 ref. Returns the number of suppressions converted."""
        if not refs:
            return 0
        async with self.conn.execute(
            "SELECT address_ref FROM address_refs_v1 WHERE address_ref IN (SELECT value FROM json_each(?))",
            (_json_encode(list(refs)).decode(),),
        ) as cur:
            found = [row[0] for row in await cur.fetchall()]
        converted = 0
        for old in found:
            async with self.conn.execute(
                "SELECT channel, reason, since FROM suppressions WHERE address_ref = ?", (old,)
            ) as cur:
                rows = list(await cur.fetchall())
            for channel, reason, since in rows:
                await self.conn.execute(
                    "DELETE FROM suppressions WHERE channel = ? AND address_ref = ?", (channel, old)
                )
                await self.conn.execute(
                    "INSERT OR IGNORE INTO suppressions (channel, address_ref, reason, since) "
                    "VALUES (?, ?, ?, ?)",
                    (channel, refs[old], reason, since),
                )
            converted += len(rows)
            await self.conn.execute(
                "UPDATE inbound_review SET address_ref = ? WHERE address_ref = ?", (refs[old], old)
            )
            await self.conn.execute("DELETE FROM address_refs_v1 WHERE address_ref = ?", (old,))
        return converted


class SqliteStore:
    """The aiosqlite adapter of :class:`prefcenter.store.base.Store`."""

    def __init__(
        self,
        path: str | Path,
        *,
        migrations_dir: Path | None = None,
        busy_timeout_ms: int = 10_000,
        new_id: Any = None,
        autocheckpoint: bool = True,
    ) -> None:
        self.path = Path(path)
        self.migrations_dir = migrations_dir or default_migrations_dir()
        self.busy_timeout_ms = busy_timeout_ms
        self._new_id = new_id or (lambda: str(uuid.uuid4()))
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        # With autocheckpoint off, a commit never stops to copy the WAL into the database (a p99 spike
        # for every writer queued behind it): the server runs checkpoint() in the background instead.
        self.autocheckpoint = autocheckpoint
        self._checkpointer: aiosqlite.Connection | None = None
        # Why the last write failed for want of disk (None: the last write went through).
        self.write_failure: str | None = None
        self._last_write = time.monotonic()
        # Idle this long (no write), a background checkpoint also truncates the WAL file to zero.
        self.truncate_after_idle_seconds = 2.0
        self._dispatcher_lock: int | None = None

    # -- the one dispatcher -----------------------------------------------------------------------

    def lock_dispatcher(self) -> bool:
        """Take the database's dispatcher lock; False when another dispatcher holds it. With SQLite every
        process of a deployment is on this host, so the lock is an exclusive ``flock`` on
        ``<database>.dispatcher.lock``: the OS drops it when its process dies, however it dies, so a
        dispatcher restarted after a crash takes over at once (and releases the dead one's leases)."""
        if self._dispatcher_lock is not None:
            return True
        fd = os.open(f"{self.path}.dispatcher.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._dispatcher_lock = fd
        return True

    def unlock_dispatcher(self) -> None:
        if self._dispatcher_lock is not None:
            os.close(self._dispatcher_lock)  # closing the descriptor releases the flock
            self._dispatcher_lock = None

    # -- connections ------------------------------------------------------------------------------

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        await conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA secure_delete = ON")
        return conn

    async def open(self) -> None:
        if self._writer is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        async with self._writer.execute("PRAGMA journal_mode = WAL") as cur:
            row = await cur.fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise RuntimeError(f"could not switch {self.path} to WAL mode (got {row})")
        self._reader = await self._connect()
        # Each time a checkpoint resets the WAL, SQLite cuts the file back to this size.
        await self._writer.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        if not self.autocheckpoint:
            await self._writer.execute("PRAGMA wal_autocheckpoint = 0")
            self._checkpointer = await self._connect()
            # A checkpoint never makes writers wait long for it: it tries again next second.
            await self._checkpointer.execute("PRAGMA busy_timeout = 100")

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self.checkpoint()
            await self._checkpointer.close()
            self._checkpointer = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE checkpoint on its own connection: writers go on meanwhile. When no write came for
        ``truncate_after_idle_seconds``, a TRUNCATE one instead, so the WAL file does not keep its
        high-water mark while the service is idle. Returns (WAL frames, frames copied). Only for
        stores opened with ``autocheckpoint=False``."""
        conn = self._checkpointer
        if conn is None:
            return (0, 0)
        idle = time.monotonic() - self._last_write >= self.truncate_after_idle_seconds
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "TRUNCATE" if idle and wal.exists() and wal.stat().st_size > 0 else "PASSIVE"
        try:
            async with conn.execute(f"PRAGMA wal_checkpoint({mode})") as cur:
                row = await cur.fetchone()
        except sqlite3.OperationalError as exc:  # busy: a reader or writer holds it; next second
            log.debug("checkpoint skipped", mode=mode, error=str(exc))
            return (0, 0)
        return (int(row[1]), int(row[2])) if row is not None else (0, 0)

    async def write_problem(self) -> str | None:
        """None when the database can be written; else why not. After a write failed for want of
        disk, a probe transaction (a page-sized row inserted and deleted, committed) is tried on each
        call, so readiness comes back as soon as writes would work again."""
        if self.write_failure is None:
            return None
        with contextlib.suppress(StoreUnavailable):
            async with self.write() as tx:
                await tx.conn.execute("INSERT INTO store_probe (filler) VALUES (zeroblob(8192))")
                await tx.conn.execute("DELETE FROM store_probe")
        return self.write_failure

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    @property
    def writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise RuntimeError("store is not open")
        return self._writer

    async def ping(self) -> None:
        async with self.reader.execute("SELECT 1") as cur:
            await cur.fetchone()

    @asynccontextmanager
    async def write(self, *, gate: bool = False) -> AsyncIterator[SqliteWriteTx]:
        """One writing transaction. ``gate``: the gate's own, in two hops: ``BEGIN IMMEDIATE`` goes
        with :meth:`SqliteWriteTx.gate_load` (which must come first) and the writes queued with
        :meth:`SqliteWriteTx.record_gate_at_commit` with the ``COMMIT``."""
        async with self._write_lock:
            conn = self.writer
            try:
                if not gate:
                    await _in_one_hop(conn, _begin_sync)
                tx = SqliteWriteTx(conn, self._new_id, begun=not gate)
                try:
                    yield tx
                except BaseException:
                    if tx.begun and conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
                if tx.begun:
                    await _in_one_hop(conn, _commit_sync, tx.at_commit)
            except sqlite3.Error as exc:
                if not _unavailable(exc):
                    raise
                self.write_failure = f"{type(exc).__name__}: {exc}"
                log.error("the database cannot be written", error=self.write_failure)
                raise StoreUnavailable(self.write_failure) from exc
            self.write_failure = None
            self._last_write = time.monotonic()

    async def compact_after_erasure(self, attempts: int = 40) -> bool:
        """Checkpoint and truncate the WAL so erased rows leave no old frames; True when it completed."""
        for _ in range(attempts):
            async with self._write_lock, self.writer.execute("PRAGMA wal_checkpoint(TRUNCATE)") as cur:
                row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return True
            await asyncio.sleep(0.05)
        log.error("wal checkpoint after erasure did not complete: a long reader holds old frames")
        return False

    # -- migrations -------------------------------------------------------------------------------

    def _migration_files(self) -> list[tuple[str, Path]]:
        files = []
        for path in sorted(self.migrations_dir.glob("*.sql")):
            match = MIGRATION_RE.match(path.name)
            if not match:
                raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
            files.append((match.group(1), path))
        versions = [v for v, _ in files]
        if len(set(versions)) != len(versions):
            raise MigrationError(f"{self.migrations_dir}: two migrations share a number")
        return files

    async def _applied(self) -> dict[str, str]:
        conn = self.writer
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, name TEXT NOT NULL, "
            "checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        async with conn.execute("SELECT version, checksum FROM schema_migrations") as cur:
            return {row[0]: row[1] async for row in cur}

    async def pending_migrations(self) -> list[str]:
        async with self._write_lock:
            applied = await self._applied()
        return [path.name for version, path in self._migration_files() if version not in applied]

    async def migrate(self) -> list[str]:
        """Apply pending migrations in order, each in its own transaction, each recorded once."""
        done: list[str] = []
        async with self._write_lock:
            applied = await self._applied()
            conn = self.writer
            for version, path in self._migration_files():
                sql = path.read_text(encoding="utf-8")
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                if version in applied:
                    if applied[version] != checksum:
                        log.warning("applied migration file has changed since", migration=path.name)
                    continue
                stamp = format_at(datetime.now(UTC))
                script = (
                    "BEGIN IMMEDIATE;\n"
                    f"{sql}\n;\n"
                    "INSERT INTO schema_migrations (version, name, checksum, applied_at) VALUES "
                    f"('{version}', '{path.name}', '{checksum}', '{stamp}');\n"
                    "COMMIT;"
                )
                try:
                    await conn.executescript(script)
                except Exception as exc:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise MigrationError(f"{path.name} failed and was rolled back: {exc}") from exc
                log.info("applied migration", migration=path.name)
                done.append(path.name)
        return done

    # -- reads ------------------------------------------------------------------------------------

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await _get_customer(self.reader, customer_id)

    async def get_customer_by_ref(self, customer_ref: str) -> Customer | None:
        async with self.reader.execute(_CUSTOMER_BY_REF_SQL, (customer_ref,)) as cur:
            row = await cur.fetchone()
        return None if row is None else _customer_from_row(row)

    async def list_topics(self) -> dict[str, Topic]:
        async with self.reader.execute(
            "SELECT id, category, names, descriptions FROM topics ORDER BY id"
        ) as cur:
            return {
                row[0]: Topic(category=row[1], names=_json_decode(row[2]), descriptions=_json_decode(row[3]))
                async for row in cur
            }

    async def get_topic(self, topic_id: str) -> Topic | None:
        return await _get_topic(self.reader, topic_id)

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return await _get_campaign(self.reader, campaign_id)

    async def gate_inputs(self, ids: list[str], topic: str, campaign_id: str) -> GateInputs:
        """A consistent snapshot for a dry run (one read transaction over both queries)."""
        return await _in_one_hop(self.reader, _gate_inputs_sync, ids, topic, campaign_id, True)

    async def decision_log(self, customer_id: str, campaign_id: str | None) -> list[DecisionRow]:
        sql = (
            "SELECT customer_id, campaign_id, at, verdict, reason, channel, not_before, policy_version "
            "FROM decisions WHERE customer_id = ?"
        )
        params: tuple[str, ...] = (customer_id,)
        if campaign_id is not None:
            sql += " AND campaign_id = ?"
            params = (customer_id, campaign_id)
        async with self.reader.execute(sql + " ORDER BY id", params) as cur:
            return [tuple(row) for row in await cur.fetchall()]

    async def decision_counts(self, campaign_id: str) -> dict[str, int]:
        """Deny reasons of the latest decision per customer of a campaign, for the customers without an
        outbox row for it: a recipient with one is counted under its outbox status (a deny at re-gate
        is its ``withdrawn`` or ``suppressed``), so each recipient is counted once (API.md)."""
        async with self.reader.execute(
            "SELECT reason, count(*) FROM decisions d WHERE campaign_id = ? AND verdict = 'deny' "
            "AND id = (SELECT max(id) FROM decisions e WHERE e.campaign_id = d.campaign_id "
            "AND e.customer_id = d.customer_id) "
            "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = d.campaign_id "
            "AND o.customer_id = d.customer_id) GROUP BY reason",
            (campaign_id,),
        ) as cur:
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def outbox_counts(self, campaign_id: str) -> dict[str, int]:
        async with self.reader.execute(
            "SELECT status, count(*) FROM outbox WHERE campaign_id = ? GROUP BY status", (campaign_id,)
        ) as cur:
            return {row[0]: row[1] for row in await cur.fetchall()}

    async def outbox_due_count(self) -> int:
        async with self.reader.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'deferred')"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_suppressions(self, channel: str | None) -> list[Suppression]:
        sql = "SELECT channel, address_ref, reason, since FROM suppressions"
        params: tuple[str, ...] = ()
        if channel is not None:
            sql += " WHERE channel = ?"
            params = (channel,)
        async with self.reader.execute(sql + " ORDER BY since, channel, address_ref", params) as cur:
            return [Suppression(*row) for row in await cur.fetchall()]

    async def inbound_for_review(self, since: str | None) -> list[dict[str, Any]]:
        async with self.reader.execute(
            "SELECT id, channel, address_ref, text, received_at FROM inbound_review "
            "WHERE received_at >= coalesce(?, '') ORDER BY id",
            (since,),
        ) as cur:
            names = ("id", "channel", "address_ref", "text", "received_at")
            return [dict(zip(names, row, strict=True)) for row in await cur.fetchall()]

    async def find_key(self, key_hash: str) -> ApiKey | None:
        async with self.reader.execute(
            "SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys WHERE key_hash = ?",
            (key_hash,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else _key_from_row(row)

    async def list_keys(self) -> list[ApiKey]:
        async with self.reader.execute(
            "SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY id"
        ) as cur:
            return [_key_from_row(row) async for row in cur]

    async def ledger_head(self) -> tuple[int, str]:
        async with self.reader.execute("SELECT seq, hash FROM ledger_head WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError("ledger head missing")
        return int(row[0]), str(row[1])

    async def consent_events(self, flt: EventFilter, *, after_seq: int, limit: int) -> list[dict[str, Any]]:
        where, params = _event_where(flt)
        async with self.reader.execute(
            f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE seq > ? AND {where} ORDER BY seq LIMIT ?",
            (after_seq, *params, limit),
        ) as cur:
            return [_event_from_row(row) for row in await cur.fetchall()]

    async def iter_consent_events(
        self, flt: EventFilter, *, after_seq: int = 0, up_to_seq: int | None = None, chunk: int = 2000
    ) -> AsyncIterator[dict[str, Any]]:
        """Events in seq order in chunks (keyset pagination): memory stays constant for any size.

        ``up_to_seq`` None means the head at the start of the iteration.
        """
        if up_to_seq is None:
            up_to_seq = (await self.ledger_head())[0]
        where, params = _event_where(flt)
        after = after_seq
        sql = (
            f"SELECT {_EVENT_COLUMNS} FROM consent_events WHERE seq > ? AND seq <= ? AND {where} "
            "ORDER BY seq LIMIT ?"
        )
        while True:
            async with self.reader.execute(sql, (after, up_to_seq, *params, chunk)) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            for row in rows:
                yield _event_from_row(row)
            after = rows[-1][0]
            if len(rows) < chunk:
                return
