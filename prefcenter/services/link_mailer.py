"""Emailing a customer a fresh manage link: the expired-link page's one button, and the unsubscribe
page's "Email me a link to my preferences" (an unsubscribe link lives 400 days, a manage link 30, so the
unsubscribe page never hands out a manage link itself). The link carries the customer's link generation.

A small, separate sender (not the campaign dispatcher): one plain-text email over SMTP with aiosmtplib to
``PREFCENTER_SMTP_HOST``/``_PORT`` (TLS and login as configured), from ``PREFCENTER_SMTP_FROM``, to the
email address on file — never to an address the requester supplies. Requests are throttled per customer
(one email per :data:`RESEND_INTERVAL`, per process) so the button cannot be used to flood a mailbox.
No database transaction is open while it talks to the server.
"""

from __future__ import annotations

import email.policy
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal

import aiosmtplib
import structlog

from prefcenter.config import Settings
from prefcenter.domain.model import Customer
from prefcenter.messaging.transports.smtp import client_options
from prefcenter.services.links import manage_url
from prefcenter.services.runtime import Runtime

log = structlog.get_logger("prefcenter.link_mailer")

RESEND_INTERVAL = timedelta(minutes=10)
SMTP_TIMEOUT_SECONDS = 15.0
RenewOutcome = Literal["sent", "no_email", "throttled", "failed"]


class LinkMailer:
    """Sends one plain email per call; remembers when it last mailed each customer (by pseudonym)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._last_sent: dict[str, datetime] = {}

    def build(self, to: str, subject: str, body: str, now: datetime) -> EmailMessage:
        msg = EmailMessage()
        # As Address objects: set as a string, a display name with specials and non-ASCII (the
        # controller's name in the default From) would be re-encoded without its quotes.
        msg["From"] = email.policy.default.header_factory("From", self.settings.smtp_from).addresses
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(now)
        domain = parseaddr(self.settings.smtp_from)[1].rpartition("@")[2] or "localhost"
        msg["Message-ID"] = make_msgid(domain=domain)
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(body)
        return msg

    async def send(self, msg: EmailMessage) -> None:
        await aiosmtplib.send(msg, **client_options(self.settings, SMTP_TIMEOUT_SECONDS))

    async def send_fresh_link(
        self, rt: Runtime, customer: Customer, subject: str, body_with_url: str
    ) -> tuple[RenewOutcome, str | None]:
        """Mint a manage link and mail it; ``body_with_url`` holds ``{url}``. Returns the outcome and the
        address it went to (for the page to show masked)."""
        to = customer.profile.contacts.email
        if to is None:
            return "no_email", None
        now = rt.now()
        last = self._last_sent.get(customer.customer_ref)
        if last is not None and now - last < RESEND_INTERVAL:
            return "throttled", to
        msg = self.build(to, subject, body_with_url.replace("{url}", manage_url(rt, customer)), now)
        # Take the slot before sending, so two quick clicks cannot both send; give it back on failure.
        self._last_sent[customer.customer_ref] = now
        try:
            await self.send(msg)
        except (aiosmtplib.SMTPException, OSError) as exc:
            if last is None:
                self._last_sent.pop(customer.customer_ref, None)
            else:
                self._last_sent[customer.customer_ref] = last
            log.warning(
                "fresh link email failed", customer_ref=customer.customer_ref, error=type(exc).__name__
            )
            return "failed", to
        if len(self._last_sent) > 10_000:  # forget the oldest half; the throttle is a courtesy, not a ledger
            for ref, _ in sorted(self._last_sent.items(), key=lambda kv: kv[1])[:5_000]:
                del self._last_sent[ref]
        log.info("fresh link emailed", customer_ref=customer.customer_ref)
        return "sent", to
