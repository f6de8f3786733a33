"""What a customer does for themselves through a signed link: which customer a link opens, saving the
preference page's choices, "stop all marketing" and the RFC 8058 one-click unsubscribe. (Emailing a
fresh manage link is :mod:`prefcenter.services.link_mailer`; the pages themselves, their forms and
what they show are in :mod:`prefcenter.web`.)

Every change goes through :func:`prefcenter.services.customers.write_preferences`, so a page save
changes state and ledger exactly as ``PUT /v1/customers/{id}/preferences`` with the same values would
(same events, same "no change, no event" rule); only the attribution differs: source
``preference_page`` or ``one_click_unsubscribe``, actor ``customer``, the page's notice version, and as
evidence the user agent and a keyed hash of the IP address (never the address itself).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution, format_instant
from prefcenter.domain.model import Customer, Preferences
from prefcenter.domain.tokens import LinkClaims, Purpose
from prefcenter.services.customers import write_preferences
from prefcenter.services.links import opens, verify_token
from prefcenter.services.runtime import Runtime

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


def _still_same_person(customer: Customer | None, claims: LinkClaims) -> Customer:
    """The customer as read in the writing transaction, if the link still opens them (they may have been
    erased, or erased and re-created, since the link was checked); else :class:`LinkProblem`."""
    if customer is None or not opens(claims, customer):
        raise LinkProblem("unknown")
    return customer


async def save_choices(
    rt: Runtime, customer_id: str, choices: Choices, client: Client, claims: LinkClaims
) -> SaveOutcome:
    """Apply a submitted preference page, in one transaction; nothing is written when it has errors.
    ``claims``: the manage link's, checked again inside the transaction."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        categories = await tx.topic_categories(choices.topics)
        marketing = {t for t, c in categories.items() if c == "marketing"}
        zone = ZoneInfo(customer.profile.timezone)
        new, errors = choices.preferences(customer.preferences, zone, marketing, rt.now())
        if new is None:
            return SaveOutcome(events=0, errors=errors, customer=customer)
        attribution = Attribution(
            "preference_page", "customer", rt.settings.page_notice_version, evidence(rt, client, form="save")
        )
        count = await write_preferences(tx, rt, customer, new, attribution)
    log.info("preference page saved", customer_ref=customer.customer_ref, events=count)
    return SaveOutcome(events=count, customer=customer)


async def stop_all_marketing(rt: Runtime, customer_id: str, client: Client, claims: LinkClaims) -> int:
    """The page's "stop all marketing": no channel, no topics; quiet hours, cap and pause stay."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        new = msgspec.structs.replace(customer.preferences, channel=None, topics=[])
        attribution = Attribution(
            "preference_page",
            "customer",
            rt.settings.page_notice_version,
            evidence(rt, client, form="stop_all"),
        )
        count = await write_preferences(tx, rt, customer, new, attribution)
    log.info("preference page stopped all marketing", customer_ref=customer.customer_ref, events=count)
    return count


async def one_click_unsubscribe(rt: Runtime, customer_id: str, claims: LinkClaims, client: Client) -> int:
    """RFC 8058 one-click: a topic-scoped link removes that topic, an all-scope link sets the channel to
    null and clears the topics. Honoured every time (the latest action wins, COMPLIANCE edge 9): a link
    minted before the customer opted in again unsubscribes again. A repeat that changes nothing writes
    nothing. A link of an erased customer never touches a new customer with the same id."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        prefs = customer.preferences
        if claims.topic is None:
            new = msgspec.structs.replace(prefs, channel=None, topics=[])
        else:
            new = msgspec.structs.replace(prefs, topics=[t for t in prefs.topics if t != claims.topic])
        scope = "all" if claims.topic is None else f"topic:{claims.topic}"
        attribution = Attribution(
            "one_click_unsubscribe",
            "customer",
            rt.settings.page_notice_version,
            evidence(rt, client, scope=scope, link_issued_at=format_instant(claims.issued_at)),
        )
        count = await write_preferences(tx, rt, customer, new, attribution)
    log.info(
        "one-click unsubscribe",
        customer_ref=customer.customer_ref,
        scope="all" if claims.topic is None else "topic",
        events=count,
        # Edge 9: an old link replayed after a later change still wins; say so in the log.
        link_older_than_last_change=claims.issued_at < customer.updated_at,
    )
    return count
