"""The auditor's side of the ledger: paging, streamed export, verification and consent receipts."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

import msgspec

from prefcenter.domain.ledger import (
    EVENT_FIELDS,
    ChainVerifier,
    Notice,
    VerifyResult,
    format_at,
    format_instant,
)
from prefcenter.services.customers import get_customer
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import EventFilter

ExportFormat = Literal["jsonl", "csv"]
UNBOUNDED = 2**62
_encode = msgspec.json.encode


def event_filter(
    rt: Runtime, customer_id: str | None, since: datetime | None, until: datetime | None
) -> EventFilter:
    return EventFilter(
        customer_ref=rt.pseudonyms.customer_ref(customer_id) if customer_id is not None else None,
        since=format_at(since) if since is not None else None,
        until=format_at(until) if until is not None else None,
    )


async def events_page(
    rt: Runtime, flt: EventFilter, *, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page in seq order and the ``after_seq`` of the next page (None when no more events)."""
    rows = await rt.store.consent_events(flt, after_seq=after_seq, limit=limit + 1)
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1]["seq"]
    return rows, None


def _csv_cell(name: str, value: Any) -> str:
    """One CSV cell; a key the event's shape lacks (``notice_sha256`` before migration 0014) is empty,
    like null."""
    if name in ("value", "evidence"):
        return _encode(value).decode()
    return "" if value is None else str(value)


async def export_events(rt: Runtime, flt: EventFilter, fmt: ExportFormat) -> AsyncIterator[bytes]:
    """The events as JSONL or CSV, in chunks: constant memory for any ledger size.

    The upper bound is the head at the start, so an export is a consistent prefix of the chain.
    """
    head_seq, _ = await rt.store.ledger_head()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    if fmt == "csv":
        writer.writerow(EVENT_FIELDS)
        yield buffer.getvalue().encode()
    lines: list[bytes] = []
    async for event in rt.store.iter_consent_events(flt, up_to_seq=head_seq):
        if fmt == "jsonl":
            lines.append(_encode(event) + b"\n")
        else:
            buffer.seek(0)
            buffer.truncate()
            writer.writerow([_csv_cell(name, event.get(name)) for name in EVENT_FIELDS])
            lines.append(buffer.getvalue().encode())
        if len(lines) >= 1000:
            yield b"".join(lines)
            lines.clear()
    if lines:
        yield b"".join(lines)


async def verify_ledger(rt: Runtime, head: str | None = None) -> VerifyResult:
    """Recompute the whole chain from the stored events (constant memory) and compare with the head."""
    verifier = ChainVerifier(rt.pseudonyms.customer_ref)
    if head is not None:
        verifier.want_head(head)
    while True:
        fed = 0
        async for event in rt.store.iter_consent_events(
            EventFilter(), after_seq=verifier.last_seq, up_to_seq=UNBOUNDED
        ):
            fed += 1
            if not verifier.feed(event):
                return verifier.finish(None, None)
        head_seq, head_hash = await rt.store.ledger_head()
        # Events appended while we read: keep going until the head and the events agree.
        if fed == 0 or head_seq <= verifier.last_seq:
            return verifier.finish(head_seq, head_hash)


# ---------------------------------------------------------------------------------------------------
# consent receipts (ISO/IEC TS 27560 field names, as the W3C DPV guide labels them)


async def _what_they_were_told(
    rt: Runtime, event: dict[str, Any], notices: dict[str, Notice | None]
) -> tuple[str | None, str | None]:
    """(language, sha256) of the notice text an event's person was shown: the registered text whose
    hash the event carries; (None, None) for an event without one."""
    digest = event.get("notice_sha256")
    version = event.get("notice_version")
    if digest is None or version is None:
        return None, None
    if version not in notices:
        notices[version] = await rt.store.get_notice(version)
    notice = notices[version]
    tags = [tag for tag, h in (notice.sha256 if notice else {}).items() if h == digest]
    return (tags[0] if tags else None), digest


RECEIPT_SCHEMA = "prefcenter-consent-receipt/1 (ISO/IEC TS 27560:2023 fields, W3C DPV labels)"


def controller_party(rt: Runtime) -> dict[str, Any]:
    """The receipt's PII controller (ISO/IEC TS 27560 party) from PREFCENTER_CONTROLLER_NAME,
    PREFCENTER_POSTAL_ADDRESS and PREFCENTER_PRIVACY_URL; the privacy notice is the contact point.
    In development an unset address or URL is null (production requires all three)."""
    controller = rt.settings.controller
    return {
        "party_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"prefcenter:controller:{controller.name}")),
        "party_name": controller.name,
        "party_address": controller.postal_address,
        "party_contact": controller.privacy_url,
        "party_url": controller.privacy_url,
        "party_type": "dpv:DataController",
    }


async def consent_receipt(rt: Runtime, customer_id: str) -> dict[str, Any]:
    """The customer's current consents, each with when and how it was given (its latest grant event)."""
    customer = await get_customer(rt, customer_id)
    prefs = customer.preferences
    latest_grant: dict[str, dict[str, Any]] = {}
    head_seq, head_hash = await rt.store.ledger_head()
    async for row in rt.store.iter_consent_events(
        EventFilter(customer_ref=customer.customer_ref), up_to_seq=head_seq
    ):
        if row["action"] == "grant":
            latest_grant[row["subject"]] = row
    subjects = ([f"channel:{prefs.channel}"] if prefs.channel else []) + [f"topic:{t}" for t in prefs.topics]
    topics = await rt.store.list_topics()
    notices: dict[str, Notice | None] = {}
    consents = []
    for subject in subjects:
        grant = latest_grant.get(subject)
        kind, _, name = subject.partition(":")
        purpose = f"Direct marketing by {name}" if kind == "channel" else f"Direct marketing about {name}"
        topic = topics.get(name) if kind == "topic" else None
        event: dict[str, Any] = grant or {}
        told = await _what_they_were_told(rt, event, notices)
        consents.append(
            {
                "purpose": purpose,
                "purpose_type": "dpv:DirectMarketing",
                "lawful_basis": "dpv:Consent",
                "processing_method": f"{kind}:{name}",
                "pii_information": ["dpv:Contact"] if kind == "channel" else ["dpv:Preference"],
                "topic_names": topic.names if topic else None,
                "privacy_notice": event["notice_version"] if grant else None,
                # COMPLIANCE item 16, what they were told: the text's language and hash (GET /v1/notices)
                "privacy_notice_language": told[0],
                "privacy_notice_sha256": told[1],
                "collection_method": event["source"] if grant else None,
                "entity_id": event["actor"] if grant else None,
                "evidence": event["evidence"] if grant else None,
                "event": {
                    "event_time": event["at"] if grant else None,
                    "event_type": "dpv:ConsentGiven",
                    "event_state": "dpv:ConsentGiven",
                    "validity_duration": None,
                    "ledger_seq": event["seq"] if grant else None,
                    "ledger_hash": event["hash"] if grant else None,
                },
            }
        )
    settings = {
        "quiet_hours": msgspec.to_builtins(prefs.quiet_hours),
        "max_per_week": prefs.max_per_week,
        "paused_until": format_instant(prefs.paused_until) if prefs.paused_until else None,
    }
    return {
        "schema_version": RECEIPT_SCHEMA,
        "record_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"prefcenter:{customer.customer_ref}")),
        "receipt_id": str(uuid.uuid4()),
        "receipt_time": format_instant(rt.now()),
        "pii_principal_id": customer.customer_ref,
        "customer_id": customer.customer_id,
        "language": customer.profile.locale,
        "jurisdiction": customer.profile.country,
        "pii_controllers": [controller_party(rt)],
        "withdrawal_method": f"{rt.settings.public_url} preference page link in every message, "
        "one-click unsubscribe (RFC 8058), SMS STOP",
        "storage_locations": ["prefcenter database"],
        "retention_period": "consent events: kept for the life of the ledger (pseudonymous after erasure)",
        "consents": consents,
        "settings": settings,
        "ledger_head": {"seq": head_seq, "hash": head_hash},
    }
