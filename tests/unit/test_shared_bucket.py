"""The deployment-wide rate bucket on PostgreSQL (store/postgres/buckets.py, migration 0016): several
processes taking from one channel's row never exceed the ceiling, on the database server's clock.

Two pools stand for two processes (each its own connections, as two dispatchers have), four takers
between them, chunks of 10 at 200 a second for about 1.5 s. In every sliding second of the server's clock
at most ``rate + capacity`` tokens are taken (the burst, then the refill), and the takers are not held
back much below it either. PostgreSQL: ``PREFCENTER_TEST_PG_DSN`` (default the local test server), a
schema of its own (``pc_<hex>``, dropped at the end) with the 0016 file applied; unreachable, the tests
skip, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from prefcenter.store.postgres.buckets import SharedBucket
from prefcenter.store.postgres.schema import default_migrations_dir
from tests import engines

pytestmark = pytest.mark.postgres

PG_DSN = engines.postgres_url()
RATE = 200.0
CHUNK = 10
RUN_SECONDS = 1.5
TAKERS = 4


quote_ident = engines.quote_ident


async def _connect() -> asyncpg.Connection:
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except engines.UNREACHABLE as exc:
        engines.postgres_unavailable(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


@pytest.fixture
async def pools() -> AsyncIterator[list[asyncpg.Pool]]:
    """Two pools ("two processes") on one new schema holding the rate_buckets table."""
    schema = f"pc_{uuid.uuid4().hex}"
    admin = await _connect()
    made: list[asyncpg.Pool] = []
    try:
        await admin.execute(f"CREATE SCHEMA {quote_ident(schema)}")
        settings = {"search_path": quote_ident(schema)}
        await admin.execute(f"SET search_path = {quote_ident(schema)}")
        await admin.execute((default_migrations_dir() / "0016_rate_buckets.sql").read_text(encoding="utf-8"))
        for _ in range(2):
            made.append(await asyncpg.create_pool(PG_DSN, min_size=2, max_size=2, server_settings=settings))
        yield made
    finally:
        for pool in made:
            await asyncio.wait_for(pool.close(), timeout=10)
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE")
        await admin.close()


def busiest_window(takes: list[tuple[int, int]], window_us: int = 1_000_000) -> int:
    """The most tokens taken in any window of ``window_us`` (half-open, starting at a take)."""
    takes = sorted(takes)
    best = 0
    end = 0
    total = 0
    for start, (at, _n) in enumerate(takes):
        while end < len(takes) and takes[end][0] < at + window_us:
            total += takes[end][1]
            end += 1
        best = max(best, total)
        total -= takes[start][1]
    return best


def test_busiest_window_counts_half_open_windows() -> None:
    assert busiest_window([]) == 0
    assert busiest_window([(0, 10), (999_999, 10), (1_000_000, 10)]) == 20
    assert busiest_window([(5, 1), (6, 2), (3_000_000, 4)]) == 4


async def test_two_processes_share_one_ceiling(pools: list[asyncpg.Pool]) -> None:
    takes: list[tuple[int, int]] = []
    buckets = [SharedBucket(pools[i % 2], "email", RATE) for i in range(TAKERS)]  # each taker its own

    async def taker(bucket: SharedBucket, until: float) -> None:
        while time.monotonic() < until:
            takes.append((await bucket.take(CHUNK), CHUNK))

    started = time.monotonic()
    until = started + RUN_SECONDS
    await asyncio.wait_for(asyncio.gather(*(taker(b, until) for b in buckets)), timeout=15)
    elapsed = time.monotonic() - started

    capacity = buckets[0].capacity
    assert capacity == RATE  # one second's burst
    busiest = busiest_window(takes)
    first, last = min(at for at, _ in takes), max(at for at, _ in takes)
    span = (last - first) / 1e6
    total = sum(n for _, n in takes)
    print(f"\nbusiest second: {busiest} tokens; {total} in {span:.3f} s of server clock, {len(takes)} takes")
    assert busiest <= RATE + capacity, (busiest, total, span)
    # ...and the whole run is within the ceiling's own bound, yet not held far below it
    assert total <= capacity + RATE * span + 1e-6, (total, span)
    assert total >= 0.8 * (capacity + RATE * RUN_SECONDS), (total, span)
    assert elapsed < RUN_SECONDS + 2


async def test_rate_changes_with_the_next_bucket(pools: list[asyncpg.Pool]) -> None:
    """After a policy reload the dispatcher builds a new bucket: the row's surplus above the smaller
    burst is cut to it, and the refill follows the new rate."""
    big = SharedBucket(pools[0], "sms", 100.0)
    await big.take(1)  # the row: 99 left
    small = SharedBucket(pools[1], "sms", 5.0)
    assert small.capacity == 5.0
    for _ in range(5):
        taken, _deficit = await small.try_take(1)
        assert taken is not None
    taken, deficit = await small.try_take(1)
    assert taken is None and 0 < deficit <= 1.0
    started = time.monotonic()
    await asyncio.wait_for(small.take(1), timeout=5)  # about 1/5 s at the new rate
    assert 0.05 < time.monotonic() - started < 1.0


async def test_bounds(pools: list[asyncpg.Pool]) -> None:
    with pytest.raises(ValueError):
        SharedBucket(pools[0], "email", 0)
    bucket = SharedBucket(pools[0], "email", 0.5)
    assert bucket.capacity == 1.0  # at least one message
    with pytest.raises(ValueError):
        await bucket.acquire(2)
    with pytest.raises(ValueError):
        await bucket.acquire(0)
    await asyncio.wait_for(bucket.acquire(1), timeout=5)
