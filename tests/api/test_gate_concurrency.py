"""Concurrent approvals on a real server never exceed a cap, and reserve each (campaign, customer) once."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx

from prefcenter.services import keys, topics
from prefcenter.services.runtime import Runtime
from tests.conftest import CAMPAIGN, PROFILE, TOPICS, prefs_body, query
from tests.live import serve


async def setup_keys(rt: Runtime) -> dict[str, str]:
    await rt.store.open()
    await rt.store.migrate()
    try:
        _, key = await keys.create_key(rt, "admin", "concurrency")
        for topic_id, topic in TOPICS.items():
            await topics.put_topic(rt, topic_id, topic)
    finally:
        await rt.store.close()
    return {"Authorization": f"Bearer {key}"}


async def test_concurrent_approvals_never_exceed_caps(rt: Runtime) -> None:
    headers = await setup_keys(rt)
    customers = [f"c{i}" for i in range(40)]
    with serve(rt) as base:
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
            for cid in customers:
                assert (await client.put(f"/v1/customers/{cid}", json=PROFILE)).status_code == 201
                body = prefs_body(quiet_hours=None, max_per_week=2 if cid.endswith("7") else None)
                assert (await client.put(f"/v1/customers/{cid}/preferences", json=body)).status_code == 200
            campaigns = [f"camp{i}" for i in range(6)]
            for camp in campaigns:
                assert (await client.put(f"/v1/campaigns/{camp}", json=CAMPAIGN)).status_code == 201
            rng = random.Random(7)
            base_at = datetime(2026, 11, 20, 12, tzinfo=UTC)

            async def ask(i: int) -> httpx.Response:
                at = base_at + timedelta(hours=rng.randrange(0, 24 * 8))
                ids = rng.sample(customers, 25)
                return await client.post(
                    "/v1/approvals",
                    json={"campaign_id": rng.choice(campaigns), "customer_ids": ids, "at": at.isoformat()},
                )

            responses = await asyncio.gather(*[ask(i) for i in range(60)])
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    allows = sum(r.json()["summary"]["allow"] for r in responses)
    assert allows > 0

    rows = query(rt, "SELECT customer_id, campaign_id, at_us FROM reservations WHERE marketing = 1")
    assert len({(c, k) for c, k, _ in rows}) == len(rows)  # each (campaign, customer) once
    by_customer: dict[str, list[int]] = {}
    for cid, _, at_us in rows:
        by_customer.setdefault(cid, []).append(at_us)
    day, week = 86_400 * 10**6, 7 * 86_400 * 10**6
    for cid, sends in by_customer.items():
        sends.sort()
        caps = [(1, day), (3, week)] + ([(2, week)] if cid.endswith("7") else [])
        for limit, window in caps:
            for end in sends:  # windows (end - W, end] ending at each send hold the maxima
                held = sum(1 for s in sends if end - window < s <= end)
                assert held <= limit, (cid, limit, window, sends)
