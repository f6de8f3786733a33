"""Keyed pseudonyms are separate families (issue 9, item 10): no customer_ref equals an address or IP ref."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefcenter.domain.model import CHANNELS, InvalidInput, check_customer_id
from prefcenter.domain.pseudonyms import ADDRESS_REF_KEY_LABEL, IP_REF_KEY_LABEL, Pseudonymizer
from prefcenter.services.links import CSRF_KEY_LABEL, DERIVED_KEY_LABEL

SECRET = "unit-test-secret-key-123"
P = Pseudonymizer(SECRET)

customer_ids = st.from_regex(r"[A-Za-z0-9._:@-]{1,128}", fullmatch=True)
addresses = st.text(min_size=1, max_size=80)
ips = st.one_of(st.ip_addresses().map(str), st.text(min_size=1, max_size=40))
channels = st.sampled_from(CHANNELS)


def kind_text(channel: str, address: str) -> str:
    """The text the v1 ref of an address hashed: a customer id of that text met its address_ref."""
    kind = "email" if channel == "email" else ("push" if channel == "push" else "phone")
    return f"{kind}:{address.strip().casefold() if kind == 'email' else address.strip()}"


def test_the_reported_collisions_are_gone() -> None:
    """The reproduction: id ``email:ola@example.pl`` vs address ``ola@example.pl``, id ``ip:127.0.0.1``
    vs IP ``127.0.0.1``. The v1 formula collided (kept only to find old rows); v2 does not."""
    assert P.legacy_address_ref("email", "ola@example.pl") == P.customer_ref("email:ola@example.pl")
    assert P.address_ref("email", "ola@example.pl") != P.customer_ref("email:ola@example.pl")
    # an inbound SMS "from" may come without its "+", and then it is a valid customer id's tail
    assert P.legacy_address_ref("sms", "48600100200") == P.customer_ref("phone:48600100200")
    assert P.address_ref("sms", "48600100200") != P.customer_ref("phone:48600100200")
    assert P.address_ref("push", "device-token") != P.customer_ref("push:device-token")
    assert P.ip_ref("127.0.0.1") != P.customer_ref("ip:127.0.0.1")


def test_customer_ref_is_the_documented_hmac() -> None:
    """API.md: hex HMAC-SHA256 keyed with the UTF-8 bytes of the secret key over the UTF-8 customer id."""
    for cid in ("c1", "email:ola@example.pl", "żółw"):
        expected = hmac.new(SECRET.encode(), cid.encode(), hashlib.sha256).hexdigest()
        assert P.customer_ref(cid) == expected


def test_v2_keys_are_derived_from_the_secret_with_labels_no_customer_id_can_be() -> None:
    for label in (ADDRESS_REF_KEY_LABEL, IP_REF_KEY_LABEL, DERIVED_KEY_LABEL, CSRF_KEY_LABEL):
        with pytest.raises(InvalidInput):
            check_customer_id(label)
    assert len({ADDRESS_REF_KEY_LABEL, IP_REF_KEY_LABEL, DERIVED_KEY_LABEL, CSRF_KEY_LABEL}) == 4
    address_key = hmac.new(SECRET.encode(), ADDRESS_REF_KEY_LABEL.encode(), hashlib.sha256).digest()
    ip_key = hmac.new(SECRET.encode(), IP_REF_KEY_LABEL.encode(), hashlib.sha256).digest()
    assert P.address_ref("email", "Ola@Example.pl ") == hmac.new(
        address_key, b"email:ola@example.pl", hashlib.sha256
    ).hexdigest()
    assert P.ip_ref("127.0.0.1") == hmac.new(ip_key, b"ip:127.0.0.1", hashlib.sha256).hexdigest()
    other = Pseudonymizer("another-secret-key-456")
    assert other.address_ref("email", "ola@example.pl") != P.address_ref("email", "ola@example.pl")


def test_normalisation_is_unchanged() -> None:
    """Email case variants share one ref; sms, voice and whatsapp share the number's ref; push is apart."""
    assert P.address_ref("email", " OLA@example.PL") == P.address_ref("email", "ola@example.pl")
    assert P.address_ref("sms", "+48600100200") == P.address_ref("voice", "+48600100200")
    assert P.address_ref("sms", "+48600100200") == P.address_ref("whatsapp", "+48600100200")
    assert P.address_ref("push", "+48600100200") != P.address_ref("sms", "+48600100200")
    assert P.legacy_address_ref("sms", "+48600100200") == P.legacy_address_ref("voice", "+48600100200")


@given(cid=customer_ids, channel=channels, address=addresses, ip=ips)
def test_no_customer_ref_equals_an_address_or_ip_ref(cid: str, channel: str, address: str, ip: str) -> None:
    ref = P.customer_ref(cid)
    assert ref != P.address_ref(channel, address)
    assert ref != P.ip_ref(ip)
    assert P.address_ref(channel, address) != P.ip_ref(ip)
    assert P.address_ref(channel, address) != P.legacy_address_ref(channel, address)


@given(channel=channels, address=st.from_regex(r"[A-Za-z0-9._@-]{1,100}", fullmatch=True))
def test_ids_shaped_like_the_hashed_text_do_not_meet_their_address(channel: str, address: str) -> None:
    """The worst case for v1: a customer id that is exactly the text an address ref hashes (addresses
    drawn from the id alphabet; an E.164 ``+`` is not in it, a push token or an email address may be)."""
    cid = kind_text(channel, address)
    if len(cid) > 128:
        return
    check_customer_id(cid)
    assert P.customer_ref(cid) == P.legacy_address_ref(channel, address)  # what v1 did
    assert P.customer_ref(cid) != P.address_ref(channel, address)


@given(ip=st.ip_addresses().map(str))
def test_ip_ids_do_not_meet_the_page_ip_hash(ip: str) -> None:
    cid = f"ip:{ip}"
    check_customer_id(cid)
    assert P.customer_ref(cid) != P.ip_ref(ip)
