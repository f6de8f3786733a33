"""The storage interface's reads of what policy replay re-decides
(issue 13: the logged decisions and what was in force at each).

:class:`ReplayStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/replay.py``, ``store/postgres/replay.py``) with the same SQL shapes and orderings.

Replay streams the whole decision log in chunks of customers (keyset over the customers' primary key:
a chunk holds about ``chunk`` decisions, and always every decision of each customer in it, so a
customer's reservations can be rebuilt from its own log alone; the chunk's rows are read one seek
per logged campaign on ``decisions_by_campaign``, see ``store/decision_log.py``), and with each
chunk what the service needs about those customers: their current profile row, their ledger events
in ``seq`` order, their current contacts (with the current suppression of each, if any) and their
permanently failed messages.
Every read is a plain read: nothing is written, no lock is taken. Chunks are separate statements, so
a chunk sees what was committed when it was read (a replay over a live database is not one snapshot).

With ``since``/``until`` (issue 14) the chunks' decisions are read bounded (``_BOUNDED``): only the
customers with a decision in range, and of each only the rows that can change the answer; the keyset
still walks every customer id, so a chunk may hold no decision at all. Both engines
run the same statements (:func:`replay_statements`) through the same loop (:func:`iter_chunks`).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, Protocol

import msgspec

from prefcenter.domain.model import CampaignView
from prefcenter.store import decision_log

#: (customer_id, packed): ordered by customer_id, then id (log order); ``packed`` is campaign_id, at,
#: verdict, reason and channel ('' for none) joined by U+001F (:data:`PACK_SEPARATOR`): one text a
#: row instead of five, as a chunk's rows repeat few distinct ones (the read is the replay's largest
#: cost after the engine)
ReplayDecision = tuple[str, str]
PACK_SEPARATOR = "\x1f"
#: (customer_id, ref, timezone, country, contact_channels, phone_places, phone contacts JSON object or
#: None (only when phone_places is NULL), created_at)
ReplayProfile = tuple[str, str, str, str, str, str | None, str | None, str]
#: (customer_id, seq, at, action, subject, value JSON text, source): each customer's in seq order (the
#: service sorts a customer's events that are not)
ReplayEvent = tuple[str, int, str, str, str, str, str]
#: (customer_id, channel, address_ref, suppression scope or None, suppression since or None)
ReplayContact = tuple[str, str, str, str | None, str | None]
#: (customer_id, campaign_id, updated_at) of an outbox row that ended ``failed`` or ``suppressed``
ReplayFailure = tuple[str, str, str]


class ReplayChunk(msgspec.Struct):
    """One chunk of customers: every decision of each of them and what replay needs about them."""

    decisions: Sequence[ReplayDecision]
    profiles: Sequence[ReplayProfile]
    events: Sequence[ReplayEvent]
    contacts: Sequence[ReplayContact]
    failures: Sequence[ReplayFailure]


#: Decisions per chunk (at least; a chunk ends after its last customer's last decision).
REPLAY_CHUNK = 50_000


def chunk_from_rows(decisions: Any, profiles: Any, events: Any, contacts: Any, failures: Any) -> ReplayChunk:
    """A chunk from the adapters' fetched rows as they come (lists of sqlite3 tuples or of asyncpg
    Records: both index and unpack as tuples; not copied)."""
    return ReplayChunk(decisions, profiles, events, contacts, failures)


#: The campaigns with their topics' categories (the columns :func:`campaign_view_from_row` reads).
CAMPAIGNS_SQL = (
    "SELECT c.id, c.topic, t.category, c.channels, c.send_by FROM campaigns c JOIN topics t ON t.id = c.topic"
)


#: The topics that require a double opt-in confirmation.
DOUBLE_OPT_IN_SQL = "SELECT id FROM topics WHERE double_opt_in = 1"


# --- the chunk's statements, one text for both engines ----------------------------------------------
# The engines differ only in how a statement names its parameters (``?`` / ``$n``), the separator's
# function (``char(31)`` / ``chr(31)``), how a statement reads a list of customer ids (SQLite: a JSON
# array through ``json_each``, joined first; PostgreSQL: ``= ANY($1::text[])``), the contacts' JSON
# object (``json_group_object`` / ``json_object_agg``) and PostgreSQL's explicit event order (SQLite's
# index gives it). Every statement is served by the index its engine's module names.


class ReplayStatements(NamedTuple):
    """One engine's statements of :meth:`ReplayStore.iter_replay` (see :func:`replay_statements`)."""

    boundary: str  # (lower, offset) -> the chunk's last customer
    decisions: str  # (lower): the last chunk
    decisions_upto: str  # (lower, upper)
    bounded: str  # (lower, upper, since_key, until_key, reach_key): see bound_keys
    bounded_last: str  # (lower, since_key, until_key, reach_key): the last chunk
    profiles: str  # (ids)
    events: str
    contacts: str
    failures: str


_PACKED = (
    "d.campaign_id || {sep} || d.at || {sep} || d.verdict || {sep} || d.reason || {sep} || "
    "coalesce(d.channel, '')"
)
# A bounded read (issue 14: --since/--until pushed down into the read). Of a customer's decisions it
# reads those up to the customer's last one in [since, until) (by id: a later row changes nothing replay
# answers), of those every one at or after ``since - reach`` (reach: the candidate's longest cap window:
# an older reservation can never cap a decision in range), and every one of each (customer, campaign)
# that has such a row: whether a campaign holds a reservation (a retry, rules 1-8 only) and where its
# reservation stands depend on all of that pair's earlier rows, however old. What is left out is only
# pairs whose every row up to there is older than ``since - reach``: their reservations cap nothing in
# range and they have no decision in range, so the answer is the same as over the whole log.
_BOUNDED = """
{with_logged}
     d AS (SELECT id, customer_id, campaign_id, at, verdict, reason, channel FROM decisions
           WHERE {in_logged} AND customer_id > {p1} {upper}),
     top AS (SELECT customer_id, max(id) AS last_id FROM d WHERE at >= {since} AND at < {until}
             GROUP BY customer_id),
     kept AS (SELECT d.*, t.last_id FROM d JOIN top t ON t.customer_id = d.customer_id
              WHERE d.id <= t.last_id)
SELECT customer_id, {packed} FROM kept d
WHERE d.at >= {reach} OR (d.customer_id, d.campaign_id) IN (
    SELECT customer_id, campaign_id FROM kept WHERE at >= {reach})
ORDER BY customer_id, id
"""


_SUPPRESSION_JOIN = " LEFT JOIN suppressions s ON s.channel = k.channel AND s.address_ref = k.address_ref"


def replay_statements(engine: Literal["sqlite", "postgres"]) -> ReplayStatements:
    """The statements of ``engine`` (built once, at import, by each engine's module)."""
    sqlite = engine == "sqlite"

    def p(n: int) -> str:
        return f"?{n}" if sqlite else f"${n}"

    def over(table: str, column: str, joins: str = "", where: str = "") -> str:
        """``FROM table [joins]`` restricted to the customer ids of the statement's one parameter."""
        if sqlite:
            tail = f" WHERE {where}" if where else ""
            return f"FROM json_each(?) j JOIN {table} ON {column} = j.value{joins}{tail}"
        tail = f" AND {where}" if where else ""
        return f"FROM {table}{joins} WHERE {column} = ANY($1::text[]){tail}"

    sep = "char(31)" if sqlite else "chr(31)"
    packed = _PACKED.format(sep=sep)
    logged = decision_log.with_logged()
    plain = (
        f"{logged}SELECT d.customer_id, {packed} FROM decisions d "
        f"WHERE {decision_log.in_logged(engine, 'd.campaign_id')} AND d.customer_id > {p(1)} {{upper}} "
        "ORDER BY d.customer_id, d.id"
    )
    phones = (
        "(SELECT json_group_object(k.channel, k.address) FROM contacts k"
        if sqlite
        else "(SELECT json_object_agg(k.channel, k.address)::text FROM contacts k"
    )
    bounded = functools.partial(
        _BOUNDED.format,
        packed=packed,
        p1=p(1),
        with_logged=logged.rstrip() + ",",
        in_logged=decision_log.in_logged(engine),
    )
    return ReplayStatements(
        boundary=f"SELECT id FROM customers WHERE id > {p(1)} ORDER BY id LIMIT 1 OFFSET {p(2)}",
        decisions=plain.format(upper=""),
        decisions_upto=plain.format(upper=f"AND d.customer_id <= {p(2)}"),
        bounded=bounded(upper=f"AND customer_id <= {p(2)}", since=p(3), until=p(4), reach=p(5)),
        bounded_last=bounded(upper="", since=p(2), until=p(3), reach=p(4)),
        profiles=f"""
SELECT c.id, c.ref, c.timezone, c.country, c.contact_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN {phones}
            WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END,
       c.created_at
{over("customers c", "c.id")}
""",
        events=f"""
SELECT c.id, e.seq, e.at, e.action, e.subject, e.value, e.source
{over("customers c", "c.id", " JOIN consent_events e ON e.customer_ref = c.ref")}
{"" if sqlite else "ORDER BY c.id, e.seq"}
""",
        contacts=f"""
SELECT k.customer_id, k.channel, k.address_ref, s.scope, s.since
{over("contacts k", "k.customer_id", _SUPPRESSION_JOIN)}
""",
        failures=f"""
SELECT o.customer_id, o.campaign_id, o.updated_at
{over("outbox o", "o.customer_id", where="o.status IN ('failed', 'suppressed')")}
""",
    )


def _second(moment: datetime) -> str:
    """The whole second of ``moment`` (UTC) as the decision log's ``at`` texts begin
    (``format_instant``: ``2026-11-23T07:30:00Z``, or ``…:00.5Z`` with microseconds)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def bound_keys(since: datetime | None, until: datetime | None, reach: timedelta) -> tuple[str, str, str]:
    """``(since_key, until_key, reach_key)``: text bounds on ``decisions.at`` for a bounded read that
    hold at least every decision at or after ``since`` (``since_key``) or ``since - reach``
    (``reach_key``), and before ``until`` (``until_key``). ``at`` texts compare as text, and within one
    second text order is not time order (``…:00.5Z`` < ``…:00Z``), so each bound is a whole second
    widened outwards: the replay re-applies the exact bounds to what it reads."""
    since_key = reach_key = ""  # every text is at or after ""
    until_key = "~"  # and before "~" (digits sort before it)
    if since is not None:
        since_key = _second(since)
        try:
            reach_key = _second(since - reach)
        except OverflowError:  # before year 1: nothing is older
            reach_key = ""
    if until is not None:
        try:
            until_key = _second(until + timedelta(seconds=1))
        except OverflowError:
            until_key = "~"
    return since_key, until_key, reach_key


#: An engine's one-value read: (statement, *parameters) -> the first row's first column, or None.
ReadValue = Callable[..., Awaitable[Any]]
#: An engine's rows read: (statement, *parameters) -> every row (tuples or Records, not copied).
ReadRows = Callable[..., Awaitable[Sequence[Any]]]


async def iter_chunks(
    sql: ReplayStatements,
    value: ReadValue,
    rows: ReadRows,
    ids_param: Callable[[list[str]], Any],
    *,
    chunk: int,
    since: datetime | None,
    until: datetime | None,
    reach: timedelta,
) -> AsyncIterator[ReplayChunk]:
    """:meth:`ReplayStore.iter_replay` over one engine's reads (``ids_param``: how its statements take
    the chunk's customer ids). A chunk is a run of customer ids (lower, upper] taken from the customers'
    primary key (the last one open-ended, so a decision whose customer row is gone is read too), as
    many as should hold about ``chunk`` decisions by the last chunk's count. A chunk can hold no
    decision at all (none of its customers has one, or none in range): it is passed over."""
    keys = bound_keys(since, until, reach) if since is not None or until is not None else None
    lower = ""  # every customer id is longer than this
    target = max(chunk, 1)
    width = max(1, target // 16)  # customers in the next chunk; a first guess of 16 decisions each
    while True:
        upper: str | None = await value(sql.boundary, lower, width - 1)
        if keys is None:
            if upper is None:
                decisions = await rows(sql.decisions, lower)
            else:
                decisions = await rows(sql.decisions_upto, lower, upper)
        elif upper is None:
            decisions = await rows(sql.bounded_last, lower, *keys)
        else:
            decisions = await rows(sql.bounded, lower, upper, *keys)
        if decisions:
            ids: list[str] = []
            last = None
            for d in decisions:
                if d[0] != last:
                    last = d[0]
                    ids.append(last)
            packed = ids_param(ids)
            yield chunk_from_rows(
                decisions,
                await rows(sql.profiles, packed),
                await rows(sql.events, packed),
                await rows(sql.contacts, packed),
                await rows(sql.failures, packed),
            )
        if upper is None:
            return
        lower = upper
        # at most 4x wider or narrower a step, so one customer with a long log does not swing it
        width = min(target, max(1, width // 4, min(width * 4, width * target // max(len(decisions), 1))))


class ChunkedReplay:
    """:meth:`ReplayStore.iter_replay` for an engine's class: it sets ``_replay_sql`` (its
    :func:`replay_statements`) and defines the three reads, and :func:`iter_chunks` does the rest."""

    _replay_sql: ReplayStatements

    async def _replay_value(self, sql: str, *params: Any) -> Any:
        raise NotImplementedError

    async def _replay_rows(self, sql: str, *params: Any) -> Sequence[Any]:
        raise NotImplementedError

    def _replay_ids(self, ids: list[str]) -> Any:
        raise NotImplementedError

    def iter_replay(
        self,
        *,
        chunk: int = REPLAY_CHUNK,
        since: datetime | None = None,
        until: datetime | None = None,
        reach: timedelta = timedelta(0),
    ) -> AsyncIterator[ReplayChunk]:
        return iter_chunks(
            self._replay_sql,
            self._replay_value,
            self._replay_rows,
            self._replay_ids,
            chunk=chunk,
            since=since,
            until=until,
            reach=reach,
        )


def campaign_view_from_row(row: Any) -> CampaignView:
    return CampaignView(
        campaign_id=row[0],
        topic=row[1],
        category=row[2],
        channels=tuple(msgspec.json.decode(row[3])),
        send_by=datetime.fromisoformat(row[4].replace("Z", "+00:00")) if row[4] else None,
    )


class ReplayStore(Protocol):
    """Reads of policy replay (issue 13: the logged decisions and what was in force at each)."""

    async def replay_campaigns(self) -> dict[str, CampaignView]:
        """Every campaign as the gate sees it now (its topic's category, channels, send_by)."""
        ...

    async def replay_double_opt_in_topics(self) -> set[str]:
        """The topics that now require a double opt-in confirmation (migration 0021)."""
        ...

    def iter_replay(
        self,
        *,
        chunk: int = REPLAY_CHUNK,
        since: datetime | None = None,
        until: datetime | None = None,
        reach: timedelta = timedelta(0),
    ) -> AsyncIterator[ReplayChunk]:
        """The decision log, customer by customer (see the module docstring): all of it, or with
        ``since``/``until`` only what a replay of ``[since, until)`` needs when no reservation older
        than ``since - reach`` can matter (the bounded read: see ``_BOUNDED``; customers without a
        decision in range are not read at all)."""
        ...
