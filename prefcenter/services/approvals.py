"""The send-approval gate: batched loads, the pure engine, one write of reservations and decision log.

A real call runs inside one writing transaction (``BEGIN IMMEDIATE``): the recipients' states and
reservations are read, decided and reserved while no other writer can move, so concurrent approvals
can never together exceed a cap. A dry run reads one snapshot and writes nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
import structlog

from prefcenter.domain.engine import CampaignView, Decision, decide_batch
from prefcenter.domain.ledger import format_instant
from prefcenter.domain.model import CUSTOMER_ID_RE, AwareDatetime, FieldError, InvalidInput
from prefcenter.domain.policy import LoadedPolicy
from prefcenter.services.campaigns import get_campaign
from prefcenter.services.errors import NotFound, PayloadTooLarge
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import DecisionRow, GateInput

log = structlog.get_logger("prefcenter.approvals")

MAX_IDS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class ApprovalRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    campaign_id: Annotated[str, msgspec.Meta(max_length=64)]
    customer_ids: list[str]
    at: AwareDatetime | None = None
    dry_run: bool = False


class Summary(msgspec.Struct, frozen=True):
    allow: int
    defer: int
    deny: int
    by_reason: dict[str, int]


class ApprovalAnswer(msgspec.Struct, frozen=True):
    campaign_id: str
    policy_version: str
    evaluated_at: str
    decisions: list[Decision]
    summary: Summary


def check_ids(ids: Sequence[str]) -> None:
    if len(ids) > MAX_IDS:
        raise PayloadTooLarge(f"at most {MAX_IDS} customer_ids per call (got {len(ids)})")
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


def to_us(moment: datetime) -> int:
    return (moment - _EPOCH) // _US


def _decide(
    ids: list[str], inputs: dict[str, GateInput], view: CampaignView, at: datetime, policy: LoadedPolicy
) -> list[Decision]:
    items = []
    for cid in ids:
        g = inputs.get(cid)
        items.append((cid, None, ()) if g is None else (cid, g.state, g.sends))
    retries = {cid for cid, g in inputs.items() if g.own is not None}
    return decide_batch(items, view, at, policy.policy, retries=retries)


def summarise(decisions: list[Decision]) -> Summary:
    verdicts = Counter(d.verdict for d in decisions)
    reasons: Counter[str] = Counter(d.reason for d in decisions)
    return Summary(
        allow=verdicts["allow"], defer=verdicts["defer"], deny=verdicts["deny"], by_reason=dict(reasons)
    )


async def approve(rt: Runtime, request: ApprovalRequest) -> ApprovalAnswer:
    ids = request.customer_ids
    check_ids(ids)
    policy = rt.policy
    if policy is None:
        raise RuntimeError("no policy loaded")
    campaign = await get_campaign(rt, request.campaign_id)
    topic = await rt.store.get_topic(campaign.topic)
    if topic is None:  # pragma: no cover - a campaign's topic cannot be deleted (409)
        raise NotFound(f"campaign topic {campaign.topic!r} is gone")
    view = CampaignView(
        campaign_id=request.campaign_id,
        topic=campaign.topic,
        category=topic.category,
        channels=tuple(campaign.channels),
        send_by=campaign.send_by,
    )
    at = (request.at or rt.now()).astimezone(UTC)
    if request.dry_run:
        inputs = await rt.store.gate_inputs(ids, campaign.topic, request.campaign_id)
        decisions = _decide(ids, inputs, view, at, policy)
    else:
        at_text, at_us = format_instant(at), to_us(at)
        marketing = topic.category == "marketing"
        async with rt.store.write() as tx:
            inputs = await tx.gate_inputs(ids, campaign.topic, request.campaign_id)
            decisions = _decide(ids, inputs, view, at, policy)
            reserve: list[tuple[str, int, str, bool]] = []
            release: list[str] = []
            rows: list[DecisionRow] = []
            for d in decisions:
                retry = (g := inputs.get(d.customer_id)) is not None and g.own is not None
                if d.verdict == "allow" and not retry:
                    reserve.append((d.customer_id, at_us, d.channel or "", marketing))
                elif d.verdict == "deny" and retry:
                    release.append(d.customer_id)
                rows.append(
                    (
                        d.customer_id,
                        request.campaign_id,
                        at_text,
                        d.verdict,
                        d.reason,
                        d.channel,
                        format_instant(d.not_before) if d.not_before else None,
                        policy.version,
                    )
                )
            await tx.record_gate(request.campaign_id, reserve, release, rows)
        for (verdict, reason), n in Counter((d.verdict, d.reason) for d in decisions).items():
            rt.metrics.decisions.labels(verdict, reason).inc(n)
        log.info(
            "approvals decided",
            campaign_id=request.campaign_id,
            recipients=len(ids),
            reserved=len(reserve),
            released=len(release),
        )
    return ApprovalAnswer(
        campaign_id=request.campaign_id,
        policy_version=policy.version,
        evaluated_at=format_instant(at),
        decisions=decisions,
        summary=summarise(decisions),
    )


async def decision_log(rt: Runtime, customer_id: str, campaign_id: str | None) -> list[dict[str, object]]:
    rows = await rt.store.decision_log(customer_id, campaign_id)
    if not rows and await rt.store.get_customer(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    keys = ("campaign_id", "at", "verdict", "reason", "channel", "not_before", "policy_version")
    return [dict(zip(keys, row[1:], strict=True)) for row in rows]
