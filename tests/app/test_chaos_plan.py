"""app.chaos: the plan (pure) and what each step does to a real fault switchboard and Directory."""

from datetime import datetime
from itertools import pairwise

import pytest

from actors.directory import Directory
from app.chaos import (
    FAULTS_BY_FRACTION,
    PLAN_END,
    ChaosStep,
    Fault,
    apply_step,
    chaos_plan,
    min_crash_spacing,
)
from runtime.clock import KST, SimulatedClock
from tools.kis_sim.faults import Faults

CHILDREN = ("recorder", "notifier", "tokens", "universe", "scanner", "triggers", "slots", "gaps", "ws.sim1",
            "scheduler")
LIMIT = {"max_restarts": 5, "period_seconds": 30.0}


def crashes(steps: tuple[ChaosStep, ...]) -> list[ChaosStep]:
    return [step for step in steps if step.fault is Fault.CRASH]


@pytest.mark.parametrize("duration", [80.0, 90.0, 600.0])
def test_every_actor_crashes_once_under_the_restart_limit(duration: float) -> None:
    plan = chaos_plan(duration, CHILDREN, **LIMIT)
    crashed = crashes(plan.steps)
    assert sorted(step.target for step in crashed) == sorted(CHILDREN)
    assert plan.spared == ()
    times = [step.at for step in crashed]
    assert all(b - a >= min_crash_spacing(**LIMIT) - 1e-9 for a, b in pairwise(times))
    for start in times:  # the supervisor's window: restarts within the last period, this one included
        assert sum(1 for t in times if start - LIMIT["period_seconds"] < t <= start) <= LIMIT["max_restarts"]
    assert [step.at for step in plan.steps] == sorted(step.at for step in plan.steps)
    assert max(step.at for step in plan.steps) <= duration * PLAN_END + 1e-9
    faults = {fault for _, fault, _ in FAULTS_BY_FRACTION}
    assert {step.fault for step in plan.steps} == faults | {Fault.CRASH}


def test_a_short_run_spares_the_last_actors_instead_of_crashing_too_fast() -> None:
    plan = chaos_plan(40.0, CHILDREN, **LIMIT)
    crashed = [step.target for step in crashes(plan.steps)]
    assert plan.spared and len(crashed) + len(plan.spared) == len(CHILDREN)
    assert set(crashed).isdisjoint(plan.spared)
    assert plan.spared[-1] == "universe"  # the universe goes last


def test_steps_flip_the_simulator_faults() -> None:
    faults = Faults()
    directory = Directory(SimulatedClock(datetime(2026, 11, 20, 9, 30, tzinfo=KST), speed=0))
    clock = directory.clock
    generation = faults.drop_generation()
    assert apply_step(ChaosStep(0, Fault.REFUSE_AND_DROP, 5.0), directory, faults, clock)
    assert faults.ws_refusing() and faults.drop_generation() == generation + 1
    apply_step(ChaosStep(0, Fault.MALFORMED, 2), directory, faults, clock)
    assert [faults.take_malformed() for _ in range(3)] == [True, True, False]
    apply_step(ChaosStep(0, Fault.SILENCE, 5.0), directory, faults, clock)
    assert faults.ws_silent()
    epoch = faults.token_epoch()
    apply_step(ChaosStep(0, Fault.EXPIRE_TOKENS), directory, faults, clock)
    assert faults.token_epoch() == epoch + 1
    apply_step(ChaosStep(0, Fault.RATE_LIMIT, 5.0), directory, faults, clock)
    assert faults.rest_rate_limited()


def test_a_crash_of_a_child_that_is_not_running_is_reported_not_raised() -> None:
    directory = Directory(SimulatedClock(datetime(2026, 11, 20, 9, 30, tzinfo=KST), speed=0))
    step = ChaosStep(0, Fault.CRASH, target="recorder")
    assert apply_step(step, directory, Faults(), directory.clock) is False
    assert directory.dead_letter_count == 1
    assert step.describe() == "crash recorder"
