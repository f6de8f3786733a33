"""Appending consent events from the services: one place that stamps each event's ``notice_sha256``
and counts it in the metrics (the store only chains and writes)."""

from __future__ import annotations

from prefcenter.domain.ledger import Attribution, Change
from prefcenter.services.notices import with_notice_sha256
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import WriteTx


async def append_events(
    tx: WriteTx,
    rt: Runtime,
    changes: list[Change],
    customer_id: str | None,
    customer_ref: str | None,
    attribution: Attribution,
    *,
    language: str | None = None,
) -> None:
    """Append the events of ``changes``. When ``attribution.notice_version`` is a registered notice,
    each carries ``notice_sha256``: the hash of its text in ``language`` (None: the customer's profile
    locale), else null (COMPLIANCE items 15, 16)."""
    attribution = await with_notice_sha256(tx, attribution, customer_id, language)
    events = await tx.append_events(
        changes, customer_id=customer_id, customer_ref=customer_ref, attribution=attribution, at=rt.now()
    )
    for event in events:
        rt.metrics.consent_events.labels(event.source, event.action).inc()
