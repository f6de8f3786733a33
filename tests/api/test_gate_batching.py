"""Group commit: approvals that share one transaction are decided as if one after another."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import pytest

from prefcenter.domain.model import CampaignView
from prefcenter.services.approvals import ApprovalRequest, GateBatcher, _Ask, _groups, approve
from prefcenter.store.base import GateInputs, GateWrites, Reservation
from tests.api.test_approvals import campaign, customer
from tests.conftest import Api, query

AT = datetime(2026, 11, 22, 12, tzinfo=UTC)


async def test_one_batch_keeps_sequential_semantics(api: Api) -> None:
    await campaign(api, "a")
    await campaign(api, "b")
    for cid in ("c1", "c2"):
        await customer(api, cid)
    batcher = GateBatcher(api.rt)
    runs = 0
    original = batcher._run

    async def counting(batch: list) -> list:  # type: ignore[type-arg]
        nonlocal runs
        runs += 1
        return await original(batch)

    batcher._run = counting  # type: ignore[method-assign]
    asks = [
        ApprovalRequest(campaign_id="a", customer_ids=["c1", "c2"], at=AT),
        ApprovalRequest(campaign_id="b", customer_ids=["c1"], at=AT),  # per_day = 1: capped by "a"
        ApprovalRequest(campaign_id="a", customer_ids=["c2"], at=AT),  # a retry of the first ask
    ]
    answers = await asyncio.gather(*[approve(api.rt, batcher, a) for a in asks])
    assert runs <= 2  # the three asks shared transactions (the first may start alone)
    assert [d.verdict for d in answers[0].decisions] == ["allow", "allow"]
    assert (answers[1].decisions[0].verdict, answers[1].decisions[0].reason) == ("defer", "frequency_cap")
    assert answers[2].decisions[0] == answers[0].decisions[1]
    rows = query(api, "SELECT customer_id, campaign_id FROM reservations ORDER BY 1, 2")
    log = query(api, "SELECT count(*) FROM decisions")[0][0]
    assert rows == [("c1", "a"), ("c2", "a")]
    assert log == 4


async def test_a_failed_transaction_fails_its_asks_and_the_next_batch_works(api: Api) -> None:
    await campaign(api, "a")
    await customer(api, "c1")
    batcher = GateBatcher(api.rt)
    original = batcher._run
    calls = 0

    async def failing_once(batch: list) -> list:  # type: ignore[type-arg]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("disk full")
        return await original(batch)

    batcher._run = failing_once  # type: ignore[method-assign]
    try:
        await approve(api.rt, batcher, ApprovalRequest(campaign_id="a", customer_ids=["c1"], at=AT))
    except RuntimeError as exc:
        assert "disk full" in str(exc)
    else:
        raise AssertionError("the failed batch's ask must fail")
    answer = await approve(api.rt, batcher, ApprovalRequest(campaign_id="a", customer_ids=["c1"], at=AT))
    assert answer.decisions[0].verdict == "allow"


async def test_asks_decided_together_answer_as_one_after_another(api: Api) -> None:
    """Disjoint asks of one campaign and instant share one engine call; an ask that repeats an id
    starts a new group and sees the reservation the earlier ask made."""
    await campaign(api, "a")
    for cid in ("c1", "c2", "c3"):
        await customer(api, cid)
    batcher = GateBatcher(api.rt)
    asks = [
        ApprovalRequest(campaign_id="a", customer_ids=["c1"], at=AT),
        ApprovalRequest(campaign_id="a", customer_ids=["c2", "c3"], at=AT),
        ApprovalRequest(campaign_id="a", customer_ids=["c3", "c1"], at=AT),  # retries
    ]
    groups = _groups([_Ask(a.campaign_id, a.customer_ids, AT, None, asyncio.Future()) for a in asks])
    assert [len(g) for g in groups] == [2, 1]
    answers = await asyncio.gather(*[approve(api.rt, batcher, a) for a in asks])
    assert [d.customer_id for a in answers for d in a.decisions] == ["c1", "c2", "c3", "c3", "c1"]
    assert {d.verdict for a in answers for d in a.decisions} == {"allow"}
    assert answers[2].decisions == [answers[1].decisions[1], answers[0].decisions[0]]
    reserved = query(api, "SELECT count(*) FROM reservations")[0][0]
    logged = query(api, "SELECT customer_id FROM decisions ORDER BY id")
    assert reserved == 3
    assert sorted(r[0] for r in logged) == ["c1", "c1", "c2", "c3", "c3"]


@pytest.mark.sqlite_only  # sqlite3.IntegrityError
async def test_a_gate_whose_writes_fail_rolls_back_everything(api: Api) -> None:
    """Store.gate writes what decide returned, then commits: a bad row among them (NOT NULL) rolls the
    whole transaction back, the reservation made beside it included, and the writer is usable again."""
    await campaign(api, "a")
    await customer(api, "c1")
    store = api.rt.store
    good = ("c1", "a", "2026-11-22T12:00:00Z", "allow", "allowed", "email", None, "v", "approval", None)
    bad = ("c1", "a", None, "allow", "allowed", "email", None, "v", "approval", None)
    seen: list[set[str]] = []

    def decide(views: dict[str, CampaignView], inputs: dict[str, GateInputs]) -> tuple[None, GateWrites]:
        seen.append(set(inputs["a"].states))
        reservation = Reservation(1, "email", True)
        return None, GateWrites(reserve=[("c1", "a", reservation)], decisions=[good, good, bad])  # type: ignore[list-item]

    with pytest.raises(sqlite3.IntegrityError):
        await store.gate({"a": ["c1"]}, decide)
    assert seen == [{"c1"}]
    conn = sqlite3.connect(store.path)  # type: ignore[attr-defined]
    logged = conn.execute("SELECT count(*) FROM decisions").fetchone()[0]
    conn.close()
    assert logged == 0
    async with store.write() as tx:  # the writer is usable again
        assert await tx.has_reservation("c1", "a") is False

    def refuse(views: dict[str, CampaignView], inputs: dict[str, GateInputs]) -> tuple[None, GateWrites]:
        raise ValueError("decide failed")

    with pytest.raises(ValueError, match="decide failed"):
        await store.gate({"a": ["c1"]}, refuse)
    assert await store.gate({"a": ["c1"]}, lambda v, i: (sorted(v), GateWrites())) == ["a"]


@pytest.mark.sqlite_only
async def test_a_small_gate_never_blocks_the_event_loop_on_another_writers_lock(api: Api) -> None:
    """A small gate runs on the event loop's own thread, but only when the write lock is free at once:
    while another connection (another process's writer) holds it, the gate goes to the writer's thread
    and waits there, and the loop goes on serving; the ask is decided when the lock is released."""
    await campaign(api, "a")
    await customer(api, "c1")
    store = api.rt.store
    other = sqlite3.connect(store.path, isolation_level=None)  # type: ignore[attr-defined]
    other.execute("BEGIN IMMEDIATE")
    gaps: list[float] = []

    async def ticker() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticks = asyncio.create_task(ticker())
    batcher = GateBatcher(api.rt)
    request = ApprovalRequest(campaign_id="a", customer_ids=["c1"], at=AT)
    ask = asyncio.create_task(approve(api.rt, batcher, request))
    await asyncio.sleep(0.4)
    assert not ask.done()  # waiting for the lock, on the writer's thread
    other.execute("COMMIT")
    other.close()
    answer = await asyncio.wait_for(ask, timeout=10)
    ticks.cancel()
    assert [d.verdict for d in answer.decisions] == ["allow"]
    assert max(gaps) < 0.2, max(gaps)  # the loop was never held for the lock
    # with the lock free again, the next small gate runs at once (a retry of the same ask: allowed)
    again = await approve(api.rt, batcher, ApprovalRequest(campaign_id="a", customer_ids=["c1"], at=AT))
    assert [d.verdict for d in again.decisions] == ["allow"]


@pytest.mark.parametrize("groups", [1, 3])
async def test_gate_groups_run_at_once_up_to_the_stores_bound(
    api: Api, monkeypatch: pytest.MonkeyPatch, groups: int
) -> None:
    """While every running group is inside its transaction, a new ask starts another group, up to the
    store's ``gate_groups`` (PostgreSQL: 3, its row locks order them; SQLite: 1); an ask that comes
    while a group is still gathering joins it. Every ask is answered, each customer reserved once."""
    await campaign(api, "a")
    ids = [f"c{i}" for i in range(12)]
    for cid in ids:
        await customer(api, cid)
    monkeypatch.setattr(type(api.rt.store), "gate_groups", groups)
    batcher = GateBatcher(api.rt)
    original = batcher._run
    inside = most = 0
    sizes: list[int] = []

    async def slow(batch: list) -> list:  # type: ignore[type-arg]
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        sizes.append(len(batch))
        try:
            await asyncio.sleep(0.05)  # a transaction's round trips
            return await original(batch)
        finally:
            inside -= 1

    batcher._run = slow  # type: ignore[method-assign]

    async def ask(cid: str, delay: float) -> str:
        await asyncio.sleep(delay)
        answer = await approve(api.rt, batcher, ApprovalRequest(campaign_id="a", customer_ids=[cid], at=AT))
        return answer.decisions[0].verdict

    verdicts = await asyncio.gather(*(ask(cid, 0.01 * i) for i, cid in enumerate(ids)))
    assert verdicts == ["allow"] * len(ids)
    assert most == groups
    assert sum(sizes) == len(ids) and (groups == 3 or max(sizes) > 1)
    assert batcher._running == 0 and batcher._deciding == 0
    assert query(api, "SELECT count(*) FROM reservations")[0][0] == len(ids)
