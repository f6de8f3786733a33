"""The storage interface's reads of one (campaign, customer)'s trace
(issue 13: decisions, the message's life, what came back).

:class:`TraceStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/trace.py``, ``store/postgres/trace.py``)."""

from __future__ import annotations

from typing import Protocol


class TraceStore(Protocol):
    """Reads of one (campaign, customer)'s trace (issue 13: decisions, the message's life, what came back)."""
