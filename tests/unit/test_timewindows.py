"""Wall-clock windows in IANA zones (prefcenter.domain.timewindows).

API.md "Customers and preferences" (half-open windows, start = end is a 400) and "Local time" (a window
ending in a DST gap opens when the clocks jump; a repeated hour in the window is inside both times).
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from prefcenter.domain.timewindows import (
    ALL_DAYS,
    DAY_US,
    HOUR_US,
    MINUTE_US,
    DailySchedule,
    WeekWindow,
    Window,
    first_allowed,
    first_allowed_in_all_us,
    first_allowed_us,
    from_us,
    holiday_calendar_error,
    is_allowed,
    is_holiday,
    is_inside,
    parse_days,
    parse_hhmm,
    parse_window,
    to_us,
    zone_timeline,
)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- parsing ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "minutes"), [("00:00", 0), ("07:30", 450), ("23:59", 1439), ("12:05", 725)])
def test_parse_hhmm_accepts_valid_times(text: str, minutes: int) -> None:
    assert parse_hhmm(text) == minutes


@pytest.mark.parametrize(
    "text", ["24:00", "7:00", "07:60", "0700", "07:00:00", " 07:00", "", "ab:cd", "-1:00"]
)
def test_parse_hhmm_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match="HH:MM"):
        parse_hhmm(text)


def test_parse_window_and_str_round_trip() -> None:
    window = parse_window("21:00-07:00")
    assert (window.start, window.end) == (21 * 60, 7 * 60)
    assert window.crosses_midnight
    assert str(window) == "21:00-07:00"
    assert not parse_window("08:00-21:00").crosses_midnight


@pytest.mark.parametrize("text", ["08:00-08:00", "00:00-00:00"])
def test_start_equal_to_end_is_invalid(text: str) -> None:
    """API.md: start = end is a 400 (COMPLIANCE edge 1 asks to define it; we reject it)."""
    with pytest.raises(ValueError, match="start and end must differ"):
        parse_window(text)
    with pytest.raises(ValueError, match="start and end must differ"):
        Window.from_bounds(text[:5], text[6:])


@pytest.mark.parametrize("text", ["08:00", "08:00-21:00-22:00", "08:00–21:00", "8:00-21:00", "08:00-24:00"])
def test_malformed_windows_are_invalid(text: str) -> None:
    with pytest.raises(ValueError):
        parse_window(text)


# --- membership ---------------------------------------------------------------------------------------


def test_window_is_half_open_across_midnight() -> None:
    """API.md: `21:00`-`07:00` includes 21:00:00 and excludes 07:00:00 (COMPLIANCE edge 1)."""
    window = parse_window("21:00-07:00")
    assert window.contains_time(time(21, 0))
    assert window.contains_time(time(23, 59, 59, 999999))
    assert window.contains_time(time(0, 0))
    assert window.contains_time(time(6, 59, 59, 999999))
    assert not window.contains_time(time(7, 0))
    assert not window.contains_time(time(20, 59, 59, 999999))
    assert not window.contains_time(time(12, 0))


def test_window_is_half_open_within_a_day() -> None:
    window = parse_window("08:00-21:00")
    assert window.contains_time(time(8, 0))
    assert window.contains_time(time(20, 59, 59))
    assert not window.contains_time(time(21, 0))
    assert not window.contains_time(time(7, 59, 59, 999999))
    assert window.contains_minute(8 * 60)
    assert not window.contains_minute(21 * 60)


def test_covers_compares_sets_of_local_times() -> None:
    base = parse_window("08:00-21:00")
    assert base.covers(parse_window("09:00-20:00"))
    assert base.covers(base)
    assert not base.covers(parse_window("07:00-20:00"))
    assert not base.covers(parse_window("20:00-09:00"))
    night = parse_window("22:00-07:00")
    assert night.covers(parse_window("23:00-01:00"))
    assert not night.covers(parse_window("21:00-01:00"))


def test_daily_schedule_is_window_minus_quiet_hours() -> None:
    schedule = DailySchedule.build(allowed=parse_window("08:00-21:00"), blocked=parse_window("12:00-13:00"))
    assert schedule.intervals == ((8 * HOUR_US, 12 * HOUR_US), (13 * HOUR_US, 21 * HOUR_US))
    assert schedule.allows(8 * HOUR_US)
    assert not schedule.allows(12 * HOUR_US + 30 * MINUTE_US)
    assert schedule.wait_us(12 * HOUR_US + 30 * MINUTE_US) == 30 * MINUTE_US
    assert schedule.wait_us(22 * HOUR_US) == 10 * HOUR_US  # wraps to 08:00 the next day
    assert schedule.wait_us(9 * HOUR_US) == 0


def test_daily_schedule_never_and_always() -> None:
    """COMPLIANCE edge 6: quiet hours that cover the whole channel window leave no slot at all."""
    never = DailySchedule.build(allowed=parse_window("08:00-21:00"), blocked=parse_window("07:00-22:00"))
    assert never.never and never.wait_us(0) is None and not never.allows(10 * HOUR_US)
    always = DailySchedule.build()
    assert always.always and always.wait_us(DAY_US - 1) == 0


# --- instants and zones -------------------------------------------------------------------------------


def test_to_us_and_from_us_are_exact_inverses() -> None:
    instant = datetime(2026, 11, 22, 9, 0, 0, 123457, tzinfo=UTC)
    assert from_us(to_us(instant)) == instant
    warsaw = instant.astimezone(ZoneInfo("Europe/Warsaw"))
    assert to_us(warsaw) == to_us(instant)
    assert from_us(to_us(instant)).tzinfo is UTC


def test_naive_instants_are_rejected() -> None:
    with pytest.raises(ValueError, match="naive"):
        to_us(datetime(2026, 1, 1))


def test_unknown_zone_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        zone_timeline("Mars/Olympus_Mons")
    with pytest.raises(ValueError, match="unknown time zone"):
        is_inside(parse_window("22:00-07:00"), utc("2026-01-01T00:00:00Z"), "Not/AZone")


@pytest.mark.parametrize(
    "zone",
    ["Europe/Warsaw", "America/Los_Angeles", "Australia/Lord_Howe", "Asia/Tehran", "America/St_Johns"],
)
def test_timeline_offsets_match_zoneinfo_across_a_year(zone: str) -> None:
    """The sampled offset table agrees with zoneinfo every 30 minutes over 2026, transitions included."""
    timeline = zone_timeline(zone)
    info = ZoneInfo(zone)
    t = datetime(2026, 1, 1, tzinfo=UTC)
    while t.year == 2026:
        offset = t.astimezone(info).utcoffset()
        assert offset is not None
        assert timeline.offset_us(to_us(t)) == offset // timedelta(microseconds=1), t
        t += timedelta(minutes=30)


def test_timeline_segments_end_exactly_at_the_transition() -> None:
    timeline = zone_timeline("Europe/Warsaw")
    jump = to_us(utc("2026-03-29T01:00:00Z"))
    offset, until = timeline.segment(jump - 1)
    assert (offset, until) == (HOUR_US, jump)
    assert timeline.segment(jump)[0] == 2 * HOUR_US


def test_tehran_is_plus_0330_in_summer_2026() -> None:
    """COMPLIANCE edge 4: Asia/Tehran dropped DST (tzdata 2022b); stale data would say +04:30."""
    assert (
        zone_timeline("Asia/Tehran").offset_us(to_us(utc("2026-06-21T12:00:00Z")))
        == 3 * HOUR_US + 30 * MINUTE_US
    )


# --- inside / first allowed ---------------------------------------------------------------------------


def test_inside_uses_the_customers_zone() -> None:
    window = parse_window("22:00-07:00")
    at = utc("2026-11-22T21:30:00Z")  # 22:30 in Warsaw, 16:30 in New York
    assert is_inside(window, at, "Europe/Warsaw")
    assert not is_inside(window, at, "America/New_York")


def test_first_allowed_across_midnight_waits_for_the_next_local_morning() -> None:
    """COMPLIANCE edge 1: a send at 23:30 waits until 07:00 the next local day."""
    at = utc("2026-11-22T22:30:00Z")  # 23:30 CET
    assert first_allowed(at, "Europe/Warsaw", quiet=parse_window("22:00-07:00")) == utc(
        "2026-11-23T06:00:00Z"
    )


def test_first_allowed_returns_the_instant_itself_when_allowed() -> None:
    at = utc("2026-11-22T12:00:00.5Z")
    assert first_allowed(at, "Europe/Warsaw", quiet=parse_window("22:00-07:00")) == at


@pytest.mark.parametrize(
    ("zone", "at", "quiet", "expected", "fold0_local"),
    [
        # Warsaw jumps 02:00 -> 03:00 CEST at 01:00Z; quiet hours end at 02:30, which does not exist.
        ("Europe/Warsaw", "2026-03-29T00:30:00Z", "22:00-02:30", "2026-03-29T01:00:00Z", "2026-03-29T02:30"),
        # Bucharest and Athens jump 03:00 -> 04:00 EEST at 01:00Z; quiet hours end at 03:30.
        (
            "Europe/Bucharest",
            "2026-03-29T00:00:00Z",
            "23:00-03:30",
            "2026-03-29T01:00:00Z",
            "2026-03-29T03:30",
        ),
        ("Europe/Athens", "2026-03-29T00:15:00Z", "23:00-03:30", "2026-03-29T01:00:00Z", "2026-03-29T03:30"),
    ],
)
def test_window_ending_in_a_dst_gap_opens_when_the_clocks_jump(
    zone: str, at: str, quiet: str, expected: str, fold0_local: str
) -> None:
    """COMPLIANCE edge 2: the first allowed instant is the jump, not where zoneinfo fold=0 lands."""
    found = first_allowed(utc(at), zone, quiet=parse_window(quiet))
    assert found == utc(expected)
    wrong = datetime.fromisoformat(fold0_local).replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
    assert wrong == utc(expected) + timedelta(minutes=30)  # zoneinfo's fold=0 answer: half an hour late
    assert found is not None and not is_inside(parse_window(quiet), found, zone)
    assert is_inside(parse_window(quiet), found - timedelta(microseconds=1), zone)


def test_repeated_hour_is_inside_both_times() -> None:
    """COMPLIANCE edge 3: 2026-10-25 Warsaw repeats 02:00-03:00; both 02:30s are inside 02:00-03:00."""
    window = parse_window("02:00-03:00")
    zone = ZoneInfo("Europe/Warsaw")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=zone, fold=0).astimezone(UTC)
    second = datetime(2026, 10, 25, 2, 30, tzinfo=zone, fold=1).astimezone(UTC)
    assert (first, second) == (utc("2026-10-25T00:30:00Z"), utc("2026-10-25T01:30:00Z"))
    assert is_inside(window, first, "Europe/Warsaw")
    assert is_inside(window, second, "Europe/Warsaw")
    assert is_inside(window, utc("2026-10-25T01:00:00Z") - timedelta(microseconds=1), "Europe/Warsaw")
    assert is_inside(window, utc("2026-10-25T01:00:00Z"), "Europe/Warsaw")  # 02:00 CET, the second time
    assert not is_inside(window, utc("2026-10-25T00:00:00Z") - timedelta(microseconds=1), "Europe/Warsaw")
    assert not is_inside(window, utc("2026-10-25T02:00:00Z"), "Europe/Warsaw")  # 03:00 CET
    # Quiet hours 01:00-03:00 seen from 02:30 CEST last until 03:00 CET, one hour after the first 03:00.
    assert first_allowed(first, "Europe/Warsaw", quiet=parse_window("01:00-03:00")) == utc(
        "2026-10-25T02:00:00Z"
    )


def test_window_opening_in_the_repeated_hour_opens_at_the_fall_back() -> None:
    """Quiet 02:30-03:00 at 02:40 CEST: at 01:00Z the clocks show 02:00 CET, which is allowed."""
    found = first_allowed(utc("2026-10-25T00:40:00Z"), "Europe/Warsaw", quiet=parse_window("02:30-03:00"))
    assert found == utc("2026-10-25T01:00:00Z")


def test_channel_window_tcpa_los_angeles() -> None:
    """COMPLIANCE item 22: 20:59:59 local is inside 08:00-21:00; 21:00:00 waits until 08:00."""
    window = parse_window("08:00-21:00")
    assert is_allowed(utc("2026-11-21T04:59:59Z"), "America/Los_Angeles", allowed=window)
    assert not is_allowed(utc("2026-11-21T05:00:00Z"), "America/Los_Angeles", allowed=window)
    assert first_allowed(utc("2026-11-21T05:00:00Z"), "America/Los_Angeles", allowed=window) == utc(
        "2026-11-21T16:00:00Z"
    )


def test_half_hour_dst_shift_lord_howe() -> None:
    """Australia/Lord_Howe moves by 30 minutes (+10:30 -> +11:00 on 2026-10-04 at 02:00 local)."""
    quiet = parse_window("01:00-02:15")  # 02:00-02:30 does not exist that night
    found = first_allowed(utc("2026-10-03T15:00:00Z"), "Australia/Lord_Howe", quiet=quiet)  # 01:30 +10:30
    assert found == utc("2026-10-03T15:30:00Z")  # the jump: 02:00 +10:30 becomes 02:30 +11:00
    assert not is_allowed(utc("2026-10-03T15:29:59Z"), "Australia/Lord_Howe", quiet=quiet)


def test_window_that_never_opens_returns_none() -> None:
    """COMPLIANCE edge 6: no slot at all is None (the engine turns it into a deny), never an exception."""
    assert (
        first_allowed(
            utc("2026-11-22T12:00:00Z"),
            "Europe/Warsaw",
            quiet=parse_window("07:00-22:00"),
            allowed=parse_window("08:00-21:00"),
        )
        is None
    )


def test_first_allowed_respects_the_limit() -> None:
    schedule = DailySchedule.build(blocked=parse_window("22:00-07:00"))
    timeline = zone_timeline("Europe/Warsaw")
    t = to_us(utc("2026-11-22T22:30:00Z"))
    opens = to_us(utc("2026-11-23T06:00:00Z"))
    assert first_allowed_us(schedule, timeline, t, opens) is None
    assert first_allowed_us(schedule, timeline, t, opens + 1) == opens


# --- weekdays and holidays (COMPLIANCE item 31) --------------------------------------------------------


def week(days: str, *hours: str, holidays: tuple[str, ...] = ()) -> WeekWindow:
    return WeekWindow(tuple(parse_window(h) for h in hours), parse_days(days), holidays)


@pytest.mark.parametrize(
    ("text", "mask"),
    [
        ("mon-fri", 0b0011111),
        ("mon,wed,fri", 0b0010101),
        ("sat-sun", 0b1100000),
        ("fri-mon", 0b1110001),
        ("mon-wed, fri", 0b0010111),
        ("sun", 0b1000000),
        ("mon-sun", ALL_DAYS),
    ],
)
def test_parse_days(text: str, mask: int) -> None:
    assert parse_days(text) == mask


@pytest.mark.parametrize("text", ["", "monday", "Mon", "mon-", "mon-tue-wed", "mon;fri", "xyz"])
def test_parse_days_rejects_bad_names(text: str) -> None:
    with pytest.raises(ValueError, match="invalid days"):
        parse_days(text)


def test_holiday_calendars() -> None:
    assert holiday_calendar_error("FR") is None and holiday_calendar_error("US-FL") is None
    assert "unknown holiday calendar" in (holiday_calendar_error("XX") or "")
    assert "no subdivision" in (holiday_calendar_error("US-XX") or "")
    christmas = (datetime(2026, 12, 25) - datetime(1970, 1, 1)).days
    assert is_holiday(("FR",), christmas) and not is_holiday(("FR",), christmas + 3)
    bastille = (datetime(2026, 7, 14) - datetime(1970, 1, 1)).days
    assert is_holiday(("FR",), bastille) and not is_holiday(("US",), bastille)
    assert is_holiday(("US", "FR"), bastille)


def test_the_french_rule_in_paris() -> None:
    """COMPLIANCE item 31: Monday-Friday 10:00-13:00 and 14:00-20:00, never on a public holiday."""
    fr = week("mon-fri", "10:00-13:00", "14:00-20:00", holidays=("FR",))
    zone = "Europe/Paris"  # CEST (UTC+2) in June, CET in December
    assert is_allowed(utc("2026-06-08T08:00:00Z"), zone, allowed=fr)  # Monday 10:00
    assert not is_allowed(utc("2026-06-08T07:59:59Z"), zone, allowed=fr)
    assert not is_allowed(utc("2026-06-08T11:00:00Z"), zone, allowed=fr)  # 13:00
    assert not is_allowed(utc("2026-06-13T09:00:00Z"), zone, allowed=fr)  # Saturday
    assert not is_allowed(utc("2026-12-25T10:00:00Z"), zone, allowed=fr)  # Christmas, a Friday
    assert first_allowed(utc("2026-06-13T09:00:00Z"), zone, allowed=fr) == utc("2026-06-15T08:00:00Z")
    assert first_allowed(utc("2026-12-25T10:00:00Z"), zone, allowed=fr) == utc("2026-12-28T09:00:00Z")
    assert first_allowed(utc("2026-06-08T11:30:00Z"), zone, allowed=fr) == utc("2026-06-08T12:00:00Z")
    # quiet hours combine with it: 14:00-15:00 blocked moves 13:30 to 15:00
    found = first_allowed(utc("2026-06-08T11:30:00Z"), zone, allowed=fr, quiet=parse_window("14:00-15:00"))
    assert found == utc("2026-06-08T13:00:00Z")


def test_a_window_crossing_midnight_follows_the_local_date() -> None:
    """The local date at the instant decides: Friday 22:00-02:00 does not run on into a closed Saturday."""
    late = week("mon-fri", "22:00-02:00")
    zone = "UTC"
    assert is_allowed(utc("2026-06-12T23:00:00Z"), zone, allowed=late)  # Friday 23:00
    assert not is_allowed(utc("2026-06-13T01:00:00Z"), zone, allowed=late)  # Saturday 01:00
    assert is_allowed(utc("2026-06-15T01:00:00Z"), zone, allowed=late)  # Monday 01:00
    assert first_allowed(utc("2026-06-13T00:00:00Z"), zone, allowed=late) == utc("2026-06-15T00:00:00Z")


def test_a_closed_day_ending_in_a_dst_gap_opens_when_the_clocks_jump() -> None:
    """America/Santiago jumps from Saturday 2026-09-05 24:00 to Sunday 01:00: Sunday 00:00 never exists,
    so a Sunday-only window opens at the instant of the jump (04:00Z), as for times of day."""
    sunday = week("sun", "00:00-06:00")
    found = first_allowed(utc("2026-09-06T02:00:00Z"), "America/Santiago", allowed=sunday)
    assert found == utc("2026-09-06T04:00:00Z")
    assert found.astimezone(ZoneInfo("America/Santiago")).strftime("%a %H:%M") == "Sun 01:00"
    assert not is_allowed(found - timedelta(microseconds=1), "America/Santiago", allowed=sunday)


def test_a_repeated_hour_keeps_its_date_both_times() -> None:
    """America/Santiago repeats Saturday 2026-04-04 23:00-24:00: a Saturday window holds it both times."""
    saturday = week("sat", "23:00-00:00")
    assert is_allowed(utc("2026-04-05T02:30:00Z"), "America/Santiago", allowed=saturday)  # -03:00
    assert is_allowed(utc("2026-04-05T03:30:00Z"), "America/Santiago", allowed=saturday)  # -04:00
    assert not is_allowed(utc("2026-04-05T04:00:00Z"), "America/Santiago", allowed=saturday)  # Sunday


def test_week_window_covers() -> None:
    fr = week("mon-fri", "10:00-13:00", "14:00-20:00", holidays=("FR",))
    daily = WeekWindow.daily(parse_window("08:00-21:00"))
    assert daily.covers(fr) and not fr.covers(daily)
    assert fr.covers(week("mon", "10:00-12:00", holidays=("FR",)))
    assert not fr.covers(week("mon", "10:00-12:00"))  # open on French holidays
    assert not fr.covers(week("sat", "10:00-12:00", holidays=("FR",)))
    assert not fr.covers(week("mon", "12:30-13:30", holidays=("FR",)))


def test_schedules_of_several_windows_intersect() -> None:
    fr = week("mon-fri", "10:00-13:00", "14:00-20:00", holidays=("FR",))
    pl = WeekWindow.daily(parse_window("09:00-12:00"))
    schedule = DailySchedule.build((fr, pl))
    assert schedule.intervals == ((10 * HOUR_US, 12 * HOUR_US),)
    assert schedule.days == parse_days("mon-fri") and schedule.holidays == ("FR",) and schedule.dated
    assert DailySchedule.build((week("mon", "10:00-11:00"), week("tue", "10:00-11:00"))).never


def test_first_allowed_in_all_zones_is_the_first_common_instant() -> None:
    """COMPLIANCE item 22 and edge 5: 08:00-21:00 in Warsaw (06:00-19:00Z in July) and Los Angeles
    (15:00-04:00Z): the first instant both allow after 12:00Z is 15:00Z; after 19:30Z, 15:00Z next day."""
    schedule = DailySchedule.build(parse_window("08:00-21:00"))
    zones = [zone_timeline("Europe/Warsaw"), zone_timeline("America/Los_Angeles")]
    t = to_us(utc("2026-07-15T12:00:00Z"))
    assert from_us(first_allowed_in_all_us(schedule, zones, t, t + 400 * DAY_US) or 0) == utc(
        "2026-07-15T15:00:00Z"
    )
    t = to_us(utc("2026-07-15T19:30:00Z"))
    assert from_us(first_allowed_in_all_us(schedule, zones, t, t + 400 * DAY_US) or 0) == utc(
        "2026-07-16T15:00:00Z"
    )
    assert first_allowed_in_all_us(schedule, zones, t, to_us(utc("2026-07-16T15:00:00Z"))) is None
    disjoint = DailySchedule.build(parse_window("09:00-10:00"))
    far = [zone_timeline("Pacific/Kiritimati"), zone_timeline("Pacific/Pago_Pago")]  # 25 hours apart
    assert first_allowed_in_all_us(disjoint, far, t, t + 400 * DAY_US) is None
