"""The storage interface's reads of what policy replay re-decides
(issue 13: the logged decisions and what was in force at each).

:class:`ReplayStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/replay.py``, ``store/postgres/replay.py``)."""

from __future__ import annotations

from typing import Protocol


class ReplayStore(Protocol):
    """Reads of policy replay's reads (issue 13: the logged decisions and what was in force at each)."""
