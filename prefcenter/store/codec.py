"""Rows to Structs and back, the same on every engine: JSON text, RFC 3339 text, a customer row (in
the column order of the adapters' customer query), a consent event row (the ledger's columns), a notice,
an API key, the customers row's ``phone_places`` (migration 0012: where each phone number is, so the
gate never calls phonenumbers), and the gate's rows to the engine's inputs. The SQL that reads and
writes them is each adapter's own."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import msgspec
import phonenumbers
import structlog

from prefcenter.domain.campaigns import Campaign, campaign_columns
from prefcenter.domain.ledger import EVENT_FIELDS, EVENT_SHAPE, ConsentEvent, Notice, shaped
from prefcenter.domain.model import (
    PHONE_CHANNELS,
    Contacts,
    Customer,
    CustomerState,
    PhonePlace,
    Preferences,
    Profile,
    QuietHours,
    Topic,
)
from prefcenter.domain.phones import place_of
from prefcenter.store.base import ApiKey, GateInputs, Reservation

log = structlog.get_logger("prefcenter.store")

json_encode = msgspec.json.encode
json_decode = msgspec.json.decode

# Every event column, then the row's shape (migration 0014): which of them its hash covers.
EVENT_COLUMNS = ", ".join((*EVENT_FIELDS, "shape"))
EVENT_COLUMN_COUNT = len(EVENT_FIELDS) + 1


def event_row(e: ConsentEvent) -> tuple[Any, ...]:
    """A new event as the values of :data:`INSERT_EVENT_SQL` (written in today's shape)."""
    return (
        e.seq,
        e.id,
        e.at,
        e.customer_id,
        e.customer_ref,
        e.action,
        e.subject,
        json_encode(e.value).decode(),
        e.source,
        e.actor,
        e.notice_version,
        e.notice_sha256,
        json_encode(e.evidence).decode(),
        e.prev_hash,
        e.hash,
        EVENT_SHAPE,
    )


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def customer_from_row(row: Any) -> Customer:
    contacts = json_decode(row[12]) if row[12] else {}
    topics = sorted(json_decode(row[13])) if row[13] else []
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
            paused_until=parse_time(row[9]) if row[9] else None,
        ),
        created_at=parse_time(row[10]),
        updated_at=parse_time(row[11]),
        link_gen=row[14],
    )


def event_from_row(row: Any) -> dict[str, Any]:
    """The event with the keys of its shape (an event written before migration 0014 has no
    ``notice_sha256`` key: its hash does not cover one)."""
    event = dict(zip(EVENT_FIELDS, row[:-1], strict=True))
    event["value"] = json_decode(event["value"])
    event["evidence"] = json_decode(event["evidence"])
    return shaped(event, row[-1])


def notice_from_row(row: Any) -> Notice:
    return Notice(
        notice_version=row[0],
        texts=json_decode(row[1]),
        sha256=json_decode(row[2]),
        registered_at=parse_time(row[3]),
    )


def topic_from_row(row: Any) -> Topic:
    """(category, names, descriptions, double_opt_in)."""
    return Topic(
        category=row[0],
        names=json_decode(row[1]),
        descriptions=json_decode(row[2]),
        double_opt_in=bool(row[3]),
    )


def campaign_from_row(row: Any) -> Campaign:
    """(topic, channels, send_by, content); ``content`` also holds ``locale`` and ``translations``
    when the campaign has them (``content_column``)."""
    columns = campaign_columns(json_decode(row[3]))
    return msgspec.convert(
        {"topic": row[0], "channels": json_decode(row[1]), "send_by": row[2], **columns}, Campaign
    )


def key_from_row(row: Any) -> ApiKey:
    return ApiKey(id=row[0], name=row[1], role=row[2], prefix=row[3], created_at=row[4], revoked_at=row[5])


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


def places_from_contacts(contacts: str | None) -> dict[str, PhonePlace]:
    """A row without ``phone_places``: the places of its phone contacts (a JSON object), computed now."""
    numbers: dict[str, str] = json_decode(contacts) if contacts else {}
    return {channel: place_of(number) for channel, number in numbers.items()}


# ---------------------------------------------------------------------------------------------------
# the gate's rows to the engine's inputs (both adapters' gate queries return these columns)

_EMPTY: frozenset[Any] = frozenset()
_PAUSED_FOREVER = datetime.max.replace(tzinfo=UTC)
_NO_PLACES: dict[str, PhonePlace] = {}


def gate_inputs_from_rows(rows: Iterable[Any], reserved: Iterable[Any]) -> tuple[GateInputs, list[str]]:
    """The engine's inputs from the gate's two queries: ``rows`` (id, timezone, country, channel,
    quiet_start, quiet_end, max_per_week, paused_until, contact_channels, suppressed_channels, subscribed,
    marketing_suppressed_channels, phone_places, phone contacts as a JSON object when phone_places is
    NULL, and pending: the campaign's topic awaits a double opt-in confirmation) and ``reserved``
    (customer_id, campaign_id, at_us, channel, marketing). Stored values are read fail-closed: an
    unreadable pause is a pause without end, and the ids whose stored places are unreadable come back
    beside the inputs (placed nowhere yet), for the caller to place from their contacts with
    :func:`places_from_contacts`. Few distinct channel lists, places and quiet hours recur over
    thousands of customers: each is built once."""
    held: dict[str, dict[str, Reservation]] = {}
    for cid, camp, at_us, channel, marketing in reserved:
        mine = held.get(cid)
        if mine is None:
            mine = held[cid] = {}
        mine[camp] = Reservation(at_us, channel, marketing == 1)
    states: dict[str, CustomerState] = {}
    unplaced: list[str] = []
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
        pending,
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
            places = places_from_contacts(phones)
        elif (known := placed.get(places_stored)) is not None:
            places = known
        else:
            try:
                places = placed[places_stored] = places_from_text(places_stored)
            except msgspec.DecodeError:  # fail closed: the zones come from the numbers themselves
                log.warning("unreadable phone_places in a stored customer row; placed from its contacts")
                places = _NO_PLACES
                unplaced.append(cid)
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
            bool(subscribed),
            quiet,
            cap,
            pause,
            marketing_suppressed=m,
            places=places,
            confirmed=not pending,
        )
    return GateInputs(states=states, held=held), unplaced
