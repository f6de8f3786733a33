"""``prefcenter policy replay`` (issue 13 item 4): a scripted history written through the API at
hand-picked instants, replayed with the shipped policy (nothing changes) and with a candidate that
narrows SMS to 09:00-20:00 (exactly the decisions counted by hand below change), on both engines
(the service) and as the command on a real SQLite file (the JSON line, the filters, a bad policy, the
database untouched).

The history (the clock is set to each instant, so every approval is asked "now"; 2026-11-23 is a
Monday; in November Warsaw is UTC+1, Bucharest and Berlin... Berlin UTC+1, Bucharest UTC+2, New York
UTC-5):

| # | at (UTC)             | campaign | customer | local time     | logged (default)      | candidate         |
|---|----------------------|----------|----------|----------------|-----------------------|-------------------|
| 1 | 2026-11-23T07:30Z    | spring   | pl-sms   | 08:30 Warsaw   | allow allowed         | defer quiet_hours |
| 1 | 2026-11-23T07:30Z    | spring   | ro-email | 09:30 Buchar.  | allow allowed         | same              |
| 2 | 2026-11-23T11:00Z    | spring   | de-email | (paused)       | defer paused          | same              |
| 3 | 2026-11-23T12:00Z    | spring   | pl-noon  | 13:00 Warsaw   | allow allowed         | same              |
| 4 | 2026-11-23T15:00Z    | summer   | ro-email | 17:00          | defer frequency_cap   | same (1 per day)  |
| 4 | 2026-11-23T15:00Z    | summer   | pl-sms   | 16:00          | defer frequency_cap   | same              |
| 5 | 2026-11-24T01:30Z    | spring   | ny-sms   | 20:30 New York | allow allowed         | defer quiet_hours |
| 6 | 2026-11-24T18:30Z    | summer   | ro-email | 20:30 (email)  | allow allowed (send)  | same              |
| 7 | 2026-11-24T19:30Z    | spring   | pl-sms   | 20:30 (retry)  | allow allowed         | defer quiet_hours |
| 8 | 2026-11-25T02:30Z    | summer   | ny-sms   | 21:30 New York | defer quiet_hours     | same (not_before 09:00, not 08:00: not a change) |

10 decisions; with the candidate 3 change, all ``allowed->quiet_hours`` (1, 5, 7); from 2026-11-24 on
2 (5, 7); before it 1 (1).
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from prefcenter.domain.model import CampaignView
from prefcenter.domain.policy import LoadedPolicy
from prefcenter.services.policies import load_policy_file
from prefcenter.services.replay import ReplayResult, _Replayer, replay
from prefcenter.store.replay import PACK_SEPARATOR, ReplayChunk
from tests.conftest import CAMPAIGN, POLICY_FILE, SECRET, Api, FakeClock, prefs_body, query
from tests.seeding import run_cli

DEFAULT_TEXT = POLICY_FILE.read_text()


def candidate_text() -> str:
    """The shipped policy with SMS narrowed to 09:00-20:00 (Florida's override narrowed to match: an
    override may only narrow the channel's window)."""
    text = DEFAULT_TEXT.replace('sms = "08:00-21:00"', 'sms = "09:00-20:00"', 1)
    text = text.replace('windows = { sms = "08:00-20:00", voice', 'windows = { sms = "09:00-20:00", voice', 1)
    assert text.count('"09:00-20:00"') >= 2
    return text


def profile(zone: str, country: str, **contacts: str) -> dict[str, Any]:
    return {"timezone": zone, "locale": "en", "country": country, "contacts": contacts}


async def put_customer(api: Api, cid: str, prof: dict[str, Any], **prefs: Any) -> None:
    r = await api.client.put(f"/v1/customers/{cid}", json=prof, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text
    body = prefs_body(**{"quiet_hours": None, "max_per_week": None, **prefs})
    r = await api.client.put(f"/v1/customers/{cid}/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text


async def approve(
    api: Api, clock: FakeClock, at: str, campaign: str, ids: list[str]
) -> list[tuple[str, str]]:
    clock.t = datetime.fromisoformat(at.replace("Z", "+00:00"))
    body = {"campaign_id": campaign, "customer_ids": ids, "at": at}
    r = await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    return [(d["verdict"], d["reason"]) for d in r.json()["decisions"]]


async def history(api: Api, clock: FakeClock) -> None:
    """The table of the module docstring, written through the API; each logged answer checked."""
    for cid in ("spring", "summer"):
        r = await api.client.put(f"/v1/campaigns/{cid}", json=CAMPAIGN, headers=api.as_("marketing"))
        assert r.status_code in (200, 201), r.text
    await put_customer(api, "pl-sms", profile("Europe/Warsaw", "PL", sms="+48600100200"), channel="sms")
    await put_customer(api, "pl-noon", profile("Europe/Warsaw", "PL", sms="+48600100201"), channel="sms")
    await put_customer(api, "ny-sms", profile("America/New_York", "US", sms="+12125550123"), channel="sms")
    await put_customer(api, "ro-email", profile("Europe/Bucharest", "RO", email="ro@example.ro"))
    await put_customer(api, "de-email", profile("Europe/Berlin", "DE", email="de@example.de"))

    got = await approve(api, clock, "2026-11-23T07:30:00Z", "spring", ["pl-sms", "ro-email"])
    assert got == [("allow", "allowed"), ("allow", "allowed")]
    clock.t = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # de-email pauses until the 30th
    body = prefs_body(quiet_hours=None, max_per_week=None, paused_until="2026-11-30T00:00:00Z")
    r = await api.client.put("/v1/customers/de-email/preferences", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    assert await approve(api, clock, "2026-11-23T11:00:00Z", "spring", ["de-email"]) == [("defer", "paused")]
    assert await approve(api, clock, "2026-11-23T12:00:00Z", "spring", ["pl-noon"]) == [("allow", "allowed")]
    got = await approve(api, clock, "2026-11-23T15:00:00Z", "summer", ["ro-email", "pl-sms"])
    assert got == [("defer", "frequency_cap"), ("defer", "frequency_cap")]
    assert await approve(api, clock, "2026-11-24T01:30:00Z", "spring", ["ny-sms"]) == [("allow", "allowed")]
    clock.t = datetime(2026, 11, 24, 18, 30, tzinfo=UTC)  # a send (kind "send"), not an approval
    r = await api.client.post(
        "/v1/campaigns/summer/sends", json={"customer_ids": ["ro-email"]}, headers=api.as_("marketing")
    )
    assert r.status_code == 202, r.text
    assert [(d["verdict"], d["reason"]) for d in r.json()["decisions"]] == [("allow", "allowed")]
    assert await approve(api, clock, "2026-11-24T19:30:00Z", "spring", ["pl-sms"]) == [("allow", "allowed")]
    assert await approve(api, clock, "2026-11-25T02:30:00Z", "summer", ["ny-sms"]) == [
        ("defer", "quiet_hours")
    ]
    kinds = query(api, "SELECT kind, count(*) FROM decisions GROUP BY kind ORDER BY kind")
    assert [tuple(k) for k in kinds] == [("approval", 9), ("send", 1)]


def snapshot(api: Api) -> list[Any]:
    """Every row replay could touch, to show it wrote nothing."""
    return [
        [tuple(r) for r in query(api, f"SELECT * FROM {table} ORDER BY 1, 2")]
        for table in ("decisions", "reservations", "consent_events", "outbox", "customers", "suppressions")
    ]


def write_candidate(tmp_path: Path) -> Path:
    path = tmp_path / "candidate.toml"
    path.write_text(candidate_text())
    return path


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_replay_default_changes_nothing_and_the_candidate_what_was_counted(
    api: Api, clock: FakeClock, tmp_path: Path
) -> None:
    await history(api, clock)
    before = snapshot(api)
    shipped = load_policy_file(POLICY_FILE)
    same = await replay(api.rt, shipped)
    assert same.as_json() == {"decisions": 10, "changed": 0, "by_change": {}, "sample": []}

    candidate: LoadedPolicy = load_policy_file(write_candidate(tmp_path))
    result = await replay(api.rt, candidate, chunk=3)  # small chunks: customers span chunk edges
    assert result.decisions == 10
    assert result.changed == 3
    assert result.by_change == {"allowed->quiet_hours": 3}
    pl_ref = api.rt.pseudonyms.customer_ref("pl-sms")
    ny_ref = api.rt.pseudonyms.customer_ref("ny-sms")
    got = sorted(
        (s.customer_ref, s.campaign_id, s.at, s.was, s.now, s.was_verdict, s.now_verdict)
        for s in result.sample
    )
    assert got == sorted(
        [
            (pl_ref, "spring", "2026-11-23T07:30:00Z", "allowed", "quiet_hours", "allow", "defer"),
            (ny_ref, "spring", "2026-11-24T01:30:00Z", "allowed", "quiet_hours", "allow", "defer"),
            (pl_ref, "spring", "2026-11-24T19:30:00Z", "allowed", "quiet_hours", "allow", "defer"),
        ]
    )
    assert "pl-sms" not in msgspec.json.encode(result.as_json()).decode()  # pseudonyms only

    later = await replay(api.rt, candidate, instant("2026-11-24T00:00:00Z"))
    assert (later.decisions, later.changed, later.by_change) == (4, 2, {"allowed->quiet_hours": 2})
    earlier = await replay(api.rt, candidate, None, instant("2026-11-24T00:00:00Z"))
    assert (earlier.decisions, earlier.changed, earlier.by_change) == (6, 1, {"allowed->quiet_hours": 1})
    window = await replay(
        api.rt, candidate, instant("2026-11-23T07:30:00Z"), instant("2026-11-23T07:30:00.000001Z")
    )
    assert (window.decisions, window.changed) == (2, 1)  # since inclusive, until exclusive
    assert snapshot(api) == before  # nothing written


async def test_replay_sees_the_consent_in_force_at_each_decision(
    api: Api, clock: FakeClock, tmp_path: Path
) -> None:
    """A customer who texted STOP and then withdrew everything after an approval: the replay of that
    approval still sees the channel and no suppression (the state at its instant; with the shipped
    policy it would otherwise read ``allowed->suppressed``), and the candidate changes it; a decision
    after the withdrawal stays ``no_channel`` under both."""
    r = await api.client.put("/v1/campaigns/spring", json=CAMPAIGN, headers=api.as_("marketing"))
    assert r.status_code in (200, 201), r.text
    await put_customer(api, "pl-sms", profile("Europe/Warsaw", "PL", sms="+48600100200"), channel="sms")
    assert await approve(api, clock, "2026-11-23T07:30:00Z", "spring", ["pl-sms"]) == [("allow", "allowed")]
    clock.t = datetime(2026, 11, 23, 7, 45, tzinfo=UTC)  # a STOP: the number is suppressed from now on
    r = await api.client.post(
        "/v1/inbound/sms", json={"from": "+48600100200", "text": "STOP"}, headers=api.as_("marketing")
    )
    assert r.status_code == 200 and r.json()["action"] == "stop", r.text
    assert query(api, "SELECT count(*) FROM consent_events WHERE subject = 'suppression:sms'")[0][0] == 1
    clock.t = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    r = await api.client.put(
        "/v1/customers/pl-sms/preferences",
        json=prefs_body(channel=None, topics=[], quiet_hours=None),
        headers=api.as_("marketing"),
    )
    assert r.status_code == 200, r.text
    assert await approve(api, clock, "2026-11-25T07:30:00Z", "spring", ["pl-sms"]) == [("deny", "no_channel")]
    shipped = await replay(api.rt, load_policy_file(POLICY_FILE))
    assert (shipped.decisions, shipped.changed) == (2, 0)
    result = await replay(api.rt, load_policy_file(write_candidate(tmp_path)))
    assert (result.decisions, result.changed, result.by_change) == (2, 1, {"allowed->quiet_hours": 1})


@pytest.mark.sqlite_only
async def test_the_command_on_a_sqlite_file(
    api: Api, clock: FakeClock, tmp_path: Path, db_path: Path
) -> None:
    await history(api, clock)
    await api.rt.store.close()  # the file alone, checkpointed: its bytes must not change
    digest = hashlib.sha256(db_path.read_bytes()).hexdigest()
    candidate = write_candidate(tmp_path)

    async def command(*args: str) -> subprocess.CompletedProcess[str]:
        return await asyncio.to_thread(run_cli, db_path, SECRET, "policy", "replay", *args)

    done = await command("--policy", str(candidate), "--json")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    answer = msgspec.json.decode(lines[-1])
    assert set(answer) == {"decisions", "changed", "by_change", "sample"}
    assert (answer["decisions"], answer["changed"], answer["by_change"]) == (
        10,
        3,
        {"allowed->quiet_hours": 3},
    )
    assert {s["now"] for s in answer["sample"]} == {"quiet_hours"}
    assert "3 would change" in done.stdout and "allowed -> quiet_hours: 3" in done.stdout
    assert "pl-sms" not in done.stdout and "ny-sms" not in done.stdout

    done = await command("--policy", str(POLICY_FILE), "--since", "2026-11-24T00:00:00Z", "--json")
    assert done.returncode == 0, done.stderr
    assert msgspec.json.decode(done.stdout.strip().splitlines()[-1]) == {
        "decisions": 4,
        "changed": 0,
        "by_change": {},
        "sample": [],
    }
    done = await command("--policy", str(candidate), "--until", "2026-11-24T00:00:00+00:00")
    assert done.returncode == 0, done.stderr
    assert "replayed 6 logged decisions" in done.stdout and "1 would change" in done.stdout
    assert not done.stdout.strip().splitlines()[-1].startswith("{")  # JSON only with --json

    bad = tmp_path / "bad.toml"
    bad.write_text(DEFAULT_TEXT.replace("per_day = 1", "per_day = 0"))
    done = await command("--policy", str(bad), "--json")
    assert done.returncode != 0 and "per_day" in done.stderr and done.stdout == ""
    done = await command("--policy", str(candidate), "--since", "yesterday")
    assert done.returncode != 0 and "since" in done.stderr
    assert hashlib.sha256(db_path.read_bytes()).hexdigest() == digest


def test_double_opt_in_confirmation_is_read_from_the_ledger() -> None:
    """A double opt-in topic (rule 6b): granted on the 1st, confirmed on the 3rd; the ask on the 2nd was
    ``not_confirmed``, the one on the 4th allowed. Replayed as logged, nothing changes; were the topic
    not double opt-in, the first would have been allowed."""
    views = {"news": CampaignView("news", "news", "marketing", ("email",))}
    sep = PACK_SEPARATOR
    chunk = ReplayChunk(
        decisions=[
            ("c1", sep.join(["news", "2026-01-02T10:00:00Z", "deny", "not_confirmed", "email"])),
            ("c1", sep.join(["news", "2026-01-04T10:00:00Z", "allow", "allowed", "email"])),
        ],
        profiles=[("c1", "ref-1", "Europe/Warsaw", "PL", "email", "", None, "2026-01-01T00:00:00.000000Z")],
        events=[
            ("c1", 1, "2026-01-01T09:00:00.000000Z", "grant", "channel:email", "true", "api"),
            ("c1", 2, "2026-01-01T09:00:00.000000Z", "grant", "topic:news", "true", "api"),
            (
                "c1",
                3,
                "2026-01-03T09:00:00.000000Z",
                "update",
                "topic:news",
                '{"confirmed":true}',
                "preference_page",
            ),
        ],
        contacts=[("c1", "email", "addr-1", None, None)],
        failures=[],
    )
    policy = load_policy_file(POLICY_FILE)
    for double_opt_in, expected in ((frozenset({"news"}), {}), (frozenset(), {"not_confirmed->allowed": 1})):
        result = ReplayResult(policy_version=policy.version, since=None, until=None)
        replayer = _Replayer(policy, views, None, None, result, str, double_opt_in=double_opt_in)
        replayer.feed(chunk)
        assert (result.decisions, result.by_change) == (2, expected)


async def test_since_and_until_are_pushed_down_into_the_read(
    api: Api, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 14: a bounded replay reads only what can change its answer, and answers exactly as a
    replay over the whole log (the same bounds applied after reading everything, as before).

    In range [2026-11-10T08:30Z, 2026-11-11): ro-email's spring at 09:00 is a retry only because of
    spring's allow of 2026-10-01, older than ``since`` minus the shipped policy's longest cap window
    (30 days): read, since spring has a row in the window (else the retry would be capped by summer's
    reservation at 08:00 under ``per_day = 1``). x-future's summer, approved earlier for 2026-11-20,
    is held when its spring is decided: read too. Not read: 2,000 decisions of 200 customers with
    none in range, ro-email's autumn (only rows from June), and ro-email's rows after its last one in
    range (December)."""
    for cid in ("spring", "summer", "autumn"):
        r = await api.client.put(f"/v1/campaigns/{cid}", json=CAMPAIGN, headers=api.as_("marketing"))
        assert r.status_code in (200, 201), r.text
    clock.t = instant("2026-09-01T00:00:00Z")  # customers from before every decision
    await put_customer(api, "ro-email", profile("Europe/Bucharest", "RO", email="ro@example.ro"))
    await put_customer(api, "x-future", profile("Europe/Bucharest", "RO", email="x@example.ro"))
    assert await approve(api, clock, "2026-10-01T08:00:00Z", "spring", ["ro-email"]) == [("allow", "allowed")]
    clock.t = instant("2026-11-10T07:00:00Z")  # an approval asked now for an instant to come
    body = {"campaign_id": "summer", "customer_ids": ["x-future"], "at": "2026-11-20T10:00:00Z"}
    r = await api.client.post("/v1/approvals", json=body, headers=api.as_("marketing"))
    assert r.status_code == 200, r.text
    assert await approve(api, clock, "2026-11-10T08:00:00Z", "summer", ["ro-email"]) == [("allow", "allowed")]
    assert await approve(api, clock, "2026-11-10T09:00:00Z", "spring", ["ro-email", "x-future"]) == [
        ("allow", "allowed"),
        ("allow", "allowed"),
    ]
    noise = (
        "INSERT INTO decisions (customer_id, campaign_id, at, verdict, reason, channel, not_before, "
        "policy_version) WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) "
        "SELECT {who}, {campaign}, ?, 'deny', 'unknown_customer', NULL, NULL, 'noise' FROM n"
    )
    query(
        api,
        noise.format(last=1999, who="'a-' || (1000 + i / 10)", campaign="'spring'"),
        "2026-06-01T10:00:00Z",
    )
    query(api, noise.format(last=4, who="'ro-email'", campaign="'autumn'"), "2026-06-02T10:00:00Z")
    query(api, noise.format(last=4, who="'ro-email'", campaign="'spring'"), "2026-12-01T10:00:00Z")
    assert query(api, "SELECT count(*) FROM decisions")[0][0] == 2015

    reads: dict[str, int] = {}
    bounded_read = api.rt.store.iter_replay

    async def counted(**kw: Any) -> Any:
        mode = "whole" if kw.get("since") is None and kw.get("until") is None else "bounded"
        async for part in bounded_read(**kw):
            reads[mode] = reads.get(mode, 0) + len(part.decisions)
            yield part

    def whole_read(**kw: Any) -> Any:  # the replay as it was: the whole log, bounded after reading
        return counted(**{**kw, "since": None, "until": None})

    since, until = instant("2026-11-10T08:30:00Z"), instant("2026-11-11T00:00:00Z")
    for policy in (load_policy_file(POLICY_FILE), load_policy_file(write_candidate(tmp_path))):
        for bounds in ((since, until), (since, None), (None, until)):
            reads.clear()
            monkeypatch.setattr(api.rt.store, "iter_replay", counted)
            pushed = await replay(api.rt, policy, *bounds, chunk=50)  # many chunks: most read nothing
            monkeypatch.setattr(api.rt.store, "iter_replay", whole_read)
            whole = await replay(api.rt, policy, *bounds, chunk=50)
            assert (pushed.as_json(), pushed.skipped) == (whole.as_json(), whole.skipped), bounds
            assert reads["whole"] == 2015
            if bounds == (since, until):
                assert (pushed.decisions, pushed.by_change) == (2, {}), pushed  # spring 09:00: a retry
                assert reads["bounded"] == 5  # ro-email's 3 (not autumn, not December), x-future's 2
            elif bounds == (since, None):
                assert reads["bounded"] == 10  # and December's 5
            else:
                assert reads["bounded"] < 2015
