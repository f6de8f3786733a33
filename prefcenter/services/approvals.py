"""The send-approval gate: batched loads, the pure engine, one write of reservations and decision log.

Real approvals go through a :class:`GateBatcher`: requests that arrive while a transaction is running
wait, and the next gate transaction (``Store.gate``) takes all of them at once — group commit. Inside
it the recipients of each campaign are loaded once, the requests are decided in arrival order (each
seeing the reservations the earlier ones made) by a pure function that returns every reservation,
decision-log row and outbox row as data, and the store writes them with a few bulk statements. Nothing
moves between the load and the write (guarantee 1 of ``store.base``), so concurrent approvals can never
together exceed a cap; a batch of one is the plain case. A dry run reads one snapshot and writes nothing.

Explained decisions (API.md "Auditor's answers"): every decision-log row of a paused, quiet_hours or
frequency_cap decision keeps the explanation of :mod:`prefcenter.domain.explain` (computed in the same
pure part of the transaction, from the inputs the engine decided with; NULL is the reason itself), and
with ``"explain": true`` the answer's decisions are :class:`AnswerDecision` carrying it. Without the
flag the answer is the engine's Decisions as before, byte for byte.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

import msgspec
import structlog

from prefcenter.domain.engine import Send, decide_batch
from prefcenter.domain.explain import EXPLAINED_REASONS, Explainer
from prefcenter.domain.ledger import format_instant
from prefcenter.domain.model import (
    CUSTOMER_ID_RE,
    AwareDatetime,
    CampaignView,
    Channel,
    CustomerState,
    Decision,
    FieldError,
    InvalidInput,
    TopicId,
    check_instant,
)
from prefcenter.domain.timewindows import from_us, to_us
from prefcenter.services.campaigns import get_campaign
from prefcenter.services.errors import NotFound, PayloadTooLarge
from prefcenter.services.retention import reservations_since
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import DecisionRow, GateInputs, GateWrites, QueueRow, Reservation, StoreUnavailable

log = structlog.get_logger("prefcenter.approvals")

MAX_IDS = 10_000

# Called inside the approval's transaction with its decisions (the sends endpoint queues messages).
# What an ask queues once decided (sends.py: the outbox rows of what may go): pure, run inside the gate.
OnDecided = Callable[[CampaignView, datetime, list[Decision]], list[QueueRow]]


class ApprovalRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    campaign_id: TopicId  # campaign ids share the topic id grammar (API.md)
    customer_ids: list[str]
    at: AwareDatetime | None = None
    dry_run: bool = False
    explain: bool = False  # each decision then carries `explain` (API.md "Auditor's answers")


class Summary(msgspec.Struct, frozen=True):
    allow: int
    defer: int
    deny: int
    by_reason: dict[str, int]


class ApprovalAnswer(msgspec.Struct, frozen=True):
    campaign_id: str
    policy_version: str
    evaluated_at: str
    decisions: list[Decision]  # the engine's own Decisions; AnswerDecisions (with explain) when asked
    summary: Summary


class ExplainedWindow(msgspec.Struct, frozen=True, omit_defaults=True):
    """A channel window that is a table in the policy, with the keys the policy sets."""

    hours: list[str]
    days: str | None = None
    holidays: str | None = None


_RULE = (
    "customer_quiet_hours or channel_window (reason quiet_hours); policy_cap or customer_cap "
    "(frequency_cap); pause (paused); otherwise the reason itself"
)
_WINDOW = (
    "quiet hours or a channel window as written (HH:MM-HH:MM, or the policy's window table); "
    "a cap's length: 24h, 7d, <hours>h (extra caps), <days>d (per-channel caps)"
)
_HELD = "how many reservations the fullest window of that length containing `at` already holds"


class Explanation(msgspec.Struct, frozen=True, omit_defaults=True):
    """Which rule instance decided (see :mod:`prefcenter.domain.explain`); only the keys that apply."""

    rule: Annotated[str, msgspec.Meta(description=_RULE)]
    window: Annotated[str | ExplainedWindow, msgspec.Meta(description=_WINDOW)] | None = None
    zone: Annotated[str, msgspec.Meta(description="the IANA zone in which the window fails")] | None = None
    country: Annotated[str, msgspec.Meta(description="the country whose override set it")] | None = None
    region: Annotated[str, msgspec.Meta(description="the subdivision whose override set it")] | None = None
    channel: Annotated[Channel, msgspec.Meta(description="a per-channel cap's channel")] | None = None
    limit: int | None = None
    held: Annotated[int, msgspec.Meta(description=_HELD)] | None = None
    until: Annotated[datetime, msgspec.Meta(description="the end of the pause")] | None = None


class AnswerDecision(Decision, frozen=True):
    """A decision as the answer gives it: with ``explain`` only when the request asked for it."""

    explain: Explanation | msgspec.UnsetType = msgspec.UNSET


class GateAnswer(msgspec.Struct, frozen=True):
    """The answer of approvals and sends as documented (an :class:`ApprovalAnswer` on the wire)."""

    campaign_id: str
    policy_version: str
    evaluated_at: str
    decisions: list[AnswerDecision]
    summary: Summary


# Every id well-formed, as one regex pass over the ids joined by newlines (which no valid id holds).
_WELL_FORMED_IDS = re.compile(r"(?:[A-Za-z0-9._:@-]{1,128}\n)*")


def check_ids(ids: Sequence[str]) -> None:
    if len(ids) > MAX_IDS:
        raise PayloadTooLarge(f"at most {MAX_IDS} customer_ids per call (got {len(ids)})")
    joined = "\n".join(ids) + "\n"
    if joined.count("\n") == len(ids) and _WELL_FORMED_IDS.fullmatch(joined) and len(set(ids)) == len(ids):
        return  # the common case; otherwise the loop below names the bad ids
    errors: list[FieldError] = []
    seen: set[str] = set()
    for i, cid in enumerate(ids):
        if not CUSTOMER_ID_RE.match(cid):
            errors.append(FieldError(f"customer_ids[{i}]", "must be 1-128 characters of A-Za-z0-9._:@-"))
        elif cid in seen:
            errors.append(FieldError(f"customer_ids[{i}]", f"duplicate id {cid!r}"))
        seen.add(cid)
        if len(errors) >= 20:
            break
    if errors:
        raise InvalidInput(errors, "Malformed or duplicate customer ids.")


def decide_recipients(
    rt: Runtime, view: CampaignView, ids: list[str], at: datetime, inputs: GateInputs
) -> list[Decision]:
    """The engine over loaded inputs: a customer's other marketing reservations count against the
    caps; its own reservation for this campaign makes the ask a retry (rules 1-8 only)."""
    assert rt.policy is not None
    items: list[tuple[str, CustomerState | None, Sequence[Send]]] = []
    retries = set()
    camp = view.campaign_id
    # a campaign's reservations share few (instant, channel) pairs: convert each once
    instants: dict[tuple[int, str], Send] = {}
    for cid in ids:
        state = inputs.states.get(cid)
        held = inputs.held.get(cid)
        if state is None:
            items.append((cid, None, ()))
            continue
        if not held:
            items.append((cid, state, ()))
            continue
        if camp in held:
            retries.add(cid)
        sends = []
        for c, r in held.items():
            if c != camp and r.marketing:
                key = (r.at_us, r.channel)
                send = instants.get(key)
                if send is None:
                    send = instants[key] = (from_us(r.at_us), r.channel)
                sends.append(send)
        items.append((cid, state, sends))
    return decide_batch(items, view, at, rt.policy.policy, retries=retries)


async def campaign_view(rt: Runtime, campaign_id: str) -> CampaignView:
    campaign = await get_campaign(rt, campaign_id)
    topic = await rt.store.get_topic(campaign.topic)
    if topic is None:  # pragma: no cover - a campaign's topic cannot be deleted (409)
        raise NotFound(f"campaign topic {campaign.topic!r} is gone")
    return CampaignView(
        campaign_id=campaign_id,
        topic=campaign.topic,
        category=topic.category,
        channels=tuple(campaign.channels),
        send_by=campaign.send_by,
    )


_Result = tuple[CampaignView, list[Decision]] | Exception
_Decided = tuple[list[_Result], GateWrites]  # each ask's result, and what the gate wrote


@dataclass
class _Ask:
    campaign_id: str
    ids: list[str]
    at: datetime
    on_decided: OnDecided | None
    done: asyncio.Future[tuple[CampaignView, list[Decision]]]
    explain: bool = False


@dataclass
class GateBatcher:
    """Group commit for real approvals (one per process; see the module docstring)."""

    rt: Runtime
    max_batch_ids: int = 20_000
    gather_rounds: int = 8
    _waiting: list[_Ask] = field(default_factory=list)
    _drains: set[asyncio.Task[None]] = field(default_factory=set)  # kept, so none is collected
    _deciding: int = 0  # drains inside a gate transaction

    async def submit(
        self,
        campaign_id: str,
        ids: list[str],
        at: datetime,
        on_decided: OnDecided | None,
        *,
        explain: bool = False,
    ) -> tuple[CampaignView, list[Decision]]:
        """Decide (and reserve) in the next group transaction; NotFound for an unknown campaign.
        ``explain``: the decisions answered are :class:`AnswerDecision` with ``explain``."""
        ask = _Ask(campaign_id, ids, at, on_decided, asyncio.get_running_loop().create_future(), explain)
        self._waiting.append(ask)
        # A drain that is not inside a transaction takes this ask with its next batch; when every drain
        # is, another starts, up to the store's ``gate_groups`` (1 on SQLite: its one writer)
        running = self._running
        if running == self._deciding and running < self.rt.store.gate_groups:
            task = asyncio.create_task(self._drain())
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return await ask.done

    def _take(self) -> list[_Ask]:
        batch: list[_Ask] = []
        size = 0
        while self._waiting and (not batch or size + len(self._waiting[0].ids) <= self.max_batch_ids):
            ask = self._waiting.pop(0)
            batch.append(ask)
            size += len(ask.ids)
        return batch

    async def _gather(self) -> None:
        """Let the event loop finish what it has in hand (requests already read whose handlers have not
        yet submitted) before the next batch is taken, so that they join it instead of waiting a whole
        transaction for the one after. Bounded: at most ``gather_rounds`` loop turns, and it stops as
        soon as a turn brings no new ask (it never waits for the network)."""
        for _ in range(self.gather_rounds):
            before = len(self._waiting)
            await asyncio.sleep(0)
            if len(self._waiting) == before:
                return

    @property
    def _running(self) -> int:
        """Drains not yet finished (a finished one is done at once, but leaves ``_drains`` a turn later)."""
        return sum(not task.done() for task in self._drains)

    async def _drain(self) -> None:
        while self._waiting:
            await self._gather()
            batch = self._take()
            if not batch:  # another drain took them
                continue
            self._deciding += 1
            try:
                results = await self._run(batch)
            except Exception as exc:
                if len(batch) == 1 or isinstance(exc, StoreUnavailable):  # nobody's fault: all alike
                    results = [exc] * len(batch)
                else:
                    results = await self._isolate(batch, exc)
            except BaseException as exc:  # cancelled: the asks fail; a gate already on the writer's
                # thread (SQLite) or committing (PostgreSQL) may still commit what it decided
                for ask in batch:
                    if not ask.done.done():
                        ask.done.set_exception(exc)
                raise
            finally:
                self._deciding -= 1
            for ask, result in zip(batch, results, strict=True):
                if ask.done.done():
                    continue
                if isinstance(result, Exception):
                    ask.done.set_exception(result)
                else:
                    ask.done.set_result(result)

    async def _isolate(
        self, batch: list[_Ask], exc: Exception
    ) -> list[tuple[CampaignView, list[Decision]] | Exception]:
        """A group transaction failed and rolled back: one ask's fault must stay that ask's, so each ask
        is decided again in a transaction of its own, in arrival order, as if the others had not come."""
        log.warning(
            "group approval failed; deciding its requests one by one",
            requests=len(batch),
            error=type(exc).__name__,
        )
        results: list[tuple[CampaignView, list[Decision]] | Exception] = []
        for ask in batch:
            try:
                results.extend(await self._run([ask]))
            except Exception as own:
                results.append(own)
        return results

    async def _run(self, batch: list[_Ask]) -> list[tuple[CampaignView, list[Decision]] | Exception]:
        rt = self.rt
        assert rt.policy is not None
        version = rt.policy.version
        # One load per campaign over the union of its recipients in this batch.
        wanted: dict[str, set[str]] = {}
        for ask in batch:
            wanted.setdefault(ask.campaign_id, set()).update(ask.ids)
        results, writes = await rt.store.gate(
            {camp: sorted(ids) for camp, ids in wanted.items()},
            lambda views, loaded: self._decide(batch, views, loaded, version),
            reservations_since(rt.policy, min(ask.at for ask in batch)),
        )
        counts = Counter((d.verdict, d.reason) for r in results if not isinstance(r, Exception) for d in r[1])
        for (verdict, reason), n in counts.items():
            rt.metrics.decisions.labels(verdict, reason).inc(n)
        if len(batch) > 1 or len(writes.decisions) > 100:
            log.info(
                "approvals committed",
                requests=len(batch),
                recipients=len(writes.decisions),
                reservations=len(writes.reserve) + len(writes.release),
                queued=len(writes.queue),
            )
        return results

    def _decide(
        self,
        batch: list[_Ask],
        views: dict[str, CampaignView],
        loaded: dict[str, GateInputs],
        version: str,
    ) -> tuple[_Decided, GateWrites]:
        """The pure part of a gate transaction: every ask of the batch decided in arrival order, and
        what the store must write (also handed back with the results, for the log line)."""
        rt = self.rt
        assert rt.policy is not None
        policy = rt.policy.policy
        held: dict[str, dict[str, Reservation]] = {}
        for inputs in loaded.values():
            for cid, reservations in inputs.held.items():
                mine = held.get(cid)
                if mine is None:
                    held[cid] = dict(reservations)
                else:
                    mine.update(reservations)
        changed: dict[tuple[str, str], Reservation | None] = {}
        rows: list[DecisionRow] = []
        queue: list[QueueRow] = []
        results: list[_Result] = []
        for group in _groups(batch):
            first = group[0]
            camp = first.campaign_id
            view = views.get(camp)
            if view is None:
                results.extend(NotFound(f"no campaign {camp!r}") for _ in group)
                continue
            states = loaded[camp].states
            inputs = GateInputs(states=states, held=held)
            ids = first.ids if len(group) == 1 else [cid for ask in group for cid in ask.ids]
            decisions = decide_recipients(rt, view, ids, first.at, inputs)
            explainer = Explainer(view, first.at, policy)
            instant = (format_instant(first.at), to_us(first.at))  # a group's asks share `at`
            start = 0
            for ask in group:
                own = decisions if len(group) == 1 else decisions[start : start + len(ask.ids)]
                start += len(ask.ids)
                kind = "approval" if ask.on_decided is None else "send"
                texts = self._note(
                    view, instant, own, held, changed, rows, version, kind, states, explainer, ask.explain
                )
                if ask.on_decided is not None:
                    queue.extend(ask.on_decided(view, ask.at, own))
                results.append((view, own if texts is None else explained(own, texts)))
        writes = GateWrites(
            reserve=[(cid, camp, r) for (cid, camp), r in changed.items() if r is not None],
            release=[key for key, r in changed.items() if r is None],
            decisions=rows,
            queue=queue,
            at=rt.now() if queue else None,
        )
        return (results, writes), writes

    @staticmethod
    def _note(
        view: CampaignView,
        instant: tuple[str, int],
        decisions: list[Decision],
        held: dict[str, dict[str, Reservation]],
        changed: dict[tuple[str, str], Reservation | None],
        rows: list[DecisionRow],
        version: str,
        kind: str,
        states: dict[str, CustomerState],
        explainer: Explainer,
        answer_texts: bool,
    ) -> list[str | None] | None:
        """The reservations these decisions make or release (also in ``held``, for the asks decided
        after them in this transaction) and their decision-log rows, each with its explanation (NULL
        when it is the reason itself: only paused, quiet_hours and frequency_cap say more), computed
        from the inputs the decision was made with (the state, the other reservations before this
        decision changes them). ``instant``: ``at`` as the log writes it and in microseconds (once per
        group of asks). ``answer_texts``: also return every decision's explanation text."""
        camp = view.campaign_id
        texts: list[str | None] | None = [] if answer_texts else None
        at_text, at_us = instant
        marketing = view.category == "marketing"
        reservations: dict[str, Reservation] = {}  # one per channel: few distinct objects
        not_before: dict[datetime, str] = {}
        append = rows.append
        for d in decisions:
            cid, verdict = d.customer_id, d.verdict
            if verdict == "allow":
                mine = held.get(cid)
                if mine is None or camp not in mine:
                    channel = d.channel or ""
                    reservation = reservations.get(channel)
                    if reservation is None:
                        reservation = reservations[channel] = Reservation(at_us, channel, marketing)
                    if mine is None:
                        held[cid] = {camp: reservation}
                    else:
                        mine[camp] = reservation
                    changed[(cid, camp)] = reservation
                append((cid, camp, at_text, verdict, d.reason, d.channel, None, version, kind, None))
                if texts is not None:
                    texts.append(None)
                continue
            if verdict == "deny":
                text = None
                if d.reason in EXPLAINED_REASONS:
                    text = explain_text_of(explainer, d, states, held, camp)
                mine = held.get(cid)
                if mine is not None and camp in mine:  # a retry now denied releases its reservation
                    del mine[camp]
                    changed[(cid, camp)] = None
                append((cid, camp, at_text, verdict, d.reason, d.channel, None, version, kind, text))
                if texts is not None:
                    texts.append(text)
                continue
            nb = d.not_before
            nb_text = None
            if nb is not None:
                nb_text = not_before.get(nb)
                if nb_text is None:
                    nb_text = not_before[nb] = format_instant(nb)
            text = explain_text_of(explainer, d, states, held, camp)  # a defer is always rule 7, 8 or 9
            append((cid, camp, at_text, verdict, d.reason, d.channel, nb_text, version, kind, text))
            if texts is not None:
                texts.append(text)
        return texts


def explain_text_of(
    explainer: Explainer,
    decision: Decision,
    states: dict[str, CustomerState],
    held: dict[str, dict[str, Reservation]],
    campaign_id: str,
) -> str | None:
    """The decision log's explanation of one decision from the loaded inputs (as
    :func:`decide_recipients` hands them to the engine). An explanation that cannot be computed (a
    stored value no rule can read) is logged as the reason itself: it never fails the batch."""
    try:
        return _explain_text_of(explainer, decision, states, held, campaign_id)
    except Exception:
        return None


def _explain_text_of(
    explainer: Explainer,
    decision: Decision,
    states: dict[str, CustomerState],
    held: dict[str, dict[str, Reservation]],
    campaign_id: str,
) -> str | None:
    cid = decision.customer_id
    if decision.reason != "frequency_cap":  # only the caps look at the other reservations
        return explainer.find(decision, states.get(cid), (), False)[1]
    mine = held.get(cid)
    if not mine:
        return explainer.find(decision, states.get(cid), (), False)[1]
    sends = [(r.at_us, r.channel) for c, r in mine.items() if c != campaign_id and r.marketing]
    return explainer.find(decision, states.get(cid), sends, campaign_id in mine)[1]


def explained(decisions: list[Decision], texts: list[str | None]) -> list[Decision]:
    """The decisions as :class:`AnswerDecision` with ``explain`` (``texts`` from the log's rows)."""
    made: dict[tuple[str, str | None], Explanation] = {}  # few distinct explanations per call
    out: list[Decision] = []
    for d, text in zip(decisions, texts, strict=True):
        key = (d.reason, text)
        explanation = made.get(key)
        if explanation is None:
            explanation = made[key] = (
                Explanation(rule=d.reason) if text is None else msgspec.json.decode(text, type=Explanation)
            )
        out.append(AnswerDecision(d.customer_id, d.verdict, d.reason, d.channel, d.not_before, explanation))
    return out


def _groups(batch: list[_Ask]) -> list[list[_Ask]]:
    """Consecutive asks of one campaign at one instant over disjoint ids, decided as one: the engine's
    per-call work (local times per zone, rule 8 per zone and window) is then done once for all of them,
    and nothing changes, since a customer's decision depends only on its own reservations."""
    groups: list[list[_Ask]] = []
    seen: set[str] = set()
    for ask in batch:
        last = groups[-1] if groups else None
        if (
            last is not None
            and last[0].campaign_id == ask.campaign_id
            and last[0].at == ask.at
            and seen.isdisjoint(ask.ids)
        ):
            last.append(ask)
            seen.update(ask.ids)
        else:
            groups.append([ask])
            seen = set(ask.ids)
    return groups


def summarise(decisions: list[Decision]) -> Summary:
    if len(decisions) == 1:  # the single-id ask (the gate's most frequent call): no Counters to build
        d = decisions[0]
        v = d.verdict
        return Summary(
            allow=int(v == "allow"), defer=int(v == "defer"), deny=int(v == "deny"), by_reason={d.reason: 1}
        )
    verdicts = Counter(d.verdict for d in decisions)
    reasons: Counter[str] = Counter(d.reason for d in decisions)
    return Summary(
        allow=verdicts["allow"], defer=verdicts["defer"], deny=verdicts["deny"], by_reason=dict(reasons)
    )


async def approve(
    rt: Runtime, batcher: GateBatcher, request: ApprovalRequest, on_decided: OnDecided | None = None
) -> ApprovalAnswer:
    ids = request.customer_ids
    check_ids(ids)
    if rt.policy is None:
        raise RuntimeError("no policy loaded")
    check_instant(request.at, "at")
    at = (request.at or rt.now()).astimezone(UTC)
    if request.dry_run:
        view = await campaign_view(rt, request.campaign_id)
        inputs = await rt.store.gate_inputs(
            ids, view.topic, request.campaign_id, reservations_since(rt.policy, at)
        )
        decisions = decide_recipients(rt, view, ids, at, inputs)
        if request.explain:
            explainer = Explainer(view, at, rt.policy.policy)
            texts = [
                explain_text_of(explainer, d, inputs.states, inputs.held, view.campaign_id)
                if d.reason in EXPLAINED_REASONS
                else None
                for d in decisions
            ]
            decisions = explained(decisions, texts)
    else:
        view, decisions = await batcher.submit(
            request.campaign_id, ids, at, on_decided, explain=request.explain
        )
    return ApprovalAnswer(
        campaign_id=request.campaign_id,
        policy_version=rt.policy.version,
        evaluated_at=format_instant(at),
        decisions=decisions,
        summary=summarise(decisions),
    )


async def decision_log(rt: Runtime, customer_id: str, campaign_id: str | None) -> list[dict[str, object]]:
    rows = await rt.store.decision_log(customer_id, campaign_id)
    if not rows and await rt.store.get_customer(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    return [log_entry(row) for row in rows]


_LOG_KEYS = ("campaign_id", "at", "verdict", "reason", "channel", "not_before", "policy_version")


def log_entry(row: DecisionRow) -> dict[str, object]:
    """A decision-log row as the API lists it: API.md's fields and the ``explain`` kept with it."""
    entry: dict[str, object] = dict(zip(_LOG_KEYS, row[1:8], strict=True))
    text = row[9]
    entry["explain"] = {"rule": row[4]} if text is None else msgspec.json.decode(text)
    return entry
