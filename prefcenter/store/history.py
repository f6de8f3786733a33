"""The storage interface's reads of the ledger as of an instant
(issue 13: a customer's consent state at T with its proof).

:class:`HistoryStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/history.py``, ``store/postgres/history.py``) with one statement each: the customer's
events and the ledger head come from ONE snapshot (a single SELECT sees one on either engine), so every
event returned lies at or before the head returned, and the head verifies with ``/verify?head=``. The
events are found through the index ``consent_events_by_customer (customer_ref, seq)``: the read costs
the customer's own events, never a scan of the ledger."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec


class CustomerHistory(msgspec.Struct, frozen=True):
    """One customer's ledger events up to an instant, and the ledger head of the same snapshot."""

    #: the events (as the export gives them: the columns of the event's shape) of the ``customer_ref``
    #: whose ``at`` is at or before the instant, in ``seq`` order
    events: list[dict[str, Any]]
    head_seq: int
    head_hash: str
    #: whether the ledger holds any event of the ``customer_ref`` at all (at any instant)
    known: bool


class HistoryStore(Protocol):
    """Reads of the ledger as of an instant (issue 13: a customer's consent state at T with its proof)."""

    async def customer_events_until(self, customer_ref: str, until_at: str) -> CustomerHistory:
        """The events of ``customer_ref`` with ``at <= until_at`` (an event time as the ledger writes
        it: ``format_at``, UTC with microseconds, so text order is time order), the head, and whether
        the ref has any event (see :class:`CustomerHistory`), all from one snapshot."""
        ...
