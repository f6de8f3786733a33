"""The storage side of retention (issue 14): what the gate reads of the reservations, and the pruner's
deletes, shared by both engines.

The gate reads (:class:`ReservationBound`) the marketing reservations later than the earliest ``at``
of its batch minus the longest window of the caps over every channel (the policy's and a customer's
own ``max_per_week``), those on a channel with a longer per-channel cap (an override's) later than
``at`` minus that one, and the campaign's own one at any age: a reservation at ``s <= at - W`` lies
outside every window ``(c - W, c]`` of a candidate ``c >= at``, so no cap of window W can count it,
and the load stays the size of the caps' windows however long the history grows.

:class:`RetentionStore` deletes, one small transaction per call (at most ``batch`` rows of one table,
so a gate queued behind it waits for one short delete, never for a whole pruning pass), what
:mod:`prefcenter.services.retention` decided may go. The consent ledger has no delete here: it is never
pruned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

from prefcenter.store.decision_log import campaigns_of

#: A bound below every instant: every reservation (the load before issue 14).
ALL_RESERVATIONS: Final = -(2**62)


class ReservationBound(NamedTuple):
    """Which marketing reservations the gate reads (see the module docstring); times in µs."""

    #: every channel's, made after this
    since_us: int
    #: and these channels' (a per-channel cap longer than every all-channel one), made after ``long_since_us``
    long_channels: tuple[str, ...] = ()
    long_since_us: int = ALL_RESERVATIONS


#: The bound of a caller that gives none.
EVERY_RESERVATION: Final = ReservationBound(ALL_RESERVATIONS)


class CampaignSpan(NamedTuple):
    """A campaign as the pruner sees it: its id, its ``send_by`` (None: no end) and when it was created
    (both ``format_at`` text, so text order is time order), and its channels (the JSON array text)."""

    campaign_id: str
    send_by: str | None
    created_at: str
    channels: str


class PruneCandidates(NamedTuple):
    """The campaigns a pass can find anything to delete of (:meth:`RetentionStore.prune_candidates`)."""

    #: per campaign holding reservations, the instant of its earliest one (µs)
    reserved_since_us: dict[str, int]
    #: the campaigns with outbox rows
    queued: frozenset[str]


# Both engines' walks (the same text): one seek per campaign present on an index that starts with
# campaign_id (``reservations_by_campaign (campaign_id, at_us)``, the outbox's primary key), however
# many campaigns were ever made and however many rows each holds.
PRUNE_RESERVED_SQL = (
    f"WITH RECURSIVE {campaigns_of('held', 'reservations')} SELECT c, "
    "(SELECT min(at_us) FROM reservations WHERE campaign_id = held.c) FROM held WHERE c IS NOT NULL"
)
PRUNE_QUEUED_SQL = (
    f"WITH RECURSIVE {campaigns_of('queued', 'outbox')} SELECT c FROM queued WHERE c IS NOT NULL"
)

#: The tables the pruner deletes reservations from, and finished outbox rows with their history from:
#: what :meth:`RetentionStore.reclaim` may be given.
RESERVATION_TABLES: Final = ("reservations",)
OUTBOX_TABLES: Final = ("outbox", "message_history")


class RetentionStore(Protocol):
    """The pruner's reads and deletes; each delete is ONE transaction of at most ``batch`` rows and
    returns the number of rows it deleted (fewer than ``batch``: nothing more is left for that cutoff)."""

    async def campaign_spans(self) -> list[CampaignSpan]:
        """Every campaign's id, ``send_by`` and creation time."""
        ...

    async def prune_candidates(self) -> PruneCandidates:
        """The campaigns holding reservations (with their earliest) and those with outbox rows:
        :data:`PRUNE_RESERVED_SQL` and :data:`PRUNE_QUEUED_SQL`."""
        ...

    async def prune_reservations(self, campaign_id: str, at_or_before_us: int, batch: int) -> int:
        """Delete up to ``batch`` reservations of ``campaign_id`` made at or before the instant
        (index ``reservations_by_campaign (campaign_id, at_us)``)."""
        ...

    async def prune_decisions(self, before_at: str, batch: int) -> int:
        """Delete up to ``batch`` decision-log rows whose ``at`` is before ``before_at`` (index
        ``decisions_by_at``); when it deleted any, the same transaction records ``before_at`` as the
        log's horizon (:meth:`decisions_pruned_before`) unless that is later already."""
        ...

    async def decisions_pruned_before(self) -> str | None:
        """The latest ``before_at`` of a :meth:`prune_decisions` that deleted rows (None: never)."""
        ...

    async def prune_outbox(self, campaign_id: str, updated_before: str, batch: int) -> int:
        """Delete up to ``batch`` finished outbox rows (sent, failed, withdrawn, suppressed) of
        ``campaign_id`` last changed before ``updated_before``, with their message history (in the same
        transaction: a history row never outlives its message)."""
        ...

    async def reclaim(self, tables: Sequence[str]) -> None:
        """Make the space of the rows a pass deleted from ``tables`` reusable by the next inserts,
        without blocking the gate: PostgreSQL ``VACUUM`` (its deleted rows stay dead
        until a vacuum, and autovacuum may come much later: a table whose rows stay bounded kept
        growing, and the gate's reads with it); SQLite nothing (a commit puts freed pages on the
        file's freelist, and the next inserts take them)."""
        ...
