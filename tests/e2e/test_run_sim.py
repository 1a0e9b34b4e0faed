"""`python run.py --sim` as a user runs it: a subprocess against the embedded simulator, a scenario with more
surging symbols than WebSocket slots, alerts to a local Telegram-compatible server, then its files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import date, datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

import pytest

from app.observer import sim_accounts
from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from tests.e2e.support import (
    SurgeScenario,
    alert_key,
    ends_in_complete_lines,
    overflow_records,
    surge_scenario,
    tick_files,
    wait_for,
)
from tests.secrets_check import assert_no_secrets_in_tree
from tools.chat_sink import ChatSink

REPO = Path(__file__).resolve().parents[2]
SEED = 1
DAY = date(2024, 3, 4)
SYMBOLS = 200
SPEED = 10.0
START = "09:27"
"""Three minutes before Track B: the universe build (about 90 simulated seconds, 9 s of REST calls at 10x)
and the first scan are over by 09:30 even on a slow host, as on a normal day. (A later start is handled too:
the trigger actor passes the context sync to the slot manager only after ranking the scan it came from.)"""
ACCOUNT = "sim1"
SURGES = 60
"""More than the 40 tick slots of one key (41 less the execution-notice registration)."""
FIRST_SCAN_AT = time_of_day(9, 28, 45)
"""About when the first scan runs: the universe build (about 90 simulated seconds) ends just before it."""
STRONG, WEAK = 15, 10
"""The surges that must get a slot (strongest first) and those that must end in the overflow ledger."""
BOT_TOKEN = "7700112233:AAE-e2eFakeBotTokenForTheLocalChatSink"
FAKE_APP_KEY = "PSe2eFAKEappKEYthatMustNeverBeWrittenAnywhere01"
FAKE_APP_SECRET = "e2eFAKEappSECRETthatMustNeverBeWrittenAnywhere+/0123456789abcdefABCDEF="


@pytest.fixture(scope="module")
def scenario() -> SurgeScenario:
    return surge_scenario(SEED, DAY, SYMBOLS, SURGES, scan_at=FIRST_SCAN_AT)


@pytest.fixture
def chat_sink():
    with ChatSink() as sink:
        yield sink


def observer_env(sink: ChatSink) -> dict[str, str]:
    """The caller's environment without any observer setting of its own, plus the test's channel and fake
    KIS credentials (ignored in --sim mode; they must not leak anywhere either)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OBSERVER_", "KIS_", "TELEGRAM_", "DISCORD_"))
    }
    env.update(
        TELEGRAM_BOT_TOKEN=BOT_TOKEN,
        TELEGRAM_CHAT_ID="4242",
        TELEGRAM_API_BASE=sink.telegram_base,
        OBSERVER_ALERTS__RATE_PER_MINUTE="1000",
        KIS_APP_KEY=FAKE_APP_KEY,
        KIS_APP_SECRET=FAKE_APP_SECRET,
        PYTHONUNBUFFERED="1",
    )
    return env


def observer_command(tmp_path: Path, scenario_file: Path, duration: float) -> list[str]:
    return [
        sys.executable,
        "run.py",
        "--sim",
        "--scenario", str(scenario_file),
        "--seed", str(SEED),
        "--symbols", str(SYMBOLS),
        "--speed", f"{SPEED:g}",
        "--start", START,
        "--date", f"{DAY:%Y%m%d}",
        "--duration", f"{duration:g}",
        "--data-dir", str(tmp_path / "data"),
        "--log-dir", str(tmp_path / "logs"),
        "--summary-json", str(tmp_path / "summary.json"),
    ]  # fmt: skip


def run_secrets(tmp_path: Path) -> dict[str, str]:
    """Every credential of the run: the fake env ones, the bot token, the simulated keys and what the
    simulator issued for them (read from the token cache, the one place allowed to hold them)."""
    account = sim_accounts(1)[0]
    secrets = {
        "env app key": FAKE_APP_KEY,
        "env app secret": FAKE_APP_SECRET,
        "bot token": BOT_TOKEN,
        "sim app key": account["app_key"],
        "sim app secret": account["app_secret"],
    }
    caches = sorted((tmp_path / "data" / "sim" / "tokens").glob("*.json"))
    assert caches, "no token cache written"
    for cache in caches:
        document = json.loads(cache.read_text(encoding="utf-8"))
        secrets[f"access token ({cache.name})"] = document["access_token"]
        secrets[f"approval key ({cache.name})"] = document["approval_key"]
    return secrets


def held_symbols(paths: DataPaths) -> set[str]:
    document = json.loads((paths.state_dir / "slots.json").read_text(encoding="utf-8"))
    return set(document.get("held", {}).get(ACCOUNT, {}))


def load_summary(tmp_path: Path) -> dict[str, Any]:
    return json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))


@pytest.mark.timeout(120)
def test_more_surges_than_slots_strongest_stream_rest_overflow_alerts_once(
    tmp_path: Path, scenario: SurgeScenario, chat_sink: ChatSink
) -> None:
    scenario_file = scenario.write(tmp_path / "surges.json")
    out = tmp_path / "run.out"
    with out.open("wb") as output:
        completed = subprocess.run(
            observer_command(tmp_path, scenario_file, duration=45),
            cwd=REPO,
            env=observer_env(chat_sink),
            stdout=output,
            stderr=subprocess.STDOUT,
            timeout=100,
            check=False,
        )
    log = out.read_text(encoding="utf-8", errors="replace")
    assert completed.returncode == 0, log[-3000:]
    assert "simulator mode (--sim)" in log

    summary = load_summary(tmp_path)
    assert summary["exit_code"] == 0
    for counter in ("ticks_recorded", "triggers", "slot_changes", "overflows", "alerts_sent"):
        assert summary[counter] > 0, (counter, summary)
    assert summary["scans"] >= 1
    assert summary["actors_alive"] == summary["actors_total"] == len(summary["restarts"]), summary
    assert set(summary["restarts"].values()) == {0}, summary["restarts"]
    assert "full_operation" in summary["phases_seen"]

    paths = DataPaths(tmp_path / "data")
    held = held_symbols(paths)
    ranked = [symbol for symbol in scenario.ranked_symbols if symbol not in held]
    strongest, weakest = ranked[:STRONG], ranked[-WEAK:]
    ticks = tick_files(paths, ACCOUNT, DAY)
    missing = [symbol for symbol in strongest if symbol not in ticks]
    assert not missing, f"strongest surges without a tick file: {missing}"
    for symbol in strongest:
        records = read_jsonl(ticks[symbol]).records
        streamed = [r for r in records if r["source"] == "ws"]
        assert streamed and all(r["symbol"] == symbol for r in records)
        # The control process outlives the stream process at the stop, so the last second's gap (the
        # connection closing) may be back-filled from the minute bar: recovery rows only in that minute.
        last_minute = datetime.fromisoformat(streamed[-1]["exchange_time"]).replace(second=0)
        assert all(r["source"] == "ws" or datetime.fromisoformat(r["exchange_time"]) >= last_minute
                   for r in records), symbol
        assert {"exchange_time", "received_at", "price", "volume", "cum_volume"} <= set(records[0])
    overflowed = {record["symbol"] for record in overflow_records(paths, ACCOUNT, DAY)}
    assert set(weakest) <= overflowed, (
        f"weakest surges not in the ledger: {sorted(set(weakest) - overflowed)}"
    )
    assert not set(weakest) & set(ticks), "a weakest surge got a slot"
    assert summary["overflows"] >= len(weakest)

    assert wait_for(lambda: len(chat_sink.messages) >= summary["alerts_sent"], timeout=5)
    messages = chat_sink.messages
    assert len(messages) == summary["alerts_sent"]
    assert {message.channel for message in messages} == {"telegram"}
    assert {message.chat_id for message in messages} == {"4242"}
    assert {message.token for message in messages} == {BOT_TOKEN}
    keys = Counter(alert_key(message.text) for message in messages)
    repeated = {key: count for key, count in keys.items() if count > 1}
    assert not repeated, f"alerted more than once inside the cooldown: {repeated}"
    unalerted = [symbol for symbol in scenario.ranked_symbols if (symbol, "volume_surge") not in keys]
    assert not unalerted, f"surges without an alert: {unalerted}"
    ledger = read_jsonl(paths.alerts_ledger(DAY)).records
    assert Counter(record["text"] for record in ledger) == Counter(message.text for message in messages)
    assert summary["duplicate_alerts"] == 0 and summary["ticks_lost"] == 0

    log_dir = tmp_path / "logs"
    for actor in summary["restarts"]:
        actor_log = log_dir / f"{actor}.log"
        assert actor_log.is_file() and actor_log.stat().st_size > 0, f"no log of {actor}"
        assert f"| {actor} |" in actor_log.read_text(encoding="utf-8")

    excluded = [tmp_path / "data" / "sim" / "tokens", tmp_path / "data" / "sim" / f"{DAY:%Y%m%d}_sent.jsonl"]
    assert assert_no_secrets_in_tree(tmp_path, run_secrets(tmp_path), exclude=excluded) > 20


@pytest.mark.timeout(120)
def test_sigterm_midway_stops_cleanly_with_files_whole(
    tmp_path: Path, scenario: SurgeScenario, chat_sink: ChatSink
) -> None:
    scenario_file = scenario.write(tmp_path / "surges.json")
    paths = DataPaths(tmp_path / "data")
    out = tmp_path / "run.out"
    with out.open("wb") as output:
        process = subprocess.Popen(
            observer_command(tmp_path, scenario_file, duration=90),
            cwd=REPO,
            env=observer_env(chat_sink),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            ticking = wait_for(lambda: _ticks_on_disk(paths), timeout=45)
            assert process.poll() is None, "the observer ended before the signal"
            sent_at = time.monotonic()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
            stop_seconds = time.monotonic() - sent_at
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    log = out.read_text(encoding="utf-8", errors="replace")
    assert ticking, "no ticks on disk before the deadline: " + log[-2000:]
    assert code == 0, log[-3000:]
    assert "signal SIGTERM received" in log
    assert stop_seconds < 20, f"the stop took {stop_seconds:.1f} s"

    summary = load_summary(tmp_path)
    assert summary["exit_code"] == 0
    assert summary["ticks_recorded"] > 0
    assert summary["actors_alive"] == summary["actors_total"]

    files = list(tick_files(paths, ACCOUNT, DAY).values())
    assert files
    recorded = 0
    for path in files:
        assert ends_in_complete_lines(path), f"{path.name} ends in a torn line"
        recorded += sum(record["source"] == "ws" for record in read_jsonl(path).records)
    assert recorded == summary["ticks_recorded"], "every tick counted is on disk (back-filled ones aside)"

    for name in ("slots", "scheduler", "scanner", "triggers", "alert_cooldowns", f"subscriptions.{ACCOUNT}"):
        state = paths.state_dir / f"{name}.json"
        assert state.is_file(), f"state {name} not saved"
        json.loads(state.read_text(encoding="utf-8"))
    slots = json.loads((paths.state_dir / "slots.json").read_text(encoding="utf-8"))
    assert slots["day"] == DAY.isoformat()
    assert slots["synced_on"] == DAY.isoformat()


def _ticks_on_disk(paths: DataPaths) -> bool:
    return any(path.stat().st_size > 0 for path in tick_files(paths, ACCOUNT, DAY).values())
