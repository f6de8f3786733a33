"""Keyed pseudonyms: what the ledger and the suppression list store instead of personal data.

Three families, each keyed on its own so that no pseudonym of one family can equal one of another:

- ``customer_ref`` (API.md, the ledger): HMAC-SHA256 keyed with the UTF-8 bytes of
  ``PREFCENTER_SECRET_KEY`` over the UTF-8 customer id. Unchanged, and it must stay so.
- ``address_ref`` (suppressions, contacts, texts kept for review, suppression events): HMAC-SHA256 over
  ``email:<local part casefolded>@<domain as IDNA>`` / ``phone:<number>`` / ``push:<token>``, keyed with
  HMAC-SHA256(secret key, ``"prefcenter address-ref key/v2"``). The domain's IDNA form is its ASCII
  (punycode) form after UTS 46 mapping (the ``idna`` package), so ``Same.User@Example.COM`` and
  ``same.user@example.com``, and ``user@bücher.example`` and ``user@xn--bcher-kva.example``, share a ref
  (COMPLIANCE edge 13); a domain IDNA refuses (a domain literal) is casefolded.
- ``ip_ref`` (the pages' evidence): HMAC-SHA256 over ``ip:<ip>``, keyed with
  HMAC-SHA256(secret key, ``"prefcenter ip-ref key/v2"``).

The labels hold a space and a ``/``, so no valid customer id (1-128 of ``A-Za-z0-9._:@-``) equals one: a
derived key is never a ``customer_ref`` the ledger shows. Before v2 (issue 9, item 10) addresses and IPs
were keyed with the secret key itself, so the customer id ``email:ola@example.pl`` had a ``customer_ref``
equal to the ``address_ref`` of ``ola@example.pl``; :meth:`Pseudonymizer.legacy_address_ref` keeps that
v1 formula only to find and convert rows written before migration 0010 (``services/refs_upgrade.py``).
Before migration 0012 the whole email address was casefolded (a Unicode domain stayed Unicode):
:meth:`Pseudonymizer.pre_idna_address_ref` keeps that text only to find the suppressions held under it.
"""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache

import idna

ADDRESS_REF_KEY_LABEL = "prefcenter address-ref key/v2"
IP_REF_KEY_LABEL = "prefcenter ip-ref key/v2"


@lru_cache(maxsize=4096)
def _idna_domain(domain: str) -> str:
    """A domain's IDNA (ASCII) form after UTS 46 mapping; casefolded when IDNA refuses it. An ASCII
    domain is only lowercased: that is what UTS 46 maps it to whenever it accepts it."""
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain.casefold()


def _email_text(address: str) -> str:
    """An email address as compared: the local part casefolded, the domain as IDNA."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip().casefold()
    return f"{local.casefold()}@{_idna_domain(domain)}"


def _address_text(channel: str, address: str, *, idna_domain: bool = True) -> bytes:
    """The hashed text of an address: email case variants, an IDN and its punycode, and
    sms/voice/whatsapp share one text. ``idna_domain=False``: the text before migration 0012 (the whole
    email address casefolded)."""
    kind = "email" if channel == "email" else ("push" if channel == "push" else "phone")
    if kind != "email":
        normalised = address.strip()
    elif idna_domain:
        normalised = _email_text(address)
    else:
        normalised = address.strip().casefold()
    return f"{kind}:{normalised}".encode()


class Pseudonymizer:
    """Keyed with the UTF-8 bytes of ``PREFCENTER_SECRET_KEY`` (fixed for the database's life)."""

    __slots__ = ("_address_key", "_ip_key", "_key")

    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode("utf-8")
        self._address_key = hmac.new(self._key, ADDRESS_REF_KEY_LABEL.encode(), hashlib.sha256).digest()
        self._ip_key = hmac.new(self._key, IP_REF_KEY_LABEL.encode(), hashlib.sha256).digest()

    def customer_ref(self, customer_id: str) -> str:
        return hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def address_ref(self, channel: str, address: str) -> str:
        """The (v2) ref of a contact address; email case variants, an IDN and its punycode, and
        sms/voice/whatsapp share one ref."""
        return hmac.new(self._address_key, _address_text(channel, address), hashlib.sha256).hexdigest()

    def legacy_address_ref(self, channel: str, address: str) -> str:
        """The v1 ref of an address (keyed with the secret key itself, as ``customer_ref``, over the text
        before migration 0012): only to find rows written before migration 0010. Never store it."""
        text = _address_text(channel, address, idna_domain=False)
        return hmac.new(self._key, text, hashlib.sha256).hexdigest()

    def pre_idna_address_ref(self, channel: str, address: str) -> str:
        """The v2 ref as computed before migration 0012 (the whole email address casefolded): it differs
        from :meth:`address_ref` only for an email address with a non-ASCII domain. Only to find rows
        written before migration 0012. Never store it."""
        text = _address_text(channel, address, idna_domain=False)
        return hmac.new(self._address_key, text, hashlib.sha256).hexdigest()

    def ip_ref(self, ip: str) -> str:
        return hmac.new(self._ip_key, f"ip:{ip}".encode(), hashlib.sha256).hexdigest()
