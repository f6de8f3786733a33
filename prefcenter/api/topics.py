"""``/v1/topics``: what customers can subscribe to."""

from __future__ import annotations

from litestar import Controller, Response, delete, get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT

from prefcenter.api.auth import ALL, access
from prefcenter.api.openapi import created
from prefcenter.api.problems import AUTH_ERRORS, BODY_ERRORS, errors, json_body
from prefcenter.domain.model import Topic
from prefcenter.services import topics
from prefcenter.services.runtime import Runtime


class TopicController(Controller):
    path = "/v1/topics"
    tags = ["topics"]

    @get("", operation_id="listTopics", responses=errors(*AUTH_ERRORS), **access(*ALL))
    async def list_topics(self, rt: NamedDependency[Runtime]) -> dict[str, dict[str, Topic]]:
        """Every topic, by id."""
        return {"topics": await rt.store.list_topics()}

    @get("/{topic_id:str}", operation_id="getTopic", responses=errors(400, *AUTH_ERRORS, 404), **access(*ALL))
    async def get_topic(self, rt: NamedDependency[Runtime], topic_id: FromPath[str]) -> Topic:
        """One topic."""
        return await topics.get_topic(rt, topic_id)

    @put(
        "/{topic_id:str}",
        operation_id="putTopic",
        status_code=HTTP_200_OK,
        before_request=json_body,
        responses={**created(Topic), **errors(*AUTH_ERRORS, *BODY_ERRORS, 409, 503)},
        **access("admin"),
    )
    async def put_topic(
        self, rt: NamedDependency[Runtime], topic_id: FromPath[str], data: JSONBody[Topic]
    ) -> Response[Topic]:
        """Create or replace a topic (201 / 200). A topic in use cannot change category (409)."""
        created = await topics.put_topic(rt, topic_id, data)
        return Response(data, status_code=HTTP_201_CREATED if created else HTTP_200_OK)

    @delete(
        "/{topic_id:str}",
        operation_id="deleteTopic",
        status_code=HTTP_204_NO_CONTENT,
        responses=errors(400, *AUTH_ERRORS, 404, 409, 503),
        **access("admin"),
    )
    async def delete_topic(self, rt: NamedDependency[Runtime], topic_id: FromPath[str]) -> None:
        """Delete a topic; 409 while preferences or campaigns reference it."""
        await topics.delete_topic(rt, topic_id)
