"""Issue 9 item 3: whatever one message does, it alone is failed or parked with the reason, and the
rest of its chunk goes out in the same round (a real SMTP server on 127.0.0.1)."""

from __future__ import annotations

from typing import Any

import pytest

import prefcenter.services.dispatch as dispatcher_module
from tests.api.test_approvals import campaign, customer
from tests.conftest import PROFILE, Api, query
from tests.smtp.helpers import dispatcher, outbox, send
from tests.smtp.sink import Handler

IDS = [f"c{i}" for i in range(5)]
BAD = "c2"


@pytest.mark.parametrize("place", ["regate", "render", "transport", "stored value"])
async def test_one_bad_message_never_holds_back_its_chunk(
    api: Api, sink: tuple[Handler, int], monkeypatch: pytest.MonkeyPatch, place: str
) -> None:
    handler, port = sink
    await campaign(api)
    for cid in IDS:
        profile = {**PROFILE, "contacts": {"email": f"{cid}@example.pl"}}
        await customer(api, cid, profile=profile)
    answer = await send(api, IDS)
    assert answer["summary"]["allow"] == 5
    d = dispatcher(api, port)

    if place == "regate":
        real = dispatcher_module.decide_recipients

        def regate(rt: Any, view: Any, ids: list[str], *args: Any) -> Any:
            if BAD in ids:
                raise RuntimeError("re-gate exploded")
            return real(rt, view, ids, *args)

        monkeypatch.setattr(dispatcher_module, "decide_recipients", regate)
    elif place == "render":
        real_render = dispatcher_module.render

        def render(**kwargs: Any) -> Any:
            if kwargs["customer"].customer_id == BAD:
                raise ValueError("render exploded")
            return real_render(**kwargs)

        monkeypatch.setattr(dispatcher_module, "render", render)
    elif place == "transport":
        transport = d.transports["email"]
        real_send = transport.send

        async def send_one(message: Any) -> Any:
            if message.customer_id == BAD:
                raise RuntimeError("transport exploded")
            return await real_send(message)

        monkeypatch.setattr(transport, "send", send_one)
    else:  # a value stored before the anchors were fixed, written straight into the file
        query(api, "UPDATE customers SET quiet_start = '21:00\n', quiet_end = '08:00' WHERE id = ?", BAD)

    assert await d.run_once() == 5  # one round
    await d.close()
    delivered = sorted(str(m["To"]) for m in handler.messages)
    assert delivered == [f"{cid}@example.pl" for cid in IDS if cid != BAD]
    rows = {row[1]: row for row in outbox(api)}
    assert all(rows[cid][3] == "sent" for cid in IDS if cid != BAD)
    status, last_error = rows[BAD][3], rows[BAD][5]
    expected = {
        "regate": ("failed", "re-gate: RuntimeError: re-gate exploded"),
        "render": ("failed", "render: render exploded"),
        "transport": ("queued", "transport error: RuntimeError"),  # parked: retried with backoff
        "stored value": ("withdrawn", "quiet_hours"),  # fails closed at re-gate
    }[place]
    assert (status, last_error) == expected
    if status != "queued":
        held = query(api, "SELECT count(*) FROM reservations WHERE customer_id = ?", BAD)[0][0]
        assert held == 0  # a message that will not be sent releases its reservation
