"""``/v1/webhooks``: preference-change webhook subscriptions (admin) and their delivery logs."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from prefcenter.api.auth import access
from prefcenter.api.openapi import created
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.services import webhooks
from prefcenter.services.runtime import Runtime
from prefcenter.services.webhooks import DeliveryPage, WebhookBody, WebhookView


class WebhookController(Controller):
    path = "/v1/webhooks"
    tags = ["webhooks"]

    @put(
        "/{webhook_id:str}",
        operation_id="putWebhook",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses={**created(WebhookView), **errors(*AUTH_ERRORS, *BODY_ERRORS, 503)},
        **access("admin"),
    )
    async def put_webhook(
        self, rt: NamedDependency[Runtime], webhook_id: FromPath[str], data: JSONBody[WebhookBody]
    ) -> Response[WebhookView]:
        """Create or replace a subscription (201 / 200): every consent event appended afterwards (of the
        given ``sources``, default all) is POSTed to ``url``, signed with ``secret`` as Standard Webhooks
        defines (``whsec_`` + base64 of at least 24 bytes). The answer never holds the secret."""
        was_created, stored = await webhooks.put_webhook(rt, webhook_id, data)
        return Response(stored, status_code=HTTP_201_CREATED if was_created else HTTP_200_OK)

    @get(
        "/{webhook_id:str}",
        operation_id="getWebhook",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access("admin"),
    )
    async def get_webhook(self, rt: NamedDependency[Runtime], webhook_id: FromPath[str]) -> WebhookView:
        """One subscription, without its secret."""
        return await webhooks.get_webhook(rt, webhook_id)

    @delete(
        "/{webhook_id:str}",
        operation_id="deleteWebhook",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(400, *AUTH_ERRORS, 404, 503),
        **access("admin"),
    )
    async def delete_webhook(self, rt: NamedDependency[Runtime], webhook_id: FromPath[str]) -> None:
        """Delete a subscription and its delivery log: its pending deliveries never leave."""
        await webhooks.delete_webhook(rt, webhook_id)

    @get(
        "/{webhook_id:str}/deliveries",
        operation_id="listWebhookDeliveries",
        responses=errors(400, *AUTH_ERRORS, 404),
        **access("admin"),
    )
    async def list_deliveries(
        self,
        rt: NamedDependency[Runtime],
        webhook_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        after: Annotated[
            str | None, QueryParameter(description="the `next` cursor of the previous page", required=False)
        ] = None,
    ) -> DeliveryPage:
        """Its deliveries by event seq: pending (waiting, in flight or to be retried), delivered (a 2xx
        answered) or failed (a 3xx/4xx other than 408 and 429, or given up after
        PREFCENTER_WEBHOOK_GIVE_UP_SECONDS); ``next`` is null on the last page."""
        return await webhooks.list_deliveries(rt, webhook_id, limit, after)
