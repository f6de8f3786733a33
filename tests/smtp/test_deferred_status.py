"""Issue 16 item 9: a message the gate defers is stored ``deferred`` with its ``not_before`` (migration
0006 defines the statuses) and counted as deferred — at the send and at the dispatcher's re-gate, also
when the message already holds its reservation (it was allowed at the send, the window closed before it
left). The SMS goes through the webhook transport to a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefcenter.domain.timewindows import from_us
from tests.api.test_approvals import customer
from tests.conftest import PROFILE, Api, FakeClock, query
from tests.smtp.conftest import Hook
from tests.smtp.helpers import counts, dispatcher, send
from tests.smtp.test_webhook import sms_campaign

# A UK number and a London profile: in November local time is UTC, for the profile and the phone alike.
LONDON = {**PROFILE, "timezone": "Europe/London", "country": "GB", "contacts": {"sms": "+447911123456"}}
NEXT_MORNING = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def row(api: Api) -> tuple[Any, ...]:
    (found,) = query(api, "SELECT status, not_before_us, last_error FROM outbox WHERE customer_id = 'c1'")
    return found


async def test_a_send_outside_the_sms_window_is_stored_and_counted_deferred(
    api: Api, clock: FakeClock
) -> None:
    """The reproduction: POST .../sends at 23:00 local for an sms customer."""
    clock.t = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
    await sms_campaign(api)
    await customer(api, "c1", LONDON, channel="sms", topics=["promotions"])
    answer = await send(api, ["c1"])
    assert answer["decisions"][0]["verdict"] == "defer"
    status, not_before_us, _ = row(api)
    assert (status, from_us(not_before_us)) == ("deferred", NEXT_MORNING)
    assert (await counts(api))["deferred"] == 1 and (await counts(api))["queued"] == 0


async def test_a_re_gate_that_defers_a_reserved_message_stores_it_deferred(
    api: Api,
    clock: FakeClock,
    hook: tuple[Hook, str],
) -> None:
    """Allowed (and reserved) at 20:59 local; the dispatcher's re-gate at 21:00:30 defers it to 08:00: it
    was left ``queued``, now it is ``deferred`` with the new not_before; at 08:00 it goes out."""
    state, url = hook
    clock.t = datetime(2026, 11, 22, 20, 59, tzinfo=UTC)
    await sms_campaign(api)
    await customer(api, "c1", LONDON, channel="sms", topics=["promotions"])
    answer = await send(api, ["c1"])
    assert answer["decisions"][0]["verdict"] == "allow"
    assert row(api)[0] == "queued"
    clock.t = datetime(2026, 11, 22, 21, 0, 30, tzinfo=UTC)
    d = dispatcher(api, settings={"webhook_url": url})
    await d.run_until_idle()
    status, not_before_us, error = row(api)
    assert (status, from_us(not_before_us), error) == ("deferred", NEXT_MORNING, "quiet_hours")
    c = await counts(api)
    assert (c["deferred"], c["queued"]) == (1, 0)
    # A second re-gate that still defers (the clock is not yet at not_before: nothing is claimed) and one
    # at 08:00 that allows it: it is sent once, keeping its reservation from the send.
    await d.run_until_idle()
    assert row(api)[0] == "deferred"
    clock.t = NEXT_MORNING
    await d.run_until_idle()
    await d.close()
    assert row(api)[0] == "sent"
    assert [b["text"].startswith("-20% for c1") for b in state.bodies].count(True) == 1
