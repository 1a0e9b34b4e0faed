"""The whole supervised actor tree in-process against the simulator: crash every actor in turn and see each
one restarted with its state while the system keeps recording; a crash loop stops everything non-zero."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest

from actors.gap_recovery import IN_FLIGHT_SECONDS
from actors.slot_manager import SlotManagerProxy
from actors.supervisor import EXIT_ESCALATED
from app.observer import sim_accounts
from app.system import ObserverSystem
from config.loader import load_settings
from core.alerts import make_alert
from core.gaps import RESTART
from core.models import TriggerKind
from messages.alerts import AlertRaised
from messages.schedule import ClockTick
from messages.streaming import ConnectionState
from messages.system import Crash, Ping
from messages.universe import CurrentUniverse
from runtime.jsonl import JsonlWriter, read_jsonl
from runtime.logs import reset_logging, setup_logging
from runtime.paths import DataPaths
from runtime.state_store import StateStore
from tests.e2e.support import ends_in_complete_lines, tick_files, wait_for
from tools.kis_sim.server import KisSimulator

ACCOUNT = "sim1"
WS = f"ws.{ACCOUNT}"
SIM_SYMBOLS = 60
"""About 50 in the universe: a build of a few seconds, and still more symbols than the 40 tick slots."""
WAIT = 15.0
SCAN_KINDS = (TriggerKind.VOLUME_SURGE, TriggerKind.VOLATILITY_SPIKE)


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
def build_system(settings, kis_sim: KisSimulator) -> Iterator[Callable[..., ObserverSystem]]:
    """`build_system(restart_limit=None)`: an ObserverSystem on the simulator, logging to the log dir;
    stopped and cleaned up after the test."""
    built: list[ObserverSystem] = []

    def build(restart_limit: tuple[int, float] | None = None) -> ObserverSystem:
        system = ObserverSystem(
            settings, kis_sim.clock, kis_sim.rest_url, kis_sim.ws_url, restart_limit=restart_limit
        )
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


ROOM_FOR_ONE_CRASH_EACH = (50, 30.0)
"""A restart limit (max_restarts, period_seconds) far above one crash per actor (11 of them): the
production limit (5 in 30 s) would rightly stop a system whose actors all crash within seconds. The
crash-loop test keeps the production limit."""


def counter(system: ObserverSystem, name: str) -> int:
    return int(system.metrics.snapshot().get(name, 0))


def ws_status(system: ObserverSystem) -> Any:
    return system.directory.proxy(WS).status().get(timeout=5)


def slots(system: ObserverSystem) -> SlotManagerProxy:
    return system.directory.proxy("slots", SlotManagerProxy)


def streaming(system: ObserverSystem) -> bool:
    """Track B runs: the slot manager has targets, the connection confirmed them all, ticks are recorded."""
    targets = set(slots(system).targets().get(timeout=5).get(ACCOUNT, ()))
    status = ws_status(system)
    return (
        bool(targets)
        and status is not None
        and status.state is ConnectionState.CONNECTED
        and set(status.confirmed) == targets
        and counter(system, "ticks_recorded") > 0
    )


def crash_and_await_restart(system: ObserverSystem, child: str) -> None:
    before = system.supervisor.restart_counts().get(child, 0)
    assert system.directory.tell(child, Crash(at=system.context.clock.now(), reason=f"e2e crash of {child}"))
    restarted = system.supervisor.status.wait_until(lambda s: s.restarts(child) > before, timeout=WAIT)
    assert restarted, f"{child} was not restarted"
    assert system.directory.ask(child, Ping(at=system.context.clock.now()), timeout=WAIT) == child


def log_lines(log_dir: Path, actor: str, text: str) -> int:
    return sum(text in line for line in (log_dir / f"{actor}.log").read_text(encoding="utf-8").splitlines())


@pytest.mark.timeout(90)
def test_each_actor_crashed_in_turn_comes_back_with_its_state(build_system, settings) -> None:
    system = build_system(restart_limit=ROOM_FOR_ONE_CRASH_EACH).start()
    assert system.supervisor.restart_limit == ROOM_FOR_ONE_CRASH_EACH
    directory, clock = system.directory, system.context.clock
    log_dir = Path(settings.log_dir)
    assert wait_for(lambda: streaming(system), timeout=30), "Track B never started streaming"

    # recorder: the next incarnation appends to the same files
    ticks = counter(system, "ticks_recorded")
    crash_and_await_restart(system, "recorder")
    assert wait_for(lambda: counter(system, "ticks_recorded") > ticks + 100, timeout=WAIT)

    # notifier: the cooldown of an alert sent before the crash still holds after it
    alert = make_alert("005930", "삼성전자", "e2e_check", 1.0, 2.0, clock.now())
    sent = counter(system, "alerts_sent")
    directory.tell("notifier", AlertRaised(at=clock.now(), alert=alert))
    assert wait_for(lambda: counter(system, "alerts_sent") == sent + 1, timeout=WAIT)
    crash_and_await_restart(system, "notifier")
    suppressed = counter(system, "alerts_suppressed")
    directory.tell("notifier", AlertRaised(at=clock.now(), alert=alert))
    assert wait_for(lambda: counter(system, "alerts_suppressed") == suppressed + 1, timeout=WAIT)
    assert counter(system, "alerts_sent") == sent + 1

    # tokens: the token is kept (its age goes on), not issued again
    age = system.vault.token_age(ACCOUNT)
    crash_and_await_restart(system, "tokens")
    assert system.vault.token_age(ACCOUNT) >= age
    assert log_lines(log_dir, "tokens", "access token issued") == 1

    # universe: today's universe again, from its snapshot and the day's baseline cache (nothing fetched)
    ready = directory.ask("universe", CurrentUniverse(at=clock.now()), timeout=5)
    fetched = counter(system, "baselines_fetched")
    crash_and_await_restart(system, "universe")
    assert wait_for(
        lambda: directory.ask("universe", CurrentUniverse(at=clock.now()), timeout=5), timeout=WAIT
    )
    again = directory.ask("universe", CurrentUniverse(at=clock.now()), timeout=5)
    assert again.day == ready.day and _profiles(again) == _profiles(ready)
    assert counter(system, "baselines_fetched") == fetched > 0

    # scanner: the day's context sync is not done a second time
    crash_and_await_restart(system, "scanner")
    assert log_lines(log_dir, "scanner", "context synced") == 1

    # triggers: the scans' live triggers come back (tick triggers are saved on the rebalance cadence, so the
    # youngest may be lost; the ticks raise them again)
    live = directory.proxy("triggers").live_triggers().get(timeout=5)
    crash_and_await_restart(system, "triggers")
    after = {(t.symbol, t.kind) for t in directory.proxy("triggers").live_triggers().get(timeout=5)}
    now = clock.now()
    from_scans = {(t.symbol, t.kind) for t in live if t.kind in SCAN_KINDS and t.alive_at(now)}
    assert from_scans and from_scans <= after

    # slots: the same symbols on the same slots, since the same moments
    before = slots(system).snapshot().get(timeout=5)
    crash_and_await_restart(system, "slots")
    restored = slots(system).snapshot().get(timeout=5)
    assert _slot_view(restored) == _slot_view(before) and _slot_view(before)

    # gaps: back and answering
    crash_and_await_restart(system, "gaps")

    # minute jobs (off outside simulator mode): back and answering
    crash_and_await_restart(system, "minute_jobs")

    # ws: the new connection subscribes the same targets again
    targets = set(slots(system).targets().get(timeout=5)[ACCOUNT])
    crash_and_await_restart(system, WS)
    assert wait_for(lambda: set(ws_status(system).confirmed) == targets, timeout=WAIT)
    assert ws_status(system).state is ConnectionState.CONNECTED

    # scheduler: resumes in the same phase and repeats no boundary
    phase = system.metrics.snapshot()["phase"]
    crash_and_await_restart(system, "scheduler")
    assert directory.ask("scheduler", ClockTick(at=clock.now()), timeout=5) == ()
    assert system.metrics.snapshot()["phase"] == phase == "full_operation"

    # and the system as a whole kept running
    assert system.supervisor.restart_counts() == {child: 1 for child in system.child_ids}
    ticks = counter(system, "ticks_recorded")
    assert wait_for(lambda: counter(system, "ticks_recorded") > ticks + 100, timeout=WAIT)
    assert wait_for(lambda: streaming(system), timeout=WAIT)
    assert set(directory.child_ids()) == set(system.child_ids)
    assert not system.supervisor.stopped.is_set()

    assert system.stop() == 0
    paths = DataPaths(Path(settings.data_dir))
    files = tick_files(paths, ACCOUNT, clock.now().date())
    assert files and all(ends_in_complete_lines(path) for path in files.values())


@pytest.mark.timeout(60)
def test_crash_loop_stops_everything_with_a_non_zero_exit(build_system) -> None:
    system = build_system().start()
    max_restarts, _ = system.supervisor.restart_limit
    refs = {child: system.directory.ref(child) for child in system.child_ids}
    assert all(ref is not None and ref.is_alive() for ref in refs.values())

    for crash in range(max_restarts + 1):
        if system.supervisor.stopped.is_set():
            break
        ends = system.supervisor.status.ends("scanner")
        system.directory.tell("scanner", Crash(at=system.context.clock.now(), reason=f"crash loop {crash}"))
        assert system.supervisor.status.wait_until(
            lambda s, ends=ends: s.ends("scanner") > ends or s.stopped.is_set(), timeout=WAIT
        )
        if not system.supervisor.stopped.is_set():
            system.directory.ask("scanner", Ping(at=system.context.clock.now()), timeout=WAIT)

    assert system.supervisor.wait(timeout=WAIT) == EXIT_ESCALATED
    assert system.supervisor.restart_counts()["scanner"] == max_restarts
    assert system.stop() == EXIT_ESCALATED
    assert system.directory.child_ids() == ()
    assert all(not ref.is_alive() for ref in refs.values())
    assert wait_for(lambda: not pykka.ActorRegistry.get_all(), timeout=WAIT), pykka.ActorRegistry.get_all()
    assert "over the limit" in system.supervisor.status.reason
    summary = system.summary()
    assert summary["exit_code"] == EXIT_ESCALATED
    assert summary["restarts"]["scanner"] == max_restarts


def _profiles(ready: Any) -> list[dict[str, Any]]:
    return [profile.model_dump(exclude={"at"}) for profile in ready.profiles]


def _slot_view(state: Any) -> dict[str, tuple[str, str]]:
    return {
        slot.symbol: (account.name, slot.since.isoformat())
        for account in state.accounts
        for slot in account.slots
    }



def restart_markers(paths: DataPaths, day: date) -> list[dict[str, Any]]:
    return [row for row in read_jsonl(paths.gap_markers(ACCOUNT, day)).records if row["reason"] == RESTART]


@pytest.mark.timeout(60)
def test_a_start_opens_the_downtime_of_what_was_streaming_before_it(build_system, settings, kis_sim) -> None:
    """The saved target and a tick file of today from five minutes before this start: the symbol's gap runs
    from its last tick on disk until it streams again or leaves the target (the slot manager starts with
    its own), at the latest the stop; too long to back-fill, so it is marked."""
    paths = DataPaths(Path(settings.data_dir))
    system = build_system()
    started = system.context.clock.now()
    symbol = sorted(kis_sim.market.listings)[0]
    last = started - timedelta(minutes=5)
    saved = {"day": started.date().isoformat(), "symbols": [symbol], "gaps": {}}
    StateStore(paths.state_dir).save(f"subscriptions.{ACCOUNT}", saved)
    with JsonlWriter(paths.tick_file(ACCOUNT, "KRX", started.date(), symbol)) as writer:
        writer.write({"symbol": symbol, "exchange_time": last, "source": "ws"})
    system.start()
    assert system.directory.ask(WS, Ping(at=started), timeout=WAIT) == WS  # the DowntimeFound is handled
    assert system.stop() == 0

    (marker,) = restart_markers(paths, started.date())
    assert marker["symbol"] == symbol and marker["expected"] is True
    assert last - timedelta(seconds=IN_FLIGHT_SECONDS) <= datetime.fromisoformat(marker["start_time"]) <= last
    assert started <= datetime.fromisoformat(marker["end_time"]) <= system.context.clock.now()
