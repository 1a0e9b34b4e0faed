"""SystemClock under freezegun, and SimulatedClock speed, manual advance and set."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time

from runtime.clock import KST, SimulatedClock, SystemClock

START = datetime(2026, 9, 14, 8, 55, tzinfo=KST)


class Stopwatch:
    """A hand-driven stand-in for time.monotonic, injected through SimulatedClock's `monotonic` argument."""

    def __init__(self) -> None:
        self.seconds = 1000.0

    def __call__(self) -> float:
        return self.seconds


def test_system_clock_is_aware_kst_and_follows_freezegun() -> None:
    clock = SystemClock()
    with freeze_time(START) as frozen:
        now = clock.now()
        assert now == START
        assert now.tzinfo == KST and now.utcoffset() == timedelta(hours=9)
        frozen.move_to(datetime(2026, 9, 14, 0, 0, tzinfo=UTC))
        assert clock.now() == datetime(2026, 9, 14, 9, 0, tzinfo=KST)
        assert clock.now().hour == 9
    assert clock.speed == 1.0


def test_simulated_clock_runs_speed_times_faster() -> None:
    watch = Stopwatch()
    clock = SimulatedClock(START, speed=60, monotonic=watch)
    assert clock.now() == START
    watch.seconds += 1.5
    assert clock.now() == START + timedelta(seconds=90)
    assert clock.real_seconds(120) == 2.0


def test_manual_clock_moves_only_when_told() -> None:
    watch = Stopwatch()
    clock = SimulatedClock(START, speed=0, monotonic=watch)
    watch.seconds += 3600
    assert clock.now() == START
    assert clock.advance(300) == START + timedelta(minutes=5)
    assert clock.now() == START + timedelta(minutes=5)
    clock.advance(-60)
    assert clock.now() == START + timedelta(minutes=4)
    assert clock.real_seconds(10) == 0.0


def test_set_jumps_and_keeps_running_at_the_same_speed() -> None:
    watch = Stopwatch()
    clock = SimulatedClock(START, speed=10, monotonic=watch)
    watch.seconds += 5
    target = datetime(2026, 9, 14, 15, 29, tzinfo=KST)
    clock.set(target)
    assert clock.now() == target
    watch.seconds += 6
    assert clock.now() == target + timedelta(minutes=1)


def test_simulated_clock_reports_kst_whatever_zone_it_was_given() -> None:
    clock = SimulatedClock(datetime(2026, 9, 13, 23, 0, tzinfo=UTC), speed=0)
    assert clock.now() == datetime(2026, 9, 14, 8, 0, tzinfo=KST)
    assert clock.now().tzinfo == KST


def test_simulated_clock_refuses_naive_times_and_negative_speed() -> None:
    with pytest.raises(ValueError, match="aware"):
        SimulatedClock(datetime(2026, 9, 14, 9, 0))
    with pytest.raises(ValueError, match="speed"):
        SimulatedClock(START, speed=-1)
    with pytest.raises(ValueError, match="aware"):
        SimulatedClock(START, speed=0).set(datetime(2026, 9, 14, 9, 0))
