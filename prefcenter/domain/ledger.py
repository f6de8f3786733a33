"""The consent ledger's hash chain: canonical JSON, chaining new events, and verification; and the
notices events point to (what the person was told).

``hash = sha256(prev_hash.encode() + canonical).hexdigest()`` where ``canonical`` is the RFC 8785 JSON of
the event without ``hash`` and ``customer_id``. Events hold only strings, integers, booleans, nulls,
arrays and objects with ASCII keys, so Python's ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` produces exactly those bytes; that is the definition an auditor can re-run.

**Shapes.** The hash covers exactly the keys an event was written with, and an event is never rewritten,
so a key added to events later is part of the events written from then on only. Each stored event has
a shape (:data:`SHAPE_FIELDS`): shape 1 is the keys of the first ledger; shape 2 (migration 0014, issue
16) adds ``notice_sha256``, which every event written since carries, with a value or null. Readers give
each event with the keys of its own shape (:func:`shaped`), so the JSONL export of a ledger that spans
the change recomputes with the one rule above: an auditor needs no list of shapes, only the lines.

**Notices** (COMPLIANCE items 15, 16, edge 13 and 21). A notice version's texts, one per language, are
registered once and never change; each is stored NFC-normalised, and its ``sha256`` is the hex SHA-256
of the NFC text's UTF-8 bytes (:func:`notice_text_sha256`), so the same words always give the same
hash whatever Unicode form they arrived in. An event whose ``notice_version`` is registered carries
``notice_sha256``: the hash of the text in the language the person saw (the page's language on the
preference page, else the customer's profile locale), chosen by :func:`notice_language`: the exact tag,
else its base language (``pt`` for ``pt-BR``), else null (no text in a language the person reads:
nothing is claimed). ``GET /v1/notices/{notice_version}`` gives the exact text behind a hash.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec

from prefcenter.domain.model import QuietHours

GENESIS = "0" * 64
Action = Literal["grant", "withdraw", "update"]
Source = Literal[
    "api",
    "crm",
    "import",
    "admin",
    "preference_page",
    "one_click_unsubscribe",
    "sms_keyword",
    "bounce",
    "complaint",
    "erasure",
]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]
EVENT_FIELDS = (
    "seq",
    "id",
    "at",
    "customer_id",
    "customer_ref",
    "action",
    "subject",
    "value",
    "source",
    "actor",
    "notice_version",
    "notice_sha256",
    "evidence",
    "prev_hash",
    "hash",
)
#: The keys of each event shape (see the module docstring); events are written with EVENT_SHAPE.
SHAPE_FIELDS: dict[int, tuple[str, ...]] = {
    1: tuple(f for f in EVENT_FIELDS if f != "notice_sha256"),
    2: EVENT_FIELDS,
}
EVENT_SHAPE = 2


class Change(msgspec.Struct, frozen=True):
    """One consent or preference change, before it is placed on the chain."""

    action: Action
    subject: str
    value: Any = None


class Attribution(msgspec.Struct, frozen=True):
    """Who made a change, how, and on what basis (the ledger fields besides the change itself)."""

    source: Source
    actor: str
    notice_version: str | None
    evidence: dict[str, Any] = {}
    # The hash of the notice text the person saw (filled in by the service that appends the events).
    notice_sha256: str | None = None


class ConsentEvent(msgspec.Struct, frozen=True):
    seq: int
    id: str
    at: str
    customer_id: str | None
    customer_ref: str | None
    action: str
    subject: str
    value: Any
    source: str
    actor: str
    notice_version: str | None
    notice_sha256: str | None
    evidence: dict[str, Any]
    prev_hash: str
    hash: str


def format_at(moment: datetime) -> str:
    """An event time: UTC, always with microseconds, ``Z`` suffix (``2026-11-22T09:00:00.123456Z``)."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_instant(moment: datetime) -> str:
    """An API time: UTC with ``Z``; microseconds only when there are any."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat() + "Z"


def canonical(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k not in ("hash", "customer_id")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(str(event["prev_hash"]).encode() + canonical(event)).hexdigest()


def chain_events(
    changes: Iterable[Change],
    *,
    customer_id: str | None,
    customer_ref: str | None,
    attribution: Attribution,
    head_seq: int,
    head_hash: str,
    at: datetime,
    new_id: Callable[[], str],
) -> list[ConsentEvent]:
    """Place ``changes`` on the chain after (head_seq, head_hash)."""
    out: list[ConsentEvent] = []
    seq, prev = head_seq, head_hash
    stamp = format_at(at)
    for change in changes:
        seq += 1
        body: dict[str, Any] = {
            "seq": seq,
            "id": new_id(),
            "at": stamp,
            "customer_id": customer_id,
            "customer_ref": customer_ref,
            "action": change.action,
            "subject": change.subject,
            "value": change.value,
            "source": attribution.source,
            "actor": attribution.actor,
            "notice_version": attribution.notice_version,
            "notice_sha256": attribution.notice_sha256,
            "evidence": attribution.evidence,
            "prev_hash": prev,
        }
        digest = event_hash(body)
        out.append(ConsentEvent(**body, hash=digest))
        prev = digest
    return out


def event_dict(event: ConsentEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in EVENT_FIELDS}


def shaped(event: dict[str, Any], shape: int) -> dict[str, Any]:
    """A stored event (every column) with the keys of its shape only, in EVENT_FIELDS order."""
    return {name: event[name] for name in SHAPE_FIELDS[shape]}


# ---------------------------------------------------------------------------------------------------
# notices

NOTICE_TEXT_MAX_BYTES = 64 * 1024
NOTICE_LANGUAGES_MAX = 50


class Notice(msgspec.Struct, frozen=True):
    """A registered notice version: its texts by language tag (NFC), their hashes, when registered."""

    notice_version: str
    texts: dict[str, str]
    sha256: dict[str, str]
    registered_at: datetime


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def notice_text_sha256(text: str) -> str:
    """The hex SHA-256 of the NFC form's UTF-8 bytes (edge 13: one hash for the same words)."""
    return hashlib.sha256(nfc(text).encode("utf-8")).hexdigest()


def notice_texts(texts: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The texts NFC-normalised and their hashes, both keyed by language tag."""
    normal = {tag: nfc(text) for tag, text in texts.items()}
    return normal, {tag: notice_text_sha256(text) for tag, text in normal.items()}


def notice_language(available: Iterable[str], wanted: str | None) -> str | None:
    """Which of the ``available`` tags serves a person who reads ``wanted``: the same tag (tags compare
    case-insensitively), else the base language (``pt`` for ``pt-BR``), else None."""
    if not wanted:
        return None
    by_lower = {tag.lower(): tag for tag in available}
    want = wanted.strip().replace("_", "-").lower()
    if want in by_lower:
        return by_lower[want]
    return by_lower.get(want.split("-")[0])


def notice_hash_for(notice: Notice | None, wanted: str | None) -> str | None:
    """``notice_sha256`` of an event: the hash of the text in the language the person reads, or None."""
    if notice is None:
        return None
    tag = notice_language(notice.sha256, wanted)
    return None if tag is None else notice.sha256[tag]


# ---------------------------------------------------------------------------------------------------
# preference changes -> events


def quiet_hours_value(qh: QuietHours | None) -> dict[str, str] | None:
    return None if qh is None else {"start": qh.start, "end": qh.end}


def preference_changes(
    old_channel: str | None,
    old_topics: Iterable[str],
    old_quiet: QuietHours | None,
    old_max: int | None,
    old_pause: datetime | None,
    new_channel: str | None,
    new_topics: Iterable[str],
    new_quiet: QuietHours | None,
    new_max: int | None,
    new_pause: datetime | None,
) -> list[Change]:
    """The events that API.md prescribes for a preference change; nothing when nothing changes."""
    changes: list[Change] = []
    if old_channel != new_channel:
        if old_channel is not None:
            changes.append(Change("withdraw", f"channel:{old_channel}"))
        if new_channel is not None:
            changes.append(Change("grant", f"channel:{new_channel}"))
    before, after = set(old_topics), set(new_topics)
    changes.extend(Change("withdraw", f"topic:{t}") for t in sorted(before - after))
    changes.extend(Change("grant", f"topic:{t}") for t in sorted(after - before))
    if old_quiet != new_quiet:
        changes.append(Change("update", "quiet_hours", quiet_hours_value(new_quiet)))
    if old_max != new_max:
        changes.append(Change("update", "max_per_week", new_max))
    if old_pause != new_pause:
        changes.append(Change("update", "pause", None if new_pause is None else format_instant(new_pause)))
    return changes


# ---------------------------------------------------------------------------------------------------
# verification


class VerifyResult(msgspec.Struct, frozen=True):
    ok: bool
    events: int | None = None
    head: str | None = None
    first_bad_seq: int | None = None
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.ok:
            return {"ok": True, "events": self.events, "head": self.head}
        return {"ok": False, "first_bad_seq": self.first_bad_seq, "problem": self.problem}


class ChainVerifier:
    """Feeds events in storage order (constant memory) and reports the first one that breaks the chain.

    Checks: seq starts at 1 and rises by one; each ``prev_hash`` is the previous ``hash``; each hash
    recomputes; a non-null ``customer_id`` matches its ``customer_ref``; the stored head (kept apart from
    the events) is the last event; and an auditor's recorded head, if given, lies on the chain.
    """

    def __init__(self, customer_ref: Callable[[str], str] | None = None) -> None:
        self._ref = customer_ref
        self.count = 0
        self.last_seq = 0
        self.last_hash = GENESIS
        self.failure: VerifyResult | None = None
        self._seen_heads: set[str] = set()
        self._wanted_head: str | None = None
        self.found_wanted = False

    def want_head(self, head: str) -> None:
        self._wanted_head = head

    def _fail(self, seq: int, problem: str) -> bool:
        self.failure = VerifyResult(ok=False, first_bad_seq=seq, problem=problem)
        return False

    def feed(self, event: dict[str, Any]) -> bool:
        """Check one event; False once the chain is broken (then ``failure`` says where)."""
        if self.failure is not None:
            return False
        expected = self.last_seq + 1
        seq = event.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return self._fail(expected, "event without an integer seq")
        if seq != expected:
            if seq > expected:
                return self._fail(expected, f"event {expected} is missing (next stored is {seq})")
            return self._fail(expected, f"events out of order: found seq {seq} where {expected} belongs")
        if event.get("prev_hash") != self.last_hash:
            return self._fail(seq, "prev_hash does not match the previous event's hash")
        try:
            recomputed = event_hash(event)
        except (TypeError, ValueError) as exc:
            return self._fail(seq, f"event cannot be serialised canonically: {exc}")
        if recomputed != event.get("hash"):
            return self._fail(seq, "hash does not match the event's content")
        cid = event.get("customer_id")
        if cid is not None and self._ref is not None and self._ref(cid) != event.get("customer_ref"):
            return self._fail(seq, "customer_id does not match customer_ref")
        self.count += 1
        self.last_seq = seq
        self.last_hash = recomputed
        if self._wanted_head is not None and recomputed == self._wanted_head:
            self.found_wanted = True
        return True

    def finish(self, stored_head_seq: int | None, stored_head_hash: str | None) -> VerifyResult:
        if self.failure is not None:
            return self.failure
        if stored_head_seq is not None and stored_head_hash is not None:
            if stored_head_seq > self.last_seq:
                return VerifyResult(
                    ok=False,
                    first_bad_seq=self.last_seq + 1,
                    problem=f"events {self.last_seq + 1}..{stored_head_seq} are missing (the stored head "
                    f"is at seq {stored_head_seq})",
                )
            if stored_head_seq < self.last_seq:
                return VerifyResult(
                    ok=False,
                    first_bad_seq=stored_head_seq + 1,
                    problem=f"events after the stored head (seq {stored_head_seq}) were not appended "
                    "through the ledger",
                )
            if stored_head_hash != self.last_hash:
                return VerifyResult(
                    ok=False, first_bad_seq=self.last_seq, problem="the stored head's hash does not match"
                )
        if self._wanted_head is not None and not self.found_wanted and self._wanted_head != GENESIS:
            return VerifyResult(
                ok=False,
                first_bad_seq=None,
                problem="the given head is not the hash of any event on the chain: the history it "
                "recorded was rewritten, or the head is wrong",
            )
        return VerifyResult(ok=True, events=self.count, head=self.last_hash)


def verify_events(
    events: Iterable[dict[str, Any]],
    *,
    stored_head: tuple[int, str] | None = None,
    customer_ref: Callable[[str], str] | None = None,
    head: str | None = None,
) -> VerifyResult:
    verifier = ChainVerifier(customer_ref)
    if head is not None:
        verifier.want_head(head)
    for event in events:
        if not verifier.feed(event):
            break
    seq, digest = stored_head if stored_head is not None else (None, None)
    return verifier.finish(seq, digest)
