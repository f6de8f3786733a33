"""Email over SMTP (aiosmtplib), with a small pool of persistent connections.

Outcome classes (API.md "Sending"): 5xx at RCPT, or any enhanced status 5.1.x, is a permanent rejection
of the recipient (``bounce``: the address is suppressed); another 5xx (authentication, content, MAIL
FROM) fails the message without suppressing anyone; 4xx, a refused or lost connection and a timeout are
temporary (``retry``).

A message goes as MAIL (with SIZE where the server offers it), RCPT and DATA on a pooled connection
greeted once (EHLO, HELO where EHLO is refused): what aiosmtplib's ``sendmail`` does, without its
per-message work that is already done here: the sender is parsed once, and :func:`build_email`'s bytes
have CRLF line endings already, so their size is their length (``sendmail`` re-parses both addresses
and normalises the whole message once more just to count it).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import aiosmtplib
import structlog

from prefcenter.config import Settings
from prefcenter.messaging.email import Rendered, build_email
from prefcenter.messaging.transports import Outcome

log = structlog.get_logger("prefcenter.smtp")
_ENHANCED_5_1 = re.compile(r"^\s*5\.1\.\d{1,3}\b")


def client_options(s: Settings, timeout: float) -> dict[str, Any]:
    """aiosmtplib's connection arguments from the PREFCENTER_SMTP_* settings."""
    return {
        "hostname": s.smtp_host,
        "port": s.smtp_port,
        "use_tls": s.smtp_tls == "tls",
        "start_tls": s.smtp_tls == "starttls",
        "username": s.smtp_username,
        "password": s.smtp_password,
        "timeout": timeout,
    }


def _classify(code: int, message: str, at_rcpt: bool) -> Outcome:
    detail = f"{code} {message}".strip()[:300]
    if 500 <= code < 600:
        if at_rcpt or _ENHANCED_5_1.match(message):
            return Outcome("bounce", detail)
        return Outcome("fail", detail)
    return Outcome("retry", detail)


class SmtpTransport:
    def __init__(
        self, settings: Settings, now: Callable[[], datetime], *, concurrency: int = 8, timeout: float = 30.0
    ) -> None:
        self.settings = settings
        self.concurrency = concurrency
        self.timeout = timeout
        self._now = now
        self._from = settings.smtp_from
        self._sender = parseaddr(self._from)[1]
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(concurrency)

    def _client(self) -> aiosmtplib.SMTP:
        return aiosmtplib.SMTP(**client_options(self.settings, self.timeout))

    async def _connected(self) -> tuple[aiosmtplib.SMTP, bool]:
        while self._idle:
            client = self._idle.pop()
            if client.is_connected:
                return client, True
        client = self._client()
        await client.connect()
        if client.is_ehlo_or_helo_needed:  # connect() greets only for STARTTLS or a login
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        return client, False

    async def _transfer(self, client: aiosmtplib.SMTP, address: str, raw: bytes) -> None:
        """One message on a greeted connection; raises as ``sendmail`` does (a refused sender, recipient
        or DATA is an ``SMTPResponseException`` with the server's code)."""
        options = [f"SIZE={len(raw)}"] if client.supports_extension("size") else []
        await client.mail(self._sender, options=options)
        await client.rcpt(address)
        await client.data(raw)

    async def send(self, message: Rendered) -> Outcome:
        try:
            raw = build_email(message, self._from, self._now())
        except ValueError as exc:  # an address this transport cannot carry: retrying will not help
            return Outcome("fail", str(exc)[:300])
        async with self._slots:
            for attempt in range(2):
                client: aiosmtplib.SMTP | None = None
                reused = False
                try:
                    client, reused = await self._connected()
                    await self._transfer(client, message.address, raw)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    self._discard(client)
                    return _classify(exc.code, exc.message, at_rcpt=True)
                except aiosmtplib.SMTPServerDisconnected as exc:
                    self._discard(client)
                    if reused and attempt == 0:
                        continue  # an idle pooled connection was closed by the server: one fresh try
                    return Outcome("retry", f"connection lost: {exc}"[:300])
                except aiosmtplib.SMTPResponseException as exc:
                    self._discard(client)
                    return _classify(exc.code, exc.message, at_rcpt=False)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    self._discard(client)
                    return Outcome("retry", f"{type(exc).__name__}: {exc}"[:300])
                self._idle.append(client)
                return Outcome("sent")
        return Outcome("retry", "connection lost")  # pragma: no cover - the loop always returns

    def _discard(self, client: aiosmtplib.SMTP | None) -> None:
        if client is not None and client.is_connected:
            client.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for client in idle:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, OSError):
                    client.close()
