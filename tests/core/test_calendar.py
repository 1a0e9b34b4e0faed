"""The KRX trading calendar: weekends, exchange holidays, previous/next trading day across both."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.calendar import holiday_name, is_trading_day, next_trading_day, previous_trading_day
from runtime.clock import KST


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 9, 14),  # Monday
        date(2026, 9, 18),  # Friday
        date(2026, 9, 23),  # Wednesday before Chuseok
        date(2026, 9, 28),  # Monday after Chuseok
        date(2025, 12, 30),  # last trading day of 2025
        date(2026, 1, 2),  # first trading day of 2026
    ],
)
def test_open_weekdays(day: date) -> None:
    assert is_trading_day(day)
    assert holiday_name(day) is None


@pytest.mark.parametrize(
    "day",
    [
        date(2026, 9, 24),  # the day preceding Chuseok
        date(2026, 9, 25),  # Chuseok
        date(2026, 2, 17),  # Seollal
        date(2026, 6, 3),  # local election day
        date(2025, 12, 31),  # year-end closure
        date(2026, 1, 1),
        date(2026, 5, 1),  # Labour Day: exchange closed, not a public holiday
    ],
)
def test_exchange_holidays_are_closed_and_named(day: date) -> None:
    assert day.weekday() < 5
    assert not is_trading_day(day)
    assert holiday_name(day)


@pytest.mark.parametrize("day", [date(2026, 9, 12), date(2026, 9, 13), date(2026, 9, 26), date(2026, 9, 27)])
def test_weekends_are_closed(day: date) -> None:
    assert not is_trading_day(day)


@pytest.mark.parametrize(
    ("day", "previous"),
    [
        (date(2026, 9, 14), date(2026, 9, 11)),  # Monday -> Friday
        (date(2026, 9, 15), date(2026, 9, 14)),  # Tuesday -> Monday
        (date(2026, 9, 13), date(2026, 9, 11)),  # Sunday -> Friday
        (date(2026, 9, 28), date(2026, 9, 23)),  # after Chuseok (Thu/Fri holidays + weekend) -> Wednesday
        (date(2026, 9, 25), date(2026, 9, 23)),  # on a holiday
        (date(2026, 1, 2), date(2025, 12, 30)),  # across the year-end closure and New Year
        (date(2026, 2, 19), date(2026, 2, 13)),  # after Seollal (Mon-Wed) and the weekend before it
    ],
)
def test_previous_trading_day(day: date, previous: date) -> None:
    assert previous_trading_day(day) == previous


@pytest.mark.parametrize(
    ("day", "following"),
    [
        (date(2026, 9, 11), date(2026, 9, 14)),  # Friday -> Monday
        (date(2026, 9, 23), date(2026, 9, 28)),  # before Chuseok -> the Monday after
        (date(2025, 12, 30), date(2026, 1, 2)),
        (date(2026, 9, 26), date(2026, 9, 28)),  # Saturday -> Monday
    ],
)
def test_next_trading_day(day: date, following: date) -> None:
    assert next_trading_day(day) == following


def test_datetimes_are_refused_because_their_date_depends_on_the_zone() -> None:
    with pytest.raises(TypeError):
        is_trading_day(datetime(2026, 9, 14, 1, 0, tzinfo=KST))


@given(st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31)))
def test_previous_and_next_are_the_nearest_trading_days(day: date) -> None:
    before, after = previous_trading_day(day), next_trading_day(day)
    assert before < day < after
    assert is_trading_day(before) and is_trading_day(after)
    gap_days = [before + timedelta(days=n) for n in range(1, (after - before).days)]
    assert all(not is_trading_day(d) for d in gap_days if d != day)
    assert (after - before).days <= 14
    if is_trading_day(day):
        assert next_trading_day(before) == day == previous_trading_day(after)
