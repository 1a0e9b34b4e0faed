"""The KRX trading calendar: weekdays that are not exchange holidays (Nextrade keeps the same days).

Holidays come from `holidays.financial_holidays("XKRX")` (maintained upstream: lunar holidays, substitute
days, election days, the year-end closure), never from a hand-written list.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from zoneinfo import ZoneInfo

import holidays

KST = ZoneInfo("Asia/Seoul")
"""Korea Standard Time: every time the observer handles is aware and in this zone."""

_SATURDAY = 5


@lru_cache(maxsize=64)
def _closed_dates(year: int) -> MappingProxyType[date, str]:
    """Exchange holidays of one year by date, computed once and then only read (safe across threads)."""
    return MappingProxyType(dict(holidays.financial_holidays("XKRX", years=year)))


def _as_date(day: date) -> date:
    if isinstance(day, datetime):
        raise TypeError("pass a KST calendar date (moment.astimezone(KST).date()), not a datetime")
    return day


def holiday_name(day: date) -> str | None:
    """The exchange holiday's name on `day`, or None (weekends are not named)."""
    day = _as_date(day)
    return _closed_dates(day.year).get(day)


def is_trading_day(day: date) -> bool:
    """True when KRX is open on `day`: a weekday that is not an exchange holiday."""
    day = _as_date(day)
    return day.weekday() < _SATURDAY and day not in _closed_dates(day.year)


def previous_trading_day(day: date) -> date:
    """The last trading day strictly before `day` (Monday -> Friday, skipping holidays)."""
    candidate = _as_date(day) - timedelta(days=1)
    while not is_trading_day(candidate):
        candidate -= timedelta(days=1)
    return candidate


def next_trading_day(day: date) -> date:
    """The first trading day strictly after `day`."""
    candidate = _as_date(day) + timedelta(days=1)
    while not is_trading_day(candidate):
        candidate += timedelta(days=1)
    return candidate
