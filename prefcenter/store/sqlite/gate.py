"""The gate's reads and writes as plain functions of a ``sqlite3`` connection, each run on the
connection's thread in one hop (:func:`in_one_hop`): the gate inputs of a chunk of recipients, the
campaign views, the gate load (both at once) and the record of what the gate decided; and the encoding
of the customers row's ``phone_places`` (migration 0012), so the gate never calls phonenumbers."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

import aiosqlite
import msgspec
import phonenumbers
import structlog

from prefcenter.domain.model import PHONE_CHANNELS, CampaignView, CustomerState, PhonePlace
from prefcenter.domain.phones import place_of
from prefcenter.store.base import DecisionRow, GateInputs, Reservation
from prefcenter.store.sqlite.rows import json_decode, json_encode, parse_time

log = structlog.get_logger("prefcenter.store")

T = TypeVar("T")


async def in_one_hop(conn: aiosqlite.Connection, fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(sqlite3 connection, *args)`` on the connection's own thread, in one hop.

    aiosqlite runs every call on that thread and answers through the event loop: a hop per
    ``execute``, ``fetchall`` and cursor close. The gate's reads and writes are a handful of statements
    each, so they go as one function instead (``Connection._execute`` is what aiosqlite's own methods
    use to do exactly this).
    """
    result = await conn._execute(fn, conn._conn, *args)  # type: ignore[no-untyped-call]
    return cast(T, result)


# ``phone_places`` is NULL only for a row written before migration 0012 and not yet filled at start-up
# (or written around the store): its phone contacts are read instead and placed here.
_GATE_STATES_SQL = """
SELECT c.id, c.timezone, c.country, c.channel, c.quiet_start, c.quiet_end, c.max_per_week, c.paused_until,
       c.contact_channels, c.suppressed_channels, instr(c.topic_list, ',' || ? || ',') > 0,
       c.marketing_suppressed_channels, c.phone_places,
       CASE WHEN c.phone_places IS NULL THEN (SELECT json_group_object(k.channel, k.address) FROM contacts k
            WHERE k.customer_id = c.id AND k.channel IN ('sms', 'voice', 'whatsapp')) END
FROM customers c WHERE c.id IN (SELECT value FROM json_each(?))
"""
_GATE_RESERVATIONS_SQL = """
SELECT r.customer_id, r.campaign_id, r.at_us, r.channel, r.marketing
FROM json_each(?) j JOIN reservations r ON r.customer_id = j.value
WHERE r.marketing = 1 OR r.campaign_id = ?
"""
_EMPTY: frozenset[Any] = frozenset()
_PAUSED_FOREVER = datetime.max.replace(tzinfo=UTC)
_NO_PLACES: dict[str, PhonePlace] = {}

# ---------------------------------------------------------------------------------------------------
# phone places (migration 0012): channel -> [zones, country, region] as compact JSON, "" for none

#: The data the stored places were computed from: a new phonenumbers release refills them at start-up.
PLACES_DATA_VERSION = f"phonenumbers {phonenumbers.__version__}"


def places_text(contacts: Iterable[tuple[str, str]]) -> str:
    """The ``phone_places`` of these (channel, address) contacts: their sms/voice/whatsapp numbers'
    places, or "" when there is none."""
    places = {}
    for channel, number in sorted(contacts):
        if channel in PHONE_CHANNELS:
            place = place_of(number)
            places[channel] = [list(place.zones), place.country, place.region]
    return json_encode(places).decode() if places else ""


_PlacesJson = dict[str, tuple[list[str], str | None, str | None]]
_places_decoder = msgspec.json.Decoder(_PlacesJson)


def places_from_text(text: str) -> dict[str, PhonePlace]:
    """The places a ``phone_places`` value holds ({} for ""); raises ``msgspec.DecodeError`` for a value
    of another shape."""
    if not text:
        return {}
    return {
        channel: PhonePlace(zones=tuple(zones), country=country, region=region)
        for channel, (zones, country, region) in _places_decoder.decode(text).items()
    }


def _places_from_contacts(contacts: str | None) -> dict[str, PhonePlace]:
    """A row without ``phone_places``: the places of its phone contacts (a JSON object), computed now."""
    numbers: dict[str, str] = json_decode(contacts) if contacts else {}
    return {channel: place_of(number) for channel, number in numbers.items()}


def _phone_contacts_sync(conn: sqlite3.Connection, customer_id: str) -> str | None:
    row = conn.execute(
        "SELECT json_group_object(channel, address) FROM contacts WHERE customer_id = ? "
        "AND channel IN ('sms', 'voice', 'whatsapp')",
        (customer_id,),
    ).fetchone()
    return None if row is None else cast(str | None, row[0])


def gate_inputs_sync(
    conn: sqlite3.Connection, ids: list[str], topic: str, campaign_id: str, snapshot: bool
) -> GateInputs:
    """Both gate queries and the engine's inputs built from them (``snapshot``: in a read transaction
    of their own, so the two queries see the same data)."""
    packed = json_encode(ids).decode()
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
    parse = parse_time
    sets: dict[str, frozenset[Any]] = {"": _EMPTY}  # few distinct channel lists: one frozenset each
    placed: dict[str, dict[str, PhonePlace]] = {"": _NO_PLACES}  # and few distinct places: decoded once
    quiets: dict[tuple[str, str], tuple[str, str]] = {}
    State = CustomerState
    for (
        cid,
        zone,
        country,
        channel,
        qs,
        qe,
        cap,
        paused,
        addresses,
        suppressed,
        subscribed,
        marketing_only,
        places_stored,
        phones,
    ) in rows:
        a = sets.get(addresses)
        if a is None:
            a = sets[addresses] = frozenset(addresses.split(","))
        s = sets.get(suppressed)
        if s is None:
            s = sets[suppressed] = frozenset(suppressed.split(","))
        m = sets.get(marketing_only)
        if m is None:
            m = sets[marketing_only] = frozenset(marketing_only.split(","))
        if places_stored is None:
            places = _places_from_contacts(phones)
        elif (known := placed.get(places_stored)) is not None:
            places = known
        else:
            try:
                places = placed[places_stored] = places_from_text(places_stored)
            except msgspec.DecodeError:  # fail closed: the zones come from the numbers themselves
                log.warning("unreadable phone_places in a stored customer row; placed from its contacts")
                places = _places_from_contacts(_phone_contacts_sync(conn, cid))
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
        states[cid] = State(
            cid,
            zone,
            country,
            channel,
            a,
            s,
            subscribed == 1,
            quiet,
            cap,
            pause,
            marketing_suppressed=m,
            places=places,
        )
    return GateInputs(states=states, held=held)


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
    conn: sqlite3.Connection, wanted: dict[str, list[str]]
) -> tuple[dict[str, CampaignView], dict[str, GateInputs]]:
    """The views of the campaigns in ``wanted`` and, per campaign found, the gate inputs of its ids."""
    views = campaign_views_sync(conn, sorted(wanted))
    inputs = {
        camp: gate_inputs_sync(conn, ids, views[camp].topic, camp, False)
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
