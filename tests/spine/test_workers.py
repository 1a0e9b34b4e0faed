"""Stream workers on several machines, over a real NATS server and the KIS simulator on real sockets.

Two `run.py --role stream --accounts simN` worker processes stream one simulated key each; the control side
is the real slot manager, reached over the link and fed the workers' heartbeats by the real worker watch.
A SIGKILL of one worker moves its symbols to the other's key within 15 s with `worker_lost` gaps recorded.
The session leases are checked against the same server: a second holder waits, a restarted worker takes
over what its dead predecessor left.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pykka
import pytest

from actors.directory import Directory
from actors.slot_manager import SlotManagerActor, SlotManagerProxy
from config.settings import Settings, SpineSettings
from core.models import Candidate, TriggerKind
from core.workers import WAITING, Roster, RosterChange
from messages.gaps import TicksMissed
from messages.market import TicksReceived
from messages.selection import ContextSynced
from messages.streaming import AccountsServed
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
