"""Policy test cases (prefcenter.services.policy_tests): DESIGN.md "Policies are data" — like `opa test`.

The shipped cases in policies/tests/ must all pass against policies/default.toml, must cover every row of
API.md's decision table and every verdict, and a wrong expectation or a malformed file must be reported.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from prefcenter.domain.model import REASONS
from prefcenter.domain.policy import load_policy
from prefcenter.services.policy_tests import CaseResult, PolicyTestError, format_report, run_policy_tests

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policies"
POLICY = load_policy((POLICY_DIR / "default.toml").read_bytes(), str(POLICY_DIR / "default.toml"))

CASE = """\
[[case]]
name = "{name}"
at = 2026-11-22T21:30:00Z
[case.customer]
timezone = "Europe/Warsaw"
country = "PL"
channel = "email"
addresses = ["email"]
subscribed = true
quiet_hours = {{ start = "22:00", end = "07:00" }}
[case.campaign]
category = "marketing"
channels = ["email"]
[case.expect]
verdict = "{verdict}"
reason = "{reason}"
{extra}
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_cases_all_pass() -> None:
    results = run_policy_tests(POLICY, POLICY_DIR / "tests")
    failures = [f"{r.name}: {r.message}" for r in results if not r.passed]
    assert not failures, "\n".join(failures)
    assert len(results) >= 40


def test_shipped_cases_cover_every_reason_and_verdict() -> None:
    """DESIGN.md quality bar: every rule of API.md's table has tests — here, as policy cases too."""
    text = "\n".join(p.read_text() for p in sorted((POLICY_DIR / "tests").glob("*.toml")))
    reasons = set(re.findall(r'^reason = "([a-z_]+)"', text, flags=re.M))
    verdicts = set(re.findall(r'^verdict = "([a-z]+)"', text, flags=re.M))
    assert reasons == set(REASONS)
    assert verdicts == {"allow", "defer", "deny"}
    for needle in ("Europe/Warsaw", "Europe/Bucharest", "America/Los_Angeles", "2026-03-29", "2026-10-25",
                   'category = "transactional"', "send_by", "COMPLIANCE item 22"):  # fmt: skip
        assert needle in text, needle


def test_report_lists_pass_and_fail_and_a_summary(tmp_path: Path) -> None:
    folder = tmp_path / "tests"
    write(
        folder,
        "a.toml",
        CASE.format(
            name="right", verdict="defer", reason="quiet_hours", extra="not_before = 2026-11-23T06:00:00Z"
        )
        + CASE.format(
            name="wrong time",
            verdict="defer",
            reason="quiet_hours",
            extra="not_before = 2026-11-23T07:00:00Z",
        )
        + CASE.format(name="wrong verdict", verdict="allow", reason="allowed", extra=""),
    )
    results = run_policy_tests(POLICY, folder)
    assert [(r.name, r.passed) for r in results] == [
        ("a.toml::right", True),
        ("a.toml::wrong time", False),
        ("a.toml::wrong verdict", False),
    ]
    assert "expected not_before 2026-11-23T07:00:00Z" in results[1].message
    assert "got defer quiet_hours channel=email not_before=2026-11-23T06:00:00Z" in results[1].message
    assert "expected verdict/reason allow allowed" in results[2].message
    report = format_report(results)
    lines = report.splitlines()
    assert lines[0] == "PASS a.toml::right"
    assert lines[1].startswith("FAIL a.toml::wrong time: expected not_before")
    assert lines[-1] == "1 passed, 2 failed"


def test_channel_expectation_is_checked(tmp_path: Path) -> None:
    folder = tmp_path / "tests"
    write(
        folder,
        "c.toml",
        CASE.format(name="ch", verdict="defer", reason="quiet_hours", extra='channel = "sms"'),
    )
    write(
        folder,
        "d.toml",
        CASE.format(name="ch", verdict="defer", reason="quiet_hours", extra='channel = "none"'),
    )
    write(
        folder,
        "e.toml",
        CASE.format(name="ch", verdict="defer", reason="quiet_hours", extra='channel = "email"'),
    )
    results = run_policy_tests(POLICY, folder)
    assert [r.passed for r in results] == [False, False, True]
    assert "expected channel sms" in results[0].message


def test_unknown_customer_case_and_omitted_not_before(tmp_path: Path) -> None:
    folder = tmp_path / "tests"
    text = """\
[[case]]
name = "nobody"
at = 2026-11-22T12:00:00Z
[case.campaign]
category = "marketing"
channels = ["email"]
[case.expect]
verdict = "deny"
reason = "unknown_customer"
"""
    write(folder, "u.toml", text)
    assert run_policy_tests(POLICY, folder) == [CaseResult("u.toml::nobody", True, "")]


def test_a_case_against_another_policy_can_fail(tmp_path: Path) -> None:
    """The cases judge the policy: with per_day = 2 the shipped 1-per-24-hours case fails."""
    edited = (POLICY_DIR / "default.toml").read_text().replace("per_day = 1", "per_day = 2")
    other = load_policy(edited.encode(), "edited.toml")
    results = run_policy_tests(other, POLICY_DIR / "tests")
    failed = {r.name for r in results if not r.passed}
    assert "gate_rules.toml::rule 9: one more send would exceed 1 per 24 hours" in failed
    assert "0 failed" not in format_report(results)


BAD = [
    pytest.param("[[case]]\nname = 1\n", "$.case[0].name", "got `int`", id="wrong-type"),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="colour = 1"),
        "$.case[0].expect",
        "unknown field `colour`",
        id="unknown-field",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="ok", extra=""),
        "$.case[0].expect.reason",
        "Invalid enum value 'ok'",
        id="unknown-reason",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace("21:30:00Z", "21:30:00"),
        "$.case[0].at",
        "timezone",
        id="naive-at",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "Europe/Warsaw", "Europe/Nowhere"
        ),
        "$.case[0].customer.timezone",
        "unknown time zone",
        id="unknown-zone",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            'end = "07:00"', 'end = "22:00"'
        ),
        "$.case[0].customer.quiet_hours",
        "start and end must differ",
        id="empty-quiet-hours",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="")
        + CASE.format(name="x", verdict="allow", reason="allowed", extra=""),
        "$.case[1].name",
        "duplicate case name",
        id="duplicate-name",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "subscribed = true", 'subscribed = true\nphones = { sms = "+1213" }'
        ),
        "$.case[0].customer.phones.sms",
        "E.164",
        id="bad-phone",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "subscribed = true", 'subscribed = true\nphones = { email = "+12135550199" }'
        ),
        "$.case[0].customer.phones",
        "Invalid enum value 'email'",
        id="phone-for-email",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "subscribed = true",
            'subscribed = true\nphones = { sms = "+12135550199" }\nplaces = { sms = { country = "US" } }',
        ),
        "$.case[0].customer.places.sms",
        "not both",
        id="phone-and-place",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "subscribed = true", 'subscribed = true\nplaces = { sms = { zones = ["Mars/Base"] } }'
        ),
        "$.case[0].customer.places.sms.zones[0]",
        "unknown time zone",
        id="place-unknown-zone",
    ),
    pytest.param(
        CASE.format(name="x", verdict="allow", reason="allowed", extra="").replace(
            "at = 2026", 'sends = [{ at = 2026-11-21T09:00:00Z, channel = "fax" }]\nat = 2026'
        ),
        "$.case[0].sends[0].channel",
        "Invalid enum value 'fax'",
        id="send-unknown-channel",
    ),
    pytest.param('description = "nothing"\n', "$", "missing required field `case`", id="no-cases"),
    pytest.param("[[case]\n", "$", "not valid TOML", id="bad-toml"),
]


@pytest.mark.parametrize(("text", "field", "reason"), BAD)
def test_bad_case_file_is_a_clear_error(tmp_path: Path, text: str, field: str, reason: str) -> None:
    folder = tmp_path / "tests"
    write(folder, "good.toml", CASE.format(name="fine", verdict="defer", reason="quiet_hours", extra=""))
    path = write(folder, "zz-bad.toml", text)
    with pytest.raises(PolicyTestError) as caught:
        run_policy_tests(POLICY, folder)
    assert caught.value.source == str(path)
    assert caught.value.field == field
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"{path}: {field}: ")


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyTestError, match="no such directory"):
        run_policy_tests(POLICY, tmp_path / "absent")


def test_empty_folder_reports_nothing(tmp_path: Path) -> None:
    assert run_policy_tests(POLICY, tmp_path) == []
    assert format_report([]) == "0 passed, 0 failed"


def test_phones_places_and_channel_sends(tmp_path: Path) -> None:
    """COMPLIANCE items 22 and 31 as cases: a number is placed as the store places it, a place can be
    given outright, a reservation names its channel and a bare instant is on the customer's channel."""
    folder = tmp_path / "tests"
    write(
        folder,
        "phones.toml",
        """\
[[case]]
name = "number"
at = 2026-07-15T12:00:00Z
[case.customer]
timezone = "Europe/Warsaw"
country = "PL"
channel = "sms"
addresses = ["sms"]
subscribed = true
phones = { sms = "+12135550199" }
[case.campaign]
category = "marketing"
channels = ["sms"]
[case.expect]
verdict = "defer"
reason = "quiet_hours"
not_before = 2026-07-15T15:00:00Z

[[case]]
name = "place"
at = 2026-07-15T12:00:00Z
[case.customer]
timezone = "Europe/Warsaw"
country = "PL"
channel = "sms"
addresses = ["sms"]
subscribed = true
places = { sms = { zones = ["America/Los_Angeles"] } }
[case.campaign]
category = "marketing"
channels = ["sms"]
[case.expect]
verdict = "defer"
reason = "quiet_hours"
not_before = 2026-07-15T15:00:00Z

[[case]]
name = "bare instants are on the customer's channel"
at = 2026-06-08T08:00:00Z
sends = [2026-05-10T08:00:00Z, 2026-05-17T08:00:00Z, 2026-05-24T08:00:00Z, 2026-05-31T08:00:00Z]
[case.customer]
timezone = "Europe/Paris"
country = "FR"
channel = "voice"
addresses = ["voice"]
subscribed = true
[case.campaign]
category = "marketing"
channels = ["voice"]
[case.expect]
verdict = "defer"
reason = "frequency_cap"
not_before = 2026-06-09T08:00:00Z
""",
    )
    results = run_policy_tests(POLICY, folder)
    assert [(r.passed, r.message) for r in results] == [(True, "")] * 3
