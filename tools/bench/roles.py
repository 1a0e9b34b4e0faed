"""`run.py --role control|stream` children against a shared NATS server and KIS simulator, their stdout
lines kept with the moment each came: used by the standby-control test and the failover benchmark."""

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

REPO = Path(__file__).resolve().parents[2]
SECRET_PREFIXES = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")


class Role:
    """One `run.py --role ...` child; its stdout lines collected as they come."""

    def __init__(self, argv: list[str], out: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(SECRET_PREFIXES)}
        env["PYTHONUNBUFFERED"] = "1"
        self.lines: list[tuple[float, str]] = []
        self.started = time.monotonic()
        self._log = out.open("w", encoding="utf-8")
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

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
        return next(line.split()[1] for _, line in self.lines if line.startswith(prefix))

    def kill(self) -> float:
        """SIGKILL it; the monotonic moment of the kill."""
        os.kill(self.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        self.process.wait(10)
        return killed

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


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
