"""``/v1/consent-events``: the auditor's view of the ledger."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Stream

from prefcenter.api.auth import READ_AUDIT, access
from prefcenter.api.params import parse_instant
from prefcenter.api.problems import AUTH_ERRORS, errors
from prefcenter.domain.model import check_customer_id
from prefcenter.services import consent
from prefcenter.services.runtime import Runtime

SinceParam = Annotated[
    str | None, QueryParameter(description="RFC 3339 time with offset; events at or after it", required=False)
]
UntilParam = Annotated[
    str | None, QueryParameter(description="RFC 3339 time with offset; events before it", required=False)
]


def _filter(rt: Runtime, customer_id: str | None, since: str | None, until: str | None) -> Any:
    if customer_id is not None:
        check_customer_id(customer_id)
    return consent.event_filter(rt, customer_id, parse_instant(since, "since"), parse_instant(until, "until"))


class ConsentController(Controller):
    path = "/v1/consent-events"
    tags = ["consent ledger"]

    @get("", operation_id="listConsentEvents", responses=errors(400, *AUTH_ERRORS), **access(*READ_AUDIT))
    async def list_events(
        self,
        rt: NamedDependency[Runtime],
        customer_id: Annotated[str | None, QueryParameter(required=False)] = None,
        since: SinceParam = None,
        until: UntilParam = None,
        # 2^53 - 1: the largest integer every JSON client (and the OpenAPI document's readers) holds exactly
        after_seq: Annotated[int, QueryParameter(ge=0, le=2**53 - 1)] = 0,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Events in seq order; ``next_after_seq`` is null when there are no more."""
        events, next_after = await consent.events_page(
            rt, _filter(rt, customer_id, since, until), after_seq=after_seq, limit=limit
        )
        return {"events": events, "next_after_seq": next_after}

    @get(
        "/export",
        operation_id="exportConsentEvents",
        responses=errors(400, *AUTH_ERRORS),
        **access(*READ_AUDIT),
    )
    async def export(
        self,
        rt: NamedDependency[Runtime],
        format: Annotated[Literal["jsonl", "csv"], QueryParameter()] = "jsonl",
        customer_id: Annotated[str | None, QueryParameter(required=False)] = None,
        since: SinceParam = None,
        until: UntilParam = None,
    ) -> Stream:
        """The events, streamed in constant memory: JSONL (recompute the chain from it) or CSV."""
        flt = _filter(rt, customer_id, since, until)
        media = "application/x-ndjson" if format == "jsonl" else "text/csv"  # litestar adds the charset
        return Stream(
            consent.export_events(rt, flt, format),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="consent-events.{format}"'},
        )

    @get(
        "/verify",
        operation_id="verifyConsentEvents",
        responses=errors(400, *AUTH_ERRORS),
        **access(*READ_AUDIT),
    )
    async def verify(
        self,
        rt: NamedDependency[Runtime],
        head: Annotated[str | None, QueryParameter(required=False)] = None,
    ) -> dict[str, Any]:
        """Recompute the chain; names the first bad seq when any event was altered, removed or reordered.

        ``head``: a head hash recorded earlier, which must lie on the chain.
        """
        result = await consent.verify_ledger(rt, head)
        return result.as_dict()
