"""The chaos day (`run.py --sim --chaos`): process kills, simulator faults and one crash per actor, on a
plan scaled to the run.

The plan is data (`chaos_plan`, pure): steps at real-time offsets from the moment every process was up, as
fractions of the run's duration, so a 60 s run and a 10 min run see the same day compressed differently.
The parent process (`app.parent`) runs the kills (SIGKILL of the control process, the stream process and
the NATS server) and the faults (posted to the simulator process's REST port) with a `ChaosRunner`; each
role process runs the crashes of its own actors with a `CrashRunner`, from a plan file the parent writes
(`write_role_plan`) once every process is up and again before each restart, with only the crashes not
done yet. A role says each crash it did in a `CHAOS_LINE` on its stdout, which the parent collects.

The kills come first, each once every process is up (two failures at once would test something else); a
process's crashes follow its kill, so the restart counts its last incarnation reports include them.
Crashes of one process are spaced at least `min_crash_spacing` apart: its supervisor escalates (stops
everything) at more than `max_restarts` restarts within `period_seconds`. When the run is too short for
every actor at that pace, the last ones are spared and the plan says so. The plan ends at `PLAN_END` of the
duration, so the rest of the run lets reconnects and gap back-fills finish before the stop.

The chaos run also shortens the WebSocket silence timeout (`CHAOS_SILENCE_TIMEOUT_SECONDS`) and makes the
simulator send PINGPONG more often, so a silent session is detected within the run.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from loguru import logger

from actors.directory import Directory
from actors.system import role_of
from messages.system import Crash
from runtime.clock import Clock

CHAOS_DEFAULT_DURATION = 90.0
"""Real seconds of a `--chaos` run without `--duration`: room for one crash per actor at a safe pace."""
CHAOS_SILENCE_TIMEOUT_SECONDS = 4.0
"""The WebSocket silence timeout (real seconds) during a chaos run; the default 30 s outlasts the plan."""
CHAOS_PINGPONG_INTERVAL_SECONDS = 1.0
"""The simulator's PINGPONG interval during a chaos run: well inside the shortened silence timeout."""
CRASH_START, CRASHES_AFTER_KILL, PLAN_END = 0.05, 0.10, 0.80
"""Fractions of the duration: the first crash of a process nobody kills, how long after its kill a
process's first crash comes, and the end of the plan (the rest is for settling)."""
KILLS_BY_FRACTION: tuple[tuple[str, float], ...] = (("control", 0.04), ("stream", 0.09), ("nats", 0.14))
"""The processes killed (SIGKILL), by fraction of the duration, before the faults begin."""
SPACING_MARGIN_SECONDS = 0.5
KILL_READY_TIMEOUT_SECONDS = 60.0
"""How long the plan's start, or a kill, waits for every process to be up before it gives up."""
CHAOS_LINE = "observer: chaos: "
"""A role process's stdout line for each step it ran (`CHAOS_LINE + step.describe()`)."""


class Fault(StrEnum):
    DROP = "drop_sessions"
    REFUSE_AND_DROP = "refuse_reconnects"
    RATE_LIMIT = "rate_limit_burst"
    MALFORMED = "malformed_frames"
    TRUNCATED = "truncated_frames"
    SILENCE = "silence_sessions"
    HTML_ERRORS = "html_errors"
    EMPTY_BODIES = "empty_bodies"
    EXPIRE_TOKENS = "expire_tokens"
    CRASH = "crash"
    KILL = "kill"


SIM_SPEC: Mapping[Fault, str] = {
    Fault.DROP: "drop",
    Fault.REFUSE_AND_DROP: "refuse={amount},drop",
    Fault.RATE_LIMIT: "rate_limit={amount}",
    Fault.MALFORMED: "malformed={amount}",
    Fault.TRUNCATED: "truncated={amount}",
    Fault.SILENCE: "silence={amount}",
    Fault.HTML_ERRORS: "html={amount}",
    Fault.EMPTY_BODIES: "empty={amount}",
    Fault.EXPIRE_TOKENS: "expire_tokens",
}
"""Each simulator fault in the simulator's `--faults` language."""


@dataclass(frozen=True, slots=True)
class ChaosStep:
    """One thing done to the running system `at` real seconds after every process was up.

    `amount` is seconds for the timed faults (refuse, rate limit, silence) and a count for the frame and
    body faults; `target` is the child id of a crash or the process of a kill.
    """

    at: float
    fault: Fault
    amount: float = 0.0
    target: str = ""

    def describe(self) -> str:
        if self.fault in (Fault.CRASH, Fault.KILL):
            return f"{self.fault.value} {self.target}"
        if self.fault in (Fault.REFUSE_AND_DROP, Fault.RATE_LIMIT, Fault.SILENCE):
            return f"{self.fault.value} for {self.amount:g} s"
        if self.amount:
            return f"{self.fault.value} x{self.amount:g}"
        return self.fault.value

    def sim_spec(self) -> str:
        """This fault as the simulator arms it (`--faults` syntax); a crash or kill has none."""
        amount = f"{self.amount:g}" if self.fault in (Fault.REFUSE_AND_DROP, Fault.RATE_LIMIT,
                                                       Fault.SILENCE) else f"{int(self.amount)}"
        return SIM_SPEC[self.fault].format(amount=amount)

    def runs_in(self) -> str:
        """The process that runs this step: a crash's role process, else the parent ("parent")."""
        return role_of(self.target) if self.fault is Fault.CRASH else "parent"


FAULTS_BY_FRACTION: tuple[tuple[float, Fault, float], ...] = (
    (0.22, Fault.DROP, 0),
    (0.30, Fault.REFUSE_AND_DROP, 3.0),
    (0.37, Fault.RATE_LIMIT, 3.0),
    (0.43, Fault.MALFORMED, 3),
    (0.47, Fault.TRUNCATED, 2),
    (0.52, Fault.SILENCE, CHAOS_SILENCE_TIMEOUT_SECONDS + 2.0),
    (0.62, Fault.HTML_ERRORS, 2),
    (0.64, Fault.EMPTY_BODIES, 2),
    (0.70, Fault.EXPIRE_TOKENS, 0),
)
"""The faults of the day, by fraction of the duration: drops and reconnects first, token expiry late (a
token is issued at most once a minute, so an early expiry would leave REST waiting most of the run)."""


@dataclass(frozen=True, slots=True)
class ChaosPlan:
    steps: tuple[ChaosStep, ...]
    spared: tuple[str, ...]
    """Children the run was too short to crash at a safe pace."""
    crash_spacing: float
    """The least time between two crashes of one process's actors."""

    def of(self, process: str) -> tuple[ChaosStep, ...]:
        """The steps `process` runs ("parent", "control" or "stream")."""
        return tuple(step for step in self.steps if step.runs_in() == process)


def min_crash_spacing(max_restarts: int, period_seconds: float) -> float:
    """The closest two crashes may be so that no `period_seconds` window holds more than `max_restarts`."""
    return period_seconds / max(1, max_restarts) + SPACING_MARGIN_SECONDS


def chaos_plan(
    duration: float,
    child_ids: Sequence[str],
    *,
    max_restarts: int,
    period_seconds: float,
    kills: Sequence[str] = tuple(process for process, _ in KILLS_BY_FRACTION),
) -> ChaosPlan:
    """The kills of `kills`, every fault of `FAULTS_BY_FRACTION` and one crash per child, in time order
    (pure). Each process's crashes begin `CRASHES_AFTER_KILL` after its kill and keep its own pace."""
    kill_at = {process: fraction for process, fraction in KILLS_BY_FRACTION if process in kills}
    steps = [ChaosStep(duration * at, Fault.KILL, target=process) for process, at in kill_at.items()]
    steps += [ChaosStep(duration * fraction, fault, amount) for fraction, fault, amount in FAULTS_BY_FRACTION]
    spacing = min_crash_spacing(max_restarts, period_seconds)
    spared: list[str] = []
    for role in sorted({role_of(child) for child in child_ids}):
        children = crash_order([child for child in child_ids if role_of(child) == role])
        start = kill_at[role] + CRASHES_AFTER_KILL if role in kill_at else CRASH_START
        first, last = duration * start, duration * PLAN_END
        pace = max(spacing, (last - first) / max(1, len(children) - 1))
        for index, child in enumerate(children):
            at = first + index * pace
            if at > last + 1e-9:
                spared.append(child)
                continue
            steps.append(ChaosStep(at, Fault.CRASH, target=child))
    steps.sort(key=lambda step: step.at)
    return ChaosPlan(tuple(steps), tuple(spared), spacing)


def crash_order(child_ids: Sequence[str]) -> list[str]:
    """Actors that only serve others first, the data plane while it streams, the universe last (its
    restart reloads the day's snapshot from disk instead of rebuilding it)."""
    early = ("notifier", "tokens", "scheduler", "triggers", "recorder", "slots", "scanner", "gaps")
    ordered = [child for child in early if child in child_ids]
    ordered += [child for child in child_ids if child not in ordered and child != "universe"]
    if "universe" in child_ids:
        ordered.append("universe")
    return ordered


# --- the parent's side -----------------------------------------------------------------------------------


def write_role_plan(path: Path, steps: Sequence[ChaosStep], started: float, spacing: float) -> None:
    """The crashes `steps` of one role process, at wall-clock (epoch) times from `started`; written whole
    or not at all (a role may read it at any moment)."""
    plan = {"spacing": spacing,
            "crashes": [{"at": started + step.at, "target": step.target} for step in steps]}
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(plan), encoding="utf-8")
    os.replace(partial, path)


class ChaosRunner:
    """The parent's runner of a plan: its kills and its faults, each on a thread of their own (a kill that
    waits for every process to be up delays no fault), and the record of every step done (the roles'
    crashes through `on_line`). A role's plan file is written once its kill is done, so none of its crashes
    happens in the incarnation the kill ends."""

    def __init__(
        self,
        plan: ChaosPlan,
        *,
        kill: Callable[[str], bool],
        arm: Callable[[str], None],
        ready: Callable[[], bool],
        plan_file: Callable[[str], Path],
    ) -> None:
        self.plan = plan
        self._kill = kill
        self._arm = arm
        self._ready = ready
        self._plan_file = plan_file
        self._started: float | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done: list[ChaosStep] = []
        parent = self.plan.of("parent")
        self._threads = [
            threading.Thread(target=self._run, args=(steps,), name=f"chaos-{name}", daemon=True)
            for name, steps in (("kills", [step for step in parent if step.fault is Fault.KILL]),
                                ("faults", [step for step in parent if step.fault is not Fault.KILL]))
        ]

    def start(self, stop: threading.Event | None = None) -> bool:
        """Wait until every process is up, then start the plan's clock; False (nothing started) when `stop`
        is set or KILL_READY_TIMEOUT_SECONDS pass first."""
        for child in self.plan.spared:
            logger.warning("chaos: the run is too short to crash {} at a safe pace; spared", child)
        if not self._wait_until_ready(stop):
            logger.error("chaos: the processes were not all up within {:g} s; no chaos",
                         KILL_READY_TIMEOUT_SECONDS)
            return False
        logger.info("chaos: {} steps planned", len(self.plan.steps))
        with self._lock:
            self._started = time.time()
        for role in ("control", "stream"):
            self.write_plan(role)
        for thread in self._threads:
            thread.start()
        return True

    def write_plan(self, role: str) -> None:
        """(Re)write `role`'s plan file with its crashes not done yet; before the start, and while the kill
        of `role` is still to come, none is written (the role waits for it)."""
        with self._lock:
            started, done = self._started, set(self._done)
        killed_first = any(step.fault is Fault.KILL and step.target == role and step not in done
                           for step in self.plan.steps)
        if started is None or killed_first:
            self._plan_file(role).unlink(missing_ok=True)
            return
        remaining = [step for step in self.plan.of(role) if step not in done]
        write_role_plan(self._plan_file(role), remaining, started, self.plan.crash_spacing)

    def on_line(self, line: str) -> None:
        """A role process's stdout line: a crash it did is recorded as done."""
        if not line.startswith(CHAOS_LINE):
            return
        said = line.removeprefix(CHAOS_LINE)
        for step in self.plan.steps:
            if step.fault is Fault.CRASH and step.describe() == said:
                self._record(step)
                return

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive() and threading.current_thread() is not thread:
                thread.join(5.0)

    def done(self) -> tuple[ChaosStep, ...]:
        """The steps done, in plan order."""
        with self._lock:
            done = set(self._done)
        return tuple(step for step in self.plan.steps if step in done)

    def missed(self) -> tuple[ChaosStep, ...]:
        """The planned steps not done (yet)."""
        done = set(self.done())
        return tuple(step for step in self.plan.steps if step not in done)

    def _record(self, step: ChaosStep) -> None:
        with self._lock:
            if step not in self._done:
                self._done.append(step)
        logger.warning("chaos: {} ({:.1f} s into the plan)", step.describe(), self._elapsed())

    def _elapsed(self) -> float:
        return time.time() - (self._started or time.time())

    def _run(self, steps: Sequence[ChaosStep]) -> None:
        for step in steps:
            if self._stop.wait(max(0.0, step.at - self._elapsed())):
                return
            if step.fault is Fault.KILL and not self._wait_until_ready():
                logger.error("chaos: {}: the processes were not all up; skipped", step.describe())
                continue
            try:
                applied = self._kill(step.target) if step.fault is Fault.KILL else self._apply(step)
            except Exception as error:  # a step must never take the run down
                logger.error("chaos: {} failed: {}", step.describe(), error)
                continue
            if not applied:
                logger.warning("chaos: {}: not running, skipped", step.describe())
                continue
            self._record(step)
            if step.fault is Fault.KILL and step.target in ("control", "stream"):
                self.write_plan(step.target)  # its next incarnation runs its crashes

    def _apply(self, step: ChaosStep) -> bool:
        self._arm(step.sim_spec())
        return True

    def _wait_until_ready(self, stop: threading.Event | None = None) -> bool:
        """Until every process is up; False when the run stops or KILL_READY_TIMEOUT_SECONDS pass first."""
        deadline = time.monotonic() + KILL_READY_TIMEOUT_SECONDS
        while not self._ready():
            if time.monotonic() >= deadline or self._stop.wait(0.2) or (stop is not None and stop.is_set()):
                return False
        return not self._stop.is_set()


# --- a role process's side -------------------------------------------------------------------------------


class CrashRunner:
    """In a role process: the crashes of its plan file (waited for until the parent writes it), each at its
    time but no sooner than the plan's spacing after the previous one, told to the actor through the
    Directory so its supervisor restarts it; each done is said on stdout (`CHAOS_LINE`)."""

    def __init__(self, plan_file: Path, directory: Directory, clock: Clock) -> None:
        self._plan_file = plan_file
        self._directory = directory
        self._clock = clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> CrashRunner:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def _read_plan(self) -> dict[str, object] | None:
        while not self._stop.is_set():
            try:
                return dict(json.loads(self._plan_file.read_text(encoding="utf-8")))
            except (OSError, ValueError):
                self._stop.wait(0.2)
        return None

    def _run(self) -> None:
        plan = self._read_plan()
        if plan is None:
            return
        spacing = float(plan["spacing"])  # type: ignore[arg-type]
        previous = -math.inf
        for crash in plan["crashes"]:  # type: ignore[attr-defined]
            step = ChaosStep(0.0, Fault.CRASH, target=str(crash["target"]))
            due = max(float(crash["at"]), previous + spacing)
            if self._stop.wait(max(0.0, due - time.time())):
                return
            if self._directory.tell(step.target, Crash(at=self._clock.now(), reason="chaos")):
                previous = time.time()
                print(CHAOS_LINE + step.describe(), flush=True)
            else:
                logger.warning("chaos: {}: not running, skipped", step.describe())
