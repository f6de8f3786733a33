""":class:`PgWriteTx`, the store's writes (and the reads a writer needs) inside one PostgreSQL transaction
that the store has begun and will commit (``PostgresStore.write``). The twin of the SQLite adapter's
``SqliteWriteTx``, method by method; what PostgreSQL needs on top is the row locks that the SQLite adapter
gets from its one writer: the recipients of a re-gate (guarantee 1), the ledger head (guarantee 2) and
the rows a claim leases (guarantee 4)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING

from prefcenter.domain.campaigns import Campaign, content_column
from prefcenter.domain.ledger import Attribution, Change, ConsentEvent, Notice, chain_events, format_at
from prefcenter.domain.model import PHONE_CHANNELS, CampaignView, Customer, Preferences, Role, Topic
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
from prefcenter.store.codec import PLACES_DATA_VERSION, event_row, json_encode, places_text
from prefcenter.store.postgres import double_opt_in, gate, notifications
from prefcenter.store.postgres.rows import (
    INSERT_EVENT_SQL,
    get_campaign,
    get_customer,
    get_customers,
    get_notice,
    get_topic,
)
from prefcenter.store.postgres.trace import ADD_HISTORY_SQL, history_columns
from prefcenter.store.retention import ReservationBound
from prefcenter.store.trace import MessageEvent

if TYPE_CHECKING:
    from prefcenter.store.postgres.rows import Conn

# One row per (channel, address): a hard suppression (scope all) upgrades a marketing-only one in place;
# a marketing-only one never downgrades a hard one. The status is "INSERT 0 1" when a row was inserted or
# upgraded, "INSERT 0 0" when the existing one was kept.
_ADD_SUPPRESSION_SQL = (
    "INSERT INTO suppressions (channel, address_ref, reason, since, scope) VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT (channel, address_ref) DO UPDATE SET reason = excluded.reason, "
    "since = excluded.since, scope = excluded.scope "
    "WHERE suppressions.scope = 'marketing' AND excluded.scope = 'all'"
)

# An upsert that tells whether the row was new: ``old`` is read from the statement's snapshot, before
# the insert (other writes are serialised, guarantee 3, so nothing commits one in between).
_PUT_TOPIC_SQL = """
WITH old AS (SELECT 1 FROM topics WHERE id = $1)
INSERT INTO topics (id, category, names, descriptions, created_at, updated_at, double_opt_in)
VALUES ($1, $2, $3, $4, $5, $5, $6) ON CONFLICT (id) DO UPDATE SET category = excluded.category,
    names = excluded.names, descriptions = excluded.descriptions, updated_at = excluded.updated_at,
    double_opt_in = excluded.double_opt_in
RETURNING NOT EXISTS (SELECT 1 FROM old)
"""
_PUT_CAMPAIGN_SQL = """
WITH old AS (SELECT 1 FROM campaigns WHERE id = $1)
INSERT INTO campaigns (id, topic, channels, send_by, content, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (id) DO UPDATE SET topic = excluded.topic,
    channels = excluded.channels, send_by = excluded.send_by, content = excluded.content,
    updated_at = excluded.updated_at
RETURNING NOT EXISTS (SELECT 1 FROM old)
"""

# One statement (guarantee 4): the due, unleased rows are locked as they are picked, rows another
# transaction holds (a dispatcher claiming them now) are skipped, and the picked ones are leased. Ties
# on not_before_us go in primary-key order, as SQLite's index scan gives them.
_CLAIM_DUE_SQL = """
UPDATE outbox o SET lease_until_us = $3
FROM (SELECT campaign_id, customer_id FROM outbox
      WHERE status IN ('queued', 'deferred') AND not_before_us <= $1 AND channel = $2
        AND (lease_until_us IS NULL OR lease_until_us <= $1)
      ORDER BY not_before_us, campaign_id, customer_id LIMIT $4
      FOR UPDATE SKIP LOCKED) due
WHERE o.campaign_id = due.campaign_id AND o.customer_id = due.customer_id
RETURNING o.campaign_id, o.customer_id, o.channel, o.status, o.not_before_us, o.attempts
"""

_UPDATE_OUTBOX_SQL = (
    "UPDATE outbox SET status = $1, channel = coalesce($2, channel), "
    "not_before_us = coalesce($3, not_before_us), last_error = $4, attempts = attempts + $5, "
    "sent_at = CASE WHEN $6 THEN $7 ELSE sent_at END, "
    "lease_until_us = CASE WHEN $8 THEN lease_until_us ELSE NULL END, updated_at = $7 "
    "WHERE campaign_id = $9 AND customer_id = $10 AND ($11::bigint IS NULL OR lease_until_us = $11)"
)


def _count(status: str) -> int:
    """The row count of a command status: ``"UPDATE 3"`` -> 3, ``"INSERT 0 1"`` -> 1."""
    return int(status.rsplit(" ", 1)[-1])


def _outbox_order(item: OutboxItem) -> tuple[int, str, str]:
    return item.not_before_us, item.campaign_id, item.customer_id


class PgWriteTx:
    """One writing transaction on ``conn``, begun (and committed or rolled back) by the store."""

    def __init__(self, conn: Conn, new_id: Callable[[], str]) -> None:
        self.conn = conn
        self._new_id = new_id
        self._locked: set[str] = set()  # customers this transaction holds locked (until its end)

    async def _lock(self, ids: Iterable[str]) -> None:
        """Lock these customers' rows in id order, once per transaction (the dispatcher's re-gate reads,
        loads and writes the same chunk: one lock query, not three)."""
        new = set(ids) - self._locked
        if new:
            await gate.lock_customers(self.conn, new)
            self._locked |= new

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await get_customer(self.conn, customer_id)

    async def put_customer(self, customer: Customer, address_refs: dict[str, str], created: bool) -> None:
        p = customer.profile
        stamp = format_at(customer.updated_at)
        places = places_text(p.contacts.items())  # where the phone numbers are (migration 0012)
        if created:
            await self.conn.execute(
                "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, "
                "link_gen, phone_places) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                customer.customer_id,
                customer.customer_ref,
                p.timezone,
                p.locale,
                p.country,
                format_at(customer.created_at),
                stamp,
                customer.link_gen,
                places,
            )
        else:
            await self.conn.execute(
                "UPDATE customers SET timezone = $1, locale = $2, country = $3, updated_at = $4, "
                "phone_places = $5 WHERE id = $6",
                p.timezone,
                p.locale,
                p.country,
                stamp,
                places,
                customer.customer_id,
            )
            await self.conn.execute("DELETE FROM contacts WHERE customer_id = $1", customer.customer_id)
        contacts = [(customer.customer_id, ch, addr, address_refs[ch]) for ch, addr in p.contacts.items()]
        if contacts:
            await self.conn.executemany(
                "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES ($1, $2, $3, $4)",
                contacts,
            )

    async def set_preferences(self, customer_id: str, preferences: Preferences, at: datetime) -> None:
        qh = preferences.quiet_hours
        pause = preferences.paused_until
        await self.conn.execute(
            "UPDATE customers SET channel = $1, quiet_start = $2, quiet_end = $3, max_per_week = $4, "
            "paused_until = $5, updated_at = $6 WHERE id = $7",
            preferences.channel,
            qh.start if qh else None,
            qh.end if qh else None,
            preferences.max_per_week,
            format_at(pause) if pause else None,
            format_at(at),
            customer_id,
        )
        # the topics, a gained double opt-in one pending with its mail queued (migration 0021)
        await double_opt_in.write_topics(self.conn, [(customer_id, preferences.topics, at)])

    async def erase_customer(self, customer_id: str) -> None:
        # First the row lock a gate holds while it decides about this customer: its decision rows and
        # reservations (no foreign key waits for them) are committed before anything here is deleted.
        await self._lock([customer_id])
        await self.conn.execute(
            "UPDATE consent_events SET customer_id = NULL WHERE customer_id = $1", customer_id
        )
        await self.conn.execute(decision_log.erase_sql("postgres", "$1"), customer_id)
        await self.conn.execute(
            "DELETE FROM inbound_review WHERE address_ref IN "
            "(SELECT address_ref FROM contacts WHERE customer_id = $1)",
            customer_id,
        )
        await self.conn.execute("DELETE FROM customers WHERE id = $1", customer_id)

    async def topic_categories(self, topic_ids: Iterable[str]) -> dict[str, str]:
        found = await self.conn.fetch(
            "SELECT id, category FROM topics WHERE id = ANY($1::text[])", list(topic_ids)
        )
        return {row[0]: row[1] for row in found}

    async def get_topic(self, topic_id: str) -> Topic | None:
        return await get_topic(self.conn, topic_id)

    async def put_topic(self, topic_id: str, topic: Topic, at: datetime) -> bool:
        """True when the topic is new (else it is replaced, keeping its created_at)."""
        created: bool = await self.conn.fetchval(
            _PUT_TOPIC_SQL,
            topic_id,
            topic.category,
            json_encode(topic.names).decode(),
            json_encode(topic.descriptions).decode(),
            format_at(at),
            int(topic.double_opt_in),
        )
        return created

    async def topic_in_use(self, topic_id: str) -> bool:
        used: bool = await self.conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM customer_topics WHERE topic_id = $1) "
            "OR EXISTS (SELECT 1 FROM campaigns WHERE topic = $1)",
            topic_id,
        )
        return used

    async def delete_topic(self, topic_id: str) -> bool:
        return _count(await self.conn.execute("DELETE FROM topics WHERE id = $1", topic_id)) > 0

    async def append_events(
        self,
        changes: list[Change],
        *,
        customer_id: str | None,
        customer_ref: str | None,
        attribution: Attribution,
        at: datetime,
    ) -> list[ConsentEvent]:
        """Chain ``changes`` after the head and write them (guarantee 2): the head row stays locked until
        this transaction ends, so a concurrent append waits and then chains after these (seq without
        gaps: no sequence is involved)."""
        if not changes:
            return []
        head = await self.conn.fetchrow("SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE")
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
            "UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1", last.seq, last.hash
        )
        return events

    async def get_notice(self, notice_version: str) -> Notice | None:
        return await get_notice(self.conn, notice_version)

    async def add_notice(self, notice: Notice) -> None:
        """Register a notice version (the caller has checked that it is new: a second INSERT of one
        version fails on the primary key)."""
        await self.conn.execute(
            "INSERT INTO notices (version, texts, sha256, registered_at) VALUES ($1, $2, $3, $4)",
            notice.notice_version,
            json_encode(notice.texts).decode(),
            json_encode(notice.sha256).decode(),
            format_at(notice.registered_at),
        )

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return await get_campaign(self.conn, campaign_id)

    async def put_campaign(self, campaign_id: str, campaign: Campaign, at: datetime) -> bool:
        """True when the campaign is new (else it is replaced, keeping its created_at)."""
        created: bool = await self.conn.fetchval(
            _PUT_CAMPAIGN_SQL,
            campaign_id,
            campaign.topic,
            json_encode(campaign.channels).decode(),
            format_at(campaign.send_by) if campaign.send_by else None,
            json_encode(content_column(campaign)).decode(),
            format_at(at),
        )
        return created

    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs:
        """The gate inputs of ``ids``, loaded after their ``customers`` rows are locked (in id order), so
        they stay locked for this transaction (guarantee 1)."""
        await self._lock(ids)
        return await gate.gate_inputs(self.conn, ids, topic, campaign_id, bound)

    async def campaign_views(self, campaign_ids: list[str]) -> dict[str, CampaignView]:
        """The gate's view of these campaigns (with their topics' categories), in one query."""
        return await gate.campaign_views(self.conn, campaign_ids)

    async def record_gate(
        self,
        upsert: list[tuple[str, str, Reservation]],
        delete: list[tuple[str, str]],
        decisions: list[DecisionRow],
    ) -> None:
        """Reservations made ((customer, campaign, reservation)) and released ((customer, campaign)),
        and the decision log rows."""
        # Guarantee 1: a release (or a reservation) only with its customers locked, in id order, so it
        # never lands between a gate's load and its commit.
        await self._lock([cid for cid, _ in delete] + [cid for cid, _, _ in upsert])
        if upsert or delete or decisions:
            await gate.record_gate(self.conn, upsert, delete, decisions)

    async def create_key(self, name: str, role: Role, key_hash: str, prefix: str, at: datetime) -> ApiKey:
        stamp = format_at(at)
        key_id: int = await self.conn.fetchval(
            "INSERT INTO api_keys (name, role, key_hash, key_prefix, created_at) "
            "VALUES ($1, $2, $3, $4, $5) RETURNING id",
            name,
            role,
            key_hash,
            prefix,
            stamp,
        )
        return ApiKey(id=key_id, name=name, role=role, prefix=prefix, created_at=stamp, revoked_at=None)

    async def revoke_key(self, key_id: int, at: datetime) -> bool:
        status = await self.conn.execute(
            "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL", format_at(at), key_id
        )
        return _count(status) > 0

    # -- outbox ---------------------------------------------------------------------------------

    async def claim_due(self, channel: str, now_us: int, lease_until_us: int, limit: int) -> list[OutboxItem]:
        """Lease up to ``limit`` due messages of one channel, earliest first; a row another dispatcher
        is claiming at this moment is skipped, never leased twice (guarantee 4)."""
        found = await self.conn.fetch(
            _CLAIM_DUE_SQL, now_us, channel, lease_until_us, limit if limit >= 0 else None
        )
        items = (OutboxItem(r[0], r[1], r[2], r[3], r[4], r[5], lease_until_us) for r in found)
        return sorted(items, key=_outbox_order)  # RETURNING keeps no order

    async def update_outbox(self, updates: list[OutboxUpdate], at: datetime) -> None:
        if not updates:
            return
        stamp = format_at(at)
        await self.conn.executemany(
            _UPDATE_OUTBOX_SQL,
            [
                (
                    u.status,
                    u.channel,
                    u.not_before_us,
                    u.last_error,
                    int(u.attempted),
                    u.sent,
                    stamp,
                    u.keep_lease,
                    u.campaign_id,
                    u.customer_id,
                    u.lease_until_us,
                )
                for u in updates
            ],
        )

    async def add_message_history(self, events: list[MessageEvent]) -> None:
        """Message history rows (migration 0020, store/trace.py), in one statement over arrays."""
        if events:
            await self.conn.execute(ADD_HISTORY_SQL, *history_columns(events))

    async def lock_ledger_head(self) -> tuple[int, str, Callable[[], str]]:
        head = await self.conn.fetchrow("SELECT seq, hash FROM ledger_head WHERE id = 1 FOR UPDATE")
        assert head is not None, "ledger_head row missing: migration 0001 not applied"
        return int(head[0]), str(head[1]), self._new_id

    async def suppressed_addresses(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        if not pairs:
            return set()
        rows = await self.conn.fetch(
            "SELECT s.channel, s.address_ref FROM suppressions s "
            "JOIN unnest($1::text[], $2::text[]) AS p(channel, address_ref) "
            "ON s.channel = p.channel AND s.address_ref = p.address_ref",
            [c for c, _ in pairs],
            [r for _, r in pairs],
        )
        return {(row[0], row[1]) for row in rows}

    async def write_import(self, writes: ImportWrites) -> None:
        """A bulk-import chunk (services/imports.py): one executemany per statement."""
        created = [c for c, _, new in writes.customers if new]
        replaced = [c for c, _, new in writes.customers if not new]
        await self._lock([c.customer_id for c in replaced] + [cid for cid, _, _ in writes.preferences])
        if created:
            await self.conn.executemany(
                "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at, "
                "link_gen, phone_places) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        if replaced:
            await self.conn.executemany(
                "UPDATE customers SET timezone = $1, locale = $2, country = $3, updated_at = $4, "
                "phone_places = $5 WHERE id = $6",
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
            await self.conn.execute(
                "DELETE FROM contacts WHERE customer_id = ANY($1::text[])", [c.customer_id for c in replaced]
            )
        contacts = [
            (c.customer_id, ch, addr, refs[ch])
            for c, refs, _ in writes.customers
            for ch, addr in c.profile.contacts.items()
        ]
        if contacts:
            await self.conn.executemany(
                "INSERT INTO contacts (customer_id, channel, address, address_ref) VALUES ($1, $2, $3, $4)",
                contacts,
            )
        if writes.preferences:
            await self.conn.executemany(
                "UPDATE customers SET channel = $1, quiet_start = $2, quiet_end = $3, max_per_week = $4, "
                "paused_until = $5, updated_at = $6 WHERE id = $7",
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
            await double_opt_in.write_topics(
                self.conn, [(cid, p.topics, at) for cid, p, at in writes.preferences]
            )
        if writes.events:
            await self.conn.executemany(INSERT_EVENT_SQL, [event_row(e) for e in writes.events])
            last = writes.events[-1]
            await self.conn.execute(
                "UPDATE ledger_head SET seq = $1, hash = $2 WHERE id = 1", last.seq, last.hash
            )

    async def get_customers(self, customer_ids: list[str]) -> dict[str, Customer]:
        """Many customers in one query (the dispatcher renders a batch at once), locked for this
        transaction in id order first (every multi-customer write locks in the gate's order)."""
        await self._lock(customer_ids)
        return await get_customers(self.conn, customer_ids)

    # -- notifications (migration 0015; store/postgres/notifications.py) ----------------------------

    async def queue_notification(self, customer_id: str, kind: str, at: datetime) -> bool:
        return await notifications.queue_notification(self.conn, customer_id, kind, at)

    async def confirm_topic(self, customer_id: str, topic: str) -> bool:
        return await double_opt_in.confirm_topic(self.conn, customer_id, topic)

    async def claim_notifications(
        self, now_us: int, lease_until_us: int, limit: int
    ) -> list[NotificationItem]:
        return await notifications.claim_notifications(self.conn, now_us, lease_until_us, limit)

    async def update_notifications(self, updates: list[NotificationUpdate], at: datetime) -> None:
        await notifications.update_notifications(self.conn, updates, at)

    async def has_reservation(self, customer_id: str, campaign_id: str) -> bool:
        found = await self.conn.fetchval(
            "SELECT 1 FROM reservations WHERE customer_id = $1 AND campaign_id = $2", customer_id, campaign_id
        )
        return found is not None

    # -- suppressions ---------------------------------------------------------------------------

    async def add_suppression(
        self, channel: str, address_ref: str, reason: str, at: datetime, *, scope: str = "all"
    ) -> bool:
        """True when the row is new, or when a hard (``all``) suppression upgraded a ``marketing`` one in
        place (reason, since and scope become the new one's); a ``marketing`` one never downgrades."""
        status = await self.conn.execute(
            _ADD_SUPPRESSION_SQL, channel, address_ref, reason, format_at(at), scope
        )
        return _count(status) > 0

    async def remove_suppression(
        self, channel: str, address_ref: str, *, scope: str | None = None, reason: str | None = None
    ) -> str | None:
        """The scope of the suppression removed, or None when there was none (of that scope and reason,
        when given)."""
        removed = await self.conn.fetchval(
            "DELETE FROM suppressions WHERE channel = $1 AND address_ref = $2 "
            "AND scope = coalesce($3, scope) AND reason = coalesce($4, reason) RETURNING scope",
            channel,
            address_ref,
            scope,
            reason,
        )
        return None if removed is None else str(removed)

    async def keep_for_review(self, channel: str, address_ref: str, text: str, at: datetime) -> None:
        await self.conn.execute(
            "INSERT INTO inbound_review (channel, address_ref, text, received_at) VALUES ($1, $2, $3, $4)",
            channel,
            address_ref,
            text,
            format_at(at),
        )

    async def suppression_reason(self, channel: str, address_ref: str) -> str | None:
        reason = await self.conn.fetchval(
            "SELECT reason FROM suppressions WHERE channel = $1 AND address_ref = $2", channel, address_ref
        )
        return None if reason is None else str(reason)

    async def get_review(self, review_id: int) -> ReviewText | None:
        row = await self.conn.fetchrow(
            "SELECT id, channel, address_ref, text, received_at, resolved_at, resolution, resolved_by "
            "FROM inbound_review WHERE id = $1",
            review_id,
        )
        return None if row is None else ReviewText(*row)

    async def resolve_review(self, review_id: int, resolution: str, by: str, at: datetime) -> bool:
        """False when there is no such open text."""
        status = await self.conn.execute(
            "UPDATE inbound_review SET resolved_at = $1, resolution = $2, resolved_by = $3 "
            "WHERE id = $4 AND resolved_at IS NULL",
            format_at(at),
            resolution,
            by,
            review_id,
        )
        return _count(status) > 0

    async def customers_with_address(self, channel: str, address_ref: str) -> list[str]:
        found = await self.conn.fetch(
            "SELECT customer_id FROM contacts WHERE channel = $1 AND address_ref = $2 ORDER BY customer_id",
            channel,
            address_ref,
        )
        return [row[0] for row in found]

    # -- address refs v2 (migration 0010; services/refs_upgrade.py) ------------------------------------

    async def contacts_with_v1_refs(self) -> list[tuple[str, str, str]]:
        """(customer_id, channel, address) of every contact while contacts still hold v1 refs, else []."""
        pending = await self.conn.fetchval("SELECT contacts_v1 FROM address_refs_upgrade WHERE id = 1")
        if not pending:
            return []
        found = await self.conn.fetch(
            "SELECT customer_id, channel, address FROM contacts ORDER BY customer_id, channel"
        )
        return [(r[0], r[1], r[2]) for r in found]

    async def rewrite_contact_refs(self, rows: list[tuple[str, str, str]]) -> None:
        """(customer_id, channel, v2 ref) for every contact; then contacts hold no v1 ref. The gate row
        follows (migration 0012's trigger); the caller converts the suppressions of those addresses in
        the same transaction."""
        if rows:
            await self.conn.executemany(
                "UPDATE contacts SET address_ref = $1 WHERE customer_id = $2 AND channel = $3",
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
        return {row[0] for row in await self.conn.fetch("SELECT address_ref FROM address_refs_v1")}

    async def convert_v1_refs(self, refs: dict[str, str]) -> int:
        """``refs``: v1 ref -> v2 ref of addresses known in plain text. Each suppression under one of
        those v1 refs (any channel) becomes the same suppression (reason, since) under the v2 ref, by
        DELETE and INSERT so that the gate-row triggers see it (the v2 one is kept when it exists
        already); review texts take the v2 ref. Returns the number of suppressions converted."""
        if not refs:
            return 0
        found = await self.conn.fetch(
            "SELECT address_ref FROM address_refs_v1 WHERE address_ref = ANY($1::text[]) "
            "ORDER BY address_ref",
            list(refs),
        )
        converted = 0
        for (old,) in found:
            channels = await self.conn.fetch(
                "SELECT channel FROM suppressions WHERE address_ref = $1 ORDER BY channel", old
            )
            for (channel,) in channels:
                await self._move_suppression(channel, old, refs[old])
            converted += len(channels)
            await self.conn.execute(
                "UPDATE inbound_review SET address_ref = $1 WHERE address_ref = $2", refs[old], old
            )
            await self.conn.execute("DELETE FROM address_refs_v1 WHERE address_ref = $1", old)
        return converted

    async def _move_suppression(self, channel: str, old: str, new: str) -> bool:
        """The suppression under ``old`` becomes the same one (reason, since, scope) under ``new``, by
        DELETE and INSERT so that the gate-row triggers see it; when ``new`` is suppressed already it is
        kept, upgraded to ``all`` if the moved one was hard. False when there was none under ``old``."""
        row = await self.conn.fetchrow(
            "DELETE FROM suppressions WHERE channel = $1 AND address_ref = $2 RETURNING reason, since, scope",
            channel,
            old,
        )
        if row is None:
            return False
        await self.conn.execute(_ADD_SUPPRESSION_SQL, channel, new, row[0], row[1], row[2])
        return True

    # -- email refs with IDNA domains (migration 0012; services/refs_upgrade.py) -----------------------

    async def contacts_for_idna_rekey(self) -> list[tuple[str, str, str, str]] | None:
        """(customer_id, channel, address, address_ref) of the email contacts with a non-ASCII character
        while migration 0012's re-keying is pending, else None."""
        pending = await self.conn.fetchval("SELECT pending FROM address_refs_idna WHERE id = 1")
        if not pending:
            return None
        found = await self.conn.fetch(
            "SELECT customer_id, channel, address, address_ref FROM contacts "
            "WHERE channel = 'email' AND address ~ '[^ -~]' ORDER BY customer_id, channel"
        )
        return [(r[0], r[1], r[2], r[3]) for r in found]

    async def rekey_contacts(self, rows: list[tuple[str, str, str]]) -> None:
        """(customer_id, channel, new ref); then the re-keying of migration 0012 is done. The gate row
        follows (trigger); the caller moves the suppressions of the old refs in the same transaction."""
        if rows:
            await self.conn.executemany(
                "UPDATE contacts SET address_ref = $1 WHERE customer_id = $2 AND channel = $3",
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
                "UPDATE inbound_review SET address_ref = $1 WHERE channel = $2 AND address_ref = $3",
                new,
                channel,
                old,
            )
        return moved

    # -- phone places (migration 0012) ----------------------------------------------------------------

    async def fill_phone_places(self) -> int:
        """When the stored places were computed with other phonenumbers data (or none yet), compute every
        customer's from their phone contacts. Returns the customers placed (0: nothing to do)."""
        version = await self.conn.fetchval("SELECT version FROM phone_places_data WHERE id = 1")
        if version is None or version == PLACES_DATA_VERSION:
            return 0
        found = await self.conn.fetch(
            "SELECT customer_id, channel, address FROM contacts WHERE channel = ANY($1::text[]) "
            "ORDER BY customer_id, channel",
            sorted(PHONE_CHANNELS),
        )
        phones: dict[str, list[tuple[str, str]]] = {}
        for cid, channel, address in found:
            phones.setdefault(cid, []).append((channel, address))
        await self.conn.execute(
            "UPDATE customers SET phone_places = '' WHERE phone_places IS DISTINCT FROM ''"
        )
        if phones:
            await self.conn.executemany(
                "UPDATE customers SET phone_places = $1 WHERE id = $2",
                [(places_text(c), cid) for cid, c in phones.items()],
            )
        await self.conn.execute("UPDATE phone_places_data SET version = $1 WHERE id = 1", PLACES_DATA_VERSION)
        return len(phones)
