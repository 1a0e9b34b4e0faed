"""Track B through a whole KRX-feed day with freezegun: the real scheduler, tokens, universe, scanner, slot
manager and WebSocket connection on the simulator (following the frozen wall clock) from 04:55 to 23:00.

The control plane alone is covered by tests/actors/test_scheduler_actor.py; this adds the streaming half:
no tick subscription before the context sync (the wake-up's 08:03 pre-connect opens the session with no
registration), streaming from 09:30, every subscription gone at 15:00, and nothing at all on a weekend or a
KRX holiday.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest
from freezegun import freeze_time

from actors.directory import Directory
from actors.scanner import ScannerActor
from actors.scheduler import SchedulerActor
from actors.slot_manager import SlotManagerActor, SlotManagerProxy
from actors.tokens import TokenActor
from actors.universe import UniverseActor
from actors.ws_connection import WSConnectionActor
from config.settings import ScanSettings, Settings
from messages.market import ScanCompleted, TicksReceived, UniverseReady
from messages.schedule import ClockTick
from messages.selection import ContextSynced
from messages.streaming import ConnectionState
from messages.system import Ping
from runtime.clock import KST, SystemClock
from runtime.jsonl import read_jsonl
from tests.actors.control_plane_support import (
    Journal,
    RecordingActor,
    make_context,
    sim_account,
    start_recorders,
    wait_until,
)
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.kis_sim.ws import TRADE_FEEDS

MONDAY = date(2024, 3, 4)
SATURDAY = date(2024, 3, 9)
INDEPENDENCE_MOVEMENT_DAY = date(2024, 3, 1)  # a Friday, KRX closed
ACCOUNT = "acct1"
WS = f"ws.{ACCOUNT}"
FREEZE_IGNORE = ["websocket"]
"""websocket-client bounds its close handshake by `time.time()`: under a frozen clock that wait never ends.
(`real_asyncio` likewise keeps the simulator's event loop timers, and so its feed, on real time.)"""
PEERS = ("recorder", "notifier", "gaps")
"""Recording stand-ins for the actors Track B only talks to."""


class TriggersStandIn(RecordingActor):
    """Records like the other stand-ins (its journal shows the scans and the context sync) and does the
    trigger actor's part in the sync: passing it on to `slots` (with no ranking: no candidates here)."""

    def on_receive(self, message: Any) -> Any:
        super().on_receive(message)
        if isinstance(message, ContextSynced) and self.directory is not None:
            self.directory.tell("slots", message)
        return None


STEP = timedelta(minutes=10)
PRECONNECT = datetime(2024, 3, 4, 8, 3, tzinfo=KST)
"""The wake-up's WebSocket pre-connect on the KRX feed (noticed at the 08:10 step)."""
"""The scan interval: every step is a scan during Track A."""


def stop_all() -> None:
    """Stop the actors while the simulator still answers and the clock is still the frozen one."""
    pykka.ActorRegistry.stop_all(timeout=10)


@pytest.fixture(autouse=True)
def stop_actors() -> Iterator[None]:
    yield
    stop_all()


def kst(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=KST)


@dataclasses.dataclass
class Plane:
    directory: Directory
    journals: dict[str, Journal]
    sim: KisSimulator

    def tick(self, now: datetime, scans: int) -> None:
        """What the tickers would do at `now`; then wait for the scan pass (a worker thread) to report, so
        that `scans` passes are done, and pass a barrier on every real actor."""
        self.directory.ask("scheduler", ClockTick(at=now))
        self.directory.ask("scanner", ClockTick(at=now))
        reported = lambda: len(self.journals["triggers"].received(ScanCompleted)) == scans  # noqa: E731
        assert wait_until(reported), f"{scans} scans expected by {now:%H:%M}"
        for name in ("tokens", "universe", "scanner", "slots", WS):
            self.directory.ask(name, Ping(at=now))

    def targets(self) -> tuple[str, ...]:
        return self.directory.proxy("slots", SlotManagerProxy).targets().get(timeout=5)[ACCOUNT]

    def ws_status(self):
        return self.directory.proxy(WS).status().get(timeout=5)

    def synced(self) -> list[ContextSynced]:
        return self.journals["triggers"].received(ContextSynced)

    def not_streaming(self) -> bool:
        """No target and no tick registration, confirmed or pending."""
        status = self.ws_status()
        return self.targets() == () and status.target == () and not status.confirmed and not status.pending

    def never_subscribed(self) -> bool:
        """No tick registration at the simulator on any trade feed (a pre-connected session may be open)."""
        return self.not_streaming() and not any(self.sim.ws.registered(tr_id) for tr_id in TRADE_FEEDS)

    def never_connected(self) -> bool:
        return (
            self.not_streaming()
            and self.ws_status().state is not ConnectionState.CONNECTED
            and (self.sim.ws.session_count() == 0)
        )

    def streaming(self) -> bool:
        status = self.ws_status()
        targets = self.targets()
        return bool(targets) and set(status.confirmed) == set(targets) and self.sim.ws.session_count() == 1


def start_plane(tmp_path: Path, clock: SystemClock, sim: KisSimulator) -> Plane:
    context = make_context(
        tmp_path,
        clock,
        rest_url=sim.rest_url,
        accounts=(sim_account(ACCOUNT),),
        settings=Settings(scan=ScanSettings(interval_seconds=600), websocket={"feed": "krx"}),
    )
    context = dataclasses.replace(context, ws_url=sim.ws_url)
    directory = Directory(clock)
    journals = start_recorders(directory, *PEERS)
    journals["triggers"] = Journal()
    directory.register("triggers", TriggersStandIn.start("triggers", directory, journals["triggers"]))
    actors = {
        "tokens": TokenActor,
        "universe": UniverseActor,
        "scanner": ScannerActor,
        "slots": SlotManagerActor,
    }
    for name, actor in actors.items():
        directory.register(name, actor.start(name, directory, context))
        directory.ask(name, Ping(at=clock.now()))
    directory.register(WS, WSConnectionActor.start(WS, directory, context, account=ACCOUNT))
    directory.ask(WS, Ping(at=clock.now()))
    directory.register("scheduler", SchedulerActor.start("scheduler", directory, context))
    return Plane(directory, journals, sim)


def sim_config(tmp_path: Path) -> SimConfig:
    """A small market with few trades: each 10-minute jump of the clock sends a burst of catch-up trades."""
    return SimConfig(
        seed=5,
        wall_clock=True,
        n_symbols=60,
        trade_rate=0.5,
        pingpong_interval=0.5,
        sent_log=tmp_path / "kis_sim_sent.jsonl",
    )


def test_track_b_streams_only_between_the_context_sync_and_15_00(tmp_path: Path) -> None:
    track_b_start, track_b_stop = kst(MONDAY, 9, 30), kst(MONDAY, 15, 0)
    with freeze_time(kst(MONDAY, 4, 50), ignore=FREEZE_IGNORE, real_asyncio=True) as frozen:
        clock = SystemClock()
        with KisSimulator(sim_config(tmp_path)) as sim:
            plane = start_plane(tmp_path, clock, sim)
            streaming_at: list[datetime] = []
            preconnected: list[bool] = []
            scans = 0
            now = kst(MONDAY, 4, 50)
            while now < kst(MONDAY, 23, 0):
                now += STEP
                frozen.move_to(now)
                scans += kst(MONDAY, 9) <= now <= kst(MONDAY, 15, 30)  # 15:30: the closing pass
                plane.tick(now, scans)
                if now == kst(MONDAY, 5, 0):
                    assert wait_until(lambda: plane.journals["triggers"].received(UniverseReady), timeout=20)
                if not plane.synced():
                    assert plane.never_subscribed(), f"subscribed before the context sync, at {now:%H:%M}"
                    if now < PRECONNECT:
                        assert plane.never_connected(), f"connected before the pre-connect, at {now:%H:%M}"
                    else:
                        preconnected.append(wait_until(lambda: plane.sim.ws.session_count() == 1))
                elif now < track_b_stop:
                    assert wait_until(plane.streaming), f"not streaming at {now:%H:%M}"
                    streaming_at.append(now)
                else:
                    assert wait_until(plane.not_streaming), (
                        f"still streaming at {now:%H:%M}: {plane.targets()} {plane.ws_status()} "
                        f"{plane.sim.ws.session_count()}"
                    )

            synced = plane.synced()
            assert len(synced) == 1 and synced[0].at == track_b_start and synced[0].movers
            assert streaming_at[0] == track_b_start and streaming_at[-1] == track_b_stop - STEP
            assert scans == 40  # the last one the closing pass at 15:30
            assert preconnected and all(preconnected), "the pre-connect opened no session before the open"
            ticks = [t for frame in plane.journals["recorder"].received(TicksReceived) for t in frame.ticks]
            stop_all()
        sent = read_jsonl(tmp_path / "kis_sim_sent.jsonl").records

    assert ticks, "no tick reached the recorder"
    assert sent, "the simulator sent no trade"
    exchange_times = [datetime.fromisoformat(record["exchange_time"]) for record in sent]
    assert track_b_start <= min(exchange_times) and max(exchange_times) <= track_b_stop


@pytest.mark.parametrize("day", [SATURDAY, INDEPENDENCE_MOVEMENT_DAY], ids=["weekend", "krx-holiday"])
def test_nothing_streams_or_scans_on_a_closed_day(tmp_path: Path, day: date) -> None:
    with freeze_time(kst(day, 4, 50), ignore=FREEZE_IGNORE, real_asyncio=True) as frozen:
        clock = SystemClock()
        with KisSimulator(sim_config(tmp_path)) as sim:
            plane = start_plane(tmp_path, clock, sim)
            now = kst(day, 4, 50)
            while now < kst(day, 23, 0):
                now += timedelta(minutes=15)
                frozen.move_to(now)
                plane.tick(now, scans=0)
                assert plane.never_connected(), f"streaming on a closed day at {now:%H:%M}"
            assert plane.journals["triggers"].received((UniverseReady, ScanCompleted, ContextSynced)) == []
            stop_all()
    assert (
        not (tmp_path / "kis_sim_sent.jsonl").exists()
        or not read_jsonl(tmp_path / "kis_sim_sent.jsonl").records
    )
