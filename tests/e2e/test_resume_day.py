"""A second `run.py --sim` on a data folder that already holds the simulated day, as a user runs it: the
README's first command, then its `--chaos` command on the same folder. The day resumes after its last
record: every tick file stays in time order, restart gaps are recorded, no alert goes out twice and the
chaos day passes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths

REPO = Path(__file__).resolve().parents[2]
FIRST_RUN_SECONDS = 25
CHAOS_SECONDS = 60
"""Both runs at `--speed 5`: at 10x a busy CI machine leaves the stream process seconds behind, and a stop
with that backlog loses ticks no gap covers yet."""


def clean_env() -> dict[str, str]:
    prefixes = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def run(tmp_path: Path, name: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    summary = tmp_path / f"{name}.json"
    command = [sys.executable, str(REPO / "run.py"), "--sim", "--symbols", "200", "--speed", "5",
               "--date", "20241120", "--seed", "3", "--data-dir", str(tmp_path / "data"),
               "--log-dir", str(tmp_path / name), "--summary-json", str(summary), *extra]
    done = subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, text=True,
                          timeout=CHAOS_SECONDS + 120, check=False)
    assert summary.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    return done, json.loads(summary.read_text(encoding="utf-8"))


@pytest.mark.timeout(FIRST_RUN_SECONDS + CHAOS_SECONDS + 240)
def test_a_second_run_on_the_same_day_resumes_it_and_the_chaos_day_passes(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    first, _ = run(tmp_path, "first", "--duration", str(FIRST_RUN_SECONDS))
    assert first.returncode == 0, first.stdout[-3000:]
    ticks_before = {path: len(read_jsonl(path).records)
                    for path in paths.observer.glob("scalp/sim1/*/*/ticks_*")}
    assert ticks_before

    second, summary = run(tmp_path, "second", "--chaos", "--duration", str(CHAOS_SECONDS))
    for path, before in ticks_before.items():
        times = [datetime.fromisoformat(row["exchange_time"]) for row in read_jsonl(path).records
                 if row.get("source") == "ws"]
        assert times == sorted(times), f"{path.name} goes back in time"
        assert len(times) >= before
    marked = [row["reason"] for path in paths.observer.glob("system/gaps/sim1/*_gaps.jsonl")
              for row in read_jsonl(path).records]
    recovered = [row["meta"]["original_gap"]["reason"]
                 for path in paths.observer.glob("scalp/sim1/*/*/recovery_*.jsonl")
                 for row in read_jsonl(path).records]
    assert "observer_restart" in marked + recovered, "no restart gap"
    alerts = [row for path in paths.observer.glob("system/alerts/*_alerts.jsonl")
              for row in read_jsonl(path).records]
    keys_at = [(row["key"], row["at"]) for row in alerts]
    assert len(keys_at) == len(set(keys_at)), "an alert went out twice"

    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert summary["exit_code"] == 0 and summary["chaos_passed"] is True
    assert summary["ticks_lost"] == 0, summary["ticks_lost_sample"]
    assert summary["duplicate_alerts"] == 0
    assert "the simulated day resumes at" in second.stdout, second.stdout[-3000:]
