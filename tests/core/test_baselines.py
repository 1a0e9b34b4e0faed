"""Daily baselines: windows, true range with the previous close, today's bar excluded, cache records."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from core.bars import DailyBar
from core.baselines import EMPTY, baseline_from_record, daily_baseline, lookback_start

START = date(2024, 1, 2)


def bar(n: int, *, high: int, low: int, close: int, volume: int = 100, value: int = 1000) -> DailyBar:
    return DailyBar(
        symbol="005930", day=START + timedelta(days=n), open=close, high=high, low=low, close=close,
        volume=volume, value=value,
    )


def test_averages_use_the_last_twenty_bars_only():
    bars = [bar(n, high=110, low=90, close=100 + n, volume=10 * n, value=100 * n) for n in range(30)]
    baseline = daily_baseline(bars, before=START + timedelta(days=30))
    assert baseline.days == 30
    assert baseline.avg_volume_20d == pytest.approx(sum(10 * n for n in range(10, 30)) / 20)
    assert baseline.avg_turnover_20d == pytest.approx(sum(100 * n for n in range(10, 30)) / 20)
    assert baseline.ma_20d == pytest.approx(sum(100 + n for n in range(10, 30)) / 20)


def test_true_range_reaches_back_to_the_previous_close():
    # A gap up: high - low is 10, but the previous close was 50 below the low.
    bars = [bar(0, high=105, low=95, close=100), bar(1, high=160, low=150, close=155)]
    baseline = daily_baseline(bars, before=START + timedelta(days=2))
    assert baseline.atr_14d == pytest.approx((10 + 60) / 2)


def test_atr_takes_the_last_fourteen_ranges():
    bars = [bar(n, high=100 + (50 if n < 6 else 10), low=100, close=100) for n in range(20)]
    assert daily_baseline(bars, before=START + timedelta(days=20)).atr_14d == pytest.approx(10.0)


def test_bars_on_or_after_the_day_are_ignored_and_order_does_not_matter():
    bars = [bar(n, high=110, low=90, close=100, volume=100) for n in range(5)]
    today = bar(5, high=500, low=10, close=400, volume=10**9)
    baseline = daily_baseline([today, *reversed(bars)], before=START + timedelta(days=5))
    assert baseline.avg_volume_20d == 100
    assert baseline.atr_14d == 20
    assert baseline.days == 5


def test_no_history_gives_zeros():
    assert daily_baseline([], before=START) == EMPTY
    assert daily_baseline([bar(3, high=1, low=1, close=1)], before=START) == EMPTY


def test_lookback_covers_twenty_trading_days_across_a_long_holiday():
    assert (date(2024, 2, 20) - lookback_start(date(2024, 2, 20))).days >= 20 / 5 * 7 + 7


def test_cache_record_round_trip_and_bad_records():
    bars = [bar(n, high=110, low=90, close=100) for n in range(3)]
    baseline = daily_baseline(bars, START + timedelta(days=3))
    assert baseline_from_record(baseline.to_record("005930")) == ("005930", baseline)
    with pytest.raises(ValueError, match="without 'atr_14d'"):
        record = baseline.to_record("005930")
        del record["atr_14d"]
        baseline_from_record(record)
    with pytest.raises(ValueError, match="non-numeric"):
        baseline_from_record({**baseline.to_record("005930"), "ma_20d": "x"})
    with pytest.raises(ValueError, match="negative or NaN"):
        baseline_from_record({**baseline.to_record("005930"), "atr_14d": float("nan")})
