"""Fault switches: windows measured on an injected monotonic clock, one-shot counters, clear()."""

from __future__ import annotations

import pytest

from tools.kis_sim.faults import Faults


class Ticks:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def test_windows_open_and_close_on_the_monotonic_clock() -> None:
    ticks = Ticks()
    faults = Faults(monotonic=ticks)
    faults.rate_limit_burst(2.0)
    faults.slow_rest(0.3, 1.0)
    faults.refuse_reconnects(3.0)
    faults.silence_sessions(4.0)
    assert faults.rest_rate_limited() and faults.rest_delay() == 0.3
    assert faults.ws_refusing() and faults.ws_silent()
    ticks.now += 1.0
    assert faults.rest_rate_limited() and faults.rest_delay() == 0.0
    ticks.now += 1.0
    assert not faults.rest_rate_limited() and faults.ws_refusing()
    ticks.now += 2.0
    assert not faults.ws_refusing() and not faults.ws_silent()


def test_counters_and_generations_are_consumed_once() -> None:
    faults = Faults(monotonic=Ticks())
    faults.malformed_frames(2)
    faults.truncated_frames(1)
    assert [faults.take_malformed() for _ in range(3)] == [True, True, False]
    assert [faults.take_truncated() for _ in range(2)] == [True, False]
    before_drop, before_epoch = faults.drop_generation(), faults.token_epoch()
    faults.drop_sessions()
    faults.expire_tokens()
    assert faults.drop_generation() == before_drop + 1 and faults.token_epoch() == before_epoch + 1
    faults.html_errors(2)
    faults.empty_bodies(1)
    assert [faults.take_html_error() for _ in range(3)] == [True, True, False]
    assert [faults.take_empty_body() for _ in range(2)] == [True, False]
    faults.drop_every(5.0)
    assert faults.drop_interval() == 5.0
    faults.drop_every(None)
    assert faults.drop_interval() is None


def test_clear_switches_everything_off_and_bad_values_are_refused() -> None:
    faults = Faults(monotonic=Ticks())
    faults.rate_limit_burst(10)
    faults.malformed_frames(3)
    faults.drop_every(1.0)
    faults.html_errors(1)
    faults.empty_bodies(1)
    faults.clear()
    assert not faults.rest_rate_limited() and not faults.take_malformed() and faults.drop_interval() is None
    assert not faults.take_html_error() and not faults.take_empty_body()
    with pytest.raises(ValueError, match="count must be >= 0"):
        faults.html_errors(-1)
    with pytest.raises(ValueError, match=">= 0"):
        faults.rate_limit_burst(-1)
    with pytest.raises(ValueError, match="positive interval"):
        faults.drop_every(0)
