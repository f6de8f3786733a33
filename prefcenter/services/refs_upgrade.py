"""Address refs v2: the upgrade of the refs stored before migration 0010 (issue 9, item 10).

Address pseudonyms now have a key of their own (``domain/pseudonyms.py``); the rows written before
migration 0010 hold v1 refs, and the migration records which (``address_refs_v1``: the v1 refs of
suppressions and review texts; ``address_refs_upgrade``: whether contacts still hold v1 refs). SQL cannot
compute a v2 ref (it needs the secret key), so:

- :func:`upgrade_address_refs` runs once after the migrations at every start (``serve``, the CLI): in ONE
  transaction it gives each v1 contact its v2 ref (from its plain address), and turns every v1
  suppression or review text whose address a contact holds into a v2 one, so the gate never sees a
  contact without its suppression. Later runs find nothing to do.
- A v1 suppression of an address nobody holds (an erased customer's complaint, a STOP from an unknown
  number) cannot be recomputed: it stays, listed with its stored ref, and :func:`convert_seen` turns it
  into a v2 one the first time its address is seen in plain text again (a customer PUT with it, an
  inbound SMS or email event, an admin PUT or DELETE), in that write's own transaction and before
  anything reads the suppression.

Nothing writes a v1 row after migration 0010, so once a store holds none it is remembered for the
process and :func:`convert_seen` costs nothing (a fresh database never holds any). Ledger events are
immutable: those written before the upgrade keep their v1 refs.

Migration 0012 (COMPLIANCE edge 13) compares an email's domain as IDNA: the ref of an address with a
non-ASCII domain changed. The same start-up step re-keys such contacts (``address_refs_idna`` marks
whether any may exist) and moves the suppressions and review texts of their old refs to the new ones in
the same transaction; a suppression under an old ref nobody holds is moved by :func:`convert_seen` when
its address is seen again (only addresses with a non-ASCII domain cost a lookup). The step also fills
``customers.phone_places`` (where each phone number is registered, for the gate) when the stored ones
were computed with other phonenumbers data, or not at all.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable

import msgspec
import structlog

from prefcenter.services.runtime import Runtime
from prefcenter.store.base import Store, WriteTx

log = structlog.get_logger("prefcenter.refs_upgrade")

# Stores known to hold no v1 ref outside the ledger (the number of v1 rows only ever goes down).
_NO_V1_REFS: weakref.WeakSet[Store] = weakref.WeakSet()


class RefsUpgrade(msgspec.Struct, frozen=True):
    contacts: int  # contacts given their v2 ref
    converted: int  # v1 suppressions of those contacts' addresses made v2
    remaining: int  # v1 refs left in suppressions and review texts (addresses nobody holds)
    idna_contacts: int = 0  # email contacts re-keyed with their domain as IDNA (migration 0012)
    idna_moved: int = 0  # suppressions of those contacts' old refs moved to the new ones
    phone_places: int = 0  # customers whose phone places were computed


async def upgrade_address_refs(rt: Runtime) -> RefsUpgrade:
    """Re-key the v1 contacts and convert the v1 suppressions and review texts of their addresses."""
    p = rt.pseudonyms
    async with rt.store.write() as tx:
        contacts = await tx.contacts_with_v1_refs()
        v1 = await tx.v1_refs()
        converted = 0
        if contacts:
            await tx.rewrite_contact_refs([(cid, ch, p.address_ref(ch, addr)) for cid, ch, addr in contacts])
            if v1:
                seen: dict[str, str] = {}
                for _, ch, addr in contacts:
                    old = p.legacy_address_ref(ch, addr)
                    if old in v1:
                        seen[old] = p.address_ref(ch, addr)
                converted = await tx.convert_v1_refs(seen)
                v1 -= seen.keys()
        idna_contacts, idna_moved = await _rekey_idna(tx, rt)
    async with rt.store.write() as tx:
        placed = await tx.fill_phone_places()
    result = RefsUpgrade(
        contacts=len(contacts),
        converted=converted,
        remaining=len(v1),
        idna_contacts=idna_contacts,
        idna_moved=idna_moved,
        phone_places=placed,
    )
    if not v1:
        _NO_V1_REFS.add(rt.store)
    if contacts:
        log.info(
            "address refs upgraded to v2",
            contacts=result.contacts,
            converted=result.converted,
            remaining=result.remaining,
        )
    elif v1:
        log.info("v1 address refs of addresses nobody holds remain until seen again", remaining=len(v1))
    if idna_contacts:
        log.info("email refs re-keyed with IDNA domains", contacts=idna_contacts, moved=idna_moved)
    if placed:
        log.info("phone places computed", customers=placed)
    return result


async def _rekey_idna(tx: WriteTx, rt: Runtime) -> tuple[int, int]:
    """Migration 0012's re-keying: the email contacts whose ref changed with the IDNA domain get the new
    ref, and the suppressions and review texts under their old refs follow. Runs after the v1 step (a
    store that still held v1 contacts got the new refs from that step, so nothing changes here). Returns
    (contacts re-keyed, suppressions moved)."""
    contacts = await tx.contacts_for_idna_rekey()
    if contacts is None:
        return 0, 0
    p = rt.pseudonyms
    rows: list[tuple[str, str, str]] = []
    moves: dict[str, str] = {}
    for cid, channel, address, stored in contacts:
        ref = p.address_ref(channel, address)
        if ref != stored:
            rows.append((cid, channel, ref))
            moves[stored] = ref
    await tx.rekey_contacts(rows)
    return len(rows), await tx.move_suppressions("email", moves)


async def convert_seen(tx: WriteTx, rt: Runtime, addresses: Iterable[tuple[str, str]]) -> int:
    """``addresses``: (channel, plain address) pairs a write is about to use. Their v1 suppressions (any
    channel of the same kind) and review texts become v2, in the caller's transaction; call it before
    the write reads or changes those suppressions or stores those contacts. Suppressions of an email
    address with a non-ASCII domain held under its ref before migration 0012 move to its ref now, the
    same way. Returns suppressions converted or moved."""
    p = rt.pseudonyms
    addresses = list(addresses)
    # refs before migration 0012: only an email address with a non-ASCII domain has one of its own
    pre_idna = {
        old: new
        for ch, addr in addresses
        if ch == "email"
        and not addr.isascii()
        and (old := p.pre_idna_address_ref(ch, addr)) != (new := p.address_ref(ch, addr))
    }
    moved = await tx.move_suppressions("email", pre_idna) if pre_idna else 0
    if moved:
        log.info("suppressions of pre-IDNA email refs moved", suppressions=moved)
    if rt.store in _NO_V1_REFS:
        return moved
    refs = {p.legacy_address_ref(ch, addr): p.address_ref(ch, addr) for ch, addr in addresses}
    converted = await tx.convert_v1_refs(refs)
    if converted:
        log.info("v1 suppressions converted to v2 refs", suppressions=converted)
    return moved + converted


async def migrate(rt: Runtime) -> list[str]:
    """The SQL migrations, then the address-ref upgrade (it needs the secret key, so it runs after
    them): what every start does before anything else. Returns the migrations applied."""
    applied = await rt.store.migrate()
    await upgrade_address_refs(rt)
    return applied
