"""US business days, for the deadline of a revocation kept for review (COMPLIANCE item 23, edge 16).

The FCC's revocation rule (47 CFR 64.1200(a)(10)) and CAN-SPAM (15 U.S.C. 7704(a)(4)) give 10 business
days to honour an opt-out. A *business day* here is a Monday to Friday that is not a US federal holiday
(5 U.S.C. 6103, as the ``holidays`` package's ``US`` calendar gives them, with the observed Friday or
Monday of a holiday on a weekend; the FCC's own rules, 47 CFR 1.4(e)(1), count the same days). Days are
local dates in ``America/New_York`` (the federal government's working day); the day of receipt is day 0,
so the deadline is the 10th business day strictly after it, and a text is *overdue* from the start of the
next day in New York.

Pure: no clock and no I/O beyond ``zoneinfo`` loading its (pinned ``tzdata``) zone file.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from prefcenter.domain.timewindows import is_holiday

BUSINESS_ZONE = ZoneInfo("America/New_York")
REVIEW_BUSINESS_DAYS = 10


_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def is_business_day(day: date) -> bool:
    """Monday to Friday and not a US federal holiday (observed dates included; the policy windows'
    holiday lookup, :func:`prefcenter.domain.timewindows.is_holiday`)."""
    return day.weekday() < 5 and not is_holiday(("US",), day.toordinal() - _EPOCH_ORDINAL)


def local_day(moment: datetime) -> date:
    """The date in New York at an (aware) instant."""
    return moment.astimezone(BUSINESS_ZONE).date()


def add_business_days(start: date, n: int) -> date:
    """The ``n``-th business day strictly after ``start`` (``n`` >= 1)."""
    if n < 1:
        raise ValueError("n must be at least 1")
    day, found = start, 0
    while found < n:
        day += timedelta(days=1)
        found += is_business_day(day)
    return day


def due_date(received_at: datetime, n: int = REVIEW_BUSINESS_DAYS) -> date:
    """The last day (New York) to act on something received at ``received_at``."""
    return add_business_days(local_day(received_at), n)


def overdue_before(now: datetime, n: int = REVIEW_BUSINESS_DAYS) -> datetime:
    """The instant (UTC) before which everything received is overdue at ``now``: ``due_date(r, n)`` is
    before today in New York exactly when ``r`` is before the start (New York) of the ``n``-th business
    day counted back from yesterday (yesterday itself included when it is one)."""
    day, found = local_day(now), 0
    while found < n:
        day -= timedelta(days=1)
        found += is_business_day(day)
    return datetime.combine(day, time(0), tzinfo=BUSINESS_ZONE).astimezone(UTC)


def is_overdue(received_at: datetime, now: datetime, n: int = REVIEW_BUSINESS_DAYS) -> bool:
    return due_date(received_at, n) < local_day(now)
