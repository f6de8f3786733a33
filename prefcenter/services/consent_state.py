"""A customer's consent state at an instant, with its proof (API.md "Auditor's answers", issue 13 item 1).

``GET /v1/customers/{customer_id}/consent-state?at=T`` and ``prefcenter consent state --file ...`` answer
the same document, rebuilt from the ledger alone (never from the customers table)::

    {"customer_id", "at", "state": {"channel", "topics", "quiet_hours", "max_per_week", "paused_until"},
     "events": [{"seq", "hash", "subject"}], "head": {"seq", "hash"}}

The customer's events (found by ``customer_ref``, the keyed pseudonym of the id, so an erased customer
still answers by id) whose ``at`` is at or before T are folded in ``seq`` order by
:func:`prefcenter.domain.consent_state.fold`; ``events`` is the latest event per subject of the state;
``head`` is the ledger head read in the same snapshot as the events (it verifies with
``/verify?head=``). An id with neither a customer row nor any event is unknown: 404.

Offline (:func:`state_from_export`) the input is a JSONL export (``consent export`` /
``/v1/consent-events/export?format=jsonl``), streamed line by line; ``head`` is the last event of the
file (its seq and hash: a full export's last event is the head it was exported at).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import msgspec

from prefcenter.domain.consent_state import StateFold, fold
from prefcenter.domain.ledger import format_at, format_instant
from prefcenter.domain.model import check_customer_id
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime


class ConsentStateFields(msgspec.Struct, frozen=True):
    """What was in force: the ONE channel (or none), the topics, quiet hours, the own cap, the pause."""

    channel: Annotated[str | None, msgspec.Meta(description="the chosen channel, or null: no marketing")]
    topics: Annotated[list[str], msgspec.Meta(description="the subscribed topics, sorted")]
    quiet_hours: Annotated[
        dict[str, str] | None,
        msgspec.Meta(description='{"start": "HH:MM", "end": "HH:MM"} in the customer\'s zone, or null'),
    ]
    max_per_week: int | None
    paused_until: Annotated[str | None, msgspec.Meta(description="RFC 3339 instant, or null")]


class StateEvent(msgspec.Struct, frozen=True):
    """The ledger event that set one part of the state (the latest about its subject at or before ``at``)."""

    seq: int
    hash: str
    subject: str


class LedgerHead(msgspec.Struct, frozen=True):
    """The ledger head when answering: the last event's seq and hash (seq 0 and 64 zeros when empty)."""

    seq: int
    hash: str


class ConsentStateAnswer(msgspec.Struct, frozen=True):
    """A customer's consent state at an instant, rebuilt from the ledger alone, with its proof."""

    customer_id: Annotated[
        str | None, msgspec.Meta(description="the customer (null offline when asked by --customer-ref)")
    ]
    at: Annotated[str, msgspec.Meta(description="the instant asked about (RFC 3339, UTC)")]
    state: ConsentStateFields
    events: list[StateEvent]
    head: LedgerHead


def answer(
    customer_id: str | None, at: datetime, folded: StateFold, head: tuple[int, str]
) -> ConsentStateAnswer:
    """The document from a fold of the customer's events up to ``at`` and the head."""
    state = folded.state()
    return ConsentStateAnswer(
        customer_id=customer_id,
        at=format_instant(at),
        state=ConsentStateFields(
            channel=state["channel"],
            topics=state["topics"],
            quiet_hours=state["quiet_hours"],
            max_per_week=state["max_per_week"],
            paused_until=state["paused_until"],
        ),
        events=[StateEvent(e["seq"], e["hash"], e["subject"]) for e in folded.events()],
        head=LedgerHead(head[0], head[1]),
    )


async def consent_state(rt: Runtime, customer_id: str, at: datetime | None) -> ConsentStateAnswer:
    """The state of ``customer_id`` at ``at`` (None: now) from its ledger events (one indexed read)."""
    check_customer_id(customer_id)
    moment = at if at is not None else rt.now()
    history = await rt.store.customer_events_until(rt.pseudonyms.customer_ref(customer_id), format_at(moment))
    if not history.known and await rt.store.get_customer(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r} and no ledger event of one")
    return answer(customer_id, moment, fold(history.events), (history.head_seq, history.head_hash))


class ExportError(ValueError):
    """A file that is no JSONL export (``line`` 1-based), or one damaged at ``line``."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


_decode = msgspec.json.decode


def _event(line: bytes, number: int) -> dict[str, Any]:
    try:
        event = _decode(line)
    except msgspec.DecodeError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("seq"), int) or "hash" not in event:
        raise ExportError(number, "not a ledger event (a JSON object with seq and hash)")
    return event


def state_from_export(
    lines: Iterable[bytes], customer_ref: str, at: datetime, *, customer_id: str | None = None
) -> ConsentStateAnswer:
    """The state of ``customer_ref`` at ``at`` from a JSONL export, streamed (constant memory).

    Only lines holding the ref's bytes are decoded (and the first and the last, which must be events);
    an event is the customer's when its ``customer_ref`` field equals the ref (the ref may also appear in
    another event's evidence). ``head`` is the file's last event. Raises :class:`ExportError` for a
    line that should be an event and is not one."""
    until = format_at(at)
    needle = customer_ref.encode()
    folder = StateFold()
    last: tuple[int, bytes] | None = None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if last is None or needle in line:
            event = _event(line, number)
            if event.get("customer_ref") == customer_ref and str(event.get("at")) <= until:
                folder.apply(event)
        last = (number, line)
    head = (0, "0" * 64)
    if last is not None:
        event = _event(last[1], last[0])
        head = (int(event["seq"]), str(event["hash"]))
    return answer(customer_id, at, folder, head)


CUSTOMER_REF_RE = re.compile(r"[0-9a-f]{64}")


def check_customer_ref(customer_ref: str) -> None:
    """A customer_ref is 64 lowercase hex digits (HMAC-SHA256): anything else can match no event."""
    if not CUSTOMER_REF_RE.fullmatch(customer_ref):
        raise ValueError("a customer_ref is 64 lowercase hex digits (the ledger's pseudonym)")


def state_from_file(
    path: Path, customer_ref: str, at: datetime, *, customer_id: str | None = None
) -> ConsentStateAnswer:
    """:func:`state_from_export` over the lines of a JSONL export file."""
    with path.open("rb") as fh:
        return state_from_export(fh, customer_ref, at, customer_id=customer_id)
