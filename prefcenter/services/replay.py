"""Policy replay (issue 13, API.md "Auditor's answers"): every logged real decision re-decided with a
candidate policy, against what was in force at that decision's instant. It reads only; it writes
nothing (no decision, no reservation, no ledger event, no migration).

``prefcenter policy replay --policy FILE [--since T] [--until T] [--json]`` calls :func:`replay`. A
decision is replayed when its ``at`` lies in ``[since, until)``; every decision of every kind counts
(``approval``, ``send``, ``regate``). It *changed* when the candidate's verdict or reason differs from
the logged one (``not_before`` alone does not count); ``by_change`` counts the changes by
``"<old reason>-><new reason>"``.

How each decision's inputs are rebuilt (the choices, stated):

- **Consent state at ``at``**: the customer's ledger events (by ``customer_ref``, in ``seq`` order) whose
  own ``at`` is at or before the decision's, folded with :class:`prefcenter.domain.consent_state.StateFold`:
  the channel, the topics (``subscribed``: the campaign's topic is among them), quiet hours,
  ``max_per_week`` and ``paused_until``. When a customer's events are not in time order along ``seq``
  (a clock set back), each instant is folded from the start over the events up to it.
- **Profile**: the ledger holds no profiles, so time zone, country, which channels have a contact and
  where the phone numbers are registered are the customer's CURRENT ones, built as the gate builds its
  ``CustomerState`` (``store/codec.py``). A customer who does not exist now, or was created after the
  decision's instant, is unknown (``unknown_customer``). Decisions of erased customers are gone from
  the log (API.md), so they are not replayed.
- **Suppressions at ``at``**: for each of the customer's CURRENT contacts (channel, address_ref), the
  latest ``suppression:<channel>`` ledger event of that customer about that address at or before ``at``
  (``suppressed`` true/false, ``scope`` all or marketing) decides; an address with no such event in the
  customer's ledger (it was already suppressed when the customer gained it) counts as suppressed when the
  current suppression list holds it with ``since`` at or before ``at``.
- **Reservations**: rebuilt from the decision log itself, in log (id) order, per customer: an ``allow``
  of a (campaign, customer) that holds none reserves at its ``at``; a ``deny`` (a retry now denied, a
  re-gate's withdrawal) releases it; a ``defer`` reserves nothing. A replayed decision sees the other
  marketing campaigns' reservations held just before it (by id), and is a retry (rules 1-8 only) when its
  own campaign holds one. A permanent delivery failure also released the reservation; the log does not
  record it, so it is approximated from the outbox: a message now ``failed`` or ``suppressed`` released
  its reservation (one made before then) at the outbox row's ``updated_at`` (a message failed and later
  queued again is not seen).
- **Double opt-in** (``CustomerState.confirmed``, rule 6b ``not_confirmed``): a topic that requires
  confirmation NOW (``topics.double_opt_in``) is confirmed at ``at`` when the latest ``topic:T``
  ``grant`` at or before ``at`` has been followed by a ``topic:T`` ``update`` with value
  ``{"confirmed": true}`` at or before ``at``. (A grant made before the topic became double opt-in was
  never pending; replay cannot tell, and reads it as awaiting confirmation.)
- **Campaigns**: as they are now (topic, category, channels, ``send_by``); a decision of a campaign that
  no longer exists is skipped (counted apart, not in ``decisions``).
- **Instants**: an approval asked with an explicit ``at`` was decided on the state at the time it was
  asked (which the log does not keep); replay uses the state at ``at``, which is the same for sends,
  re-gates and approvals asked for "now".

Speed: the log is streamed a chunk of customers at a time (:meth:`prefcenter.store.replay.ReplayStore.
iter_replay`), each customer's history folded incrementally, and each chunk's decisions decided with
:func:`prefcenter.domain.engine.decide_batch` grouped by (campaign, instant), as the gate batches; memory
holds one chunk (and the answer's counters and sample). With ``since``/``until`` the bound is pushed
down into the store's read (issue 14): it reads only the customers with a decision in range, and of
each only what can change the answer (back to ``since`` minus the candidate's
:func:`~prefcenter.domain.engine.longest_cap_window`, the whole history of a campaign that still has a
row there, nothing after the customer's last decision in range; see ``store/replay.py``), so the answer
is the one a read of the whole log gives; the exact bounds are applied here to what it reads.

Nothing personal is returned or logged: the sample names customers by pseudonym (``customer_ref``) only.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import msgspec
import structlog

from prefcenter.domain.consent_state import StateFold
from prefcenter.domain.engine import Send, decide_batch, longest_cap_window
from prefcenter.domain.ledger import format_at, format_instant
from prefcenter.domain.model import CampaignView, Channel, CustomerState, PhonePlace
from prefcenter.domain.policy import LoadedPolicy
from prefcenter.domain.timewindows import to_us
from prefcenter.services.runtime import Runtime
from prefcenter.store.codec import parse_time, places_from_contacts, places_from_text
from prefcenter.store.replay import PACK_SEPARATOR, REPLAY_CHUNK, ReplayChunk, ReplayDecision

log = structlog.get_logger("prefcenter.replay")

#: How many changed decisions the answer quotes.
SAMPLE_SIZE = 20

_EMPTY: frozenset[Any] = frozenset()
_VALUED = frozenset({"quiet_hours", "max_per_week", "pause"})
_decode = msgspec.json.decode


class ReplaySample(msgspec.Struct, frozen=True):
    """One changed decision: the customer by pseudonym, the campaign, the instant, was and now."""

    customer_ref: str
    campaign_id: str
    at: str
    was: str
    now: str
    was_verdict: str
    now_verdict: str


class ReplayResult(msgspec.Struct):
    """The answer: ``as_json()`` is API.md's object; ``skipped`` and the policy are for the summary."""

    policy_version: str
    since: str | None
    until: str | None
    decisions: int = 0
    changed: int = 0
    by_change: dict[str, int] = msgspec.field(default_factory=dict)
    sample: list[ReplaySample] = msgspec.field(default_factory=list)
    skipped: int = 0  # decisions of campaigns that no longer exist
    #: the decision log was pruned (retention): decisions before this instant are not replayed, since
    #: the reservations they saw go back past the pruned rows (see :func:`replay`)
    complete_from: str | None = None
    #: CPU seconds reading the store, rebuilding the inputs, and in the engine (for the benchmark)
    timings: dict[str, float] = msgspec.field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "changed": self.changed,
            "by_change": dict(sorted(self.by_change.items())),
            "sample": [msgspec.to_builtins(s) for s in self.sample],
        }


# A consent snapshot: (channel, topics, quiet hours, max_per_week, paused_until, marks), where marks
# maps (channel, address_ref) to the suppression scope in force ("all"/"marketing") or None (lifted),
# and ("topic", T) to True while a grant of T awaits its double opt-in confirmation.
_Snapshot = tuple[Any, frozenset[str], tuple[str, str] | None, int | None, datetime | None, dict[Any, Any]]
_NOTHING: _Snapshot = (None, _EMPTY, None, None, None, {})
# A logged decision unpacked: (campaign, verdict, reason, at in microseconds, at as format_at text, the
# (instant, channel) its allow reserves, its group's key (campaign, at text))
_Entry = tuple[str, str, str, int, str, Send, tuple[str, str]]


class _Replayer:
    """The replay's pure part: fed chunk by chunk, it keeps the counters and the sample."""

    def __init__(
        self,
        policy: LoadedPolicy,
        views: dict[str, CampaignView],
        since_us: int | None,
        until_us: int | None,
        result: ReplayResult,
        ref_of: Any,
        sample_size: int = SAMPLE_SIZE,
        double_opt_in: frozenset[str] = frozenset(),
    ) -> None:
        self.policy = policy
        self.views = views
        self.since_us = since_us
        self.until_us = until_us
        self.result = result
        self.ref_of = ref_of  # customer_id -> pseudonym, for a customer who does not exist now
        self.sample_size = sample_size
        self.double_opt_in = double_opt_in  # the topics that need a confirmation (as they are now)
        self._instants: dict[str, tuple[int, datetime, str]] = {}
        self._packs: dict[str, _Entry] = {}
        self.topics = {c: v.topic for c, v in views.items()}
        self.marketing = frozenset(c for c, v in views.items() if v.category == "marketing")
        self.lo_us = -(2**63) if since_us is None else since_us
        self.hi_us = 2**63 if until_us is None else until_us
        self._sets: dict[str, frozenset[Any]] = {"": _EMPTY}
        self._places: dict[str, dict[str, PhonePlace]] = {"": {}}
        self._pauses: dict[str, datetime | None] = {}
        self._folds: dict[tuple[Any, ...], _Snapshot] = {}  # a history's snapshot (see _snapshots)
        self.deciding = 0.0  # CPU seconds in the engine

    # -- helpers ---------------------------------------------------------------------------------

    def _unpack(self, packed: str) -> _Entry:
        """A packed decision (:data:`prefcenter.store.replay.ReplayDecision`) as an :data:`_Entry`,
        memoised: a chunk repeats few distinct ones."""
        camp, at_text, verdict, reason, channel = packed.split(PACK_SEPARATOR)
        at_us, moment, key = self._instant(at_text)
        if len(self._packs) > 200_000:
            self._packs.clear()
        entry = self._packs[packed] = (camp, verdict, reason, at_us, key, (moment, channel), (camp, at_text))
        return entry

    def _instant(self, text: str) -> tuple[int, datetime, str]:
        """An RFC 3339 text as (microseconds, aware datetime, ``format_at`` text), memoised (decision
        instants repeat)."""
        known = self._instants.get(text)
        if known is None:
            if len(self._instants) > 200_000:
                self._instants.clear()
            moment = parse_time(text)
            known = self._instants[text] = (to_us(moment), moment, format_at(moment))
        return known

    def _set(self, text: str | None) -> frozenset[Any]:
        if not text:
            return _EMPTY
        s = self._sets.get(text)
        if s is None:
            s = self._sets[text] = frozenset(text.split(","))
        return s

    def _places_of(self, stored: str | None, phones: str | None) -> dict[str, PhonePlace]:
        if stored is None:
            return places_from_contacts(phones)
        known = self._places.get(stored)
        if known is None:
            try:
                known = self._places[stored] = places_from_text(stored)
            except msgspec.DecodeError:
                known = places_from_contacts(phones)
        return known

    def _pause(self, value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        if value not in self._pauses:
            if len(self._pauses) > 100_000:
                self._pauses.clear()
            try:
                self._pauses[value] = parse_time(value)
            except ValueError:  # fail closed, as the gate: an unreadable pause has no end
                self._pauses[value] = datetime.max.replace(tzinfo=UTC)
        return self._pauses[value]

    # -- consent snapshots ---------------------------------------------------------------------------

    def _snapshots(self, events: Sequence[Any], instants: list[tuple[int, str]]) -> dict[int, _Snapshot]:
        """The consent in force at each of ``instants`` (``(microseconds, format_at text)``, sorted),
        from one customer's events. Event times are compared as ``format_at`` texts (fixed width,
        so text order is time order); one of another form is normalised first."""
        if not events:
            return dict.fromkeys([us for us, _ in instants], _NOTHING)
        if not all(a[1] < b[1] for a, b in pairwise(events)):
            events = sorted(events, key=lambda e: e[1])  # the store gave them out of seq order
        times = [t if len(t) == 27 and t[-1] == "Z" else _at_key(t) for _, _, t, *_ in events]
        apply, fold, supp = self._apply, StateFold(), dict[Any, Any]()
        if times[-1] <= instants[0][1] and all(a <= b for a, b in pairwise(times)):
            # the common case: the whole history came before the first decision. Many customers share
            # one history (the same changes, at other times): each distinct one is folded once (an
            # erasure's events fold by their instant too: those histories are folded every time).
            history = tuple([(e[3], e[4], e[5], e[6]) for e in events])
            folded = self._folds.get(history)
            if folded is None:
                for e in events:
                    apply(fold, supp, e)
                folded = self._snap(fold, supp)
                if all(e[6] != "erasure" for e in events):
                    if len(self._folds) > 100_000:
                        self._folds.clear()
                    self._folds[history] = folded
            return dict.fromkeys([us for us, _ in instants], folded)
        out: dict[int, _Snapshot] = {}
        if all(a <= b for a, b in pairwise(times)):
            i, n = 0, len(events)
            snap: _Snapshot | None = None
            for us, key in instants:
                moved = False
                while i < n and times[i] <= key:
                    apply(fold, supp, events[i])
                    i += 1
                    moved = True
                if snap is None or moved:
                    snap = self._snap(fold, supp)
                out[us] = snap
            return out
        for us, key in instants:  # not in time order along seq: fold each instant from the start
            fold, supp = StateFold(), {}
            for e, t in zip(events, times, strict=True):
                if t <= key:
                    apply(fold, supp, e)
            out[us] = self._snap(fold, supp)
        return out

    @staticmethod
    def _apply(fold: StateFold, supp: dict[Any, Any], row: Any) -> None:
        _, seq, at, action, subject, value_text, source = row
        # only these subjects' values matter here (a channel's or topic's value is not read)
        value = (
            _decode(value_text)
            if value_text
            and (
                subject in _VALUED
                or subject[:12] == "suppression:"
                or (action == "update" and subject[:6] == "topic:")
            )
            else None
        )
        fold.apply(
            {
                "seq": seq,
                "hash": "",
                "at": at,
                "action": action,
                "subject": subject,
                "value": value,
                "source": source,
            }
        )
        if subject[:12] == "suppression:" and isinstance(value, dict):
            ref = value.get("address_ref")
            if isinstance(ref, str):
                scope = value.get("scope") or "all"
                supp[(subject[12:], ref)] = scope if value.get("suppressed") else None
        elif subject[:6] == "topic:":  # double opt-in: a grant awaits its {"confirmed": true} update
            mark = ("topic", subject[6:])
            if action == "grant":
                supp[mark] = True
            elif action == "withdraw":
                supp.pop(mark, None)
            elif isinstance(value, dict) and value.get("confirmed") is True:
                supp[mark] = None

    def _snap(self, fold: StateFold, supp: dict[Any, Any]) -> _Snapshot:
        quiet = fold.quiet_hours
        q = (
            (str(quiet["start"]), str(quiet["end"]))
            if quiet and "start" in quiet and "end" in quiet
            else None
        )
        return (
            fold.channel,
            frozenset(fold.topics),
            q,
            fold.max_per_week,
            self._pause(fold.paused_until),
            dict(supp),
        )

    # -- one chunk -------------------------------------------------------------------------------------

    def feed(self, chunk: ReplayChunk) -> None:
        profiles = {p[0]: p for p in chunk.profiles}
        events = _grouped(chunk.events)
        contacts = _grouped(chunk.contacts)
        failures: dict[str, dict[str, int]] = {}
        for cid, camp, updated in chunk.failures:
            failures.setdefault(cid, {})[camp] = self._instant(updated)[0]
        # (campaign, at) -> (items, retries, what was: (customer_ref, verdict, reason))
        groups: dict[tuple[str, str], tuple[list[Any], set[str], list[tuple[str, str, str]]]] = {}
        rows = chunk.decisions
        start = 0
        n = len(rows)
        while start < n:
            cid = rows[start][0]
            end = start + 1
            while end < n and rows[end][0] == cid:
                end += 1
            self._customer(
                cid,
                rows[start:end],
                profiles.get(cid),
                events.get(cid, ()),
                contacts.get(cid, ()),
                failures.get(cid),
                groups,
            )
            start = end
        self._decide(groups)

    def _customer(
        self,
        cid: str,
        rows: Sequence[ReplayDecision],
        profile: Any,
        events: Sequence[Any],
        contacts: Sequence[Any],
        fails: dict[str, int] | None,
        groups: dict[tuple[str, str], tuple[list[Any], set[str], list[tuple[str, str, str]]]],
    ) -> None:
        topics, marketing, lo, hi = self.topics, self.marketing, self.lo_us, self.hi_us
        packs, unpack = self._packs, self._unpack
        entries = [packs.get(packed) or unpack(packed) for _, packed in rows]
        wanted = {(e[3], e[4]) for e in entries if lo <= e[3] < hi}  # the instants replayed
        if not wanted:
            return
        snaps: dict[int, _Snapshot] | None = None
        created = ""
        if profile is None:
            ref: str = self.ref_of(cid)
        else:
            ref = profile[1]
            created = _at_key(profile[7])
            snaps = self._snapshots(events, sorted(wanted))
        by_instant = any(c[3] is not None for c in contacts)  # a current suppression: its since counts
        states: dict[tuple[int, str, int], CustomerState] = {}
        last: tuple[Any, str, int, CustomerState] | None = None  # (snapshot, topic, instant, state)
        held: dict[str, tuple[int, bool, Send]] = {}  # campaign -> (at_us, marketing, (instant, channel))
        others: list[Send] = []  # the held marketing reservations (a new list whenever they change)
        for camp, verdict, reason, at_us, at_key, send, gkey in entries:
            topic = topics.get(camp)
            if topic is None:
                if lo <= at_us < hi:
                    self.result.skipped += 1
                continue
            own = held.get(camp)
            if own is not None and fails is not None and camp in fails and own[0] <= fails[camp] <= at_us:
                del held[camp]  # released by a permanent delivery failure (approximated, see above)
                others = [r[2] for r in held.values() if r[1]]
                own = None
            if lo <= at_us < hi:
                sends: Sequence[Send] = others
                if fails is not None:
                    sends = [
                        r[2]
                        for c, r in held.items()
                        if r[1] and c != camp and not (c in fails and r[0] <= fails[c] <= at_us)
                    ]
                elif own is not None and own[1]:
                    sends = [r[2] for c, r in held.items() if r[1] and c != camp]
                state: CustomerState | None = None
                if snaps is not None and at_key >= created:
                    snap = snaps[at_us]
                    when = at_us if by_instant else 0
                    if last is not None and last[0] is snap and last[1] == topic and last[2] == when:
                        state = last[3]
                    else:
                        key = (id(snap), topic, when)
                        state = states.get(key)
                        if state is None:
                            state = states[key] = self._state(cid, profile, contacts, snap, topic, at_us)
                        last = (snap, topic, when, state)
                group = groups.get(gkey)
                if group is None:
                    group = groups[gkey] = ([], set(), [])
                group[0].append((cid, state, sends))
                if own is not None:
                    group[1].add(cid)
                group[2].append((ref, verdict, reason))
            if verdict == "allow":
                if own is None:
                    mine = held[camp] = (at_us, camp in marketing, send)
                    if mine[1]:
                        others = [*others, send]
            elif verdict == "deny" and own is not None:
                del held[camp]
                if own[1]:
                    others = [r[2] for r in held.values() if r[1]]

    def _state(
        self, cid: str, profile: Any, contacts: Sequence[Any], snap: _Snapshot, topic: str, at_us: int
    ) -> CustomerState:
        channel, topics, quiet, cap, paused, supp = snap
        suppressed: set[Channel] = set()
        marketing_only: set[Channel] = set()
        for _, ch, address_ref, scope_now, since in contacts:
            key = (ch, address_ref)
            if key in supp:
                scope = supp[key]
            elif scope_now is not None and since is not None and self._instant(since)[0] <= at_us:
                scope = scope_now
            else:
                scope = None
            if scope == "all":
                suppressed.add(ch)
            elif scope == "marketing":
                marketing_only.add(ch)
        return CustomerState(
            cid,
            profile[2],
            profile[3],
            channel,
            self._set(profile[4]),
            frozenset(suppressed) if suppressed else _EMPTY,
            topic in topics,
            quiet,
            cap,
            paused,
            marketing_suppressed=frozenset(marketing_only) if marketing_only else _EMPTY,
            places=self._places_of(profile[5], profile[6]),
            confirmed=topic not in self.double_opt_in or not supp.get(("topic", topic)),
        )

    def _decide(
        self, groups: dict[tuple[str, str], tuple[list[Any], set[str], list[tuple[str, str, str]]]]
    ) -> None:
        result = self.result
        by_change = result.by_change
        sample = result.sample
        for (camp, at_text), (items, retries, was) in groups.items():
            view = self.views[camp]
            started = time.thread_time()
            at = self._instant(at_text)[1]
            decisions = decide_batch(items, view, at, self.policy, retries=retries)
            self.deciding += time.thread_time() - started
            result.decisions += len(decisions)
            for d, (ref, verdict, reason) in zip(decisions, was, strict=True):
                if d.verdict == verdict and d.reason == reason:
                    continue
                result.changed += 1
                key = f"{reason}->{d.reason}"
                by_change[key] = by_change.get(key, 0) + 1
                if len(sample) < self.sample_size:
                    sample.append(ReplaySample(ref, camp, at_text, reason, d.reason, verdict, d.verdict))


def _at_key(text: str) -> str:
    """An instant as ``format_at`` text (fixed width: text order is time order)."""
    return text if len(text) == 27 and text[-1] == "Z" else format_at(parse_time(text))


def _grouped(rows: Sequence[Any]) -> dict[str, list[Any]]:
    """Rows keyed by their first column (customer id), each customer's in the order given."""
    out: dict[str, list[Any]] = {}
    for row in rows:
        mine = out.get(row[0])
        if mine is None:
            out[row[0]] = [row]
        else:
            mine.append(row)
    return out


async def replay(
    rt: Runtime,
    policy: LoadedPolicy,
    since: datetime | None = None,
    until: datetime | None = None,
    *,
    chunk: int = REPLAY_CHUNK,
    sample_size: int = SAMPLE_SIZE,
) -> ReplayResult:
    """Re-decide every logged decision whose ``at`` lies in ``[since, until)`` with ``policy`` (see
    the module docstring); reads only."""
    result = ReplayResult(
        policy_version=policy.version,
        since=None if since is None else format_instant(since),
        until=None if until is None else format_instant(until),
    )
    reach = longest_cap_window(policy)
    pruned = await rt.store.decisions_pruned_before()
    if pruned is not None:
        # The log holds no decision before ``pruned`` any more, so neither the reservations they made:
        # a decision less than the candidate's longest cap window after it would be re-decided against
        # fewer reservations than it saw. Replay from there on only, and say so.
        complete = datetime.fromisoformat(pruned) + reach
        if since is None or since < complete:
            since = complete
            result.complete_from = format_instant(complete)
    views = await rt.store.replay_campaigns()
    replayer = _Replayer(
        policy,
        views,
        None if since is None else to_us(since),
        None if until is None else to_us(until),
        result,
        rt.pseudonyms.customer_ref,
        sample_size,
        frozenset(await rt.store.replay_double_opt_in_topics()),
    )
    # CPU seconds (all threads' while reading: SQLite's reads run on the store's thread), so the
    # split holds on a busy machine too
    clock, own = time.process_time, time.thread_time
    reading = feeding = 0.0
    # The replay allocates millions of short-lived tuples and no cycles: the cyclic collector would
    # only rescan the chunk in hand, over and over (a third of the time). Off for the loop, restored.
    collecting = gc.isenabled()
    gc.disable()
    try:
        mark = clock()
        parts = rt.store.iter_replay(chunk=chunk, since=since, until=until, reach=reach)
        async for part in parts:
            got, fed = clock(), own()
            replayer.feed(part)
            reading, feeding = reading + got - mark, feeding + own() - fed
            mark = clock()
            del part
    finally:
        if collecting:
            gc.enable()
    result.timings = {
        "read_s": round(reading, 3),
        "inputs_s": round(feeding - replayer.deciding, 3),
        "engine_s": round(replayer.deciding, 3),
    }
    log.info("policy replayed", decisions=result.decisions, changed=result.changed, skipped=result.skipped)
    return result


def format_summary(result: ReplayResult, policy_label: str) -> list[str]:
    """The human summary's lines (the JSON, when asked for, is printed after them)."""
    span = f"from {result.since or 'the first'} until {result.until or 'the last'}"
    lines = [
        f"replayed {result.decisions} logged decisions {span} with {policy_label} ({result.policy_version})",
        f"{result.changed} would change",
    ]
    for key, count in sorted(result.by_change.items(), key=lambda kv: (-kv[1], kv[0])):
        was, _, now = key.partition("->")
        lines.append(f"  {was} -> {now}: {count}")
    if result.skipped:
        lines.append(f"skipped {result.skipped} decisions of campaigns that no longer exist")
    if result.complete_from is not None:
        lines.append(
            f"the decision log was pruned (retention): only decisions from {result.complete_from} on were "
            "replayed, as earlier ones saw reservations the log no longer holds"
        )
    if result.sample:
        lines.append("sample (customers by pseudonym):")
        for s in result.sample:
            change = f"{s.was_verdict} {s.was} -> {s.now_verdict} {s.now}"
            lines.append(f"  {s.customer_ref} {s.campaign_id} {s.at}: {change}")
    return lines
