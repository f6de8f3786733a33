"""The storage interface's reads of one (campaign, customer)'s trace
(issue 13: decisions, the message's life, what came back).

:class:`TraceStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/trace.py``, ``store/postgres/trace.py``). The history rows themselves are written by the
dispatcher through ``WriteTx.add_message_history`` (migration 0020), in the transactions that already
commit the attempt and the outcome.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec


class MessageEvent(msgspec.Struct, frozen=True):
    """One event of a message's life, as the dispatcher records it (migration 0020). ``detail`` is a
    JSON object without any address; ``lease_until_us``: the row is written only while the outbox row
    still holds that lease (the same guard as ``OutboxUpdate``: a mark that lost its claim writes no
    history either), None: unconditionally."""

    campaign_id: str
    customer_id: str
    at: str
    event: str
    detail: dict[str, Any] | None = None
    lease_until_us: int | None = None


def history_row(e: MessageEvent) -> tuple[Any, ...]:
    """(campaign_id, customer_id, at, event, detail JSON or None, lease_until_us): the values both
    engines' ``add_message_history`` write."""
    detail = None if e.detail is None else msgspec.json.encode(e.detail).decode()
    return (e.campaign_id, e.customer_id, e.at, e.event, detail, e.lease_until_us)


class HistoryEntry(msgspec.Struct, frozen=True):
    """One entry of a message's history: as stored (migration 0020), and as the trace answers it
    (``services/trace.py`` adds the ones it derives from the decision log)."""

    at: str
    event: str
    detail: dict[str, Any] | None


class TracedMessage(msgspec.Struct, frozen=True):
    """The outbox row's status and attempts, and its stored history in the order it was written."""

    status: str
    attempts: int
    history: list[HistoryEntry]


def traced_message_from_rows(rows: Sequence[Any]) -> TracedMessage | None:
    """:meth:`TraceStore.traced_message` from both engines' one statement's rows (sqlite3 tuples or
    asyncpg Records): ``(status, attempts, at, event, detail JSON)``, the history columns NULL when the
    message has no history yet (the LEFT JOIN's one row); None without an outbox row."""
    if not rows:
        return None
    history = [
        HistoryEntry(row[2], row[3], None if row[4] is None else msgspec.json.decode(row[4]))
        for row in rows
        if row[2] is not None
    ]
    return TracedMessage(str(rows[0][0]), int(rows[0][1]), history)


class TraceStore(Protocol):
    """Reads of one (campaign, customer)'s trace (issue 13: decisions, the message's life, what came back)."""

    async def traced_message(self, campaign_id: str, customer_id: str) -> TracedMessage | None:
        """The outbox row of (campaign, customer) with its history, in one snapshot; None without one."""
        ...

    async def customer_ledger(self, customer_ref: str) -> list[dict[str, Any]]:
        """Every ledger event of this customer pseudonym, in seq order (as the export gives them), through
        the index consent_events_by_customer (customer_ref, seq)."""
        ...

    async def address_suppression_events(self, address_refs: list[str]) -> list[dict[str, Any]]:
        """The ledger events of subject ``suppression:*`` whose ``value.address_ref`` is one of these keyed
        refs, whoever they were written for, in seq order (a JSON-expression scan over the suppression
        events: there is no index on the ref inside the value)."""
        ...
