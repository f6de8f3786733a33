"""Signed customer links: what a token claims, and the rules for when it holds (pure: no clock, no keys).

A token is signed elsewhere (``services/links.py``, itsdangerous); this module only knows its payload:

- ``ref`` — the customer's opaque ``customer_ref`` (a keyed hash). Never the customer id, which may be an
  email address: a token must carry no readable personal data.
- ``scope`` — ``"*"`` for everything, or one topic id (unsubscribe links scoped to a campaign's topic).
  Manage links are always ``"*"``.
- ``issued`` — when it was minted, in whole seconds since the Unix epoch (UTC).

The purpose (``manage`` or ``unsubscribe``) is not in the payload: it is the signature's salt, so a
token minted for one purpose never verifies as the other.

Lifetimes (API.md "Customer pages", COMPLIANCE C27/F27/F28): manage links expire after 30 days (an
expired one whose signature is valid still lets the customer ask for a fresh one by email);
unsubscribe links must keep working at least 60 days (CASL) and at least 30 days after the send
(CAN-SPAM). Messages are often read months later, so unsubscribe links live 400 days: a little more than
a year, so a yearly newsletter's link still works.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import msgspec

Purpose = Literal["manage", "unsubscribe"]
PURPOSES: tuple[Purpose, ...] = ("manage", "unsubscribe")
ALL_SCOPE = "*"

MANAGE_LIFETIME = timedelta(days=30)
UNSUBSCRIBE_LIFETIME = timedelta(days=400)
LIFETIMES: dict[str, timedelta] = {"manage": MANAGE_LIFETIME, "unsubscribe": UNSUBSCRIBE_LIFETIME}

_REF_RE = r"^[0-9a-f]{64}$"
_SCOPE_RE = re.compile(r"^(\*|[a-z0-9][a-z0-9_-]{0,63})$")


class LinkClaims(msgspec.Struct, frozen=True, array_like=True, forbid_unknown_fields=True):
    """The signed payload, encoded as a compact JSON array ``[ref, scope, issued]``."""

    ref: Annotated[str, msgspec.Meta(pattern=_REF_RE)]
    scope: Annotated[str, msgspec.Meta(pattern=_SCOPE_RE.pattern)]
    issued: Annotated[int, msgspec.Meta(ge=0)]

    @property
    def topic(self) -> str | None:
        """The one topic the link is about, or None for an all-scope link."""
        return None if self.scope == ALL_SCOPE else self.scope

    @property
    def issued_at(self) -> datetime:
        return datetime.fromtimestamp(self.issued, UTC)


class InvalidClaims(ValueError):
    """The payload is not a well-formed claim set (only possible with a valid signature over bad data)."""


def new_claims(customer_ref: str, purpose: Purpose, topic: str | None, issued_at: datetime) -> LinkClaims:
    """Claims for a new link; manage links are always all-scope."""
    if purpose == "manage" and topic is not None:
        raise InvalidClaims("a manage link is never scoped to a topic")
    scope = ALL_SCOPE if topic is None else topic
    raw = [customer_ref, scope, int(issued_at.timestamp())]
    return decode_claims(raw, purpose)


def decode_claims(raw: Any, purpose: Purpose) -> LinkClaims:
    """Validate a verified payload into claims; raises :class:`InvalidClaims`."""
    try:
        claims = msgspec.convert(raw, LinkClaims)
    except msgspec.ValidationError as exc:
        raise InvalidClaims(str(exc)) from None
    if purpose == "manage" and claims.scope != ALL_SCOPE:
        raise InvalidClaims("a manage link must be all-scope")
    return claims


def expires_at(claims: LinkClaims, purpose: Purpose) -> datetime:
    return claims.issued_at + LIFETIMES[purpose]


def is_expired(claims: LinkClaims, purpose: Purpose, now: datetime) -> bool:
    """A link is good for its whole lifetime: expired from ``issued + lifetime`` on (half-open)."""
    return now >= expires_at(claims, purpose)
