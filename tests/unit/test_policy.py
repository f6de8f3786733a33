"""The policy file (prefcenter.domain.policy): DESIGN.md "Policies are data", API.md "Policy".

A bad policy fails at load with the file, the field and the reason; the version is the file's hash.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from prefcenter.domain.policy import (
    LoadedPolicy,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
    policy_version,
)
from prefcenter.domain.timewindows import parse_window

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PATH = ROOT / "policies" / "default.toml"
DEFAULT = DEFAULT_PATH.read_bytes()

MINIMAL = """\
name = "t"
[caps]
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


def test_default_policy_has_the_shipped_values() -> None:
    """API.md "Policy": caps 1/24 h and 3/7 d; sms, voice, whatsapp 08:00-21:00; transactional ignore both."""
    policy = parse_policy(DEFAULT, str(DEFAULT_PATH))
    assert policy.name == "default"
    assert (policy.caps.per_day, policy.caps.per_week, policy.caps.extra) == (1, 3, ())
    assert policy.cap_rules() == ((1, timedelta(hours=24)), (3, timedelta(days=7)))
    for channel in ("sms", "voice", "whatsapp"):
        assert policy.windows.get(channel) == "08:00-21:00"
    assert policy.windows.email is None and policy.windows.push is None
    assert policy.transactional.quiet_hours is False and policy.transactional.windows is False
    assert policy.rates.get("email") == 50.0 and policy.rates.get("sms") == 10.0
    assert all(policy.rates.get(c) > 0 for c in ("push", "voice", "whatsapp"))
    assert policy.overrides[0].countries == ("PL", "RO", "GR")


def test_window_for_applies_country_overrides() -> None:
    policy = parse_policy(DEFAULT, "default.toml")
    assert policy.window_for("voice", "PL") == parse_window("09:00-20:00")
    assert policy.window_for("voice", "GR") == parse_window("09:00-20:00")
    assert policy.window_for("voice", "DE") == parse_window("08:00-21:00")
    assert policy.window_for("sms", "PL") == parse_window("08:00-21:00")
    assert policy.window_for("email", "PL") is None
    assert policy.window_for("voice", None) == parse_window("08:00-21:00")


def test_version_is_sha256_of_the_file_bytes() -> None:
    """API.md: policy_version is `sha256:` + the hex digest of the file's bytes; a comment changes it."""
    assert policy_version(DEFAULT) == "sha256:" + hashlib.sha256(DEFAULT).hexdigest()
    loaded = load_policy(DEFAULT, str(DEFAULT_PATH))
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.version == policy_version(DEFAULT) and loaded.source == str(DEFAULT_PATH)
    assert load_policy(DEFAULT + b"\n# note\n", "x").version != loaded.version
    assert load_policy(DEFAULT + b"\n# note\n", "x").policy == loaded.policy


def test_policy_is_frozen_and_hashable() -> None:
    policy = parse_policy(DEFAULT, "default.toml")
    with pytest.raises(AttributeError):
        policy.name = "other"  # type: ignore[misc]
    assert hash(policy) == hash(parse_policy(DEFAULT, "default.toml"))


def test_minimal_policy_has_no_caps_and_no_windows() -> None:
    policy = parse_policy(MINIMAL.encode(), "min.toml")
    assert policy.cap_rules() == ()
    assert policy.window_for("sms", "US") is None
    assert policy.overrides == ()


def test_extra_caps_and_float_rates() -> None:
    text = MINIMAL.replace("email = 1", "email = 0.5") + "\n"
    text = text.replace("[caps]\n", "[caps]\nper_week = 4\n[[caps.extra]]\nlimit = 8\nhours = 720\n")
    policy = parse_policy(text.encode(), "extra.toml")
    assert policy.rates.email == 0.5
    assert policy.cap_rules() == ((4, timedelta(days=7)), (8, timedelta(hours=720)))


def test_override_may_give_a_window_to_a_channel_without_one() -> None:
    """Narrowing "any time" to a window is a narrowing (documented in policy.py)."""
    text = MINIMAL + '[[overrides]]\ncountries = ["FR"]\nwindows = { email = "09:00-18:00" }\n'
    policy = parse_policy(text.encode(), "o.toml")
    assert policy.window_for("email", "FR") == parse_window("09:00-18:00")
    assert policy.window_for("email", "DE") is None


def test_override_equal_to_the_base_window_is_allowed() -> None:
    text = DEFAULT.decode().replace('voice = "09:00-20:00"', 'voice = "08:00-21:00"')
    assert parse_policy(text.encode(), "eq.toml").window_for("voice", "PL") == parse_window("08:00-21:00")


def _edit(old: str, new: str) -> bytes:
    text = DEFAULT.decode()
    assert old in text
    return text.replace(old, new, 1).encode()


BAD = [
    pytest.param(b'name = "x"\n', "$", "missing required field `caps`", id="missing-section"),
    pytest.param(DEFAULT + b"\n[extra]\n", "$", "unknown field `extra`", id="unknown-top-level"),
    pytest.param(_edit("per_day = 1", "per_dya = 1"), "$.caps", "unknown field `per_dya`", id="typo-in-caps"),
    pytest.param(_edit("per_day = 1", 'per_day = "1"'), "$.caps.per_day", "got `str`", id="wrong-type"),
    pytest.param(_edit("per_day = 1", "per_day = 0"), "$.caps.per_day", ">= 1", id="zero-cap"),
    pytest.param(_edit("per_week = 3", "per_week = -3"), "$.caps.per_week", ">= 1", id="negative-cap"),
    pytest.param(_edit("email = 50", "email = 0"), "$.rates.email", "> 0", id="zero-rate"),
    pytest.param(_edit("email = 50", "email = true"), "$.rates.email", "got `bool`", id="bool-rate"),
    pytest.param(
        _edit("whatsapp = 20\n", ""), "$.rates", "missing required field `whatsapp`", id="missing-rate"
    ),
    pytest.param(
        _edit("quiet_hours = false", "quiet_hours = 0"),
        "$.transactional.quiet_hours",
        "got `int`",
        id="non-bool-switch",
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', 'sms = "8:00-21:00"'), "$.windows.sms", "HH:MM", id="bad-window"
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', 'sms = "08:00-08:00"'),
        "$.windows.sms",
        "start and end must differ",
        id="empty-window",
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', 'fax = "08:00-21:00"'),
        "$.windows",
        "unknown field `fax`",
        id="unknown-channel",
    ),
    pytest.param(
        _edit('voice = "09:00-20:00"', 'voice = "07:00-20:00"'),
        "$.overrides[0].windows.voice",
        "widens the base window",
        id="widening-override",
    ),
    pytest.param(
        _edit('voice = "09:00-20:00"', 'voice = "20:00-09:00"'),
        "$.overrides[0].windows.voice",
        "overrides may only narrow",
        id="inverted-override",
    ),
    pytest.param(
        _edit('"GR"', '"XX"'), "$.overrides[0].countries[2]", "unknown ISO 3166-1", id="unknown-country"
    ),
    pytest.param(_edit('"GR"', '"gr"'), "$.overrides[0].countries[2]", "regex", id="lowercase-country"),
    pytest.param(
        _edit('windows = { voice = "09:00-20:00" }', "windows = {}"),
        "$.overrides[0].windows",
        "at least one channel window",
        id="empty-override",
    ),
    pytest.param(
        DEFAULT + b'\n[[overrides]]\ncountries = ["RO"]\nwindows = { voice = "10:00-19:00" }\n',
        "$.overrides[1].windows.voice",
        "already set by $.overrides[0]",
        id="duplicate-override",
    ),
    pytest.param(
        _edit("countries = [", "countries = 3 #"),
        "$.overrides[0].countries",
        "got `int`",
        id="countries-not-a-list",
    ),
    pytest.param(_edit('name = "default"', 'name = ""'), "$.name", "length >= 1", id="empty-name"),
    pytest.param(b"name = [\n", "$", "not valid TOML", id="bad-toml"),
    pytest.param(b'name = "\xff"\n', "$", "not valid UTF-8", id="bad-utf8"),
]


@pytest.mark.parametrize(("data", "field", "reason"), BAD)
def test_bad_policy_names_file_field_and_reason(data: bytes, field: str, reason: str) -> None:
    """DESIGN.md: a bad policy fails at load with the file, the field and why."""
    with pytest.raises(PolicyError) as caught:
        parse_policy(data, "policies/broken.toml")
    error = caught.value
    assert error.source == "policies/broken.toml"
    assert error.field == field
    assert reason in error.reason
    assert str(error) == f"policies/broken.toml: {field}: {error.reason}"


def test_policy_error_is_a_value_error_and_not_a_msgspec_error() -> None:
    with pytest.raises(ValueError) as caught:
        parse_policy(b"name = 1", "p.toml")
    assert not isinstance(caught.value, msgspec.MsgspecError)


def test_shipped_policy_is_valid_under_its_own_schema() -> None:
    """Round trip: the decoded policy encodes (JSON) and decodes to the same Struct."""
    policy = parse_policy(DEFAULT, "default.toml")
    assert msgspec.json.decode(msgspec.json.encode(policy), type=Policy) == policy
