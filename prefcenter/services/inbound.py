"""Inbound events: SMS keywords (STOP / START / HELP) and email bounces and complaints, and the texts
kept for a person to review.

Each event's suppressions, ledger events and withdrawals are written in ONE transaction.

SMS (COMPLIANCE items 23, 24, 26, edge 15): a stop word as ANY word of the normalised text is a stop (fail
closed: "please stop texting me"); START/UNSTOP and HELP count only as the first word, and a stop word
anywhere wins over them. A stop suppresses SMS to the number (transactional texts too, as before) and adds
a marketing-only suppression of voice to it (the FCC's "revoke all": marketing calls are denied
``suppressed``, transactional calls still go); START lifts the SMS one and the voice one only when a texted
stop made it (reason ``sms_keyword``; one made by a one-click or page opt-out stays). Any other non-blank
text is kept for review, due 10 US business days after receipt (domain/business_days.py); a person
resolves it as ``stop`` (exactly what a texted STOP does, for the number the text came from) or ``none``.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import structlog

from prefcenter.domain.business_days import due_date, local_day, overdue_before
from prefcenter.domain.ledger import Attribution, format_at
from prefcenter.domain.model import E164_RE, FieldError, InvalidInput, PhoneNumber, anchored
from prefcenter.services.customers import write_preferences
from prefcenter.services.errors import Conflict, NotFound
from prefcenter.services.refs_upgrade import convert_seen
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import lift, suppress
from prefcenter.store.base import ReviewText, WriteTx

log = structlog.get_logger("prefcenter.inbound")

STOP_WORDS = frozenset({"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"})
START_WORDS = frozenset({"start", "unstop"})
HELP_WORDS = frozenset({"help"})
_SPACES = re.compile(r"\s+")
_OPT_OUT = re.compile(r"(?:^| )opt out(?= |\Z)")
_ACTOR = re.compile(anchored(r"[A-Za-z0-9._:/-]{1,128}"))  # a ledger actor label
Action = Literal["stop", "start", "help", "none"]
Resolution = Literal["stop", "none"]


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


def stop_word(text: str) -> str | None:
    """The first stop word among the words of the normalised text, or None."""
    return next((w for w in normalise(text).split(" ") if w in STOP_WORDS), None)


def keyword(text: str) -> Action:
    """``stop`` when any word is a stop word; else START/UNSTOP or HELP as the first word; else none."""
    if stop_word(text) is not None:
        return "stop"
    first = normalise(text).split(" ")[0]
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
        f"{rt.settings.sms_program}: you are unsubscribed and will get no more marketing texts or calls. "
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
    found = await tx.get_customers(customer_ids)
    for cid in customer_ids:
        customer = found.get(cid)
        if customer is None or customer.preferences.channel != channel:
            continue
        new = msgspec.structs.replace(customer.preferences, channel=None)
        changed += bool(await write_preferences(tx, rt, customer, new, attribution))
    return changed


async def _stop(
    tx: WriteTx, rt: Runtime, ref: str, actor: str, evidence: dict[str, Any]
) -> tuple[list[str], int]:
    """What a texted stop does to the number with address_ref ``ref`` (sms and voice share one ref):
    suppress SMS, withdraw the SMS choice of every customer with it, and suppress voice marketing to it.
    Returns (customers with the number on sms, choices withdrawn)."""
    _, customers = await suppress(tx, rt, "sms", ref, "sms_keyword", "sms_keyword", evidence)
    withdrawn = await _withdraw(tx, rt, customers, "sms", Attribution("sms_keyword", actor, None, evidence))
    await suppress(tx, rt, "voice", ref, "sms_keyword", "sms_keyword", evidence, marketing_only=True)
    return customers, withdrawn


async def inbound_sms(rt: Runtime, event: InboundSms) -> SmsAnswer:
    _check_phone(event.sender)
    action = keyword(event.text)
    ref = rt.pseudonyms.address_ref("sms", event.sender)
    if action == "stop":
        async with rt.store.write() as tx:
            # a v1 STOP of this number stays a stop (sms and voice: one kind, one conversion)
            await convert_seen(tx, rt, [("sms", event.sender)])
            customers, withdrawn = await _stop(tx, rt, ref, "system", {"keyword": stop_word(event.text)})
        log.info("sms stop", address_ref=ref, customers=len(customers), withdrawn=withdrawn)
        return SmsAnswer("stop", stop_text(rt))
    if action == "start":
        async with rt.store.write() as tx:
            await convert_seen(tx, rt, [("sms", event.sender)])  # START lifts a v1 STOP too
            lifted = await lift(tx, rt, "sms", ref, "sms_keyword", "sms_keyword")
            # the voice side of a texted stop only: another opt-out of voice marketing stays
            voice = await lift(tx, rt, "voice", ref, "sms_keyword", "sms_keyword", only_reason="sms_keyword")
        log.info("sms start", address_ref=ref, lifted=lifted, voice_lifted=voice)
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


# -- texts kept for review ------------------------------------------------------------------------------


def _review_dict(row: ReviewText, now: datetime) -> dict[str, Any]:
    due = due_date(datetime.fromisoformat(row.received_at))
    return {
        "id": row.id,
        "channel": row.channel,
        "address_ref": row.address_ref,
        "text": row.text,
        "received_at": row.received_at,
        "due": due.isoformat(),
        "overdue": row.resolved_at is None and due < local_day(now),
        "resolved_at": row.resolved_at,
        "resolution": row.resolution,
        "resolved_by": row.resolved_by,
    }


async def review_list(
    rt: Runtime, since: datetime | None = None, resolved: bool = False
) -> list[dict[str, Any]]:
    """Texts kept for review, oldest first, each with its due date (New York) and whether it is overdue;
    open ones only unless ``resolved``."""
    rows = await rt.store.inbound_for_review(format_at(since) if since else None, resolved)
    now = rt.now()
    return [_review_dict(row, now) for row in rows]


async def overdue_count(rt: Runtime) -> int:
    """Open texts kept for review past their due date (the ``/metrics`` gauge)."""
    return await rt.store.inbound_open_before(format_at(overdue_before(rt.now())))


async def resolve_review(rt: Runtime, review_id: int, resolution: str, by: str) -> dict[str, Any]:
    """A person's decision on a text kept for review: ``stop`` does what a texted STOP does for the number
    it came from (ledger source ``sms_keyword``, the withdrawal's actor ``by``, evidence naming the review
    and who resolved it), ``none`` changes nothing else; either way the text is marked resolved, in the
    same transaction."""
    if resolution not in ("stop", "none"):
        raise InvalidInput([FieldError("as", "stop or none")])
    if not _ACTOR.match(by):
        raise InvalidInput([FieldError("by", "who resolves it: 1-128 of A-Z a-z 0-9 . _ : / -")])
    evidence = {"review_id": review_id, "resolved_by": by}
    customers: list[str] = []
    withdrawn = 0
    async with rt.store.write() as tx:
        row = await tx.get_review(review_id)
        if row is None:
            raise NotFound(f"no text kept for review has id {review_id}")
        if row.resolved_at is not None:
            raise Conflict(f"text {review_id} was resolved already ({row.resolution}, {row.resolved_at})")
        if resolution == "stop":
            customers, withdrawn = await _stop(tx, rt, row.address_ref, by, evidence)
        at = rt.now()
        await tx.resolve_review(review_id, resolution, by, at)
    log.info(
        "review resolved",
        review_id=review_id,
        resolution=resolution,
        address_ref=row.address_ref,
        customers=len(customers),
        withdrawn=withdrawn,
    )
    done = msgspec.structs.replace(row, resolved_at=format_at(at), resolution=resolution, resolved_by=by)
    return {**_review_dict(done, at), "customers": len(customers), "withdrawn": withdrawn}
