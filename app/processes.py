"""The child processes of `run.py --role all`, supervised by the actors' rules (DESIGN.md section 4).

Children start in order and stop in reverse; one that exits while it should run is started again after a
backoff step; more than `max_restarts` exits within `period_seconds` make the supervisor give up
(everything is stopped and the run exits 1). Each child's stdout lines go to a handler of its spec (the
simulator's READY and CLOCK lines, the control process's DASHBOARD line). On Linux a child gets SIGKILL
when the thread that started it ends: a killed parent takes its children along, as one process would, and
none outlives it (so the watcher thread, which starts the restarted ones, is also the one that stops them).
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from loguru import logger

from runtime.backoff import Backoff

STOP_TIMEOUT_SECONDS = 30.0
RESTART_BACKOFF = Backoff(steps=(0.2, 0.5, 1.0, 2.0, 5.0), jitter=0.1, reset_after=30.0)
EXIT_GAVE_UP = 1


@dataclass(frozen=True)
class ProcessSpec:
    """`argv` is built at every start (a restart may pass different flags); `ready` (if given) is waited
    for after a start, up to `ready_timeout` seconds; `on_line` gets each stdout line."""

    name: str
    argv: Callable[[], list[str]]
    on_line: Callable[[str], None] = lambda _line: None
    ready: threading.Event | None = None
    ready_timeout: float = 60.0
    pid_file: Path | None = None
    env: dict[str, str] | None = None
    """The child's environment (None: this process's)."""


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[str] | None = None
    started_at: float = 0.0
    restarts: int = 0
    attempt: int = 0
    due_at: float | None = None
    exits: deque[float] = field(default_factory=deque)


class ChildStartFailed(RuntimeError):
    """A child did not get ready at its first start; `code` is its exit code when it ended."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code


class ProcessSupervisor:
    """`start()` the children, `stop()` them; `stopped` is set (and `exit_code` is 1) when it gave up."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        max_restarts: int = 5,
        period_seconds: float = 30.0,
        backoff: Backoff = RESTART_BACKOFF,
    ) -> None:
        self._children = [_Child(spec) for spec in specs]
        self.max_restarts = max_restarts
        self.period_seconds = period_seconds
        self.backoff = backoff
        self.stopped = threading.Event()
        self.exit_code = 0
        self.reason = ""
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._rng = random.Random()
        self._watcher = threading.Thread(target=self._watch, name="process-supervisor", daemon=True)

    def start(self) -> ProcessSupervisor:
        """Start every child in order (waiting for each one's `ready`), then watch them."""
        for child in self._children:
            self._spawn(child)
            ready = child.spec.ready
            if ready is None:
                continue
            deadline = time.monotonic() + child.spec.ready_timeout
            while not ready.wait(0.2):
                process = child.process
                if process is not None and process.poll() is not None:
                    self.stop()
                    ended = describe_exit(process.returncode)
                    text = f"{child.spec.name} ended at its start ({ended})"
                    raise ChildStartFailed(text, process.returncode)
                if time.monotonic() >= deadline:
                    self.stop()
                    wait = child.spec.ready_timeout
                    raise ChildStartFailed(f"{child.spec.name} did not get ready within {wait:g} s")
        self._watcher.start()
        return self

    def pid(self, name: str) -> int | None:
        """The running pid of child `name` (None between two incarnations)."""
        for child in self._children:
            if child.spec.name == name and child.process is not None and child.process.poll() is None:
                return child.process.pid
        return None

    def stop_early(self, name: str) -> None:
        """During a stop: SIGTERM child `name` now, before its turn (its stop is then only waited for)."""
        if not self._stopping.is_set():
            return
        for child in self._children:
            process = child.process
            if child.spec.name == name and process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)

    def restart_counts(self) -> dict[str, int]:
        return {child.spec.name: child.restarts for child in self._children}

    def stop(self) -> int:
        """Stop the children in reverse order: SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS."""
        self._stopping.set()
        if self._watcher.is_alive() and threading.current_thread() is not self._watcher:
            self._watcher.join(STOP_TIMEOUT_SECONDS * len(self._children) + 5.0)
        self._terminate_all()
        return self.exit_code

    def _terminate_all(self) -> None:
        with self._lock:
            for child in reversed(self._children):
                self._terminate(child)

    # --- the watcher ---------------------------------------------------------------------------

    def _watch(self) -> None:
        try:
            self._watch_until_stop()
        finally:
            self._terminate_all()

    def _watch_until_stop(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for child in self._children:
                if self._stopping.is_set():
                    return
                process = child.process
                if child.due_at is not None:
                    if now >= child.due_at:
                        child.due_at = None
                        child.restarts += 1
                        self._spawn(child)
                    continue
                if process is None or process.poll() is None:
                    continue
                self._exited(child, process.returncode, now)

    def _exited(self, child: _Child, code: int, now: float) -> None:
        name = child.spec.name
        pid = child.process.pid if child.process is not None else 0
        logger.error("process {} (pid {}) exited with {}; restarting it", name, pid, describe_exit(code))
        child.process = None
        child.exits.append(now)
        while child.exits and now - child.exits[0] > self.period_seconds:
            child.exits.popleft()
        if len(child.exits) > self.max_restarts:
            self.reason = f"{name} exited {len(child.exits)} times within {self.period_seconds:g} s"
            logger.error("giving up: {}", self.reason)
            self.exit_code = EXIT_GAVE_UP
            self._stopping.set()
            self.stopped.set()
            return
        if self.backoff.is_stable(now - child.started_at):
            child.attempt = 0
        child.due_at = now + self.backoff.delay(child.attempt, self._rng)
        child.attempt += 1

    # --- one child -----------------------------------------------------------------------------

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        if spec.ready is not None:
            spec.ready.clear()
        process = subprocess.Popen(
            spec.argv(),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
            env=spec.env,
            start_new_session=True,  # a Ctrl-C reaches only this process, which stops them in order
            preexec_fn=_die_with_parent_thread if _PRCTL is not None else None,
        )
        child.process = process
        child.started_at = time.monotonic()
        if spec.pid_file is not None:
            spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
            spec.pid_file.write_text(f"{process.pid}\n", encoding="utf-8")
        assert process.stdout is not None
        threading.Thread(
            target=_read_lines, args=(process.stdout, spec.on_line), name=f"{spec.name}-stdout", daemon=True
        ).start()
        logger.debug("process {} started (pid {})", spec.name, process.pid)

    def _terminate(self, child: _Child) -> None:
        process = child.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                logger.error("process {} ignored SIGTERM: killed", child.spec.name)
                process.kill()
                process.wait()
        if child.spec.pid_file is not None:
            child.spec.pid_file.unlink(missing_ok=True)


def describe_exit(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"signal {signal.Signals(-code).name}"
    return f"code {code}"


def _read_lines(stream: IO[str], on_line: Callable[[str], None]) -> None:
    with contextlib.suppress(ValueError, OSError):
        for line in stream:
            on_line(line.rstrip("\n"))


def _die_with_parent_thread() -> None:
    """Run in the child before exec: SIGKILL when the thread that started it ends (Linux only)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
