"""structlog set-up: JSON lines in production, a readable console in development.

Standard-library loggers (uvicorn, litestar) are routed through the same processors, and a request id
bound with ``structlog.contextvars`` appears on every line logged while a request is handled.

What a log line never contains, at any level and in both modes:

- **Local variables.** Tracebacks are the standard library's plain text (no rich/better-exceptions
  frames with locals: a request handler's locals hold the secret key, the caller's API key, the
  customer's contacts).
- **Secrets and personal data.** A last-line-of-defence :class:`Redactor` runs on every line, ours and
  the libraries', and on the formatted traceback: the secret key, the link keys (configured or derived),
  the SMTP password, ``Bearer`` values and API keys, link tokens, email addresses and E.164-looking phone
  numbers become ``[redacted]``. Log calls themselves carry ``customer_ref`` (the pseudonym), never the
  customer id, which may be an email address and which erasure cannot reach in a log.
- **Leaky libraries.** aiosqlite logs every SQL statement's parameters at DEBUG, aiosmtplib/aiosmtpd the
  addresses, uvicorn's access log the raw path (``/p/<token>``): those loggers are pinned to WARNING
  whatever ``PREFCENTER_LOG_LEVEL`` says.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "[redacted]"

# Library loggers kept at WARNING at every level: what they say below it is noise or personal data.
PINNED_LOGGERS = (
    "aiosqlite",  # DEBUG: every statement with its parameters (customer ids, contacts)
    "aiosmtplib",  # DEBUG: the SMTP conversation (addresses)
    "aiosmtpd",
    "mail.log",  # aiosmtpd's logger: every SMTP command (addresses) at INFO
    "httpx",  # INFO: every request URL
    "httpcore",
    "asyncio",  # DEBUG: slow callbacks with their reprs
    "uvicorn.access",  # INFO: the raw path and query string (link tokens)
)

_KEY_CHARS = r"A-Za-z0-9_\-"
# Each pattern begins with a literal character (no leading look-behind), so the combined regex fails
# fast at most positions: about 25 ns a character.
_GENERIC_PATTERNS = (
    # "Authorization: Bearer <key>", in any case (the scheme word goes too: one replacement string)
    r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+[^\s'\",;)\]}]+",
    # prefcenter API keys wherever they appear (services/keys.py: "pck_" + token_urlsafe(32))
    rf"pck_[{_KEY_CHARS}]{{16,}}",
    # signed link tokens (itsdangerous: base64url JSON, or "." and zlib-compressed JSON; "." signature)
    rf"(?:\.eJ|WyJ|eyJ)[{_KEY_CHARS}]{{8,}}\.[{_KEY_CHARS}]{{43}}(?![{_KEY_CHARS}])",
    # E.164-looking phone numbers: "+" and 7-15 digits, the "+" not inside a word or after another "+"
    r"\+(?<![\w+]\+)[0-9]{7,15}(?![0-9])",
)
# Email addresses: the local part is matched from the start of its run only (linear time); applied only
# to text holding an "@" (a C-speed check), because a pattern that may start at any word character
# would make the combined regex three times slower on every line.
_EMAIL = re.compile(r"(?<![\w.%+\-])[\w.%+\-]+@[\w\-]+(?:\.[\w\-]+)+")


class Redactor:
    """A structlog processor replacing secrets and personal data in every string value with
    ``[redacted]``: one compiled regex pass per string, plus the email pattern where there is an "@"
    (it runs on every log line: a few microseconds for a request line).

    ``literals`` are exact values to hide (the secret key, link keys, derived keys, passwords); values
    shorter than 8 characters are ignored (they would redact ordinary words).
    """

    __slots__ = ("_sub",)

    def __init__(self, literals: Iterable[str] = ()) -> None:
        unique = sorted({v for v in literals if v and len(v) >= 8}, key=len, reverse=True)
        parts = [re.escape(v) for v in unique] + list(_GENERIC_PATTERNS)
        self._sub = re.compile("|".join(parts)).sub

    def redact(self, text: str) -> str:
        text = self._sub(REDACTED, text)
        return _EMAIL.sub(REDACTED, text) if "@" in text else text

    def _scrub(self, value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            return self.redact(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if depth < 4:
            if isinstance(value, dict):
                return {self._scrub(k, depth + 1): self._scrub(v, depth + 1) for k, v in value.items()}
            if isinstance(value, list):
                return [self._scrub(v, depth + 1) for v in value]
            if isinstance(value, tuple):
                return tuple(self._scrub(v, depth + 1) for v in value)
        # Anything else is rendered with repr() by both renderers: redact that text.
        return self.redact(repr(value))

    def __call__(
        self, logger: Any, name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        sub, email_sub = self._sub, _EMAIL.sub  # inlined redact(): this loop runs for every line
        for key, value in event_dict.items():
            if isinstance(value, str):
                value = sub(REDACTED, value)
                event_dict[key] = email_sub(REDACTED, value) if "@" in value else value
            elif value is not None and not isinstance(value, (bool, int, float)):
                event_dict[key] = self._scrub(value)
        return event_dict


def secret_values(
    secret_key: str | None, link_keys: Iterable[str] = (), *others: str | None
) -> tuple[str, ...]:
    """What :func:`configure_logging` should hide: the secret key, the link keys, and the keys derived
    from the secret key (services/links.py: the link signing key and the CSRF key, both hex), plus
    ``others`` (e.g. the SMTP password)."""
    values = [v for v in (secret_key, *link_keys, *others) if v]
    if secret_key:
        from prefcenter.domain.pseudonyms import Pseudonymizer
        from prefcenter.services.links import CSRF_KEY_LABEL, DERIVED_KEY_LABEL

        pseudonyms = Pseudonymizer(secret_key)
        values += [pseudonyms.customer_ref(DERIVED_KEY_LABEL), pseudonyms.customer_ref(CSRF_KEY_LABEL)]
    return tuple(values)


def configure_logging(*, production: bool, level: str = "info", secrets: Iterable[str] = ()) -> None:
    """Route structlog and the standard library through one handler on stderr.

    ``secrets``: exact values never to print (see :func:`secret_values`)."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Any
    if production:
        renderer = structlog.processors.JSONRenderer()
    else:
        # plain_traceback: never rich's default, which prints every frame's local variables.
        renderer = structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    structlog.configure(
        # filter_by_level first: a call below the level costs one check, not the whole chain.
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            # In this order for structlog's lines and the libraries' alike: the traceback becomes plain
            # text (no locals), then everything, traceback included, is redacted, then rendered.
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                Redactor(secrets),
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "litestar"):
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
    for name in PINNED_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
