from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from core.closeness import (
    PRIORITY_MARGIN,
    closeness,
    distances,
    hybrid_ranking,
    intraday_volatility_pct,
    rank_by_closeness,
)
from core.models import Candidate, TriggerKind
from core.settings import SignalSettings
from core.signals import SignalInputs, SignalKind

KST = ZoneInfo("Asia/Seoul")
NOON = datetime(2026, 1, 20, 12, 15, tzinfo=KST)  # half the session
ON = SignalSettings(enabled=True, rank_by_closeness=True)


def inputs(symbol: str = "005930", **kw) -> SignalInputs:
    base = dict(symbol=symbol, price=9_500.0, at=NOON, prev_close=10_000.0)
    return SignalInputs(**{**base, **kw})


def test_each_condition_gives_its_distance_and_zero_once_it_holds():
    judged = distances(inputs(moving_average=10_000.0, return_pct=-1.0, turnover=750.0,
                              avg_turnover_20d=1_000.0), ON)
    assert judged[SignalKind.DISPARITY] == pytest.approx(0.03)  # -5 % vs -8 %
    assert judged[SignalKind.RETURN_DROP] == pytest.approx(0.02)  # -1 % vs -3 %
    assert judged[SignalKind.TURNOVER_SURGE_FALL] == pytest.approx(0.5)  # 1.5x of 3x, already falling
    held = distances(inputs(price=9_000.0, moving_average=10_000.0, return_pct=-4.0), ON)
    assert held == {SignalKind.DISPARITY: 0.0, SignalKind.RETURN_DROP: 0.0}
    rising = distances(inputs(price=10_100.0, turnover=1_500.0, avg_turnover_20d=1_000.0), ON)
    assert rising[SignalKind.TURNOVER_SURGE_FALL] == pytest.approx(0.01)  # the ratio holds, the fall not
    assert distances(inputs(), ON) == {}


def test_score_is_the_seeds_formula_with_the_nearest_condition():
    near = closeness(inputs(moving_average=10_000.0, return_pct=-1.0, high=10_100.0, low=9_400.0,
                            turnover=1e10), ON)
    assert near.nearest is SignalKind.RETURN_DROP and near.distance == pytest.approx(0.02)
    assert intraday_volatility_pct(near.inputs) == pytest.approx(7.0)
    assert near.score == pytest.approx(1.0 / (0.02 + 0.005) + 7.0 + 0.5 * 10)
    assert near.strength == pytest.approx(0.005 / 0.025)
    unknown = closeness(inputs(), ON)
    assert (unknown.nearest, unknown.distance, unknown.score, unknown.strength) == (None, None, 0.0, 0.0)


def test_nearer_ranks_higher_and_a_held_condition_ranks_first():
    snapshots = [
        inputs("000001", moving_average=10_000.0),  # disparity -5 %: 3 points away
        inputs("000002", price=9_300.0, moving_average=10_000.0),  # 1 point away
        inputs("000003", price=8_000.0, moving_average=10_000.0),  # holds
        inputs("000004", price=10_000.0, moving_average=10_000.0),  # 8 points away
    ]
    assert [near.symbol for near in rank_by_closeness(snapshots, ON)] == ["000003", "000002", "000001",
                                                                          "000004"]


def test_volatility_and_turnover_break_ties_between_equally_near_symbols():
    calm = inputs("000001", moving_average=10_000.0, high=9_600.0, low=9_500.0, turnover=1e9)
    wild = inputs("000002", moving_average=10_000.0, high=10_200.0, low=9_400.0, turnover=1e9)
    busy = inputs("000003", moving_average=10_000.0, high=9_600.0, low=9_500.0, turnover=1e11)
    assert [near.symbol for near in rank_by_closeness([calm, wild, busy], ON)] == ["000002", "000003",
                                                                                 "000001"]


def test_the_manual_tier_stays_first_and_beats_any_near_symbol_by_the_margin():
    pick = Candidate(symbol="111111", score=10.0, trigger=TriggerKind.MANUAL, strength=1.0, detected_at=NOON)
    snapshots = [inputs("000003", price=8_000.0, moving_average=10_000.0, turnover=1e12),
                 inputs("111111", price=8_000.0, moving_average=10_000.0),
                 inputs("000002", moving_average=10_000.0)]
    near = rank_by_closeness(snapshots, ON)
    ranked = hybrid_ranking([pick], near, {"000003": 5e12})
    assert [c.symbol for c in ranked] == ["111111", "000003", "000002"]  # the pick is listed once
    assert ranked[0].trigger is TriggerKind.MANUAL
    assert ranked[0].score >= near[0].score * PRIORITY_MARGIN
    assert ranked[1].trigger is TriggerKind.NEAR_SIGNAL and ranked[1].market_cap == 5e12
    assert ranked[1].strength == pytest.approx(1.0) and ranked[2].market_cap == 0.0
    assert hybrid_ranking([], [], {}) == ()


def test_the_horizon_keeps_only_symbols_near_a_threshold():
    near = rank_by_closeness([inputs("000001", moving_average=10_000.0),  # 3 points away
                              inputs("000002", price=10_000.0, moving_average=10_000.0),  # 8 points
                              inputs("000003", turnover=1e12)], ON)  # nothing judged
    assert [c.symbol for c in hybrid_ranking([], near, {}, horizon=0.05)] == ["000001"]
    assert [c.symbol for c in hybrid_ranking([], near, {}, horizon=None)] == ["000001", "000002", "000003"]
