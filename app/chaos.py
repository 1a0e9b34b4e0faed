"""The chaos day (`run.py --sim --chaos`): faults and one crash per actor, on a plan scaled to the run.

The plan is data (`chaos_plan`, pure): steps at real-time offsets from the moment the system started,
as fractions of the run's duration, so a 60 s run and a 10 min run see the same day compressed
differently. Faults go to the in-process simulator's switchboard (`KisSimulator.faults`); crashes are a
`Crash` told to one child through the supervisor's Directory, so the running incarnation dies and the
supervisor restarts it.

Crashes are spaced at least `min_crash_spacing` apart: the supervisor escalates (stops everything) at
more than `max_restarts` restarts within `period_seconds`, and one crash per actor must stay under that
limit. When the run is too short for every actor at that pace, the last ones are spared and the plan
says so in the log. The plan ends at `PLAN_END` of the duration, so the rest of the run lets reconnects
and gap back-fills finish before the stop.

The chaos run also shortens the WebSocket silence timeout (`CHAOS_SILENCE_TIMEOUT_SECONDS`) and makes the
simulator send PINGPONG more often, so a silent session is detected within the run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from loguru import logger

from actors.directory import Directory
from messages.system import Crash
from runtime.clock import Clock
from tools.kis_sim.faults import Faults

CHAOS_DEFAULT_DURATION = 90.0
"""Real seconds of a `--chaos` run without `--duration`: room for one crash per actor at a safe pace."""
CHAOS_SILENCE_TIMEOUT_SECONDS = 4.0
"""The WebSocket silence timeout (real seconds) during a chaos run; the default 30 s outlasts the plan."""
CHAOS_PINGPONG_INTERVAL_SECONDS = 1.0
"""The simulator's PINGPONG interval during a chaos run: well inside the shortened silence timeout."""
CRASH_START, PLAN_END = 0.05, 0.80
"""Fractions of the duration: the first crash, and the end of the plan (the rest is for settling)."""
SPACING_MARGIN_SECONDS = 0.5


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


@dataclass(frozen=True, slots=True)
class ChaosStep:
    """One thing done to the running system `at` real seconds after it started.

    `amount` is seconds for the timed faults (refuse, rate limit, silence) and a count for the frame and
    body faults; `target` is the child id of a crash.
    """

    at: float
    fault: Fault
    amount: float = 0.0
    target: str = ""

    def describe(self) -> str:
        if self.fault is Fault.CRASH:
            return f"crash {self.target}"
        if self.fault in (Fault.REFUSE_AND_DROP, Fault.RATE_LIMIT, Fault.SILENCE):
            return f"{self.fault.value} for {self.amount:g} s"
        if self.amount:
            return f"{self.fault.value} x{self.amount:g}"
        return self.fault.value


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


def min_crash_spacing(max_restarts: int, period_seconds: float) -> float:
    """The closest two crashes may be so that no `period_seconds` window holds more than `max_restarts`."""
    return period_seconds / max(1, max_restarts) + SPACING_MARGIN_SECONDS


def chaos_plan(
    duration: float, child_ids: Sequence[str], *, max_restarts: int, period_seconds: float
) -> ChaosPlan:
    """Every fault of `FAULTS_BY_FRACTION` and one crash per child, in time order (pure)."""
    steps = [ChaosStep(duration * fraction, fault, amount) for fraction, fault, amount in FAULTS_BY_FRACTION]
    first, last = duration * CRASH_START, duration * PLAN_END
    spacing = max(min_crash_spacing(max_restarts, period_seconds),
                  (last - first) / max(1, len(child_ids) - 1))
    spared: list[str] = []
    for index, child in enumerate(crash_order(child_ids)):
        at = first + index * spacing
        if at > last + 1e-9:
            spared.append(child)
            continue
        steps.append(ChaosStep(at, Fault.CRASH, target=child))
    steps.sort(key=lambda step: step.at)
    return ChaosPlan(tuple(steps), tuple(spared))


def crash_order(child_ids: Sequence[str]) -> list[str]:
    """Actors that only serve others first, the data plane while it streams, the universe last (its
    restart reloads the day's snapshot from disk instead of rebuilding it)."""
    early = ("notifier", "tokens", "scheduler", "triggers", "recorder", "slots", "scanner", "gaps")
    ordered = [child for child in early if child in child_ids]
    ordered += [child for child in child_ids if child not in ordered and child != "universe"]
    if "universe" in child_ids:
        ordered.append("universe")
    return ordered


def apply_step(step: ChaosStep, directory: Directory, faults: Faults, clock: Clock) -> bool:
    """Do one step now. False when a crash found its target not running (it is not retried)."""
    match step.fault:
        case Fault.CRASH:
            return directory.tell(step.target, Crash(at=clock.now(), reason="chaos"))
        case Fault.DROP:
            faults.drop_sessions()
        case Fault.REFUSE_AND_DROP:
            faults.refuse_reconnects(step.amount)
            faults.drop_sessions()
        case Fault.RATE_LIMIT:
            faults.rate_limit_burst(step.amount)
        case Fault.MALFORMED:
            faults.malformed_frames(int(step.amount))
        case Fault.TRUNCATED:
            faults.truncated_frames(int(step.amount))
        case Fault.SILENCE:
            faults.silence_sessions(step.amount)
        case Fault.HTML_ERRORS:
            faults.html_errors(int(step.amount))
        case Fault.EMPTY_BODIES:
            faults.empty_bodies(int(step.amount))
        case Fault.EXPIRE_TOKENS:
            faults.expire_tokens()
    return True


class ChaosRunner:
    """Runs a plan on its own thread against the running system; `stop()` (or `done`) ends it early."""

    def __init__(self, plan: ChaosPlan, directory: Directory, faults: Faults, clock: Clock) -> None:
        self.plan = plan
        self._directory = directory
        self._faults = faults
        self._clock = clock
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done: list[ChaosStep] = []
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> ChaosRunner:
        for child in self.plan.spared:
            logger.warning("chaos: the run is too short to crash {} at a safe pace; spared", child)
        logger.info("chaos: {} steps planned", len(self.plan.steps))
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def done(self) -> tuple[ChaosStep, ...]:
        with self._lock:
            return tuple(self._done)

    def _run(self) -> None:
        started = time.monotonic()
        for step in self.plan.steps:
            if self._stop.wait(max(0.0, started + step.at - time.monotonic())):
                return
            try:
                applied = apply_step(step, self._directory, self._faults, self._clock)
            except Exception as error:  # a step must never take the run down
                logger.error("chaos: {} at {:.1f} s failed: {}", step.describe(), step.at, error)
                continue
            if applied:
                logger.warning("chaos: {} at {:.1f} s", step.describe(), time.monotonic() - started)
                with self._lock:
                    self._done.append(step)
            else:
                logger.warning("chaos: {} at {:.1f} s: not running, skipped", step.describe(),
                               time.monotonic() - started)
        logger.info("chaos: plan done ({} steps)", len(self.done()))
