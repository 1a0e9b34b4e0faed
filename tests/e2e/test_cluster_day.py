"""Issue 31's check, short: `python -m tools.cluster_day` on loopback (three NATS servers, two controls, two
stream workers of two simulated keys each, the store), SIGKILLs of the active control, a worker (restarted)
and a NATS server, then the reconciliation over every data dir and the one-session-per-key check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(300)
def test_a_cluster_day_with_a_kill_of_each_kind_loses_no_tick_and_never_doubles_a_session(
    tmp_path: Path,
) -> None:
    argv = [sys.executable, "-m", "tools.cluster_day", "--dir", str(tmp_path), "--duration", "20",
            "--speed", "3", "--symbols", "200"]
    day = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=280)
    assert day.stdout.strip(), day.stderr[-2000:]
    summary = json.loads(day.stdout)
    print(f"\ncluster day: {summary}")
    assert summary["failed_checks"] == [] and day.returncode == 0
    assert summary["ticks_lost"] == 0 and summary["sim_ticks_sent"] > 0
    assert summary["takeover_seconds"] <= 15 and summary["reassignment_seconds"] <= 15
    assert summary["symbols_moved"] > 0
    # The worker of sim1 and sim2 kept its sessions through every kill; the restarted one opened one more.
    assert summary["sessions_per_key"] == {"sim1": 1, "sim2": 1, "sim3": 2, "sim4": 2}
    assert summary["sessions_refused_key_in_use"] == {} and summary["max_open_sessions_per_key"] == 1
    assert summary["both_controls_active_seen"] == 0
    assert sorted(summary["alive_at_end"]) == ["control-b", "store", "worker-1", "worker-2"]
