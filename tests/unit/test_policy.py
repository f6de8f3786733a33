"""The policy file (prefcenter.domain.policy): DESIGN.md "Policies are data", API.md "Policy".

A bad policy fails at load with the file, the field and the reason; the version is the file's hash.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

import msgspec
import pytest

from prefcenter.domain.model import PhonePlace
from prefcenter.domain.policy import (
    LoadedPolicy,
    Policy,
    PolicyError,
    load_policy,
    parse_policy,
    policy_version,
)
from prefcenter.domain.timewindows import ALL_DAYS, WeekWindow, parse_window

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
    assert policy.overrides[1].regions == ("US-FL",) and policy.overrides[1].countries == ()
    assert policy.overrides[2].countries == ("FR",)


def daily(text: str) -> tuple[WeekWindow, ...]:
    return (WeekWindow.daily(parse_window(text)),)


FR_VOICE = WeekWindow(
    (parse_window("10:00-13:00"), parse_window("14:00-20:00")), days=0b0011111, holidays=("FR",)
)


def test_windows_for_applies_country_overrides() -> None:
    policy = parse_policy(DEFAULT, "default.toml")
    assert policy.windows_for("voice", "PL") == daily("09:00-20:00")
    assert policy.windows_for("voice", "GR") == daily("09:00-20:00")
    assert policy.windows_for("voice", "DE") == daily("08:00-21:00")
    assert policy.windows_for("sms", "PL") == daily("08:00-21:00")
    assert policy.windows_for("email", "PL") == ()
    assert policy.windows_for("voice", None) == daily("08:00-21:00")


def test_shipped_france_voice_rule_and_cap() -> None:
    """COMPLIANCE item 31: Monday-Friday 10:00-13:00 and 14:00-20:00, never on a French public
    holiday, at most 4 calls in any 30 days."""
    policy = parse_policy(DEFAULT, "default.toml")
    assert policy.windows_for("voice", "FR") == (FR_VOICE,)
    assert policy.channel_caps_for("voice", "FR") == ((4, timedelta(days=30)),)
    assert policy.channel_caps_for("sms", "FR") == () and policy.channel_caps_for("voice", "DE") == ()
    assert policy.windows_for("sms", "FR") == daily("08:00-21:00")
    assert str(FR_VOICE) == "days mon,tue,wed,thu,fri; hours 10:00-13:00, 14:00-20:00; closed on FR holidays"


def test_overrides_match_where_the_phone_number_is_registered() -> None:
    """COMPLIANCE item 22 and edge 5: regions match the number's subdivision, a phone channel's number
    country matches `countries` too, and every override that applies holds at once."""
    policy = parse_policy(DEFAULT, "default.toml")
    florida = PhonePlace(zones=("America/New_York",), country="US", region="US-FL")
    assert policy.windows_for("sms", "US", florida) == daily("08:00-20:00")
    assert policy.windows_for("voice", "PL", florida) == (*daily("09:00-20:00"), *daily("08:00-20:00"))
    assert policy.windows_for("whatsapp", "US", florida) == daily("08:00-21:00")
    assert policy.windows_for("email", "US", florida) == ()  # places count for phone channels only
    france = PhonePlace(zones=("Europe/Paris",), country="FR")
    assert policy.windows_for("voice", "DE", france) == (FR_VOICE,)
    assert policy.channel_caps_for("voice", "DE", france) == ((4, timedelta(days=30)),)
    assert policy.windows_for("voice", "PL", france) == (*daily("09:00-20:00"), FR_VOICE)
    assert policy.windows_for("sms", "US", PhonePlace(country="US", region="US-CA")) == daily("08:00-21:00")


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
    assert policy.windows_for("sms", "US") == ()
    assert policy.overrides == ()
    assert policy.longest_channel_cap() == timedelta(0)


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
    assert policy.windows_for("email", "FR") == daily("09:00-18:00")
    assert policy.windows_for("email", "DE") == ()


def test_override_equal_to_the_base_window_is_allowed() -> None:
    text = DEFAULT.decode().replace('voice = "09:00-20:00"', 'voice = "08:00-21:00"')
    assert parse_policy(text.encode(), "eq.toml").windows_for("voice", "PL") == daily("08:00-21:00")


def test_window_tables_parse() -> None:
    """COMPLIANCE item 31: a window may name weekdays, several windows of the day and a holiday
    calendar; days default to every day."""
    text = MINIMAL.replace(
        "[windows]\n",
        '[windows]\nsms = { hours = ["22:00-02:00"] }\n'
        'voice = { days = "mon,wed,fri-sat", hours = ["09:00-12:00", "13:00-17:00"], holidays = "US-FL" }\n',
    )
    policy = parse_policy(text.encode(), "t.toml")
    assert policy.windows_for("sms", "US") == daily("22:00-02:00")
    (voice,) = policy.windows_for("voice", "US")
    assert voice.days == 0b0110101 and voice.holidays == ("US-FL",) and len(voice.hours) == 2
    assert WeekWindow.daily(parse_window("08:00-09:00")).days == ALL_DAYS


def test_a_table_override_narrows_a_plain_daily_window_and_a_week_base() -> None:
    """Overrides only narrow: days, times of day and holiday closures are all compared."""
    fr_voice = 'voice = { days = "mon-fri", hours = ["10:00-13:00", "14:00-20:00"], holidays = "FR" }'
    base = MINIMAL.replace("[windows]\n", "[windows]\n" + fr_voice + "\n")
    narrower = (
        base
        + '[[overrides]]\ncountries = ["DE"]\nwindows = { voice = { days = "mon", hours = ["10:00-12:00"], holidays = "FR" } }\n'
    )
    parse_policy(narrower.encode(), "n.toml")
    for wider, what in [
        ('{ days = "mon-sat", hours = ["10:00-12:00"], holidays = "FR" }', "days"),
        ('{ days = "mon", hours = ["10:00-12:00"] }', "holidays"),
        ('{ days = "mon", hours = ["12:30-13:30"], holidays = "FR" }', "hours"),
        ('"10:00-12:00"', "every day"),
    ]:
        text = base + f'[[overrides]]\ncountries = ["DE"]\nwindows = {{ voice = {wider} }}\n'
        with pytest.raises(PolicyError) as caught:
            parse_policy(text.encode(), "w.toml")
        assert caught.value.field == "$.overrides[0].windows.voice", what
        assert "overrides may only narrow" in caught.value.reason


def test_override_with_caps_only_and_regions_only() -> None:
    text = MINIMAL + '[[overrides]]\nregions = ["US-FL", "CA-QC"]\ncaps = { sms = { limit = 2, days = 7 } }\n'
    policy = parse_policy(text.encode(), "c.toml")
    quebec = PhonePlace(zones=("America/Toronto",), country="CA", region="CA-QC")
    assert policy.channel_caps_for("sms", "FR", quebec) == ((2, timedelta(days=7)),)
    assert policy.channel_caps_for("sms", "CA") == ()  # a region matches the number, not the profile
    assert policy.windows_for("sms", "FR", quebec) == ()
    assert policy.longest_channel_cap() == timedelta(days=7)


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
        "at least one channel window or cap",
        id="empty-override",
    ),
    pytest.param(
        DEFAULT + b'\n[[overrides]]\ncountries = ["RO"]\nwindows = { voice = "10:00-19:00" }\n',
        "$.overrides[3].windows.voice",
        "already set by $.overrides[0]",
        id="duplicate-override",
    ),
    # --- window tables, regions and per-channel caps (COMPLIANCE items 22 and 31, edge 5)
    pytest.param(
        _edit('sms = "08:00-21:00"', 'sms = { hours = ["08:00-21:00"], day = "mon" }'),
        "$.windows.sms",
        "unknown field `day`",
        id="window-table-unknown-key",
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', "sms = { hours = [] }"),
        "$.windows.sms.hours",
        "length >= 1",
        id="window-table-empty-hours",
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', 'sms = { days = "mon-fri" }'),
        "$.windows.sms",
        "missing required field `hours`",
        id="window-table-no-hours",
    ),
    pytest.param(
        _edit('sms = "08:00-21:00"', 'sms = { hours = ["08:00-21:00", "09:00-09:00"] }'),
        "$.windows.sms.hours[1]",
        "start and end must differ",
        id="window-table-empty-window",
    ),
    pytest.param(
        _edit('voice = { days = "mon-fri"', 'voice = { days = "mon-fry"'),
        "$.overrides[2].windows.voice.days",
        "invalid days 'mon-fry'",
        id="bad-day-name",
    ),
    pytest.param(
        _edit('voice = { days = "mon-fri"', 'voice = { days = "Mon-Fri"'),
        "$.overrides[2].windows.voice.days",
        "invalid days",
        id="capitalised-day-name",
    ),
    pytest.param(
        _edit('20:00"], holidays = "FR"', '20:00"], holidays = "XX"'),
        "$.overrides[2].windows.voice.holidays",
        "unknown holiday calendar 'XX'",
        id="unknown-holiday-calendar",
    ),
    pytest.param(
        _edit('20:00"], holidays = "FR"', '20:00"], holidays = "FR-ZZ"'),
        "$.overrides[2].windows.voice.holidays",
        "FR has no subdivision 'ZZ'",
        id="unknown-holiday-subdivision",
    ),
    pytest.param(
        _edit('regions = ["US-FL"]', 'regions = ["US-XX"]'),
        "$.overrides[1].regions[0]",
        "unknown ISO 3166-2 subdivision code 'US-XX'",
        id="unknown-region",
    ),
    pytest.param(
        _edit('regions = ["US-FL"]', 'regions = ["us-fl"]'),
        "$.overrides[1].regions[0]",
        "regex",
        id="bad-region",
    ),
    pytest.param(
        _edit('regions = ["US-FL"]', "regions = []"),
        "$.overrides[1]",
        "must name countries or regions",
        id="override-names-no-place",
    ),
    pytest.param(
        DEFAULT + b'\n[[overrides]]\nregions = ["US-FL"]\nwindows = { sms = "09:00-20:00" }\n',
        "$.overrides[3].windows.sms",
        "US-FL sms window is already set by $.overrides[1]",
        id="duplicate-region",
    ),
    pytest.param(
        DEFAULT + b'\n[[overrides]]\ncountries = ["FR"]\ncaps = { voice = { limit = 2, days = 7 } }\n',
        "$.overrides[3].caps.voice",
        "FR voice cap is already set by $.overrides[2]",
        id="duplicate-cap",
    ),
    pytest.param(
        _edit("caps = { voice = { limit = 4, days = 30 } }", "caps = { fax = { limit = 4, days = 30 } }"),
        "$.overrides[2].caps",
        "unknown field `fax`",
        id="cap-unknown-channel",
    ),
    pytest.param(
        _edit("limit = 4, days = 30", "limit = 4, days = 0"),
        "$.overrides[2].caps.voice.days",
        ">= 1",
        id="cap-zero-days",
    ),
    pytest.param(
        _edit("limit = 4, days = 30", "limit = 4, hours = 30"),
        "$.overrides[2].caps.voice",
        "unknown field `hours`",
        id="cap-unknown-key",
    ),
    pytest.param(
        _edit("limit = 4, days = 30", "limit = 0, days = 30"),
        "$.overrides[2].caps.voice.limit",
        ">= 1",
        id="cap-zero",
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
