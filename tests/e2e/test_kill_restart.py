"""SIGKILL and a new start: `run.py --sim` is killed once slots are filled and ticks are on disk, a power
cut tears the last line of a tick file, and a second run on the same data folder (same simulated date and
seed, starting the minute after the kill, as a restart later the same day would) resumes slots,
subscriptions and alert cooldowns from the state store and reads and extends every JSONL file."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from tools.reconcile import alert_ledger, duplicate_alerts

REPO = Path(__file__).resolve().parents[2]
DAY = "20241120"
TORN = '{"symbol":"000000","exchange_time":"2024-11-20T09:3'
SECOND_RUN_SECONDS = 20


def clean_env() -> dict[str, str]:
    prefixes = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


def command(data: Path, logs: Path, start: str, *extra: str) -> list[str]:
    return [sys.executable, str(REPO / "run.py"), "--sim", "--symbols", "200", "--date", DAY,
            "--start", start, "--seed", "2", "--data-dir", str(data), "--log-dir", str(logs), *extra]


def wait_for(condition: Callable[[], bool], timeout: float, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        assert process.poll() is None, f"the run ended early with {process.returncode}"
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout} s")


def state(paths: DataPaths, name: str) -> dict[str, Any]:
    path = paths.state_dir / f"{name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def tick_files(paths: DataPaths) -> list[Path]:
    return sorted(paths.observer.glob("scalp/sim1/*/*/ticks_*.jsonl"))


def last_tick_time(paths: DataPaths) -> datetime:
    return max(datetime.fromisoformat(row["exchange_time"])
               for path in tick_files(paths) for row in read_jsonl(path).records)


def first_run_is_busy(paths: DataPaths) -> bool:
    """Slots filled, ticks on disk, an alert sent: everything the next start must resume."""
    subscribed = state(paths, "subscriptions.sim1").get("symbols", [])
    cooled = state(paths, "alert_cooldowns").get("last_sent", {})
    files = tick_files(paths)
    return len(subscribed) >= 20 and bool(cooled) and sum(path.stat().st_size for path in files) > 200_000


def logged_number(log: Path, pattern: str) -> int:
    match = re.search(pattern, log.read_text(encoding="utf-8"))
    assert match, f"{pattern!r} not in {log.name}"
    return int(match.group(1))


@pytest.mark.timeout(150)
def test_sigkill_then_a_new_start_resumes_from_the_state_store(tmp_path: Path) -> None:
    data, paths = tmp_path / "data", DataPaths(tmp_path / "data")
    first = subprocess.Popen(command(data, tmp_path / "logs1", "09:28"), cwd=REPO, env=clean_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    try:
        wait_for(lambda: first_run_is_busy(paths), 60, first)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL

    subscribed = state(paths, "subscriptions.sim1")["symbols"]
    cooldowns = state(paths, "alert_cooldowns")["last_sent"]
    alerts_before = sum(1 for _ in alert_ledger([paths]))
    assert alerts_before >= 1
    for path in data.rglob("*.jsonl"):  # a SIGKILL never leaves half a line: the writers write whole lines
        assert read_jsonl(path).skipped <= 1, path
    killed_at = last_tick_time(paths)
    restart = (killed_at + timedelta(minutes=1)).replace(second=0, microsecond=0)
    torn_file = tick_files(paths)[0]
    lines_before = len(read_jsonl(torn_file).records)
    with torn_file.open("a", encoding="utf-8") as file:  # a power cut on top
        file.write(TORN)

    summary_path = tmp_path / "summary.json"
    logs = tmp_path / "logs2"
    second = subprocess.run(
        command(data, logs, restart.strftime("%H:%M"), "--duration", str(SECOND_RUN_SECONDS),
                "--summary-json", str(summary_path)),
        cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=SECOND_RUN_SECONDS + 60,
        check=False,
    )
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    assert summary["actors_alive"] == summary["actors_total"]

    # Subscriptions: the connection actor restored the killed run's target and streams it again.
    restored = logged_number(logs / "ws.sim1.log", r"restored (\d+) target symbols")
    assert restored == len(subscribed)
    streamed = {row["symbol"] for symbol in subscribed
                for path in paths.observer.glob(f"scalp/sim1/*/*/ticks_{symbol}.jsonl")
                for row in read_jsonl(path).records
                if row["source"] == "ws" and datetime.fromisoformat(row["exchange_time"]) >= restart}
    assert len(streamed) >= len(subscribed) // 2, f"{len(streamed)} of {len(subscribed)} streamed again"

    # Slots: restored as saved, not rebuilt from nothing.
    slots_log = (logs / "slots.log").read_text(encoding="utf-8")
    slotted = logged_number(logs / "slots.log", r"slot state restored: (\d+) symbols slotted")
    assert slotted >= len(subscribed) - 1
    # Track B carried on: it neither stopped nor started over from a new context sync and ranking.
    assert re.search(r"slots ready: phase full_operation, .* context synced today: True", slots_log)
    assert "Track B starts" not in slots_log and "Track B stops" not in slots_log

    # Cooldowns: every key the killed run had alerted is still cooling down; the same day replayed raises
    # the same alerts again, and none of them goes out twice inside its cooldown.
    assert set(state(paths, "alert_cooldowns")["last_sent"]) >= set(cooldowns)
    assert duplicate_alerts(alert_ledger([paths])) == 0
    assert summary["duplicate_alerts"] == 0
    suppressed = (logs / "notifier.log").read_text(encoding="utf-8").count("alert suppressed (cooldown")
    assert suppressed >= 1
    delivered = sum(log.read_text(encoding="utf-8").count("| ALERT ")
                    for log in (tmp_path / "logs1" / "notifier.log", logs / "notifier.log"))
    assert sum(1 for _ in alert_ledger([paths])) >= delivered  # the ledger is written before delivery

    # Files: the torn line is skipped with a warning, the file grows past it, every file reads.
    contents = read_jsonl(torn_file)
    assert contents.skipped == 1 and len(contents.records) > lines_before
    assert "was torn by an earlier stop" in (logs / "recorder.log").read_text(encoding="utf-8")
    for path in data.rglob("*.jsonl"):
        if path != torn_file:
            assert read_jsonl(path).skipped <= 1, path
