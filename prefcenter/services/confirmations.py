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

The double opt-in confirmation mail (issue 13; kind ``email_double_opt_in``, queued by the store when a
customer gains a ``double_opt_in`` topic, see :mod:`prefcenter.services.double_opt_in`) is sent from the
same rounds, by email: a plain-text, transactional mail (no List-Unsubscribe; the footer's preference
link and sender) in the customer's language with the link ``{public_url}/c/{token}``. Checked again right
before the hand-off: no email address (or the customer is gone) or a grant that ended cancels it, a
suppressed address gets nothing. It goes through the email transport the dispatcher passes
(``email=``), else one built from the settings as the dispatcher builds its own.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from datetime import timedelta

import structlog

from prefcenter.domain.model import Customer, Preferences, Topic
from prefcenter.domain.policy import Caps
from prefcenter.domain.texts import topic_name
from prefcenter.domain.timewindows import to_us
from prefcenter.logging import Redactor
from prefcenter.messaging.email import Rendered, footer_text, language, message_id, sender_domain
from prefcenter.messaging.transports import Outcome, Transport
from prefcenter.messaging.transports.smtp import SmtpTransport
from prefcenter.services.links import manage_url, mint_token, public_base
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import NotificationItem, NotificationUpdate, RateBucket, WriteTx

log = structlog.get_logger("prefcenter.confirmations")

SMS_OPT_IN = "sms_opt_in"
# A server's reply may echo the recipient: kept and logged only redacted (as the dispatcher does).
_redact = Redactor().redact
EMAIL_DOUBLE_OPT_IN = "email_double_opt_in"  # written by the store (migration 0021)
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


#: The confirmation mail, per language (the pages' own texts are in web/locales). ``{topic}`` is the
#: topic's name in that language, ``{name}`` the controller's, ``{url}`` the confirmation link.
MAIL_TEXTS: dict[str, dict[str, str]] = {
    "en": {
        "subject": "Please confirm: {topic}",
        "body": "You asked to receive “{topic}” from {name}. To confirm, open this link and press the "
        "button on the page:\n\n{url}\n\nUntil you confirm, we send you nothing about it. If you did "
        "not ask for this, ignore this email. The link works for 30 days.",
    },
    "ro": {
        "subject": "Vă rugăm să confirmați: {topic}",
        "body": "Ați cerut să primiți „{topic}” de la {name}. Pentru a confirma, deschideți acest link "
        "și apăsați butonul de pe pagină:\n\n{url}\n\nPână nu confirmați, nu vă trimitem nimic despre "
        "acest subiect. Dacă nu ați cerut acest lucru, ignorați acest e-mail. Linkul funcționează "
        "30 de zile.",
    },
    "pl": {
        "subject": "Prosimy o potwierdzenie: {topic}",
        "body": "Poproszono o otrzymywanie „{topic}” od {name}. Aby potwierdzić, otwórz ten link i "
        "naciśnij przycisk na stronie:\n\n{url}\n\nDopóki nie potwierdzisz, nic w tej sprawie nie "
        "wyślemy. Jeśli to nie Ty, zignoruj tę wiadomość. Link działa przez 30 dni.",
    },
    "el": {
        "subject": "Παρακαλούμε επιβεβαιώστε: {topic}",
        "body": "Ζητήσατε να λαμβάνετε «{topic}» από {name}. Για να το επιβεβαιώσετε, ανοίξτε αυτόν τον "
        "σύνδεσμο και πατήστε το κουμπί στη σελίδα:\n\n{url}\n\nΜέχρι να επιβεβαιώσετε, δεν σας "
        "στέλνουμε τίποτα σχετικά. Αν δεν το ζητήσατε εσείς, αγνοήστε αυτό το μήνυμα. Ο σύνδεσμος "
        "ισχύει 30 ημέρες.",
    },
    "fa": {
        "subject": "لطفاً تأیید کنید: {topic}",
        "body": "شما درخواست کرده‌اید «{topic}» را از {name} دریافت کنید. برای تأیید، این پیوند را باز "
        "کنید و دکمهٔ صفحه را بزنید:\n\n{url}\n\nتا تأیید نکنید، چیزی در این باره برایتان نمی‌فرستیم. "
        "اگر این درخواست از شما نبوده، این ایمیل را نادیده بگیرید. این پیوند ۳۰ روز کار می‌کند.",
    },
}


def confirm_url(rt: Runtime, customer: Customer, topic: str) -> str:
    token = mint_token(rt, customer.customer_ref, "confirm", topic, gen=customer.link_gen)
    return f"{public_base(rt)}/c/{token}"


def render_mail(rt: Runtime, customer: Customer, item: NotificationItem, topic: Topic | None) -> Rendered:
    """The confirmation mail of ``item`` to the customer's email address (which must exist)."""
    address = customer.profile.contacts.email
    assert address is not None
    lang = language(customer.profile.locale)
    texts = MAIL_TEXTS.get(lang, MAIL_TEXTS["en"])
    controller = rt.settings.controller
    name = topic_name(topic, item.topic, lang)  # as the confirmation page names it
    values = {"topic": name, "name": controller.name, "url": confirm_url(rt, customer, item.topic)}
    body = texts["body"]
    for key, value in values.items():
        body = body.replace("{" + key + "}", value)
    manage = manage_url(rt, customer)
    text = f"{body}\n\n{footer_text(lang, controller, manage, None, False)}"
    subject = texts["subject"].replace("{topic}", name).replace("\r", " ").replace("\n", " ")
    return _transactional(
        rt, customer, f"double-opt-in-{item.id}", "email", address, text, subject=subject, manage_url=manage
    )


def _transactional(
    rt: Runtime,
    customer: Customer,
    key: str,
    channel: str,
    address: str,
    text: str,
    *,
    subject: str | None = None,
    manage_url: str | None = None,
) -> Rendered:
    """A confirmation as a transactional message (never marketing) whose id is made of ``key`` (one
    per notifications row, so a retry of the row keeps its message id)."""
    return Rendered(
        campaign_id=key,
        customer_id=customer.customer_id,
        channel=channel,
        address=address,
        message_id=message_id(key, customer.customer_ref, sender_domain(rt.settings.smtp_from)),
        marketing=False,
        text=text,
        subject=subject,
        manage_url=manage_url,
    )


async def _reachable(
    tx: WriteTx, rt: Runtime, item: NotificationItem, channel: str, missing: str, suppressed: str
) -> tuple[Customer, str] | NotificationUpdate:
    """The customer and its ``channel`` contact, or the row's final state: cancelled (``missing``)
    without one or without the customer, suppressed (``suppressed``) when the list holds it."""
    customer = await tx.get_customer(item.customer_id)
    address = customer.profile.contacts.get(channel) if customer is not None else None
    if customer is None or address is None:
        return NotificationUpdate(item.id, "cancelled", last_error=missing)
    if await tx.suppression_reason(channel, rt.pseudonyms.address_ref(channel, address)) is not None:
        return NotificationUpdate(item.id, "suppressed", last_error=suppressed)
    return customer, address


async def _prepare_mail(tx: WriteTx, rt: Runtime, item: NotificationItem) -> NotificationUpdate | Rendered:
    """The check right before the hand-off: the mail to send, or the row's final state (no address, a
    suppressed address, a grant that ended)."""
    reached = await _reachable(tx, rt, item, "email", "no email address", "the address is suppressed")
    if isinstance(reached, NotificationUpdate):
        return reached
    customer = reached[0]
    if item.topic not in customer.preferences.topics:
        return NotificationUpdate(item.id, "cancelled", last_error="the grant ended before it was sent")
    return render_mail(rt, customer, item, await tx.get_topic(item.topic))


async def _prepare(tx: WriteTx, rt: Runtime, item: NotificationItem) -> NotificationUpdate | Rendered:
    """The check right before the hand-off: the message to send, or the row's final state."""
    if item.kind == EMAIL_DOUBLE_OPT_IN:
        return await _prepare_mail(tx, rt, item)
    reached = await _reachable(tx, rt, item, "sms", "no sms number", "the number is suppressed")
    if isinstance(reached, NotificationUpdate):
        return reached
    customer, number = reached
    prefs = customer.preferences
    if prefs.channel != "sms" or not _has_marketing(prefs.topics, await tx.topic_categories(prefs.topics)):
        return NotificationUpdate(item.id, "cancelled", last_error="the opt-in ended before it was sent")
    assert rt.policy is not None
    text = opt_in_text(rt.settings.sms_program, frequency_text(rt.policy.policy.caps, prefs.max_per_week))
    return _transactional(rt, customer, f"sms-opt-in-{item.id}", "sms", number, text)


async def _hand_off(transports: dict[str, Transport], message: Rendered) -> Outcome:
    try:
        return await transports[message.channel].send(message)
    except Exception as exc:  # a transport bug must not lose the confirmation: retry it
        log.exception("transport raised", channel=message.channel)
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
    email: Transport | None = None,
) -> int:
    """The confirmations the round claimed (in its one claim transaction, :func:`claim_limit` of them): a
    chunk at a time take the chunk's tokens, check it, hand it to ``transport`` (SMS) or ``email`` (the
    double opt-in mails; None: an SMTP transport built from the settings for this call) and mark the
    outcomes. Returns how many were handled."""
    own_email: SmtpTransport | None = None
    if email is None and any(item.kind == EMAIL_DOUBLE_OPT_IN for item in items):
        email = own_email = SmtpTransport(rt.settings, rt.now)
    transports: dict[str, Transport] = {"sms": transport}
    if email is not None:
        transports["email"] = email
    try:
        return await _send_all(rt, transports, bucket, items, max_attempts=max_attempts, backoff=backoff)
    finally:
        if own_email is not None:
            await own_email.close()


async def _send_all(
    rt: Runtime,
    transports: dict[str, Transport],
    bucket: RateBucket,
    items: list[NotificationItem],
    *,
    max_attempts: int,
    backoff: Callable[[int], timedelta],
) -> int:
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
                        "confirmation not sent",
                        kind=item.kind,
                        status=prepared.status,
                        reason=prepared.last_error,
                    )
                else:
                    ready.append((item, prepared))
                    updates.append(NotificationUpdate(item.id, "queued", attempted=True, keep_lease=True))
            await tx.update_notifications(updates, rt.now())
        outcomes = await asyncio.gather(*(_hand_off(transports, message) for _, message in ready))
        marks: list[NotificationUpdate] = []
        for (item, _), outcome in zip(ready, outcomes, strict=True):
            attempts = item.attempts + 1
            detail = _redact(outcome.detail) if outcome.detail else outcome.detail
            if outcome.kind == "sent":
                marks.append(NotificationUpdate(item.id, "sent"))
            elif outcome.kind == "retry" and attempts < max_attempts:
                when = to_us(rt.now() + backoff(attempts))
                marks.append(NotificationUpdate(item.id, "queued", not_before_us=when, last_error=detail))
            else:
                marks.append(NotificationUpdate(item.id, "failed", last_error=detail))
            if outcome.kind != "sent":
                log.info("confirmation not delivered", kind=item.kind, outcome=outcome.kind, detail=detail)
        async with rt.store.write() as tx:
            await tx.update_notifications(marks, rt.now())
    return len(items)
