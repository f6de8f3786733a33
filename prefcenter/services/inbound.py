"""Inbound events: SMS keywords (STOP / START / HELP) and email bounces and complaints.

Each event's suppressions, ledger events and withdrawals are written in ONE transaction.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated, Literal

import msgspec
import structlog

from prefcenter.domain.ledger import Attribution
from prefcenter.domain.model import E164_RE, FieldError, InvalidInput, PhoneNumber, anchored
from prefcenter.services.customers import write_preferences
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import lift, suppress
from prefcenter.store.base import WriteTx

log = structlog.get_logger("prefcenter.inbound")

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
START_WORDS = frozenset({"start", "unstop"})
HELP_WORDS = frozenset({"help"})
_SPACES = re.compile(r"\s+")
_OPT_OUT = re.compile(r"(?:^| )opt out(?= |\Z)")


class InboundSms(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename={"sender": "from"}):
    sender: PhoneNumber  # the pattern is documented; _check_phone decides, with its own message
    text: str


class SmsAnswer(msgspec.Struct, frozen=True):
    action: Literal["stop", "start", "help", "none"]
    reply: str


class EmailEvent(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["bounce", "complaint"]
    # Documented here, decided by email_event (an @, no spaces, line breaks or control characters).
    address: Annotated[
        str,
        msgspec.Meta(
            max_length=320,
            extra_json_schema={
                "pattern": anchored(r"[^\x00-\x20\x7f]*@[^\x00-\x20\x7f]*"),
                "description": "An email address: an @, no spaces or control characters",
            },
        ),
    ]
    permanent: bool = True


class EmailEventAnswer(msgspec.Struct, frozen=True):
    action: Literal["suppressed", "none"]
    customers: int


def normalise(text: str) -> str:
    """NFKC, case folded, punctuation and hyphens (and other symbols) as spaces, spaces collapsed,
    ``opt out`` read as one word ``optout``."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    chars = [" " if unicodedata.category(c)[0] in ("P", "S", "Z", "C") else c for c in folded]
    collapsed = _SPACES.sub(" ", "".join(chars)).strip()
    return _OPT_OUT.sub(lambda m: m.group(0).replace("opt out", "optout"), collapsed)


def keyword(text: str) -> Literal["stop", "start", "help", "none"]:
    words = normalise(text).split(" ")
    first = words[0] if words else ""
    if first in STOP_WORDS:
        return "stop"
    if first in START_WORDS:
        return "start"
    if first in HELP_WORDS:
        return "help"
    return "none"


def help_text(rt: Runtime) -> str:
    program = rt.settings.sms_program
    contact = rt.settings.sms_help or rt.settings.public_url
    return (
        f"{program}: help at {contact}. Message frequency varies. Msg & data rates may apply. "
        "Reply STOP to opt out."
    )


def stop_text(rt: Runtime) -> str:
    return (
        f"{rt.settings.sms_program}: you are unsubscribed and will get no more marketing texts. "
        "Reply START to resubscribe."
    )


def start_text(rt: Runtime) -> str:
    return (
        f"{rt.settings.sms_program}: texts to this number are no longer blocked. Choose text messages on "
        "your preference page to get them. Reply HELP for help, STOP to opt out."
    )


def _check_phone(value: str) -> None:
    """E.164, as contacts are: a number in any other form would never meet its customers' contacts."""
    if not E164_RE.match(value):
        raise InvalidInput([FieldError("from", "an E.164 phone number, e.g. +48600100200")])


async def _withdraw(
    tx: WriteTx, rt: Runtime, customer_ids: list[str], channel: str, attribution: Attribution
) -> int:
    """Set the chosen channel to null for each customer whose chosen channel it is."""
    changed = 0
    for cid in customer_ids:
        customer = await tx.get_customer(cid)
        if customer is None or customer.preferences.channel != channel:
            continue
        new = msgspec.structs.replace(customer.preferences, channel=None)
        changed += bool(await write_preferences(tx, rt, customer, new, attribution))
    return changed


async def inbound_sms(rt: Runtime, event: InboundSms) -> SmsAnswer:
    _check_phone(event.sender)
    action = keyword(event.text)
    ref = rt.pseudonyms.address_ref("sms", event.sender)
    if action == "stop":
        async with rt.store.write() as tx:
            await convert_seen(tx, rt, [("sms", event.sender)])  # a v1 STOP of this number stays a stop
            _, customers = await suppress(tx, rt, "sms", ref, "sms_keyword", "sms_keyword")
            withdrawn = await _withdraw(
                tx,
                rt,
                customers,
                "sms",
                Attribution("sms_keyword", "system", None, {"keyword": normalise(event.text).split(" ")[0]}),
            )
        log.info("sms stop", address_ref=ref, customers=len(customers), withdrawn=withdrawn)
        return SmsAnswer("stop", stop_text(rt))
    if action == "start":
        async with rt.store.write() as tx:
            await convert_seen(tx, rt, [("sms", event.sender)])  # START lifts a v1 STOP too
            lifted = await lift(tx, rt, "sms", ref, "sms_keyword", "sms_keyword")
        log.info("sms start", address_ref=ref, lifted=lifted)
        return SmsAnswer("start", start_text(rt))
    if action == "help":
        return SmsAnswer("help", help_text(rt))
    if event.text.strip():  # maybe a revocation in other words or another language: a person decides
        async with rt.store.write() as tx:
            await convert_seen(tx, rt, [("sms", event.sender)])
            await tx.keep_for_review("sms", ref, event.text[:1600], rt.now())
        log.warning("sms kept for review: no keyword matched", address_ref=ref)
    return SmsAnswer("none", "")


async def email_event(rt: Runtime, event: EmailEvent) -> EmailEventAnswer:
    address = event.address
    if (
        "@" not in address
        or len(address) > 320
        or not address.isprintable()
        or any(c.isspace() for c in address)
    ):
        raise InvalidInput([FieldError("address", "an email address (no spaces or line breaks)")])
    if event.type == "bounce" and not event.permanent:
        return EmailEventAnswer("none", 0)
    ref = rt.pseudonyms.address_ref("email", address)
    source: Literal["bounce", "complaint"] = event.type
    async with rt.store.write() as tx:
        await convert_seen(tx, rt, [("email", address)])  # a v1 suppression of it is this one
        _, customers = await suppress(tx, rt, "email", ref, source, source)
        if event.type == "complaint":
            await _withdraw(tx, rt, customers, "email", Attribution(source, "system", None, {}))
    log.info("email event", type=event.type, address_ref=ref, customers=len(customers))
    return EmailEventAnswer("suppressed", len(customers))
