"""KOSPI200 futures and options: second-Thursday expiries moved before holidays, KIS codes, the roll."""

from __future__ import annotations

from datetime import date

import pytest

from core.derivatives import (
    QUARTER_MONTHS,
    Contract,
    Kind,
    futures_pair,
    is_expiry_day,
    last_trading_day,
    listed_contracts,
    option_months,
    second_thursday,
    year_letter,
)


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [(2026, 12, date(2026, 12, 10)), (2026, 10, date(2026, 10, 8)), (2026, 1, date(2026, 1, 8)),
     (2027, 4, date(2027, 4, 8))],
)
def test_second_thursday(year: int, month: int, expected: date) -> None:
    assert second_thursday(year, month) == expected


def test_a_closed_second_thursday_moves_to_the_trading_day_before() -> None:
    # 2025-10-09 is Hangul Day; 3 to 8 October were holidays too (Chuseok, National Foundation Day)
    assert last_trading_day(2025, 10) == date(2025, 10, 2)
    assert last_trading_day(2027, 5) == date(2027, 5, 12)  # 2027-05-13 is Buddha's Birthday
    assert last_trading_day(2026, 12) == date(2026, 12, 10)


def test_year_letters_follow_krx_30_year_cycle() -> None:
    assert [year_letter(y) for y in (1996, 2005, 2006, 2023, 2025, 2026, 2035)] == \
        ["6", "5", "A", "T", "W", "6", "5"]
    with pytest.raises(ValueError):
        year_letter(1995)


def test_codes_in_kis_short_form() -> None:
    contract = Contract(2025, 9, date(2025, 9, 11))
    assert contract.futures_code == "101W09"  # KIS's own example
    assert contract.option_code(Kind.CALL, 340.0) == "201W09340"
    assert contract.option_code(Kind.PUT, 307.5) == "301W09307"
    assert contract.option_month == "202509"
    with pytest.raises(ValueError):
        contract.option_code(Kind.FUTURES, 340.0)


def test_front_and_next_futures_roll_on_expiry_day() -> None:
    before = futures_pair(date(2026, 12, 9))
    assert [c.futures_code for c in before] == ["101612", "101703"]
    expiry = futures_pair(date(2026, 12, 10))  # December expires today: follow March and June
    assert [c.futures_code for c in expiry] == ["101703", "101706"]
    assert expiry[0].last_trading_day == date(2027, 3, 11)
    assert [c.futures_code for c in futures_pair(date(2026, 1, 2))] == ["101603", "101606"]


def test_option_months_roll_on_expiry_day() -> None:
    assert [c.option_month for c in option_months(date(2026, 12, 7))] == ["202612", "202701"]
    assert [c.option_month for c in option_months(date(2026, 12, 10))] == ["202701", "202702"]
    assert is_expiry_day(date(2026, 12, 10)) and not is_expiry_day(date(2026, 12, 11))
    assert is_expiry_day(date(2025, 10, 2))


def test_listed_contracts_include_the_one_expiring_today() -> None:
    listed = listed_contracts(date(2026, 12, 10), QUARTER_MONTHS, 3)
    assert [c.futures_code for c in listed] == ["101612", "101703", "101706"]
    assert [c.futures_code for c in listed_contracts(date(2026, 12, 11), QUARTER_MONTHS, 1)] == ["101703"]
