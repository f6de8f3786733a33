"""Campaigns: stored as given, checked at PUT; their counts come from the decision log (and outbox)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import msgspec
import structlog

from prefcenter.domain.campaigns import Campaign, check_campaign
from prefcenter.domain.model import check_instant, check_topic_id
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime

log = structlog.get_logger("prefcenter.campaigns")


def check_campaign_id(campaign_id: str) -> None:
    check_topic_id(campaign_id, "campaign_id")  # the same id grammar as topics (API.md)


def in_utc(campaign: Campaign) -> Campaign:
    """The campaign as stored and answered: ``send_by`` in UTC (any offset is accepted on the way in,
    times go out with ``Z``)."""
    if campaign.send_by is None:
        return campaign
    return msgspec.structs.replace(campaign, send_by=campaign.send_by.astimezone(UTC))


async def put_campaign(rt: Runtime, campaign_id: str, campaign: Campaign) -> bool:
    check_campaign_id(campaign_id)
    check_instant(campaign.send_by, "send_by")
    campaign = in_utc(campaign)
    async with rt.store.write() as tx:
        check_campaign(campaign, await tx.get_topic(campaign.topic) is not None)
        created = await tx.put_campaign(campaign_id, campaign, rt.now())
    log.info("campaign stored", campaign_id=campaign_id, created=created)
    return created


async def get_campaign(rt: Runtime, campaign_id: str) -> Campaign:
    check_campaign_id(campaign_id)
    campaign = await rt.store.get_campaign(campaign_id)
    if campaign is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    return campaign


#: The outbox statuses, as campaign counts and the message lists (API.md "Message status") name them.
OUTBOX_STATUSES = ("queued", "deferred", "sent", "failed", "suppressed", "withdrawn")


async def campaign_with_counts(rt: Runtime, campaign_id: str) -> dict[str, Any]:
    campaign = await get_campaign(rt, campaign_id)
    body: dict[str, Any] = msgspec.to_builtins(campaign)
    outbox = await rt.store.outbox_counts(campaign_id)
    counts: dict[str, Any] = {status: outbox.get(status, 0) for status in OUTBOX_STATUSES}
    counts["denied"] = await rt.store.decision_counts(campaign_id)
    body["counts"] = counts
    return body
