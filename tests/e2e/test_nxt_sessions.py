"""A simulated day on the unified feed with Nextrade's sessions: `python run.py --sim` started in NXT's
pre-market and in its after-market records the NXT-listed symbols' trades, each tick line naming venue NXT
and the unified TR it came on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, time
from pathlib import Path

import pytest

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from tests.e2e.support import tick_files
from tools.kis_sim.market import Market

REPO = Path(__file__).resolve().parents[2]
SEED = 1
DAY = date(2024, 3, 4)
SYMBOLS = 200
ACCOUNT = "sim1"


def nxt_listed_largest(count: int) -> list[str]:
    """The largest NXT-listed symbols of the simulated market (Nextrade lists the larger caps)."""
    market = Market(seed=SEED, trading_date=DAY, n_symbols=SYMBOLS)
    listed = sorted(market.nxt_listed, key=lambda code: -market.listing(code).market_cap)
    return listed[:count]


@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("start", "session_start", "session_end"),
    [("08:27", time(8, 0), time(8, 50)), ("15:35", time(15, 30), time(20, 0))],
    ids=["pre-market", "after-market"],
)
def test_the_unified_feed_records_nxt_trades_outside_krx_hours(
    tmp_path: Path, start: str, session_start: time, session_end: time
) -> None:
    watched = nxt_listed_largest(2)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"slots": {"watchlist": watched}}), encoding="utf-8")
    env = {
        key: value for key, value in os.environ.items()
        if not key.startswith(("OBSERVER_", "KIS_", "TELEGRAM_", "DISCORD_"))
    }
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable, "run.py", "--sim", "--config", str(config),
        "--seed", str(SEED), "--symbols", str(SYMBOLS), "--speed", "10", "--start", start,
        "--date", f"{DAY:%Y%m%d}", "--duration", "40",
        "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "logs"),
        "--summary-json", str(tmp_path / "summary.json"),
    ]  # fmt: skip
    completed = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-2000:]
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["ticks_recorded"] > 0 and summary["ticks_lost"] == 0, summary
    assert "full_operation" in summary["phases_seen"]

    files = tick_files(DataPaths(tmp_path / "data"), ACCOUNT, DAY)
    for symbol in watched:
        assert symbol in files, f"no ticks of the NXT-listed {symbol}"
        records = [record for record in read_jsonl(files[symbol]).records if record["source"] == "ws"]
        assert records
        assert {(record["venue"], record["tr_id"]) for record in records} == {("NXT", "H0UNCNT0")}
        for record in records:
            moment = datetime.fromisoformat(record["exchange_time"]).time()
            assert session_start <= moment < session_end, record
        cum_volumes = [record["cum_volume"] for record in records]
        assert cum_volumes == sorted(cum_volumes)
