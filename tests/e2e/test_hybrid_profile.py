"""The hybrid profile (websocket_monitor_hybrid.md) end to end: the whole supervised actor tree in-process
with `OBSERVER_PROFILE=hybrid` against the simulator, a scenario with turnover surges, and the document's
section 8 acceptance criteria read off the running system, the simulator and the files."""

from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import pykka
import pytest

from actors.slot_manager import SlotManagerProxy
from app.observer import sim_accounts
from app.system import ObserverSystem
from config.loader import load_settings
from core.models import TriggerKind
from kis.protocol import MULTI_PRICE_MAX_SYMBOLS, TrId
from messages.streaming import ConnectionState
from runtime.jsonl import read_jsonl
from runtime.logs import reset_logging, setup_logging
from runtime.paths import DataPaths
from tests.e2e.support import tick_files, wait_for
from tools.kis_sim.listings import build_universe
from tools.kis_sim.server import KisSimulator

ACCOUNT = "sim1"
WS = f"ws.{ACCOUNT}"
SEED = 7
DAY = date(2024, 3, 4)
SIM_SYMBOLS = 60
"""About 50 in the universe: more than the hybrid profile's 20 subscriptions."""
START = time_of_day(9, 29)
SURGES = 4
WAIT = 30.0


def surging_symbols() -> list[str]:
    universe = build_universe(SEED, DAY, SIM_SYMBOLS)
    tradable = sorted(code for code, item in universe.listings.items()
                      if not item.halted and item.prev_close >= 4000)
    return tradable[:SURGES]


@pytest.fixture
def kis_sim_config(kis_sim_config, tmp_path: Path):
    scenario = tmp_path / "scenario.json"
    events = [{"at": "09:00", "symbol": symbol, "event": "volume_surge", "factor": 8.0, "minutes": 120}
              for symbol in surging_symbols()]
    scenario.write_text(json.dumps(events), encoding="utf-8")
    return dataclasses.replace(kis_sim_config, seed=SEED, date=DAY, start=START, n_symbols=SIM_SYMBOLS,
                               scenario=scenario)


@pytest.fixture
def system(tmp_path: Path, kis_sim: KisSimulator) -> Iterator[ObserverSystem]:
    settings = load_settings(
        env={"OBSERVER_PROFILE": "hybrid"},
        overrides={
            "accounts": sim_accounts(1),
            "data_dir": str(tmp_path / "data"),
            "log_dir": str(tmp_path / "logs"),
            "tokens": {"cache_dir": str(tmp_path / "tokens")},
            "universe": {"min_symbol_count": 20},
        },
    )
    built = ObserverSystem(settings, kis_sim.clock, kis_sim.rest_url, kis_sim.ws_url)
    setup_logging(Path(settings.log_dir), [*built.child_ids, "supervisor"], 1, console_level="WARNING")
    try:
        yield built.start()
    finally:
        if not built.supervisor.stopped.is_set():
            built.stop()
        built.vault.close()
        pykka.ActorRegistry.stop_all()
        reset_logging()


def targets(system: ObserverSystem) -> tuple[str, ...]:
    return system.directory.proxy("slots", SlotManagerProxy).targets().get(timeout=5).get(ACCOUNT, ())


def streaming(system: ObserverSystem) -> bool:
    """The slot manager has targets and the connection has confirmed exactly those."""
    wanted = set(targets(system))
    status = system.directory.proxy(WS).status().get(timeout=5)
    return bool(wanted) and status.state is ConnectionState.CONNECTED and set(status.confirmed) == wanted


def counter(system: ObserverSystem, name: str) -> int:
    return int(system.metrics.snapshot().get(name, 0))


@pytest.mark.timeout(240)
def test_the_hybrid_profile_meets_the_documents_acceptance_criteria(
    system: ObserverSystem, kis_sim: KisSimulator, tmp_path: Path
) -> None:
    """Section 8 of websocket_monitor_hybrid.md, in the hybrid profile:

    1. REST calls do not explode: one batch scan per 60 s, ceil(universe / 30) multi-price calls each.
    2. A dropped WebSocket recovers by itself and the target subscriptions are restored.
    3. The subscriptions change with the scan results: the Top-N is the symbols nearest to a signal
       threshold (section 3.5), and a later scan's ranking unsubscribes some and subscribes others.
    4. Alerts do not spam: at most one per (symbol, signal) within the 600 s cooldown.
    5. State is kept: the current subscriptions, the last alert times and the latest prices are on disk.
    """
    settings = system.context.settings
    assert settings.profile == "hybrid" and settings.signals.rank_by_closeness
    clock = system.context.clock
    started = clock.now()
    assert wait_for(lambda: streaming(system), timeout=60), "Track B never streamed"
    first = set(targets(system))
    assert 0 < len(first) <= settings.slots.max_slots == 20

    # 3a. the slots hold the symbols nearest to a threshold (pins aside): no trigger needed to get one
    slotted = system.directory.proxy("slots", SlotManagerProxy).snapshot().get(timeout=5).account(ACCOUNT)
    kinds = Counter(slot.trigger for slot in slotted.slots if not slot.pinned)
    assert kinds and set(kinds) == {TriggerKind.NEAR_SIGNAL}, kinds

    # 2. a dropped session comes back with every target confirmed again
    sessions_before = counter(system, "reconnects")
    kis_sim.faults.drop_sessions()
    assert wait_for(lambda: counter(system, "reconnects") > sessions_before, timeout=WAIT), "no reconnect"
    assert wait_for(lambda: streaming(system), timeout=WAIT), "targets not restored after the drop"

    # 3b. later scans move symbols in and out (replacements wait out the 120 s dwell)
    seen_in: set[str] = set()
    seen_out: set[str] = set()

    def changed() -> bool:
        now = set(targets(system))
        seen_in.update(now - first)
        seen_out.update(first - now)
        return bool(seen_in) and bool(seen_out)

    assert wait_for(changed, timeout=120, interval=0.5), "the subscriptions never changed"
    assert wait_for(lambda: streaming(system), timeout=WAIT), "the connection did not follow the change"

    def replaced() -> set[str]:
        ledger = system.context.paths.overflow_ledger(ACCOUNT, DAY)
        lines = read_jsonl(ledger).records if ledger.exists() else []
        return {line["symbol"] for line in lines if line["metadata"]["reason_code"] == "replaced"}

    assert wait_for(lambda: bool(replaced() & seen_out), timeout=WAIT), (replaced(), seen_out)

    # 1. the scan cadence and the batch calls
    elapsed = (clock.now() - started).total_seconds()
    scans = counter(system, "scans")
    universe = int(system.metrics.snapshot()["universe_symbols"])
    calls = kis_sim._rest.app.counts()[0].get(TrId.MULTI_PRICE, 0)
    assert 2 <= scans <= elapsed / settings.scan.interval_seconds + 2, (scans, elapsed)
    assert calls <= scans * math.ceil(universe / MULTI_PRICE_MAX_SYMBOLS) + 2, (calls, scans, universe)

    # 4. alerts: some went out, none twice inside the cooldown
    system.stop()
    paths: DataPaths = system.context.paths
    alerts = read_jsonl(paths.alerts_ledger(DAY)).records
    assert alerts, "no alert at all"
    last: dict[str, datetime] = {}
    cooldown = timedelta(seconds=settings.alerts.cooldown_seconds)
    for record in alerts:
        key = record["key"]
        at = datetime.fromisoformat(record["at"])
        assert key not in last or at - last[key] >= cooldown, f"{key} alerted twice within the cooldown"
        last[key] = at

    # 5. state on disk: subscriptions, last alert times, latest prices
    state = paths.state_dir
    subscriptions = json.loads((state / f"subscriptions.{ACCOUNT}.json").read_text(encoding="utf-8"))
    slots_state = json.loads((state / "slots.json").read_text(encoding="utf-8"))
    accounts = slots_state["state"]["accounts"]
    saved_slots = {slot["symbol"] for account in accounts for slot in account["slots"]}
    assert set(subscriptions["symbols"]) == saved_slots and saved_slots
    cooldowns = json.loads((state / "alert_cooldowns.json").read_text(encoding="utf-8"))
    assert cooldowns["last_sent"], cooldowns
    ticks = tick_files(paths, ACCOUNT, DAY)
    streamed = seen_in | first
    assert set(ticks) <= streamed and set(ticks) & saved_slots
    for path in ticks.values():
        records = read_jsonl(path).records
        assert records and records[-1]["price"] > 0
