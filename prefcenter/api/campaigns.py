"""``/v1/campaigns`` and ``/v1/approvals``: the send-approval gate."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Response, get, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import Scope

from prefcenter.api.approval_path import approval_path, raise_failed
from prefcenter.api.auth import ALL, READ_AUDIT, WRITE, access
from prefcenter.api.openapi import created
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.domain.campaigns import Campaign
from prefcenter.services import approvals, campaigns, trace
from prefcenter.services.approvals import GateBatcher
from prefcenter.services.runtime import Runtime


class CampaignController(Controller):
    path = "/v1/campaigns"
    tags = ["campaigns"]

    @put(
        "/{campaign_id:str}",
        operation_id="putCampaign",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses={**created(Campaign), **errors(*AUTH_ERRORS, *BODY_ERRORS, 503)},
        **access(*WRITE),
    )
    async def put_campaign(
        self, rt: NamedDependency[Runtime], campaign_id: FromPath[str], data: JSONBody[Campaign]
    ) -> Response[Campaign]:
        """Create or replace a campaign (201 / 200). The topic must exist; every offered channel needs
        content; templates may use only {{ customer_id }}, {{ manage_url }} and {{ unsubscribe_url }}."""
        created = await campaigns.put_campaign(rt, campaign_id, data)
        stored = campaigns.in_utc(data)  # as stored and as GET answers it: send_by in UTC with Z
        return Response(stored, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @get(
        "/{campaign_id:str}",
        operation_id="getCampaign",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*ALL),
    )
    async def get_campaign(self, rt: NamedDependency[Runtime], campaign_id: FromPath[str]) -> dict[str, Any]:
        """The campaign and its counts: each recipient once, under its outbox status or, if it has none,
        under ``denied`` by the reason of its latest decision."""
        return await campaigns.campaign_with_counts(rt, campaign_id)

    @get(
        "/{campaign_id:str}/trace/{customer_id:str}",
        operation_id="getTrace",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access(*READ_AUDIT),
    )
    async def get_trace(
        self, rt: NamedDependency[Runtime], campaign_id: FromPath[str], customer_id: FromPath[str]
    ) -> trace.Trace:
        """Everything about this campaign's message to this customer: the decisions (approval, send,
        re-gate, with explain), the message's status, attempts and history (queued, hand-offs, the
        server's answers with the redacted reply, sent / failed / withdrawn / suppressed / deferred), the
        customer's ledger events up to the last decision, and the bounces, complaints and STOPs that
        touched the customer's addresses. Roles: admin, auditor. Unknown campaign, or a customer with no
        record, decision or message: 404."""
        return await trace.trace(rt, campaign_id, customer_id)


@post(
    "/v1/approvals",
    operation_id="approve",
    status_code=HTTP_200_OK,
    tags=["gate"],
    before_request=json_body,
    middleware=[approval_path],  # a well-formed call is answered there, without the steps below
    responses={  # the answer as documented: with `explain` per decision when asked
        200: ResponseSpec(
            data_container=approvals.GateAnswer, generate_examples=False, description="Decided"
        ),
        **errors(*AUTH_ERRORS, *BODY_ERRORS, 404, 503),
    },
    **access(*WRITE),
)
async def approve(
    rt: NamedDependency[Runtime],
    gate_batcher: NamedDependency[GateBatcher],
    data: JSONBody[approvals.ApprovalRequest],
    scope: Scope,
) -> approvals.ApprovalAnswer:
    """May this campaign go to these customers at ``at`` (default now)? allow / defer until / deny, with a
    reason, in the order of ``customer_ids`` (at most 10,000: more is 413). A real allow reserves the
    send; asking again for the same campaign and customer reserves nothing more. ``dry_run`` answers
    exactly what a real call would, and reserves and logs nothing."""
    raise_failed(scope)  # approval_path asked already, and it failed: the same failure, not a second ask
    return await approvals.approve(rt, gate_batcher, data)
