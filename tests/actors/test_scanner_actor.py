"""ScannerActor on the simulator: batches per pass, cadence by phase, safe mode, context sync at 09:30."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import threading

import pykka
import pytest

from actors.directory import Directory
from actors.scanner import CALLS_IN_FLIGHT, ScannerActor
from actors.scheduler import SchedulerActor
from app.status_view import context_text
from config.settings import RateLimitSettings, ScanSettings, Settings
from core.context_sync import SnapshotQuote, TrackASnapshot, synchronize_context
from core.schedule import DayEvent
from kis.protocol import TrId
from messages.alerts import SystemAlert
from messages.control import ScanNow
from messages.market import ScanCompleted, SymbolProfile, UniverseReady
from messages.schedule import ClockTick, DayEventFired
from messages.selection import ContextSynced
from messages.system import Ping
from runtime.clock import KST
from tests.actors.control_plane_support import make_context, sim_account, start_recorders, wait_until

MONDAY = dt.date(2024, 3, 4)
PEERS = ("triggers", "recorder", "slots", "notifier", "universe")


@pytest.fixture
def kis_sim_config(kis_sim_config):
    """The suite's simulator on a manual clock at 08:59, 100 listed symbols."""
    return dataclasses.replace(kis_sim_config, speed=0, start=dt.time(8, 59), n_symbols=100)


@pytest.fixture(autouse=True)
def stop_actors():
    yield
    pykka.ActorRegistry.stop_all(timeout=5)


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(MONDAY, dt.time(hour, minute, second), tzinfo=KST)


def universe_of(sim) -> UniverseReady:
    listings = sorted(
        (item for item in sim.market.listings.values() if item.prev_close >= 4000 and not item.halted),
        key=lambda item: (-item.market_cap, item.code),
    )
    now = sim.clock.now()
    profiles = tuple(
        SymbolProfile(at=now, symbol=item.code, name=item.name, market=item.market,
                      market_cap=item.market_cap * 100_000_000, prev_close=item.prev_close)
        for item in listings
    )
    return UniverseReady(at=now, day=MONDAY, profiles=profiles)


def multi_price_calls(sim) -> int:
    """Successful intstock-multprice calls the simulator answered (its REST app's own counter)."""
    return sim._rest.app.counts()[0].get(TrId.MULTI_PRICE, 0)


class Scanning:
    """A scanner with recording peers on the simulator's manual clock."""

    def __init__(self, tmp_path, sim, scan: ScanSettings | None = None, retries: int = 5, start=None) -> None:
        self.sim = sim
        self.clock = sim.clock
        if start is not None:
            self.clock.set(start)
        settings = Settings(
            scan=scan or ScanSettings(interval_seconds=60, safe_mode_interval_seconds=120),
            rate_limit=RateLimitSettings(max_retries=retries, retry_backoff_seconds=(0.05,)),
            websocket={"feed": "krx"},  # the KRX feed's day: Track A from 09:00, context sync at 09:30
        )
        self.context = make_context(
            tmp_path, self.clock, rest_url=sim.rest_url, accounts=(sim_account("acct1"),), settings=settings
        )
        self.directory = Directory(self.clock)
        self.journals = start_recorders(self.directory, *PEERS)
        self.universe = universe_of(sim)
        self.start_scanner()

    def start_scanner(self) -> None:
        self.directory.register("scanner", ScannerActor.start("scanner", self.directory, self.context))
        self.directory.tell("scanner", self.universe)
        self.directory.ask("scanner", Ping(at=self.clock.now()))

    def scans(self) -> list[ScanCompleted]:
        return self.journals["triggers"].received(ScanCompleted)

    def move_to(self, moment: dt.datetime, *, expect_scans: int | None = None) -> list[ScanCompleted]:
        """Set the clock, make the scanner look at it, and wait until `expect_scans` passes have reported."""
        self.clock.set(moment)
        self.directory.ask("scanner", ClockTick(at=self.clock.now()))
        if expect_scans is not None:
            assert wait_until(lambda: len(self.scans()) >= expect_scans), f"{len(self.scans())} scans"
        self.directory.ask("scanner", Ping(at=self.clock.now()))
        for peer in PEERS:
            self.directory.ask(peer, Ping(at=self.clock.now()))
        return self.scans()


def test_a_pass_makes_ceil_n_over_30_calls_and_reports_to_triggers_and_recorder(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim)
    n = len(run.universe.profiles)
    assert run.move_to(at(8, 59, 30)) == []  # WARMUP: no Track A yet

    calls_before = multi_price_calls(kis_sim)
    scans = run.move_to(at(9, 0, 1), expect_scans=1)

    scan = scans[0]
    assert (scan.calls, scan.failed_calls, scan.scan_no) == (math.ceil(n / 30), 0, 1)
    assert multi_price_calls(kis_sim) - calls_before == math.ceil(n / 30)
    assert sorted(row.symbol for row in scan.rows) == sorted(p.symbol for p in run.universe.profiles)
    assert run.journals["recorder"].received(ScanCompleted) == [scan]
    assert run.context.metrics.count("scans") == 1
    assert run.context.metrics.snapshot()["last_scan_at"] == at(9, 0, 1).isoformat()


def test_passes_follow_the_interval_in_track_a_phases_only(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim)
    run.move_to(at(9, 0), expect_scans=1)
    assert len(run.move_to(at(9, 0, 59))) == 1
    assert len(run.move_to(at(9, 1), expect_scans=2)) == 2
    assert len(run.move_to(at(15, 29, 30), expect_scans=3)) == 3  # TRACK_A_CLOSING still scans
    assert len(run.move_to(at(15, 31))) == 3  # SHUTDOWN: no more
    assert len(run.move_to(at(16, 0))) == 3
    assert [scan.scan_no for scan in run.scans()] == [1, 2, 3]


def test_safe_mode_is_entered_under_a_rate_limit_burst_and_left_when_calls_succeed(tmp_path, kis_sim):
    scan = ScanSettings(interval_seconds=60, safe_mode_interval_seconds=120, batch_size=10)
    run = Scanning(tmp_path, kis_sim, scan=scan, retries=0)
    kis_sim.faults.rate_limit_burst(60)
    failed = run.move_to(at(9, 0), expect_scans=1)[0]
    # Aborted after 3 failures in a row; a call already waiting for its slot may still have gone.
    assert failed.rows == () and failed.failed_calls == failed.calls
    assert 3 <= failed.calls <= 3 + CALLS_IN_FLIGHT - 1 < math.ceil(len(run.universe.profiles) / 10)
    assert run.context.metrics.snapshot()["scanner_safe_mode"] is True

    kis_sim.faults.clear()
    assert len(run.move_to(at(9, 1))) == 1  # normal interval passed, safe interval not yet
    recovered = run.move_to(at(9, 2), expect_scans=2)[1]
    assert recovered.failed_calls == 0 and len(recovered.rows) == len(run.universe.profiles)
    assert run.context.metrics.snapshot()["scanner_safe_mode"] is False
    assert len(run.move_to(at(9, 3), expect_scans=3)) == 3  # back to the normal interval

    keys = [alert.key for alert in run.journals["notifier"].received(SystemAlert)]
    assert keys == ["scanner.safe_mode", "scanner.safe_mode.ended"]


def test_context_sync_at_0930_through_the_scheduler_from_the_opening_scans(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim, scan=ScanSettings(interval_seconds=600))
    run.directory.register("scheduler", SchedulerActor.start("scheduler", run.directory, run.context))
    for count, minute in enumerate((0, 10, 20), start=1):
        run.clock.set(at(9, minute))
        run.directory.ask("scheduler", ClockTick(at=run.clock.now()))
        run.move_to(at(9, minute), expect_scans=count)
    assert run.journals["triggers"].received(ContextSynced) == []

    run.clock.set(at(9, 30))
    run.directory.ask("scheduler", ClockTick(at=run.clock.now()))  # PhaseChanged(FULL_OPERATION)
    assert wait_until(lambda: run.journals["triggers"].received(ContextSynced) != [])
    run.move_to(at(9, 30))

    synced = run.journals["triggers"].received(ContextSynced)
    assert len(synced) == 1 and run.journals["slots"].received(ContextSynced) == []  # triggers passes it on
    scans = run.scans()
    assert len(scans) == 4  # the pass due at 09:30 ran before the sync
    snapshots = [
        TrackASnapshot(at(9, 10 * i), tuple(SnapshotQuote(r.symbol, r.price, r.volume) for r in scan.rows))
        for i, scan in enumerate(scans)
    ]
    expected = synchronize_context(snapshots, at(9, 0), at(9, 30))
    movers = synced[0].movers
    assert [m.symbol for m in movers] == [c.symbol for c in expected.candidates]
    assert 0 < len(movers) <= 41
    shown = run.context.metrics.snapshot()  # for the status view
    assert (shown["context_synced_at"], shown["context_snapshots"], shown["context_movers"]) == (
        synced[0].at, len(scans), len(movers))
    caps = {p.symbol: p.market_cap for p in run.universe.profiles}
    assert all(m.market_cap == caps[m.symbol] for m in movers)

    run.move_to(at(9, 40), expect_scans=5)
    assert len(run.journals["triggers"].received(ContextSynced)) == 1


def test_a_late_start_syncs_from_a_fresh_scan_and_a_restart_does_not_sync_again(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim, start=at(10, 15))
    assert wait_until(lambda: run.journals["triggers"].received(ContextSynced) != [])
    assert len(run.scans()) == 1
    assert run.journals["triggers"].received(ContextSynced)[0].movers

    run.directory.ref("scanner").stop()
    run.start_scanner()
    run.move_to(at(10, 16), expect_scans=2)
    assert len(run.journals["triggers"].received(ContextSynced)) == 1


def test_a_pass_already_due_when_the_last_one_ends_waits_for_the_sync(tmp_path, kis_sim):
    """Passes back to back (each due before the last ends) must not starve the context sync."""
    kis_sim.faults.slow_rest(0.3, 60)
    run = Scanning(tmp_path, kis_sim, start=at(10, 15))  # a late start: a pass at once
    run.clock.set(at(10, 16))  # the next pass is due before this one ends
    assert wait_until(lambda: len(run.scans()) >= 2, timeout=30)

    told = run.journals["triggers"].received((ScanCompleted, ContextSynced))
    assert [type(message) for message in told[:3]] == [ScanCompleted, ContextSynced, ScanCompleted]


def test_without_any_successful_pass_track_b_is_released_after_the_grace(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim, retries=0, start=at(9, 40))
    kis_sim.faults.rate_limit_burst(60)
    run.move_to(at(9, 40, 1), expect_scans=1)
    assert run.journals["triggers"].received(ContextSynced) == []
    run.move_to(at(9, 44), expect_scans=2)  # safe mode: one call, failed, pass aborted
    assert run.journals["triggers"].received(ContextSynced) == []

    run.move_to(at(9, 45, 2))
    synced = run.journals["triggers"].received(ContextSynced)
    assert len(synced) == 1 and synced[0].movers == ()


def test_stop_interrupts_a_pass_between_calls(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim)
    kis_sim.faults.slow_rest(0.5, 30)
    run.clock.set(at(9, 0))
    run.directory.tell("scanner", ClockTick(at=run.clock.now()))
    assert wait_until(lambda: any(t.name == "scanner-pass" for t in threading.enumerate()))

    run.directory.ref("scanner").stop(timeout=5)

    assert not [t.name for t in threading.enumerate() if t.name.startswith("scanner-")]
    assert run.scans() == []


def test_an_expired_token_is_renewed_and_the_pass_is_whole(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim)
    n = len(run.universe.profiles)
    run.move_to(at(9, 0, 1), expect_scans=1)
    kis_sim.faults.expire_tokens()
    calls_before = multi_price_calls(kis_sim)

    scan = run.move_to(at(9, 1, 1), expect_scans=2)[1]

    assert (scan.calls, scan.failed_calls, len(scan.rows)) == (math.ceil(n / 30), 0, n)
    assert multi_price_calls(kis_sim) - calls_before == math.ceil(n / 30)
    assert sorted(row.symbol for row in scan.rows) == sorted(p.symbol for p in run.universe.profiles)
def test_a_pass_forced_by_hand_runs_at_once_but_never_beside_another(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim)
    run.move_to(at(9, 0), expect_scans=1)
    run.move_to(at(9, 0, 20))  # the interval (60 s) is not over: no pass due
    answer = run.directory.ask("scanner", ScanNow(at=run.clock.now()))
    assert answer == f"Track A pass started over {len(run.universe.profiles)} symbols"
    assert run.directory.ask("scanner", ScanNow(at=run.clock.now())) == (
        "a Track A pass is already running: nothing started")
    assert wait_until(lambda: len(run.scans()) == 2)
    assert [scan.scan_no for scan in run.scans()] == [1, 2]


def test_a_sync_with_too_few_snapshots_starts_track_b_without_context_and_says_so(tmp_path, kis_sim):
    """Opening passes at 09:00 and 09:20 of the 3 asked for: the seed's degraded mode, no baseline, no
    movers, and the status view shows it."""
    run = Scanning(tmp_path, kis_sim, scan=ScanSettings(interval_seconds=1200, context_min_snapshots=3))
    run.move_to(at(9, 0), expect_scans=1)
    run.move_to(at(9, 20), expect_scans=2)
    run.move_to(at(9, 30, 1))  # FULL_OPERATION: the sync (the next pass is due at 09:40)
    assert wait_until(lambda: run.journals["triggers"].received(ContextSynced) != [])
    synced = run.journals["triggers"].received(ContextSynced)[0]
    assert synced.movers == () and synced.baseline is None
    assert synced.degraded is not None and "2 of the 3" in synced.degraded
    shown = run.context.metrics.snapshot()
    assert shown["context_degraded"] == synced.degraded and shown["context_baseline"] is None
    assert "context DEGRADED" in context_text(shown) and "2 of the 3" in context_text(shown)


def test_a_sync_with_enough_snapshots_hands_the_baseline_on(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim, scan=ScanSettings(interval_seconds=1200, context_min_snapshots=2))
    run.move_to(at(9, 0), expect_scans=1)
    run.move_to(at(9, 20), expect_scans=2)
    run.move_to(at(9, 30, 1))
    assert wait_until(lambda: run.journals["triggers"].received(ContextSynced) != [])
    synced = run.journals["triggers"].received(ContextSynced)[0]
    assert synced.degraded is None and synced.movers
    assert synced.baseline is not None and synced.baseline.sample_count == len(run.universe.profiles)
    assert run.context.metrics.snapshot()["context_baseline"] == synced.baseline.model_dump()


def test_the_closing_pass_runs_at_krxs_close_after_track_a_and_is_marked(tmp_path, kis_sim):
    run = Scanning(tmp_path, kis_sim, scan=ScanSettings(interval_seconds=600), start=at(15, 25))
    assert wait_until(lambda: len(run.scans()) == 1)  # TRACK_A_CLOSING: a pass at once
    run.move_to(at(15, 30))  # SHUTDOWN: no more regular passes
    run.move_to(at(15, 30, 1))
    assert len(run.scans()) == 1
    run.directory.ask("scanner", DayEventFired(at=at(15, 30), event=DayEvent.CLOSING_PASS))
    scans = run.move_to(at(15, 30, 2), expect_scans=2)
    assert [scan.closing for scan in scans] == [False, True]
    assert run.journals["recorder"].received(ScanCompleted)[-1].closing
    assert len(scans[-1].rows) == len(run.universe.profiles)
    assert run.context.metrics.snapshot()["last_closing_pass_at"] == at(15, 30, 1).isoformat()
    run.move_to(at(15, 45))
    assert len(run.scans()) == 2
