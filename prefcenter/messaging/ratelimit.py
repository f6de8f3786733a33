"""A token bucket per channel: ``rate`` messages per second with a burst of one second's worth.

Time here is the monotonic clock (injectable), not the business clock ``rt.now``: a rate is about how
fast real messages leave, while ``rt.now`` decides *when* they may leave (quiet hours, deferrals).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

_EPSILON = 1e-9


class TokenBucket:
    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = float(rate)
        self.capacity = float(burst if burst is not None else max(1.0, rate))
        self._monotonic = monotonic
        self._sleep = sleep
        self._tokens = self.capacity
        self._stamp = monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._monotonic()
        self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def acquire(self, n: int = 1) -> None:
        """Wait for ``n`` tokens (at most the capacity); waiters are served in arrival order (the lock
        is FIFO)."""
        if not 1 <= n <= self.capacity:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.capacity}")
        async with self._lock:
            self._refill()
            while self._tokens < n - _EPSILON:  # tolerance: float sums may never reach n exactly
                await self._sleep((n - self._tokens) / self.rate)
                self._refill()
            self._tokens = max(0.0, self._tokens - n)
