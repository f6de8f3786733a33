"""The store's reads, on the reader connection: they see committed data only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiosqlite

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.ledger import Notice
from prefcenter.domain.model import Customer, Topic
from prefcenter.store import listing
from prefcenter.store.base import ApiKey, DecisionRow, EventFilter, GateInputs, ReviewText, Suppression
from prefcenter.store.codec import topic_from_row
from prefcenter.store.retention import ReservationBound
from prefcenter.store.sqlite.gate import gate_inputs_sync
from prefcenter.store.sqlite.rows import (
    CUSTOMER_BY_REF_SQL,
    EVENT_COLUMNS,
    customer_from_row,
    event_from_row,
    get_campaign,
    get_customer,
    get_notice,
    get_topic,
    key_from_row,
)
from prefcenter.store.sqlite.thread import SqliteThread

# The customer's topics as a JSON array, per row of GET /v1/customers (store/listing.py).
TOPICS_EXPR = "SELECT json_group_array(topic_id) FROM customer_topics WHERE customer_id = c.id"


def _ph(_: int) -> str:
    return "?"


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


class SqliteReads:
    """The reads of :class:`prefcenter.store.base.Store`; :class:`SqliteStore` opens the connection."""

    _reader: aiosqlite.Connection | None
    _gate_reader: SqliteThread | None  # the dry-run gate's reads, in one hop

    @property
    def gate_reader(self) -> SqliteThread:
        if self._gate_reader is None:
            raise RuntimeError("store is not open")
        return self._gate_reader

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("store is not open")
        return self._reader

    async def get_customer(self, customer_id: str) -> Customer | None:
        return await get_customer(self.reader, customer_id)

    async def get_customer_by_ref(self, customer_ref: str) -> Customer | None:
        async with self.reader.execute(CUSTOMER_BY_REF_SQL, (customer_ref,)) as cur:
            row = await cur.fetchone()
        return None if row is None else customer_from_row(row)

    async def list_topics(self) -> dict[str, Topic]:
        async with self.reader.execute(
            "SELECT id, category, names, descriptions, double_opt_in FROM topics ORDER BY id"
        ) as cur:
            return {row[0]: topic_from_row(row[1:]) async for row in cur}

    async def get_topic(self, topic_id: str) -> Topic | None:
        return await get_topic(self.reader, topic_id)

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        return await get_campaign(self.reader, campaign_id)

    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs:
        """A consistent snapshot for a dry run (one read transaction over both queries)."""
        return await self.gate_reader.run(gate_inputs_sync, ids, topic, campaign_id, True, bound)

    async def decision_log(self, customer_id: str, campaign_id: str | None) -> list[DecisionRow]:
        sql, params = listing.decision_log_sql("sqlite", _ph, customer_id, campaign_id)
        async with self.reader.execute(sql, params) as cur:
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

    async def list_customers(
        self,
        *,
        topic: str | None,
        channel: str | None,
        updated_since: str | None,
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        sql, params = listing.customers_sql(
            _ph,
            TOPICS_EXPR,
            topic=topic,
            channel=channel,
            updated_since=updated_since,
            after=after,
            limit=limit,
        )
        async with self.reader.execute(sql, params) as cur:
            return [listing.customer_item(row) for row in await cur.fetchall()]

    async def list_campaigns(self, *, after: str | None, limit: int) -> list[dict[str, Any]]:
        sql, params = listing.campaigns_sql(_ph, after=after, limit=limit)
        async with self.reader.execute(sql, params) as cur:
            return [listing.campaign_item(row) for row in await cur.fetchall()]

    async def list_messages(
        self,
        *,
        campaign_id: str | None,
        customer_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]:
        sql, params = listing.messages_sql(
            _ph, campaign_id=campaign_id, customer_id=customer_id, status=status, after=after, limit=limit
        )
        async with self.reader.execute(sql, params) as cur:
            return [listing.message_item(row) for row in await cur.fetchall()]

    async def decision_page(
        self, customer_id: str, campaign_id: str | None, *, after: int | None, limit: int
    ) -> list[tuple[int, DecisionRow]]:
        sql, params = listing.decisions_sql(
            "sqlite", _ph, customer_id=customer_id, campaign_id=campaign_id, after=after, limit=limit
        )
        async with self.reader.execute(sql, params) as cur:
            return [(row[0], tuple(row[1:])) for row in await cur.fetchall()]

    async def suppression_page(
        self, channel: str | None, *, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]:
        sql, params = listing.suppressions_sql(_ph, channel=channel, after=after, limit=limit)
        async with self.reader.execute(sql, params) as cur:
            return [Suppression(*row) for row in await cur.fetchall()]

    async def outbox_due_count(self) -> int:
        async with self.reader.execute(
            "SELECT count(*) FROM outbox WHERE status IN ('queued', 'deferred')"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def list_suppressions(self, channel: str | None) -> list[Suppression]:
        sql = "SELECT channel, address_ref, reason, since, scope FROM suppressions"
        params: tuple[str, ...] = ()
        if channel is not None:
            sql += " WHERE channel = ?"
            params = (channel,)
        async with self.reader.execute(sql + " ORDER BY since, channel, address_ref", params) as cur:
            return [Suppression(*row) for row in await cur.fetchall()]

    async def inbound_for_review(self, since: str | None, resolved: bool = False) -> list[ReviewText]:
        """Texts kept for review received at or after ``since``, oldest first; open ones only unless
        ``resolved``."""
        async with self.reader.execute(
            "SELECT id, channel, address_ref, text, received_at, resolved_at, resolution, resolved_by "
            "FROM inbound_review WHERE received_at >= coalesce(?, '') AND (? OR resolved_at IS NULL) "
            "ORDER BY received_at, id",
            (since, resolved),
        ) as cur:
            return [ReviewText(*row) for row in await cur.fetchall()]

    async def inbound_open_before(self, before: str) -> int:
        """Open texts kept for review received before ``before`` (RFC 3339 Z, as stored)."""
        async with self.reader.execute(
            "SELECT count(*) FROM inbound_review WHERE resolved_at IS NULL AND received_at < ?", (before,)
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def find_key(self, key_hash: str) -> ApiKey | None:
        async with self.reader.execute(
            "SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys WHERE key_hash = ?",
            (key_hash,),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else key_from_row(row)

    async def list_keys(self) -> list[ApiKey]:
        async with self.reader.execute(
            "SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys ORDER BY id"
        ) as cur:
            return [key_from_row(row) async for row in cur]

    async def get_notice(self, notice_version: str) -> Notice | None:
        return await get_notice(self.reader, notice_version)

    async def ledger_head(self) -> tuple[int, str]:
        async with self.reader.execute("SELECT seq, hash FROM ledger_head WHERE id = 1") as cur:
            row = await cur.fetchone()
        if row is None:
            raise RuntimeError("ledger head missing")
        return int(row[0]), str(row[1])

    async def consent_events(self, flt: EventFilter, *, after_seq: int, limit: int) -> list[dict[str, Any]]:
        where, params = _event_where(flt)
        async with self.reader.execute(
            f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq > ? AND {where} ORDER BY seq LIMIT ?",
            (after_seq, *params, limit),
        ) as cur:
            return [event_from_row(row) for row in await cur.fetchall()]

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
            f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq > ? AND seq <= ? AND {where} "
            "ORDER BY seq LIMIT ?"
        )
        while True:
            async with self.reader.execute(sql, (after, up_to_seq, *params, chunk)) as cur:
                rows = list(await cur.fetchall())
            if not rows:
                return
            for row in rows:
                yield event_from_row(row)
            after = rows[-1][0]
            if len(rows) < chunk:
                return
