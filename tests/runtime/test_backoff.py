import random

import pytest

from runtime.backoff import DEFAULT_STEPS, Backoff


def test_delays_follow_the_steps_within_the_jitter_bounds() -> None:
    backoff = Backoff(steps=(1, 2, 5, 10, 30, 60), jitter=0.1)
    rng = random.Random(7)
    for attempt, step in enumerate((1, 2, 5, 10, 30, 60)):
        for _ in range(200):
            assert step * 0.9 <= backoff.delay(attempt, rng) <= step * 1.1


def test_last_step_repeats_once_the_schedule_runs_out() -> None:
    backoff = Backoff(steps=(1, 2, 5), jitter=0)
    assert [backoff.delay(attempt, random.Random(1)) for attempt in range(6)] == [1, 2, 5, 5, 5, 5]


def test_jitter_spreads_delays_so_clients_do_not_retry_together() -> None:
    backoff = Backoff(jitter=0.1)
    rng = random.Random(3)
    delays = {round(backoff.delay(0, rng), 6) for _ in range(50)}
    assert len(delays) > 40
    assert min(delays) < 1.0 < max(delays)


def test_same_seed_gives_same_delays() -> None:
    backoff = Backoff()
    first = [backoff.delay(n, random.Random(11)) for n in range(8)]
    second = [backoff.delay(n, random.Random(11)) for n in range(8)]
    assert first == second


def test_defaults_are_the_design_reconnect_schedule() -> None:
    backoff = Backoff()
    assert backoff.steps == DEFAULT_STEPS == (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    assert [backoff.base_delay(n) for n in range(7)] == [1, 2, 5, 10, 30, 60, 60]


def test_stable_run_resets_the_schedule() -> None:
    backoff = Backoff(reset_after=60)
    assert not backoff.is_stable(59.9)
    assert backoff.is_stable(60)


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": ()}, {"steps": (1, -2)}, {"jitter": -0.1}, {"jitter": 1.5}, {"reset_after": -1}],
)
def test_invalid_schedules_are_rejected_with_a_clear_error(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="Backoff"):
        Backoff(**kwargs)


def test_negative_attempt_is_rejected() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(-1, random.Random())
