"""Wall-clock time windows in IANA time zones.

A *window* is a set of local wall-clock times of day, written ``"HH:MM-HH:MM"`` and half-open:
``21:00-07:00`` holds 21:00:00 and excludes 07:00:00 and, because start > end, crosses midnight.
``start == end`` is not a window (``ValueError``); API.md makes it a 400 everywhere.

An instant is *inside* a window when the local wall-clock time at that instant is (API.md, "Local time").
Two consequences during DST changes, both handled here without ever turning a local time back into an
instant (which is where ``zoneinfo`` with ``fold=0`` goes wrong: it lands an hour late in a gap):

- when a blocked window ends inside a DST gap (e.g. quiet hours until 02:30 on the night Warsaw jumps
  from 02:00 to 03:00), the first allowed instant is the moment the clocks jump (01:00 UTC);
- a repeated (overlap) hour that is in a window is inside it both times.

Internally every instant is an integer count of microseconds since the Unix epoch (UTC) and every local
time of day is microseconds since local midnight, so comparisons are plain integer comparisons.
:class:`ZoneTimeline` finds a zone's UTC offset and the next offset change for any instant from
``zoneinfo`` (sampled every few hours, then bisected to the second, and memoised per chunk of time).

A :class:`WeekWindow` adds the local DATE (COMPLIANCE item 31): allowed weekdays (``"mon-fri"``), one or
more windows of the day, and holiday calendars (the ``holidays`` package) on whose dates it is closed all
day. The local date at the instant decides: ``{days = "mon-fri", hours = ["22:00-02:00"]}`` allows
Friday 22:00-24:00 and Monday 00:00-02:00 but not Saturday 00:00-02:00 (Saturday is not a listed day).

A :class:`DailySchedule` is the set of *allowed* local times: optional allowed windows (a channel's
windows, all of which must hold) minus an optional blocked window (quiet hours), optionally restricted
to some weekdays and to dates that are not holidays. :func:`first_allowed_us` walks from an instant,
segment by segment between offset changes, to the first instant whose local time (and date) is allowed;
a closed date moves the walk to the next local midnight, so the DST rules above hold for dates too (a
midnight inside a gap is reached at the moment the clocks jump).

Nothing here reads the clock or does I/O beyond ``zoneinfo`` loading its (pinned ``tzdata``) zone files;
the memo caches only hold values derived from those files and from the (pinned) ``holidays`` package.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import msgspec

__all__ = [
    "ALL_DAYS",
    "DAY_NAMES",
    "DAY_US",
    "DEFAULT_HORIZON",
    "HOUR_US",
    "MINUTE_US",
    "SECOND_US",
    "DailySchedule",
    "WeekWindow",
    "Window",
    "ZoneTimeline",
    "first_allowed",
    "first_allowed_in_all_us",
    "first_allowed_us",
    "from_us",
    "holiday_calendar_error",
    "is_allowed",
    "is_holiday",
    "is_inside",
    "local_time_of_day_us",
    "parse_days",
    "parse_hhmm",
    "parse_window",
    "schedule_for",
    "to_us",
    "zone_timeline",
]

SECOND_US = 1_000_000
MINUTE_US = 60 * SECOND_US
HOUR_US = 60 * MINUTE_US
DAY_US = 24 * HOUR_US
MINUTES_PER_DAY = 24 * 60

#: How far :func:`first_allowed` looks before it concludes that a window never opens.
DEFAULT_HORIZON = timedelta(days=400)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
#: Weekday names as windows write them, Monday first (bit i of a day mask is DAY_NAMES[i]).
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_DAYS = 0x7F
_ONE_US = timedelta(microseconds=1)
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


def parse_hhmm(text: str) -> int:
    """``"HH:MM"`` (00:00-23:59, two digits each) to minutes since local midnight."""
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"invalid time of day {text!r}: expected HH:MM between 00:00 and 23:59")
    return int(match.group(1)) * 60 + int(match.group(2))


def _format_minutes(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


class Window(msgspec.Struct, frozen=True):
    """A half-open window [start, end) of local wall-clock time, in minutes since midnight.

    ``start > end`` crosses midnight. Build it with :meth:`parse` or :meth:`from_bounds`, which
    validate; the constructor itself does not.
    """

    start: int
    end: int

    @classmethod
    def from_bounds(cls, start: str, end: str) -> Window:
        """From two ``"HH:MM"`` strings; ``start == end`` raises ``ValueError``."""
        s, e = parse_hhmm(start), parse_hhmm(end)
        if s == e:
            raise ValueError(f"empty window {start}-{end}: start and end must differ")
        return cls(s, e)

    @classmethod
    def parse(cls, text: str) -> Window:
        """From ``"HH:MM-HH:MM"``; anything else, or ``start == end``, raises ``ValueError``."""
        parts = text.split("-") if isinstance(text, str) else []
        if len(parts) != 2:
            raise ValueError(f"invalid window {text!r}: expected HH:MM-HH:MM")
        return cls.from_bounds(parts[0], parts[1])

    @property
    def crosses_midnight(self) -> bool:
        return self.start > self.end

    def contains_minute(self, minute: int) -> bool:
        """Whether local minute-of-day ``minute`` (0-1439) is in the window."""
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def contains_time(self, value: time) -> bool:
        """Whether a local wall-clock time of day (seconds and microseconds count) is in the window."""
        tod = ((value.hour * 60 + value.minute) * 60 + value.second) * SECOND_US + value.microsecond
        return self.contains_tod_us(tod)

    def contains_tod_us(self, tod_us: int) -> bool:
        """Whether a local time of day in microseconds since midnight is in the window."""
        s, e = self.start * MINUTE_US, self.end * MINUTE_US
        if s < e:
            return s <= tod_us < e
        return tod_us >= s or tod_us < e

    def minutes(self) -> frozenset[int]:
        """The set of minutes of the day the window holds (used for subset checks)."""
        return frozenset(m for m in range(MINUTES_PER_DAY) if self.contains_minute(m))

    def covers(self, other: Window) -> bool:
        """Whether every local time in ``other`` is also in this window."""
        return other.minutes() <= self.minutes()

    def __str__(self) -> str:
        return f"{_format_minutes(self.start)}-{_format_minutes(self.end)}"


def parse_window(text: str) -> Window:
    """``"HH:MM-HH:MM"`` to a :class:`Window` (``ValueError`` when malformed or empty)."""
    return Window.parse(text)


def parse_days(text: str) -> int:
    """Weekdays as a bit mask (bit 0 = Monday): ``"mon-fri"``, ``"mon,wed,fri"``, ``"sat-sun"``, or
    ranges and names mixed (``"mon-wed,fri"``); a range may wrap (``"fri-mon"``). ``ValueError`` names
    the first bad part."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"invalid days {text!r}: expected day names such as mon-fri or mon,wed,fri")
    mask = 0
    for part in text.split(","):
        ends = [p.strip() for p in part.split("-")]
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            names = ", ".join(DAY_NAMES)
            where = f"invalid days {part.strip()!r}" + (f" in {text!r}" if part != text else "")
            raise ValueError(f"{where}: use {names} and ranges like mon-fri")
        first, last = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        day = first
        while True:
            mask |= 1 << day
            if day == last:
                break
            day = (day + 1) % 7
    return mask


def _format_days(mask: int) -> str:
    return ",".join(name for i, name in enumerate(DAY_NAMES) if mask >> i & 1) or "none"


# --- holidays -------------------------------------------------------------------------------------------


def _split_calendar(code: str) -> tuple[str, str | None]:
    country, sep, subdivision = code.partition("-")
    return country, (subdivision if sep else None)


def holiday_calendar_error(code: str) -> str | None:
    """Why ``code`` ("FR", "US-FL") is not a calendar of the pinned ``holidays`` package, or None."""
    import holidays  # imported lazily: only policies with a holiday calendar need it

    supported = holidays.list_supported_countries()
    country, subdivision = _split_calendar(code) if isinstance(code, str) else ("", None)
    if country not in supported:
        return f"unknown holiday calendar {code!r}: expected a country code such as FR (or FR-57)"
    if subdivision is not None and subdivision not in supported[country]:
        return f"unknown holiday calendar {code!r}: {country} has no subdivision {subdivision!r}"
    return None


@lru_cache(maxsize=1024)
def _holiday_days(code: str, year: int) -> frozenset[int]:
    """The days (since 1970-01-01) in ``year`` that calendar ``code`` lists as public holidays (none
    outside the package's range: ``holidays`` 0.109 computes years up to 2100)."""
    import holidays

    country, subdivision = _split_calendar(code)
    table = holidays.country_holidays(country, subdiv=subdivision, years=(year - 1, year, year + 1))
    return frozenset(d.toordinal() - _EPOCH_ORDINAL for d in table if d.year == year)


def is_holiday(calendars: Sequence[str], day: int) -> bool:
    """Whether local day ``day`` (days since 1970-01-01) is a holiday in any of ``calendars``."""
    year = date.fromordinal(day + _EPOCH_ORDINAL).year
    return any(day in _holiday_days(code, year) for code in calendars)


class WeekWindow(msgspec.Struct, frozen=True):
    """A channel window with dates: local times in any of ``hours`` on the weekdays of ``days`` (bit i =
    :data:`DAY_NAMES` [i]) that are not holidays in any calendar of ``holidays``. The local date at
    the instant decides (a window crossing midnight on Friday does not continue into a closed
    Saturday). A plain ``"HH:MM-HH:MM"`` is :meth:`daily`."""

    hours: tuple[Window, ...]
    days: int = ALL_DAYS
    holidays: tuple[str, ...] = ()

    @classmethod
    def daily(cls, window: Window) -> WeekWindow:
        return cls((window,))

    def minutes(self) -> frozenset[int]:
        """The minutes of the day any of the hours windows holds."""
        out: frozenset[int] = frozenset()
        for window in self.hours:
            out |= window.minutes()
        return out

    def contains_minute(self, minute: int) -> bool:
        return any(w.contains_minute(minute) for w in self.hours)

    def covers(self, other: WeekWindow) -> bool:
        """Whether every local time ``other`` allows is also allowed here: its days and minutes are
        inside these, and it is closed on every holiday calendar this one is closed on (by code)."""
        return (
            other.days & ~self.days == 0
            and other.minutes() <= self.minutes()
            and set(self.holidays) <= set(other.holidays)
        )

    def __str__(self) -> str:
        text = ", ".join(str(w) for w in self.hours)
        if self.days == ALL_DAYS and not self.holidays and len(self.hours) == 1:
            return text
        parts = [f"days {_format_days(self.days)}", f"hours {text}"]
        if self.holidays:
            parts.append(f"closed on {', '.join(self.holidays)} holidays")
        return "; ".join(parts)


AllowedWindows = Window | WeekWindow | tuple[WeekWindow, ...] | None


class DailySchedule:
    """The allowed local times of day: sorted, disjoint ``[a, b)`` intervals in microseconds, on the
    weekdays of the ``days`` mask and not on a holiday of ``holidays`` (``dated`` when either limits).

    An interval ending at 24:00 and one starting at 00:00 are contiguous across midnight.
    """

    __slots__ = ("always", "dated", "days", "holidays", "intervals", "never")

    def __init__(
        self, intervals: tuple[tuple[int, int], ...], days: int = ALL_DAYS, holidays: tuple[str, ...] = ()
    ) -> None:
        self.intervals = intervals
        self.days = days
        self.holidays = holidays
        self.dated = days != ALL_DAYS or bool(holidays)
        self.never = not intervals or days & ALL_DAYS == 0
        self.always = intervals == ((0, DAY_US),) and not self.dated

    @classmethod
    def build(cls, allowed: AllowedWindows = None, blocked: Window | None = None) -> DailySchedule:
        """Times in ``allowed`` (every time if None; with several windows, in all of them) and not in
        ``blocked`` (none if None)."""
        if allowed is None:
            windows: tuple[Window | WeekWindow, ...] = ()
        elif isinstance(allowed, tuple):
            windows = allowed
        else:
            windows = (allowed,)
        days = ALL_DAYS
        calendars: set[str] = set()
        for w in windows:
            if isinstance(w, WeekWindow):
                days &= w.days
                calendars.update(w.holidays)
        flags = [
            all(w.contains_minute(m) for w in windows) and (blocked is None or not blocked.contains_minute(m))
            for m in range(MINUTES_PER_DAY)
        ]
        intervals: list[tuple[int, int]] = []
        m = 0
        while m < MINUTES_PER_DAY:
            if flags[m]:
                start = m
                while m < MINUTES_PER_DAY and flags[m]:
                    m += 1
                intervals.append((start * MINUTE_US, m * MINUTE_US))
            else:
                m += 1
        return cls(tuple(intervals), days, tuple(sorted(calendars)))

    def allows(self, tod_us: int) -> bool:
        """Whether local time of day ``tod_us`` is allowed (ignoring the date: see :meth:`allows_local`)."""
        for a, b in self.intervals:
            if tod_us < a:
                return False
            if tod_us < b:
                return True
        return False

    def day_open(self, day: int) -> bool:
        """Whether local day ``day`` (days since 1970-01-01) is an allowed weekday and not a holiday."""
        if not self.days >> ((day + 3) % 7) & 1:  # 1970-01-01 was a Thursday (weekday 3)
            return False
        return not (self.holidays and is_holiday(self.holidays, day))

    def allows_local(self, local_us: int) -> bool:
        """Whether a local wall-clock moment (microseconds since local 1970-01-01 00:00) is allowed."""
        if self.dated and not self.day_open(local_us // DAY_US):
            return False
        return self.allows(local_us % DAY_US)

    def wait_us(self, tod_us: int) -> int | None:
        """Local microseconds from ``tod_us`` to the next allowed time of day (0 if allowed now),
        ignoring the date.

        None when nothing is ever allowed. This is wall-clock distance; :func:`first_allowed_us`
        turns it into an instant, taking offset changes into account.
        """
        intervals = self.intervals
        if not intervals:
            return None
        for a, b in intervals:
            if tod_us < a:
                return a - tod_us
            if tod_us < b:
                return 0
        return intervals[0][0] + DAY_US - tod_us

    def wait_local_us(self, local_us: int) -> int | None:
        """Like :meth:`wait_us` for a local moment, with dates: 0 if allowed now, else the local
        distance to the next allowed time on the same day, or to the next local midnight when the rest
        of the day is closed (the caller checks again from there). None when nothing is ever allowed."""
        if not self.dated:
            return self.wait_us(local_us % DAY_US)
        if self.never:
            return None
        day, tod = divmod(local_us, DAY_US)
        if self.day_open(day):
            for a, b in self.intervals:
                if tod < a:
                    return a - tod
                if tod < b:
                    return 0
        return DAY_US - tod

    def __repr__(self) -> str:
        parts = [
            f"{_format_minutes(a // MINUTE_US)}-{_format_minutes(b // MINUTE_US)}" for a, b in self.intervals
        ]
        extra = ""
        if self.days != ALL_DAYS:
            extra += f"; days {_format_days(self.days)}"
        if self.holidays:
            extra += f"; closed on {', '.join(self.holidays)} holidays"
        return f"DailySchedule({', '.join(parts) or 'never'}{extra})"


@lru_cache(maxsize=4096)
def schedule_for(allowed: AllowedWindows, blocked: Window | None) -> DailySchedule:
    """A memoised :meth:`DailySchedule.build` (windows are few; recipients are many)."""
    return DailySchedule.build(allowed, blocked)


def to_us(instant: datetime) -> int:
    """An aware datetime to integer microseconds since the Unix epoch (exact, floor division).

    A naive datetime raises ``ValueError``. On the gate's hot path: the check costs nothing on the
    happy path (subtracting a naive datetime from the aware epoch is what fails)."""
    try:
        return (instant - _EPOCH) // _ONE_US
    except TypeError:
        if isinstance(instant, datetime) and instant.utcoffset() is None:
            raise ValueError(f"naive datetime {instant.isoformat()}: an aware instant is required") from None
        raise


def from_us(us: int) -> datetime:
    """Integer microseconds since the Unix epoch to an aware UTC datetime."""
    return _EPOCH + us * _ONE_US


# Offsets change rarely; a zone's timeline is cut into chunks, each sampled every few hours and the
# changes bisected to the second (tzdata transitions fall on whole seconds). Two changes closer than
# the sampling step would be missed; no zone has had that in modern times.
_CHUNK_S = 32 * 86_400
_CHUNK_US = _CHUNK_S * SECOND_US
_SAMPLE_S = 3 * 3_600


class ZoneTimeline:
    """A zone's UTC offset as a step function of UTC instants, with the instants it changes."""

    __slots__ = ("_chunks", "key", "zone")

    def __init__(self, key: str) -> None:
        self.key = key
        self.zone = ZoneInfo(key)
        # chunk index -> (offset at chunk start, change instants (µs), offsets after each change (µs))
        self._chunks: dict[int, tuple[int, list[int], list[int]]] = {}

    def _offset_s(self, second: int) -> int:
        delta = datetime.fromtimestamp(second, self.zone).utcoffset()
        assert delta is not None
        return delta.days * 86_400 + delta.seconds

    def _load(self, chunk: int) -> tuple[int, list[int], list[int]]:
        start = chunk * _CHUNK_S
        end = start + _CHUNK_S
        points = [*range(start, end, _SAMPLE_S), end - 1]
        offsets = [self._offset_s(p) for p in points]
        changes: list[int] = []
        after: list[int] = []
        for i in range(1, len(points)):
            if offsets[i] != offsets[i - 1]:
                lo, hi = points[i - 1], points[i]  # offset(lo) = old, offset(hi) = new
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._offset_s(mid) == offsets[i - 1]:
                        lo = mid
                    else:
                        hi = mid
                changes.append(hi * SECOND_US)
                after.append(self._offset_s(hi) * SECOND_US)
        data = (offsets[0] * SECOND_US, changes, after)
        self._chunks[chunk] = data
        return data

    def segment(self, t_us: int) -> tuple[int, int]:
        """``(offset_us, until_us)``: the UTC offset at ``t_us``, constant on ``[t_us, until_us)``.

        ``until_us`` is the next offset change or a chunk boundary (where the offset may not change).
        """
        chunk = t_us // _CHUNK_US
        data = self._chunks.get(chunk)
        if data is None:
            data = self._load(chunk)
        start_offset, changes, after = data
        i = bisect_right(changes, t_us)
        offset = after[i - 1] if i else start_offset
        until = changes[i] if i < len(changes) else (chunk + 1) * _CHUNK_US
        return offset, until

    def offset_us(self, t_us: int) -> int:
        """The UTC offset in microseconds at instant ``t_us``."""
        return self.segment(t_us)[0]


_TIMELINES: dict[str, ZoneTimeline] = {}


def zone_timeline(key: str) -> ZoneTimeline:
    """The memoised :class:`ZoneTimeline` of an IANA zone (``ValueError`` if the zone is unknown)."""
    timeline = _TIMELINES.get(key)
    if timeline is None:
        try:
            timeline = ZoneTimeline(key)
        except (ValueError, KeyError, OSError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone {key!r}") from exc
        _TIMELINES[key] = timeline
    return timeline


def local_time_of_day_us(timeline: ZoneTimeline, t_us: int) -> int:
    """The local wall-clock time of day at instant ``t_us``, in microseconds since local midnight."""
    return (t_us + timeline.offset_us(t_us)) % DAY_US


def first_allowed_us(schedule: DailySchedule, timeline: ZoneTimeline, t_us: int, limit_us: int) -> int | None:
    """The first instant ``u`` with ``t_us <= u < limit_us`` whose local time the schedule allows.

    Walks segment by segment: within a segment the offset is constant, so local time runs with UTC
    and the end of a blocked stretch is reached after :meth:`DailySchedule.wait_us`. If the segment
    ends first (an offset change), the walk resumes at the change instant with the new offset. So a
    blocked stretch ending inside a DST gap yields the instant of the jump, and a repeated hour that is
    blocked is blocked both times. A dated schedule steps to the next local midnight when the rest of a
    day is closed and checks again there. None if no such instant exists before ``limit_us``.
    """
    if schedule.never:
        return None
    if schedule.always:
        return t_us if t_us < limit_us else None
    dated = schedule.dated
    while t_us < limit_us:
        offset, until = timeline.segment(t_us)
        wait = schedule.wait_local_us(t_us + offset)
        if wait is None:  # pragma: no cover - schedule.never handled above
            return None
        if wait == 0:
            return t_us
        candidate = t_us + wait
        if candidate >= until:
            t_us = until
        elif dated:
            t_us = candidate
        else:
            return candidate if candidate < limit_us else None
    return None


def first_allowed_in_all_us(
    schedule: DailySchedule, timelines: Sequence[ZoneTimeline], t_us: int, limit_us: int
) -> int | None:
    """The first instant in ``[t_us, limit_us)`` the schedule allows in every zone at once (each zone's
    search only moves the candidate forward, so alternating them until none moves finds it)."""
    if len(timelines) == 1:
        return first_allowed_us(schedule, timelines[0], t_us, limit_us)
    c = t_us
    while True:
        start = c
        for timeline in timelines:
            found = first_allowed_us(schedule, timeline, c, limit_us)
            if found is None:
                return None
            c = found
        if c == start:
            return c


def _schedule(quiet: Window | None, allowed: AllowedWindows) -> DailySchedule:
    return schedule_for(allowed, quiet)


def is_inside(window: Window, instant: datetime, zone: str) -> bool:
    """Whether the local wall-clock time at ``instant`` in ``zone`` is inside ``window``."""
    t = to_us(instant)
    return window.contains_tod_us(local_time_of_day_us(zone_timeline(zone), t))


def is_allowed(
    instant: datetime, zone: str, *, quiet: Window | None = None, allowed: AllowedWindows = None
) -> bool:
    """Whether ``instant`` is outside the blocked ``quiet`` window and inside the ``allowed`` window(s)
    (a :class:`WeekWindow` checks the local date too)."""
    t = to_us(instant)
    return _schedule(quiet, allowed).allows_local(t + zone_timeline(zone).offset_us(t))


def first_allowed(
    instant: datetime,
    zone: str,
    *,
    quiet: Window | None = None,
    allowed: AllowedWindows = None,
    horizon: timedelta = DEFAULT_HORIZON,
) -> datetime | None:
    """The first instant >= ``instant`` that :func:`is_allowed`, as aware UTC; None if none within
    ``horizon`` (e.g. quiet hours that cover the whole channel window)."""
    t = to_us(instant)
    found = first_allowed_us(_schedule(quiet, allowed), zone_timeline(zone), t, t + horizon // _ONE_US)
    return None if found is None else from_us(found)
