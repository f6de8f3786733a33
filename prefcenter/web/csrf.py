"""CSRF protection of the customer pages' forms: a per-browser secret cookie, and in each form an HMAC of
it with the link token (double-submit cookie, bound to the link).

Every form on the pages except the RFC 8058 one-click: the first page view sets an HttpOnly,
SameSite=Lax cookie holding 32 random bytes (``__Host-`` prefixed and Secure when
``PREFCENTER_PUBLIC_URL`` is https); each form carries a hidden ``csrf`` field
``= HMAC-SHA256(csrf key, cookie value + link token)``, the csrf key being derived from the secret key
(``services/links.py``: :func:`~prefcenter.services.links.derived_key` with ``CSRF_KEY_LABEL``). A POST
without the cookie or with a field that does not match is refused (403) and changes nothing. Another
site can neither read the cookie nor compute the field, and a field copied from one link does not work
for another. The presented field is compared as bytes, so any text a client sends (non-ASCII included)
is simply a mismatch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from typing import Any

from litestar import Request
from litestar.datastructures import Cookie

from prefcenter.services.links import CSRF_KEY_LABEL, derived_key
from prefcenter.services.runtime import Runtime

_BROWSER_SECRET = re.compile(r"^[A-Za-z0-9_-]{43}\Z")


# ---------------------------------------------------------------------------------------------------
# the browser's secret cookie


def _cookie_name(rt: Runtime) -> str:
    return "__Host-prefcenter_csrf" if _secure(rt) else "prefcenter_csrf"


def _secure(rt: Runtime) -> bool:
    return rt.settings.public_url.startswith("https://")


def browser_secret(rt: Runtime, request: Request[Any, Any, Any]) -> tuple[str, list[Cookie]]:
    """The browser's CSRF secret, and the cookie to set when it has none yet."""
    current = request.cookies.get(_cookie_name(rt))
    if current and _BROWSER_SECRET.match(current):
        return current, []
    value = secrets.token_urlsafe(32)
    cookie = Cookie(
        key=_cookie_name(rt), value=value, path="/", httponly=True, samesite="lax", secure=_secure(rt)
    )
    return value, [cookie]


def existing_browser_secret(rt: Runtime, request: Request[Any, Any, Any]) -> str | None:
    """The browser's CSRF secret if it sent a well-formed one (never sets a cookie)."""
    current = request.cookies.get(_cookie_name(rt))
    return current if current and _BROWSER_SECRET.match(current) else None


def csrf_ok(rt: Runtime, request: Request[Any, Any, Any], token: str, fields: dict[str, list[str]]) -> bool:
    """Whether a submitted form's ``csrf`` field is the one for this browser's cookie and link."""
    presented = (fields.get("csrf") or [""])[0]
    return csrf_valid(rt, existing_browser_secret(rt, request), token, presented)


# ---------------------------------------------------------------------------------------------------
# the form field


def csrf_key(rt: Runtime) -> bytes:
    """The key of the pages' CSRF tokens: derived from the secret key, separate from the link keys."""
    return derived_key(rt.pseudonyms, CSRF_KEY_LABEL).encode("ascii")


def csrf_token(rt: Runtime, browser_secret: str, link_token: str) -> str:
    """The hidden form field: HMAC over the per-browser cookie and the link token."""
    mac = hmac.new(csrf_key(rt), f"{browser_secret}\x00{link_token}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def csrf_valid(rt: Runtime, browser_secret: str | None, link_token: str, presented: str | None) -> bool:
    """Whether the presented field is the one for this cookie and link. Compared as bytes:
    ``hmac.compare_digest`` raises TypeError for a ``str`` that is not ASCII (issue 9, item 7), so a
    non-ASCII field is refused before it gets there."""
    if not browser_secret or not presented or not presented.isascii():
        return False  # a genuine field is base64url: anything else is a mismatch, never an error
    expected = csrf_token(rt, browser_secret, link_token).encode("ascii")
    return hmac.compare_digest(expected, presented.encode("ascii"))
