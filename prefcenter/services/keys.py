"""API keys: minted once, stored only as a SHA-256 hash, looked up with a short in-process cache."""

from __future__ import annotations

import hashlib
import secrets
import time

from prefcenter.domain.model import ROLES, Role
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import ApiKey

KEY_PREFIX = "pck_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


async def create_key(rt: Runtime, role: Role, name: str) -> tuple[ApiKey, str]:
    """Mint a key; returns the stored record and the key itself (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not 1 <= len(name) <= 100 or not name.isprintable():
        raise ValueError("name must be 1-100 printable characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    async with rt.store.write() as tx:
        record = await tx.create_key(name, role, hash_key(key), key[:10], rt.now())
    return record, key


async def revoke_key(rt: Runtime, key_id: int) -> None:
    async with rt.store.write() as tx:
        if not await tx.revoke_key(key_id, rt.now()):
            raise NotFound(f"no active key with id {key_id}")


class KeyCache:
    """Key hash -> record for ``ttl`` seconds, so a request costs no database round trip for its key.

    A revoked key stops working within ``ttl`` seconds in every process (PREFCENTER_KEY_CACHE_SECONDS).
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, ApiKey | None]] = {}

    async def authenticate(self, rt: Runtime, presented: str) -> ApiKey | None:
        digest = hash_key(presented)
        now = time.monotonic()
        hit = self._entries.get(digest)
        if hit is not None and hit[0] > now:
            record = hit[1]
        else:
            record = await rt.store.find_key(digest)
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[digest] = (now + self.ttl, record)
        if record is None or record.revoked_at is not None:
            return None
        return record
