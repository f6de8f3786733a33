"""The lists (API.md "Lists" and "Message status"): customers, campaigns and the outbox rows of a
campaign or a customer, each a keyset page ``{"<items>": [...], "next": <cursor> | null}``."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from prefcenter.api.auth import ALL, access
from prefcenter.api.params import parse_instant
from prefcenter.api.problems import AUTH_ERRORS, errors
from prefcenter.services import lists
from prefcenter.services.runtime import Runtime

Limit = Annotated[
    str | None,
    QueryParameter(required=False, description="Items a page, 1-1000 (default 100)."),
]
After = Annotated[
    str | None,
    QueryParameter(required=False, description="The `next` cursor of the previous page (opaque)."),
]


@get(
    "/v1/customers",
    operation_id="listCustomers",
    tags=["customers"],
    responses=errors(400, *AUTH_ERRORS),
    **access(*ALL),
)
async def list_customers(
    rt: NamedDependency[Runtime],
    topic: Annotated[
        str | None, QueryParameter(required=False, description="Only those with this topic.")
    ] = None,
    channel: Annotated[
        str | None,
        QueryParameter(required=False, description="Only those with this channel; `none`: without one."),
    ] = None,
    updated_since: Annotated[
        str | None,
        QueryParameter(
            required=False, description="Only those updated at or after (RFC 3339, offset required)."
        ),
    ] = None,
    limit: Limit = None,
    after: After = None,
) -> dict[str, Any]:
    """Customers in id order with their preferences (no provenance) and ``updated_at``; never contacts
    or other personal data. Roles: admin, marketing, auditor."""
    return await lists.list_customers(
        rt,
        topic=topic,
        channel=channel,
        updated_since=parse_instant(updated_since, "updated_since"),
        limit=limit,
        after=after,
    )


@get(
    "/v1/campaigns",
    operation_id="listCampaigns",
    tags=["campaigns"],
    responses=errors(400, *AUTH_ERRORS),
    **access(*ALL),
)
async def list_campaigns(
    rt: NamedDependency[Runtime], limit: Limit = None, after: After = None
) -> dict[str, Any]:
    """Campaigns in id order: ``campaign_id``, ``topic``, ``channels``, ``send_by``. Roles: admin,
    marketing, auditor."""
    return await lists.list_campaigns(rt, limit=limit, after=after)


@get(
    "/v1/campaigns/{campaign_id:str}/messages",
    operation_id="listCampaignMessages",
    tags=["campaigns"],
    responses=errors(400, *AUTH_ERRORS, 404),
    **access(*ALL),
)
async def campaign_messages(
    rt: NamedDependency[Runtime],
    campaign_id: FromPath[str],
    status: Annotated[
        str | None,
        QueryParameter(
            required=False,
            description="Only this outbox status: queued, deferred, sent, failed, suppressed, withdrawn.",
        ),
    ] = None,
    limit: Limit = None,
    after: After = None,
) -> dict[str, Any]:
    """The campaign's messages (outbox rows) in customer order, with status, attempts, not_before,
    last_error, sent_at and updated_at; an unknown campaign is a 404. Roles: admin, marketing, auditor."""
    return await lists.campaign_messages(rt, campaign_id, status=status, limit=limit, after=after)


@get(
    "/v1/customers/{customer_id:str}/messages",
    operation_id="listCustomerMessages",
    tags=["customers"],
    responses=errors(400, *AUTH_ERRORS, 404),
    **access(*ALL),
)
async def customer_messages(
    rt: NamedDependency[Runtime], customer_id: FromPath[str], limit: Limit = None, after: After = None
) -> dict[str, Any]:
    """The customer's messages (outbox rows) in campaign order; an unknown customer is a 404. Roles:
    admin, marketing, auditor."""
    return await lists.customer_messages(rt, customer_id, limit=limit, after=after)


HANDLERS = [list_customers, list_campaigns, campaign_messages, customer_messages]
