"""The process supervisor with real child processes: a killed child comes back, one that keeps dying makes
it give up with exit 1, a child that ends before it is ready fails the start, and the stop ends them all."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from app.processes import EXIT_GAVE_UP, ChildStartFailed, ProcessSpec, ProcessSupervisor
from runtime.backoff import Backoff

QUICK = Backoff(steps=(0.05,), jitter=0.0, reset_after=30.0)
SLEEPER = [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"]


def wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def test_a_killed_child_is_started_again_and_the_stop_ends_it(tmp_path: Path) -> None:
    ready = threading.Event()
    spec = ProcessSpec("sleeper", lambda: SLEEPER, on_line=lambda line: line == "up" and ready.set(),
                       ready=ready, pid_file=tmp_path / "sleeper.pid")
    supervisor = ProcessSupervisor([spec], backoff=QUICK).start()
    try:
        first = supervisor.pid("sleeper")
        assert first is not None and (tmp_path / "sleeper.pid").read_text().strip() == str(first)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: supervisor.pid("sleeper") not in (None, first), 10)
        assert supervisor.restart_counts() == {"sleeper": 1}
        second = supervisor.pid("sleeper")
    finally:
        assert supervisor.stop() == 0
    assert not supervisor.stopped.is_set()
    assert not Path(f"/proc/{second}").exists() or "zombie" in Path(f"/proc/{second}/status").read_text()
    assert not (tmp_path / "sleeper.pid").exists()


def test_a_child_that_keeps_dying_makes_the_supervisor_give_up() -> None:
    spec = ProcessSpec("crasher", lambda: [sys.executable, "-c", "raise SystemExit(3)"])
    supervisor = ProcessSupervisor([spec], max_restarts=2, period_seconds=30.0, backoff=QUICK).start()
    try:
        assert supervisor.stopped.wait(20)
    finally:
        supervisor.stop()
    assert supervisor.exit_code == EXIT_GAVE_UP
    assert "crasher exited 3 times" in supervisor.reason


def test_a_child_that_ends_before_it_is_ready_fails_the_start() -> None:
    argv = [sys.executable, "-c", "raise SystemExit(2)"]
    spec = ProcessSpec("broken", lambda: argv, ready=threading.Event())
    with pytest.raises(ChildStartFailed, match="broken ended at its start"):
        ProcessSupervisor([spec], backoff=QUICK).start()
