"""``POST /v1/campaigns/{campaign_id}/sends``: gate and queue for the dispatcher."""

from __future__ import annotations

from litestar import post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_202_ACCEPTED

from prefcenter.api.auth import WRITE, access
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.services import sends
from prefcenter.services.approvals import ApprovalAnswer, GateAnswer, GateBatcher
from prefcenter.services.campaigns import check_campaign_id
from prefcenter.services.runtime import Runtime


@post(
    "/v1/campaigns/{campaign_id:str}/sends",
    operation_id="sendCampaign",
    status_code=HTTP_202_ACCEPTED,
    tags=["sending"],
    before_request=json_body,
    responses={  # the answer as documented: with `explain` per decision when asked
        202: ResponseSpec(data_container=GateAnswer, generate_examples=False, description="Gated and queued"),
        **errors(*AUTH_ERRORS, *BODY_ERRORS, 404, 503),
    },
    **access(*WRITE),
)
async def send_campaign(
    rt: NamedDependency[Runtime],
    gate_batcher: NamedDependency[GateBatcher],
    campaign_id: FromPath[str],
    data: JSONBody[sends.SendRequest],
) -> ApprovalAnswer:
    """Gate each recipient exactly as an approval at now (same reservations) and queue what is allowed
    or deferred for the dispatcher; the answer is the approval's. A second send of a (campaign,
    customer) that is queued or sent queues nothing more. At most 10,000 ids (more: 413)."""
    check_campaign_id(campaign_id)
    return await sends.send(rt, gate_batcher, campaign_id, data)
