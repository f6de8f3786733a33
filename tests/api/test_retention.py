"""Retention (issue 14): the gate reads only the reservations a cap can use, and the pruner deletes
what the policy's ``[retention]`` allows, and nothing else (the ledger never), on both engines.

The shipped policy: caps 1 per 24 h and 3 per 7 days, so the longest cap window W is 7 days;
``reservation_grace_days`` 7, ``decisions_days`` 1461, ``outbox_days`` 90."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
import structlog
from click.testing import CliRunner

from prefcenter.cli import main
from prefcenter.config import Settings
from prefcenter.domain.ledger import format_at, format_instant
from prefcenter.domain.policy import PolicyError, parse_policy
from prefcenter.domain.timewindows import to_us
from prefcenter.services import retention
from prefcenter.store.retention import ReservationBound
from prefcenter.store.sqlite.store import SqliteStore
from tests.api.test_approvals import approve, campaign, customer
from tests.api.test_explain import VOICE_CAMPAIGN
from tests.conftest import Api, FakeClock, database_at, query

DAY = timedelta(days=1)


def at(moment: datetime) -> str:
    return format_instant(moment)


async def test_the_gate_reads_only_reservations_inside_the_longest_cap_window(api: Api) -> None:
    """Reservations at 20, 8, 7 and 2 days before T: the gate load at T reads those later than T - 7
    days (the caps over every channel: 3 per 7 days, and a customer's max_per_week), so not the one
    at exactly 7 days, which no window of a candidate >= T can hold; a voice reservation later than
    T - 30 days (the FR override's voice cap: 4 in 30 days); and the campaign's own at any age.
    Without a bound it reads them all."""
    t = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    await customer(api, "c1")
    for name, days in (("old", 20), ("eight", 8), ("seven", 7), ("two", 2), ("own", 30)):
        await campaign(api, name)
        r = await approve(api, ["c1"], at=at(t - timedelta(days=days)), cid=name)
        assert r.json()["decisions"][0]["verdict"] == "allow", r.text
    for name, days in (("voice20", 20), ("voice31", 31)):
        await campaign(api, name)
        query(
            api,
            "INSERT INTO reservations (customer_id, campaign_id, at_us, channel, marketing) VALUES (?, ?, ?, 'voice', 1)",
            "c1",
            name,
            to_us(t - timedelta(days=days)),
        )
    bound = retention.reservations_since(api.rt.policy, t)
    assert bound == ReservationBound(to_us(t - timedelta(days=7)), ("voice",), to_us(t - timedelta(days=30)))
    loaded = await api.rt.store.gate_inputs(["c1"], "promotions", "own", bound)
    assert sorted(loaded.held["c1"]) == ["own", "two", "voice20"]
    everything = await api.rt.store.gate_inputs(["c1"], "promotions", "own")
    assert sorted(everything.held["c1"]) == ["eight", "old", "own", "seven", "two", "voice20", "voice31"]


def _sent(api: Api, camp: str, cid: str, updated: datetime, status: str = "sent") -> None:
    stamp = format_at(updated)
    query(
        api,
        "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, attempts, created_at, "
        "updated_at, sent_at) VALUES (?, ?, 'email', ?, ?, 1, ?, ?, ?)",
        camp,
        cid,
        status,
        to_us(updated),
        stamp,
        stamp,
        stamp if status == "sent" else None,
    )
    query(
        api,
        "INSERT INTO message_history (campaign_id, customer_id, at, event, detail) VALUES (?, ?, ?, 'sent', NULL)",
        camp,
        cid,
        stamp,
    )


async def test_a_pass_deletes_what_retention_allows_and_keeps_the_rest(api: Api) -> None:
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    api.rt.now.t = now - timedelta(days=200)  # type: ignore[attr-defined]
    for cid in ("c1", "c2"):
        await customer(api, cid)
    # ended 100 days ago (send_by): its reservations, finished outbox rows and their history go; its
    # queued row stays
    await campaign(api, "ended", send_by=at(now - timedelta(days=100)))
    # ended 10 days ago: its reservations (made 12 days ago) are within W + grace: kept; outbox too
    await campaign(api, "recent", send_by=at(now - timedelta(days=10)))
    # ended 3 days ago, inside the grace: a back-dated approval could still be a retry: kept
    await campaign(api, "grace", send_by=at(now - timedelta(days=3)))
    # no end: its reservations and sent rows are its memory: kept (decisions_days is 4 years)
    await campaign(api, "open")
    # ended 18 days ago, reserved 20 (21) days ago: past W + grace for an email campaign (7 + 7 days):
    # they go; with voice among its channels W is voice's 30 days (the FR override), so they stay
    await campaign(api, "email20", send_by=at(now - timedelta(days=18)))
    await campaign(api, "voice20", send_by=at(now - timedelta(days=18)), **VOICE_CAMPAIGN)
    for camp, days in (
        ("ended", 120), ("recent", 12), ("grace", 30), ("open", 150), ("email20", 20), ("voice20", 21)
    ):
        r = await approve(api, ["c1", "c2"], at=at(now - timedelta(days=days)), cid=camp)
        assert [d["verdict"] for d in r.json()["decisions"]] == ["allow", "allow"], r.text
    _sent(api, "ended", "c1", now - timedelta(days=99))
    _sent(api, "ended", "c2", now - timedelta(days=95), status="withdrawn")
    query(
        api,
        "INSERT INTO outbox (campaign_id, customer_id, channel, status, not_before_us, created_at, updated_at) "
        "VALUES ('open', 'c2', 'email', 'queued', 0, ?, ?)",
        format_at(now - timedelta(days=149)),
        format_at(now - timedelta(days=149)),
    )
    _sent(api, "open", "c1", now - timedelta(days=149))
    # an old decision-log row (5 years ago) goes; the others stay
    query(
        api,
        "INSERT INTO decisions (customer_id, campaign_id, at, verdict, reason, channel, not_before, "
        "policy_version, kind, explain) VALUES ('c1', 'open', ?, 'deny', 'frequency_cap', 'email', NULL, "
        "'sha256:old', 'approval', NULL)",
        format_at(now - timedelta(days=5 * 365)),
    )
    events_before = query(api, "SELECT count(*) FROM consent_events")[0][0]
    decisions_before = query(api, "SELECT count(*) FROM decisions")[0][0]

    assert api.rt.policy is not None
    report = await retention.prune(api.rt.store, api.rt.policy, now, batch=1)

    assert (report.reservations, report.outbox, report.decisions) == (4, 2, 1)
    # batch 1: each row its own transaction, plus one finding nothing left per walk
    assert report.transactions >= 5
    assert query(api, "SELECT campaign_id, customer_id FROM reservations ORDER BY 1, 2") == [
        ("grace", "c1"), ("grace", "c2"), ("open", "c1"), ("open", "c2"), ("recent", "c1"), ("recent", "c2"),
        ("voice20", "c1"), ("voice20", "c2"),
    ]
    assert query(api, "SELECT campaign_id, customer_id, status FROM outbox ORDER BY 1, 2") == [
        ("open", "c1", "sent"), ("open", "c2", "queued"),
    ]
    assert query(api, "SELECT campaign_id, customer_id FROM message_history ORDER BY 1, 2") == [("open", "c1")]
    assert query(api, "SELECT count(*) FROM decisions")[0][0] == decisions_before - 1
    assert query(api, "SELECT count(*) FROM decisions WHERE policy_version = 'sha256:old'")[0][0] == 0
    # the log's horizon is recorded for policy replay
    assert await api.rt.store.decisions_pruned_before() == format_at(now - timedelta(days=1461))
    # the ledger is never pruned, and still verifies and exports whole
    assert query(api, "SELECT count(*) FROM consent_events")[0][0] == events_before
    r = await api.client.get("/v1/consent-events/verify", headers=api.as_("auditor"))
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    r = await api.client.get("/v1/consent-events", headers=api.as_("auditor"))
    assert r.status_code == 200 and len(r.json()["events"]) == events_before, r.text

    again = await retention.prune(api.rt.store, api.rt.policy, now)
    assert (again.reservations, again.outbox, again.decisions) == (0, 0, 0)
    assert await api.rt.store.decisions_pruned_before() == format_at(now - timedelta(days=1461))
    # a retry of the open campaign is still a retry: allowed, and it reserves nothing more
    r = await approve(api, ["c1"], at=at(now), cid="open")
    assert r.json()["decisions"][0]["verdict"] == "allow", r.text
    assert query(api, "SELECT count(*) FROM reservations WHERE campaign_id = 'open' AND customer_id = 'c1'") == [(1,)]


async def _ended_campaign_reserved(api: Api) -> datetime:
    """c1 approved for "ended" 120 days before the returned instant, the campaign ended 100 days before."""
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    api.rt.now.t = now - timedelta(days=200)  # type: ignore[attr-defined]
    await customer(api, "c1")
    await campaign(api, "ended", send_by=at(now - timedelta(days=100)))
    r = await approve(api, ["c1"], at=at(now - timedelta(days=120)), cid="ended")
    assert r.json()["decisions"][0]["verdict"] == "allow", r.text
    return now


async def test_the_trace_past_the_outbox_retention_has_no_message(api: Api) -> None:
    now = await _ended_campaign_reserved(api)
    _sent(api, "ended", "c1", now - timedelta(days=99))
    trace = (await api.client.get("/v1/campaigns/ended/trace/c1", headers=api.as_("auditor"))).json()
    assert trace["message"]["status"] == "sent"
    assert api.rt.policy is not None
    await retention.prune(api.rt.store, api.rt.policy, now)
    trace = (await api.client.get("/v1/campaigns/ended/trace/c1", headers=api.as_("auditor"))).json()
    assert trace["message"] is None
    assert [d["verdict"] for d in trace["decisions"]] == ["allow"]  # the decision log is kept longer


async def test_the_server_prunes_in_the_background(api: Api) -> None:
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    api.rt.now.t = now - timedelta(days=200)  # type: ignore[attr-defined]
    await customer(api, "c1")
    await campaign(api, "ended", send_by=at(now - timedelta(days=100)))
    await approve(api, ["c1"], at=at(now - timedelta(days=120)), cid="ended")
    api.rt.now.t = now  # type: ignore[attr-defined]
    stop = asyncio.Event()
    task = asyncio.create_task(retention.run(api.rt, 0.01, stop))
    for _ in range(500):
        if not query(api, "SELECT 1 FROM reservations"):
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert query(api, "SELECT 1 FROM reservations") == []


def test_retention_shorter_than_a_cap_window_is_refused() -> None:
    base = b"""
name = "p"
[caps]
per_week = 3
[[caps.extra]]
limit = 8
hours = 720
[windows]
[transactional]
quiet_hours = false
windows = false
[rates]
email = 1
sms = 1
push = 1
voice = 1
whatsapp = 1
"""
    assert parse_policy(base, "p").retention.decisions_days == 1461
    try:
        parse_policy(base + b"[retention]\ndecisions_days = 35\n", "p")
    except PolicyError as exc:
        assert "$.retention.decisions_days" in str(exc) and "37 days" in str(exc)
    else:
        raise AssertionError("a decision log kept shorter than a cap window was accepted")
    assert parse_policy(base + b"[retention]\ndecisions_days = 38\n", "p").retention.decisions_days == 38


def test_prune_command_prints_what_it_deleted(tmp_path: Path) -> None:
    env = {"PREFCENTER_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}", "PREFCENTER_SECRET_KEY": "x" * 64}
    result = CliRunner().invoke(main, ["prune", "--now", "2030-01-01T00:00:00Z"], env=env)
    assert result.exit_code == 0, result.output
    report = msgspec.json.decode(result.output.strip().splitlines()[-1])
    assert set(report) == {"reservations", "decisions", "outbox", "transactions", "seconds"}
    assert (report["reservations"], report["decisions"], report["outbox"]) == (0, 0, 0)
    bad = CliRunner().invoke(main, ["prune", "--now", "yesterday"], env=env)
    assert bad.exit_code == 1 and "now" in bad.output


async def test_replay_past_the_pruned_log_starts_where_every_reservation_is_still_known(api: Api) -> None:
    """After the pruner deleted decisions before H, a decision less than the longest cap window W
    (30 days: the FR voice cap) after H saw reservations the log no longer holds: replay starts at
    H + W and says so."""
    from prefcenter.services.replay import format_summary, replay

    now = datetime(2031, 6, 1, 12, 0, tzinfo=UTC)
    horizon = now - timedelta(days=1461)
    api.rt.now.t = horizon - timedelta(days=30)  # type: ignore[attr-defined]
    await customer(api, "c1")
    await campaign(api, "k")
    for days in (-10, 5, 40):  # before the horizon (pruned), inside H + W, after it
        r = await approve(api, ["c1"], at=at(horizon + timedelta(days=days)), cid="k")
        assert r.status_code == 200, r.text
    assert api.rt.policy is not None
    report = await retention.prune(api.rt.store, api.rt.policy, now)
    assert report.decisions == 1
    result = await replay(api.rt, api.rt.policy)
    assert result.complete_from == format_instant(horizon + timedelta(days=30))
    assert result.decisions == 1  # only the decision at H + 40 days
    assert any("pruned" in line for line in format_summary(result, "the shipped policy"))


async def test_replay_on_a_database_before_retention_reads_no_horizon(
    settings: Settings, tmp_path: Path, clock: FakeClock
) -> None:
    """policy replay does not migrate: on a database at migration 0021 (no retention_marks) it replays
    the whole log, as before."""
    from prefcenter.services.replay import replay

    async with database_at(settings, tmp_path / "old.db", clock, keep=lambda name: name < "0022") as (rt, _):
        assert await rt.store.decisions_pruned_before() is None
        assert rt.policy is not None
        result = await replay(rt, rt.policy)
        assert (result.decisions, result.complete_from) == (0, None)


def _reservations_bytes(api: Api) -> int:
    """The reservations table's heap (PostgreSQL) or the whole file's pages in use (SQLite)."""
    if isinstance(api.rt.store, SqliteStore):
        pages = query(api, "PRAGMA page_count")[0][0] - query(api, "PRAGMA freelist_count")[0][0]
        return int(pages * query(api, "PRAGMA page_size")[0][0])
    return int(query(api, "SELECT pg_relation_size('reservations')")[0][0])


async def test_the_space_a_pass_freed_is_reused_by_the_next_reservations(api: Api) -> None:
    """A day's reservations go, the next day's as many come: the table stays the size of one day's,
    not of every day's since (PostgreSQL: the pass vacuums the tables it emptied a share of; without
    that, autovacuum's own pace decided, and a 30-day benchmark's reservations heap grew 13-fold while
    its rows stayed bounded). The decision log is not vacuumed by the pass."""
    now = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
    n = 3000
    query(
        api,
        "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?) "
        "INSERT INTO customers (id, ref, timezone, locale, country, created_at, updated_at) "
        "SELECT 'k' || i, 'ref-k' || i, 'UTC', 'en', 'GB', 'x', 'x' FROM k",
        n,
    )
    assert api.rt.policy is not None
    sizes = []
    for day in range(4):
        camp = f"ended{day}"
        await campaign(api, camp, send_by=at(now - timedelta(days=100)))
        query(
            api,
            "INSERT INTO reservations (customer_id, campaign_id, at_us, channel, marketing) "
            "SELECT id, ?, ?, 'email', 1 FROM customers WHERE id LIKE 'k%'",
            camp,
            to_us(now - timedelta(days=120)),
        )
        sizes.append(_reservations_bytes(api))
        report = await retention.prune(api.rt.store, api.rt.policy, now)
        assert report.reservations == n and query(api, "SELECT count(*) FROM reservations") == [(0,)]
    assert sizes[-1] <= sizes[0] * 1.25, sizes


async def test_a_failed_reclaim_leaves_the_pass_done(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deletes are committed and counted; the space waits for a later vacuum, and the failure is
    logged, not raised."""
    now = await _ended_campaign_reserved(api)
    asked: list[list[str]] = []

    async def broken(tables: list[str]) -> None:
        asked.append(list(tables))
        raise RuntimeError("vacuum refused")

    monkeypatch.setattr(api.rt.store, "reclaim", broken)
    assert api.rt.policy is not None
    with structlog.testing.capture_logs() as logs:
        report = await retention.prune(api.rt.store, api.rt.policy, now)
    assert report.reservations == 1 and asked == [["reservations"]]
    assert query(api, "SELECT count(*) FROM reservations") == [(0,)]
    (line,) = [e for e in logs if e["event"] == "reclaiming the pruned space failed"]
    assert line["log_level"] == "warning" and line["tables"] == ["reservations"], line


async def test_a_pass_visits_only_the_campaigns_that_still_hold_rows(api: Api) -> None:
    """After years of daily campaigns nearly all of them hold nothing any more: a pass finds the ones
    that do on the tables' campaign indexes, and opens no delete transaction for the others (it opened
    one or two for every campaign ever made, so a pass grew with their number)."""
    now = await _ended_campaign_reserved(api)  # "ended": c1's reservation is past the retention
    await campaign(api, "recent", send_by=at(now - timedelta(days=10)))  # its reservation is kept
    r = await approve(api, ["c1"], at=at(now - timedelta(days=12)), cid="recent")
    assert r.json()["decisions"][0]["verdict"] == "allow", r.text
    for k in range(30):
        await campaign(api, f"gone{k:02d}", send_by=at(now - timedelta(days=300)))
    _sent(api, "gone07", "c1", now - timedelta(days=299))  # one old campaign still has a sent message

    candidates = await api.rt.store.prune_candidates()
    assert candidates.reserved_since_us == {
        "ended": to_us(now - timedelta(days=120)),
        "recent": to_us(now - timedelta(days=12)),
    }
    assert candidates.queued == {"gone07"}
    assert api.rt.policy is not None
    report = await retention.prune(api.rt.store, api.rt.policy, now)
    assert (report.reservations, report.outbox, report.decisions) == (1, 1, 0)
    # one delete for "ended"'s reservations, one for gone07's outbox, one for the decision log
    assert report.transactions == 3
    assert query(api, "SELECT campaign_id FROM reservations") == [("recent",)]
    assert query(api, "SELECT count(*) FROM outbox") == [(0,)]
