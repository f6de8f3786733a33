"""Topics: what customers subscribe to (marketing) or always receive (transactional)."""

from __future__ import annotations

import structlog

from prefcenter.domain.model import Topic, check_topic, check_topic_id
from prefcenter.services.errors import Conflict, NotFound
from prefcenter.services.runtime import Runtime

log = structlog.get_logger("prefcenter.topics")


async def put_topic(rt: Runtime, topic_id: str, topic: Topic) -> bool:
    check_topic_id(topic_id)
    check_topic(topic)
    async with rt.store.write() as tx:
        existing = await tx.get_topic(topic_id)
        if existing is not None and existing.category != topic.category and await tx.topic_in_use(topic_id):
            raise Conflict(f"topic {topic_id!r} is in use; its category cannot change")
        created = await tx.put_topic(topic_id, topic, rt.now())
    log.info("topic stored", topic_id=topic_id, created=created)
    return created


async def get_topic(rt: Runtime, topic_id: str) -> Topic:
    check_topic_id(topic_id)
    topic = await rt.store.get_topic(topic_id)
    if topic is None:
        raise NotFound(f"no topic {topic_id!r}")
    return topic


async def delete_topic(rt: Runtime, topic_id: str) -> None:
    check_topic_id(topic_id)
    async with rt.store.write() as tx:
        if await tx.get_topic(topic_id) is None:
            raise NotFound(f"no topic {topic_id!r}")
        if await tx.topic_in_use(topic_id):
            raise Conflict(f"topic {topic_id!r} is referenced by preferences or campaigns")
        await tx.delete_topic(topic_id)
    log.info("topic deleted", topic_id=topic_id)
