"""The deployment-wide token bucket of a channel on PostgreSQL (:class:`SharedBucket`, migration 0016).

Several dispatchers share one PostgreSQL database (``serve --workers N``, more ``prefcenter dispatch``
processes), so a per-process :class:`~prefcenter.messaging.ratelimit.TokenBucket` would let N of them
send N times the policy's rate. Here every dispatcher takes its tokens from one ``rate_buckets`` row per
channel, in chunks, and the rate is a ceiling for the whole deployment: in any second at most
``rate + capacity`` messages (the burst, then the refill).

One statement per attempt, on the database server's clock (``clock_timestamp()`` in microseconds: one
time base for every process, whatever their own clocks say): insert the row full when it is missing,
else lock it, refill it by the time passed since its stamp (``least(capacity, tokens + elapsed *
rate)``) and take the chunk when enough is there. The answer is whether it was taken (and when, on the
server's clock) and otherwise the deficit, which the caller sleeps off (``deficit / rate``, at least a
millisecond) before it tries again. No transaction is held while waiting; the row lock lasts one
statement. Waiters of one process go in arrival order (a local lock); across processes there is no FIFO
order, only the ceiling.

The rate and burst are the caller's (the policy's), not the row's: after a policy reload the dispatcher
builds a new bucket, and its next take refills at the new rate (a stored surplus above a smaller burst
is cut to it).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

#: Float sums may never reach ``n`` exactly (as in messaging/ratelimit.py).
EPSILON = 1e-9

#: The shortest sleep before another attempt (a deficit of almost nothing, or a lost first insert).
MIN_SLEEP_SECONDS = 0.001

# $1 channel, $2 rate (tokens a second), $3 capacity, $4 n, $5 the tolerance (EPSILON). ``fresh``: the
# first take of a channel makes its row, full less the chunk (n <= capacity). ``cur``: an existing row,
# locked (FOR UPDATE: under READ COMMITTED it is the newest version, after any concurrent take committed)
# and refilled to the clock (never backwards: the stamp only grows). ``took``: the take, when enough is
# there. Two statements that both find no row: one inserts, the other gets neither row (its snapshot
# predates the insert) and answers "not taken, deficit 0", i.e. try again a millisecond later.
TAKE_SQL = """
WITH clock AS MATERIALIZED (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us
),
fresh AS (
    INSERT INTO rate_buckets (channel, tokens, stamp_us)
    SELECT $1::text, greatest(0, $3::float8 - $4::float8), now_us FROM clock
    ON CONFLICT (channel) DO NOTHING
    RETURNING stamp_us
),
cur AS (
    SELECT b.channel,
           least($3::float8, b.tokens + greatest(0, c.now_us - b.stamp_us)::float8 * $2::float8 / 1000000.0)
               AS avail,
           greatest(c.now_us, b.stamp_us) AS at_us
    FROM rate_buckets b CROSS JOIN clock c
    WHERE b.channel = $1::text
    FOR UPDATE OF b
),
took AS (
    UPDATE rate_buckets b
    SET tokens = greatest(0, cur.avail - $4::float8), stamp_us = cur.at_us
    FROM cur
    WHERE b.channel = cur.channel AND cur.avail >= $4::float8 - $5::float8
    RETURNING b.stamp_us
)
SELECT coalesce((SELECT stamp_us FROM fresh), (SELECT stamp_us FROM took)) AS taken_us,
       coalesce((SELECT greatest(0, $4::float8 - avail) FROM cur), 0)::float8 AS deficit
"""


class SharedBucket:
    """A :class:`prefcenter.store.base.RateBucket` whose tokens live in the ``rate_buckets`` row of
    ``channel``: ``rate`` a second, bursts of ``capacity`` (one second's worth, as TokenBucket's), shared
    by every process on the database of ``pool``."""

    def __init__(self, pool: asyncpg.Pool[asyncpg.Record], channel: str, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.pool = pool
        self.channel = channel
        self.rate = float(rate)
        self.capacity = max(1.0, self.rate)
        self._lock = asyncio.Lock()  # one attempt at a time from this process, waiters in arrival order

    async def try_take(self, n: int) -> tuple[int | None, float]:
        """One attempt: (the server clock in µs of the take, 0.0) when the ``n`` tokens were taken, else
        (None, the tokens missing now)."""
        row = await self.pool.fetchrow(TAKE_SQL, self.channel, self.rate, self.capacity, float(n), EPSILON)
        assert row is not None  # the final SELECT always has its one row
        taken_us: int | None = row["taken_us"]
        if taken_us is not None:
            return taken_us, 0.0
        return None, float(row["deficit"])

    async def take(self, n: int = 1) -> int:
        """Wait until ``n`` tokens (1 <= n <= capacity) are taken; the server clock (µs) of the take."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.capacity}")
        async with self._lock:
            while True:
                taken_us, deficit = await self.try_take(n)
                if taken_us is not None:
                    return taken_us
                await asyncio.sleep(max(MIN_SLEEP_SECONDS, deficit / self.rate))

    async def acquire(self, n: int = 1) -> None:
        """Wait until ``n`` tokens (1 <= n <= capacity) are taken."""
        await self.take(n)


__all__ = ["TAKE_SQL", "SharedBucket"]
