from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.settings import SignalSettings
from core.signals import (
    HighWindow,
    ReturnWindow,
    SignalInputs,
    SignalKind,
    check_breakout,
    check_disparity,
    check_return_drop,
    check_turnover_fall,
    evaluate_signals,
)

KST = ZoneInfo("Asia/Seoul")
NOON = datetime(2026, 1, 20, 12, 15, tzinfo=KST)  # half the session
ON = SignalSettings(enabled=True)


def inputs(**kw) -> SignalInputs:
    base = dict(symbol="005930", price=9_200.0, at=NOON, prev_close=10_000.0)
    return SignalInputs(**{**base, **kw})


def test_disparity_fires_at_and_below_threshold():
    hit = check_disparity(inputs(price=9_200.0, moving_average=10_000.0), ON)
    assert hit is not None
    assert (hit.signal, hit.threshold, hit.at) == (SignalKind.DISPARITY, -0.08, NOON)
    assert hit.value == pytest.approx(-0.08)
    assert check_disparity(inputs(price=9_201.0, moving_average=10_000.0), ON) is None
    assert check_disparity(inputs(price=9_000.0, moving_average=10_000.0), ON).value == pytest.approx(-0.1)
    assert check_disparity(inputs(moving_average=None), ON) is None
    assert check_disparity(inputs(moving_average=0.0), ON) is None


def test_return_drop_fires_at_and_below_threshold():
    assert check_return_drop(inputs(return_pct=-3.0), ON).value == -3.0
    assert check_return_drop(inputs(return_pct=-2.99), ON) is None
    assert check_return_drop(inputs(return_pct=None), ON) is None
    loose = SignalSettings(enabled=True, return_threshold_pct=-1.0)
    assert check_return_drop(inputs(return_pct=-1.5), loose).threshold == -1.0


def test_turnover_surge_needs_the_ratio_and_a_fall():
    surge = dict(turnover=1_500.0, avg_turnover_20d=1_000.0)  # 1500 vs 500 expected by noon: 3x
    hit = check_turnover_fall(inputs(price=9_999.0, **surge), ON)
    assert hit is not None and hit.signal is SignalKind.TURNOVER_SURGE_FALL
    assert hit.value == pytest.approx(3.0) and hit.threshold == 3.0
    assert check_turnover_fall(inputs(price=10_000.0, **surge), ON) is None  # flat is no fall
    assert check_turnover_fall(inputs(price=9_999.0, turnover=1_499.0, avg_turnover_20d=1_000.0), ON) is None
    assert check_turnover_fall(inputs(price=9_999.0, turnover=1_500.0, avg_turnover_20d=0.0), ON) is None
    assert check_turnover_fall(inputs(price=9_999.0, prev_close=0.0, **surge), ON) is None


def test_evaluate_signals_collects_all_hits_and_respects_enabled():
    everything = inputs(
        price=9_000.0, moving_average=10_000.0, return_pct=-4.0, turnover=5_000.0, avg_turnover_20d=1_000.0
    )
    assert [h.signal for h in evaluate_signals(everything, ON)] == [
        SignalKind.DISPARITY,
        SignalKind.RETURN_DROP,
        SignalKind.TURNOVER_SURGE_FALL,
    ]
    assert evaluate_signals(everything, SignalSettings()) == ()
    assert evaluate_signals(inputs(price=10_500.0, moving_average=10_000.0, return_pct=1.0), ON) == ()


def test_return_window_needs_the_full_span():
    window = ReturnWindow(5)
    assert window.add(0.0, 100.0) is None
    assert window.add(299.0, 97.0) is None
    assert window.add(300.0, 97.0) == pytest.approx(-3.0)  # reference: the price at t=0
    assert window.add(400.0, 98.0) == pytest.approx(-2.0)  # reference: last price at or before t=100 (t=0)
    assert window.add(600.0, 97.0) == pytest.approx(0.0)  # reference: t=300
    assert window.add(500.0, 97.0) == pytest.approx(0.0)  # a late trade counts at the latest time


@given(st.lists(st.tuples(st.integers(0, 1200).map(float), st.integers(1, 200).map(float)), max_size=60))
def test_return_window_matches_brute_force(trades):
    trades.sort(key=lambda x: x[0])
    window = ReturnWindow(5)
    for i, (t, price) in enumerate(trades):
        earlier = [p for u, p in trades[: i + 1] if u <= t - 300.0]
        expected = None if not earlier else (price / earlier[-1] - 1) * 100
        got = window.add(t, price)
        assert (got is None) == (expected is None)
        if expected is not None:
            assert got == pytest.approx(expected)


MODE_B = SignalSettings(enabled=True, breakout_enabled=True, breakout_minutes=20, breakout_pct=0.5)


def test_breakout_needs_mode_b_and_the_margin_above_the_prior_high():
    hit = check_breakout(inputs(price=10_050.0, prior_high=10_000.0), MODE_B)
    assert hit is not None and hit.signal is SignalKind.BREAKOUT
    assert (hit.threshold, hit.value) == (0.5, pytest.approx(0.5))
    assert check_breakout(inputs(price=10_049.0, prior_high=10_000.0), MODE_B) is None
    assert check_breakout(inputs(price=10_050.0, prior_high=None), MODE_B) is None
    assert check_breakout(inputs(price=10_050.0, prior_high=10_000.0), ON) is None  # Mode A: off
    hits = evaluate_signals(inputs(price=10_100.0, prior_high=10_000.0), MODE_B)
    assert [h.signal for h in hits] == [SignalKind.BREAKOUT]


def test_high_window_gives_the_prior_high_once_the_span_is_covered():
    window = HighWindow(1)
    assert window.add(0.0, 100.0) is None
    assert window.add(30.0, 105.0) is None
    assert window.add(60.0, 101.0) == 105.0  # [0, 60) covered
    assert window.add(95.0, 102.0) == 101.0  # 105 at t=30 left the window [35, 95)
    assert window.add(90.0, 99.0) == 102.0  # a late trade counts at the latest time


@given(st.lists(st.tuples(st.integers(0, 600).map(float), st.integers(1, 200).map(float)), max_size=60))
def test_high_window_matches_brute_force(trades):
    trades.sort(key=lambda x: x[0])
    window = HighWindow(2)
    for i, (t, price) in enumerate(trades):
        before = [p for u, p in trades[:i] if t - 120.0 <= u]
        covered = trades[0][0] <= t - 120.0
        expected = max(before) if covered and before else None
        assert window.add(t, price) == expected
