"""A mark belongs to its claim's lease (guarantee 4 of store.base): a dispatcher whose transport outlived
the lease, while another dispatcher claimed the row again, changes nothing when its mark comes; the
holder of the live lease marks the row. On both engines (``--engine``)."""

from __future__ import annotations

from prefcenter.domain.timewindows import to_us
from prefcenter.store.base import OutboxUpdate
from tests.api.test_approvals import campaign, customer
from tests.conftest import Api, query


async def test_a_mark_after_the_lease_ran_out_leaves_the_new_holders_claim_alone(api: Api) -> None:
    await campaign(api, "bf")
    await customer(api, "c1")
    r = await api.client.post(
        "/v1/campaigns/bf/sends", json={"customer_ids": ["c1"]}, headers=api.as_("marketing")
    )
    assert r.status_code == 202, r.text
    store, now = api.rt.store, to_us(api.rt.now())
    async with store.write() as tx:
        (first,) = await tx.claim_due("email", now, now + 1_000, 10)  # dispatcher A, lease until +1 ms
    assert first.lease_until_us == now + 1_000
    async with store.write() as tx:
        assert await tx.claim_due("email", now + 500, now + 2_000, 10) == []  # A's lease still runs
        (second,) = await tx.claim_due("email", now + 1_000, now + 60_000_000, 10)  # ran out: B claims
    assert second.lease_until_us == now + 60_000_000
    async with store.write() as tx:  # A's late mark: the row holds B's lease now
        await tx.update_outbox(
            [OutboxUpdate("bf", "c1", "failed", last_error="late", lease_until_us=first.lease_until_us)],
            api.rt.now(),
        )
    assert query(api, "SELECT status, lease_until_us, last_error FROM outbox") == [
        ("queued", now + 60_000_000, None)
    ]
    async with store.write() as tx:  # B's mark goes through and releases the lease
        await tx.update_outbox(
            [OutboxUpdate("bf", "c1", "sent", sent=True, lease_until_us=second.lease_until_us)], api.rt.now()
        )
    assert query(api, "SELECT status, lease_until_us FROM outbox") == [("sent", None)]
