"""The webhook transport (API.md "Sending": other channels) against a real HTTP server on 127.0.0.1:
the JSON it posts, retries for 5xx / 429 / a server that is down, failure for other 4xx and no URL."""

from __future__ import annotations

from prefcenter.services.dispatch import Dispatcher
from tests.api.test_approvals import customer
from tests.conftest import PROFILE, Api, FakeClock
from tests.live import free_port
from tests.smtp.conftest import Hook
from tests.smtp.helpers import counts, dispatcher, outbox, send


def sms_dispatcher(api: Api, url: str | None) -> Dispatcher:
    return dispatcher(api, settings={"webhook_url": url})


async def sms_campaign(api: Api) -> None:
    r = await api.client.put(
        "/v1/campaigns/black-friday",
        json={"topic": "promotions", "channels": ["sms"], "content": {"sms": {"text": "-20% for {{ customer_id }}"}}},
        headers=api.as_("marketing"),
    )
    assert r.status_code in (200, 201), r.text


async def sms_customer(api: Api, cid: str) -> None:
    profile = {**PROFILE, "timezone": "UTC", "contacts": {"sms": "+48600100200"}}
    await customer(api, cid, profile, channel="sms", topics=["promotions"])


async def opt_ins_confirmed(api: Api, state: Hook, url: str) -> None:
    """Send the SMS opt-in confirmations the customers' writes queued (COMPLIANCE item 26), so that
    what the hook sees next is the campaign's."""
    d = sms_dispatcher(api, url)
    await d.run_until_idle()
    await d.close()
    state.bodies.clear()


async def test_posts_json_then_retries_5xx_and_429(api: Api, hook: tuple[Hook, str], clock: FakeClock) -> None:
    state, url = hook
    await sms_campaign(api)
    await sms_customer(api, "c1")
    await opt_ins_confirmed(api, state, url)
    await send(api, ["c1"])
    state.replies = [503, 429]
    d = sms_dispatcher(api, url)
    await d.run_until_idle()
    assert outbox(api)[0][3:6] == ("queued", 1, "webhook answered 503")
    clock.advance(seconds=30)
    await d.run_until_idle()
    assert outbox(api)[0][3:6] == ("queued", 2, "webhook answered 429")
    clock.advance(seconds=60)
    await d.run_until_idle()
    await d.close()
    (body,) = state.bodies
    assert set(body) == {"channel", "address", "text", "message_id"}
    assert (body["channel"], body["address"]) == ("sms", "+48600100200")
    assert body["text"].startswith("-20% for c1\n") and "STOP" in body["text"]  # marketing SMS: how to stop
    assert (await counts(api))["sent"] == 1


async def test_other_4xx_fails_and_no_url_fails_with_a_reason(api: Api, hook: tuple[Hook, str]) -> None:
    state, url = hook
    await sms_campaign(api)
    await sms_customer(api, "c1")
    await sms_customer(api, "c2")
    await opt_ins_confirmed(api, state, url)
    await send(api, ["c1"])
    state.replies = [400]
    d = sms_dispatcher(api, url)
    await d.run_until_idle()
    await d.close()
    assert outbox(api)[0][3:6] == ("failed", 1, "webhook answered 400")
    await send(api, ["c2"])
    d = sms_dispatcher(api, None)
    await d.run_until_idle()
    await d.close()
    row = outbox(api)[1]
    assert row[3] == "failed" and "PREFCENTER_WEBHOOK_URL" in row[5]
    # A failed message released its reservation: the customer may be messaged again.
    r = await api.client.post(
        "/v1/approvals",
        json={"campaign_id": "black-friday", "customer_ids": ["c2"], "dry_run": True},
        headers=api.as_("marketing"),
    )
    assert r.json()["decisions"][0]["verdict"] == "allow"


async def test_a_server_that_is_down_is_retried(api: Api) -> None:
    await sms_campaign(api)
    await sms_customer(api, "c1")
    await send(api, ["c1"])
    d = sms_dispatcher(api, f"http://127.0.0.1:{free_port()}/hook")
    await d.run_until_idle()
    await d.close()
    status, attempts, error = outbox(api)[0][3:6]
    assert (status, attempts) == ("queued", 1) and error.startswith("webhook: ConnectError")
