"""The shapes of prefcenter's data, and the checks msgspec's types cannot express.

Request bodies are decoded straight into these Structs (unknown fields are rejected); the ``check_*``
functions add the semantic checks (IANA zone, BCP 47 locale, ISO country, email syntax, E.164) and
report every problem with its field path.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal, get_args

import email_validator
import langcodes
import msgspec
import phonenumbers
import pycountry

Channel = Literal["email", "sms", "push", "voice", "whatsapp"]
CHANNELS: Final[tuple[Channel, ...]] = get_args(Channel)
PHONE_CHANNELS: frozenset[str] = frozenset({"sms", "voice", "whatsapp"})
Category = Literal["marketing", "transactional"]
# The gate's answer (API.md "Send approval — the gate"): a verdict and the rule that decided it.
Verdict = Literal["allow", "defer", "deny"]
Reason = Literal[
    "unknown_customer",
    "suppressed",
    "no_channel",
    "channel_not_offered",
    "no_address",
    "topic_not_subscribed",
    "paused",
    "quiet_hours",
    "frequency_cap",
    "allowed",
    "expired",
    # double opt-in (issue 13): listed after the original codes; in the rule order it is 6b, right
    # after topic_not_subscribed
    "not_confirmed",
]
VERDICTS: Final[tuple[Verdict, ...]] = get_args(Verdict)
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
Role = Literal["admin", "marketing", "auditor"]
#: Languages written right to left (pages get dir="rtl", emails' footers too).
RTL_LANGUAGES: Final = frozenset({"fa"})
ROLES: tuple[Role, ...] = ("admin", "marketing", "auditor")

# Patterns end with END, not `$`: Python's `$` also matches before a trailing newline ("c1\n" would
# pass). `(?![\s\S])` means "nothing follows" both in Python and in ECMA-262, the regex dialect of the
# OpenAPI document these patterns are published in (which has no `\Z`).
END = r"(?![\s\S])"


def anchored(body: str) -> str:
    """A pattern that matches the whole string: ``^(?:body)`` and nothing after it, not even a newline."""
    return f"^(?:{body}){END}"


CUSTOMER_ID_RE = re.compile(anchored(r"[A-Za-z0-9._:@-]{1,128}"))
TOPIC_ID_RE = re.compile(anchored(r"[a-z0-9][a-z0-9_-]{0,63}"))

CustomerId = Annotated[str, msgspec.Meta(pattern=CUSTOMER_ID_RE.pattern)]
TopicId = Annotated[str, msgspec.Meta(pattern=TOPIC_ID_RE.pattern, examples=["promotions"])]
HHMM = Annotated[str, msgspec.Meta(pattern=anchored(r"([01][0-9]|2[0-3]):[0-5][0-9]"), examples=["21:00"])]
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
Label = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9._:/-]{1,128}"), examples=["agent-17"])]
NoticeVersion = Annotated[str, msgspec.Meta(pattern=anchored(r"[A-Za-z0-9._:-]{1,64}"), examples=["2026-10"])]
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
LongText = Annotated[str, msgspec.Meta(max_length=2000)]
LocaleTag = Annotated[str, msgspec.Meta(min_length=2, max_length=35)]

# The OpenAPI document states these checks of check_profile too (``extra_json_schema`` only documents:
# the semantic check decides, with its own message): every IANA name and every E.164 number matches.
E164_PATTERN = anchored(r"\+[1-9][0-9]{6,14}")
E164_RE = re.compile(E164_PATTERN)
IANA_NAME_PATTERN = anchored(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")
PhoneNumber = Annotated[
    str, msgspec.Meta(max_length=16, examples=["+48600100200"], extra_json_schema={"pattern": E164_PATTERN})
]

EVIDENCE_MAX_BYTES = 4096
MAX_SAFE_INT = 2**53 - 1
EVIDENCE_KEY_RE = re.compile(anchored(r"[A-Za-z0-9_.-]{1,64}"))


#: The instants prefcenter accepts: wide enough for any real use, narrow enough that every rule's
#: arithmetic (local times, cap windows, the 400-day deferral horizon) stays inside datetime's range,
#: whatever the offset (``9999-12-31T23:59:59-05:00`` is past datetime's last instant in UTC).
EARLIEST_INSTANT = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


class FieldError(msgspec.Struct, frozen=True):
    field: str
    message: str


class InvalidInput(Exception):
    """Bad input: one or more field errors (answered as a 400 problem)."""

    def __init__(self, errors: list[FieldError], detail: str = "The request has invalid fields.") -> None:
        super().__init__(detail)
        self.errors = errors
        self.detail = detail


class Contacts(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    email: Annotated[str, msgspec.Meta(max_length=254, examples=["ola@example.pl"])] | None = None
    sms: PhoneNumber | None = None
    push: Annotated[str, msgspec.Meta(min_length=1, max_length=4096, examples=["device-token"])] | None = None
    voice: PhoneNumber | None = None
    whatsapp: PhoneNumber | None = None

    def get(self, channel: str) -> str | None:
        value: str | None = getattr(self, channel)
        return value

    def items(self) -> list[tuple[Channel, str]]:
        return [(ch, v) for ch in CHANNELS if (v := getattr(self, ch)) is not None]


class Profile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/customers/{id}``: every field required; there is no default timezone."""

    timezone: Annotated[
        str,
        msgspec.Meta(
            max_length=64,
            examples=["Europe/Warsaw"],
            description="An IANA time zone name",
            extra_json_schema={"pattern": IANA_NAME_PATTERN},
        ),
    ]
    locale: Annotated[LocaleTag, msgspec.Meta(examples=["pl"], description="A BCP 47 language tag")]
    country: Annotated[
        str,
        msgspec.Meta(
            min_length=2,
            max_length=2,
            examples=["PL"],
            description="ISO 3166-1 alpha-2",
            extra_json_schema={"pattern": anchored("[A-Z]{2}")},
        ),
    ]
    contacts: Contacts


class QuietHours(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    start: HHMM
    end: HHMM


class Provenance(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Who made a change and on what basis; written into the consent ledger, never returned."""

    source: Literal["api", "crm", "import", "admin"]
    actor: Label
    notice_version: NoticeVersion
    evidence: dict[str, Any] = {}


class Preferences(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The customer's current choices (as returned by GET)."""

    channel: Channel | None
    topics: list[TopicId]
    quiet_hours: QuietHours | None
    max_per_week: Annotated[int, msgspec.Meta(ge=1, le=50)] | None
    paused_until: AwareDatetime | None


NO_PREFERENCES = Preferences(channel=None, topics=[], quiet_hours=None, max_per_week=None, paused_until=None)


class PreferencesWrite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``PUT /v1/customers/{id}/preferences``: every field required, provenance included."""

    channel: Channel | None
    topics: Annotated[list[TopicId], msgspec.Meta(max_length=200)]
    quiet_hours: QuietHours | None
    max_per_week: Annotated[int, msgspec.Meta(ge=1, le=50)] | None
    paused_until: AwareDatetime | None
    provenance: Provenance

    def preferences(self) -> Preferences:
        return Preferences(
            channel=self.channel,
            topics=sorted(set(self.topics)),
            quiet_hours=self.quiet_hours,
            max_per_week=self.max_per_week,
            paused_until=self.paused_until.astimezone(UTC) if self.paused_until else None,
        )


class Topic(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    category: Category
    names: Annotated[
        dict[LocaleTag, ShortText], msgspec.Meta(min_length=1, max_length=50, examples=[{"en": "Offers"}])
    ]
    descriptions: Annotated[dict[LocaleTag, LongText], msgspec.Meta(max_length=50)] = {}
    # A customer who gains this topic must confirm it by email before marketing on it reaches them
    # (issue 13's double opt-in; the gate answers ``not_confirmed`` until then).
    double_opt_in: Annotated[
        bool,
        msgspec.Meta(
            description="A customer who gains this topic is sent a confirmation link by email; until they "
            "confirm it the gate denies its marketing with reason not_confirmed. Turning it on later "
            "un-confirms no existing subscriber."
        ),
    ] = False


class Customer(msgspec.Struct, frozen=True):
    """A stored customer: profile, preferences and pseudonym."""

    customer_id: str
    customer_ref: str
    profile: Profile
    preferences: Preferences
    created_at: datetime
    updated_at: datetime
    # Random per person, set at creation and never changed (signed into every link: a re-created
    # customer with the same id gets a new one, so the old person's links die); '' before migration 0009.
    link_gen: str = ""


# ---------------------------------------------------------------------------------------------------
# the gate's vocabulary: what the store loads for the engine (domain/engine.py) and what it answers
#
# ``gc=False``: a 10,000-id call holds tens of thousands of these at once, and they can never be part of
# a reference cycle (immutable, they hold only strings, numbers, instants and each other), so the cyclic
# collector need not scan them: its time in such a call fell from ~20 ms to ~8 ms (issue 14).


class PhonePlace(msgspec.Struct, frozen=True, gc=False):
    """Where a phone number is registered (COMPLIANCE item 22, edge 5: the CALLED party's time): the IANA
    zones phonenumbers' data gives for it (empty when unknown), its ISO 3166-1 country and, when the
    number's geography names one, its ISO 3166-2 subdivision (``"US-FL"``). Built by
    :func:`prefcenter.domain.phones.place_of`."""

    zones: tuple[str, ...] = ()
    country: str | None = None
    region: str | None = None


class CustomerState(msgspec.Struct, frozen=True, gc=False):
    """What the gate needs to know about one customer, loaded by the store for one campaign."""

    customer_id: str
    timezone: str  # IANA zone name
    country: str  # ISO 3166-1 alpha-2
    channel: Channel | None  # the one chosen marketing channel, or None
    addresses: frozenset[Channel] = frozenset()  # channels the customer has a contact for
    suppressed: frozenset[Channel] = frozenset()  # channels whose contact address is suppressed
    subscribed: bool = False  # the campaign's topic is among the customer's topics
    quiet_hours: tuple[str, str] | None = None  # ("HH:MM", "HH:MM") local, start > end crosses midnight
    max_per_week: int | None = None
    paused_until: datetime | None = None  # aware
    # channels whose address carries a marketing-only suppression (an address-level unsubscribe, the
    # voice side of a texted STOP): marketing on them is denied `suppressed`, transactional still goes
    marketing_suppressed: frozenset[Channel] = frozenset()
    # for sms, voice and whatsapp contacts: where the number is registered (channel -> place)
    places: dict[str, PhonePlace] = msgspec.field(default_factory=dict)
    # the campaign's topic is not awaiting a double opt-in confirmation (rule 6b: ``not_confirmed``)
    confirmed: bool = True


class CampaignView(msgspec.Struct, frozen=True, gc=False):
    """The campaign as the gate sees it; ``channels`` order is the transactional fallback order."""

    campaign_id: str
    topic: str
    category: Category
    channels: tuple[Channel, ...]
    send_by: datetime | None = None


class Decision(msgspec.Struct, frozen=True, gc=False):
    """One answer; encodes to API.md's decision object. ``not_before`` is aware UTC, set only on defer."""

    customer_id: str
    verdict: Verdict
    reason: Reason
    channel: Channel | None
    not_before: datetime | None = None


# ---------------------------------------------------------------------------------------------------
# semantic checks


def instant_error(moment: datetime, field: str) -> FieldError | None:
    """Why ``moment`` (aware) is not an instant prefcenter accepts, or None."""
    try:
        utc = moment.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    if utc is None or not EARLIEST_INSTANT <= utc < LATEST_INSTANT:
        return FieldError(field, "must lie between 1900-01-01T00:00:00Z and 9000-01-01T00:00:00Z")
    return None


def check_instant(moment: datetime | None, field: str) -> None:
    """Raise InvalidInput naming ``field`` when ``moment`` is outside the accepted range."""
    if moment is not None and (error := instant_error(moment, field)) is not None:
        raise InvalidInput([error])


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def is_iana_zone(name: str) -> bool:
    return name in _zones() and name not in {"localtime", "Factory"}


def check_customer_id(customer_id: str, field: str = "customer_id") -> None:
    if not CUSTOMER_ID_RE.match(customer_id):
        raise InvalidInput(
            [FieldError(field, "must be 1-128 characters of A-Za-z0-9._:@-")], "Malformed customer id."
        )


def check_topic_id(topic_id: str, field: str = "topic_id") -> None:
    if not TOPIC_ID_RE.match(topic_id):
        raise InvalidInput(
            [FieldError(field, "must be 1-64 characters of a-z0-9_- starting with a letter or digit")],
            "Malformed topic id.",
        )


def locale_error(tag: str) -> str | None:
    if not langcodes.tag_is_valid(tag):
        return f"{tag!r} is not a valid BCP 47 language tag"
    return None


def normalise_email(address: str) -> str:
    """The address as email-validator normalises it; raises ValueError with a reason."""
    try:
        result = email_validator.validate_email(address, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise ValueError(str(exc)) from None
    return str(result.normalized)


def normalise_phone(number: str) -> str:
    """The number in E.164; it must already be written in E.164 and be a valid number."""
    if not E164_RE.match(number):
        raise ValueError("must be an E.164 number such as +48600100200")
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValueError("not a valid phone number for its country code")
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def check_profile(profile: Profile) -> Profile:
    """Validate the semantic rules; return the profile with contacts normalised."""
    errors: list[FieldError] = []
    if not is_iana_zone(profile.timezone):
        errors.append(FieldError("timezone", f"{profile.timezone!r} is not an IANA time zone name"))
    if (msg := locale_error(profile.locale)) is not None:
        errors.append(FieldError("locale", msg))
    if not profile.country.isupper() or pycountry.countries.get(alpha_2=profile.country) is None:
        errors.append(FieldError("country", f"{profile.country!r} is not an ISO 3166-1 alpha-2 code"))
    contacts: dict[str, str] = {}
    for channel, value in profile.contacts.items():
        try:
            if channel == "email":
                contacts[channel] = normalise_email(value)
            elif channel in PHONE_CHANNELS:
                contacts[channel] = normalise_phone(value)
            else:
                if not value.isprintable() or value.strip() != value:
                    raise ValueError("must be printable with no leading or trailing spaces")
                contacts[channel] = value
        except ValueError as exc:
            errors.append(FieldError(f"contacts.{channel}", str(exc)))
    if errors:
        raise InvalidInput(errors)
    return msgspec.structs.replace(profile, contacts=Contacts(**contacts))


def _evidence_errors(value: Any, path: str, errors: list[FieldError], depth: int = 0) -> None:
    if depth > 8:
        errors.append(FieldError(path, "nested too deeply (at most 8 levels)"))
        return
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int):
        if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
            errors.append(FieldError(path, "integers must lie within ±(2^53-1)"))
    elif isinstance(value, float):
        errors.append(FieldError(path, "floats are not allowed in evidence (use a string or an integer)"))
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            errors.append(FieldError(path, "not valid Unicode (lone surrogate)"))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _evidence_errors(item, f"{path}[{i}]", errors, depth + 1)
    elif isinstance(value, dict):
        for key, item in value.items():
            if not EVIDENCE_KEY_RE.match(key):
                # A key that is not printable is named quoted, so no line break reaches the answer.
                where = f"{path}.{key}" if key.isprintable() else f"{path}[{key!r}]"
                errors.append(FieldError(where, "keys must match [A-Za-z0-9_.-]{1,64}"))
            else:
                _evidence_errors(item, f"{path}.{key}", errors, depth + 1)
    else:  # pragma: no cover - msgspec decodes JSON into the types above only
        errors.append(FieldError(path, f"unsupported value of type {type(value).__name__}"))


def check_evidence(evidence: dict[str, Any], field: str = "provenance.evidence") -> None:
    errors: list[FieldError] = []
    _evidence_errors(evidence, field, errors)
    if not errors and len(msgspec.json.encode(evidence)) > EVIDENCE_MAX_BYTES:
        errors.append(FieldError(field, f"at most {EVIDENCE_MAX_BYTES} bytes of JSON"))
    if errors:
        raise InvalidInput(errors)


def check_preferences(write: PreferencesWrite, existing_marketing_topics: set[str]) -> None:
    errors: list[FieldError] = []
    if write.paused_until is not None and (error := instant_error(write.paused_until, "paused_until")):
        errors.append(error)
    if write.quiet_hours is not None and write.quiet_hours.start == write.quiet_hours.end:
        errors.append(FieldError("quiet_hours", "start and end must differ"))
    for i, topic in enumerate(write.topics):
        if topic not in existing_marketing_topics:
            errors.append(FieldError(f"topics[{i}]", f"{topic!r} is not a marketing topic"))
    if len(set(write.topics)) != len(write.topics):
        errors.append(FieldError("topics", "topics must not repeat"))
    try:
        check_evidence(write.provenance.evidence)
    except InvalidInput as exc:
        errors.extend(exc.errors)
    if errors:
        raise InvalidInput(errors)


#: Provenance sources whose consent was collected elsewhere, often by someone else (COMPLIANCE edge 11):
#: a grant from them is taken only with the proof of the original consent in its evidence.
IMPORTED_SOURCES: Final[frozenset[str]] = frozenset({"import", "crm"})
CONSENT_PROOF_KEYS: Final[tuple[str, ...]] = ("source_party", "consented_at", "method")
# RFC 3339 section 5.6 date-time: the offset is required (Z or +hh:mm), fractional seconds optional.
RFC3339_RE = re.compile(
    anchored(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
    )
)


def parse_rfc3339(text: str) -> datetime | None:
    """An RFC 3339 date-time with its offset as an aware datetime (nanoseconds cut to microseconds),
    or None when ``text`` is not one."""
    if not RFC3339_RE.match(text):
        return None
    head, sep, rest = text.upper().partition(".")
    if sep:  # datetime takes at most 6 fraction digits
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{head}.{rest[:digits][:6]}{rest[digits:]}"
    else:
        text = head
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:  # e.g. month 13, a 24:00 hour, an offset beyond 23:59
        return None


def imported_consent_errors(
    source: str, evidence: dict[str, Any], *, grants: bool, field: str = "provenance.evidence"
) -> list[FieldError]:
    """COMPLIANCE edge 11: a write from ``import`` or ``crm`` that grants marketing (it chooses a channel
    or adds a topic: a ``grant`` event) needs the proof of the original consent in its evidence:
    ``source_party`` (who collected it), ``consented_at`` (when: RFC 3339 with its offset, within the
    accepted instants) and ``method`` (how), each a non-empty string. Withdrawals and updates need none."""
    if source not in IMPORTED_SOURCES or not grants:
        return []
    errors: list[FieldError] = []
    for key in CONSENT_PROOF_KEYS:
        value = evidence.get(key)
        where = f"{field}.{key}"
        if value is None:
            errors.append(FieldError(where, f"required when source {source!r} grants marketing"))
        elif not isinstance(value, str) or not value.strip():
            errors.append(FieldError(where, "must be a non-empty string"))
        elif key == "consented_at":
            moment = parse_rfc3339(value)
            if moment is None:
                errors.append(FieldError(where, "must be an RFC 3339 date-time with an offset (Z, +hh:mm)"))
            elif (error := instant_error(moment, where)) is not None:
                errors.append(error)
    return errors


def check_topic(topic: Topic) -> None:
    errors: list[FieldError] = []
    for group, mapping in (("names", topic.names), ("descriptions", topic.descriptions)):
        for tag in mapping:
            if (msg := locale_error(tag)) is not None:
                errors.append(FieldError(f"{group}.{tag}", msg))
    if errors:
        raise InvalidInput(errors)
