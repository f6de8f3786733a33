"""COMPLIANCE item 26 (CTIA; API.md "SMS opt-in confirmation"): when a customer's channel becomes ``sms``
with a marketing topic, exactly one confirmation text goes out through the SMS transport — here the
webhook transport, to a real HTTP receiver on 127.0.0.1 — with the program name, the message frequency,
"Msg & data rates may apply" and HELP and STOP; transactional, durable (written with the preference
change), never to a suppressed number, never twice for one opt-in, erased with the customer."""

from __future__ import annotations

from typing import Any

from prefcenter.services.dispatch import Dispatcher
from tests.conftest import PROFILE, Api, FakeClock, prefs_body, query
from tests.smtp.conftest import Hook
from tests.smtp.helpers import dispatcher

NUMBER = "+48600100200"


async def profile(api: Api, cid: str = "c1") -> None:
    body = {**PROFILE, "contacts": {"sms": NUMBER, "email": "ola@example.pl"}}
    r = await api.client.put(f"/v1/customers/{cid}", json=body, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text


async def prefs(api: Api, cid: str = "c1", **changes: Any) -> None:
    body = prefs_body(**{"channel": "sms", "quiet_hours": None, "max_per_week": None, **changes})
    r = await api.client.put(f"/v1/customers/{cid}/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text


def rows(api: Api) -> list[tuple[Any, ...]]:
    return query(api, "SELECT customer_id, kind, status, attempts, last_error FROM notifications ORDER BY id")


def sms_dispatcher(api: Api, url: str) -> Dispatcher:
    return dispatcher(api, settings={"webhook_url": url})


async def drain(api: Api, url: str) -> None:
    d = sms_dispatcher(api, url)
    await d.run_until_idle()
    await d.close()


async def test_item_26_one_confirmation_after_the_opt_in_and_none_after_the_same_write(
    api: Api,
    hook: tuple[Hook, str],
) -> None:
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"], max_per_week=2)
    assert rows(api) == [("c1", "sms_opt_in", "queued", 0, None)]  # durable: written with the change
    await drain(api, url)
    (body,) = state.bodies
    assert (body["channel"], body["address"]) == ("sms", NUMBER)
    text = body["text"]
    assert text.startswith(f"{api.rt.settings.sms_program}: ")
    # the policy allows 3 a week (and 1 a day); the customer's own cap is 2: the tighter one is told
    assert "Up to 2 msgs/week" in text
    assert "Msg & data rates may apply" in text and "Reply HELP for help, STOP to opt out." in text
    assert "http" not in text  # transactional: no links, no marketing content
    assert rows(api) == [("c1", "sms_opt_in", "sent", 1, None)]
    # the same write again changes nothing and sends nothing
    await prefs(api, topics=["promotions"], max_per_week=2)
    await drain(api, url)
    assert len(state.bodies) == 1 and len(rows(api)) == 1


async def test_item_26_which_writes_are_opt_ins(api: Api, hook: tuple[Hook, str]) -> None:
    """Becoming sms with a marketing topic, from another channel or from sms without a topic, is an
    opt-in; adding a second topic, or sms with no topic, is not. Without a per-week cap of the customer's
    the policy's tells the frequency."""
    state, url = hook
    await profile(api)
    await prefs(api, channel="email", topics=["promotions"])
    await prefs(api, topics=[])  # sms, no topic
    assert rows(api) == []
    await prefs(api, topics=["promotions"])  # now an opt-in
    await prefs(api, topics=["promotions", "product-news"])  # not another one
    await drain(api, url)
    assert len(state.bodies) == 1 and "Up to 3 msgs/week" in state.bodies[0]["text"]
    await prefs(api, channel="email", topics=["promotions"])
    await prefs(api, topics=["promotions"])  # back to sms from email: a new opt-in, a new text
    await drain(api, url)
    assert len(state.bodies) == 2 and [r[2] for r in rows(api)] == ["sent", "sent"]


async def test_item_26_opting_in_twice_before_it_left_sends_one(api: Api, hook: tuple[Hook, str]) -> None:
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"])
    await prefs(api, channel="email", topics=["promotions"])
    await prefs(api, topics=["promotions"])
    assert len(rows(api)) == 1
    await drain(api, url)
    assert len(state.bodies) == 1


async def test_item_26_a_stop_wins(api: Api, hook: tuple[Hook, str]) -> None:
    """A STOP that lands before the confirmation leaves: nothing is sent to the number."""
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"])
    r = await api.client.post(
        "/v1/inbound/sms", json={"from": NUMBER, "text": "STOP"}, headers=api.as_("marketing")
    )
    assert r.status_code == 200, r.text
    await drain(api, url)
    assert state.bodies == []
    assert [r[2] for r in rows(api)] == ["suppressed"]


async def test_item_26_an_opt_in_that_ended_is_not_confirmed(api: Api, hook: tuple[Hook, str]) -> None:
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"])
    await prefs(api, topics=[])
    await drain(api, url)
    assert state.bodies == [] and [r[2] for r in rows(api)] == ["cancelled"]


async def test_item_26_a_temporary_failure_is_retried(
    api: Api,
    hook: tuple[Hook, str],
    clock: FakeClock,
) -> None:
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"])
    state.replies = [503]
    await drain(api, url)
    assert rows(api) == [("c1", "sms_opt_in", "queued", 1, "webhook answered 503")]
    clock.advance(seconds=30)
    await drain(api, url)
    assert len(state.bodies) == 1 and rows(api)[0][2:4] == ("sent", 2)


async def test_item_26_erasure_deletes_a_waiting_confirmation(api: Api, hook: tuple[Hook, str]) -> None:
    state, url = hook
    await profile(api)
    await prefs(api, topics=["promotions"])
    assert len(rows(api)) == 1
    assert (await api.client.delete("/v1/customers/c1", headers=api.as_("admin"))).status_code == 204
    assert rows(api) == []
    await drain(api, url)
    assert state.bodies == []
