"""UniverseActor against the simulator: master files, snapshot on disk, baselines, restart, fallback, stop."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import pykka
import pytest
from loguru import logger

from actors.directory import Directory
from actors.universe import BASELINE_RETRY_SECONDS, UniverseActor
from config.settings import RateLimitSettings, Settings
from core.bars import DailyBar
from core.baselines import daily_baseline
from core.schedule import DayEvent
from core.settings import UniverseSettings
from core.universe import UniverseEntry, build_universe
from messages.alerts import SystemAlert
from messages.market import UniverseReady
from messages.schedule import DayEventFired
from messages.system import Ping
from messages.universe import CurrentUniverse
from runtime.clock import KST, SimulatedClock
from runtime.universe_store import UniverseStore
from tests.actors.control_plane_support import make_context, sim_account, start_recorders, wait_until
from tools.kis_sim.server import KisSimulator, SimConfig

MONDAY = dt.date(2024, 3, 4)
PEERS = ("scanner", "triggers", "slots", "gaps", "recorder", "notifier")
UNREACHABLE = "http://127.0.0.1:9/master"


@pytest.fixture
def sim() -> Iterator[KisSimulator]:
    config = SimConfig(seed=5, date=MONDAY, start=dt.time(4, 50), speed=0, n_symbols=60)
    with KisSimulator(config) as simulator:
        yield simulator
    pykka.ActorRegistry.stop_all(timeout=5)


@pytest.fixture
def accounts():
    return (sim_account("acct1"), sim_account("acct2"))


def expected_codes(sim: KisSimulator) -> set[str]:
    """What the filter must keep, straight from the simulator's listings."""
    listings = sim.market.listings.items()
    return {code for code, listing in listings if listing.prev_close >= 4000 and not listing.halted}


def start_universe(tmp_path, sim, accounts, *, settings=None, clock=None, context=None, journals=None,
                   retry_seconds=BASELINE_RETRY_SECONDS):
    context = context or make_context(
        tmp_path, clock or sim.clock, rest_url=sim.rest_url, accounts=accounts, settings=settings
    )
    directory = Directory(context.clock)
    journals = journals or {}
    journals |= start_recorders(directory, *(p for p in PEERS if p not in journals))
    universe = UniverseActor.start("universe", directory, context, progress=False,
                                   baseline_retry_seconds=retry_seconds)
    directory.register("universe", universe)
    directory.ask("universe", Ping(at=context.clock.now()))
    return context, directory, journals


def ready_of(journals, name="scanner", count=1) -> UniverseReady:
    assert wait_until(lambda: len(journals[name].received(UniverseReady)) >= count, timeout=20)
    return journals[name].received(UniverseReady)[count - 1]


def test_built_at_start_from_the_master_files_with_baselines_and_told_to_every_peer(tmp_path, sim, accounts):
    context, directory, journals = start_universe(tmp_path, sim, accounts)
    ready = ready_of(journals)

    assert ready.day == MONDAY and not ready.fallback
    assert {p.symbol for p in ready.profiles} == expected_codes(sim)
    caps = [p.market_cap or 0 for p in ready.profiles]
    assert caps == sorted(caps, reverse=True)
    for peer in ("triggers", "slots", "gaps", "recorder"):
        assert ready_of(journals, peer) == ready
    assert directory.ask("universe", CurrentUniverse(at=sim.clock.now())) == ready

    profile = ready.profiles[0]
    history = [
        DailyBar(symbol=profile.symbol, day=b.day, open=b.open, high=b.high, low=b.low, close=b.close,
                 volume=b.volume, value=b.value)
        for b in sim.market.history(profile.symbol)
    ]
    expected = daily_baseline(history, before=MONDAY)
    assert (profile.avg_volume_20d, profile.atr_14d, profile.ma_20d) == pytest.approx(
        (expected.avg_volume_20d, expected.atr_14d, expected.ma_20d)
    )
    assert profile.avg_volume_20d > 0 and profile.atr_14d > 0
    assert context.metrics.count("baselines_fetched") == len(ready.profiles)
    assert context.metrics.snapshot()["universe_symbols"] == len(ready.profiles)
    assert context.metrics.snapshot()["universe_built_at"] == context.clock.now()


def test_snapshot_files_are_in_the_seed_format(tmp_path, sim, accounts):
    context, _, journals = start_universe(tmp_path, sim, accounts)
    ready = ready_of(journals)
    files = sorted(p.name for p in context.paths.universe_dir.iterdir())
    assert files == ["20240304_KOSDAQ.json", "20240304_KOSPI.json", "20240304_kr_stocks.json"]

    by_code = {p.symbol: p for p in ready.profiles}
    for name in files:
        document = json.loads((context.paths.universe_dir / name).read_text(encoding="utf-8"))
        assert set(document) == {"metadata", "symbols"}
        metadata = document["metadata"]
        assert set(metadata) == {
            "date", "previous_trading_day", "generated_at", "symbol_count", "market", "filter_criteria",
            "version",
        }
        assert (metadata["date"], metadata["previous_trading_day"]) == ("20240304", "20240229")
        assert metadata["symbol_count"] == len(document["symbols"]) > 0
        for row in document["symbols"]:
            assert set(row) == {"code", "name", "market_cap", "prev_close", "avg_volume_20d"}
            assert row["prev_close"] >= 4000
            assert row["avg_volume_20d"] == round(by_code[row["code"]].avg_volume_20d)
            if metadata["market"] != "kr_stocks":
                assert by_code[row["code"]].market == metadata["market"]

    whole = json.loads((context.paths.universe_dir / "20240304_kr_stocks.json").read_text(encoding="utf-8"))
    assert whole["metadata"]["market"] == "kr_stocks"
    assert whole["metadata"]["symbol_count"] == len(ready.profiles)
    assert [row["code"] for row in whole["symbols"]] == [p.symbol for p in ready.profiles]  # best cap first
    caps = [row["market_cap"] for row in whole["symbols"]]
    assert caps == sorted(caps, reverse=True)


def test_a_day_whose_market_files_lack_the_kr_stocks_file_gets_it_at_the_next_start(tmp_path, sim, accounts):
    context, directory, journals = start_universe(tmp_path, sim, accounts)
    first = ready_of(journals)
    whole = context.paths.universe_dir / "20240304_kr_stocks.json"
    written = whole.read_bytes()
    whole.unlink()  # as an older observer left the day
    directory.ref("universe").stop()

    restarted = make_context(tmp_path, sim.clock, rest_url=sim.rest_url, accounts=accounts)
    _, _, journals = start_universe(tmp_path, sim, accounts, context=restarted)
    assert [p.symbol for p in ready_of(journals).profiles] == [p.symbol for p in first.profiles]
    assert whole.read_bytes() == written


def test_restart_reuses_the_snapshot_and_the_baseline_cache(tmp_path, sim, accounts):
    context, directory, journals = start_universe(tmp_path, sim, accounts)
    first = ready_of(journals)
    snapshot_files = {p.name: p.read_bytes() for p in context.paths.universe_dir.iterdir()}
    directory.ref("universe").stop()

    # A rebuild would need the master files: make them unreachable to prove none is attempted.
    unreachable = context.settings.model_copy(
        update={"universe": context.settings.universe.model_copy(update={"master_base_url": UNREACHABLE})}
    )
    restarted = make_context(
        tmp_path, sim.clock, rest_url=sim.rest_url, accounts=accounts, settings=unreachable
    )
    _, _, journals = start_universe(tmp_path, sim, accounts, context=restarted)
    again = ready_of(journals)

    assert [p.symbol for p in again.profiles] == [p.symbol for p in first.profiles]
    assert [p.atr_14d for p in again.profiles] == [p.atr_14d for p in first.profiles]
    assert not again.fallback
    assert restarted.metrics.count("baselines_fetched") == 0
    assert journals["notifier"].received() == []
    assert {p.name: p.read_bytes() for p in context.paths.universe_dir.iterdir()} == snapshot_files


def earlier_snapshot(tmp_path, day: dt.date) -> list[str]:
    entries = [
        UniverseEntry(code=code, name=f"old {code}", market="KOSPI", prev_close=10_000, market_cap=10**12 - i)
        for i, code in enumerate(("111110", "222220", "333330"))
    ]
    settings = UniverseSettings(markets=("KOSPI",))
    build = build_universe(entries, day, settings, dt.datetime.combine(day, dt.time(5), tzinfo=KST))
    store = UniverseStore(tmp_path / "data" / "config" / "universe")
    for snapshot in build.snapshots:
        store.save(snapshot)
    return [e.code for e in entries]


def test_failed_master_download_falls_back_to_the_latest_earlier_snapshot_and_alerts(tmp_path, sim, accounts):
    earlier_snapshot(tmp_path, dt.date(2024, 2, 28))
    codes = earlier_snapshot(tmp_path, dt.date(2024, 2, 29))
    settings = Settings(universe=UniverseSettings(markets=("KOSPI",), master_base_url=UNREACHABLE))
    context, _, journals = start_universe(tmp_path, sim, accounts, settings=settings)
    ready = ready_of(journals)

    assert ready.fallback and ready.day == MONDAY
    assert [p.symbol for p in ready.profiles] == codes
    alerts = journals["notifier"].received(SystemAlert)
    assert len(alerts) == 1 and "20240229" in alerts[0].text and "could not be built" in alerts[0].text
    assert not (context.paths.universe_dir / "20240304_KOSPI.json").exists()
    assert not (context.paths.universe_dir / "20240304_kr_stocks.json").exists()
    assert context.metrics.snapshot()["universe_fallback"] is True


def test_no_master_and_no_earlier_snapshot_alerts_and_announces_nothing(tmp_path, sim, accounts):
    settings = Settings(universe=UniverseSettings(master_base_url=UNREACHABLE))
    _, directory, journals = start_universe(tmp_path, sim, accounts, settings=settings)

    assert wait_until(lambda: journals["notifier"].received(SystemAlert) != [])
    assert "no earlier snapshot" in journals["notifier"].received(SystemAlert)[0].text
    assert directory.ask("universe", CurrentUniverse(at=sim.clock.now())) is None
    directory.ask("scanner", Ping(at=sim.clock.now()))
    assert journals["scanner"].received(UniverseReady) == []


def test_a_closed_day_waits_for_the_0500_build_event(tmp_path, sim, accounts):
    clock = SimulatedClock(dt.datetime(2024, 3, 3, 22, 0, tzinfo=KST), speed=0)  # Sunday evening
    _, directory, journals = start_universe(tmp_path, sim, accounts, clock=clock)
    assert directory.ask("universe", CurrentUniverse(at=clock.now())) is None

    clock.set(dt.datetime(2024, 3, 4, 5, 0, tzinfo=KST))
    directory.tell("universe", DayEventFired(at=clock.now(), event=DayEvent.UNIVERSE_BUILD))
    ready = ready_of(journals)

    assert ready.day == MONDAY and {p.symbol for p in ready.profiles} == expected_codes(sim)


def test_progress_is_logged_in_steps_when_not_on_a_terminal(tmp_path, sim, accounts):
    lines: list[str] = []
    sink = logger.add(
        lines.append, format="{message}", filter=lambda record: record["extra"].get("actor") == "universe"
    )
    try:
        _, _, journals = start_universe(tmp_path, sim, accounts)
        ready = ready_of(journals)
    finally:
        logger.remove(sink)
    steps = [line for line in lines if line.startswith("daily bars:") and "%" in line]
    assert 5 <= len(steps) <= 10
    total = len(ready.profiles)
    assert f"daily bars: {total} of {total} symbols done" in [line.strip() for line in lines]


def test_stop_interrupts_the_fetch_and_a_restart_fetches_only_what_is_missing(tmp_path, sim, accounts):
    sim.faults.slow_rest(0.1, 60)
    context, directory, journals = start_universe(tmp_path, sim, accounts)
    assert wait_until(lambda: context.metrics.count("baselines_fetched") >= 4)
    ref = directory.ref("universe")
    ref.stop(timeout=5)
    fetched = context.metrics.count("baselines_fetched")
    assert journals["scanner"].received(UniverseReady) == []
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("baselines-")]
    sim.faults.clear()

    _, _, journals = start_universe(tmp_path, sim, accounts, context=context)
    ready = ready_of(journals)
    assert context.metrics.count("baselines_fetched") == len(ready.profiles)
    assert 0 < fetched < len(ready.profiles)


def sim_baseline(sim: KisSimulator, symbol: str) -> tuple[float, float, float]:
    history = [
        DailyBar(symbol=symbol, day=b.day, open=b.open, high=b.high, low=b.low, close=b.close,
                 volume=b.volume, value=b.value)
        for b in sim.market.history(symbol)
    ]
    expected = daily_baseline(history, before=MONDAY)
    return expected.avg_volume_20d, expected.atr_14d, expected.ma_20d


def test_baselines_missed_at_the_build_are_fetched_in_the_background_the_same_day(tmp_path, sim, accounts):
    """The daily bars of every symbol fail at the build, and five again at the first retry: the second
    retry completes them, each round announces the universe again, and no restart is needed."""
    count = len(expected_codes(sim))
    sim.faults.html_errors(count + 5)  # the gateway answers 502 pages to the next calls
    settings = Settings(rate_limit=RateLimitSettings(max_retries=0))  # each failure is final for its round
    context, directory, journals = start_universe(tmp_path, sim, accounts, settings=settings,
                                                  retry_seconds=(0.2,))
    built = ready_of(journals)
    assert all(profile.atr_14d == 0 for profile in built.profiles)

    partly = ready_of(journals, count=2)
    assert partly.day == MONDAY and [p.symbol for p in partly.profiles] == [p.symbol for p in built.profiles]
    assert sum(profile.atr_14d == 0 for profile in partly.profiles) == 5

    complete = ready_of(journals, count=3)
    for profile in complete.profiles:
        assert (profile.avg_volume_20d, profile.atr_14d, profile.ma_20d) == pytest.approx(
            sim_baseline(sim, profile.symbol)
        )
    assert directory.ask("universe", CurrentUniverse(at=sim.clock.now())) == complete
    assert context.metrics.count("baselines_fetched") == count
    assert context.metrics.snapshot()["baselines_missing"] == 0
    for peer in ("triggers", "recorder"):
        assert ready_of(journals, peer, count=3) == complete
    directory.ask("universe", Ping(at=sim.clock.now()))
    assert len(journals["scanner"].received(UniverseReady)) == 3  # complete: no more rounds
    assert wait_until(lambda: not [t for t in threading.enumerate() if t.name == "baselines-retry"])


def test_a_stop_ends_the_background_retry_of_the_baselines(tmp_path, sim, accounts):
    sim.faults.html_errors(len(expected_codes(sim)))
    settings = Settings(rate_limit=RateLimitSettings(max_retries=0))
    _, directory, journals = start_universe(tmp_path, sim, accounts, settings=settings,
                                            retry_seconds=(600.0,))
    ready_of(journals)
    assert wait_until(lambda: [t for t in threading.enumerate() if t.name == "baselines-retry"])
    directory.ref("universe").stop(timeout=5)
    assert not [t for t in threading.enumerate() if t.name == "baselines-retry"]
