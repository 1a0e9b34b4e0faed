"""Overflow ledger records and the overflow-rate monitor's levels."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.models import Candidate, TriggerKind
from core.overflow import OverflowMonitor, OverflowReason, OverflowRecord, OverflowRecords
from core.settings import OverflowSettings
from core.slots import Slot

KST = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 1, 20, 10, 0, tzinfo=KST)


def cand(symbol: str, score: float = 9.2) -> Candidate:
    return Candidate(symbol=symbol, score=score, market_cap=5e11, trigger=TriggerKind.TRADE_VELOCITY,
                     strength=0.85, detected_at=T0)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


# --- records -------------------------------------------------------------------------------------------


def test_a_record_from_a_displaced_slot_has_no_market_cap_but_names_its_account():
    slot = Slot("000660", T0, 4.5, trigger=TriggerKind.VOLATILITY_SPIKE, strength=0.3)
    record = OverflowRecord(minutes(1.5), slot, OverflowReason.ACCOUNT_UNAVAILABLE, "account b failed", 2.0,
                            "b")
    assert record.to_ledger() == {
        "timestamp": "2026-01-20T10:01:30.000+09:00",
        "symbol": "000660",
        "trigger_type": "VOLATILITY_SPIKE",
        "trigger_strength": 0.3,
        "priority_score": 4.5,
        "reason": "account b failed",
        "current_slot_min_score": 2.0,
        "metadata": {"reason_code": "account_unavailable", "account": "b"},
    }


def test_a_pinned_slot_without_trigger_gives_null_trigger_fields():
    slot = Slot("x", T0, 0.0, pinned=True)
    line = OverflowRecord(T0, slot, OverflowReason.PINNED_OVER_CAPACITY, "r", None).to_ledger()
    assert line["trigger_type"] is None and line["trigger_strength"] is None
    assert line["current_slot_min_score"] is None


def test_records_built_when_read_equal_records_built_at_once():
    head = [OverflowRecord(T0, cand("h"), OverflowReason.COOLDOWN, "cool", 1.0)]
    tail = [cand("t1"), cand("t2"), cand("t3")]
    lazy = OverflowRecords(head, at=T0, tail=tail, code=OverflowReason.SLOTS_FULL, reason="full",
                           current_slot_min_score=1.0)
    eager = (*head, *(OverflowRecord(T0, c, OverflowReason.SLOTS_FULL, "full", 1.0) for c in tail))
    assert len(lazy) == 4
    assert tuple(lazy) == eager and lazy == eager
    assert lazy[0] == eager[0] and lazy[2] == eager[2] and lazy[-1] == eager[-1]
    assert lazy[1:3] == eager[1:3]
    assert [record.symbol for record in lazy] == ["h", "t1", "t2", "t3"]
    with pytest.raises(IndexError):
        lazy[4]
    assert OverflowRecords() == () and len(OverflowRecords()) == 0


def test_a_lazy_tail_needs_the_allocation_time():
    with pytest.raises(ValueError, match="time"):
        OverflowRecords(tail=[cand("x")])


# --- monitor --------------------------------------------------------------------------------------------


def test_rate_is_overflowed_over_evaluated_inside_the_window():
    monitor = OverflowMonitor(OverflowSettings())
    monitor, _ = monitor.observe(T0, 100, 2)
    monitor, _ = monitor.observe(minutes(30), 100, 8)
    assert monitor.rate == pytest.approx(10 / 200)
    monitor, _ = monitor.observe(minutes(60), 100, 0)
    assert monitor.rate == pytest.approx(8 / 200), "the sample exactly one hour old has left the window"


def test_levels_are_raised_once_on_crossing_and_again_only_after_falling_below():
    monitor = OverflowMonitor(OverflowSettings())
    monitor, crossed = monitor.observe(T0, 100, 6)
    assert crossed == (0.05,)
    monitor, crossed = monitor.observe(minutes(1), 100, 6)
    assert crossed == ()
    monitor, crossed = monitor.observe(minutes(2), 100, 63)
    assert monitor.rate == pytest.approx(0.25)
    assert crossed == (0.10, 0.20)
    monitor, crossed = monitor.observe(minutes(3), 900, 0)
    assert monitor.rate == pytest.approx(75 / 1200)
    assert crossed == () and monitor.raised == frozenset({0.05})
    monitor, crossed = monitor.observe(minutes(4), 100, 70)
    assert crossed == (0.10,)


def test_exactly_at_a_level_is_not_a_crossing_and_does_not_rearm_it():
    monitor, crossed = OverflowMonitor(OverflowSettings()).observe(T0, 100, 5)
    assert crossed == ()
    monitor, crossed = monitor.observe(minutes(1), 100, 7)
    assert crossed == (0.05,)
    monitor, crossed = monitor.observe(minutes(2), 40, 0)
    assert monitor.rate == 12 / 240 == 0.05
    assert monitor.raised == frozenset({0.05})
    monitor, crossed = monitor.observe(minutes(3), 100, 6)
    assert crossed == ()


def test_prune_lets_old_samples_leave_and_rearms_levels():
    monitor, crossed = OverflowMonitor(OverflowSettings(window_seconds=600)).observe(T0, 10, 5)
    assert crossed == (0.05, 0.10, 0.20)
    monitor, crossed = monitor.prune(minutes(9))
    assert monitor.raised == frozenset({0.05, 0.10, 0.20}) and crossed == ()
    monitor, crossed = monitor.prune(minutes(10))
    assert monitor.samples == () and monitor.rate == 0.0 and monitor.raised == frozenset()


def test_custom_levels_come_from_settings():
    monitor, crossed = OverflowMonitor(OverflowSettings(alert_levels=(0.5,))).observe(T0, 10, 4)
    assert crossed == ()
    _, crossed = monitor.observe(minutes(1), 10, 8)
    assert crossed == (0.5,)


@pytest.mark.parametrize(("evaluated", "overflowed"), [(-1, 0), (3, -1), (3, 4)])
def test_impossible_counts_are_refused(evaluated, overflowed):
    with pytest.raises(ValueError, match="overflow counts"):
        OverflowMonitor(OverflowSettings()).observe(T0, evaluated, overflowed)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 900)), max_size=25))
def test_each_level_is_raised_only_while_the_rate_is_above_it(steps):
    monitor = OverflowMonitor(OverflowSettings())
    now = T0
    for evaluated, overflowed, gap in steps:
        now += timedelta(seconds=gap)
        monitor, crossed = monitor.observe(now, evaluated, min(overflowed, evaluated))
        for level in crossed:
            assert monitor.rate > level
        assert all(monitor.rate >= level for level in monitor.raised)
        assert all(level in monitor.raised for level in monitor.settings.alert_levels if monitor.rate > level)
