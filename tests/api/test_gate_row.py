"""The denormalised gate row (migrations 0005 and 0012) always equals what the source tables say."""

from __future__ import annotations

import random
import sqlite3

import pytest

from tests.conftest import PROFILE, Api, prefs_body

pytestmark = pytest.mark.sqlite_only  # SQLite's SQL (group_concat, INSERT OR IGNORE) on the file

RECOMPUTED = """
SELECT c.id,
       c.contact_channels,
       coalesce((SELECT group_concat(channel) FROM contacts WHERE customer_id = c.id), ''),
       c.suppressed_channels,
       coalesce((SELECT group_concat(k.channel) FROM contacts k JOIN suppressions s
                 ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'all'
                 WHERE k.customer_id = c.id), ''),
       c.topic_list,
       ',' || coalesce((SELECT group_concat(topic_id, ',') FROM customer_topics WHERE customer_id = c.id), '') || ',',
       c.marketing_suppressed_channels,
       coalesce((SELECT group_concat(k.channel) FROM contacts k JOIN suppressions s
                 ON s.channel = k.channel AND s.address_ref = k.address_ref AND s.scope = 'marketing'
                 WHERE k.customer_id = c.id), '')
FROM customers c
"""


def as_set(text: str) -> set[str]:
    return {part for part in text.split(",") if part}


async def test_gate_row_follows_contacts_topics_and_suppressions(api: Api) -> None:
    rng = random.Random(5)
    db = api.rt.store.path  # type: ignore[attr-defined]
    numbers = ["+48600100200", "+48600100201", "+48600100202"]
    emails = ["a@example.org", "b@example.org"]
    for step in range(80):
        cid = f"c{rng.randrange(4)}"
        action = rng.randrange(5)
        if action == 0:
            contacts = {}
            if rng.random() < 0.7:
                contacts["email"] = rng.choice(emails)
            if rng.random() < 0.7:
                contacts["sms"] = rng.choice(numbers)
            if rng.random() < 0.5:
                contacts["voice"] = rng.choice(numbers)
            r = await api.client.put(f"/v1/customers/{cid}", json={**PROFILE, "contacts": contacts}, headers=api.as_("marketing"))
            assert r.status_code in (200, 201)
        elif action == 1:
            topics = rng.sample(["promotions", "product-news"], rng.randrange(3))
            await api.client.put(f"/v1/customers/{cid}/preferences", json=prefs_body(topics=topics), headers=api.as_("marketing"))
        else:
            channel, address = rng.choice([("email", rng.choice(emails)), ("sms", rng.choice(numbers)), ("voice", rng.choice(numbers))])
            ref = api.rt.pseudonyms.address_ref(channel, address)
            conn = sqlite3.connect(db)
            if action == 2:
                scope = rng.choice(["all", "marketing"])
                conn.execute(
                    "INSERT OR IGNORE INTO suppressions (channel, address_ref, reason, since, scope) "
                    "VALUES (?, ?, 'admin', '2026-11-01T00:00:00Z', ?)",
                    (channel, ref, scope),
                )
            elif action == 3:  # a hard one upgrades a marketing-only one in place, or the reverse
                conn.execute(
                    "UPDATE suppressions SET scope = CASE scope WHEN 'all' THEN 'marketing' ELSE 'all' END "
                    "WHERE channel = ? AND address_ref = ?",
                    (channel, ref),
                )
            else:
                conn.execute("DELETE FROM suppressions WHERE channel = ? AND address_ref = ?", (channel, ref))
            conn.commit()
            conn.close()
        conn = sqlite3.connect(db)
        rows = conn.execute(RECOMPUTED).fetchall()
        conn.close()
        for cid_, stored_c, real_c, stored_s, real_s, stored_t, real_t, stored_m, real_m in rows:
            assert as_set(stored_c) == as_set(real_c), (step, cid_)
            assert as_set(stored_s) == as_set(real_s), (step, cid_)
            assert as_set(stored_t) == as_set(real_t), (step, cid_)
            assert as_set(stored_m) == as_set(real_m), (step, cid_)
    assert rows, "the sequence created customers"
