"""The SMS opt-in confirmation (COMPLIANCE item 26; CTIA Messaging Principles & Best Practices, 5.1).

When a preference write makes a customer's channel ``sms`` with at least one marketing topic (from no
channel, another channel, or sms without a marketing topic), :func:`queue_sms_opt_in` writes one
``notifications`` row (migration 0015) in that write's own transaction; a write that changes nothing
writes nothing, and a customer has at most one waiting. The dispatcher's process sends it
(:func:`send_confirmations`, at the start of each dispatcher round) through the SMS transport, taking its
tokens from the channel's bucket (the policy's sms rate). The text is rendered as it leaves, in English:
the program name (``PREFCENTER_SMS_PROGRAM``), the message frequency (the tightest bound the policy's caps
and the customer's ``max_per_week`` put on a week, else "Msg frequency varies"), "Msg & data rates may
apply" and the HELP and STOP instructions; it is transactional and carries no marketing content.

Right before the hand-off each one is checked again: a suppressed number (a STOP, any sms suppression)
gets nothing (``suppressed``); an opt-in that ended meanwhile, or a customer without a number, cancels it
(``cancelled``). A temporary failure is retried with the dispatcher's backoff up to its attempts, then
``failed``. Delivery is at-least-once, as for the outbox, with one message id per row. Erasure deletes a
customer's rows with the customer.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import timedelta

import structlog

from prefcenter.domain.model import Customer, Preferences
from prefcenter.domain.policy import Caps
from prefcenter.domain.timewindows import to_us
from prefcenter.messaging.email import Rendered, message_id, sender_domain
from prefcenter.messaging.transports import Outcome, Transport
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import NotificationItem, NotificationUpdate, RateBucket, WriteTx

log = structlog.get_logger("prefcenter.confirmations")

SMS_OPT_IN = "sms_opt_in"
_WEEK = timedelta(days=7)


def _has_marketing(topics: list[str], categories: dict[str, str]) -> bool:
    return any(categories.get(t) == "marketing" for t in topics)


async def queue_sms_opt_in(tx: WriteTx, rt: Runtime, customer: Customer, new: Preferences) -> bool:
    """In the preference write's transaction (``customer`` holds the preferences before it): queue the
    confirmation when the write is an SMS opt-in. True when one was queued."""
    if new.channel != "sms" or not new.topics or customer.profile.contacts.sms is None:
        return False
    old = customer.preferences
    categories = await tx.topic_categories(sorted(set(old.topics) | set(new.topics)))
    if not _has_marketing(new.topics, categories):
        return False
    if old.channel == "sms" and _has_marketing(old.topics, categories):
        return False  # already opted in: nothing to confirm
    queued = await tx.queue_notification(customer.customer_id, SMS_OPT_IN, rt.now())
    if queued:
        log.info("sms opt-in confirmation queued", customer_ref=customer.customer_ref)
    return queued


def weekly_bound(caps: Caps, max_per_week: int | None) -> int | None:
    """The most marketing messages any 7 days can hold under ``caps`` (rolling windows: a window of
    ``h`` < 168 hours allows ``limit`` in each of the ceil(168 / h) windows that cover a week) and the
    customer's own weekly cap; None when nothing bounds it."""
    bounds = [max_per_week] if max_per_week is not None else []
    for limit, window in caps.rules():
        bounds.append(limit if window >= _WEEK else limit * math.ceil(_WEEK / window))
    return min(bounds) if bounds else None


def frequency_text(caps: Caps, max_per_week: int | None) -> str:
    n = weekly_bound(caps, max_per_week)
    if n is None:
        return "Msg frequency varies"
    return f"Up to {n} msg{'' if n == 1 else 's'}/week"


def opt_in_text(program: str, frequency: str) -> str:
    return (
        f"{program}: you are subscribed to marketing texts. {frequency}. Msg & data rates may apply. "
        "Reply HELP for help, STOP to opt out."
    )


async def _prepare(tx: WriteTx, rt: Runtime, item: NotificationItem) -> NotificationUpdate | Rendered:
    """The check right before the hand-off: the message to send, or the row's final state."""
    customer = await tx.get_customer(item.customer_id)
    number = customer.profile.contacts.sms if customer is not None else None
    if customer is None or number is None:
        return NotificationUpdate(item.id, "cancelled", last_error="no sms number")
    if await tx.suppression_reason("sms", rt.pseudonyms.address_ref("sms", number)) is not None:
        return NotificationUpdate(item.id, "suppressed", last_error="the number is suppressed")
    prefs = customer.preferences
    if prefs.channel != "sms" or not _has_marketing(prefs.topics, await tx.topic_categories(prefs.topics)):
        return NotificationUpdate(item.id, "cancelled", last_error="the opt-in ended before it was sent")
    assert rt.policy is not None
    key = f"sms-opt-in-{item.id}"
    return Rendered(
        campaign_id=key,
        customer_id=customer.customer_id,
        channel="sms",
        address=number,
        message_id=message_id(key, customer.customer_ref, sender_domain(rt.settings.smtp_from)),
        marketing=False,
        text=opt_in_text(rt.settings.sms_program, frequency_text(rt.policy.policy.caps, prefs.max_per_week)),
    )


async def _hand_off(transport: Transport, message: Rendered) -> Outcome:
    try:
        return await transport.send(message)
    except Exception as exc:  # a transport bug must not lose the confirmation: retry it
        log.exception("transport raised", channel="sms")
        return Outcome("retry", f"transport error: {type(exc).__name__}")


def claim_limit(bucket: RateBucket) -> int:
    """How many confirmations a round claims: at most two seconds of the sms rate."""
    return max(1, min(500, math.ceil(2 * bucket.rate)))


async def send_confirmations(
    rt: Runtime,
    transport: Transport,
    bucket: RateBucket,
    items: list[NotificationItem],
    *,
    max_attempts: int,
    backoff: Callable[[int], timedelta],
) -> int:
    """The confirmations the round claimed (in its one claim transaction, :func:`claim_limit` of them): a
    chunk at a time take the chunk's tokens, check it, hand it to ``transport`` and mark the outcomes.
    Returns how many were handled."""
    size = max(1, int(bucket.capacity))
    for start in range(0, len(items), size):
        chunk = items[start : start + size]
        await bucket.acquire(len(chunk))
        ready: list[tuple[NotificationItem, Rendered]] = []
        async with rt.store.write() as tx:
            updates: list[NotificationUpdate] = []
            for item in chunk:
                prepared = await _prepare(tx, rt, item)
                if isinstance(prepared, NotificationUpdate):
                    updates.append(prepared)
                    log.info(
                        "sms opt-in confirmation not sent", status=prepared.status, reason=prepared.last_error
                    )
                else:
                    ready.append((item, prepared))
                    updates.append(NotificationUpdate(item.id, "queued", attempted=True, keep_lease=True))
            await tx.update_notifications(updates, rt.now())
        outcomes = await asyncio.gather(*(_hand_off(transport, message) for _, message in ready))
        marks: list[NotificationUpdate] = []
        for (item, _), outcome in zip(ready, outcomes, strict=True):
            attempts = item.attempts + 1
            if outcome.kind == "sent":
                marks.append(NotificationUpdate(item.id, "sent"))
            elif outcome.kind == "retry" and attempts < max_attempts:
                when = to_us(rt.now() + backoff(attempts))
                marks.append(
                    NotificationUpdate(item.id, "queued", not_before_us=when, last_error=outcome.detail)
                )
            else:
                marks.append(NotificationUpdate(item.id, "failed", last_error=outcome.detail))
            if outcome.kind != "sent":
                log.info("sms opt-in confirmation not delivered", outcome=outcome.kind, detail=outcome.detail)
        async with rt.store.write() as tx:
            await tx.update_notifications(marks, rt.now())
    return len(items)
