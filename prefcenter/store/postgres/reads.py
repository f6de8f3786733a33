"""The store's reads on the pool (PostgreSQL twin of ``store/sqlite/reads.py``: the same orderings and
return shapes); each read is one statement on a pooled connection and sees committed data only, but the
dry-run gate's two queries, which share one snapshot. A read that cannot reach the database raises
:class:`~prefcenter.store.base.StoreUnavailable`, as a write does (:func:`unavailable` tells which
failures are the database's rather than the caller's)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from asyncpg import exceptions as pgerr

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.ledger import Notice
from prefcenter.domain.model import Customer, Topic
from prefcenter.store import listing
from prefcenter.store.base import (
    ApiKey,
    DecisionRow,
    EventFilter,
    GateInputs,
    ReviewText,
    StoreUnavailable,
    Suppression,
)
from prefcenter.store.codec import key_from_row, topic_from_row
from prefcenter.store.postgres import gate
from prefcenter.store.postgres.rows import (
    CUSTOMER_BY_REF_SQL,
    EVENT_COLUMNS,
    customer_from_row,
    event_from_row,
    get_campaign,
    get_customer,
    get_notice,
    get_topic,
)
from prefcenter.store.retention import ReservationBound

if TYPE_CHECKING:
    import asyncpg

# Failures that say the database cannot be used now, through nobody's fault of input: it is down or
# unreachable (a socket error, a connection lost or refused), shutting down or starting up, out of disk,
# memory or connection slots, read-only (a standby, or a primary demoted by a failover), or failing I/O.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    pgerr.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError among them
    pgerr.CannotConnectNowError,  # 57P03: starting up, shutting down, in recovery
    pgerr.AdminShutdownError,  # 57P01
    pgerr.CrashShutdownError,  # 57P02
    pgerr.DatabaseDroppedError,  # 57P04
    pgerr.IdleSessionTimeoutError,  # 57P05
    pgerr.InsufficientResourcesError,  # class 53: DiskFullError, OutOfMemoryError, TooManyConnectionsError
    pgerr.ReadOnlySQLTransactionError,  # 25006: a hot standby
    pgerr.PostgresSystemError,  # class 58: PostgresIOError among them
)
# The driver's own words for a pool or connection that is gone (its other InterfaceErrors are bugs).
_GONE = ("pool is closing", "pool is closed", "pool is not initialized", "connection is closed")


def unavailable(exc: BaseException, *, connecting: bool = True) -> bool:
    """Is ``exc`` the database being unusable now (rather than a bug, or the caller's input)?
    ``connecting``: raised while a connection was being had, where a socket error (``OSError``:
    refused, reset, unreachable, timed out) is the database's too."""
    if isinstance(exc, _UNAVAILABLE) or (connecting and isinstance(exc, OSError)):
        return True
    return isinstance(exc, pgerr.InterfaceError) and str(exc).endswith(_GONE)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def reading() -> Iterator[None]:
    """A read's failure for want of the database becomes StoreUnavailable (answered 503)."""
    try:
        yield
    except Exception as exc:
        if unavailable(exc):
            raise StoreUnavailable(describe(exc)) from exc
        raise


def _event_where(flt: EventFilter, first: int) -> tuple[str, list[Any]]:
    """The filter as a WHERE clause whose placeholders start at ``$first``, and its parameters."""
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in (
        ("customer_ref = ${}", flt.customer_ref),
        ("at >= ${}", flt.since),
        ("at < ${}", flt.until),
    ):
        if value is not None:
            clauses.append(clause.format(first + len(params)))
            params.append(value)
    return (" AND ".join(clauses) or "TRUE"), params


def _limit(limit: int) -> int | None:
    """SQLite reads a negative LIMIT as none; PostgreSQL's none is NULL."""
    return limit if limit >= 0 else None


_DECISION_COUNTS_SQL = (
    "SELECT reason, count(*) FROM decisions d WHERE campaign_id = $1 AND verdict = 'deny' "
    "AND id = (SELECT max(id) FROM decisions e WHERE e.campaign_id = d.campaign_id "
    "AND e.customer_id = d.customer_id) "
    "AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.campaign_id = d.campaign_id "
    "AND o.customer_id = d.customer_id) GROUP BY reason"
)
_KEY_COLUMNS = "SELECT id, name, role, key_prefix, created_at, revoked_at FROM api_keys"


# The customer's topics as a JSON array, per row of GET /v1/customers (store/listing.py).
TOPICS_EXPR = "SELECT json_agg(k.topic_id)::text FROM customer_topics k WHERE k.customer_id = c.id"


def _ph(n: int) -> str:
    return f"${n}"


class PgReads:
    """The reads of :class:`prefcenter.store.base.Store`; :class:`PostgresStore` opens the pool."""

    pool: asyncpg.Pool[asyncpg.Record] | None

    @property
    def db(self) -> asyncpg.Pool[asyncpg.Record]:
        if self.pool is None:
            raise RuntimeError("store is not open")
        return self.pool

    async def ping(self) -> None:
        with reading():
            await self.db.fetchval("SELECT 1")

    async def get_customer(self, customer_id: str) -> Customer | None:
        with reading():
            return await get_customer(self.db, customer_id)

    async def get_customer_by_ref(self, customer_ref: str) -> Customer | None:
        with reading():
            row = await self.db.fetchrow(CUSTOMER_BY_REF_SQL, customer_ref)
        return None if row is None else customer_from_row(row)

    async def list_topics(self) -> dict[str, Topic]:
        with reading():
            rows = await self.db.fetch(
                "SELECT id, category, names, descriptions, double_opt_in FROM topics ORDER BY id"
            )
        return {row[0]: topic_from_row(row[1:]) for row in rows}

    async def get_topic(self, topic_id: str) -> Topic | None:
        with reading():
            return await get_topic(self.db, topic_id)

    async def get_campaign(self, campaign_id: str) -> Campaign | None:
        with reading():
            return await get_campaign(self.db, campaign_id)

    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs:
        """A consistent snapshot for a dry run: both queries in one READ ONLY REPEATABLE READ
        transaction (no locks taken, nothing written)."""
        with reading():
            async with (
                self.db.acquire() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                return await gate.gate_inputs(conn, ids, topic, campaign_id, bound)

    async def decision_log(self, customer_id: str, campaign_id: str | None) -> list[DecisionRow]:
        sql, params = listing.decision_log_sql("postgres", _ph, customer_id, campaign_id)
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [
            (row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9])  # a DecisionRow
            for row in rows
        ]

    async def decision_counts(self, campaign_id: str) -> dict[str, int]:
        """Deny reasons of the latest decision per customer of a campaign, for the customers without an
        outbox row for it: a recipient with one is counted under its outbox status (a deny at re-gate
        is its ``withdrawn`` or ``suppressed``), so each recipient is counted once (API.md)."""
        with reading():
            rows = await self.db.fetch(_DECISION_COUNTS_SQL, campaign_id)
        return {row[0]: row[1] for row in rows}

    async def outbox_counts(self, campaign_id: str) -> dict[str, int]:
        with reading():
            rows = await self.db.fetch(
                "SELECT status, count(*) FROM outbox WHERE campaign_id = $1 GROUP BY status", campaign_id
            )
        return {row[0]: row[1] for row in rows}

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
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [listing.customer_item(row) for row in rows]

    async def list_campaigns(self, *, after: str | None, limit: int) -> list[dict[str, Any]]:
        sql, params = listing.campaigns_sql(_ph, after=after, limit=limit)
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [listing.campaign_item(row) for row in rows]

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
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [listing.message_item(row) for row in rows]

    async def decision_page(
        self, customer_id: str, campaign_id: str | None, *, after: int | None, limit: int
    ) -> list[tuple[int, DecisionRow]]:
        sql, params = listing.decisions_sql(
            "postgres", _ph, customer_id=customer_id, campaign_id=campaign_id, after=after, limit=limit
        )
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [(row[0], tuple(row[1:])) for row in rows]

    async def suppression_page(
        self, channel: str | None, *, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]:
        sql, params = listing.suppressions_sql(_ph, channel=channel, after=after, limit=limit)
        with reading():
            rows = await self.db.fetch(sql, *params)
        return [Suppression(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def outbox_due_count(self) -> int:
        with reading():
            count = await self.db.fetchval(
                "SELECT count(*) FROM outbox WHERE status IN ('queued', 'deferred')"
            )
        return int(count or 0)

    async def list_suppressions(self, channel: str | None) -> list[Suppression]:
        sql = "SELECT channel, address_ref, reason, since, scope FROM suppressions"
        params: tuple[str, ...] = ()
        if channel is not None:
            sql += " WHERE channel = $1"
            params = (channel,)
        with reading():
            rows = await self.db.fetch(sql + " ORDER BY since, channel, address_ref", *params)
        return [Suppression(row[0], row[1], row[2], row[3], row[4]) for row in rows]

    async def inbound_for_review(self, since: str | None, resolved: bool = False) -> list[ReviewText]:
        """Texts kept for review received at or after ``since``, oldest first; open ones only unless
        ``resolved``."""
        with reading():
            rows = await self.db.fetch(
                "SELECT id, channel, address_ref, text, received_at, resolved_at, resolution, resolved_by "
                "FROM inbound_review WHERE received_at >= coalesce($1::text, '') "
                "AND ($2::boolean OR resolved_at IS NULL) ORDER BY received_at, id",
                since,
                resolved,
            )
        return [ReviewText(*row) for row in rows]

    async def inbound_open_before(self, before: str) -> int:
        """Open texts kept for review received before ``before`` (RFC 3339 Z, as stored)."""
        with reading():
            count = await self.db.fetchval(
                "SELECT count(*) FROM inbound_review WHERE resolved_at IS NULL AND received_at < $1", before
            )
        return int(count or 0)

    async def find_key(self, key_hash: str) -> ApiKey | None:
        with reading():
            row = await self.db.fetchrow(_KEY_COLUMNS + " WHERE key_hash = $1", key_hash)
        return None if row is None else key_from_row(row)

    async def list_keys(self) -> list[ApiKey]:
        with reading():
            rows = await self.db.fetch(_KEY_COLUMNS + " ORDER BY id")
        return [key_from_row(row) for row in rows]

    async def get_notice(self, notice_version: str) -> Notice | None:
        with reading():
            return await get_notice(self.db, notice_version)

    async def ledger_head(self) -> tuple[int, str]:
        with reading():
            row = await self.db.fetchrow("SELECT seq, hash FROM ledger_head WHERE id = 1")
        if row is None:
            raise RuntimeError("ledger head missing")
        return int(row[0]), str(row[1])

    async def consent_events(self, flt: EventFilter, *, after_seq: int, limit: int) -> list[dict[str, Any]]:
        where, params = _event_where(flt, 2)
        with reading():
            rows = await self.db.fetch(
                f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq > $1 AND {where} "
                f"ORDER BY seq LIMIT ${len(params) + 2}",
                after_seq,
                *params,
                _limit(limit),
            )
        return [event_from_row(row) for row in rows]

    async def iter_consent_events(
        self, flt: EventFilter, *, after_seq: int = 0, up_to_seq: int | None = None, chunk: int = 2000
    ) -> AsyncIterator[dict[str, Any]]:
        """Events in seq order in chunks (keyset pagination): memory stays constant for any size.

        ``up_to_seq`` None means the head at the start of the iteration.
        """
        if up_to_seq is None:
            up_to_seq = (await self.ledger_head())[0]
        where, params = _event_where(flt, 3)
        sql = (
            f"SELECT {EVENT_COLUMNS} FROM consent_events WHERE seq > $1 AND seq <= $2 AND {where} "
            f"ORDER BY seq LIMIT ${len(params) + 3}"
        )
        after = after_seq
        while True:
            with reading():
                rows = await self.db.fetch(sql, after, up_to_seq, *params, _limit(chunk))
            if not rows:
                return
            for row in rows:
                yield event_from_row(row)
            after = rows[-1][0]
            if len(rows) < chunk:
                return
