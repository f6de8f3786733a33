"""``POST /v1/campaigns/{id}/sends``: gate each recipient exactly as an approval and queue what may go.

The queueing happens inside the gate's own transaction (``approve(..., on_decided=queue_rows)``: the
outbox rows are part of the gate's writes), so a reservation and its outbox row are committed together
or not at all. One outbox row per (campaign,
customer): a second send of a queued or sent pair queues nothing more (and is answered like a retried
approval); a pair that was withdrawn, failed or suppressed is queued again when it is allowed now.
"""

from __future__ import annotations

from datetime import datetime

import msgspec
import structlog

from prefcenter.domain.model import CampaignView, Decision
from prefcenter.domain.timewindows import to_us
from prefcenter.services.approvals import ApprovalAnswer, ApprovalRequest, GateBatcher, approve
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import QueueRow

log = structlog.get_logger("prefcenter.sends")


class SendRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    customer_ids: list[str]
    explain: bool = False  # each decision then carries `explain` (API.md "Auditor's answers")


def queue_rows(view: CampaignView, at: datetime, decisions: list[Decision]) -> list[QueueRow]:
    rows: list[QueueRow] = []
    for d in decisions:
        if d.channel is None:
            continue
        if d.verdict == "allow":
            rows.append((view.campaign_id, d.customer_id, d.channel, "queued", to_us(at)))
        elif d.verdict == "defer" and d.not_before is not None:
            rows.append((view.campaign_id, d.customer_id, d.channel, "deferred", to_us(d.not_before)))
    return rows


async def send(rt: Runtime, batcher: GateBatcher, campaign_id: str, request: SendRequest) -> ApprovalAnswer:
    answer = await approve(
        rt,
        batcher,
        ApprovalRequest(
            campaign_id=campaign_id,
            customer_ids=request.customer_ids,
            at=None,
            dry_run=False,
            explain=request.explain,
        ),
        queue_rows,
    )
    log.info("sends gated", campaign_id=campaign_id, recipients=len(request.customer_ids))
    return answer
