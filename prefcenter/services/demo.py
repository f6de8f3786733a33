"""Demo data: topics, an email campaign and ~1,000 customers with varied zones, locales, channels and
topics."""

from __future__ import annotations

import random
import secrets

import msgspec

from prefcenter.config import Settings
from prefcenter.domain.campaigns import Campaign, Content, EmailContent
from prefcenter.domain.model import Contacts, PreferencesWrite, Profile, Provenance, QuietHours, Topic
from prefcenter.services import campaigns, customers, topics
from prefcenter.services.keys import KEY_PREFIX, hash_key
from prefcenter.services.runtime import Runtime
from prefcenter.store.base import ApiKey

DEMO_KEY_NAME = "demo-admin"
# The sender's identity ``serve --demo-sink`` uses where PREFCENTER_CONTROLLER_NAME, _POSTAL_ADDRESS and
# _PRIVACY_URL are not set: clearly examples (reserved .example domain), never a real business.
DEMO_IDENTITY = {
    "controller_name": "Demo Shop Ltd.",
    "postal_address": "1 Example Street, Demo City 00-000, Exampleland",
    "privacy_url": "https://shop.example/privacy",
}


def with_demo_identity(settings: Settings) -> Settings:
    """``settings`` with the demo's example identity filled in where a value is not set."""
    unset = {name: value for name, value in DEMO_IDENTITY.items() if getattr(settings, name) is None}
    return msgspec.structs.replace(settings, **unset) if unset else settings


DEMO_TOPICS: dict[str, Topic] = {
    "promotions": Topic(
        category="marketing",
        names={
            "en": "Offers and promotions",
            "ro": "Oferte și promoții",
            "pl": "Oferty i promocje",
            "el": "Προσφορές",
            "fa": "پیشنهادها و تخفیف‌ها",
        },
        descriptions={"en": "Discounts and seasonal sales, at most a few times a week."},
    ),
    "product-news": Topic(
        category="marketing",
        names={
            "en": "Product news",
            "ro": "Noutăți despre produse",
            "pl": "Nowości produktowe",
            "el": "Νέα προϊόντων",
            "fa": "اخبار محصولات",
        },
        descriptions={"en": "New features and products."},
    ),
    "events": Topic(
        category="marketing",
        names={
            "en": "Events and webinars",
            "ro": "Evenimente",
            "pl": "Wydarzenia",
            "el": "Εκδηλώσεις",
            "fa": "رویدادها",
        },
    ),
    "order-updates": Topic(
        category="transactional",
        names={
            "en": "Order updates",
            "ro": "Actualizări comenzi",
            "pl": "Status zamówień",
            "el": "Ενημερώσεις παραγγελιών",
            "fa": "وضعیت سفارش",
        },
    ),
    "security-alerts": Topic(
        category="transactional",
        names={
            "en": "Security alerts",
            "ro": "Alerte de securitate",
            "pl": "Alerty bezpieczeństwa",
            "el": "Ειδοποιήσεις ασφαλείας",
            "fa": "هشدارهای امنیتی",
        },
    ),
}

DEMO_CAMPAIGN_ID = "demo-newsletter"
DEMO_CAMPAIGN = Campaign(
    topic="promotions",
    channels=["email"],
    content=Content(
        email=EmailContent(
            subject="This week's offers, {{ customer_id }}",
            text="Hello {{ customer_id }},\n\nthis week's offers are in.\n\n"
            "Not interested? Unsubscribe in one click: {{ unsubscribe_url }}",
            html="<p>Hello {{ customer_id }},</p><p>this week's offers are in.</p>"
            '<p>Not interested? <a href="{{ unsubscribe_url }}">Unsubscribe in one click</a>.</p>',
        )
    ),
)

# (locale, country, timezone, mobile prefix, digits after it): every number is a valid E.164 mobile
PEOPLE = [
    ("en", "GB", "Europe/London", "+447400", 6),
    ("en", "US", "America/New_York", "+1212555", 4),
    ("en", "US", "America/Los_Angeles", "+1415555", 4),
    ("ro", "RO", "Europe/Bucharest", "+4072100", 4),
    ("pl", "PL", "Europe/Warsaw", "+4860010", 4),
    ("el", "GR", "Europe/Athens", "+3069120", 5),
    ("fa", "IR", "Asia/Tehran", "+9891210", 5),
]


async def seed_demo(rt: Runtime, count: int = 1000, seed: int = 42) -> int:
    """Seed the demo; idempotent (customers that exist are left alone). Returns customers created."""
    for topic_id, topic in DEMO_TOPICS.items():
        await topics.put_topic(rt, topic_id, topic)
    await campaigns.put_campaign(rt, DEMO_CAMPAIGN_ID, DEMO_CAMPAIGN)
    rng = random.Random(seed)
    marketing = [t for t, v in DEMO_TOPICS.items() if v.category == "marketing"]
    created = 0
    for i in range(count):
        customer_id = f"demo-{i:04d}"
        locale, country, zone, prefix, digits = rng.choice(PEOPLE)
        number = prefix + f"{rng.randrange(10**digits):0{digits}d}"
        contacts = Contacts(
            email=f"{customer_id}@example.org",
            sms=number if rng.random() < 0.7 else None,
            push=f"device-{rng.getrandbits(64):016x}" if rng.random() < 0.4 else None,
        )
        if await rt.store.get_customer(customer_id) is not None:
            continue
        profile = Profile(timezone=zone, locale=locale, country=country, contacts=contacts)
        await customers.put_customer(rt, customer_id, profile)
        created += 1
        choice = rng.random()
        channel = None if choice < 0.15 else ("sms" if choice < 0.4 and profile.contacts.sms else "email")
        chosen = sorted(rng.sample(marketing, rng.randint(0, len(marketing)))) if channel else []
        write = PreferencesWrite(
            channel=channel,  # type: ignore[arg-type]
            topics=chosen,
            quiet_hours=QuietHours("21:00", "08:00") if rng.random() < 0.5 else None,
            max_per_week=rng.choice([None, None, 2, 3, 5]),
            paused_until=None,
            provenance=Provenance(
                source="import",
                actor="demo-seed",
                notice_version="demo-2026-11",
                # COMPLIANCE edge 11: an imported grant carries the proof of the original consent
                evidence={
                    "batch": "demo",
                    "source_party": "prefcenter demo",
                    "consented_at": "2026-11-01T09:00:00Z",
                    "method": "demo_seed",
                },
            ),
        )
        await customers.put_preferences(rt, customer_id, write, if_match=None, caller_role="admin")
    return created


async def rotate_demo_key(rt: Runtime) -> tuple[ApiKey, str, list[int]]:
    """Mint the demo's admin key, revoking every earlier live ``demo-admin`` admin key in the same
    transaction, so each ``prefcenter demo`` run leaves exactly one live demo key (the one it prints).
    Returns the new record, the key itself (shown once, stored as a hash) and the ids revoked."""
    live = [
        k.id
        for k in await rt.store.list_keys()
        if k.name == DEMO_KEY_NAME and k.role == "admin" and k.revoked_at is None
    ]
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    revoked = []
    async with rt.store.write() as tx:
        now = rt.now()
        for key_id in live:
            if await tx.revoke_key(key_id, now):  # False: already revoked
                revoked.append(key_id)
        record = await tx.create_key(DEMO_KEY_NAME, "admin", hash_key(key), key[:10], now)
    return record, key, revoked
