"""app.chaos: the plan (pure), the parent's runner of kills and faults, and a role's runner of crashes."""

import json
import threading
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from actors.directory import Directory
from actors.system import child_ids_for, role_of
from app.chaos import (
    CHAOS_LINE,
    FAULTS_BY_FRACTION,
    PLAN_END,
    ChaosRunner,
    ChaosStep,
    CrashRunner,
    Fault,
    chaos_plan,
    min_crash_spacing,
    write_role_plan,
)
from app.system import ObserverSystem
from config.loader import load_settings
from runtime.clock import KST, SimulatedClock
from tests.actors.control_plane_support import start_recorders
from tools.kis_sim.faults import Faults, parse_faults

CHILDREN = child_ids_for(["sim1"])
LIMIT = {"max_restarts": 5, "period_seconds": 30.0}
KILLS = ("control", "stream", "nats")


def crashes(steps: tuple[ChaosStep, ...], role: str | None = None) -> list[ChaosStep]:
    return [step for step in steps if step.fault is Fault.CRASH and role in (None, role_of(step.target))]


@pytest.mark.parametrize("duration", [80.0, 90.0, 600.0])
def test_every_process_is_killed_and_every_actor_crashes_once_within_limits(duration: float) -> None:
    plan = chaos_plan(duration, CHILDREN, **LIMIT)
    assert sorted(step.target for step in crashes(plan.steps)) == sorted(CHILDREN)
    assert plan.spared == ()
    kills = {step.target: step.at for step in plan.steps if step.fault is Fault.KILL}
    assert set(kills) == set(KILLS)
    for role in ("control", "stream"):
        times = [step.at for step in crashes(plan.steps, role)]
        assert min(times) > kills[role]  # after its kill: its last incarnation counts every restart
        assert all(b - a >= min_crash_spacing(**LIMIT) - 1e-9 for a, b in pairwise(times))
        period, most = LIMIT["period_seconds"], LIMIT["max_restarts"]
        for start in times:  # its supervisor's window: restarts within the last period, this one included
            assert sum(1 for t in times if start - period < t <= start) <= most
    assert [step.at for step in plan.steps] == sorted(step.at for step in plan.steps)
    assert max(step.at for step in plan.steps) <= duration * PLAN_END + 1e-9
    faults = {fault for _, fault, _ in FAULTS_BY_FRACTION}
    assert {step.fault for step in plan.steps} == faults | {Fault.CRASH, Fault.KILL}
    assert {step.runs_in() for step in plan.steps} == {"parent", "control", "stream"}


def test_a_short_run_spares_the_last_actors_and_an_outside_nats_is_not_killed() -> None:
    plan = chaos_plan(40.0, CHILDREN, **LIMIT, kills=("control", "stream"))
    crashed = [step.target for step in crashes(plan.steps)]
    assert plan.spared and len(crashed) + len(plan.spared) == len(CHILDREN)
    assert set(crashed).isdisjoint(plan.spared)
    assert plan.spared[-1] == "universe"  # the universe goes last
    assert {step.target for step in plan.steps if step.fault is Fault.KILL} == {"control", "stream"}


def test_the_parent_knows_the_tree_without_building_it(tmp_path: Path) -> None:
    settings = load_settings(None, overrides={"data_dir": str(tmp_path), "log_dir": str(tmp_path / "logs")})
    clock = SimulatedClock(datetime(2024, 11, 20, 9, 30, tzinfo=KST), speed=0)
    system = ObserverSystem(settings, clock)
    try:
        ids = child_ids_for([account.name for account in settings.accounts])
        assert ids == system.child_ids == system.all_child_ids  # role "all" builds the whole tree
    finally:
        system.vault.close()


def test_each_fault_step_speaks_the_simulators_fault_language() -> None:
    faults = Faults()
    generation, epoch = faults.drop_generation(), faults.token_epoch()
    for step in chaos_plan(90.0, CHILDREN, **LIMIT).steps:
        if step.runs_in() == "parent" and step.fault is not Fault.KILL:
            for action in parse_faults(step.sim_spec()):
                action(faults)
    assert faults.ws_refusing() and faults.ws_silent() and faults.rest_rate_limited()
    assert faults.drop_generation() == generation + 2 and faults.token_epoch() == epoch + 1
    assert [faults.take_malformed() for _ in range(4)] == [True, True, True, False]
    assert ChaosStep(0, Fault.REFUSE_AND_DROP, 3.0).sim_spec() == "refuse=3,drop"


def wait_for(condition, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_the_parent_kills_once_every_process_is_up_and_only_then_hands_the_role_its_crashes(
    tmp_path: Path,
) -> None:
    plan = chaos_plan(4.0, ("recorder", "ws.sim1", "notifier"), max_restarts=100, period_seconds=0.01,
                      kills=("stream",))
    up = threading.Event()
    killed: list[str] = []
    armed: list[str] = []

    def kill(name: str) -> bool:
        assert not (tmp_path / "stream.chaos.json").exists()  # no crash may hit the incarnation killed
        killed.append(name)
        return True

    runner = ChaosRunner(plan, kill=kill, arm=armed.append, ready=up.is_set,
                         plan_file=lambda role: tmp_path / f"{role}.chaos.json")
    runner.write_plan("stream")  # the first start: nothing yet
    assert not (tmp_path / "stream.chaos.json").exists()
    starting = threading.Thread(target=runner.start)
    starting.start()
    time.sleep(0.3)
    assert killed == [] and not (tmp_path / "control.chaos.json").exists()  # waits for every process
    up.set()
    starting.join(5)
    try:
        control = json.loads((tmp_path / "control.chaos.json").read_text(encoding="utf-8"))
        assert [crash["target"] for crash in control["crashes"]] == ["notifier"]  # not killed: at once
        assert wait_for(lambda: killed == ["stream"])
        assert wait_for(lambda: (tmp_path / "stream.chaos.json").exists())
        stream = json.loads((tmp_path / "stream.chaos.json").read_text(encoding="utf-8"))
        assert [crash["target"] for crash in stream["crashes"]] == ["recorder", "ws.sim1"]
        runner.on_line(CHAOS_LINE + "crash recorder")  # the stream process did one
        runner.write_plan("stream")  # what its next incarnation gets
        stream = json.loads((tmp_path / "stream.chaos.json").read_text(encoding="utf-8"))
        assert [crash["target"] for crash in stream["crashes"]] == ["ws.sim1"]
        assert wait_for(lambda: len(armed) == len(FAULTS_BY_FRACTION))
        assert armed[0] == "drop" and "expire_tokens" in armed
    finally:
        runner.stop()
    done = {step.describe() for step in runner.done()}
    assert {"kill stream", "crash recorder", "drop_sessions"} <= done
    assert {step.describe() for step in runner.missed()} == {"crash ws.sim1", "crash notifier"}


def test_a_role_crashes_its_actors_from_the_plan_file_and_says_so(tmp_path: Path, capsys) -> None:
    clock = SimulatedClock(datetime(2024, 11, 20, 9, 30, tzinfo=KST), speed=0)
    directory = Directory(clock)
    start_recorders(directory, "recorder")
    plan_file = tmp_path / "stream.chaos.json"
    runner = CrashRunner(plan_file, directory, clock).start()
    try:
        time.sleep(0.3)  # the plan is not written yet: nothing happens
        recorder = directory.ref("recorder")
        assert recorder is not None and recorder.is_alive()
        steps = [ChaosStep(0.0, Fault.CRASH, target="ws.sim1"),
                 ChaosStep(0.1, Fault.CRASH, target="recorder")]
        write_role_plan(plan_file, steps, time.time(), spacing=0.05)
        assert wait_for(lambda: not recorder.is_alive())
        assert wait_for(lambda: "crash recorder" in capsys.readouterr().out)
    finally:
        runner.stop()
    assert directory.dead_letter_count == 1  # ws.sim1 does not run here: skipped, not said
