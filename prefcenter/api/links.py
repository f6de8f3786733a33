"""``POST /v1/customers/{customer_id}/links``: signed links to a customer's own pages."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import Body, FromPath
from litestar.status_codes import HTTP_201_CREATED

from prefcenter.api.auth import WRITE, access
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, optional_json_body
from prefcenter.domain.model import FieldError, InvalidInput, TopicId, check_customer_id
from prefcenter.services import customers, links
from prefcenter.services.runtime import Runtime


class LinksRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Optionally a marketing topic: the unsubscribe link then removes only that topic."""

    topic: TopicId | None = None


class Links(msgspec.Struct, frozen=True):
    manage_url: str
    unsubscribe_url: str


class LinkController(Controller):
    path = "/v1/customers/{customer_id:str}/links"
    tags = ["customers"]

    @post(
        "",
        operation_id="createLinks",
        status_code=HTTP_201_CREATED,
        before_request=optional_json_body,
        responses=errors(*AUTH_ERRORS, *BODY_ERRORS, 404),
        **access(*WRITE),
    )
    async def create_links(
        self,
        rt: NamedDependency[Runtime],
        customer_id: FromPath[str],
        data: Annotated[LinksRequest | None, Body(title="LinksRequest")] = None,
    ) -> Links:
        """Mint a manage link (30 days) and an unsubscribe link (400 days) for the customer.

        With `topic` (a marketing topic) the unsubscribe link removes only that topic; without it the link
        is all-scope (no channel, no topics). Links carry an opaque pseudonym, never the customer id.
        """
        check_customer_id(customer_id)
        topic = data.topic if data is not None else None
        customer = await customers.get_customer(rt, customer_id)
        if topic is not None:
            found = await rt.store.get_topic(topic)
            if found is None or found.category != "marketing":
                why = "no such topic" if found is None else "a transactional topic has no unsubscribe link"
                raise InvalidInput(
                    [FieldError("topic", f"{topic!r}: {why}")], "The topic must be a marketing topic."
                )
        manage, unsubscribe = links.mint_links(rt, customer, topic)
        return Links(manage_url=manage, unsubscribe_url=unsubscribe)
