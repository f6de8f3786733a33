"""The customer pages' logic, outside the web layer: which customer a link opens, what the preference
page shows, and how a submitted form, "stop all marketing" or a one-click unsubscribe changes the
preferences.

Every change goes through :func:`prefcenter.services.customers.write_preferences`, so a page save
changes state and ledger exactly as ``PUT /v1/customers/{id}/preferences`` with the same values would
(same events, same "no change, no event" rule); only the attribution differs: source
``preference_page`` or ``one_click_unsubscribe``, actor ``customer``, the page's notice version, and as
evidence the user agent and a keyed hash of the IP address (never the address itself).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import msgspec
import phonenumbers
import structlog

from prefcenter.domain.ledger import Attribution, format_instant
from prefcenter.domain.model import CHANNELS, Channel, Customer, Preferences, QuietHours, Topic
from prefcenter.domain.tokens import LinkClaims, Purpose
from prefcenter.services.customers import write_preferences
from prefcenter.services.links import opens, verify_token
from prefcenter.services.runtime import Runtime

log = structlog.get_logger("prefcenter.pages")

LinkProblemKind = Literal["invalid", "unknown", "expired"]
FieldName = Literal["channel", "topics", "quiet", "max_per_week", "paused_until"]
USER_AGENT_MAX = 512
_TIME_RE = re.compile(r"^(\d{1,2}):(\d{2})(?::00(?:\.0+)?)?\Z")


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
# what the page shows


def mask_email(address: str) -> str:
    """``ola@example.pl`` -> ``o**@example.pl`` (the length of the local part is not shown either)."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}**@{domain}" if local else "**"


def mask_phone(number: str) -> str:
    """``+48600100200`` -> ``+48 *** *** 200``."""
    try:
        code = str(phonenumbers.parse(number, None).country_code)
    except phonenumbers.NumberParseException:
        code = number[1:3]
    return f"+{code} *** *** {number[-3:]}"


def masked_address(channel: str, address: str) -> str | None:
    """How the page shows a contact; None for push (a device token means nothing to a person)."""
    if channel == "email":
        return mask_email(address)
    if channel == "push":
        return None
    return mask_phone(address)


def localized(texts: dict[str, str], lang: str) -> tuple[str, str] | None:
    """A topic's name or description for ``lang``: ``(text, its language)``; falls back to English, then
    to any language; None when there is no text at all."""
    by_primary = {tag.split("-")[0].lower(): tag for tag in texts}
    for wanted in (lang, "en"):
        if wanted in texts:
            return texts[wanted], wanted
        if wanted in by_primary:
            tag = by_primary[wanted]
            return texts[tag], tag
    for tag, text in texts.items():
        return text, tag
    return None


class PageForm(msgspec.Struct):
    """The preference form's fields as the browser sends them (strings; validated by
    :func:`preferences_from_form`)."""

    channel: str = "none"
    topics: list[str] = []
    quiet: str = "none"
    quiet_start: str = ""
    quiet_end: str = ""
    max_per_week: str = ""
    paused_until: str = ""


_FORM_LIMIT = 64


def form_from_fields(fields: dict[str, list[str]]) -> PageForm:
    """A PageForm from submitted fields (first value of each single field; every ``topics`` value)."""

    def one(name: str) -> str:
        values = fields.get(name) or [""]
        return values[0].strip()[:_FORM_LIMIT]

    return PageForm(
        channel=one("channel") or "none",
        topics=[t.strip()[:_FORM_LIMIT] for t in fields.get("topics", [])[:500]],
        quiet=one("quiet") or "none",
        quiet_start=one("quiet_start"),
        quiet_end=one("quiet_end"),
        max_per_week=one("max_per_week"),
        paused_until=one("paused_until"),
    )


def local_date(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def form_from_preferences(prefs: Preferences, zone: ZoneInfo) -> PageForm:
    """The form exactly as the page shows the current preferences (submitting it unchanged is a no-op)."""
    return PageForm(
        channel=prefs.channel or "none",
        topics=list(prefs.topics),
        quiet="on" if prefs.quiet_hours else "none",
        quiet_start=prefs.quiet_hours.start if prefs.quiet_hours else "",
        quiet_end=prefs.quiet_hours.end if prefs.quiet_hours else "",
        max_per_week=str(prefs.max_per_week) if prefs.max_per_week is not None else "",
        paused_until=local_date(prefs.paused_until, zone).isoformat() if prefs.paused_until else "",
    )


def _ascii_digits(text: str) -> str:
    """Any script's decimal digits (Persian ۲, Arabic-Indic ٢, full-width ２) as ASCII digits."""
    return "".join(str(unicodedata.decimal(ch)) if ch.isdecimal() else ch for ch in text)


def _parse_time(text: str) -> str | None:
    match = _TIME_RE.match(_ascii_digits(text))
    if not match:
        return None
    hour, minute = int(match.group(1)), int(match.group(2))
    if hour > 23 or minute > 59:
        return None
    return f"{hour:02d}:{minute:02d}"


def preferences_from_form(
    form: PageForm,
    current: Preferences,
    zone: ZoneInfo,
    marketing_topics: set[str],
    now: datetime,
) -> tuple[Preferences | None, dict[str, str]]:
    """New preferences from a submitted form, or the errors (field -> message key) that prevent them.

    - ``channel``: ``none`` or one channel.
    - ``quiet``: ``none`` or ``on`` with two different times. Times typed while "No quiet hours" is
      chosen are an error rather than a guess.
    - ``max_per_week``: empty (no cap) or 1-50.
    - ``paused_until``: empty (no pause) or a date; marketing resumes at 00:00 of that date in the
      customer's time zone. The date must be after today, unless it is the date already shown (then the
      stored instant is kept exactly, so an untouched form changes nothing).
    """
    errors: dict[str, str] = {}  # FieldName -> message key

    channel: Channel | None = None
    if form.channel != "none":
        channel = next((ch for ch in CHANNELS if ch == form.channel), None)
        if channel is None:
            errors["channel"] = "channel"

    topics = sorted(set(form.topics))
    if any(t not in marketing_topics for t in topics):
        errors["topics"] = "topics"

    shown = form_from_preferences(current, zone)
    quiet: QuietHours | None = None
    if form.quiet == "on":
        if not form.quiet_start or not form.quiet_end:
            errors["quiet"] = "quiet_missing"
        else:
            start, end = _parse_time(form.quiet_start), _parse_time(form.quiet_end)
            if start is None or end is None:
                errors["quiet"] = "quiet_invalid"
            elif start == end:
                errors["quiet"] = "quiet_same"
            else:
                quiet = QuietHours(start=start, end=end)
    elif form.quiet == "none":
        typed = (form.quiet_start, form.quiet_end)
        if any(typed) and typed != (shown.quiet_start, shown.quiet_end):
            errors["quiet"] = "quiet_conflict"
    else:
        errors["quiet"] = "quiet_missing"

    cap: int | None = None
    if form.max_per_week:
        digits = _ascii_digits(form.max_per_week)
        if digits.isascii() and digits.isdigit() and 1 <= int(digits) <= 50:
            cap = int(digits)
        else:
            errors["max_per_week"] = "cap_invalid"

    paused: datetime | None = None
    if form.paused_until:
        try:
            day = date.fromisoformat(_ascii_digits(form.paused_until))
        except ValueError:
            errors["paused_until"] = "pause_invalid"
        else:
            if current.paused_until is not None and day == local_date(current.paused_until, zone):
                paused = current.paused_until
            elif day <= now.astimezone(zone).date():
                errors["paused_until"] = "pause_past"
            else:
                paused = datetime.combine(day, time(0, 0), tzinfo=zone).astimezone(UTC)

    if errors:
        return None, errors
    return (
        Preferences(channel=channel, topics=topics, quiet_hours=quiet, max_per_week=cap, paused_until=paused),
        {},
    )


@dataclass(frozen=True)
class ChannelOption:
    id: str
    address: str | None  # masked; None when there is no address to show (push, or none on file)
    on_file: bool


@dataclass(frozen=True)
class TopicOption:
    id: str
    name: str
    name_lang: str
    description: str | None = None
    description_lang: str | None = None


@dataclass(frozen=True)
class PageModel:
    """What the preference page shows, for one customer in one language."""

    channels: list[ChannelOption]
    marketing: list[TopicOption]
    service: list[TopicOption]
    timezone: str
    tomorrow: str
    form: PageForm
    email_on_file: bool = field(default=False)


def _topic_option(topic_id: str, topic: Topic, lang: str) -> TopicOption:
    name, name_lang = localized(topic.names, lang) or (topic_id, "en")
    described = localized(topic.descriptions, lang)
    return TopicOption(
        id=topic_id,
        name=name,
        name_lang=name_lang,
        description=described[0] if described else None,
        description_lang=described[1] if described else None,
    )


def page_model(
    customer: Customer, topics: dict[str, Topic], lang: str, now: datetime, form: PageForm | None = None
) -> PageModel:
    """The page for ``customer``: channels with a contact on file (and the chosen one even without),
    marketing topics to tick, service topics shown as always on, and the form's values — the current
    preferences, or ``form`` when a submitted one is shown again with its errors."""
    zone = ZoneInfo(customer.profile.timezone)
    contacts = customer.profile.contacts
    chosen = customer.preferences.channel
    channels = [
        ChannelOption(id=ch, address=masked_address(ch, addr) if addr else None, on_file=addr is not None)
        for ch in CHANNELS
        if (addr := contacts.get(ch)) is not None or ch == chosen
    ]
    return PageModel(
        channels=channels,
        marketing=[
            _topic_option(t, topic, lang) for t, topic in topics.items() if topic.category == "marketing"
        ],
        service=[
            _topic_option(t, topic, lang) for t, topic in topics.items() if topic.category != "marketing"
        ],
        timezone=customer.profile.timezone,
        tomorrow=(now.astimezone(zone).date() + timedelta(days=1)).isoformat(),
        form=form or form_from_preferences(customer.preferences, zone),
        email_on_file=contacts.email is not None,
    )


# ---------------------------------------------------------------------------------------------------
# changes


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


async def save_form(
    rt: Runtime, customer_id: str, form: PageForm, client: Client, claims: LinkClaims
) -> SaveOutcome:
    """Apply a submitted preference form, in one transaction; nothing is written when it has errors.
    ``claims``: the manage link's, checked again inside the transaction."""
    async with rt.store.write() as tx:
        customer = _still_same_person(await tx.get_customer(customer_id), claims)
        categories = await tx.topic_categories(form.topics)
        marketing = {t for t, c in categories.items() if c == "marketing"}
        zone = ZoneInfo(customer.profile.timezone)
        new, errors = preferences_from_form(form, customer.preferences, zone, marketing, rt.now())
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
