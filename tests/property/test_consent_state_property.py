"""Hypothesis: for random histories of preference writes, the consent state at any instant T (rebuilt
from the ledger alone, ``GET .../consent-state?at=T``) is what ``GET .../preferences`` answered right
after the latest write at or before T (nothing before the first one). Issue 13 item 1.

One app per test run (the ``api`` fixture is shared by the examples: each example has a customer of its
own and a clock that only moves on), so the health check about function-scoped fixtures is off on
purpose.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefcenter.domain.ledger import format_instant
from tests.conftest import PROFILE, Api, FakeClock

NOTHING: dict[str, Any] = {
    "channel": None,
    "topics": [],
    "quiet_hours": None,
    "max_per_week": None,
    "paused_until": None,
}
PROVENANCE = {"source": "api", "actor": "prop", "notice_version": "2026-10", "evidence": {}}
HHMM = st.sampled_from(["00:00", "07:30", "08:00", "12:15", "21:00", "23:59"])
quiet = st.one_of(
    st.none(),
    st.tuples(HHMM, HHMM).filter(lambda t: t[0] != t[1]).map(lambda t: {"start": t[0], "end": t[1]}),
)
pauses = st.one_of(
    st.none(),
    st.builds(
        lambda s, us: (datetime(2027, 1, 1, tzinfo=UTC) + timedelta(seconds=s, microseconds=us)).isoformat(),
        st.integers(0, 10**7),
        st.sampled_from([0, 0, 1, 500_000]),
    ),
)
writes = st.fixed_dictionaries(
    {
        "channel": st.sampled_from([None, "email", "sms", "push", "voice"]),
        "topics": st.lists(st.sampled_from(["promotions", "product-news"]), unique=True, max_size=2),
        "quiet_hours": quiet,
        "max_per_week": st.one_of(st.none(), st.integers(1, 50)),
        "paused_until": pauses,
    }
)
# (seconds after the previous write, the write); at least one second apart, sometimes days
histories = st.lists(st.tuples(st.integers(1, 3 * 86400), writes), min_size=1, max_size=6)
# which instants to ask about: (index of a write, offset in microseconds around it)
probes = st.lists(st.tuples(st.integers(0, 5), st.sampled_from([-1, 0, 1, 999_999])), min_size=1, max_size=6)

_ids = itertools.count()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories, asks=probes)
async def test_state_at_any_instant_is_what_get_preferences_said_then(
    api: Api, clock: FakeClock, history: list[tuple[int, dict[str, Any]]], asks: list[tuple[int, int]]
) -> None:
    cid = f"p{next(_ids)}"
    clock.advance(days=1)
    r = await api.client.put(f"/v1/customers/{cid}", json=PROFILE, headers=api.as_("marketing"))
    assert r.status_code == 201, r.text
    seen: list[tuple[datetime, dict[str, Any]]] = []  # (instant of the write, GET preferences then)
    for gap, body in history:
        clock.advance(seconds=gap)
        r = await api.client.put(
            f"/v1/customers/{cid}/preferences",
            json={**body, "provenance": PROVENANCE},
            headers=api.as_("marketing"),
        )
        assert r.status_code == 200, r.text
        got = await api.client.get(f"/v1/customers/{cid}/preferences", headers=api.as_("auditor"))
        prefs = got.json()
        prefs["topics"] = sorted(prefs["topics"])
        seen.append((clock(), prefs))
    for index, offset in asks:
        written, _ = seen[min(index, len(seen) - 1)]
        at = written + timedelta(microseconds=offset)
        want = NOTHING
        for when, prefs in seen:
            if when <= at:
                want = prefs
        r = await api.client.get(
            f"/v1/customers/{cid}/consent-state", params={"at": at.isoformat()}, headers=api.as_("auditor")
        )
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["at"] == format_instant(at)
        assert answer["state"] == want, (at, seen)
