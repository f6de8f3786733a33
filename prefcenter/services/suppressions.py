"""The suppression list: addresses (as keyed hashes) nothing may be sent to, with their ledger events.

A suppression is hard (scope ``all``: bounce, complaint, STOP, admin; nothing goes to the address) or
marketing-only (scope ``marketing``, migration 0012: an address-level unsubscribe, COMPLIANCE item 27 and
edge 13, or the voice side of a texted STOP; marketing is denied ``suppressed``, transactional messages
still go). One row per (channel, address): a hard suppression of an address with a marketing-only one
upgrades it; a marketing-only one never downgrades a hard one.

Every change is a ledger event ``{"subject": "suppression:<channel>", "action": "update", "value":
{"suppressed": bool, "address_ref": ..., "reason": ...}}`` (with ``"scope": "marketing"`` for a
marketing-only one), one per customer holding that address on that channel (or one without a customer
when nobody does: a STOP from an unknown number).

A marketing-only ``unsubscribe`` suppression is lifted by a fresh choice of that channel: a preferences
write (API, import, page) that makes a customer's channel the suppressed one (:func:`lift_unsubscribe`,
called by :func:`prefcenter.services.customers.write_preferences`), or an admin DELETE.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution, Change, Source
from prefcenter.domain.model import CHANNELS, Channel, Customer, FieldError, InvalidInput
from prefcenter.services.events import append_events
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.suppressions")

UNSUBSCRIBE = "unsubscribe"  # the reason of an address-level unsubscribe (marketing-only)
OPT_IN = "opt_in"  # the reason of its lift by a fresh choice of the channel
Scope = Literal["all", "marketing"]


class SuppressionItem(msgspec.Struct, frozen=True):
    """One suppressed address of ``GET /v1/suppressions``."""

    address_ref: Annotated[str, msgspec.Meta(description="the keyed hash of the address (never the address)")]
    channel: Channel
    reason: Annotated[
        str,
        msgspec.Meta(
            description="why: bounce, complaint, sms_keyword, admin, or unsubscribe (an address-level "
            "unsubscribe: a one-click or the page's stop all marketing)",
            examples=["unsubscribe"],
        ),
    ]
    since: Annotated[str, msgspec.Meta(description="when it took effect (RFC 3339, UTC)")]
    scope: Annotated[
        Scope,
        msgspec.Meta(
            description="all: nothing is sent to the address; marketing: marketing is denied, "
            "transactional messages still go"
        ),
    ] = "all"


class SuppressionList(msgspec.Struct, frozen=True):
    suppressions: list[SuppressionItem]


async def _events(
    tx: WriteTx, rt: Runtime, channel: str, ref: str, value: dict[str, Any], attribution: Attribution
) -> list[str]:
    change = Change("update", f"suppression:{channel}", value)
    customers = await tx.customers_with_address(channel, ref)
    if not customers:
        await append_events(tx, rt, [change], None, None, attribution)
    found = await tx.get_customers(customers)
    for cid in customers:
        if (customer := found.get(cid)) is not None:
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
    *,
    marketing_only: bool = False,
) -> tuple[bool, list[str]]:
    """Suppress in the caller's transaction (``marketing_only``: scope ``marketing``). Returns (newly
    suppressed, customers with that address). A hard suppression of an address with a marketing-only
    one upgrades it (reason and scope change, "newly suppressed", events as for a new one); otherwise an
    address already suppressed writes no event (a marketing-only one never downgrades a hard one)."""
    scope = "marketing" if marketing_only else "all"
    added = await tx.add_suppression(channel, address_ref, reason, rt.now(), scope=scope)
    if not added:
        return False, await tx.customers_with_address(channel, address_ref)
    value: dict[str, Any] = {"suppressed": True, "address_ref": address_ref, "reason": reason}
    if marketing_only:
        value["scope"] = "marketing"
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
    *,
    only_reason: str | None = None,
) -> bool:
    """Lift in the caller's transaction, whatever its scope (only one made for ``only_reason``, when
    given); False (and no event) when there was no such suppression."""
    scope = await tx.remove_suppression(channel, address_ref, reason=only_reason)
    if scope is not None:
        value: dict[str, Any] = {"suppressed": False, "address_ref": address_ref, "reason": reason}
        if scope == "marketing":
            value["scope"] = "marketing"
        attribution = Attribution(source, "system", None, evidence or {})
        await _events(tx, rt, channel, address_ref, value, attribution)
    return scope is not None


async def lift_unsubscribe(
    tx: WriteTx, rt: Runtime, customer: Customer, channel: str, attribution: Attribution
) -> bool:
    """A customer's channel has just become ``channel`` (a fresh consent to it): lift a marketing-only
    ``unsubscribe`` suppression of their address on it, in the caller's transaction, with events
    attributed to that write's source (actor ``system``, evidence naming the customer and the grant).
    Hard suppressions, and other marketing-only ones (a texted STOP's voice side), stay. False when
    there was nothing to lift."""
    address = customer.profile.contacts.get(channel)
    if address is None:
        return False
    ref = rt.pseudonyms.address_ref(channel, address)
    if await tx.remove_suppression(channel, ref, scope="marketing", reason=UNSUBSCRIBE) is None:
        return False
    value = {"suppressed": False, "address_ref": ref, "reason": OPT_IN, "scope": "marketing"}
    evidence = {"customer_ref": customer.customer_ref, "granted": f"channel:{channel}"}
    await _events(tx, rt, channel, ref, value, Attribution(attribution.source, "system", None, evidence))
    log.info("unsubscribe lifted by a fresh choice of the channel", channel=channel, address_ref=ref)
    return True


def check_channel(channel: str) -> None:
    if channel not in CHANNELS:
        raise InvalidInput([FieldError("channel", f"must be one of {', '.join(CHANNELS)}")])


async def list_suppressions(rt: Runtime, channel: str | None) -> list[SuppressionItem]:
    if channel is not None:
        check_channel(channel)
    rows = await rt.store.list_suppressions(channel)
    return [
        SuppressionItem(r.address_ref, cast(Channel, r.channel), r.reason, r.since, cast(Scope, r.scope))
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
