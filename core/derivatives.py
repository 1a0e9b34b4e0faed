"""KOSPI200 futures and options from the calendar: expiries, KIS short codes, the front month and the roll.

KOSPI200 futures are listed for March, June, September and December, options for every month; both stop
trading on the second Thursday of their month, moved to the trading day before when that Thursday is closed
(KRX rules). KIS names them by short code: type (1 futures, 2 call, 3 put), "01" for KOSPI200, the year
letter of KRX's 30-year cycle (1996 "6" ... 2025 "W", 2026 "6" again), the month as two digits, and for an
option the strike's whole points as three digits (307 for 307.5): "101W09", "201W09340".

The roll: on its last trading day a contract trades only until 15:20, so the observer follows the next one
from that day's start. `front` on an expiry day is therefore the contract expiring next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from core.calendar import is_trading_day

YEAR_CYCLE = "6789012345ABCDEFGHJKLMNPQRSTVW"
CYCLE_START = 1996
QUARTER_MONTHS = (3, 6, 9, 12)
ALL_MONTHS = tuple(range(1, 13))
KOSPI200 = "01"
_THURSDAY = 3


class Kind(StrEnum):
    FUTURES = "1"
    CALL = "2"
    PUT = "3"


@dataclass(frozen=True, slots=True)
class Contract:
    """One KOSPI200 futures month (or option month) and its last trading day."""

    year: int
    month: int
    last_trading_day: date

    @property
    def futures_code(self) -> str:
        return f"{Kind.FUTURES}{KOSPI200}{year_letter(self.year)}{self.month:02d}"

    @property
    def option_month(self) -> str:
        """The YYYYMM KIS's option board takes as FID_MTRT_CNT."""
        return f"{self.year:04d}{self.month:02d}"

    def option_code(self, kind: Kind, strike: float) -> str:
        if kind is Kind.FUTURES:
            raise ValueError("an option code is for a call or a put")
        return f"{kind}{KOSPI200}{year_letter(self.year)}{self.month:02d}{int(strike) % 1000:03d}"


def year_letter(year: int) -> str:
    if year < CYCLE_START:
        raise ValueError(f"no KRX year code before {CYCLE_START}: {year}")
    return YEAR_CYCLE[(year - CYCLE_START) % len(YEAR_CYCLE)]


def second_thursday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(_THURSDAY - first.weekday()) % 7 + 7)


def last_trading_day(year: int, month: int) -> date:
    """The second Thursday of the month, or the trading day before it when the exchange is closed that day."""
    day = second_thursday(year, month)
    while not is_trading_day(day):
        day -= timedelta(days=1)
    return day


def listed_contracts(day: date, months: tuple[int, ...], count: int) -> list[Contract]:
    """The first `count` contracts of `months` still trading on `day` (one expiring that day included)."""
    found: list[Contract] = []
    year, month = day.year, day.month
    while len(found) < count:
        if month in months:
            last = last_trading_day(year, month)
            if last >= day:
                found.append(Contract(year, month, last))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def _contracts_after(day: date, months: tuple[int, ...], count: int) -> list[Contract]:
    """The first `count` contracts of `months` whose last trading day is after `day` (the roll rule)."""
    return [c for c in listed_contracts(day, months, count + 1) if c.last_trading_day > day][:count]


def futures_pair(day: date) -> tuple[Contract, Contract]:
    """The front-month and next KOSPI200 futures contracts followed on `day` (rolled on expiry day)."""
    front, following = _contracts_after(day, QUARTER_MONTHS, 2)
    return front, following


def option_months(day: date, count: int = 2) -> list[Contract]:
    """The nearest `count` monthly KOSPI200 option expiries followed on `day` (rolled on expiry day)."""
    return _contracts_after(day, ALL_MONTHS, count)


def is_expiry_day(day: date) -> bool:
    """Whether a KOSPI200 option month (and, in a quarter month, the futures) expires on `day`."""
    return last_trading_day(day.year, day.month) == day
