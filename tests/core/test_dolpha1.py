"""dolpha1: VWAP, Wilder's ATR, bands and signals against values computed by hand."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from core.dolpha1 import Bar, Level, Params, Side, session_vwap, signals, true_ranges, wilder_atr
from runtime.clock import KST

START = datetime(2026, 12, 7, 9, 0, tzinfo=KST)
# (high, low, close, volume)
ROWS = [(10, 8, 9, 100), (11, 9, 10, 100), (16, 10, 16, 100), (24, 22, 24, 10), (5, 4, 4, 2000)]
BARS = [Bar(START + timedelta(minutes=n), *row) for n, row in enumerate(ROWS)]
PARAMS = Params(atr_period=2, monitor_k=1.0, trade_k=2.0)


def test_vwap_is_cumulative_typical_price_by_volume() -> None:
    # typical prices 9, 10, 14, 70/3, 13/3
    assert session_vwap(BARS) == pytest.approx([9.0, 9.5, 11.0, 3533.3333333 / 310, 12200 / 2310])
    zero_first = [Bar(START, 10, 8, 9, 0), *BARS[1:2]]
    assert session_vwap(zero_first) == [None, pytest.approx(10.0)]


def test_true_range_and_wilder_atr() -> None:
    assert true_ranges(BARS) == [2, 2, 6, 8, 20]
    # first ATR: mean of the first two ranges; then (prev * 1 + TR) / 2
    assert wilder_atr(BARS, 2) == [None, 2.0, 4.0, 6.0, 13.0]
    assert wilder_atr(BARS, 3) == [None, None, pytest.approx(10 / 3), pytest.approx((20 / 3 + 8) / 3),
                                   pytest.approx(((20 / 3 + 8) / 3 * 2 + 20) / 3)]


def test_signals_monitor_trade_and_changes() -> None:
    result = signals("005930", BARS, PARAMS)
    assert [(s.level, s.side, s.changed) for s in result] == [
        (Level.NONE, Side.NONE, False),  # no ATR yet
        (Level.NONE, Side.NONE, False),  # |10 - 9.5| <= 1 x 2
        (Level.MONITOR, Side.SHORT, True),  # |16 - 11| = 5 > 1 x 4, <= 2 x 4
        (Level.TRADE, Side.SHORT, True),  # |24 - 11.398| = 12.6 > 2 x 6
        (Level.NONE, Side.NONE, True),  # |4 - 5.281| <= 13
    ]
    third = result[2]
    assert (third.vwap, third.atr, third.monitor_upper, third.monitor_lower, third.trade_upper,
            third.trade_lower) == (11.0, 4.0, 15.0, 7.0, 19.0, 3.0)
    assert result[0].monitor_upper is None and result[0].symbol == "005930"


def test_a_close_far_below_vwap_is_a_long_trade() -> None:
    falling = [*BARS[:3], Bar(START + timedelta(minutes=3), 2, 1, 1, 10)]
    last = signals("005930", falling, PARAMS)[-1]
    # vwap (3300 + 10 * 4/3) / 310 = 10.688; TR max(1, |2-16|, |1-16|) = 15, ATR (4 + 15) / 2 = 9.5
    assert last.atr == 9.5
    assert (last.level, last.side) == (Level.MONITOR, Side.LONG)  # 9.69 > 9.5, <= 19


def test_params_are_checked() -> None:
    with pytest.raises(ValueError):
        Params(atr_period=0)
    with pytest.raises(ValueError):
        Params(monitor_k=2.0, trade_k=1.0)
