"""``prefcenter policy check`` and ``policy test`` as real processes, for the window forms, regions and
per-channel caps of COMPLIANCE items 22 and 31 (issue 16): the shipped policy passes its cases, and a
bad new form is a clear error naming the file and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = (ROOT / "policies" / "default.toml").read_text(encoding="utf-8")
FR_WINDOW = 'voice = { days = "mon-fri", hours = ["10:00-13:00", "14:00-20:00"], holidays = "FR" } }'


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PREFCENTER_LOG_LEVEL": "warning"}
    return subprocess.run(
        [sys.executable, "-m", "prefcenter.cli", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_compliance_22_31_shipped_policy_checks_and_passes_its_cases() -> None:
    """Issue 16 "Done means": `prefcenter policy test` passes with the shipped policy, whose cases cover
    US-FL, France and a phone zone that disagrees with the profile."""
    checked = run("policy", "check", str(ROOT / "policies" / "default.toml"))
    assert checked.returncode == 0, checked.stderr
    assert "ok (default, sha256:" in checked.stdout
    tested = run("policy", "test", "--file", str(ROOT / "policies" / "default.toml"))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    for name in ("us_florida.toml::", "france_voice.toml::", "phone_zone.toml::"):
        assert f"PASS {name}" in tested.stdout
    assert tested.stdout.strip().endswith(" 0 failed")


@pytest.mark.parametrize(
    ("old", "new", "field", "reason"),
    [
        (FR_WINDOW, FR_WINDOW.replace('"mon-fri"', '"mon-fry"'), "$.overrides[2].windows.voice.days",
         "invalid days 'mon-fry'"),
        (FR_WINDOW, FR_WINDOW.replace('"FR" }', '"QQ" }'), "$.overrides[2].windows.voice.holidays",
         "unknown holiday calendar 'QQ'"),
        (FR_WINDOW, FR_WINDOW.replace('["10:00-13:00", "14:00-20:00"]', "[]"), "$.overrides[2].windows.voice.hours",
         "length >= 1"),
        (FR_WINDOW, FR_WINDOW.replace('holidays = "FR"', 'holiday = "FR"'), "$.overrides[2].windows.voice",
         "unknown field `holiday`"),
        (FR_WINDOW, FR_WINDOW.replace('"mon-fri"', '"mon-sun"').replace("20:00", "22:00"),
         "$.overrides[2].windows.voice", "overrides may only narrow"),
        ('regions = ["US-FL"]', 'regions = ["US-ZZ"]', "$.overrides[1].regions[0]", "unknown ISO 3166-2"),
        ("limit = 4, days = 30", "limit = 4, days = 400", "$.overrides[2].caps.voice.days", "<= 366"),
    ],
)  # fmt: skip
def test_policy_check_names_the_field_of_a_bad_new_form(
    tmp_path: Path, old: str, new: str, field: str, reason: str
) -> None:
    assert old in DEFAULT
    path = tmp_path / "bad.toml"
    path.write_text(DEFAULT.replace(old, new, 1), encoding="utf-8")
    result = run("policy", "check", str(path))
    assert result.returncode != 0
    assert f"{path}: {field}: " in result.stderr and reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
