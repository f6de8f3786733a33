"""One trace per message (issue 13, API.md "Auditor's answers"): everything prefcenter knows about one
campaign's message to one customer, in one answer.

- ``decisions``: the decision-log rows of this (campaign, customer) in log order, each with its ``kind``
  (approval, send, regate) and ``explain`` (a NULL column is ``{"rule": reason}``, as
  :func:`prefcenter.services.approvals.log_entry` renders it);
- ``message``: the outbox row's status and attempts, or null, and its history: ``queued`` / ``deferred``
  derived from the decision-log rows of kind ``send`` (the gate's hot path writes no history of its
  own), then what the dispatcher wrote (migration 0020) in the transactions that committed the attempt
  and the outcome: ``handoff``, ``accepted`` / ``temporary_failure`` / ``permanent_failure`` (the reply
  code and the redacted reply text), ``sent``, ``failed``, ``withdrawn`` / ``suppressed``, ``deferred``;
- ``consent``: the customer's ledger events (as the export gives them) up to the last decision's
  instant (all of them without a decision);
- ``inbound``: the suppression events of the customer's current addresses (by keyed ref, whoever they
  were written for) and the customer's own events from a bounce, a complaint or an SMS keyword, in seq
  order, each once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import msgspec

from prefcenter.domain.model import check_customer_id
from prefcenter.services.approvals import log_entry
from prefcenter.services.campaigns import check_campaign_id
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import DecisionRow
from prefcenter.store.trace import HistoryEntry  # the stored entries, answered as they are

#: The ledger sources that are something coming back from outside (API.md "inbound").
INBOUND_SOURCES = frozenset({"bounce", "complaint", "sms_keyword"})


class TraceMessage(msgspec.Struct, frozen=True):
    status: str
    attempts: int
    history: list[HistoryEntry]


class TraceDecision(msgspec.Struct, frozen=True):
    at: str
    kind: str
    verdict: str
    reason: str
    channel: str | None
    not_before: str | None
    policy_version: str
    explain: dict[str, Any]


class Trace(msgspec.Struct, frozen=True):
    campaign_id: str
    customer_id: str
    decisions: list[TraceDecision]
    message: TraceMessage | None
    consent: list[dict[str, Any]]
    inbound: list[dict[str, Any]]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _decision(row: DecisionRow) -> TraceDecision:
    entry = log_entry(row)
    return TraceDecision(
        at=row[2],
        kind=row[8],
        verdict=row[3],
        reason=row[4],
        channel=row[5],
        not_before=row[6],
        policy_version=row[7],
        explain=cast(dict[str, Any], entry["explain"]),
    )


def _queued(rows: list[DecisionRow]) -> list[HistoryEntry]:
    """What the send's decisions did to the message: queued (allow) or deferred (defer, not_before)."""
    items: list[HistoryEntry] = []
    for row in rows:
        if row[8] != "send":
            continue
        if row[3] == "allow":
            items.append(HistoryEntry(row[2], "queued", {"channel": row[5]}))
        elif row[3] == "defer":
            items.append(HistoryEntry(row[2], "deferred", {"reason": row[4], "not_before": row[6]}))
    return items


def _current_person(ledger: list[dict[str, Any]], exists: bool) -> list[dict[str, Any]]:
    """A customer re-created after an erasure has the erased person's pseudonym: their trace starts
    after the last erasure (the erased person's events are not theirs)."""
    if not exists:
        return ledger
    last = max((i for i, e in enumerate(ledger) if e["source"] == "erasure"), default=-1)
    return ledger[last + 1 :]


async def trace(rt: Runtime, campaign_id: str, customer_id: str) -> Trace:
    """The trace of ``campaign_id``'s message to ``customer_id``; 404 for an unknown campaign, or for a
    customer prefcenter has neither a record nor a decision nor a message of."""
    check_campaign_id(campaign_id)
    check_customer_id(customer_id)
    if await rt.store.get_campaign(campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    store = rt.store
    customer = await store.get_customer(customer_id)
    rows = await store.decision_log(customer_id, campaign_id)
    stored = await store.traced_message(campaign_id, customer_id)
    if customer is None and not rows and stored is None:
        raise NotFound(f"no customer {customer_id!r}")
    customer_ref = customer.customer_ref if customer is not None else rt.pseudonyms.customer_ref(customer_id)

    message = None
    if stored is not None:
        history = [*_queued(rows), *stored.history]
        history.sort(key=lambda h: _instant(h.at))  # stable: same-instant entries keep their order
        message = TraceMessage(stored.status, stored.attempts, history)

    ledger = _current_person(await store.customer_ledger(customer_ref), customer is not None)
    if rows:
        last = max(_instant(row[2]) for row in rows)
        consent = [e for e in ledger if _instant(e["at"]) <= last]
    else:
        consent = ledger

    refs: list[str] = []
    if customer is not None:
        refs = sorted({rt.pseudonyms.address_ref(ch, addr) for ch, addr in customer.profile.contacts.items()})
    # what came back about these addresses: the address-level events (no customer) and this customer's
    # own; never another holder's events (their id and pseudonym are theirs)
    by_seq = {
        e["seq"]: e
        for e in await store.address_suppression_events(refs)
        if e["source"] in INBOUND_SOURCES and e["customer_ref"] in (None, customer_ref)
    }
    by_seq.update({e["seq"]: e for e in ledger if e["source"] in INBOUND_SOURCES})
    inbound = [by_seq[seq] for seq in sorted(by_seq)]

    return Trace(
        campaign_id=campaign_id,
        customer_id=customer_id,
        decisions=[_decision(row) for row in rows],
        message=message,
        consent=consent,
        inbound=inbound,
    )
