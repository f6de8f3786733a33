"""The storage interface's reads of what policy replay re-decides
(issue 13: the logged decisions and what was in force at each).

:class:`ReplayStore` is part of :class:`prefcenter.store.base.Store`; both engines implement it
(``store/sqlite/replay.py``, ``store/postgres/replay.py``) with the same SQL shapes and orderings.

Replay streams the whole decision log in chunks of customers (keyset over ``decisions.customer_id``:
a chunk holds at least ``chunk`` decisions, and always every decision of each customer in it, so a
customer's reservations can be rebuilt from its own log alone), and with each chunk what the service
needs about those customers: their current profile row, their ledger events in ``seq`` order, their
current contacts (with the current suppression of each, if any) and their permanently failed messages.
Every read is a plain read: nothing is written, no lock is taken. Chunks are separate statements, so
a chunk sees what was committed when it was read (a replay over a live database is not one snapshot).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Protocol

import msgspec

from prefcenter.domain.model import CampaignView

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

    def iter_replay(self, *, chunk: int = REPLAY_CHUNK) -> AsyncIterator[ReplayChunk]:
        """The whole decision log, customer by customer (see the module docstring)."""
        ...
