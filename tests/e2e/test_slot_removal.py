"""`python run.py --sim` with two strongly surging symbols halted mid-morning: the Track A scan that sees the
halt takes them out of their WebSocket slots with a `halted` line in the overflow ledger, and the scan after
the halt ends lets them back in. Also the day's universe as the seed's one `kr_stocks` file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import WebSocketSettings
from core.streams import StreamChoice, trade_capacity
from core.subscriptions import MAX_REGISTRATIONS_PER_KEY
from runtime.paths import DataPaths
from tests.e2e.support import overflow_records, surge_scenario
from tests.e2e.test_run_sim import ACCOUNT, DAY, FIRST_SCAN_AT, REPO, SEED, START, SYMBOLS, held_symbols
from tests.e2e.test_run_sim import observer_env as _observer_env
from tools.chat_sink import ChatSink

SPEED = 20.0
HALT_AT, HALT_MINUTES = "09:33", 10
"""After Track B's first allocation (09:30); the 09:38:45 scan sees it, the 09:48:45 one does not."""
DURATION = 85.0
"""Real seconds: from 09:27 to about 09:55 at 20x, past the scan after the halt and its rebalance."""
HELD = 2
"""The simulated account's held positions at this seed: pinned, each with its book and program trading."""


def _tick_slots() -> int:
    """The sim key's trade slots with the default order books and program trading: its 40 registrations (one
    goes to execution notices) less the extras its held positions and best slots take (`core.streams`)."""
    websocket = WebSocketSettings()
    return trade_capacity(MAX_REGISTRATIONS_PER_KEY - 1, HELD,
                          StreamChoice(websocket.order_book_held, websocket.order_book_top),
                          StreamChoice(websocket.program_trading_held, websocket.program_trading_top),
                          websocket.extra_registrations_max)


SURGES = _tick_slots() - HELD
"""Every surge has a tick slot beside the held positions, so no overflowing surge takes a halted symbol's
slot for good: the halted ones find room when trading resumes instead of having to beat the replacement
threshold (30 surges fitted the 40 slots a key had before books and program trading shared them)."""


@pytest.mark.timeout(240)
def test_halted_symbols_leave_their_slots_and_come_back_when_trading_resumes(tmp_path: Path) -> None:
    scenario = surge_scenario(SEED, DAY, SYMBOLS, SURGES, scan_at=FIRST_SCAN_AT)
    halted = scenario.ranked_symbols[:2]
    halts = [{"at": HALT_AT, "symbol": symbol, "event": "halt", "minutes": HALT_MINUTES} for symbol in halted]
    events = [*scenario.events, *halts]
    scenario_file = tmp_path / "halts.json"
    scenario_file.write_text(json.dumps(events), encoding="utf-8")
    command = [
        sys.executable, "run.py", "--sim", "--scenario", str(scenario_file), "--seed", str(SEED),
        "--symbols", str(SYMBOLS), "--speed", f"{SPEED:g}", "--start", START, "--date", f"{DAY:%Y%m%d}",
        "--duration", f"{DURATION:g}", "--data-dir", str(tmp_path / "data"),
        "--log-dir", str(tmp_path / "logs"),
    ]  # fmt: skip
    out = tmp_path / "run.out"
    with ChatSink() as sink, out.open("wb") as output:
        completed = subprocess.run(command, cwd=REPO, env=_observer_env(sink), stdout=output,
                                   stderr=subprocess.STDOUT, timeout=220, check=False)
    assert completed.returncode == 0, out.read_text(encoding="utf-8", errors="replace")[-3000:]

    paths = DataPaths(tmp_path / "data")
    assert len(held_symbols(paths)) == HELD and not set(halted) & held_symbols(paths)
    slots_log = (tmp_path / "logs" / "slots.log").read_text(encoding="utf-8")
    ledger = overflow_records(paths, ACCOUNT, DAY)
    for symbol in halted:
        pattern = rf"(?<!un)subscribe {symbol} on {ACCOUNT}: (free slot|replaces)"
        subscribed = [match.start() for match in re.finditer(pattern, slots_log)]
        removed = slots_log.find(f"unsubscribe {symbol} on {ACCOUNT}: halted: trading halted")
        resumed = slots_log.find(f"{symbol} trades again: it may take a slot again")
        assert subscribed and subscribed[0] < removed < resumed, (symbol, subscribed, removed, resumed)
        assert any(position > resumed for position in subscribed), f"{symbol} did not get a slot back"
        reasons = [record["metadata"]["reason_code"] for record in ledger if record["symbol"] == symbol]
        assert "halted" in reasons, (symbol, reasons)

    whole = json.loads((paths.universe_dir / f"{DAY:%Y%m%d}_kr_stocks.json").read_text(encoding="utf-8"))
    assert whole["metadata"]["market"] == "kr_stocks" and whole["metadata"]["date"] == f"{DAY:%Y%m%d}"
    assert whole["metadata"]["symbol_count"] == len(whole["symbols"]) > 0
