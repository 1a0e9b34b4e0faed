"""Bad command-line values, as a user types them: `run.py` exits 2 with one line on stderr and no traceback,
before the simulator or any actor starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.observer import worker_accounts
from config.accounts import Account
from config.loader import ConfigError
from config.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCENARIO_UNKNOWN_SYMBOL = [{"at": "09:30", "symbol": "999999", "event": "volume_surge", "factor": 3}]

CASES = [
    ("symbols-zero", ["--symbols", "0"], ">= 1"),
    ("symbols-word", ["--symbols", "many"], "whole number"),
    ("accounts-zero", ["--accounts", "0"], ">= 1"),
    ("accounts-negative", ["--accounts", "-2"], ">= 1"),
    ("accounts-names-need-stream", ["--accounts", "sim1,sim2"], "--role stream"),
    ("accounts-bad-names", ["--accounts", "sim1,,sim1"], "account names separated by commas"),
    ("accounts-not-simulated", ["--role", "stream", "--nats", "nats://127.0.0.1:9", "--accounts", "acct3"],
     "sim1, sim2"),
    ("speed-zero", ["--speed", "0"], "> 0"),
    ("speed-negative", ["--speed", "-10"], "> 0"),
    ("speed-infinite", ["--speed", "inf"], "finite"),
    ("duration-negative", ["--duration", "-5"], "> 0"),
    ("duration-nan", ["--duration", "nan"], "finite"),
    ("start-malformed", ["--start", "9am"], "HH:MM"),
    ("start-out-of-day", ["--start", "25:00"], "HH:MM"),
    ("date-malformed", ["--date", "2024-11-20"], "YYYYMMDD"),
    ("date-saturday", ["--date", "20241123"], "not a KRX trading day"),
    ("scenario-missing", ["--scenario", "{tmp}/absent.json"], "cannot read"),
    ("scenario-invalid", ["--scenario", "{tmp}/bad.json"], "not valid JSON"),
    ("scenario-unknown-symbol", ["--scenario", "{tmp}/unknown.json"], "unknown symbol"),
    ("day-already-run", ["--date", "20241120"], "past the 20:00 close"),
    ("data-dir-a-file", ["--data-dir", "{tmp}/a-file"], "not a directory"),
]


def clean_env() -> dict[str, str]:
    prefixes = ("KIS_", "TELEGRAM_", "DISCORD_", "OBSERVER_")
    return {name: value for name, value in os.environ.items() if not name.startswith(prefixes)}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("flags", "named"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_a_bad_value_is_one_line_and_exit_2(tmp_path: Path, flags: list[str], named: str) -> None:
    (tmp_path / "bad.json").write_text('[{"at": "09:30",]', encoding="utf-8")
    (tmp_path / "unknown.json").write_text(json.dumps(SCENARIO_UNKNOWN_SYMBOL), encoding="utf-8")
    (tmp_path / "a-file").write_text("not a folder", encoding="utf-8")
    ledger = tmp_path / "data" / "observer" / "system" / "alerts" / "20241120_alerts.jsonl"
    ledger.parent.mkdir(parents=True)
    ledger.write_text(json.dumps({"at": "2024-11-20T19:59:59+09:00", "key": "a"}) + "\n", encoding="utf-8")
    command = [sys.executable, str(REPO / "run.py"), "--sim", "--data-dir", str(tmp_path / "data"),
               "--log-dir", str(tmp_path / "logs"), "--duration", "5",
               *(flag.format(tmp=tmp_path) for flag in flags)]
    done = subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=50,
                          check=False)
    lines = done.stderr.splitlines()
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert named.lower() in lines[0].lower(), lines[0]
    assert "READY" not in done.stdout
    assert not (tmp_path / "logs").exists()


def test_a_stream_worker_streams_the_named_configured_accounts_and_an_unknown_name_is_one_line() -> None:
    accounts = tuple(Account(name=f"acct{i}", app_key=f"KEY{i}" * 8, app_secret=f"SECRET{i}" * 20)
                     for i in range(1, 5))
    settings = Settings(accounts=accounts)
    assert [a.name for a in worker_accounts(settings, ("acct4", "acct3"))] == ["acct4", "acct3"]
    with pytest.raises(ConfigError, match=r"no configured account named acct9 \(configured: acct1, acct2"):
        worker_accounts(settings, ("acct3", "acct9"))
