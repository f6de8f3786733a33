"""Keyed pseudonyms: what the ledger and the suppression list store instead of personal data.

Three families, each keyed on its own so that no pseudonym of one family can equal one of another:

- ``customer_ref`` (API.md, the ledger): HMAC-SHA256 keyed with the UTF-8 bytes of
  ``PREFCENTER_SECRET_KEY`` over the UTF-8 customer id. Unchanged, and it must stay so.
- ``address_ref`` (suppressions, contacts, texts kept for review, suppression events): HMAC-SHA256 over
  ``email:<casefolded>`` / ``phone:<number>`` / ``push:<token>``, keyed with
  HMAC-SHA256(secret key, ``"prefcenter address-ref key/v2"``).
- ``ip_ref`` (the pages' evidence): HMAC-SHA256 over ``ip:<ip>``, keyed with
  HMAC-SHA256(secret key, ``"prefcenter ip-ref key/v2"``).

The labels hold a space and a ``/``, so no valid customer id (1-128 of ``A-Za-z0-9._:@-``) equals one: a
derived key is never a ``customer_ref`` the ledger shows. Before v2 (issue 9, item 10) addresses and IPs
were keyed with the secret key itself, so the customer id ``email:ola@example.pl`` had a ``customer_ref``
equal to the ``address_ref`` of ``ola@example.pl``; :meth:`Pseudonymizer.legacy_address_ref` keeps that
v1 formula only to find and convert rows written before migration 0010 (``services/refs_upgrade.py``).
"""

from __future__ import annotations

import hashlib
import hmac

ADDRESS_REF_KEY_LABEL = "prefcenter address-ref key/v2"
IP_REF_KEY_LABEL = "prefcenter ip-ref key/v2"


def _address_text(channel: str, address: str) -> bytes:
    """The hashed text of an address: email case variants and sms/voice/whatsapp share one text."""
    kind = "email" if channel == "email" else ("push" if channel == "push" else "phone")
    normalised = address.strip().casefold() if kind == "email" else address.strip()
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
        """The (v2) ref of a contact address; email case variants and sms/voice/whatsapp share one ref."""
        return hmac.new(self._address_key, _address_text(channel, address), hashlib.sha256).hexdigest()

    def legacy_address_ref(self, channel: str, address: str) -> str:
        """The v1 ref of an address (keyed with the secret key itself, as ``customer_ref``): only to find
        rows written before migration 0010. Never store it."""
        return hmac.new(self._key, _address_text(channel, address), hashlib.sha256).hexdigest()

    def ip_ref(self, ip: str) -> str:
        return hmac.new(self._ip_key, f"ip:{ip}".encode(), hashlib.sha256).hexdigest()
