"""Customers: profiles, preferences (with their ledger events), and erasure."""

from __future__ import annotations

import hashlib
import secrets

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution, preference_changes
from prefcenter.domain.model import (
    NO_PREFERENCES,
    Customer,
    InvalidInput,
    Preferences,
    PreferencesWrite,
    Profile,
    check_customer_id,
    check_preferences,
    check_profile,
    imported_consent_errors,
)
from prefcenter.services.confirmations import queue_sms_opt_in
from prefcenter.services.errors import Forbidden, NotFound, PreconditionFailed
from prefcenter.services.events import append_events
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import lift_unsubscribe
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.customers")


def preferences_etag(preferences: Preferences) -> str:
    """A strong ETag: the hash of the preferences' JSON representation."""
    return '"' + hashlib.sha256(msgspec.json.encode(preferences)).hexdigest()[:32] + '"'


def profile_etag(profile: Profile) -> str:
    """A strong ETag of ``GET /v1/customers/{id}``: the hash of the profile's JSON representation."""
    return '"' + hashlib.sha256(msgspec.json.encode(profile)).hexdigest()[:32] + '"'


def etag_matches(if_match: str, current: str) -> bool:
    """RFC 9110 If-Match with strong comparison: ``*`` or a list of entity tags."""
    candidates = [part.strip() for part in if_match.split(",")]
    return any(c == "*" or c == current for c in candidates)


async def put_customer(
    rt: Runtime, customer_id: str, profile: Profile, *, if_match: str | None = None
) -> tuple[Customer, bool]:
    """Create or replace a profile; preferences are never changed by it. Returns (customer, created).

    With ``if_match`` (RFC 9110) the write happens only if the stored profile's ETag matches (``*``:
    any stored profile); else, or when there is no customer to match, 412 and nothing changes.
    """
    check_customer_id(customer_id)
    profile = check_profile(profile)
    refs: dict[str, str] = {ch: rt.pseudonyms.address_ref(ch, addr) for ch, addr in profile.contacts.items()}
    now = rt.now()
    async with rt.store.write() as tx:
        existing = await tx.get_customer(customer_id)
        if if_match is not None and (
            existing is None or not etag_matches(if_match, profile_etag(existing.profile))
        ):
            raise PreconditionFailed(
                "the profile has changed since that ETag (or there is none); GET it again"
            )
        customer = Customer(
            customer_id=customer_id,
            customer_ref=existing.customer_ref if existing else rt.pseudonyms.customer_ref(customer_id),
            profile=profile,
            preferences=existing.preferences if existing else NO_PREFERENCES,
            created_at=existing.created_at if existing else now,
            updated_at=now,
            # A new person, a new link generation (links of an erased customer with this id stay dead).
            link_gen=existing.link_gen if existing else secrets.token_hex(8),
        )
        await convert_seen(tx, rt, profile.contacts.items())  # v1 suppressions of these addresses
        await tx.put_customer(customer, refs, created=existing is None)
    log.info("customer stored", customer_ref=customer.customer_ref, created=existing is None)
    return customer, existing is None


async def get_customer(rt: Runtime, customer_id: str) -> Customer:
    check_customer_id(customer_id)
    customer = await rt.store.get_customer(customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    return customer


async def write_preferences(
    tx: WriteTx,
    rt: Runtime,
    customer: Customer,
    new: Preferences,
    attribution: Attribution,
    *,
    language: str | None = None,
) -> int:
    """Store ``new`` and append the events the change implies, in the caller's transaction.
    ``language``: the one the notice was shown in (a page's); None: the customer's profile locale.

    Returns the number of events written (0 when nothing changed: then nothing is written at all).
    """
    old = customer.preferences
    changes = preference_changes(
        old.channel,
        old.topics,
        old.quiet_hours,
        old.max_per_week,
        old.paused_until,
        new.channel,
        new.topics,
        new.quiet_hours,
        new.max_per_week,
        new.paused_until,
    )
    if not changes:
        return 0
    # COMPLIANCE edge 11, for every write path (API, and the bulk import when it comes): checked here,
    # where the write is known to grant, before anything is written.
    grants = any(c.action == "grant" for c in changes)
    if errors := imported_consent_errors(attribution.source, attribution.evidence, grants=grants):
        raise InvalidInput(errors, "Imported consent needs its proof.")
    now = rt.now()
    await tx.set_preferences(customer.customer_id, new, now)
    await queue_sms_opt_in(tx, rt, customer, new)  # COMPLIANCE item 26, in this same transaction
    await append_events(
        tx,
        rt,
        changes,
        customer.customer_id,
        customer.customer_ref,
        attribution,
        language=language or customer.profile.locale,
    )
    if new.channel is not None and new.channel != old.channel:
        # a fresh choice of a channel lifts an address-level unsubscribe of it (services/suppressions.py)
        await lift_unsubscribe(tx, rt, customer, new.channel, attribution)
    return len(changes)


async def put_preferences(
    rt: Runtime,
    customer_id: str,
    write: PreferencesWrite,
    *,
    if_match: str | None,
    caller_role: str,
) -> tuple[Preferences, str, int]:
    """Replace a customer's preferences. Returns (preferences, etag, events written)."""
    check_customer_id(customer_id)
    if write.provenance.source == "admin" and caller_role != "admin":
        raise Forbidden("provenance.source 'admin' may only be claimed with an admin key")
    async with rt.store.write() as tx:
        customer = await tx.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        if if_match is not None and not etag_matches(if_match, preferences_etag(customer.preferences)):
            raise PreconditionFailed("the preferences have changed since that ETag; GET them again")
        categories = await tx.topic_categories(write.topics)
        check_preferences(write, {t for t, c in categories.items() if c == "marketing"})
        new = write.preferences()
        p = write.provenance
        count = await write_preferences(
            tx, rt, customer, new, Attribution(p.source, p.actor, p.notice_version, p.evidence)
        )
    log.info("preferences written", customer_ref=customer.customer_ref, events=count, source=p.source)
    return new, preferences_etag(new), count


async def erase_customer(rt: Runtime, customer_id: str, *, api_key_id: int) -> None:
    """GDPR Art. 17: remove the person; the ledger keeps only pseudonymous proof, and still verifies."""
    check_customer_id(customer_id)
    async with rt.store.write() as tx:
        customer = await tx.get_customer(customer_id)
        if customer is None:
            raise NotFound(f"no customer {customer_id!r}")
        prefs = customer.preferences
        # The person's consents and settings end with them: record the withdrawals and resets,
        # pseudonymously, so the ledger alone says that nothing was in force afterwards.
        changes = preference_changes(
            prefs.channel,
            prefs.topics,
            prefs.quiet_hours,
            prefs.max_per_week,
            prefs.paused_until,
            None,
            [],
            None,
            None,
            None,
        )
        await append_events(
            tx,
            rt,
            changes,
            None,
            customer.customer_ref,
            Attribution("erasure", "system", None, {"api_key_id": api_key_id}),
        )
        await tx.erase_customer(customer_id)
    complete = await rt.store.maintenance.compact_after_erasure()
    log.info("customer erased", customer_ref=customer.customer_ref, storage_compacted=complete)
