"""Minting and verifying signed customer links (itsdangerous).

- **Keys.** ``PREFCENTER_LINK_KEYS`` lists signing keys newest first: the newest signs, every listed key
  still verifies, so a key is rotated by putting a new one in front and dropped once its links may have
  expired (400 days for unsubscribe links). Without it, one key is derived from the secret key:
  HMAC-SHA256(secret key, ``"prefcenter link signing key/v1"``) — the label can never be a customer id,
  an address or an IP label, so the derived key is never a pseudonym that appears in the ledger.
- **Salts.** One per purpose (``prefcenter.link.manage``, ``prefcenter.link.unsubscribe``): a manage
  token does not verify as an unsubscribe token or the reverse.
- **Signature.** HMAC-SHA256, base64url. The signature must be in canonical base64 (no spare bits set),
  so every one-character change of a token is rejected, not only most.
- **Claims** (``domain/tokens.py``): the customer's opaque ``customer_ref``, the scope (all or one
  topic), the issue time from the injected clock ``rt.now`` and the customer's link generation
  (``Customer.link_gen``). Expiry is checked against ``rt.now``; whoever resolves a token to a customer
  checks the generation with :func:`opens` (a mismatch is the same as an unknown customer).
- **Derived keys.** :func:`derived_key` derives a key from the secret key with a label; the labels
  live here (``DERIVED_KEY_LABEL`` for links, ``CSRF_KEY_LABEL`` for the pages' CSRF tokens, which are
  ``web/csrf.py``'s), so the log redaction can find every derived key in one place.
"""

from __future__ import annotations

import base64
import functools
import hashlib
from datetime import datetime
from typing import Any

import msgspec
from itsdangerous import BadSignature, URLSafeSerializer
from itsdangerous.signer import Signer

from prefcenter.domain.model import Customer
from prefcenter.domain.pseudonyms import Pseudonymizer
from prefcenter.domain.tokens import (
    InvalidClaims,
    LinkClaims,
    Purpose,
    claims_payload,
    decode_claims,
    is_expired,
    new_claims,
    same_person,
)
from prefcenter.services.runtime import Runtime

DERIVED_KEY_LABEL = "prefcenter link signing key/v1"
CSRF_KEY_LABEL = "prefcenter csrf key/v1"
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


_DERIVED: dict[tuple[str | bytes, str | bytes, str], bytes] = {}


class StrictSigner(Signer):
    """itsdangerous' Signer, but a signature must be canonical base64url.

    base64 of a 32-byte digest has two spare bits in its last character; the stock decoder ignores them,
    so four spellings of each signature would verify. Requiring the canonical one makes any change of any
    character of a token fail.
    """

    default_digest_method = staticmethod(hashlib.sha256)

    def derive_key(self, secret_key: str | bytes | None = None) -> bytes:
        """itsdangerous derives the key again for every signature; it only depends on the key and the
        salt, so it is kept (a few keys and purposes per process)."""
        key = self.secret_keys[-1] if secret_key is None else secret_key
        cache_key = (key, self.salt, self.key_derivation)
        derived = _DERIVED.get(cache_key)
        if derived is None:
            derived = _DERIVED[cache_key] = super().derive_key(secret_key)
        return derived

    def verify_signature(self, value: str | bytes, sig: str | bytes) -> bool:
        raw = sig.encode("ascii", "replace") if isinstance(sig, str) else sig
        if not raw or not set(raw) <= _B64URL:
            return False
        try:
            decoded = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
        except ValueError:
            return False
        if base64.urlsafe_b64encode(decoded).rstrip(b"=") != raw:
            return False
        return super().verify_signature(value, sig)


class _ClaimsJson:
    """The payload codec itsdangerous calls: msgspec JSON (compact, no whitespace)."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return msgspec.json.encode(obj).decode("utf-8")

    @staticmethod
    def loads(data: str | bytes, **_: Any) -> Any:
        return msgspec.json.decode(data)


class Verified(msgspec.Struct, frozen=True):
    """A token whose signature holds: its claims, and whether its lifetime is over."""

    claims: LinkClaims
    expired: bool


def signing_keys(rt: Runtime) -> tuple[str, ...]:
    """The link keys, newest first (``PREFCENTER_LINK_KEYS``, else one derived from the secret key)."""
    if rt.settings.link_keys:
        return rt.settings.link_keys
    return _derived_link_keys(rt.pseudonyms)


@functools.lru_cache(maxsize=8)
def _derived_link_keys(pseudonyms: Pseudonymizer) -> tuple[str, ...]:
    return (derived_key(pseudonyms, DERIVED_KEY_LABEL),)


def derived_key(pseudonyms: Pseudonymizer, label: str) -> str:
    """HMAC-SHA256(secret key, ``label``), hex: a key of its own for each label (see the labels above)."""
    return pseudonyms.customer_ref(label)


@functools.lru_cache(maxsize=32)
def _serializer(keys_newest_first: tuple[str, ...], purpose: Purpose) -> URLSafeSerializer:
    return URLSafeSerializer(
        list(reversed(keys_newest_first)),  # itsdangerous: oldest to newest, the last one signs
        salt=f"prefcenter.link.{purpose}",
        serializer=_ClaimsJson,
        signer=StrictSigner,
    )


def mint_token(
    rt: Runtime,
    customer_ref: str,
    purpose: Purpose,
    topic: str | None = None,
    *,
    gen: str = "",
    issued_at: datetime | None = None,
) -> str:
    """A signed token; ``gen`` is the customer's ``link_gen``. ``issued_at`` (default ``rt.now()``) lets
    a page hand out a manage link that ends no later than one minted with the link it came from."""
    claims = new_claims(customer_ref, purpose, topic, issued_at or rt.now(), gen)
    token: str = _serializer(signing_keys(rt), purpose).dumps(claims_payload(claims))
    return token


def verify_token(rt: Runtime, token: str, purpose: Purpose) -> Verified | None:
    """The claims of a genuine token of that purpose (expired or not); None for anything else."""
    if not token or len(token) > 1024 or not token.isascii():
        return None
    try:
        raw = _serializer(signing_keys(rt), purpose).loads(token)
        claims = decode_claims(raw, purpose)
    except (BadSignature, InvalidClaims, msgspec.DecodeError, ValueError):
        return None
    return Verified(claims=claims, expired=is_expired(claims, purpose, rt.now()))


def opens(claims: LinkClaims, customer: Customer | None) -> bool:
    """Whether verified claims open this customer: the customer exists, holds the claimed ``ref`` and
    has the claimed link generation (a re-created customer with the same id does not)."""
    return (
        customer is not None
        and customer.customer_ref == claims.ref
        and same_person(claims, customer.link_gen)
    )


def public_base(rt: Runtime) -> str:
    return rt.settings.public_url.rstrip("/")


def manage_url(rt: Runtime, customer: Customer) -> str:
    return f"{public_base(rt)}/p/{mint_token(rt, customer.customer_ref, 'manage', gen=customer.link_gen)}"


def unsubscribe_url(rt: Runtime, customer: Customer, topic: str | None) -> str:
    token = mint_token(rt, customer.customer_ref, "unsubscribe", topic, gen=customer.link_gen)
    return f"{public_base(rt)}/u/{token}"


def mint_links(rt: Runtime, customer: Customer, topic: str | None) -> tuple[str, str]:
    """``(manage_url, unsubscribe_url)`` for a customer; the unsubscribe link is scoped to ``topic``
    (None: all marketing). No I/O: cheap enough to call once per outgoing message."""
    return manage_url(rt, customer), unsubscribe_url(rt, customer, topic)
