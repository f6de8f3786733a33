"""The lists (API.md "Lists", "Message status"): one ``limit``, one opaque ``after`` cursor, keyset
pages over an immutable key so an item written while a client pages is seen at most once.

The cursor is base64url (unpadded) of the JSON array ``[list name, last key]``: opaque to clients, and a
cursor that does not decode, names another list or holds a key that is not a valid id is a 400 naming
``after`` (never a 500)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any, cast
from urllib.parse import urlencode

import msgspec

from prefcenter.domain.ledger import format_at
from prefcenter.domain.model import (
    CHANNELS,
    Channel,
    FieldError,
    InvalidInput,
    check_customer_id,
    check_topic_id,
)
from prefcenter.services.approvals import log_entry
from prefcenter.services.campaigns import OUTBOX_STATUSES, check_campaign_id
from prefcenter.services.errors import NotFound
from prefcenter.services.runtime import Runtime
from prefcenter.services.suppressions import Scope, SuppressionItem, check_channel

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MESSAGE_STATUSES = OUTBOX_STATUSES
_MAX_CURSOR = 512


def parse_limit(value: str | None, *, default: int | None = DEFAULT_LIMIT) -> int | None:
    """``limit``: an integer 1-1000; absent is ``default``."""
    if value is None:
        return default
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidInput([FieldError("limit", f"must be an integer 1-{MAX_LIMIT}")], "Malformed limit.")
    return int(value)


def encode_cursor(kind: str, key: str) -> str:
    raw = msgspec.json.encode([kind, key])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(value: str | None, kind: str, check: Any) -> str | None:
    """The last key of the previous page, from ``after``; ``check`` validates the key as an id."""
    if value is None:
        return None
    bad = InvalidInput([FieldError("after", "not a cursor this list gave")], "Malformed cursor.")
    if not value or len(value) > _MAX_CURSOR or not value.isascii():
        raise bad
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        decoded = msgspec.json.decode(raw, type=tuple[str, str])
    except (binascii.Error, ValueError, msgspec.DecodeError, msgspec.ValidationError):
        raise bad from None
    if decoded[0] != kind or encode_cursor(*decoded) != value:
        raise bad
    try:
        check(decoded[1])
    except InvalidInput:
        raise bad from None
    return decoded[1]


def page(
    items: list[dict[str, Any]], limit: int, kind: str, key: str
) -> tuple[list[dict[str, Any]], str | None]:
    """The page (the store was asked for ``limit + 1``) and the cursor of the next one, or None."""
    if len(items) <= limit:
        return items, None
    items = items[:limit]
    return items, encode_cursor(kind, items[-1][key])


def _check_channel_filter(channel: str | None) -> None:
    if channel is not None and channel != "none" and channel not in CHANNELS:
        raise InvalidInput(
            [FieldError("channel", f"must be one of {', '.join(CHANNELS)} or none")], "Unknown channel."
        )


async def list_customers(
    rt: Runtime,
    *,
    topic: str | None,
    channel: str | None,
    updated_since: datetime | None,
    limit: str | None,
    after: str | None,
) -> dict[str, Any]:
    n = parse_limit(limit) or DEFAULT_LIMIT
    if topic is not None:
        check_topic_id(topic, "topic")
    _check_channel_filter(channel)
    key = decode_cursor(after, "customers", check_customer_id)
    rows = await rt.store.list_customers(
        topic=topic,
        channel=channel,
        updated_since=None if updated_since is None else format_at(updated_since),
        after=key,
        limit=n + 1,
    )
    items, nxt = page(rows, n, "customers", "customer_id")
    return {"customers": items, "next": nxt}


async def list_campaigns(rt: Runtime, *, limit: str | None, after: str | None) -> dict[str, Any]:
    n = parse_limit(limit) or DEFAULT_LIMIT
    key = decode_cursor(after, "campaigns", check_campaign_id)
    rows = await rt.store.list_campaigns(after=key, limit=n + 1)
    items, nxt = page(rows, n, "campaigns", "campaign_id")
    return {"campaigns": items, "next": nxt}


async def campaign_messages(
    rt: Runtime, campaign_id: str, *, status: str | None, limit: str | None, after: str | None
) -> dict[str, Any]:
    check_campaign_id(campaign_id)
    n = parse_limit(limit) or DEFAULT_LIMIT
    if status is not None and status not in MESSAGE_STATUSES:
        raise InvalidInput(
            [FieldError("status", f"must be one of {', '.join(MESSAGE_STATUSES)}")], "Unknown status."
        )
    key = decode_cursor(after, "campaign-messages", check_customer_id)
    if await rt.store.get_campaign(campaign_id) is None:
        raise NotFound(f"no campaign {campaign_id!r}")
    rows = await rt.store.list_messages(
        campaign_id=campaign_id, customer_id=None, status=status, after=key, limit=n + 1
    )
    items, nxt = page(rows, n, "campaign-messages", "customer_id")
    return {"messages": items, "next": nxt}


async def customer_messages(
    rt: Runtime, customer_id: str, *, limit: str | None, after: str | None
) -> dict[str, Any]:
    check_customer_id(customer_id)
    n = parse_limit(limit) or DEFAULT_LIMIT
    key = decode_cursor(after, "customer-messages", check_campaign_id)
    if await rt.store.get_customer(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    rows = await rt.store.list_messages(
        campaign_id=None, customer_id=customer_id, status=None, after=key, limit=n + 1
    )
    items, nxt = page(rows, n, "customer-messages", "campaign_id")
    return {"messages": items, "next": nxt}


def _check_decision_id(value: str) -> None:
    if not value.isascii() or not value.isdigit() or len(value) > 18:
        raise InvalidInput([FieldError("after", "not a cursor this list gave")])


def _check_suppression_key(value: str) -> None:
    channel, _, ref = value.partition(":")
    if channel not in CHANNELS or not ref or not ref.isascii() or not ref.isalnum() or len(ref) > 128:
        raise InvalidInput([FieldError("after", "not a cursor this list gave")])


async def decisions_page(
    rt: Runtime, customer_id: str, campaign_id: str | None, *, limit: int, after: str | None
) -> tuple[list[dict[str, object]], str | None]:
    """A page of the decision log (in its order) and the cursor of the next page, or None."""
    key = decode_cursor(after, "decisions", _check_decision_id)
    rows = await rt.store.decision_page(
        customer_id, campaign_id, after=None if key is None else int(key), limit=limit + 1
    )
    if not rows and await rt.store.get_customer(customer_id) is None:
        raise NotFound(f"no customer {customer_id!r}")
    items = [log_entry(row) for _, row in rows[:limit]]
    nxt = encode_cursor("decisions", str(rows[limit - 1][0])) if len(rows) > limit else None
    return items, nxt


async def suppressions_page(
    rt: Runtime, channel: str | None, *, limit: int, after: str | None
) -> tuple[list[SuppressionItem], str | None]:
    """A page of suppressions in (channel, address_ref) order, and the next page's cursor or None."""
    if channel is not None:
        check_channel(channel)
    key = decode_cursor(after, "suppressions", _check_suppression_key)
    split = None if key is None else key.partition(":")
    rows = await rt.store.suppression_page(
        channel, after=None if split is None else (split[0], split[2]), limit=limit + 1
    )
    last = rows[limit - 1] if len(rows) > limit else None
    nxt = None if last is None else encode_cursor("suppressions", f"{last.channel}:{last.address_ref}")
    items = [
        SuppressionItem(r.address_ref, cast(Channel, r.channel), r.reason, r.since, cast(Scope, r.scope))
        for r in rows[:limit]
    ]
    return items, nxt


def next_link(path: str, query: list[tuple[str, str]], cursor: str | None) -> dict[str, str]:
    """The RFC 8288 ``Link: <...>; rel="next"`` header of the next page (none on the last page)."""
    if cursor is None:
        return {}
    params = [(k, v) for k, v in query if k != "after"] + [("after", cursor)]
    return {"Link": f'<{path}?{urlencode(params)}>; rel="next"'}
