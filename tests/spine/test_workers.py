"""Stream workers on several machines, over a real NATS server and the KIS simulator on real sockets.

Two `run.py --role stream --accounts simN` worker processes stream one simulated key each; the control side
is the real slot manager, reached over the link and fed the workers' heartbeats by the real worker watch.
A SIGKILL of one worker moves its symbols to the other's key within 15 s with `worker_lost` gaps recorded.
The session leases are checked against the same server: a second holder waits, a restarted worker takes
over what its dead predecessor left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import nats
import pykka
import pytest
from nats.aio.msg import Msg

from actors.directory import Directory
from actors.slot_manager import SlotManagerActor, SlotManagerProxy
from app.system import ObserverSystem
from config.loader import load_settings
from config.settings import Settings, SpineSettings
from core.gaps import Gap
from core.models import Candidate, TriggerKind
from core.recovery import gap_marker
from core.workers import WAITING, Roster, RosterChange
from kis.models import MultiQuote
from kis.ticks import TradeTick
from messages.gaps import TicksMissed
from messages.market import ScanCompleted, SymbolProfile, TicksReceived, UniverseReady
from messages.recording import GapMarked, OverflowRecorded
from messages.selection import ContextSynced
from messages.streaming import AccountsServed
from runtime.clock import KST, SimulatedClock
from runtime.metrics import Metrics
from runtime.quotes import QuoteBoard
from spine.link import Link
from spine.server import NatsServer
from spine.workers import HELD, Holder, SessionLeases, WorkerWatch
from tests.actors.control_plane_support import make_context, sim_account, start_recorders, wait_until
from tools.kis_sim.cli import clock_line
from tools.kis_sim.server import KisSimulator, SimConfig

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "main"
CONTROL_PEERS = ("gaps", "triggers", "notifier", "minute_jobs")
REASSIGNED_WITHIN = 15.0


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """10:00 of a trading day: Track B runs (FULL_OPERATION)."""
    return dataclasses.replace(kis_sim_config, start=datetime(2024, 3, 4, 10, 0).time())


def worker(
    tmp_path: Path, name: str, nats_url: str, sim: KisSimulator, label: str = ""
) -> subprocess.Popen[bytes]:
    """`run.py --role stream --accounts <name>` against the shared simulator, in a data dir of its own (no
    token cache there: it issues its own approval key)."""
    label = label or name
    _, iso, wall = clock_line(sim.clock).split()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("KIS_", "OBSERVER_"))}
    command = [sys.executable, str(REPO / "run.py"), "--sim", "--role", "stream", "--accounts", name,
               "--nats", nats_url, "--kis-rest", sim.rest_url, "--kis-ws", sim.ws_url,
               "--sim-clock", f"{iso}@{wall}", "--speed", f"{sim.config.speed:g}",
               "--data-dir", str(tmp_path / label / "data"), "--log-dir", str(tmp_path / label / "logs"),
               "--http", "off"]
    out = (tmp_path / f"{label}.out").open("wb")
    return subprocess.Popen(command, cwd=REPO, env={**env, "PYTHONUNBUFFERED": "1"}, stdout=out,
                            stderr=subprocess.STDOUT)


def candidate(symbol: str, score: float, at: datetime) -> Candidate:
    return Candidate(symbol=symbol, score=score, trigger=TriggerKind.VOLUME_SURGE, strength=0.5,
                     detected_at=at)


def sessions_per_key(sim: KisSimulator) -> dict[str, int]:
    """Open WebSocket sessions by the app key they registered with (the simulator's word)."""
    keys = [sim.accounts.app_key_for_approval(key) for key in sim.ws.session_approval_keys()]
    return dict(Counter(key for key in keys if key is not None))


def streamed_on(journal_ticks: list[TicksReceived], account: str, since: int = 0) -> set[str]:
    return {tick.symbol for message in journal_ticks[since:] if message.account == account
            for tick in message.ticks}


@pytest.mark.timeout(150)
def test_a_killed_workers_symbols_stream_on_the_other_workers_key_with_their_gaps_recorded(
    tmp_path: Path, kis_sim: KisSimulator
) -> None:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    workers = {name: worker(tmp_path, name, server.url, kis_sim) for name in ("sim1", "sim2")}
    accounts = (sim_account("sim1"), sim_account("sim2"))
    context = make_context(tmp_path / "control", kis_sim.clock, rest_url=kis_sim.rest_url, accounts=accounts,
                           settings=Settings())
    directory = Directory(kis_sim.clock)
    journals = start_recorders(directory, *CONTROL_PEERS)
    directory.register("slots", SlotManagerActor.start("slots", directory, context))
    link = Link(server.url, INSTANCE, name="control")
    directory.route_remote(link, ("ws.sim1", "ws.sim2", "recorder"))
    link.start(directory)
    link.serve(("slots", *CONTROL_PEERS))

    def changed(change: RosterChange, roster: Roster) -> None:
        directory.tell("slots", AccountsServed(at=kis_sim.clock.now(), served=tuple(sorted(roster.served)),
                                               dead=tuple(dead.worker for dead in change.dead)))

    workers_settings = context.settings.workers
    watch = WorkerWatch(server.url, INSTANCE, ("sim1", "sim2"), workers_settings.timeout_seconds,
                        workers_settings.start_grace_seconds, changed).start()
    try:
        slots = directory.proxy("slots", SlotManagerProxy)
        # Both workers heard, each streaming its own key (its lease held, its session up).
        streaming = lambda: sorted(a for beat in watch.roster.beats.values() for a in beat.streaming)  # noqa: E731
        assert wait_until(lambda: streaming() == ["sim1", "sim2"], 60), watch.roster
        # A second worker for sim1's key waits for its session (one line says so) and streams nothing.
        workers["standby"] = worker(tmp_path, "sim1", server.url, kis_sim, label="standby")
        waiting = lambda: [b for b in watch.roster.beats.values() if b.sessions == {"sim1": WAITING}]  # noqa: E731
        assert wait_until(lambda: len(waiting()) == 1, 60), watch.roster
        assert "sim1: its session is held by worker" in (tmp_path / "standby.out").read_text(encoding="utf-8")
        now = kis_sim.clock.now()
        chosen = sorted(kis_sim.market.listings)[:6]
        movers = tuple(candidate(symbol, 10.0 - i, now) for i, symbol in enumerate(chosen))
        directory.tell("slots", ContextSynced(at=now, movers=movers))
        targets = slots.targets().get(timeout=10)
        assert all(len(targets[name]) == 3 for name in ("sim1", "sim2")), targets
        ticks = lambda: journals["gaps"].received(TicksReceived)  # noqa: E731
        assert wait_until(lambda: streamed_on(ticks(), "sim2") & set(targets["sim2"]), 30), "sim2 streams"

        seen = len(ticks())
        killed_at = time.monotonic()
        workers["sim2"].send_signal(signal.SIGKILL)
        workers["sim2"].wait(10)
        moved = set(targets["sim2"])
        assert wait_until(lambda: streamed_on(ticks(), "sim1", seen) & moved, REASSIGNED_WITHIN), (
            slots.targets().get(timeout=10))
        elapsed = time.monotonic() - killed_at
        print(f"\nreassignment after SIGKILL of a worker: {elapsed:.1f} s (first tick of a moved symbol on "
              f"the other worker's key; worker timeout {context.settings.workers.timeout_seconds:g} s)")
        assert set(slots.targets().get(timeout=10)["sim1"]) == set(chosen)
        missed = [m for m in journals["gaps"].received(TicksMissed) if m.reason == "worker_lost"]
        assert [(m.account, set(m.symbols)) for m in missed] == [("sim2", moved)]
        assert watch.roster.served == {"sim1"} and len(waiting()) == 1
        assert sessions_per_key(kis_sim) == {"SIM-APPKEY-0001-observer": 1}  # never two sessions for a key
    finally:
        watch.stop()
        link.stop()
        directory.stopping()
        for process in workers.values():  # done with them: a graceful stop would wait for a control
            process.kill()
            process.wait(10)
        pykka.ActorRegistry.stop_all()
        server.stop()


@pytest.mark.timeout(40)
def test_a_second_holder_waits_and_a_restarted_worker_takes_over_its_dead_predecessors_lease(
    tmp_path: Path,
) -> None:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lost: list[str] = []
    spine = SpineSettings(instance=INSTANCE)
    first = SessionLeases(server.url, spine, Holder("vm1-acct1", "vm1", dead.pid), ("acct1",), 5.0,
                          on_lost=lost.append)
    other = SessionLeases(server.url, spine, Holder("vm2-acct1", "vm2", os.getpid()), ("acct1",), 5.0,
                          on_lost=lambda _account: None)
    again = SessionLeases(server.url, spine, Holder("vm1-acct1", "vm1", os.getpid()), ("acct1",), 5.0,
                          on_lost=lambda _account: None)
    try:
        assert first.open() and first.acquire(threading.Event())
        assert first.states() == {"acct1": HELD}
        # Another worker for the same key waits (the entry names its holder) until told to stop.
        stop = threading.Event()
        threading.Timer(1.5, stop.set).start()
        assert not other.open()
        assert not other.acquire(stop)
        assert other.states() == {"acct1": WAITING}
        # The same worker restarted on the same host (the holder's pid is gone) takes the entry over at once
        # (`first` still renews it, so it would never expire), and `first` learns it lost it.
        assert again.open() and again.acquire(threading.Event())
        assert wait_until(lambda: lost == ["acct1"], 10)
    finally:
        for leases in (again, other, first):
            leases.release()
        server.stop()


class Collector:
    """A plain nats-py subscriber outside the observer's code, on a thread of its own: what arrives on
    `subject`, parsed as JSON."""

    def __init__(self, url: str, subject: str) -> None:
        self.got: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(url, subject),), daemon=True)

    def __enter__(self) -> Collector:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    async def _main(self, url: str, subject: str) -> None:
        nc = await nats.connect(url)

        async def on_message(msg: Msg) -> None:
            self.got.append(json.loads(msg.data))

        await nc.subscribe(subject, cb=on_message)
        await nc.flush()
        self._ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        await nc.close()


def lines_under(root: Path, pattern: str) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(root.rglob(pattern))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def quote(symbol: str) -> MultiQuote:
    return MultiQuote(symbol=symbol, name=f"test {symbol}", price=1000, change=10, sign="2", change_rate=1.0,
                      volume=10, value=10_000, open=990, high=1010, low=980, upper_limit=1300,
                      lower_limit=700, prev_close=990, base_price=990, ask=1010, bid=1000)


@pytest.mark.timeout(90)
def test_two_workers_write_and_publish_each_record_once_and_both_get_the_universe(
    tmp_path: Path, kis_sim: KisSimulator
) -> None:
    """Each worker runs a recorder: a scan's snapshots, an overflow ledger and a gap marker told by the
    control land in one worker's journal and on the spine once; UniverseReady reaches both recorders (every
    snapshot file is under the universe's market, in both data dirs)."""
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    workers = {name: worker(tmp_path, name, server.url, kis_sim) for name in ("sim1", "sim2")}
    control = Directory(kis_sim.clock)
    link = Link(server.url, INSTANCE, name="control")
    control.route_remote(link, ("ws.sim1", "ws.sim2", "recorder"))
    link.start(control)
    symbols = [f"9{number:05d}" for number in range(20)]
    try:
        ready = lambda name: "observer: stream ready" in (tmp_path / f"{name}.out").read_text()  # noqa: E731
        assert wait_until(lambda: all(ready(name) for name in workers), 60), "both workers serve"
        with Collector(server.url, f"observer.{INSTANCE}.snapshot.>") as published:
            now = kis_sim.clock.now()
            profiles = tuple(SymbolProfile(at=now, symbol=symbol, name=symbol, market="KOSDAQ",
                                           market_cap=None, prev_close=990) for symbol in symbols)
            assert control.tell("recorder", UniverseReady(at=now, day=now.date(), profiles=profiles))
            for number, symbol in enumerate(symbols, start=1):
                scan = ScanCompleted(at=now, account="sim1", scan_no=number, calls=1, duration_seconds=0.1,
                                     rows=(quote(symbol),))
                assert control.tell("recorder", scan)
            ledger = ({"symbol": symbols[0], "rank": 41}, {"symbol": symbols[1], "rank": 42})
            assert control.tell("recorder", OverflowRecorded(at=now, account="sim1", lines=ledger))
            gap = Gap(symbol=symbols[0], start=now - timedelta(seconds=70), end=now, expected=True,
                      reason="observer_restart")
            assert control.tell("recorder", GapMarked(at=now, account="sim1", marker=gap_marker(gap, "test",
                                                                                                 at=now)))
            link.flush()
            data = {name: tmp_path / name / "data" for name in workers}
            snapshots = lambda: [line for name in workers  # noqa: E731
                                 for line in lines_under(data[name], "snapshots.jsonl")]
            assert wait_until(lambda: len(snapshots()) >= len(symbols), 15), snapshots()
            time.sleep(1.5)  # a second copy, if any, has been flushed by now
            assert sorted(line["symbol"] for line in snapshots()) == symbols
            facts = lambda: sorted(f["symbol"] for f in published.got if f.get("type") == "snapshot")  # noqa: E731
            assert wait_until(lambda: facts() == symbols, 5), facts()
        for name in workers:  # each worker took some of the scans, filed under the universe's market
            files = sorted(data[name].rglob("snapshots.jsonl"))
            assert files and all(path.parts[-4:-2] == ("sim1", "KOSDAQ") for path in files), (name, files)
        overflow = [line for name in workers for line in lines_under(data[name], "*_overflow.jsonl")]
        assert overflow == list(ledger)
        markers = [line for name in workers for line in lines_under(data[name], "*_gaps.jsonl")
                   if line.get("symbol") == symbols[0]]
        assert len(markers) == 1, markers
    finally:
        link.stop()
        for process in workers.values():
            process.kill()
            process.wait(10)
        pykka.ActorRegistry.stop_all()
        server.stop()


def worker_figures(process: str, account: str, ticks: int, recorder_restarts: int) -> dict[str, Any]:
    """What a stream worker's `ObserverSystem` shares: its counters, its quote board, its children."""
    metrics, quotes = Metrics(), QuoteBoard()
    metrics.inc("ticks_recorded", ticks)
    metrics.set(f"ws_state.{account}", "connected")
    quotes.record(account, trades(account, ticks))
    return {"process": process, "metrics": metrics.shareable(), "quotes": quotes.shareable(),
            "running": ["recorder", f"ws.{account}"], "restarts": {"recorder": recorder_restarts}}


def trades(account: str, count: int) -> list[TradeTick]:
    symbol = "005930" if account == "sim1" else "000660"
    at = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
    return [TradeTick(symbol, at, 71000 + i, 1, "2", 0.1, 1, 1, 1, 1, 1, 1, 1, 1, "1", 100.0, "0", ())
            for i in range(count)]


@pytest.mark.timeout(40)
def test_the_control_shows_every_workers_actors_and_adds_up_their_counters(tmp_path: Path) -> None:
    """Two stream workers share their figures over the link; the control's status (running actors, restarts,
    counters, the quote board) holds both, summed, instead of flipping between them."""
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    settings = load_settings(None, overrides={"data_dir": str(tmp_path / "data"),
                                              "log_dir": str(tmp_path / "logs")})
    clock = SimulatedClock(datetime(2024, 3, 4, 10, 0, tzinfo=KST), speed=0)
    control = ObserverSystem(settings, clock, role="control",
                             link=Link(server.url, INSTANCE, name="control"))
    shared = {"vm1-sim1/11": worker_figures("vm1-sim1/11", "sim1", 30, 1),
              "vm2-sim2/22": worker_figures("vm2-sim2/22", "sim2", 12, 2)}
    links = [Link(server.url, INSTANCE, name=f"stream-{process}") for process in shared]
    for stream_link, figures in zip(links, shared.values(), strict=True):
        stream_link.share(lambda figures=figures: figures)
    assert control.link is not None
    control.link.start(control.directory)
    try:
        for stream_link in links:
            stream_link.start(Directory(clock))
        assert wait_until(lambda: control.metrics.count("ticks_recorded") == 42, 10), (
            control.metrics.count("ticks_recorded"))
        time.sleep(2.5)  # several rounds of sharing from both: the sums stay
        assert control.metrics.count("ticks_recorded") == 42
        assert control.context.quotes.account_ticks() == {"sim1": 30, "sim2": 12}
        assert set(control.context.quotes.symbols()) == {"005930", "000660"}
        assert {"recorder", "ws.sim1", "ws.sim2"} <= set(control.running_ids())
        assert control.restart_counts()["recorder"] == 3
        snapshot = control.metrics.snapshot()
        assert snapshot["ws_state.sim1"] == snapshot["ws_state.sim2"] == "connected"
    finally:
        for stream_link in links:
            stream_link.stop()
        control.link.stop()
        server.stop()
