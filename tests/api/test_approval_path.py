"""``POST /v1/approvals``'s hot path (prefcenter/api/approval_path.py): a well-formed call is answered by
the handler middleware, everything else by the litestar handler, and both give the same answer.

The same call is sent twice: with ``Content-Type: application/json`` (the hot path) and with
``application/json; charset=utf-8`` (which the hot path leaves to the handler). The handler runs only
for the second (counted through ``raise_failed``, which it calls first)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from prefcenter.api import approval_path, campaigns
from prefcenter.services import approvals
from tests.api.test_approvals import AT, campaign, customer
from tests.conftest import Api, query

HOT = "application/json"
HANDLER = "application/json; charset=utf-8"


@pytest.fixture
def answered(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call the hot path answered itself."""
    calls: list[int] = []
    real = approval_path._encoder

    class Counting:
        def encode(self, value: Any) -> bytes:
            calls.append(1)
            return real.encode(value)

    monkeypatch.setattr(approval_path, "_encoder", Counting())
    return calls


@pytest.fixture
def handled(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call the litestar handler answered."""
    calls: list[int] = []
    real = campaigns.raise_failed

    def counting(scope: Any) -> None:
        calls.append(1)
        real(scope)

    monkeypatch.setattr(campaigns, "raise_failed", counting)
    return calls


async def post(api: Api, body: bytes | str, content_type: str = HOT) -> Any:
    headers = {**api.as_("marketing"), "content-type": content_type}
    return await api.client.post("/v1/approvals", content=body, headers=headers)


def same(a: Any, b: Any) -> None:
    """Same status, body bytes and headers (the request id aside)."""
    assert a.status_code == b.status_code, (a.text, b.text)
    assert a.content == b.content
    drop = {"x-request-id"}
    assert {k: v for k, v in a.headers.items() if k not in drop} == {
        k: v for k, v in b.headers.items() if k not in drop
    }


async def test_both_paths_answer_alike(api: Api, handled: list[int], answered: list[int]) -> None:
    await campaign(api)
    await customer(api, "c1", channel="email")
    await customer(api, "c2", channel="sms")
    for extra in ({"dry_run": True}, {"dry_run": True, "explain": True}):
        body = json.dumps(
            {"campaign_id": "black-friday", "customer_ids": ["c1", "c2", "nobody"], "at": AT, **extra}
        )
        hot = await post(api, body)
        assert hot.status_code == 200 and handled == [] and answered == [1], hot.text
        via_handler = await post(api, body, HANDLER)
        assert handled == [1] and answered == [1]
        same(hot, via_handler)
        assert hot.headers["cache-control"] == "no-store" and hot.headers["x-request-id"]
        handled.clear()
        answered.clear()
    # a real call on each path, for a customer each: the same answer, each reserving once
    for cid, content_type in (("c1", HOT), ("c2", HANDLER)):
        r = await post(
            api, json.dumps({"campaign_id": "black-friday", "customer_ids": [cid], "at": AT}), content_type
        )
        assert r.status_code == 200 and r.json()["summary"]["allow"] == 1, r.text
    assert handled == [1]
    assert query(api, "SELECT customer_id FROM reservations ORDER BY 1") == [("c1",), ("c2",)]
    assert query(api, "SELECT customer_id, kind FROM decisions ORDER BY 1") == [
        ("c1", "approval"),
        ("c2", "approval"),
    ]


async def test_a_failure_on_the_hot_path_is_answered_by_the_handler_without_asking_again(
    api: Api, handled: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = approvals.approve

    async def counting(*args: Any, **kwargs: Any) -> Any:
        asked.append(1)
        return await real(*args, **kwargs)

    monkeypatch.setattr(approvals, "approve", counting)
    for body, status in (
        ({"campaign_id": "no-such", "customer_ids": ["c1"], "at": AT}, 404),
        ({"campaign_id": "no-such", "customer_ids": [f"c{i}" for i in range(10_001)]}, 413),
        ({"campaign_id": "no-such", "customer_ids": ["c1", "c1"], "at": AT}, 400),
    ):
        hot = await post(api, json.dumps(body))
        assert hot.status_code == status, hot.text
        assert handled == [1] and asked == [1], body  # asked once, on the hot path; answered by the handler
        via_handler = await post(api, json.dumps(body), HANDLER)
        same(hot, via_handler)
        assert hot.headers["content-type"] == "application/problem+json"
        handled.clear()
        asked.clear()


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ("", 400, "body"),
        ("{not json", 400, ""),
        ('{"campaign_id": "black-friday", "customer_ids": ["c1"], "dry_run": 0}', 400, "dry_run"),
        ('{"campaign_id": "black-friday", "customer_ids": ["c1"], "extra": 1}', 400, "extra"),
        ('{"campaign_id": "black-friday", "customer_ids": ["c1"], "at": "2026-11-22T12:00:00"}', 400, "at"),
    ],
)
async def test_a_body_the_hot_path_cannot_take_goes_to_the_handler(
    api: Api, answered: list[int], body: str, status: int, says: str
) -> None:
    await campaign(api)
    r = await post(api, body)
    assert r.status_code == status, r.text
    assert answered == []
    assert says in r.text
    same(r, await post(api, body, HANDLER))


async def test_other_media_types_and_oversized_bodies_go_to_the_handler(
    api: Api, answered: list[int]
) -> None:
    await campaign(api)
    body = json.dumps({"campaign_id": "black-friday", "customer_ids": ["c1"], "dry_run": True})
    assert (await post(api, body, "text/plain")).status_code == 415
    big = '{"campaign_id": "black-friday", "customer_ids": ["' + "x" * (5 * 1024 * 1024) + '"]}'
    assert (await post(api, big)).status_code == 413
    assert answered == []
    assert (await post(api, body)).status_code == 200 and answered == [1]


async def test_a_body_without_content_length_goes_to_the_handler_unread() -> None:
    """Chunked (no Content-Length): the handler gets the request as it came, its receive untouched."""
    seen: list[Any] = []

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        seen.append(receive)

    class Route:
        def resolve_request_max_body_size(self) -> int:
            return 1000

    async def receive() -> Any:  # pragma: no cover - must not be called
        raise AssertionError("the hot path read the body")

    scope = {"headers": [(b"content-type", b"application/json")], "route_handler": Route()}
    await approval_path.approval_path(handler)(scope, receive, None)  # type: ignore[arg-type]
    assert seen == [receive]


async def test_a_body_in_chunks_is_read_whole_or_replayed() -> None:
    """The body reader and the replay, with a body sent in three chunks and one past the limit."""
    chunks = [b'{"campaign_id": ', b'"bf", "customer_ids"', b': ["c1"]}']

    def receiver(parts: list[bytes]) -> Any:
        messages = [
            {"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)
        ]

        async def receive() -> Any:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        return receive

    got, complete = await approval_path._read_body(receiver(chunks), 1000)
    assert complete and b"".join(got) == b"".join(chunks)
    receive = receiver(chunks)
    got, complete = await approval_path._read_body(receive, 20)  # stops once past 20 bytes
    assert not complete and got == chunks[:2]
    again = approval_path._replay(got, complete, receive)
    first = await again()
    assert first == {"type": "http.request", "body": b"".join(chunks[:2]), "more_body": True}
    assert (await again())["body"] == chunks[2]  # then the rest, from the client
