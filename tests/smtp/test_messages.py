"""Message status (API.md "Message status"): the outbox rows of a campaign or a customer after real sends
through the dispatcher to the aiosmtpd sink; campaign counts add up (each recipient once)."""

from __future__ import annotations

from typing import Any

from tests.api.test_approvals import campaign, customer
from tests.conftest import Api, FakeClock
from tests.smtp.helpers import counts, dispatcher, send
from tests.smtp.sink import Handler
from tests.smtp.test_delivery import _profile


async def messages(api: Api, path: str, role: str = "auditor", **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after: str | None = None
    for _ in range(50):
        r = await api.client.get(
            path, params={**params, **({"after": after} if after else {})}, headers=api.as_(role)
        )
        assert r.status_code == 200, r.text
        out += r.json()["messages"]
        after = r.json()["next"]
        if after is None:
            return out
    raise AssertionError("paging did not end")


async def test_messages_after_send_failure_and_withdrawal(
    api: Api, sink: tuple[Handler, int], clock: FakeClock
) -> None:
    handler, port = sink
    await campaign(api)
    await customer(api, "c1")
    await customer(api, "c2", _profile("c2"))
    await customer(api, "c3", _profile("c3"), topics=[])  # denied: not subscribed
    await customer(api, "c4", _profile("c4"), quiet_hours={"start": "09:00", "end": "12:00"})  # deferred
    await customer(api, "c5", _profile("c5"))
    await send(api, ["c1"])
    d = dispatcher(api, port)
    assert await d.run_until_idle() == 1
    handler.data_replies = ["554 5.6.0 content rejected"]
    await send(api, ["c2"])
    await d.run_until_idle()
    await send(api, ["c3", "c4", "c5"])
    await customer(api, "c5", _profile("c5"), channel=None, topics=[])  # withdraws before the dispatcher
    await d.run_until_idle()
    await send(api, ["c5", "c1"])  # asked again: denied now, but counted once, under the outbox status
    await d.close()
    assert len(handler.messages) == 1

    rows = await messages(api, "/v1/campaigns/black-friday/messages", limit="2")
    assert [m["customer_id"] for m in rows] == ["c1", "c2", "c4", "c5"]
    by = {m["customer_id"]: m for m in rows}
    assert set(by["c1"]) == {
        "campaign_id", "customer_id", "channel", "status", "attempts", "not_before", "last_error", "sent_at", "updated_at",
    }  # fmt: skip
    c1 = by["c1"]
    assert (c1["campaign_id"], c1["channel"], c1["status"], c1["attempts"], c1["last_error"]) == (
        "black-friday", "email", "sent", 1, None,
    )  # fmt: skip
    assert c1["sent_at"].endswith("Z") and c1["updated_at"].endswith("Z") and c1["not_before"].endswith("Z")
    c2 = by["c2"]
    assert (c2["status"], c2["attempts"], c2["sent_at"]) == ("failed", 1, None)
    assert "554" in c2["last_error"]
    c4 = by["c4"]
    assert (c4["status"], c4["attempts"], c4["not_before"], c4["sent_at"]) == (
        "deferred", 0, "2026-11-22T11:00:00Z", None,
    )  # fmt: skip
    assert by["c5"]["status"] == "withdrawn"
    # the status filter, and the customer's own list
    assert [
        m["customer_id"] for m in await messages(api, "/v1/campaigns/black-friday/messages", status="failed")
    ] == ["c2"]
    assert await messages(api, "/v1/campaigns/black-friday/messages", status="queued") == []
    assert await messages(api, "/v1/customers/c1/messages", role="marketing") == [c1]
    assert await messages(api, "/v1/customers/c3/messages") == []

    # counts add up: each of the five recipients once, under its outbox status or its latest denial
    c = await counts(api)
    assert (c["sent"], c["failed"], c["deferred"], c["withdrawn"], c["queued"]) == (1, 1, 1, 1, 0)
    assert c["denied"] == {"topic_not_subscribed": 1}
    total = sum(v for k, v in c.items() if k != "denied") + sum(c["denied"].values())
    assert total == 5


async def test_messages_of_a_second_campaign_page_by_campaign(api: Api, sink: tuple[Handler, int]) -> None:
    _, _port = sink
    for cid in ("b-camp", "a-camp", "c-camp"):
        await campaign(api, cid)
    await customer(api, "c1")
    for cid in ("b-camp", "a-camp", "c-camp"):
        await send(api, ["c1"], cid)
    rows = await messages(api, "/v1/customers/c1/messages", limit="1")
    assert [m["campaign_id"] for m in rows] == ["a-camp", "b-camp", "c-camp"]
    assert {m["status"] for m in rows} <= {"queued", "deferred"}  # the policy may space them out


async def test_messages_errors(api: Api) -> None:
    await campaign(api)
    h = api.as_("auditor")
    assert (await api.client.get("/v1/campaigns/nope/messages", headers=h)).status_code == 404
    assert (await api.client.get("/v1/customers/nobody/messages", headers=h)).status_code == 404
    for path, params, field in [
        ("/v1/campaigns/black-friday/messages", {"status": "denied"}, "status"),
        ("/v1/campaigns/black-friday/messages", {"limit": "0"}, "limit"),
        ("/v1/campaigns/black-friday/messages", {"after": "AAAA"}, "after"),
        ("/v1/campaigns/Bad%20Id/messages", {}, "campaign_id"),
        ("/v1/customers/c1/messages", {"limit": "1001"}, "limit"),
    ]:
        r = await api.client.get(path, params=params, headers=h)
        assert r.status_code == 400, (path, params, r.text)
        assert [e["field"] for e in r.json()["errors"]] == [field]


async def test_counts_a_recipient_denied_twice_once_under_its_latest_denial(api: Api) -> None:
    await campaign(api)
    await customer(api, "d1", topics=[])  # topic_not_subscribed
    await customer(api, "d2", channel=None, topics=[])  # no_channel
    await send(api, ["d1", "d2"])
    await customer(api, "d1", channel=None, topics=[])  # now no_channel
    await send(api, ["d1"])
    await send(api, ["d1"])  # the same denial again: still one recipient
    c = await counts(api)
    assert c["denied"] == {"no_channel": 2}, c
    assert sum(v for k, v in c.items() if k != "denied") == 0
    assert await messages(api, "/v1/campaigns/black-friday/messages") == []
