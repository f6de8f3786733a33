"""Signed customer links: what a token claims, and the rules for when it holds (pure: no clock, no keys).

A token is signed elsewhere (``services/links.py``, itsdangerous); this module only knows its payload:

- ``ref`` — the customer's opaque ``customer_ref`` (a keyed hash). Never the customer id, which may be an
  email address: a token must carry no readable personal data.
- ``scope`` — ``"*"`` for everything, or one topic id (unsubscribe links scoped to a campaign's topic).
  Manage links are always ``"*"``.
- ``issued`` — when it was minted, in whole seconds since the Unix epoch (UTC).
- ``gen`` — optional 4th element: the customer's link generation (``customers.link_gen``, random hex set
  when the customer is created). A link opens a customer only when its generation equals the stored one,
  so a link dies with the person it was minted for: erasure deletes the row, and a new customer with the
  same ``customer_id`` (hence the same ``ref``) gets a new generation. Customers created before
  generations existed have ``''``; their links are minted, as before, as 3-element arrays, and a token
  without the element claims ``''``.

The purpose (``manage``, ``unsubscribe`` or ``confirm``) is not in the payload: it is the signature's
salt, so a token minted for one purpose never verifies as another.

Lifetimes (API.md "Customer pages", COMPLIANCE C27/F27/F28): manage links expire after 30 days (an
expired one whose signature is valid still lets the customer ask for a fresh one by email);
unsubscribe links must keep working at least 60 days (CASL) and at least 30 days after the send
(CAN-SPAM). Messages are often read months later, so unsubscribe links live 400 days: a little more than
a year, so a yearly newsletter's link still works.

Confirm links (double opt-in, issue 13) are always scoped to the one topic they confirm and live 30 days
(:data:`CONFIRM_LIFETIME`): a confirmation is asked for now, and a grant left unconfirmed for a month is
confirmed only by granting it again (a new mail). They carry the link generation as the others do, so
they die with the person.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

Purpose = Literal["manage", "unsubscribe", "confirm"]
PURPOSES: tuple[Purpose, ...] = ("manage", "unsubscribe", "confirm")
ALL_SCOPE = "*"

MANAGE_LIFETIME = timedelta(days=30)
UNSUBSCRIBE_LIFETIME = timedelta(days=400)
CONFIRM_LIFETIME = timedelta(days=30)
LIFETIMES: dict[str, timedelta] = {
    "manage": MANAGE_LIFETIME,
    "unsubscribe": UNSUBSCRIBE_LIFETIME,
    "confirm": CONFIRM_LIFETIME,
}

_REF_RE = r"^[0-9a-f]{64}\Z"
_SCOPE_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9_-]{0,63})\Z")
_GEN_RE = r"^[0-9a-f]{16,64}\Z"  # when present; '' (legacy customers) is spelled by leaving it out


class LinkClaims(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The signed payload, encoded as a compact JSON array ``[ref, scope, issued]`` or
    ``[ref, scope, issued, gen]`` (see :func:`claims_payload`)."""

    ref: Annotated[str, msgspec.Meta(pattern=_REF_RE)]
    scope: Annotated[str, msgspec.Meta(pattern=_SCOPE_RE.pattern)]
    issued: Annotated[int, msgspec.Meta(ge=0)]
    gen: Annotated[str, msgspec.Meta(pattern=_GEN_RE)] = ""

    @property
    def topic(self) -> str | None:
        """The one topic the link is about, or None for an all-scope link."""
        return None if self.scope == ALL_SCOPE else self.scope

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.issued, UTC)


class InvalidClaims(ValueError):
    """The payload is not a well-formed claim set (only possible with a valid signature over bad data)."""


def new_claims(
    customer_ref: str, purpose: Purpose, topic: str | None, issued_at: datetime, gen: str = ""
) -> LinkClaims:
    """Claims for a new link; manage links are always all-scope, confirm links always name their topic.
    ``gen``: the customer's link generation (``''`` for a customer created before generations existed)."""
    if purpose == "manage" and topic is not None:
        raise InvalidClaims("a manage link is never scoped to a topic")
    if purpose == "confirm" and topic is None:
        raise InvalidClaims("a confirm link is always scoped to its topic")
    scope = ALL_SCOPE if topic is None else topic
    raw: list[Any] = [customer_ref, scope, int(issued_at.timestamp())]
    if gen:
        raw.append(gen)
    return decode_claims(raw, purpose)


def claims_payload(claims: LinkClaims) -> list[Any]:
    """What is signed: ``[ref, scope, issued]``, plus ``gen`` when it is not empty (so a legacy
    customer's links are byte-for-byte what they were before generations)."""
    raw: list[Any] = [claims.ref, claims.scope, claims.issued]
    if claims.gen:
        raw.append(claims.gen)
    return raw


def same_person(claims: LinkClaims, link_gen: str) -> bool:
    """Whether a link was minted for the customer who now holds its ``ref``: the generations match."""
    return claims.gen == link_gen


def decode_claims(raw: Any, purpose: Purpose) -> LinkClaims:
    """Validate a verified payload into claims; raises :class:`InvalidClaims`."""
    try:
        claims = msgspec.convert(raw, LinkClaims)
    except msgspec.ValidationError as exc:
        raise InvalidClaims(str(exc)) from None
    if purpose == "manage" and claims.scope != ALL_SCOPE:
        raise InvalidClaims("a manage link must be all-scope")
    if purpose == "confirm" and claims.scope == ALL_SCOPE:
        raise InvalidClaims("a confirm link must name its topic")
    return claims


def expires_at(claims: LinkClaims, purpose: Purpose) -> datetime:
    return claims.issued_at + LIFETIMES[purpose]


def is_expired(claims: LinkClaims, purpose: Purpose, now: datetime) -> bool:
    """A link is good for its whole lifetime: expired from ``issued + lifetime`` on (half-open)."""
    return now >= expires_at(claims, purpose)
