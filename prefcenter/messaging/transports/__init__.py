"""Transports hand one rendered message to the outside world and classify the outcome."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from prefcenter.messaging.email import Rendered

# sent: accepted. retry: temporary (4xx, refused or lost connection, timeout). bounce: the recipient
# was permanently rejected (suppress the address). fail: permanent, but nobody is suppressed.
OutcomeKind = Literal["sent", "retry", "bounce", "fail"]


class Outcome(msgspec.Struct, frozen=True):
    kind: OutcomeKind
    detail: str = ""


class Transport(Protocol):
    concurrency: int

    async def send(self, message: Rendered) -> Outcome: ...
    async def close(self) -> None: ...
