"""Bulk import (``POST /v1/customers/import``, ``prefcenter import FILE``): NDJSON, one customer a line.

Each line is validated as ``PUT /v1/customers/{id}`` and ``PUT .../preferences`` validate and goes
through the same per-customer rules (``services/customers.write_preferences``: imported consent's proof,
SMS opt-in confirmation, lifting an address unsubscribe, notice hashes, metrics), but against a
:class:`_ChunkTx`: a transaction wrapper that buffers the chunk's customer, preference and ledger writes
in memory (chaining the events after the locked head) and writes them with one batched
``WriteTx.write_import`` per chunk. A line that fails is rolled back in memory (a savepoint that costs
nothing) and never touches the other lines; a chunk whose batched write fails is tried again line by
line, one transaction each, so only the line at fault is rejected.

Memory is constant: lines are read from the stream one at a time (a line longer than
:data:`MAX_LINE_BYTES` is rejected without being held), at most :data:`CHUNK_LINES` are held at once, and
at most :data:`MAX_ERRORS` errors are listed.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution, Change, ConsentEvent, Notice, chain_events
from prefcenter.domain.model import (
    NO_PREFERENCES,
    Customer,
    FieldError,
    InvalidInput,
    Preferences,
    PreferencesWrite,
    Profile,
    Provenance,
    check_customer_id,
    check_preferences,
    check_profile,
)
from prefcenter.services.customers import write_preferences
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import ImportWrites, StoreUnavailable, WriteTx

log = structlog.get_logger("prefcenter.imports")

CHUNK_LINES = 2000  # lines per transaction
MAX_ERRORS = 1000  # errors listed in the answer (every rejected line is still counted)
MAX_LINE_BYTES = 1 << 20  # a longer line is rejected (and never held in memory whole)

# ``preferences`` of a line: PUT preferences' fields without provenance (kept in step with it).
PreferencesPart: Any = msgspec.defstruct(
    "PreferencesPart",
    [(f.name, f.type) for f in msgspec.structs.fields(PreferencesWrite) if f.name != "provenance"],
    frozen=True,
    forbid_unknown_fields=True,
)


class ImportLine(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    customer_id: str
    profile: Profile
    preferences: PreferencesPart | None = None
    provenance: Provenance | None = None


class ImportError_(msgspec.Struct, frozen=True):
    line: int
    field: str
    message: str


class ImportResult(msgspec.Struct):
    """The answer: lines created, updated, unchanged and rejected; the first errors (``field`` ``""``:
    the line is not a JSON object, or could not be stored)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[ImportError_] = msgspec.field(default_factory=list)

    @property
    def lines(self) -> int:
        return self.created + self.updated + self.unchanged + self.rejected


_DECODER = msgspec.json.Decoder(ImportLine)
_AT = re.compile(r"(?s)(.*) - at `\$\.?(.*)`")
_NAMED = re.compile(r"(?:missing required field|unknown field) `([^`]+)`")


def _decode_error(exc: msgspec.MsgspecError) -> FieldError:
    text = str(exc)
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return FieldError("", f"not JSON: {text}")
    message, path = text, ""
    if m := _AT.fullmatch(text):
        message, path = m.group(1), m.group(2)
    if named := _NAMED.search(message):
        path = f"{path}.{named.group(1)}" if path else named.group(1)
    if message.startswith("Expected `object`") and not path:
        message = "each line must be a JSON object"
    return FieldError(path, message)


def _prefixed(errors: Iterable[FieldError], prefix: str) -> list[FieldError]:
    return [
        e if e.field.startswith("provenance") else FieldError(f"{prefix}.{e.field}", e.message)
        for e in errors
    ]


@dataclass(slots=True)
class _Line:
    number: int
    customer_id: str
    profile: Profile  # normalised
    refs: dict[str, str]
    write: PreferencesWrite | None  # with its provenance


def parse_line(rt: Runtime, number: int, raw: bytes, caller_role: str) -> _Line:
    """Validate one line as the single endpoints validate it (all but what needs the stored state)."""
    try:
        line = _DECODER.decode(raw)
    except msgspec.MsgspecError as exc:
        raise InvalidInput([_decode_error(exc)]) from None
    errors: list[FieldError] = []
    try:
        check_customer_id(line.customer_id)
    except InvalidInput as exc:
        errors.extend(exc.errors)
    profile = line.profile
    try:
        profile = check_profile(line.profile)
    except InvalidInput as exc:
        errors.extend(_prefixed(exc.errors, "profile"))
    write: PreferencesWrite | None = None
    if (line.preferences is None) != (line.provenance is None):
        missing = "provenance" if line.provenance is None else "preferences"
        errors.append(FieldError(missing, "preferences and provenance come together"))
    elif line.preferences is not None and line.provenance is not None:
        if line.provenance.source == "admin" and caller_role != "admin":
            errors.append(FieldError("provenance.source", "'admin' may only be claimed with an admin key"))
        parts = msgspec.structs.asdict(line.preferences)
        write = PreferencesWrite(**parts, provenance=line.provenance)
    if errors:
        raise InvalidInput(errors)
    refs: dict[str, str] = {ch: rt.pseudonyms.address_ref(ch, addr) for ch, addr in profile.contacts.items()}
    return _Line(number, line.customer_id, profile, refs, write)


@dataclass(slots=True)
class _ChunkTx:
    """A :class:`WriteTx` for one chunk: the customer, preference and ledger writes are buffered (and
    written by :meth:`flush` in one batch); the reads a line needs are cached or batched; anything else
    goes to the real transaction."""

    real: WriteTx
    categories: dict[str, str | None]
    suppressed: set[tuple[str, str]]
    writes: ImportWrites = field(default_factory=ImportWrites)
    notifications: list[tuple[str, str, datetime]] = field(default_factory=list)
    notices: dict[str, Notice | None] = field(default_factory=dict)
    head: tuple[int, str, Callable[[], str]] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def mark(self) -> tuple[int, int, int, int, tuple[int, str, Callable[[], str]] | None]:
        w = self.writes
        return len(w.customers), len(w.preferences), len(w.events), len(self.notifications), self.head

    def rollback(self, mark: tuple[int, int, int, int, tuple[int, str, Callable[[], str]] | None]) -> None:
        w = self.writes
        del w.customers[mark[0] :], w.preferences[mark[1] :], w.events[mark[2] :]
        del self.notifications[mark[3] :]
        self.head = mark[4]

    async def put_customer(self, customer: Customer, address_refs: dict[str, str], created: bool) -> None:
        self.writes.customers.append((customer, address_refs, created))

    async def set_preferences(self, customer_id: str, preferences: Preferences, at: datetime) -> None:
        self.writes.preferences.append((customer_id, preferences, at))

    async def topic_categories(self, topic_ids: Iterable[str]) -> dict[str, str]:
        ids = list(topic_ids)
        unknown = [t for t in ids if t not in self.categories]
        if unknown:
            found = await self.real.topic_categories(unknown)
            self.categories.update({t: found.get(t) for t in unknown})
        return {t: c for t in ids if (c := self.categories[t]) is not None}

    async def get_notice(self, notice_version: str) -> Notice | None:
        if notice_version not in self.notices:
            self.notices[notice_version] = await self.real.get_notice(notice_version)
        return self.notices[notice_version]

    async def append_events(
        self,
        changes: list[Change],
        *,
        customer_id: str | None,
        customer_ref: str | None,
        attribution: Attribution,
        at: datetime,
    ) -> list[ConsentEvent]:
        if not changes:
            return []
        if self.head is None:
            self.head = await self.real.lock_ledger_head()
        seq, digest, new_id = self.head
        events = chain_events(
            changes,
            customer_id=customer_id,
            customer_ref=customer_ref,
            attribution=attribution,
            head_seq=seq,
            head_hash=digest,
            at=at,
            new_id=new_id,
        )
        self.writes.events.extend(events)
        self.head = (events[-1].seq, events[-1].hash, new_id)
        return events

    async def queue_notification(self, customer_id: str, kind: str, at: datetime) -> bool:
        self.notifications.append((customer_id, kind, at))
        return True

    async def remove_suppression(
        self, channel: str, address_ref: str, *, scope: str | None = None, reason: str | None = None
    ) -> str | None:
        if (channel, address_ref) not in self.suppressed:
            return None  # known not to exist: no round trip
        return await self.real.remove_suppression(channel, address_ref, scope=scope, reason=reason)

    async def flush(self) -> None:
        w = self.writes
        if w.customers or w.preferences or w.events:
            await self.real.write_import(w)
        for customer_id, kind, at in self.notifications:
            await self.real.queue_notification(customer_id, kind, at)


async def _apply(
    tx: _ChunkTx | WriteTx, rt: Runtime, line: _Line, old: Customer | None
) -> tuple[str, Customer]:
    """One line against its stored customer: 'created', 'updated' or 'unchanged' (and the customer)."""
    write = line.write
    if write is not None:
        marketing = await tx.topic_categories(write.topics)
        try:
            check_preferences(write, {t for t, c in marketing.items() if c == "marketing"})
        except InvalidInput as exc:
            raise InvalidInput(_prefixed(exc.errors, "preferences")) from None
    customer = old
    if old is None or old.profile != line.profile:  # as services/customers.put_customer
        now = rt.now()
        customer = Customer(
            customer_id=line.customer_id,
            customer_ref=old.customer_ref if old else rt.pseudonyms.customer_ref(line.customer_id),
            profile=line.profile,
            preferences=old.preferences if old else NO_PREFERENCES,
            created_at=old.created_at if old else now,
            updated_at=now,
            link_gen=old.link_gen if old else secrets.token_hex(8),
        )
        await convert_seen(cast(WriteTx, tx), rt, line.profile.contacts.items())
        await tx.put_customer(customer, line.refs, created=old is None)
    assert customer is not None
    changed = customer is not old
    if write is not None:
        p = write.provenance
        new = write.preferences()
        attribution = Attribution(p.source, p.actor, p.notice_version, p.evidence)
        if await write_preferences(cast(WriteTx, tx), rt, customer, new, attribution):
            changed = True
            customer = msgspec.structs.replace(customer, preferences=new)
    if old is None:
        return "created", customer
    return ("updated" if changed else "unchanged"), customer


class _Importer:
    def __init__(self, rt: Runtime, caller_role: str) -> None:
        self.rt = rt
        self.caller_role = caller_role
        self.result = ImportResult()
        self.events = 0

    def reject(self, number: int, errors: list[FieldError]) -> None:
        self.result.rejected += 1
        room = MAX_ERRORS - len(self.result.errors)
        for e in errors[: max(room, 0)]:
            self.result.errors.append(ImportError_(number, e.field, e.message))

    async def chunk(self, lines: list[_Line]) -> None:
        if not lines:
            return
        try:
            outcomes = await self._write(lines)
        except StoreUnavailable:
            raise
        except Exception as exc:  # a write-time fault of some line: find it, one line a transaction
            log.warning(
                "import chunk failed; retrying line by line", error=type(exc).__name__, lines=len(lines)
            )
            outcomes = []
            for line in lines:
                try:
                    outcomes.extend(await self._write([line]))
                except StoreUnavailable:
                    raise
                except Exception as exc:
                    log.warning("import line could not be stored", line=line.number, error=type(exc).__name__)
                    outcomes.append((line.number, None, [FieldError("", "could not be stored")]))
        r = self.result
        for number, outcome, errors in outcomes:
            if outcome is None:
                self.reject(number, errors)
            elif outcome == "created":
                r.created += 1
            elif outcome == "updated":
                r.updated += 1
            else:
                r.unchanged += 1

    async def _write(self, lines: list[_Line]) -> list[tuple[int, str | None, list[FieldError]]]:
        outcomes: list[tuple[int, str | None, list[FieldError]]] = []
        topics = sorted({t for line in lines if line.write for t in line.write.topics})
        pairs = sorted({(ch, ref) for line in lines for ch, ref in line.refs.items()})
        solo: list[_Line] = []
        async with self.rt.store.write() as real:
            stored = await real.get_customers(sorted({line.customer_id for line in lines}))
            found = await real.topic_categories(topics)
            # Old-form suppressions of these addresses become current first, so `suppressed` is complete.
            await convert_seen(
                real, self.rt, {(ch, a) for line in lines for ch, a in line.profile.contacts.items()}
            )
            tx = _ChunkTx(
                real,
                categories={t: found.get(t) for t in topics},
                suppressed=await real.suppressed_addresses(pairs),
            )
            for line in lines:
                if any(pair in tx.suppressed for pair in line.refs.items()):
                    # Lifting an address unsubscribe reads who holds the address from the database: such
                    # a (rare) line runs alone after the chunk, exactly as the single endpoints run it.
                    solo.append(line)
                    continue
                mark = tx.mark()
                try:
                    outcome, customer = await _apply(tx, self.rt, line, stored.get(line.customer_id))
                except InvalidInput as exc:
                    tx.rollback(mark)
                    outcomes.append((line.number, None, exc.errors))
                    continue
                stored[line.customer_id] = customer
                outcomes.append((line.number, outcome, []))
            await tx.flush()
            self.events += len(tx.writes.events)
        for line in solo:
            try:  # outside the transaction: a bad line rolls back whole
                async with self.rt.store.write() as real:
                    outcome, _ = await _apply(real, self.rt, line, await real.get_customer(line.customer_id))
            except InvalidInput as exc:
                outcomes.append((line.number, None, exc.errors))
                continue
            outcomes.append((line.number, outcome, []))
        return outcomes


async def ndjson_lines(chunks: AsyncIterable[bytes]) -> AsyncIterator[tuple[int, bytes | None]]:
    """(line number from 1, the line) for each line of an NDJSON stream; None for a line longer than
    :data:`MAX_LINE_BYTES` (dropped as it streams by, never held whole)."""
    buffer = bytearray()
    number = 0
    overflow = False
    async for chunk in chunks:
        start = 0
        while (end := chunk.find(b"\n", start)) != -1:
            number += 1
            if overflow or len(buffer) + end - start > MAX_LINE_BYTES:
                yield number, None
            else:
                buffer += chunk[start:end]
                yield number, bytes(buffer)
            buffer.clear()
            overflow = False
            start = end + 1
        if not overflow:
            buffer += chunk[start:]
            if len(buffer) > MAX_LINE_BYTES:
                overflow = True
                buffer.clear()
    if overflow or buffer.strip():
        number += 1
        yield number, None if overflow else bytes(buffer)


async def import_ndjson(
    rt: Runtime,
    chunks: AsyncIterable[bytes],
    *,
    caller_role: str,
    progress: Callable[[ImportResult], None] | None = None,
    chunk_lines: int = CHUNK_LINES,
) -> ImportResult:
    """Import an NDJSON stream; the answer object. Chunks written before a :class:`StoreUnavailable`
    stay written (importing the same file again finishes the work: unchanged lines write nothing)."""
    importer = _Importer(rt, caller_role)
    pending: list[_Line] = []
    ids: set[str] = set()
    async for number, raw in ndjson_lines(chunks):
        if raw is None:
            importer.reject(number, [FieldError("", f"a line is at most {MAX_LINE_BYTES} bytes")])
            continue
        if not raw.strip():
            continue  # blank lines are skipped (they still count in the numbering)
        try:
            line = parse_line(rt, number, raw, caller_role)
        except InvalidInput as exc:
            importer.reject(number, exc.errors)
            continue
        if line.customer_id in ids or len(pending) >= chunk_lines:  # one write per customer a chunk
            await importer.chunk(pending)
            pending, ids = [], set()
            if progress:
                progress(importer.result)
        pending.append(line)
        ids.add(line.customer_id)
    await importer.chunk(pending)
    r = importer.result
    log.info(
        "import done",
        created=r.created,
        updated=r.updated,
        unchanged=r.unchanged,
        rejected=r.rejected,
        events=importer.events,
    )
    return r
