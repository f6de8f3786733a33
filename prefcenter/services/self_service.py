"""What a customer does for themselves through a signed link: which customer a link opens, saving the
preference page's choices, "stop all marketing" and the RFC 8058 one-click unsubscribe. (Emailing a
fresh manage link is :mod:`prefcenter.services.link_mailer`; the pages themselves, their forms and
what they show are in :mod:`prefcenter.web`.)

Every change goes through :func:`prefcenter.services.customers.write_preferences`, so a page save
changes state and ledger exactly as ``PUT /v1/customers/{id}/preferences`` with the same values would
(same events, same "no change, no event" rule); only the attribution differs: source
``preference_page`` or ``one_click_unsubscribe``, actor ``customer``, the page's notice version, and as
evidence the user agent and a keyed hash of the IP address (never the address itself).

Opt-outs belong to the address too (COMPLIANCE item 27, edge 13): "stop all marketing" and an all-scope
one-click also add a marketing-only suppression (reason ``unsubscribe``) of the address they are about
(:func:`optout_address`), so every customer with that address is denied marketing on that channel; a
topic-scoped one-click also withdraws the topic from every other customer with the address (actor
``system``, evidence naming the ``address_ref``). A later fresh choice of that channel lifts the
suppression (:func:`prefcenter.services.suppressions.lift_unsubscribe`); a one-click made after that
suppresses again, as every time it is made.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution, Source, format_instant
from prefcenter.domain.model import Channel, Customer, Preferences
from prefcenter.domain.tokens import LinkClaims, Purpose
from prefcenter.services.customers import write_preferences
from prefcenter.services.links import opens, verify_token
from prefcenter.services.notices import ShownNotice
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import UNSUBSCRIBE, suppress
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.pages")

LinkProblemKind = Literal["invalid", "unknown", "expired"]
USER_AGENT_MAX = 512


class LinkProblem(Exception):
    """The link opens nothing: a bad signature, a customer who is gone, or an expired link.

    For ``expired`` the signature was valid, so ``customer`` is known (a fresh link may be sent).
    """

    def __init__(self, kind: LinkProblemKind, customer: Customer | None = None) -> None:
        super().__init__(kind)
        self.kind = kind
        self.customer = customer


class Client(msgspec.Struct, frozen=True):
    """What the ledger may record about the browser or mail client that acted."""

    user_agent: str
    ip: str | None


def evidence(rt: Runtime, client: Client, **extra: str) -> dict[str, Any]:
    ua = "".join(ch for ch in client.user_agent[:USER_AGENT_MAX] if ch.isprintable())
    out: dict[str, Any] = {"user_agent": ua}
    if client.ip:
        out["ip_ref"] = rt.pseudonyms.ip_ref(client.ip)
    out.update(extra)
    return out


# ---------------------------------------------------------------------------------------------------
# links -> customers


async def open_link(
    rt: Runtime, token: str, purpose: Purpose, *, allow_expired: bool = False
) -> tuple[Customer, LinkClaims]:
    """The customer a genuine, current link opens, and its claims; raises :class:`LinkProblem`.

    A link minted for someone else who held this ``customer_id`` before (erased, then re-created: same
    ``ref``, another link generation) is ``unknown``, exactly like a link whose customer is gone."""
    verified = verify_token(rt, token, purpose)
    if verified is None:
        raise LinkProblem("invalid")
    customer = await rt.store.get_customer_by_ref(verified.claims.ref)
    if customer is None or not opens(verified.claims, customer):
        raise LinkProblem("unknown")
    if verified.expired and not allow_expired:
        raise LinkProblem("expired", customer)
    return customer, verified.claims


# ---------------------------------------------------------------------------------------------------
# changes


def _version(rt: Runtime, notice: ShownNotice | None) -> str:
    return notice.version if notice is not None else rt.settings.page_notice_version


def _language(notice: ShownNotice | None) -> str | None:
    return notice.language if notice is not None else None


class Choices(Protocol):
    """The choices a submitted preference page makes (the web layer's form), as far as saving them
    needs: which topics they name, and the preferences they make of the current ones."""

    @property
    def topics(self) -> list[str]:
        """The topic ids named (their categories are read in the writing transaction)."""

    def preferences(
        self, current: Preferences, zone: ZoneInfo, marketing_topics: set[str], now: datetime
    ) -> tuple[Preferences | None, dict[str, str]]:
        """The new preferences, or the errors (field -> message key) that prevent them."""


class SaveOutcome(msgspec.Struct, frozen=True):
    events: int
    errors: dict[str, str] = {}
    customer: Customer | None = None  # as read in the transaction (for showing the form again)


def optout_address(customer: Customer) -> tuple[Channel, str] | None:
    """The (channel, address) an opt-out on a page or through a link is about: the address of the
    customer's chosen channel at that moment (marketing reaches them only there), else their email
    address (links travel in email: List-Unsubscribe and the footer), else none."""
    channel = customer.preferences.channel
    if channel is not None and (address := customer.profile.contacts.get(channel)) is not None:
        return channel, address
    email = customer.profile.contacts.email
    return None if email is None else ("email", email)


async def _address_optout(
    tx: WriteTx,
    rt: Runtime,
    customer: Customer,
    topic: str | None,
    source: Source,
    page_evidence: dict[str, Any],
) -> int:
    """The address side of an opt-out by ``customer`` (as read before it), in the caller's transaction.
    All marketing (``topic`` None): a marketing-only ``unsubscribe`` suppression of the address (nothing
    new when it is suppressed already). A topic: that topic withdrawn from every other customer with the
    address. Returns the events written."""
    target = optout_address(customer)
    if target is None:
        return 0
    channel, address = target
    await convert_seen(tx, rt, [target])
    ref = rt.pseudonyms.address_ref(channel, address)
    if topic is None:
        page_evidence = {**page_evidence, "customer_ref": customer.customer_ref}
        added, holders = await suppress(
            tx, rt, channel, ref, UNSUBSCRIBE, source, page_evidence, marketing_only=True
        )
        return max(len(holders), 1) if added else 0
    count = 0
    attribution = Attribution(
        source,
        "system",
        None,
        {"address_ref": ref, "scope": f"topic:{topic}", "customer_ref": customer.customer_ref},
    )
    holders = await tx.customers_with_address(channel, ref)
    found = await tx.get_customers([cid for cid in holders if cid != customer.customer_id])
    for cid in holders:
        other = found.get(cid)
        if other is None or topic not in other.preferences.topics:
            continue
        topics = [t for t in other.preferences.topics if t != topic]
        count += await write_preferences(
            tx, rt, other, msgspec.structs.replace(other.preferences, topics=topics), attribution
        )
    return count


def _still_same_person(customer: Customer | None, claims: LinkClaims) -> Customer:
    """The customer as read in the writing transaction, if the link still opens them (they may have been
    erased, or erased and re-created, since the link was checked); else :class:`LinkProblem`."""
    if customer is None or not opens(claims, customer):
        raise LinkProblem("unknown")
    return customer


async def save_choices(
    rt: Runtime,
    customer_id: str,
    choices: Choices,
    client: Client,
    claims: LinkClaims,
    *,
    notice: ShownNotice | None = None,
) -> SaveOutcome:
    """Apply a submitted preference page, in one transaction; nothing is written when it has errors.
    ``claims``: the manage link's, checked again inside the transaction. ``notice``: the notice the
    page showed, and in which language (None: the configured label, in the profile's language)."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        categories = await tx.topic_categories(choices.topics)
        marketing = {t for t, c in categories.items() if c == "marketing"}
        zone = ZoneInfo(customer.profile.timezone)
        new, errors = choices.preferences(customer.preferences, zone, marketing, rt.now())
        if new is None:
            return SaveOutcome(events=0, errors=errors, customer=customer)
        attribution = Attribution(
            "preference_page", "customer", _version(rt, notice), evidence(rt, client, form="save")
        )
        count = await write_preferences(tx, rt, customer, new, attribution, language=_language(notice))
    log.info("preference page saved", customer_ref=customer.customer_ref, events=count)
    return SaveOutcome(events=count, customer=customer)


async def stop_all_marketing(
    rt: Runtime, customer_id: str, client: Client, claims: LinkClaims, *, notice: ShownNotice | None = None
) -> int:
    """The page's "stop all marketing": no channel, no topics; quiet hours, cap and pause stay; and a
    marketing-only suppression of the address it is about (:func:`optout_address`)."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        new = msgspec.structs.replace(customer.preferences, channel=None, topics=[])
        page_evidence = evidence(rt, client, form="stop_all")
        attribution = Attribution("preference_page", "customer", _version(rt, notice), page_evidence)
        count = await write_preferences(tx, rt, customer, new, attribution, language=_language(notice))
        count += await _address_optout(tx, rt, customer, None, "preference_page", page_evidence)
    log.info("preference page stopped all marketing", customer_ref=customer.customer_ref, events=count)
    return count


async def one_click_unsubscribe(
    rt: Runtime, customer_id: str, claims: LinkClaims, client: Client, *, notice: ShownNotice | None = None
) -> int:
    """RFC 8058 one-click: a topic-scoped link removes that topic (from every customer with the address,
    :func:`_address_optout`), an all-scope link sets the channel to null, clears the topics and
    suppresses marketing to the address. Honoured every time (the latest action wins, COMPLIANCE edge
    9): a link minted before the customer opted in again unsubscribes again. A repeat that changes
    nothing writes nothing. A link of an erased customer never touches a new customer with the same id."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        prefs = customer.preferences
        if claims.topic is None:
            new = msgspec.structs.replace(prefs, channel=None, topics=[])
        else:
            new = msgspec.structs.replace(prefs, topics=[t for t in prefs.topics if t != claims.topic])
        scope = "all" if claims.topic is None else f"topic:{claims.topic}"
        page_evidence = evidence(rt, client, scope=scope, link_issued_at=format_instant(claims.issued_at))
        attribution = Attribution("one_click_unsubscribe", "customer", _version(rt, notice), page_evidence)
        count = await write_preferences(tx, rt, customer, new, attribution, language=_language(notice))
        count += await _address_optout(tx, rt, customer, claims.topic, "one_click_unsubscribe", page_evidence)
    log.info(
        "one-click unsubscribe",
        customer_ref=customer.customer_ref,
        scope="all" if claims.topic is None else "topic",
        events=count,
        # Edge 9: an old link replayed after a later change still wins; say so in the log.
        link_older_than_last_change=claims.issued_at < customer.updated_at,
    )
    return count
