"""The email bytes the SMTP transport sends (built directly, not with EmailMessage): Python's email
package must read back exactly what was rendered, with no defects, for any text."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from aiosmtplib.protocol import normalize_message_line_endings
from hypothesis import given, settings
from hypothesis import strategies as st

from prefcenter.messaging.email import Rendered, build_email

AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
# Header text: any printable characters but line breaks (a rendered subject has them replaced).
header_text = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=120)
body_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=2000)


def message(**fields: object) -> Rendered:
    base: dict[str, object] = {
        "campaign_id": "black-friday",
        "customer_id": "c1",
        "channel": "email",
        "address": "ola@example.pl",
        "message_id": "<black-friday.0123456789abcdef@shop.example>",
        "marketing": True,
        "text": "Hello\n",
        "subject": "Hi",
        "html": "<p>Hello</p>",
        "unsubscribe_url": "https://prefs.example/u/tok",
        "manage_url": "https://prefs.example/p/tok",
    }
    return Rendered(**{**base, **fields})  # type: ignore[arg-type]


def parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    assert not msg.defects and all(not part.defects for part in msg.walk())
    return msg


@settings(max_examples=150, deadline=None)
@given(subject=header_text, display=header_text, text=body_text, html=body_text)
def test_any_text_reads_back_exactly(subject: str, display: str, text: str, html: str) -> None:
    sender = f'"{display.replace(chr(92), "").replace(chr(34), "")}" <news@shop.example>'
    raw = build_email(message(subject=subject, text=text, html=html), sender, AT)
    # The transport announces len(raw) as the SMTP SIZE: the bytes are already what DATA transmits.
    assert normalize_message_line_endings(raw) == raw
    msg = parse(raw)
    assert str(msg["Subject"]) == subject
    assert msg["From"].addresses[0].addr_spec == "news@shop.example"
    assert msg["To"] == "ola@example.pl"
    plain = msg.get_body(preferencelist=("plain",))
    rich = msg.get_body(preferencelist=("html",))
    assert plain is not None and rich is not None
    # Line endings travel as CRLF in base64-free form only when the text had them; base64 keeps bytes.
    assert plain.get_content() == text and rich.get_content() == html


def test_headers_of_marketing_and_transactional() -> None:
    raw = build_email(message(subject="Oferta dla Ciebie — 20%"), "Sklep Żabka <news@shop.example>", AT)
    assert raw.isascii() and b"\r\n\r\n" in raw
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    msg = parse(raw)
    assert msg["Subject"] == "Oferta dla Ciebie — 20%"
    assert msg["From"].addresses[0].display_name == "Sklep Żabka"
    assert msg["Message-ID"] == "<black-friday.0123456789abcdef@shop.example>"
    assert msg.get_all("List-Unsubscribe") == ["<https://prefs.example/u/tok>"]
    assert msg.get_all("List-Unsubscribe-Post") == ["List-Unsubscribe=One-Click"]
    assert msg["Date"].datetime == AT
    assert msg.get_content_type() == "multipart/alternative"
    transactional = parse(build_email(message(marketing=False), "news@shop.example", AT))
    assert transactional["List-Unsubscribe"] is None and transactional["List-Unsubscribe-Post"] is None


def test_sms_style_single_part_and_refusals() -> None:
    msg = parse(build_email(message(html=None, text="Tylko tekst"), "news@shop.example", AT))
    assert msg.get_content_type() == "text/plain" and msg.get_content() == "Tylko tekst"
    with pytest.raises(ValueError, match="line break"):
        build_email(message(subject="a\r\nBcc: x@evil.example"), "news@shop.example", AT)
    with pytest.raises(ValueError, match="SMTPUTF8"):
        build_email(message(address="zażółć@example.pl"), "news@shop.example", AT)
