"""Non-email channels: POST JSON ``{channel, address, text, message_id}`` to ``PREFCENTER_WEBHOOK_URL``.

2xx: sent. 408, 429, 5xx and network errors: retry. Other 4xx: fail. Unset URL: every message fails
with a clear reason (nothing is retried that cannot succeed).
"""

from __future__ import annotations

import asyncio

import httpx

from prefcenter.messaging.email import Rendered
from prefcenter.messaging.transports import Outcome


class WebhookTransport:
    def __init__(self, url: str | None, *, concurrency: int = 8, timeout: float = 15.0) -> None:
        self.url = url
        self.concurrency = concurrency
        self._client: httpx.AsyncClient | None = None
        self._timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)

    async def send(self, message: Rendered) -> Outcome:
        if not self.url:
            return Outcome("fail", f"no PREFCENTER_WEBHOOK_URL configured: {message.channel} cannot be sent")
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        body = {
            "channel": message.channel,
            "address": message.address,
            "text": message.text,
            "message_id": message.message_id,
        }
        async with self._slots:
            try:
                response = await self._client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                return Outcome("retry", f"webhook: {type(exc).__name__}: {exc}"[:300])
        code = response.status_code
        if 200 <= code < 300:
            return Outcome("sent")
        if code in (408, 429) or code >= 500:
            return Outcome("retry", f"webhook answered {code}")
        return Outcome("fail", f"webhook answered {code}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
