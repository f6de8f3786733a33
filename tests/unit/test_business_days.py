"""US business days for the review deadline (COMPLIANCE item 23: honour within 10 business days; edge 16:
business days follow US holidays, counted from receipt)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prefcenter.domain.business_days import (
    add_business_days,
    due_date,
    is_business_day,
    is_overdue,
    local_day,
    overdue_before,
)


def test_item_23_edge_16_thanksgiving_is_skipped() -> None:
    """COMPLIANCE item 23 / edge 16: received Wed 2026-11-25; Thanksgiving (Thu 11-26) and the weekends
    are not business days, the Friday after is (not a federal holiday): due Thu 2026-12-10, not 12-09."""
    assert not is_business_day(date(2026, 11, 26))
    assert is_business_day(date(2026, 11, 27))
    assert due_date(datetime(2026, 11, 25, 15, 0, tzinfo=UTC)) == date(2026, 12, 10)


def test_edge_16_the_day_is_new_york_s() -> None:
    """03:00 UTC on Thursday is still Wednesday evening in New York: counted from Wednesday."""
    late = datetime(2026, 11, 26, 3, 0, tzinfo=UTC)
    assert local_day(late) == date(2026, 11, 25)
    assert due_date(late) == date(2026, 12, 10)
    assert due_date(datetime(2026, 11, 26, 5, 0, tzinfo=UTC)) == date(2026, 12, 10)  # Thanksgiving: day 0


@pytest.mark.parametrize(
    ("start", "n", "due"),
    [
        (date(2026, 11, 21), 1, date(2026, 11, 23)),  # a Saturday receipt: Monday is day 1
        (date(2026, 7, 2), 1, date(2026, 7, 6)),  # Fri 07-03 is Independence Day observed
        (date(2026, 12, 24), 1, date(2026, 12, 28)),  # Christmas Day
        (date(2027, 12, 23), 2, date(2027, 12, 28)),  # Fri 12-24 is Christmas observed
        (date(2027, 12, 30), 1, date(2028, 1, 3)),  # Fri 12-31 is New Year's Day (2028) observed
        (date(2026, 1, 16), 1, date(2026, 1, 20)),  # Martin Luther King Jr. Day
        (date(2026, 6, 18), 1, date(2026, 6, 22)),  # Juneteenth
        (date(2026, 4, 2), 1, date(2026, 4, 3)),  # Good Friday is no federal holiday
    ],
)
def test_federal_holidays_and_weekends(start: date, n: int, due: date) -> None:
    assert add_business_days(start, n) == due


def test_overdue_from_the_next_new_york_day() -> None:
    """Due 2026-12-10 (New York, EST = UTC-5): still in time at 23:59:59 that day, overdue at midnight."""
    received = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    assert not is_overdue(received, datetime(2026, 12, 11, 4, 59, 59, tzinfo=UTC))
    assert is_overdue(received, datetime(2026, 12, 11, 5, 0, tzinfo=UTC))
    # the cutoff the gauge counts with says the same
    assert received >= overdue_before(datetime(2026, 12, 11, 4, 59, 59, tzinfo=UTC))
    assert received < overdue_before(datetime(2026, 12, 11, 5, 0, tzinfo=UTC))


def test_n_must_be_positive() -> None:
    with pytest.raises(ValueError):
        add_business_days(date(2026, 1, 1), 0)


EPOCH = datetime(2025, 1, 1, tzinfo=UTC)


@settings(max_examples=400, deadline=None)
@given(
    st.integers(min_value=0, max_value=3 * 365 * 24 * 60),
    st.integers(min_value=0, max_value=60 * 24 * 60),
    st.integers(min_value=1, max_value=15),
)
def test_overdue_before_agrees_with_due_date(received_min: int, later_min: int, n: int) -> None:
    """The gauge's one range query (received before a cutoff) counts exactly the texts whose due date has
    passed."""
    received = EPOCH + timedelta(minutes=received_min)
    now = received + timedelta(minutes=later_min)
    assert (received < overdue_before(now, n)) == is_overdue(received, now, n)
