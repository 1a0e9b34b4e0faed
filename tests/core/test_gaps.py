"""Gap detection from tick times, expected gaps at reconnect, and the recovery policy by duration."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from core.gaps import Gap, GapDetector, RecoveryAction, mark_expected_gaps, recovery_action
from core.settings import GapSettings, RecoverySettings

KST = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 1, 20, 9, 40, tzinfo=KST)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def feed(detector: GapDetector, symbol: str, times: list[float]) -> list[Gap]:
    return [gap for t in times if (gap := detector.observe(symbol, at(t))) is not None]


def steady(start: float, step: float, count: int) -> list[float]:
    return [start + step * k for k in range(count)]


# --- detection ---------------------------------------------------------------------------------------


def test_with_factor_one_a_two_hertz_symbol_is_flagged_just_above_interval_plus_tolerance():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    assert feed(detector, "A", steady(0, 0.5, 10)) == []
    assert detector.threshold_seconds("A") == pytest.approx(0.7)
    assert detector.observe("A", at(4.5 + 0.7)) is None
    gap = detector.observe("A", at(5.2 + 0.701))
    assert gap is not None
    assert (gap.symbol, gap.start, gap.end, gap.expected, gap.reason) == (
        "A", at(5.2), at(5.901), False, "unexpected_gap")
    assert gap.duration_seconds == pytest.approx(0.701)


def test_a_busy_symbol_with_the_default_factor_is_flagged_past_ten_times_its_median():
    detector = GapDetector(GapSettings())
    feed(detector, "A", steady(0, 0.5, 20))
    assert detector.threshold_seconds("A") == pytest.approx(5.0)
    assert detector.observe("A", at(9.5 + 5.0)) is None
    gap = detector.observe("A", at(14.5 + 5.01))
    assert gap is not None and gap.start == at(14.5)


def test_a_quiet_symbol_does_not_flood_the_detector():
    detector = GapDetector(GapSettings())
    assert feed(detector, "Q", steady(0, 3.0, 200)) == []
    assert detector.threshold_seconds("Q") == pytest.approx(30.0)
    gap = detector.observe("Q", at(597 + 31))
    assert gap is not None and gap.duration_seconds == pytest.approx(31)


def test_irregular_but_normal_trading_is_not_flagged():
    detector = GapDetector(GapSettings())
    pattern = [0.2, 0.4, 1.8, 0.3, 2.5, 0.6, 0.1, 3.0]
    times, t = [], 0.0
    for k in range(300):
        t += pattern[k % len(pattern)]
        times.append(t)
    assert feed(detector, "I", times) == []


def test_a_symbol_that_turns_quiet_stops_being_flagged_after_half_its_history():
    detector = GapDetector(GapSettings())
    feed(detector, "S", steady(0, 0.5, 40))
    flagged = feed(detector, "S", steady(19.5 + 20, 20, 30))
    assert 1 <= len(flagged) <= GapDetector.HISTORY // 2 + 1
    assert feed(detector, "S", steady(19.5 + 20 * 31, 20, 20)) == []


def test_nothing_is_flagged_while_a_new_symbol_is_learning_its_cadence():
    detector = GapDetector(GapSettings())
    assert feed(detector, "N", [0, 30, 90]) == []
    assert detector.threshold_seconds("N") is None
    assert feed(detector, "N", [200]) == []
    assert detector.threshold_seconds("N") is not None


def test_ticks_out_of_order_are_ignored_for_timing():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    feed(detector, "O", steady(0, 0.5, 10))
    assert detector.observe("O", at(1.0)) is None
    assert detector.observe("O", at(5.0)) is None


def test_symbols_are_timed_independently():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    feed(detector, "A", steady(0, 0.5, 10))
    feed(detector, "B", steady(0, 0.5, 10))
    assert detector.observe("A", at(4.5 + 0.5)) is None
    assert detector.observe("B", at(4.5 + 3.0)) is not None


def test_mark_expected_announces_the_outage_and_the_first_tick_after_it_is_not_flagged_again():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    feed(detector, "A", steady(0, 0.5, 10))
    feed(detector, "B", steady(0, 0.5, 10))
    gaps = detector.mark_expected(["A", "B", "A"], at(5), at(9))
    assert [(g.symbol, g.start, g.end, g.expected, g.reason) for g in gaps] == [
        ("A", at(5), at(9), True, "websocket_reconnect"),
        ("B", at(5), at(9), True, "websocket_reconnect"),
    ]
    assert detector.observe("A", at(9.4)) is None
    assert detector.observe("B", at(9.8)) is not None, "silence after the reconnect still counts"


def test_forget_drops_a_symbol_so_it_relearns():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    feed(detector, "A", steady(0, 0.5, 10))
    detector.forget(["A", "never-seen"])
    assert detector.threshold_seconds("A") is None
    assert detector.observe("A", at(100)) is None


def test_a_symbol_dropped_and_taken_back_gets_no_gap_over_the_time_it_was_not_subscribed():
    """Dropped at 09:43:09, taken back at 09:51:05: its first tick after is no silence; the others keep
    their timing."""
    detector = GapDetector(GapSettings())
    dropped, back = 189.0, 665.0  # seconds after 09:40:00
    feed(detector, "A", steady(0, 1.0, 190))
    feed(detector, "B", steady(0, 1.0, 190))
    assert detector.retarget(["A", "B"], ["B"]) == ("A",)
    feed(detector, "A", [dropped + 0.5])  # a tick in flight at the unsubscription
    feed(detector, "B", steady(dropped + 1, 1.0, 400))
    assert detector.retarget(["B"], ["B", "A"]) == ("A",)
    assert feed(detector, "A", steady(back, 1.0, 20)) == []
    assert detector.threshold_seconds("B") is not None, "an unchanged symbol keeps its cadence"
    assert feed(detector, "B", [dropped + 400 + 30]) != []


def test_retarget_forgets_what_left_and_what_joined_and_nothing_else():
    detector = GapDetector(GapSettings(quiet_symbol_factor=1.0))
    for symbol in ("A", "B", "C"):
        feed(detector, symbol, steady(0, 0.5, 10))
    assert detector.retarget(("A", "B"), ("B", "C")) == ("A", "C")
    assert detector.threshold_seconds("A") is None and detector.threshold_seconds("C") is None
    assert detector.threshold_seconds("B") is not None
    assert detector.retarget(("B",), ("B",)) == ()


def test_mark_expected_gaps_takes_a_reason_and_lists_each_symbol_once():
    gaps = mark_expected_gaps(("X", "Y", "X"), at(0), at(3), reason="token_refresh")
    assert [g.symbol for g in gaps] == ["X", "Y"]
    assert all(g.reason == "token_refresh" and g.expected and g.duration_seconds == 3 for g in gaps)


# --- model ------------------------------------------------------------------------------------------------


def test_a_gap_cannot_end_before_it_starts_or_use_naive_times():
    with pytest.raises(ValidationError, match="ends"):
        Gap(symbol="A", start=at(5), end=at(4), expected=False, reason="unexpected_gap")
    with pytest.raises(ValidationError):
        Gap(symbol="A", start=datetime(2026, 1, 20, 9, 0), end=at(4), expected=False, reason="x")


def test_a_gap_dumps_its_duration():
    gap = Gap(symbol="A", start=at(0), end=at(4), expected=True, reason="websocket_reconnect")
    assert gap.model_dump()["duration_seconds"] == 4.0


# --- policy -----------------------------------------------------------------------------------------------


def gap_of(seconds: float) -> Gap:
    return Gap(symbol="A", start=at(0), end=at(seconds), expected=False, reason="unexpected_gap")


@pytest.mark.parametrize(
    ("seconds", "action"),
    [
        (0.0, RecoveryAction.IMMEDIATE),
        (4.999, RecoveryAction.IMMEDIATE),
        (5.0, RecoveryAction.QUEUED),
        (30.0, RecoveryAction.QUEUED),
        (60.0, RecoveryAction.QUEUED),
        (60.001, RecoveryAction.MARKER_ONLY),
        (1800.0, RecoveryAction.MARKER_ONLY),
    ],
)
def test_recovery_policy_by_duration(seconds, action):
    assert recovery_action(gap_of(seconds), RecoverySettings()) is action


def test_recovery_policy_limits_come_from_settings():
    settings = RecoverySettings(immediate_below_seconds=2.0, queued_up_to_seconds=10.0)
    assert recovery_action(gap_of(2.0), settings) is RecoveryAction.QUEUED
    assert recovery_action(gap_of(10.5), settings) is RecoveryAction.MARKER_ONLY
