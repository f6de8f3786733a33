"""The writing transaction: :class:`SqliteWriteTx`, the store's writes (and the reads a writer needs)
inside one transaction on the writer's thread (the store begins and commits it)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog

from prefcenter.domain.campaigns import Campaign, content_column
from prefcenter.domain.ledger import (
    Attribution,
    Change,
    ConsentEvent,
    Notice,
    chain_events,
    format_at,
)
from prefcenter.domain.model import CampaignView, Customer, Preferences, Role, Topic
from prefcenter.store import decision_log
from prefcenter.store.base import (
    ApiKey,
    DecisionRow,
    GateInputs,
    ImportWrites,
    NotificationItem,
    NotificationUpdate,
    OutboxItem,
    OutboxUpdate,
    Reservation,
    ReviewText,
)
from prefcenter.store.codec import PLACES_DATA_VERSION, places_text
from prefcenter.store.retention import ReservationBound
from prefcenter.store.sqlite import notifications
from prefcenter.store.sqlite.double_opt_in import confirm_topic_sync, write_topics_sync
from prefcenter.store.sqlite.gate import (
    campaign_views_sync,
    gate_inputs_sync,
    record_gate_sync,
)
from prefcenter.store.sqlite.rows import (
    CUSTOMER_SQL,
    INSERT_EVENT_SQL,
    customer_from_row,
    event_row,
    get_campaign,
    get_customer,
    get_notice,
    get_topic,
    json_decode,
    json_encode,
)
from prefcenter.store.sqlite.thread import SqliteThread
from prefcenter.store.sqlite.trace import ADD_HISTORY_SQL
from prefcenter.store.trace import MessageEvent, history_row

log = structlog.get_logger("prefcenter.store")


def commit_sync(conn: sqlite3.Connection) -> None:
    """COMMIT; ROLLBACK if it fails and the transaction is still open (SQLite itself rolls back after
    some errors, SQLITE_FULL among them)."""
    try:
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


# One row per (channel, address): a hard suppression (scope all) upgrades a marketing-only one in place;
# a marketing-only one never downgrades a hard one.
_ADD_SUPPRESSION_SQL = (
    "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (channel, address_ref) DO UPDATE SET reason = excluded.reason, "
    "since = excluded.since, scope = excluded.scope "
    "WHERE suppressions.scope = 'marketing' AND excluded.scope = 'all'"
)


def write_import_sync(conn: sqlite3.Connection, writes: ImportWrites) -> None:
    """A bulk-import chunk (services/imports.py) in one hop: executemany per statement."""
    created = [c for c, _, new in writes.customers if new]
    replaced = [c for c, _, new in writes.customers if not new]
    conn.executemany(
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, "
        "link_gen, phone_places) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                c.customer_id,
                c.customer_ref,
                c.profile.timezone,
                c.profile.locale,
                c.profile.country,
                format_at(c.created_at),
                format_at(c.updated_at),
                c.link_gen,
                places_text(c.profile.contacts.items()),
            )
            for c in created
        ],
    )
    conn.executemany(
        "UPDATE customers SET timezone = ?, locale = ?, country = ?, updated_at = ?, "
        "phone_places = ? WHERE id = ?",
        [
            (
                c.profile.timezone,
                c.profile.locale,
                c.profile.country,
                format_at(c.updated_at),
                places_text(c.profile.contacts.items()),
                c.customer_id,
            )
            for c in replaced
        ],
    )
    conn.executemany("DELETE FROM contacts WHERE customer_id = ?", [(c.customer_id,) for c in replaced])
    conn.executemany(
        "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES (?, ?, ?, ?)",
        [
            (c.customer_id, ch, addr, refs[ch])
            for c, refs, _ in writes.customers
            for ch, addr in c.profile.contacts.items()
        ],
    )
    conn.executemany(
        "UPDATE customers SET channel = ?, quiet_start = ?, quiet_end = ?, max_per_week = ?, "
        "paused_until = ?, updated_at = ? WHERE id = ?",
        [
            (
                p.channel,
                p.quiet_hours.start if p.quiet_hours else None,
                p.quiet_hours.end if p.quiet_hours else None,
                p.max_per_week,
                format_at(p.paused_until) if p.paused_until else None,
                format_at(at),
                cid,
            )
            for cid, p, at in writes.preferences
        ],
    )
    # the topics, a gained double opt-in one pending with its mail queued (migration 0021)
    write_topics_sync(conn, [(cid, p.topics, at) for cid, p, at in writes.preferences])
    if writes.events:
        conn.executemany(INSERT_EVENT_SQL, [event_row(e) for e in writes.events])
        last = writes.events[-1]
        conn.execute("UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (last.seq, last.hash))


class SqliteWriteTx:
    def __init__(self, conn: SqliteThread, new_id: Any) -> None:
        self.conn = conn
        self._new_id = new_id

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await get_customer(self.conn, customer_id)

    async def put_customer(self, customer: Customer, address_refs: dict[str, str], created: bool) -> None:
        p = customer.profile
        stamp = format_at(customer.updated_at)
        places = places_text(p.contacts.items())  # where the phone numbers are (migration 0012)
        if created:
            await self.conn.execute(
                "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, "
                "link_gen, phone_places) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    customer.customer_id,
                    customer.customer_ref,
                    p.timezone,
                    p.locale,
                    p.country,
                    format_at(customer.created_at),
                    stamp,
                    customer.link_gen,
                    places,
                ),
            )
        else:
            await self.conn.execute(
                "UPDATE customers SET timezone = ?, locale = ?, country = ?, updated_at = ?, "
                "phone_places = ? WHERE id = ?",
                (p.timezone, p.locale, p.country, stamp, places, customer.customer_id),
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
        # the topics, a gained double opt-in one pending with its mail queued (migration 0021)
        await self.conn.run(write_topics_sync, [(customer_id, preferences.topics, at)])

    async def erase_customer(self, customer_id: str) -> None:
        await self.conn.execute(
            "UPDATE consent_events SET customer_id = NULL WHERE customer_id = ?", (customer_id,)
        )
        await self.conn.execute(decision_log.erase_sql("sqlite", "?"), (customer_id,))
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
            (json_encode(ids).decode(),),
        ) as cur:
            return {row[0]: row[1] async for row in cur}

    async def get_topic(self, topic_id: str) -> Topic | None:
        return await get_topic(self.conn, topic_id)

    async def put_topic(self, topic_id: str, topic: Topic, at: datetime) -> bool:
        stamp = format_at(at)
        async with self.conn.execute("SELECT 1 FROM topics WHERE id = ?", (topic_id,)) as cur:
            exists = await cur.fetchone() is not None
        await self.conn.execute(
            "INSERT INTO topics (id, category, names, descriptions, created_at, updated_at, double_opt_in) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET category = excluded.category, "
            "names = excluded.names, descriptions = excluded.descriptions, updated_at = excluded.updated_at, "
            "double_opt_in = excluded.double_opt_in",
            (
                topic_id,
                topic.category,
                json_encode(topic.names).decode(),
                json_encode(topic.descriptions).decode(),
                stamp,
                stamp,
                int(topic.double_opt_in),
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
        await self.conn.executemany(INSERT_EVENT_SQL, [event_row(e) for e in events])
        last = events[-1]
        await self.conn.execute(
            "UPDATE ledger_head SET seq = ?, hash = ? WHERE id = 1", (last.seq, last.hash)
        )
        return events

    async def get_notice(self, notice_version: str) -> Notice | None:
        return await get_notice(self.conn, notice_version)

    async def add_notice(self, notice: Notice) -> None:
        """Register a notice version (the caller has checked that it is new: a second INSERT of one
        version fails on the primary key)."""
        await self.conn.execute(
            "INSERT INTO notices (version, texts, sha256, registered_at) VALUES (?, ?, ?, ?)",
            (
                notice.notice_version,
                json_encode(notice.texts).decode(),
                json_encode(notice.sha256).decode(),
                format_at(notice.registered_at),
            ),
        )

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return await get_campaign(self.conn, campaign_id)

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
                json_encode(campaign.channels).decode(),
                format_at(campaign.send_by) if campaign.send_by else None,
                json_encode(content_column(campaign)).decode(),
                stamp,
                stamp,
            ),
        )
        return not exists

    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs:
        return await self.conn.run(gate_inputs_sync, ids, topic, campaign_id, False, bound)

    async def campaign_views(self, campaign_ids: list[str]) -> dict[str, CampaignView]:
        """The gate's view of these campaigns (with their topics' categories), in one query."""
        return await self.conn.run(campaign_views_sync, campaign_ids)

    async def record_gate(
        self,
        upsert: list[tuple[str, str, Reservation]],
        delete: list[tuple[str, str]],
        decisions: list[DecisionRow],
    ) -> None:
        """Reservations made ((customer, campaign, reservation)) and released ((customer, campaign)),
        and the decision log rows, in one hop."""
        if upsert or delete or decisions:
            await self.conn.run(record_gate_sync, upsert, delete, decisions)

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

    async def claim_due(self, channel: str, now_us: int, lease_until_us: int, limit: int) -> list[OutboxItem]:
        """Lease up to ``limit`` due messages of one channel, earliest first."""
        async with self.conn.execute(
            "SELECT campaign_id, customer_id, channel, status, not_before_us, attempts FROM outbox "
            "WHERE status IN ('queued', 'deferred') AND not_before_us <= ? AND channel = ? "
            "AND (lease_until_us IS NULL OR lease_until_us <= ?) ORDER BY not_before_us LIMIT ?",
            (now_us, channel, now_us, limit),
        ) as cur:
            rows = await cur.fetchall()
        items = [OutboxItem(r[0], r[1], r[2], r[3], r[4], r[5], lease_until_us) for r in rows]
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
            "WHERE campaign_id = ? AND customer_id = ? AND (? IS NULL OR lease_until_us = ?)",
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
                    u.lease_until_us,
                    u.lease_until_us,
                )
                for u in updates
            ],
        )

    async def add_message_history(self, events: list[MessageEvent]) -> None:
        """Message history rows (migration 0020, store/trace.py), in one executemany."""
        if events:
            await self.conn.executemany(ADD_HISTORY_SQL, [history_row(e) for e in events])

    async def lock_ledger_head(self) -> tuple[int, str, Callable[[], str]]:
        async with self.conn.execute("SELECT seq, hash FROM ledger_head WHERE id = 1") as cur:
            head = await cur.fetchone()
        assert head is not None, "ledger_head row missing: migration 0001 not applied"
        return int(head[0]), str(head[1]), self._new_id

    async def suppressed_addresses(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        async with self.conn.execute(
            "SELECT s.channel, s.address_ref FROM suppressions s JOIN json_each(?) j "
            "ON s.channel = json_extract(j.value, '$[0]') AND s.address_ref = json_extract(j.value, '$[1]')",
            (json_encode([list(p) for p in pairs]).decode(),),
        ) as cur:
            return {(row[0], row[1]) for row in await cur.fetchall()}

    async def write_import(self, writes: ImportWrites) -> None:
        await self.conn.run(write_import_sync, writes)

    async def get_customers(self, customer_ids: list[str]) -> dict[str, Customer]:
        """Many customers in one query (the dispatcher renders a batch at once)."""
        async with self.conn.execute(
            CUSTOMER_SQL.replace("WHERE c.id = ?", "WHERE c.id IN (SELECT value FROM json_each(?))"),
            (json_encode(customer_ids).decode(),),
        ) as cur:
            return {row[0]: customer_from_row(row) for row in await cur.fetchall()}

    async def release_dead_leases(self) -> int:
        """Every lease of the outbox and the notifications (only for SqliteMaintenance, which holds the
        dispatcher lock: guarantee 5 of store.base)."""
        cur = await self.conn.execute(
            "UPDATE outbox SET lease_until_us = NULL WHERE lease_until_us IS NOT NULL "
            "AND status IN ('queued', 'deferred')"
        )
        return int(cur.rowcount) + await notifications.release_notification_leases(self.conn)

    # -- notifications (migration 0015; store/sqlite/notifications.py) ------------------------------

    async def queue_notification(self, customer_id: str, kind: str, at: datetime) -> bool:
        return await notifications.queue_notification(self.conn, customer_id, kind, at)

    async def confirm_topic(self, customer_id: str, topic: str) -> bool:
        return await self.conn.run(confirm_topic_sync, customer_id, topic)

    async def claim_notifications(
        self, now_us: int, lease_until_us: int, limit: int
    ) -> list[NotificationItem]:
        return await notifications.claim_notifications(self.conn, now_us, lease_until_us, limit)

    async def update_notifications(self, updates: list[NotificationUpdate], at: datetime) -> None:
        await notifications.update_notifications(self.conn, updates, at)

    async def has_reservation(self, customer_id: str, campaign_id: str) -> bool:
        async with self.conn.execute(
            "SELECT 1 FROM reservations WHERE customer_id = ? AND campaign_id = ?", (customer_id, campaign_id)
        ) as cur:
            return await cur.fetchone() is not None

    # -- suppressions ---------------------------------------------------------------------------

    async def add_suppression(
        self, channel: str, address_ref: str, reason: str, at: datetime, *, scope: str = "all"
    ) -> bool:
        """True when the row is new, or when a hard (``all``) suppression upgraded a ``marketing`` one in
        place (reason, since and scope become the new one's); a ``marketing`` one never downgrades."""
        cur = await self.conn.execute(
            _ADD_SUPPRESSION_SQL,
            (channel, address_ref, reason, format_at(at), scope),
        )
        return cur.rowcount > 0

    async def remove_suppression(
        self, channel: str, address_ref: str, *, scope: str | None = None, reason: str | None = None
    ) -> str | None:
        """The scope of the suppression removed, or None when there was none (of that scope and reason,
        when given)."""
        async with self.conn.execute(
            "DELETE FROM suppressions WHERE channel = ? AND address_ref = ? AND scope = coalesce(?, scope) "
            "AND reason = coalesce(?, reason) RETURNING scope",
            (channel, address_ref, scope, reason),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def keep_for_review(self, channel: str, address_ref: str, text: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES (?, ?, ?, ?)",
            (channel, address_ref, text, format_at(at)),
        )

    async def suppression_reason(self, channel: str, address_ref: str) -> str | None:
        async with self.conn.execute(
            "SELECT reason FROM suppressions WHERE channel = ? AND address_ref = ?", (channel, address_ref)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def get_review(self, review_id: int) -> ReviewText | None:
        async with self.conn.execute(
            "SELECT id, channel, address_ref, text, received_at, resolved_at, resolution, resolved_by "
            "FROM inbound_review WHERE id = ?",
            (review_id,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else ReviewText(*row)

    async def resolve_review(self, review_id: int, resolution: str, by: str, at: datetime) -> bool:
        """False when there is no such open text."""
        cur = await self.conn.execute(
            "UPDATE inbound_review SET resolved_at = ?, resolution = ?, resolved_by = ? "
            "WHERE id = ? AND resolved_at IS NULL",
            (format_at(at), resolution, by, review_id),
        )
        return cur.rowcount > 0

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
        """(customer_id, channel, v2 ref) for every contact; then contacts hold no v1 ref. The gate row
        follows (migration 0012's trigger); the caller converts the suppressions of those addresses in
        the same transaction."""
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
            (json_encode(list(refs)).decode(),),
        ) as cur:
            found = [row[0] for row in await cur.fetchall()]
        converted = 0
        for old in found:
            async with self.conn.execute(
                "SELECT channel FROM suppressions WHERE address_ref = ?", (old,)
            ) as cur:
                channels = [row[0] for row in await cur.fetchall()]
            for channel in channels:
                await self._move_suppression(channel, old, refs[old])
            converted += len(channels)
            await self.conn.execute(
                "UPDATE inbound_review SET address_ref = ? WHERE address_ref = ?", (refs[old], old)
            )
            await self.conn.execute("DELETE FROM address_refs_v1 WHERE address_ref = ?", (old,))
        return converted

    async def _move_suppression(self, channel: str, old: str, new: str) -> bool:
        """The suppression under ``old`` becomes the same one (reason, since, scope) under ``new``, by
        DELETE and INSERT so that the gate-row triggers see it; when ``new`` is suppressed already it is
        kept, upgraded to ``all`` if the moved one was hard. False when there was none under ``old``."""
        async with self.conn.execute(
            "DELETE FROM suppressions WHERE channel = ? AND address_ref = ? RETURNING reason, since, scope",
            (channel, old),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return False
        await self.conn.execute(
            _ADD_SUPPRESSION_SQL,
            (channel, new, *row),
        )
        return True

    # -- email refs with IDNA domains (migration 0012; services/refs_upgrade.py) -----------------------

    async def contacts_for_idna_rekey(self) -> list[tuple[str, str, str, str]] | None:
        """(customer_id, channel, address, address_ref) of the email contacts with a non-ASCII character
        while migration 0012's re-keying is pending, else None."""
        async with self.conn.execute("SELECT pending FROM address_refs_idna WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None or not row[0]:
            return None
        async with self.conn.execute(
            "SELECT customer_id, channel, address, address_ref FROM contacts "
            "WHERE channel = 'email' AND address GLOB '*[^ -~]*'"
        ) as cur:
            return [(r[0], r[1], r[2], r[3]) for r in await cur.fetchall()]

    async def rekey_contacts(self, rows: list[tuple[str, str, str]]) -> None:
        """(customer_id, channel, new ref); then the re-keying of migration 0012 is done. The gate row
        follows (trigger); the caller moves the suppressions of the old refs in the same transaction."""
        await self.conn.executemany(
            "UPDATE contacts SET address_ref = ? WHERE customer_id = ? AND channel = ?",
            [(ref, cid, channel) for cid, channel, ref in rows],
        )
        await self.conn.execute("UPDATE address_refs_idna SET pending = 0 WHERE id = 1")

    async def move_suppressions(self, channel: str, refs: dict[str, str]) -> int:
        """``refs``: old ref -> new ref of one address each. Each suppression of ``channel`` under an old
        ref becomes the same one under the new ref; review texts take the new ref. Returns suppressions
        moved."""
        moved = 0
        for old, new in refs.items():
            if old == new:
                continue
            moved += await self._move_suppression(channel, old, new)
            await self.conn.execute(
                "UPDATE inbound_review SET address_ref = ? WHERE channel = ? AND address_ref = ?",
                (new, channel, old),
            )
        return moved

    # -- phone places (migration 0012) ----------------------------------------------------------------

    async def fill_phone_places(self) -> int:
        """When the stored places were computed with other phonenumbers data (or none yet), compute every
        customer's from their phone contacts. Returns the customers placed (0: nothing to do)."""
        async with self.conn.execute("SELECT version FROM phone_places_data WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None or row[0] == PLACES_DATA_VERSION:
            return 0
        async with self.conn.execute(
            "SELECT customer_id, json_group_array(json_array(channel, address)) FROM contacts "
            "WHERE channel IN ('sms', 'voice', 'whatsapp') GROUP BY customer_id"
        ) as cur:
            phones = [
                (cid, [(ch, addr) for ch, addr in json_decode(pairs)]) for cid, pairs in await cur.fetchall()
            ]
        await self.conn.execute("UPDATE customers SET phone_places = '' WHERE phone_places IS NOT ''")
        await self.conn.executemany(
            "UPDATE customers SET phone_places = ? WHERE id = ?", [(places_text(c), cid) for cid, c in phones]
        )
        await self.conn.execute(
            "UPDATE phone_places_data SET version = ? WHERE id = 1", (PLACES_DATA_VERSION,)
        )
        return len(phones)
