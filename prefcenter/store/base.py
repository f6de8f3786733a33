"""The one narrow storage interface. Services call this; SQL lives only in the adapters.

What every adapter guarantees, and what it must do to keep it (SQLite: ``store/sqlite``, one writer;
PostgreSQL: ``store/postgres``, many processes on one database):

1. **The gate is serialisable per customer.** No two transactions may both reserve against one
   customer's caps: :meth:`Store.gate` loads the recipients' states and reservations, calls a pure
   ``decide`` and writes what it returns, all in one transaction during which no other transaction can
   write those customers' reservations. The dispatcher's re-gate (``WriteTx.gate_inputs`` inside
   :meth:`Store.write`) holds the same guarantee for its recipients until its commit. SQLite: every
   writing transaction is ``BEGIN IMMEDIATE`` on the one writer connection (one writer at a time).
   PostgreSQL: the transaction first locks the recipients' ``customers`` rows in id order
   (``SELECT ... WHERE id = ANY($1) ORDER BY id FOR UPDATE``), so two gates over overlapping customers
   queue instead of both reading the same caps; a gate that loses a deadlock or serialisation race is
   run again from the load (``decide`` is pure, so a retry is the same work).
2. **The ledger has one total order.** Appends get ``seq`` without gaps, and each event's ``prev_hash``
   is the head the appending transaction saw and replaced: the head is read and replaced under a lock
   that lasts until commit (SQLite: the one writer; PostgreSQL: ``ledger_head`` ``FOR UPDATE``; no
   sequences, which leave gaps on rollback).
3. **Other writes are serialised.** :meth:`Store.write` transactions run one at a time across the whole
   deployment, so a service's read-modify-write (read a customer, diff, append events) never races
   another's (SQLite: the one writer; PostgreSQL: a transaction-level advisory lock). Only the gate
   runs beside them, on its own rows.
4. **A claim is held by one dispatcher at a time.** ``claim_due`` / ``claim_notifications`` lease rows
   that no live lease holds, atomically (PostgreSQL: ``FOR UPDATE SKIP LOCKED``), so two dispatchers
   never hand the same message to a transport in one lease.
5. **Leases only expire.** No adapter releases leases wholesale: a lease ends when its holder marks
   the row or when ``lease_until`` passes. The one exception is :meth:`Maintenance.release_dead_leases`,
   which an engine may implement only where it can prove no other dispatcher is alive (SQLite: the
   dispatcher ``flock`` is held, and it is one per database); elsewhere it releases nothing.
6. **A fault stays where it happens.** A write that fails rolls back its own transaction only; a store
   that cannot write at all (disk full, I/O error, database down) raises :class:`StoreUnavailable`.

Engine-specific upkeep (WAL checkpoints, compaction after an erasure, the dispatcher slot) is behind
:class:`Maintenance`, reached as ``Store.maintenance``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol, TypeVar

import msgspec

from prefcenter.domain.campaigns import Campaign
from prefcenter.domain.ledger import Attribution, Change, ConsentEvent, Notice
from prefcenter.domain.model import CampaignView, Customer, CustomerState, Preferences, Role, Topic
from prefcenter.store.history import HistoryStore
from prefcenter.store.replay import ReplayStore
from prefcenter.store.retention import ReservationBound, RetentionStore
from prefcenter.store.trace import MessageEvent, TraceStore
from prefcenter.store.webhooks import WebhookStore


class ApiKey(msgspec.Struct, frozen=True):
    id: int
    name: str
    role: Role
    prefix: str
    created_at: str
    revoked_at: str | None


class EventFilter(msgspec.Struct, frozen=True):
    """Which consent events: by customer pseudonym, ``since`` inclusive, ``until`` exclusive (RFC 3339 Z)."""

    customer_ref: str | None = None
    since: str | None = None
    until: str | None = None


class Reservation(msgspec.Struct, frozen=True, gc=False):
    """One reservation as the gate loads it (``gc=False`` like the gate's structs in domain/model.py:
    a dict of these is then untracked too)."""

    at_us: int
    channel: str
    marketing: bool


class GateInputs(msgspec.Struct):
    """Recipients' states for one campaign's topic, and every reservation the caps or a retry need:
    each customer's marketing reservations (any campaign) and this campaign's own."""

    states: dict[str, CustomerState]
    held: dict[str, dict[str, Reservation]]  # customer -> campaign -> reservation


# (customer_id, campaign_id, at, verdict, reason, channel, not_before, policy_version, kind, explain):
# kind is approval | send | regate; explain is the JSON text of API.md's ``explain`` object, or None
# when it is the reason itself (``{"rule": reason}``; read back by :func:`services.approvals.log_entry`).
DecisionRow = tuple[str, str, str, str, str, str | None, str | None, str, str, str | None]


class OutboxItem(msgspec.Struct, frozen=True):
    """One claimed outbox row: the message of one campaign to one customer."""

    campaign_id: str
    customer_id: str
    channel: str
    status: str  # queued | deferred
    not_before_us: int
    attempts: int
    lease_until_us: int | None = None  # the lease this claim holds (its marks carry it back)


# (campaign_id, customer_id, channel, status queued|deferred, not_before_us)
QueueRow = tuple[str, str, str, str, int]


class GateWrites(msgspec.Struct):
    """What one gate transaction writes, as data (``decide`` returns it; the store writes it before the
    commit): reservations made ((customer, campaign, reservation)) and released ((customer, campaign)),
    decision-log rows, and outbox rows queued (stamped ``at``): one per (campaign, customer), a pair
    already queued or sent left alone, a deferred one queued when now allowed, a withdrawn, failed or
    suppressed one queued again."""

    reserve: list[tuple[str, str, Reservation]] = msgspec.field(default_factory=list)
    release: list[tuple[str, str]] = msgspec.field(default_factory=list)
    decisions: list[DecisionRow] = msgspec.field(default_factory=list)
    queue: list[QueueRow] = msgspec.field(default_factory=list)
    at: datetime | None = None  # the queued rows' created_at / updated_at (required with ``queue``)


T = TypeVar("T")

#: ``decide(views, inputs)``: the campaign views of the campaigns found, and per campaign found the gate
#: inputs of its wanted ids -> (the caller's result, the writes). Pure: it may run on the store's own
#: writer thread (SQLite) and may be run again after a lost race (PostgreSQL).
GateDecide = Callable[[dict[str, CampaignView], dict[str, GateInputs]], tuple[T, GateWrites]]


class OutboxUpdate(msgspec.Struct, frozen=True):
    """A new state for one outbox row. ``None`` keeps the channel / not_before; ``attempted`` counts a
    hand-off to a transport; ``sent`` stamps sent_at; ``keep_lease`` keeps the claim (else released);
    ``lease_until_us`` is the claim's lease, which the row must still hold (guarantee 4)."""

    campaign_id: str
    customer_id: str
    status: str
    channel: str | None = None
    not_before_us: int | None = None
    last_error: str | None = None
    attempted: bool = False
    sent: bool = False
    keep_lease: bool = False
    # The claim's lease: the row is marked only while it still holds that lease (a mark that comes after
    # the lease ran out and another dispatcher claimed the row changes nothing). None: whatever it holds.
    lease_until_us: int | None = None


class NotificationItem(msgspec.Struct, frozen=True):
    """One claimed system message to a customer (migration 0015), e.g. the SMS opt-in confirmation."""

    id: int
    customer_id: str
    kind: str  # sms_opt_in, email_double_opt_in
    attempts: int
    topic: str = ""  # email_double_opt_in: the topic to confirm (migration 0021)


class NotificationUpdate(msgspec.Struct, frozen=True):
    """A new state for one notification: ``None`` keeps not_before; ``attempted`` counts a hand-off;
    ``sent`` status stamps sent_at; ``keep_lease`` keeps the claim (else released)."""

    id: int
    status: str  # queued | sent | failed | suppressed | cancelled
    not_before_us: int | None = None
    last_error: str | None = None
    attempted: bool = False
    keep_lease: bool = False


class Suppression(msgspec.Struct, frozen=True):
    channel: str
    address_ref: str
    reason: str
    since: str
    scope: str = "all"  # "all" | "marketing" (migration 0012: marketing denied, transactional still goes)


class ReviewText(msgspec.Struct, frozen=True):
    """An inbound text kept for a person to review (its due date is computed from ``received_at``)."""

    id: int
    channel: str
    address_ref: str
    text: str
    received_at: str
    resolved_at: str | None = None
    resolution: str | None = None  # "stop" | "none"
    resolved_by: str | None = None


class ImportWrites(msgspec.Struct):
    """One bulk-import chunk's writes (services/imports.py), written by ``WriteTx.write_import`` in
    this order: customers (customer, address refs, created) with their contacts, then preferences
    (customer id, preferences, at), then consent events (already chained after the locked head: the
    head becomes the last one's). At most one entry per customer in each list."""

    customers: list[tuple[Customer, dict[str, str], bool]] = msgspec.field(default_factory=list)
    preferences: list[tuple[str, Preferences, datetime]] = msgspec.field(default_factory=list)
    events: list[ConsentEvent] = msgspec.field(default_factory=list)


class StoreUnavailable(Exception):
    """The store cannot write now (disk full, I/O error, read-only file): nobody's input is at fault,
    so it is answered as 503 with Retry-After, and the dispatcher leaves its work to be tried again."""


class MigrationError(Exception):
    """A migration failed; the database is left as it was before it."""


class WriteTx(Protocol):
    """One writing transaction (serialised: one writer at a time). Commits on clean exit."""

    async def get_customer(self, customer_id: str) -> Customer | None: ...
    async def put_customer(self, customer: Customer, address_refs: dict[str, str], created: bool) -> None: ...
    async def set_preferences(self, customer_id: str, preferences: Preferences, at: datetime) -> None: ...
    async def erase_customer(self, customer_id: str) -> None: ...
    async def topic_categories(self, topic_ids: Iterable[str]) -> dict[str, str]: ...
    async def get_topic(self, topic_id: str) -> Topic | None: ...
    async def put_topic(self, topic_id: str, topic: Topic, at: datetime) -> bool: ...
    async def topic_in_use(self, topic_id: str) -> bool: ...
    async def delete_topic(self, topic_id: str) -> bool: ...
    async def append_events(
        self,
        changes: list[Change],
        *,
        customer_id: str | None,
        customer_ref: str | None,
        attribution: Attribution,
        at: datetime,
    ) -> list[ConsentEvent]: ...
    # -- notices (migration 0014): registered once, never changed --
    async def get_notice(self, notice_version: str) -> Notice | None: ...
    async def add_notice(self, notice: Notice) -> None: ...
    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...
    async def put_campaign(self, campaign_id: str, campaign: Campaign, at: datetime) -> bool: ...
    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs:
        """The gate inputs of ``ids``; those customers stay locked for this transaction (guarantee 1).
        ``bound``: the marketing reservations read are those later than it (and the campaign's own
        at any age; see :mod:`prefcenter.store.retention`); None reads every one."""
        ...

    async def campaign_views(self, campaign_ids: list[str]) -> dict[str, CampaignView]: ...
    async def record_gate(
        self,
        upsert: list[tuple[str, str, Reservation]],
        delete: list[tuple[str, str]],
        decisions: list[DecisionRow],
    ) -> None: ...
    async def create_key(self, name: str, role: Role, key_hash: str, prefix: str, at: datetime) -> ApiKey: ...
    async def revoke_key(self, key_id: int, at: datetime) -> bool: ...
    # -- outbox (throttled messaging) --
    async def claim_due(
        self, channel: str, now_us: int, lease_until_us: int, limit: int
    ) -> list[OutboxItem]: ...
    async def update_outbox(self, updates: list[OutboxUpdate], at: datetime) -> None: ...
    async def add_message_history(self, events: list[MessageEvent]) -> None: ...  # store/trace.py
    async def get_customers(self, customer_ids: list[str]) -> dict[str, Customer]:
        """Those customers, locked for this transaction (guarantee 1) in id order."""
        ...

    async def has_reservation(self, customer_id: str, campaign_id: str) -> bool: ...
    # -- notifications (migration 0015: the SMS opt-in confirmation) --
    async def queue_notification(self, customer_id: str, kind: str, at: datetime) -> bool: ...
    async def confirm_topic(self, customer_id: str, topic: str) -> bool:
        """Double opt-in (migration 0021): the customer's pending ``topic`` becomes confirmed; False
        when it is not pending (confirmed already, or not theirs)."""
        ...

    async def claim_notifications(
        self, now_us: int, lease_until_us: int, limit: int
    ) -> list[NotificationItem]: ...
    async def update_notifications(self, updates: list[NotificationUpdate], at: datetime) -> None: ...
    # -- suppressions --
    async def add_suppression(
        self, channel: str, address_ref: str, reason: str, at: datetime, *, scope: str = "all"
    ) -> bool: ...
    async def remove_suppression(
        self, channel: str, address_ref: str, *, scope: str | None = None, reason: str | None = None
    ) -> str | None: ...
    async def customers_with_address(self, channel: str, address_ref: str) -> list[str]: ...
    async def keep_for_review(self, channel: str, address_ref: str, text: str, at: datetime) -> None: ...
    async def suppression_reason(self, channel: str, address_ref: str) -> str | None: ...
    async def get_review(self, review_id: int) -> ReviewText | None: ...
    async def resolve_review(self, review_id: int, resolution: str, by: str, at: datetime) -> bool: ...
    # -- address refs v2 (migration 0010; services/refs_upgrade.py) --
    async def contacts_with_v1_refs(self) -> list[tuple[str, str, str]]: ...
    async def rewrite_contact_refs(self, rows: list[tuple[str, str, str]]) -> None: ...
    async def v1_refs(self) -> set[str]: ...
    async def convert_v1_refs(self, refs: dict[str, str]) -> int: ...
    # -- email refs with IDNA domains, phone places (migration 0012; services/refs_upgrade.py) --
    async def contacts_for_idna_rekey(self) -> list[tuple[str, str, str, str]] | None: ...
    async def rekey_contacts(self, rows: list[tuple[str, str, str]]) -> None: ...
    async def move_suppressions(self, channel: str, refs: dict[str, str]) -> int: ...
    async def fill_phone_places(self) -> int: ...
    # -- bulk import (services/imports.py): batched reads and writes, one hop each --
    async def lock_ledger_head(self) -> tuple[int, str, Callable[[], str]]:
        """The ledger head (seq, hash), locked for this transaction, and the store's event id maker:
        the caller chains events after it (``chain_events``) and writes them with ``write_import``."""
        ...

    async def suppressed_addresses(self, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
        """Those (channel, address_ref) pairs that have a suppression of any kind."""
        ...

    async def write_import(self, writes: ImportWrites) -> None: ...


class RateBucket(Protocol):
    """A token bucket: ``rate`` messages per second, bursts of ``capacity``."""

    rate: float
    capacity: float

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` tokens (1 <= n <= capacity) are taken."""
        ...


class Maintenance(Protocol):
    """What only one engine needs, behind one small async protocol."""

    def rate_bucket(self, channel: str, rate: float) -> RateBucket | None:
        """The deployment-wide bucket of ``channel`` when several dispatchers share the database
        (PostgreSQL: one row per channel, taken in chunks); None when the one dispatcher's own bucket
        already is the deployment's ceiling (SQLite)."""
        ...

    async def checkpoint(self) -> tuple[int, int]:
        """Background upkeep, called about once a second by a server (SQLite: a WAL checkpoint off the
        request path; returns (WAL frames, frames copied)). (0, 0) when there is nothing to do."""
        ...

    async def compact_after_erasure(self) -> bool:
        """After an erasure committed: what the engine can do so the erased bytes leave its files now.
        True when nothing of them is left for the operator to do (see the README on each engine)."""
        ...

    async def acquire_dispatcher(self) -> bool:
        """May this process run a dispatcher? False when the engine allows only one and another holds
        it (SQLite: an exclusive ``flock``; PostgreSQL: several dispatchers share one database)."""
        ...

    async def release_dispatcher(self) -> None: ...

    async def release_dead_leases(self) -> int:
        """Release leases whose holders are provably dead (guarantee 5); the number released."""
        ...


class Store(WebhookStore, HistoryStore, TraceStore, ReplayStore, RetentionStore, Protocol):
    @property
    def maintenance(self) -> Maintenance: ...

    #: How many group gate transactions (:meth:`gate`) one process runs at once: 1 where they queue
    #: on one writer anyway (SQLite), more where the recipients' row locks order them (PostgreSQL),
    #: so the next group's round trips overlap the one in hand's.
    gate_groups: int

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def ping(self) -> None: ...
    async def pending_migrations(self) -> list[str]: ...
    async def migrate(self) -> list[str]: ...
    def write(self) -> AbstractAsyncContextManager[WriteTx]:
        """One writing transaction, serialised with every other (guarantee 3); commits on clean exit."""
        ...

    async def gate(
        self, wanted: dict[str, list[str]], decide: GateDecide[T], bound: ReservationBound | None = None
    ) -> T:
        """One gate transaction (guarantee 1): ``wanted`` is campaign -> recipient ids (sorted). Loads the
        views and inputs (``bound`` as for :meth:`gate_inputs`), calls ``decide``, writes its
        :class:`GateWrites` and commits; returns what ``decide`` returned. A failure anywhere rolls
        everything back and raises."""
        ...

    async def write_problem(self) -> str | None: ...

    async def get_customer(self, customer_id: str) -> Customer | None: ...
    async def get_customer_by_ref(self, customer_ref: str) -> Customer | None: ...
    async def list_topics(self) -> dict[str, Topic]: ...
    async def get_topic(self, topic_id: str) -> Topic | None: ...
    async def get_campaign(self, campaign_id: str) -> Campaign | None: ...
    async def gate_inputs(
        self, ids: list[str], topic: str, campaign_id: str, bound: ReservationBound | None = None
    ) -> GateInputs: ...
    async def decision_log(self, customer_id: str, campaign_id: str | None) -> list[DecisionRow]: ...
    async def decision_counts(self, campaign_id: str) -> dict[str, int]: ...
    async def find_key(self, key_hash: str) -> ApiKey | None: ...
    async def outbox_counts(self, campaign_id: str) -> dict[str, int]: ...
    async def outbox_due_count(self) -> int: ...
    # Lists (API.md "Lists", "Message status"): keyset pages in the order of an immutable key
    # (customer id, campaign id), items after ``after``; built in store/listing.py for both engines.
    async def list_customers(
        self,
        *,
        topic: str | None,
        channel: str | None,
        updated_since: str | None,
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...
    async def list_campaigns(self, *, after: str | None, limit: int) -> list[dict[str, Any]]: ...
    async def list_messages(
        self,
        *,
        campaign_id: str | None,
        customer_id: str | None,
        status: str | None,
        after: str | None,
        limit: int,
    ) -> list[dict[str, Any]]: ...
    async def decision_page(
        self, customer_id: str, campaign_id: str | None, *, after: int | None, limit: int
    ) -> list[tuple[int, DecisionRow]]: ...  # (decision id, row), in id order after ``after``
    async def suppression_page(
        self, channel: str | None, *, after: tuple[str, str] | None, limit: int
    ) -> list[Suppression]: ...  # in (channel, address_ref) order after ``after``
    async def list_suppressions(self, channel: str | None) -> list[Suppression]: ...
    async def inbound_for_review(self, since: str | None, resolved: bool = False) -> list[ReviewText]: ...
    async def inbound_open_before(self, before: str) -> int: ...
    async def list_keys(self) -> list[ApiKey]: ...

    async def ledger_head(self) -> tuple[int, str]: ...
    async def get_notice(self, notice_version: str) -> Notice | None: ...
    async def consent_events(
        self, flt: EventFilter, *, after_seq: int, limit: int
    ) -> list[dict[str, Any]]: ...
    def iter_consent_events(
        self, flt: EventFilter, *, after_seq: int = 0, up_to_seq: int | None = None, chunk: int = 2000
    ) -> AsyncIterator[dict[str, Any]]: ...
