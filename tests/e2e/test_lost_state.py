"""A state file lost or cut in half mid-day: the whole actor tree in-process against the simulator is
stopped, one file of `observer/state/` is damaged, and a new start on the same data folder streams Track B
again within one rebalance, with one warning line naming the damaged file, and opens the restart's gaps."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pykka
import pytest
from loguru import logger

from actors.slot_manager import SlotManagerProxy
from app.observer import sim_accounts
from app.system import ObserverSystem
from config.loader import load_settings
from messages.streaming import ConnectionState
from runtime.logs import reset_logging, setup_logging
from runtime.paths import DataPaths
from tests.e2e.support import wait_for
from tools.kis_sim.server import KisSimulator

ACCOUNT = "sim1"
WS = f"ws.{ACCOUNT}"
SIM_SYMBOLS = 60
WAIT = 30.0
STATE_FILES = ("slots", "scanner", "triggers", "trigger_universe", "alert_cooldowns", "scheduler",
               "wakeup", f"subscriptions.{ACCOUNT}")
"""Every document of the state store a day's run writes (checked against the folder after the first run)."""


@pytest.fixture
def kis_sim_config(kis_sim_config):
    return dataclasses.replace(kis_sim_config, n_symbols=SIM_SYMBOLS)


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings(
        env={},
        overrides={
            "accounts": sim_accounts(1),
            "data_dir": str(tmp_path / "data"),
            "log_dir": str(tmp_path / "logs"),
            "tokens": {"cache_dir": str(tmp_path / "tokens")},
            "universe": {"min_symbol_count": 20},
        },
    )


@pytest.fixture
def build_system(settings, kis_sim: KisSimulator) -> Iterator[Callable[[], ObserverSystem]]:
    built: list[ObserverSystem] = []

    def build() -> ObserverSystem:
        system = ObserverSystem(settings, kis_sim.clock, kis_sim.rest_url, kis_sim.ws_url)
        setup_logging(Path(settings.log_dir), [*system.child_ids, "supervisor"], 1, console_level="WARNING")
        built.append(system)
        return system

    try:
        yield build
    finally:
        for system in built:
            if not system.supervisor.stopped.is_set():
                system.stop()
            system.vault.close()
        pykka.ActorRegistry.stop_all()
        reset_logging()


def slot_targets(system: ObserverSystem) -> set[str]:
    targets = system.directory.proxy("slots", SlotManagerProxy).targets().get(timeout=5)
    return set(targets.get(ACCOUNT, ()) if targets else ())


def streaming(system: ObserverSystem) -> bool:
    """Track B runs: the slot manager has targets and the connection confirmed them all."""
    targets = slot_targets(system)
    status = system.directory.proxy(WS).status().get(timeout=5)
    return (
        bool(targets)
        and status is not None
        and status.state is ConnectionState.CONNECTED
        and set(status.confirmed) == targets
    )


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.timeout(240)
def test_each_state_file_lost_or_cut_in_half_mid_day_track_b_resumes_within_one_rebalance(
    build_system, settings
) -> None:
    paths = DataPaths(Path(settings.data_dir))
    state_dir = paths.state_dir
    rebalance = timedelta(seconds=settings.slots.rebalance_interval_seconds)
    system = build_system().start()
    assert wait_for(lambda: streaming(system), timeout=WAIT), "Track B never started streaming"
    # Ticks on disk, so the first restart finds a day that streamed before it (and opens its gaps).
    assert wait_for(lambda: system.metrics.snapshot().get("ticks_recorded", 0) > 0, timeout=WAIT)
    assert system.stop() == 0
    assert {path.stem for path in state_dir.glob("*.json")} == set(STATE_FILES)

    damages = [(name, "cut in half") for name in STATE_FILES]
    damages += [(name, "deleted") for name in STATE_FILES]
    damages.append(("every", "deleted"))  # the scanner syncs again; the slot manager waits for that sync
    for name, damage in damages:
        path = state_dir / f"{name}.json"
        if name == "every":
            for each in state_dir.glob("*.json"):
                each.unlink()
        elif damage == "deleted":
            path.unlink(missing_ok=True)
        else:
            cut_in_half(path)
        warned = restart_until_streaming(build_system, f"{name} {damage}", f"{name}.json", rebalance)
        if damage == "cut in half":
            assert len(warned) == 1, f"{name}: {warned}"
            assert "is invalid" in warned[0] and f"{name}.json.corrupt-1" in warned[0]
            assert (state_dir / f"{name}.json.corrupt-1").exists()
        else:
            assert warned == [], f"{name}: {warned}"


def restart_until_streaming(
    build_system: Callable[[], ObserverSystem], case: str, file_name: str, rebalance: timedelta
) -> list[str]:
    """Start a new system, see the slots filled within one rebalance and streamed, stop it; the warnings
    that named `file_name`."""
    system = build_system()  # (sets the logging up: the sinks go after it)
    warned: list[str] = []
    downtime: list[str] = []
    sinks = [
        logger.add(lambda message: warned.append(message.record["message"]), level="WARNING",
                   filter=lambda record: file_name in record["message"]),
        logger.add(lambda message: downtime.append(message.record["message"]), level="INFO",
                   filter=lambda record: "restored target symbols and" in record["message"]),
    ]
    try:
        system.start()
        started = system.context.clock.now()
        assert wait_for(lambda: bool(slot_targets(system)), timeout=WAIT), f"{case}: no slots"
        resumed = system.context.clock.now()
        assert wait_for(lambda: streaming(system), timeout=WAIT), f"{case}: not streaming"
        # Ticks of this run on disk, so the next start finds what streamed before it (and opens its gaps).
        on_disk = system.metrics.snapshot().get("ticks_recorded", 0)
        assert wait_for(lambda: system.metrics.snapshot().get("ticks_recorded", 0) > on_disk, timeout=WAIT)
        print(f"{case}: slots filled {(resumed - started).total_seconds():.1f} s (clock) after the start")
        assert resumed - started <= rebalance, f"{case}: slots after {resumed - started}"
        assert system.stop() == 0
    finally:
        for sink in sinks:
            logger.remove(sink)
    # The time between the runs is a gap of every symbol streaming at the stop, lost file or not (with
    # every file lost, what was streaming is not known).
    (line,) = downtime
    assert case.startswith("every") or not line.startswith("0 of"), f"{case}: {line}"
    return warned
