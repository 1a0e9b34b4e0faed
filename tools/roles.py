"""`run.py --role control|stream` children (and the store) against a shared NATS and KIS simulator, their
stdout lines kept with the moment each came: used by the standby-control test, the failover benchmark and
the cluster day."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tools.kis_sim.cli import clock_line
from tools.kis_sim.server import KisSimulator

REPO = Path(__file__).resolve().parents[1]
SECRET_PREFIXES = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")
STOP_TIMEOUT_SECONDS = 40.0


class Role:
    """One child process; its stdout lines collected as they come and copied to `out`; `env` is added to
    this process's environment without the credentials (KIS_, TELEGRAM_, DISCORD_, OBSERVER_)."""

    def __init__(
        self, argv: list[str], out: Path, *, name: str = "", env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        child_env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
        child_env.update(env or {}, PYTHONUNBUFFERED="1")
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        out.parent.mkdir(parents=True, exist_ok=True)
        self._log = out.open("a", encoding="utf-8")
        self.process = subprocess.Popen(argv, cwd=REPO, env=child_env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._reader = threading.Thread(target=self._read, name=f"out-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))
            self._log.write(line)
            self._log.flush()

    def said(self, text: str) -> float | None:
        """When a line containing `text` came (monotonic), None before it does."""
        return next((at for at, line in list(self.lines) if text in line), None)

    def wait_line(self, text: str, timeout: float, what: str) -> float:
        """When a line containing `text` came, waiting up to `timeout`; AssertionError naming `what` (with the
        process's last lines if it ended first) when none does."""

        def said_or_ended() -> float | None:
            if (at := self.said(text)) is None and self.process.poll() is not None:
                last = "\n".join(line for _, line in self.lines[-5:])
                raise AssertionError(f"{what}: the process ended with {self.process.returncode}:\n{last}")
            return at

        return wait_for(said_or_ended, timeout, what)

    def value(self, prefix: str) -> str:
        """The word after `prefix` on the first line starting with it."""
        return next(line.split()[1] for _, line in list(self.lines) if line.startswith(prefix))

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> float:
        """SIGKILL it (a crashed host); the monotonic moment of the kill."""
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        self.process.wait(10)
        return killed

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> int:
        """SIGTERM and wait (SIGKILL after `timeout`); the exit code."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._reader.join(5)
        self._log.close()
        return self.process.returncode


def role_argv(sim: KisSimulator, nats_url: str, role: str, data: Path, logs: Path, *extra: str) -> list[str]:
    """`run.py --sim --role <role>` joining `nats_url` and the shared simulator, in step with its clock."""
    _, iso, wall = clock_line(sim.clock).split()
    return [sys.executable, str(REPO / "run.py"), "--sim", "--nats", nats_url, "--kis-rest", sim.rest_url,
            "--kis-ws", sim.ws_url, "--sim-clock", f"{iso}@{wall}", "--speed", f"{sim.config.speed:g}",
            "--role", role, "--data-dir", str(data), "--log-dir", str(logs), *extra]


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """`condition()`'s first true value, polled every 0.1 s; AssertionError naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:g} s")
