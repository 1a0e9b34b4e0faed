"""OTP-style supervision for pykka: child specs, ordered start, reverse stop, restarts with limits.

- Children start in spec order (each one's `on_start` finishes before the next starts) and stop in
  reverse order, politely, each within its `shutdown_timeout`; a child that does not stop in time is
  logged and abandoned (its thread is a daemon).
- A child is restarted per its spec: PERMANENT always, TRANSIENT only after a failure, TEMPORARY
  never. A spec with a `Backoff` waits (timer thread, the supervisor never blocks) before restarting.
- More than `max_restarts` restarts within `period_seconds` stops every child and the supervisor with
  a non-zero exit code, so that systemd restarts the whole process.
- Peers reach children through the `Directory`, which always holds the current incarnation.

    supervisor = Supervisor(specs, clock=clock)
    supervisor.start()
    ...
    exit_code = supervisor.wait()  # or supervisor.stop() on SIGTERM
"""

from __future__ import annotations

import contextlib
import enum
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any

import pykka
from loguru import logger

from actors.base import ObserverActor, describe_exception
from actors.directory import Directory
from messages.system import ChildExited, ChildFailed, Ping, RestartDue, StartChildren, StopChildren
from runtime.backoff import Backoff
from runtime.clock import Clock

__all__ = [
    "EXIT_ESCALATED",
    "ChildSpec",
    "Directory",
    "Restart",
    "Supervisor",
    "SupervisorActor",
    "SupervisorStatus",
]

EXIT_ESCALATED = 1
MAX_RESTARTS, PERIOD_SECONDS = 5, 30.0
"""The default restart limit: one restart more than `MAX_RESTARTS` within `PERIOD_SECONDS` escalates."""


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child and what to do when it ends.

    Give either `factory(directory) -> ActorRef` or `actor_class` (started as
    `actor_class.start(name=id, directory=directory, **kwargs)`). A factory must name the actor `id`.
    """

    id: str
    factory: Callable[[Directory], pykka.ActorRef[Any]] | None = field(default=None, compare=False)
    actor_class: type[pykka.Actor] | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float = 5.0
    start_timeout: float = 10.0
    backoff: Backoff | None = None
    before_stop: Callable[[], None] | None = field(default=None, compare=False)
    """Called just before an orderly stop of the child (e.g. to let mail from another process arrive)."""

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("a child spec needs an id")
        if (self.factory is None) == (self.actor_class is None):
            raise ValueError(f"child spec {self.id!r}: give exactly one of factory or actor_class")
        if self.shutdown_timeout <= 0 or self.start_timeout <= 0:
            raise ValueError(f"child spec {self.id!r}: timeouts must be > 0")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))

    def start(self, directory: Directory) -> pykka.ActorRef[Any]:
        if self.factory is not None:
            return self.factory(directory)
        assert self.actor_class is not None
        return self.actor_class.start(name=self.id, directory=directory, **self.kwargs)


class SupervisorStatus:
    """What the supervisor did, readable from any thread; `wait_until` is the barrier for tests."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._restarts: dict[str, int] = {}
        self._ends: dict[str, int] = {}
        self._last_backoff: dict[str, float] = {}
        self.stopped = threading.Event()
        self.exit_code: int | None = None
        self.reason = ""

    def restart_counts(self) -> dict[str, int]:
        with self._changed:
            return dict(self._restarts)

    def restarts(self, child_id: str) -> int:
        with self._changed:
            return self._restarts.get(child_id, 0)

    def ends(self, child_id: str) -> int:
        """How many incarnations of the child have ended (failed or exited) and been dealt with."""
        with self._changed:
            return self._ends.get(child_id, 0)

    def last_backoff_seconds(self, child_id: str) -> float | None:
        with self._changed:
            return self._last_backoff.get(child_id)

    def wait_until(self, predicate: Callable[[SupervisorStatus], bool], timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    def _count_restart(self, child_id: str) -> None:
        with self._changed:
            self._restarts[child_id] = self._restarts.get(child_id, 0) + 1
            self._changed.notify_all()

    def _count_end(self, child_id: str) -> None:
        with self._changed:
            self._ends[child_id] = self._ends.get(child_id, 0) + 1
            self._changed.notify_all()

    def _note_backoff(self, child_id: str, seconds: float) -> None:
        with self._changed:
            self._last_backoff[child_id] = seconds
            self._changed.notify_all()

    def _finish(self, exit_code: int, reason: str) -> None:
        with self._changed:
            if self.exit_code is None:
                self.exit_code = exit_code
                self.reason = reason
            self.stopped.set()
            self._changed.notify_all()


@dataclass(eq=False)
class _Child:
    spec: ChildSpec
    ref: pykka.ActorRef[Any] | None = None
    started_at: float = 0.0
    attempt: int = 0
    generation: int = 0
    timer: threading.Timer | None = None


class SupervisorActor(ObserverActor):
    """The actor behind `Supervisor`; all decisions happen in its thread, one message at a time."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        directory: Directory,
        status: SupervisorStatus,
        *,
        max_restarts: int,
        period_seconds: float,
        rng: random.Random,
        monotonic: Callable[[], float],
        name: str = "supervisor",
    ) -> None:
        super().__init__(name)
        self._children = [_Child(spec) for spec in specs]
        self._by_id = {child.spec.id: child for child in self._children}
        self._children_directory = directory
        self._status = status
        self._max_restarts = max_restarts
        self._period = period_seconds
        self._rng = rng
        self._monotonic = monotonic
        self._restart_times: deque[float] = deque()
        self._stopping = False

    def on_receive(self, message: Any) -> Any:
        match message:
            case ChildFailed():
                self._on_report(message.actor_urn, failed=True, why=message.error)
            case ChildExited():
                self._on_report(message.actor_urn, failed=False, why="stopped")
            case RestartDue():
                self._on_restart_due(message)
            case StartChildren():
                self._start_all()
            case StopChildren():
                self._shut_down(0, f"stop {message.reason}")
            case _:
                return super().on_receive(message)
        return None

    def on_stop(self) -> None:
        """Stopped from outside (`ActorRegistry.stop_all`, a SystemExit): take the children along."""
        if not self._stopping:
            self._stop_children()
        self._status._finish(EXIT_ESCALATED, "supervisor stopped from outside")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        reason = f"supervisor failed: {describe_exception(exception_value)}"
        logger.error("{}; stopping every child", reason)
        self._stop_children()
        self._status._finish(EXIT_ESCALATED, reason)

    # --- starting ------------------------------------------------------------------------------

    def _start_all(self) -> None:
        for child in self._children:
            if self._stopping:
                return
            if self._start(child):
                self._await_ready(child)
        logger.info("started {} children: {}", len(self._children), ", ".join(self._by_id))

    def _start(self, child: _Child) -> bool:
        spec = child.spec
        try:
            ref = spec.start(self._children_directory)
        except Exception as error:
            logger.opt(exception=error).error("child {} could not be created", spec.id)
            self._on_down(child, failed=True, why=f"start failed: {describe_exception(error)}")
            return False
        child.ref = ref
        child.started_at = self._monotonic()
        self._children_directory.register(spec.id, ref)
        return True

    def _await_ready(self, child: _Child) -> None:
        """Start order means the previous child's on_start has finished: ask it a Ping."""
        ref = child.ref
        if ref is None:
            return
        try:
            ref.ask(Ping(at=self._children_directory.clock.now()), timeout=child.spec.start_timeout)
        except pykka.Timeout:
            logger.warning("child {} not ready after {} s; starting the next one", child.spec.id,
                           child.spec.start_timeout)
        except pykka.ActorDeadError:
            logger.debug("child {} ended while starting; its report follows", child.spec.id)

    # --- ends and restarts ---------------------------------------------------------------------

    def _on_report(self, actor_urn: str, *, failed: bool, why: str) -> None:
        child = next((c for c in self._children if c.ref is not None and c.ref.actor_urn == actor_urn), None)
        if child is None:
            return  # an incarnation the supervisor already let go (stopped or replaced)
        self._on_down(child, failed=failed, why=why)

    def _on_down(self, child: _Child, *, failed: bool, why: str) -> None:
        try:
            self._handle_end(child, failed=failed, why=why)
        finally:
            self._status._count_end(child.spec.id)

    def _handle_end(self, child: _Child, *, failed: bool, why: str) -> None:
        spec = child.spec
        child.ref = None
        child.generation += 1
        self._children_directory.unregister(spec.id)
        if self._stopping:
            return
        restart = spec.restart is Restart.PERMANENT or (spec.restart is Restart.TRANSIENT and failed)
        ended = f"failed ({why})" if failed else "exited normally"
        if not restart:
            logger.warning("child {} {}; {} child, not restarted", spec.id, ended, spec.restart.value)
            self._children_directory.release(spec.id)
            return
        now = self._monotonic()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= now - self._period:
            self._restart_times.popleft()
        if len(self._restart_times) > self._max_restarts:
            reason = (
                f"child {spec.id} {ended}: restart {len(self._restart_times)} within {self._period:g} s "
                f"is over the limit of {self._max_restarts}; stopping everything"
            )
            logger.error(reason)
            self._shut_down(EXIT_ESCALATED, reason)
            return
        if spec.backoff is None:
            logger.warning("child {} {}; restarting", spec.id, ended)
            self._restart(child)
            return
        if spec.backoff.is_stable(now - child.started_at):
            child.attempt = 0
        delay = spec.backoff.delay(child.attempt, self._rng)
        child.attempt += 1
        logger.warning("child {} {}; restart {} in {:.2f} s", spec.id, ended, child.attempt, delay)
        self._status._note_backoff(spec.id, delay)
        child.timer = threading.Timer(delay, self._tell_restart_due, args=(spec.id, child.generation))
        child.timer.daemon = True
        child.timer.name = f"{self.name}-restart-{spec.id}"
        child.timer.start()

    def _tell_restart_due(self, child_id: str, generation: int) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(
                RestartDue(at=self._children_directory.clock.now(), child_id=child_id, generation=generation)
            )

    def _on_restart_due(self, message: RestartDue) -> None:
        child = self._by_id.get(message.child_id)
        if child is None or self._stopping or child.ref is not None or child.generation != message.generation:
            return
        child.timer = None
        self._restart(child)

    def _restart(self, child: _Child) -> None:
        if self._start(child):
            self._status._count_restart(child.spec.id)

    # --- stopping ------------------------------------------------------------------------------

    def _shut_down(self, exit_code: int, reason: str) -> None:
        self._stop_children()
        self._status._finish(exit_code, reason)
        self.stop()

    def _stop_children(self) -> None:
        """Every child, last started first, each given its shutdown timeout."""
        self._stopping = True
        self._children_directory.stopping()
        for child in reversed(self._children):
            if child.timer is not None:
                child.timer.cancel()
                child.timer = None
            if child.spec.before_stop is not None and child.ref is not None:
                child.spec.before_stop()
            ref, child.ref = child.ref, None
            self._children_directory.unregister(child.spec.id)
            self._children_directory.release(child.spec.id)
            if ref is None or not ref.is_alive():
                continue
            try:
                ref.stop(block=True, timeout=child.spec.shutdown_timeout)
            except pykka.Timeout:
                logger.error("child {} did not stop within {} s; abandoned", child.spec.id,
                             child.spec.shutdown_timeout)


class Supervisor:
    """Owns the directory, the supervisor actor and its status; the object `run.py` holds."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        clock: Clock,
        max_restarts: int = MAX_RESTARTS,
        period_seconds: float = PERIOD_SECONDS,
        rng: random.Random | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "supervisor",
    ) -> None:
        ids = [spec.id for spec in specs]
        duplicates = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
        if duplicates:
            raise ValueError(f"duplicate child ids: {', '.join(duplicates)}")
        if max_restarts < 0 or period_seconds <= 0:
            raise ValueError("max_restarts must be >= 0 and period_seconds > 0")
        self.specs = tuple(specs)
        self.clock = clock
        self.directory = Directory(clock)
        self.status = SupervisorStatus()
        self._actor_args = {
            "max_restarts": max_restarts,
            "period_seconds": period_seconds,
            "rng": rng or random.Random(),
            "monotonic": monotonic,
            "name": name,
        }
        self._ref: pykka.ActorRef[SupervisorActor] | None = None

    def start(self, timeout: float | None = None) -> None:
        """Start the supervisor and every child in order; returns once all have started."""
        if self._ref is not None:
            raise RuntimeError("supervisor already started")
        self._ref = SupervisorActor.start(self.specs, self.directory, self.status, **self._actor_args)
        self.directory.attach_supervisor(self._ref)
        if timeout is None:
            timeout = sum(spec.start_timeout for spec in self.specs) + 5.0
        self._ref.ask(StartChildren(at=self.clock.now()), timeout=timeout)

    def stop(self, reason: str = "requested", timeout: float | None = None) -> int:
        """Stop every child in reverse order and the supervisor; the exit code (0 unless it had escalated)."""
        if timeout is None:
            timeout = sum(spec.shutdown_timeout for spec in self.specs) + 5.0
        if self._ref is not None and not self.status.stopped.is_set():
            with contextlib.suppress(pykka.ActorDeadError):
                self._ref.ask(StopChildren(at=self.clock.now(), reason=reason), timeout=timeout)
        if self._ref is None:
            self.status._finish(0, f"stop {reason} before start")
        self.status.stopped.wait(timeout)
        return self.exit_code if self.exit_code is not None else EXIT_ESCALATED

    def wait(self, timeout: float | None = None) -> int | None:
        """Block until the supervisor has stopped (by `stop` or by escalation); its exit code."""
        self.status.stopped.wait(timeout)
        return self.exit_code

    @property
    def stopped(self) -> threading.Event:
        return self.status.stopped

    @property
    def exit_code(self) -> int | None:
        return self.status.exit_code

    def restart_counts(self) -> dict[str, int]:
        return self.status.restart_counts()

    @property
    def restart_limit(self) -> tuple[int, float]:
        """(max_restarts, period_seconds): one restart more within the period stops everything."""
        return self._actor_args["max_restarts"], self._actor_args["period_seconds"]
