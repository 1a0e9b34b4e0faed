"""Processes by latency class, as a user runs them: `run.py --sim` starts the simulator, the stream process
and the control process as children; SIGKILL of the control process, of the stream process and of the NATS
server mid-run is survived (each restarted, the run goes on), and the reconciliation of the simulator's sent
log with the journal finds no tick lost outside recorded gaps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths

REPO = Path(__file__).resolve().parents[2]
RUN_SECONDS = 110


def clean_env() -> dict[str, str]:
    prefixes = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")
    env = {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def pid(paths: DataPaths, name: str) -> int | None:
    try:
        value = int((paths.observer / "run" / f"{name}.pid").read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return value if Path(f"/proc/{value}").exists() else None


def ticks_on_disk(paths: DataPaths) -> int:
    return sum(len(read_jsonl(path).records) for path in paths.observer.glob("scalp/sim1/*/*/ticks_*.jsonl"))


def wait_for(
    condition: Callable[[], bool], timeout: float, process: subprocess.Popen[bytes], what: str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"the run ended early with {process.returncode} ({what})"
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout} s")


def kill_and_wait_for_the_next(paths: DataPaths, name: str, process: subprocess.Popen[bytes]) -> None:
    first = pid(paths, name)
    assert first is not None, f"no {name} pid"
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: pid(paths, name) not in (None, first), 40, process, f"{name} back after SIGKILL")


@pytest.mark.timeout(RUN_SECONDS + 120)
def test_sigkill_of_control_stream_and_nats_is_survived_without_a_lost_tick(tmp_path: Path) -> None:
    data, paths = tmp_path / "data", DataPaths(tmp_path / "data")
    summary_path = tmp_path / "summary.json"
    command = [sys.executable, str(REPO / "run.py"), "--sim", "--symbols", "150", "--date", "20241120",
               "--start", "09:28", "--seed", "2", "--speed", "10", "--data-dir", str(data),
               "--log-dir", str(tmp_path / "logs"), "--duration", str(RUN_SECONDS), "--http", "off",
               "--summary-json", str(summary_path)]
    out = tmp_path / "run.out"
    with out.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=clean_env(), stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: all(pid(paths, name) for name in ("nats", "simulator", "stream", "control")),
                     60, process, "every child's pid file")
            wait_for(lambda: ticks_on_disk(paths) > 1000, 60, process, "ticks on disk")

            kill_and_wait_for_the_next(paths, "control", process)
            before = ticks_on_disk(paths)
            wait_for(lambda: ticks_on_disk(paths) > before + 500, 30, process, "ticks while control restarts")

            kill_and_wait_for_the_next(paths, "stream", process)
            before = ticks_on_disk(paths)
            wait_for(lambda: ticks_on_disk(paths) > before + 500, 60, process, "ticks after its restart")

            kill_and_wait_for_the_next(paths, "nats", process)
            before = ticks_on_disk(paths)
            wait_for(lambda: ticks_on_disk(paths) > before + 500, 30, process, "ticks after the NATS restart")
            code = process.wait(timeout=RUN_SECONDS + 60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    log = out.read_text(encoding="utf-8", errors="replace")
    assert code == 0, log[-3000:]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["process_restarts"]["control"] == 1 and summary["process_restarts"]["stream"] == 1, summary
    assert summary["ticks_lost"] == 0, summary.get("ticks_lost_sample")
    assert summary["sim_ticks_sent"] > 0 and summary["ticks_recorded_matched"] > 0
    assert summary["actors_alive"] == summary["actors_total"], summary
    for path in data.rglob("*.jsonl"):  # a SIGKILL leaves at most one torn line
        assert read_jsonl(path).skipped <= 1, path
    assert not any((paths.observer / "run" / f"{name}.pid").exists() for name in ("stream", "control"))
