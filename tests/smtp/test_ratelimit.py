"""The dispatcher's ceiling: policy.rates per channel, burst one second's worth (API.md "Sending";
COMPLIANCE edge case 7: a released backlog does not exceed the provider's rate)."""

from __future__ import annotations

from prefcenter.messaging.ratelimit import TokenBucket
from tests.api.test_approvals import campaign, customer
from tests.conftest import PROFILE, Api
from tests.smtp.helpers import counts, dispatcher, send
from tests.smtp.sink import Handler


async def test_token_bucket_burst_then_rate() -> None:
    now = [0.0]

    async def sleep(seconds: float) -> None:
        now[0] += seconds

    bucket = TokenBucket(10, monotonic=lambda: now[0], sleep=sleep)
    for _ in range(10):
        await bucket.acquire()
    assert now[0] == 0.0  # the burst: one second's worth at once
    for _ in range(15):
        await bucket.acquire()
    assert abs(now[0] - 1.5) < 1e-9  # then exactly the rate


async def test_dispatch_holds_the_policy_rate(api: Api, sink: tuple[Handler, int]) -> None:
    """80 queued emails with the shipped email rate 50/s: 50 may go at once (the burst), the other 30
    no faster than 50/s, so the last arrives no sooner than 0.6 s after the first."""
    handler, port = sink
    await campaign(api)
    ids = [f"r{i:03d}" for i in range(80)]
    for cid in ids:
        await customer(api, cid, {**PROFILE, "contacts": {"email": f"{cid}@example.com"}})
    await send(api, ids)
    d = dispatcher(api, port, bucket_factory=TokenBucket)
    assert d.bucket("email").rate == 50.0 and d.bucket("email").capacity == 50.0
    await d.run_until_idle()
    await d.close()
    assert len(handler.messages) == 80
    t = sorted(handler.times)
    assert t[-1] - t[0] >= 0.55
    for k in range(50, 80):  # message k (0-based) needs k - 49 tokens beyond the burst
        assert t[k] - t[0] >= (k - 49) / 50 - 0.05
    assert (await counts(api))["sent"] == 80
