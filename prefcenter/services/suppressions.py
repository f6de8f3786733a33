"""The suppression list: addresses (as keyed hashes) nothing may be sent to, with their ledger events.

Every change is a ledger event ``{"subject": "suppression:<channel>", "action": "update", "value":
{"suppressed": bool, "address_ref": ..., "reason": ...}}``, one per customer holding that address on
that channel (or one without a customer when nobody does: a STOP from an unknown number).
"""

from __future__ import annotations

from typing import Any

import structlog

from prefcenter.domain.ledger import Attribution, Change, Source
from prefcenter.domain.model import CHANNELS, FieldError, InvalidInput
from prefcenter.services.customers import append_events
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.suppressions")


async def _events(
    tx: WriteTx, rt: Runtime, channel: str, ref: str, value: dict[str, Any], attribution: Attribution
) -> list[str]:
    change = Change("update", f"suppression:{channel}", value)
    customers = await tx.customers_with_address(channel, ref)
    if not customers:
        await append_events(tx, rt, [change], None, None, attribution)
    for cid in customers:
        customer = await tx.get_customer(cid)
        if customer is not None:
            await append_events(tx, rt, [change], cid, customer.customer_ref, attribution)
    return customers


async def suppress(
    tx: WriteTx,
    rt: Runtime,
    channel: str,
    address_ref: str,
    reason: str,
    source: Source,
    evidence: dict[str, Any] | None = None,
) -> tuple[bool, list[str]]:
    """Suppress in the caller's transaction. Returns (newly suppressed, customers with that address);
    an address already suppressed writes no event."""
    added = await tx.add_suppression(channel, address_ref, reason, rt.now())
    if not added:
        return False, await tx.customers_with_address(channel, address_ref)
    value = {"suppressed": True, "address_ref": address_ref, "reason": reason}
    customers = await _events(
        tx, rt, channel, address_ref, value, Attribution(source, "system", None, evidence or {})
    )
    return True, customers


async def lift(
    tx: WriteTx,
    rt: Runtime,
    channel: str,
    address_ref: str,
    reason: str,
    source: Source,
    evidence: dict[str, Any] | None = None,
) -> bool:
    """Lift in the caller's transaction; False (and no event) when the address was not suppressed."""
    removed = await tx.remove_suppression(channel, address_ref)
    if removed:
        value = {"suppressed": False, "address_ref": address_ref, "reason": reason}
        attribution = Attribution(source, "system", None, evidence or {})
        await _events(tx, rt, channel, address_ref, value, attribution)
    return removed


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InvalidInput([FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])


async def list_suppressions(rt: Runtime, channel: str | None) -> list[dict[str, str]]:
    if channel is not None:
        check_channel(channel)
    rows = await rt.store.list_suppressions(channel)
    return [
        {"address_ref": r.address_ref, "channel": r.channel, "reason": r.reason, "since": r.since}
        for r in rows
    ]


async def admin_put(rt: Runtime, channel: str, address: str, api_key_id: int) -> bool:
    check_channel(channel)
    if not address or len(address) > 320:
        raise InvalidInput([FieldError("address", "1-320 characters")])
    ref = rt.pseudonyms.address_ref(channel, address)
    async with rt.store.write() as tx:
        await convert_seen(tx, rt, [(channel, address)])  # a v1 suppression of it is this one
        added, _ = await suppress(tx, rt, channel, ref, "admin", "admin", {"api_key_id": api_key_id})
    log.info("suppression added by admin", channel=channel, address_ref=ref, added=added)
    return added


async def admin_delete(rt: Runtime, channel: str, address: str, api_key_id: int) -> bool:
    check_channel(channel)
    ref = rt.pseudonyms.address_ref(channel, address)
    async with rt.store.write() as tx:
        await convert_seen(tx, rt, [(channel, address)])  # so a v1 suppression of it is lifted too
        removed = await lift(tx, rt, channel, ref, "admin", "admin", {"api_key_id": api_key_id})
    log.info("suppression lifted by admin", channel=channel, address_ref=ref, removed=removed)
    return removed
