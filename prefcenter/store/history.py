"""The storage interface's reads of the ledger as of an instant
(issue 13: a customer's consent state at T with its proof).

:class:`HistoryStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/history.py``, ``store/postgres/history.py``)."""

from __future__ import annotations

from typing import Protocol


class HistoryStore(Protocol):
    """Reads of the ledger as of an instant (issue 13: a customer's consent state at T with its proof)."""
