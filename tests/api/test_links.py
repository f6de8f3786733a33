"""``POST /v1/customers/{id}/links`` and the signed tokens behind it (API.md "Customer pages")."""

from __future__ import annotations

import base64
import zlib
from datetime import timedelta
from urllib.parse import urlsplit

import msgspec
import pytest

from prefcenter.domain.tokens import MANAGE_LIFETIME, UNSUBSCRIBE_LIFETIME
from prefcenter.services import links
from prefcenter.services.runtime import Runtime
from tests.conftest import PROFILE, Api

EMAIL_ID = "ola@example.pl"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


async def create(api: Api, cid: str = "c1") -> None:
    r = await api.client.put(f"/v1/customers/{cid}", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code in (200, 201)


def token_of(url: str) -> str:
    return urlsplit(url).path.split("/")[2]


def payload_bytes(token: str) -> bytes:
    """What anyone can read from a token without the key (itsdangerous: [.]base64(zlib?(json)).sig)."""
    body = token.rsplit(".", 1)[0]
    compressed = body.startswith(".")
    raw = base64.urlsafe_b64decode(body.lstrip(".") + "=" * (-len(body.lstrip(".")) % 4))
    return zlib.decompress(raw) if compressed else raw


def with_keys(rt: Runtime, *keys: str) -> Runtime:
    return Runtime(
        settings=msgspec.structs.replace(rt.settings, link_keys=keys),
        store=rt.store,
        pseudonyms=rt.pseudonyms,
        now=rt.now,
    )


async def test_mint_returns_both_urls_under_the_public_url(api: Api) -> None:
    """API.md: 201 {"manage_url", "unsubscribe_url"}; without a topic the unsubscribe link is all-scope."""
    await create(api)
    r = await api.client.post("/v1/customers/c1/links", json={}, headers=api.as_("marketing"))
    assert r.status_code == 201
    body = r.json()
    assert set(body) == {"manage_url", "unsubscribe_url"}
    assert body["manage_url"].startswith("http://127.0.0.1:8000/p/")
    assert body["unsubscribe_url"].startswith("http://127.0.0.1:8000/u/")
    unsubscribe = links.verify_token(api.rt, token_of(body["unsubscribe_url"]), "unsubscribe")
    assert unsubscribe is not None and unsubscribe.claims.topic is None and not unsubscribe.expired
    # No body at all is the same as an empty one.
    r = await api.client.post("/v1/customers/c1/links", headers=api.as_("admin"))
    assert r.status_code == 201


async def test_topic_scopes_the_unsubscribe_link_only(api: Api) -> None:
    """COMPLIANCE A4 (the URI identifies the recipient and the list): a topic scopes the unsubscribe
    link; the manage link is always all-scope; both carry the customer's pseudonym and the issue time."""
    await create(api)
    r = await api.client.post(
        "/v1/customers/c1/links", json={"topic": "promotions"}, headers=api.as_("marketing")
    )
    assert r.status_code == 201
    unsubscribe = links.verify_token(api.rt, token_of(r.json()["unsubscribe_url"]), "unsubscribe")
    manage = links.verify_token(api.rt, token_of(r.json()["manage_url"]), "manage")
    assert unsubscribe is not None and unsubscribe.claims.topic == "promotions"
    assert manage is not None and manage.claims.topic is None
    ref = api.rt.pseudonyms.customer_ref("c1")
    assert unsubscribe.claims.ref == manage.claims.ref == ref
    assert unsubscribe.claims.issued_at == api.rt.now().replace(microsecond=0)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"topic": "nope"}, 400),  # no such topic
        ({"topic": "order-updates"}, 400),  # transactional: nothing to unsubscribe from
        ({"topic": "Bad Topic!"}, 400),  # malformed id
        ({"topic": "promotions", "extra": 1}, 400),  # unknown field
    ],
)
async def test_bad_topic_or_body_is_400(api: Api, body: dict[str, object], status: int) -> None:
    """API.md: the topic must exist and be marketing; unknown fields and malformed ids are a 400."""
    await create(api)
    r = await api.client.post("/v1/customers/c1/links", json=body, headers=api.as_("marketing"))
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_unknown_customer_is_404(api: Api) -> None:
    """API.md conventions: an unknown resource in the path is a 404."""
    r = await api.client.post("/v1/customers/nobody/links", json={}, headers=api.as_("marketing"))
    assert r.status_code == 404


async def test_roles(api: Api) -> None:
    """API.md roles: marketing (and admin) mint links; auditor may not; no key is 401."""
    await create(api)
    assert (
        await api.client.post("/v1/customers/c1/links", json={}, headers=api.as_("admin"))
    ).status_code == 201
    assert (
        await api.client.post("/v1/customers/c1/links", json={}, headers=api.as_("auditor"))
    ).status_code == 403
    assert (await api.client.post("/v1/customers/c1/links", json={})).status_code == 401


async def test_tokens_carry_no_readable_personal_data(api: Api) -> None:
    """API.md: an opaque reference, never the customer id (which may be an email address)."""
    await create(api, EMAIL_ID)
    r = await api.client.post(
        f"/v1/customers/{EMAIL_ID}/links", json={"topic": "promotions"}, headers=api.as_("marketing")
    )
    for url in r.json().values():
        assert EMAIL_ID not in url
        readable = payload_bytes(token_of(url)).decode()
        assert "ola" not in readable and "example" not in readable and "+48" not in readable
        assert api.rt.pseudonyms.customer_ref(EMAIL_ID) in readable


def test_purposes_have_separate_salts(rt: Runtime) -> None:
    """COMPLIANCE A4: a manage token never works as an unsubscribe token, or the reverse."""
    ref = rt.pseudonyms.customer_ref("c1")
    manage = links.mint_token(rt, ref, "manage")
    unsubscribe = links.mint_token(rt, ref, "unsubscribe")
    assert links.verify_token(rt, manage, "unsubscribe") is None
    assert links.verify_token(rt, unsubscribe, "manage") is None
    assert links.verify_token(rt, manage, "manage") is not None


def test_every_single_character_change_is_rejected(rt: Runtime) -> None:
    """COMPLIANCE A4 (hard-to-forge): every substitution at every position of a token is rejected,
    including the spare low bits of the signature's last base64 character."""
    ref = rt.pseudonyms.customer_ref("c1")
    for purpose, topic in (("unsubscribe", "promotions"), ("manage", None)):
        token = links.mint_token(rt, ref, purpose, topic)  # type: ignore[arg-type]
        accepted = [
            (i, c)
            for i in range(len(token))
            for c in B64URL + "."
            if c != token[i] and links.verify_token(rt, token[:i] + c + token[i + 1 :], purpose) is not None  # type: ignore[arg-type]
        ]
        assert accepted == []
        # Truncated and extended tokens too.
        assert links.verify_token(rt, token[:-1], purpose) is None  # type: ignore[arg-type]
        assert links.verify_token(rt, token + "A", purpose) is None  # type: ignore[arg-type]


def test_link_keys_rotate_newest_first(rt: Runtime) -> None:
    """API.md: PREFCENTER_LINK_KEYS newest first; older ones still verify; a dropped key stops verifying;
    a token signed with another key changes nothing (COMPLIANCE A4)."""
    ref = rt.pseudonyms.customer_ref("c1")
    old, new = "old-link-key-0123456789", "new-link-key-0123456789"
    before = with_keys(rt, old)
    during = with_keys(rt, new, old)
    after = with_keys(rt, new)
    old_token = links.mint_token(before, ref, "unsubscribe")
    new_token = links.mint_token(during, ref, "unsubscribe")
    assert links.verify_token(during, old_token, "unsubscribe") is not None
    assert links.verify_token(after, new_token, "unsubscribe") is not None  # signed with the newest
    assert links.verify_token(after, old_token, "unsubscribe") is None
    assert links.verify_token(with_keys(rt, "someone-elses-key-0123"), new_token, "unsubscribe") is None
    # Without link keys, the key is derived from the secret key: stable, and not the configured keys'.
    derived = links.mint_token(rt, ref, "unsubscribe")
    assert links.verify_token(rt, derived, "unsubscribe") is not None
    assert links.verify_token(during, derived, "unsubscribe") is None


def test_lifetimes(rt: Runtime) -> None:
    """API.md / COMPLIANCE C27, F27, F28: manage links expire after 30 days; unsubscribe links work at
    least 60 days (400 here), and a 31-day-old one works."""
    assert timedelta(days=30) == MANAGE_LIFETIME
    assert timedelta(days=60) <= UNSUBSCRIBE_LIFETIME
    ref = rt.pseudonyms.customer_ref("c1")
    manage = links.mint_token(rt, ref, "manage")
    unsubscribe = links.mint_token(rt, ref, "unsubscribe")
    clock = rt.now
    clock.advance(days=30, seconds=-1)  # type: ignore[attr-defined]
    verified = links.verify_token(rt, manage, "manage")
    assert verified is not None and not verified.expired
    clock.advance(seconds=1)  # type: ignore[attr-defined]
    verified = links.verify_token(rt, manage, "manage")
    assert verified is not None and verified.expired  # signature still valid: a fresh link may be sent
    unsub = links.verify_token(rt, unsubscribe, "unsubscribe")
    assert unsub is not None and not unsub.expired
    clock.advance(days=370, seconds=-1)  # type: ignore[attr-defined]
    unsub = links.verify_token(rt, unsubscribe, "unsubscribe")
    assert unsub is not None and not unsub.expired
    clock.advance(seconds=1)  # type: ignore[attr-defined]
    unsub = links.verify_token(rt, unsubscribe, "unsubscribe")
    assert unsub is not None and unsub.expired


async def test_minted_links_carry_the_customers_link_generation(api: Api) -> None:
    """API.md "A link dies with the person it was minted for": both links carry the customer's link
    generation as a 4th claim (random hex, no personal data); a re-created customer gets another."""
    await create(api)
    customer = await api.rt.store.get_customer("c1")
    assert customer is not None and len(customer.link_gen) == 16
    r = await api.client.post("/v1/customers/c1/links", json={}, headers=api.as_("marketing"))
    for url, purpose in ((r.json()["manage_url"], "manage"), (r.json()["unsubscribe_url"], "unsubscribe")):
        raw = msgspec.json.decode(payload_bytes(token_of(url)))
        assert len(raw) == 4 and raw[3] == customer.link_gen
        verified = links.verify_token(api.rt, token_of(url), purpose)  # type: ignore[arg-type]
        assert verified is not None and links.opens(verified.claims, customer)
    assert (await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))).status_code == 204
    await create(api)
    again = await api.rt.store.get_customer("c1")
    assert again is not None and again.link_gen != customer.link_gen
    assert not links.opens(verified.claims, again)


def test_claims_with_and_without_a_generation(rt: Runtime) -> None:
    """Tokens minted before link generations (3 elements) still decode, as generation ''; a 4th element
    must be a real generation (an explicit '' or anything else is refused, so each claim set has one
    spelling); a token opens a customer only with the same generation."""
    ref = rt.pseudonyms.customer_ref("c1")
    legacy = links.mint_token(rt, ref, "unsubscribe", "promotions")
    assert len(msgspec.json.decode(payload_bytes(legacy))) == 3
    verified = links.verify_token(rt, legacy, "unsubscribe")
    assert verified is not None and verified.claims.gen == "" and verified.claims.topic == "promotions"
    current = links.mint_token(rt, ref, "manage", gen="0123456789abcdef")
    verified = links.verify_token(rt, current, "manage")
    assert verified is not None and verified.claims.gen == "0123456789abcdef"
    serializer = links._serializer(links.signing_keys(rt), "manage")
    for gen in ("", "XYZ", "0123", "0123456789abcdef\n", 7):
        forged = serializer.dumps([ref, "*", int(rt.now().timestamp()), gen])
        assert links.verify_token(rt, forged, "manage") is None, gen
    assert links.verify_token(rt, serializer.dumps([ref, "*", 0, "0123456789abcdef", "x"]), "manage") is None
