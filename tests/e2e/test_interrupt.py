"""Ctrl-C on a terminal: `python run.py --sim` stops cleanly, exit 0, and nothing prints a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.support import wait_for

REPO = Path(__file__).resolve().parents[2]


def _scanned(data_dir: Path) -> bool:
    return any(path.stat().st_size > 0 for path in data_dir.rglob("snapshots.jsonl"))


@pytest.mark.timeout(120)
def test_ctrl_c_after_the_first_scan_exits_0_without_a_traceback(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    command = [
        sys.executable, "run.py", "--sim", "--symbols", "200", "--speed", "10", "--start", "09:27",
        "--date", "20240304", "--duration", "120",
        "--data-dir", str(data_dir), "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OBSERVER_", "KIS_"))}
    env["PYTHONUNBUFFERED"] = "1"
    stdout, stderr = tmp_path / "stdout", tmp_path / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        # A session of its own stands for the terminal: Ctrl-C signals its whole foreground process group.
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=err, start_new_session=True)
        try:
            scanned = wait_for(lambda: _scanned(data_dir), timeout=60)
            assert process.poll() is None, "the observer ended before the signal"
            os.killpg(process.pid, signal.SIGINT)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
    printed = stdout.read_text(encoding="utf-8", errors="replace") + stderr.read_text("utf-8", "replace")
    assert scanned, "no Track A snapshot before the deadline: " + printed[-2000:]
    assert code == 0, printed[-3000:]
    assert "signal SIGINT received" in printed
    assert "Traceback" not in printed and "KeyboardInterrupt" not in printed, printed[-3000:]
