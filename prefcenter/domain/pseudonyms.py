"""Keyed pseudonyms: what the ledger and the suppression list store instead of personal data."""

from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    """HMAC-SHA256 keyed with the UTF-8 bytes of ``PREFCENTER_SECRET_KEY`` (fixed for the database's life)."""

    __slots__ = ("_key",)

    def __init__(self, secret_key: str) -> None:
        self._key = secret_key.encode("utf-8")

    def customer_ref(self, customer_id: str) -> str:
        return hmac.new(self._key, customer_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def address_ref(self, channel: str, address: str) -> str:
        """The ref of a contact address; email case variants and sms/voice/whatsapp share one number ref."""
        kind = "email" if channel == "email" else ("push" if channel == "push" else "phone")
        normalised = address.strip().casefold() if kind == "email" else address.strip()
        return hmac.new(self._key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()

    def ip_ref(self, ip: str) -> str:
        return hmac.new(self._key, f"ip:{ip}".encode(), hashlib.sha256).hexdigest()
