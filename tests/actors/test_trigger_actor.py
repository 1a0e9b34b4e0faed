"""TriggerActor under a real Supervisor: scans and ticks become triggers, one alert per new trigger, the
ranking reaches `slots` on change and on the rebalance cadence, triggers expire, manual overrides, hybrid
signals, and a crash that keeps the live triggers. `slots` and `notifier` are recording actors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import SecretStr

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from actors.supervisor import ChildSpec, Supervisor
from actors.triggers import PICKS_RETRY_SECONDS, TriggerActor
from config.accounts import Account
from config.settings import Settings
from core.context_sync import BaselineMetrics
from core.models import TriggerKind
from core.settings import ManualRule, SignalSettings, SlotSettings, TriggerSettings
from kis.models import MultiQuote
from kis.rest import TokenSource
from kis.ticks import TradeTick
from messages.alerts import AlertRaised, SystemAlert
from messages.control import ManualTrigger, Pick, PicksLoaded
from messages.market import ScanCompleted, SymbolProfile, TicksReceived, UniverseReady
from messages.schedule import ClockTick
from messages.selection import CandidatesRanked, ContextSynced, ManualOverride
from messages.system import Crash, Ping
from messages.universe import CurrentUniverse
from runtime.clock import KST, SimulatedClock
from runtime.metrics import Metrics
from runtime.paths import DataPaths

START = datetime(2024, 3, 4, 10, 0, tzinfo=KST)  # a Monday, an hour into the session
WAIT = 10.0
NO_TICKER = 3600.0  # the tests send ClockTick themselves


class Journal(ObserverActor):
    """A real peer standing in for `slots` or `notifier`; `ask("messages")` answers what it was told."""

    def __init__(self, name: str, directory: Directory) -> None:
        super().__init__(name, directory)
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "messages":
            return list(self.messages)
        self.messages.append(message)
        return None


class UniverseStandIn(ObserverActor):
    """A real peer standing in for `universe`: answers CurrentUniverse with today's announcement."""

    def on_receive(self, message: Any) -> Any:
        return UNIVERSE if isinstance(message, CurrentUniverse) else None


class NoCredentials:
    def token_source(self, account: str) -> TokenSource:
        raise AssertionError("the trigger actor never calls KIS")

    def approval_key(self, account: str) -> SecretStr:
        raise AssertionError("the trigger actor never calls KIS")


def make_context(tmp_path: Path, *, triggers: TriggerSettings | None = None,
                 signals: SignalSettings | None = None) -> ObserverContext:
    accounts = (Account(name="acct1", app_key=SecretStr("key-acct1-0123456789"),
                        app_secret=SecretStr("secret-acct1-0123456789"), max_slots=2),)
    settings = Settings(accounts=accounts, triggers=triggers or TriggerSettings(),
                        signals=signals or SignalSettings(),
                        slots=SlotSettings(rebalance_interval_seconds=30))
    return ObserverContext(settings=settings, clock=SimulatedClock(START, speed=0), metrics=Metrics(),
                           paths=DataPaths(tmp_path), vault=NoCredentials())


class Harness:
    started: ClassVar[list[Harness]] = []

    def __init__(self, context: ObserverContext) -> None:
        self.context = context
        self.clock: SimulatedClock = context.clock  # type: ignore[assignment]
        specs = [ChildSpec(id="notifier", actor_class=Journal), ChildSpec(id="slots", actor_class=Journal),
                 ChildSpec(id="triggers", actor_class=TriggerActor,
                           kwargs={"context": context, "tick_seconds": NO_TICKER})]
        self.supervisor = Supervisor(specs, clock=self.clock)
        self.supervisor.start()
        self.directory = self.supervisor.directory
        Harness.started.append(self)

    def tell(self, message: Any) -> None:
        assert self.directory.tell("triggers", message)
        self.directory.ask("triggers", Ping(at=self.clock.now()), timeout=WAIT)

    def received(self, peer: str, kind: type) -> list[Any]:
        return [m for m in self.directory.ask(peer, "messages", timeout=WAIT) if isinstance(m, kind)]

    def rankings(self) -> list[list[str]]:
        return [[c.symbol for c in m.candidates] for m in self.received("slots", CandidatesRanked)]

    def alerts(self) -> list[tuple[str, str]]:
        return [(m.alert.symbol, m.alert.signal) for m in self.received("notifier", AlertRaised)]

    def clock_tick(self) -> None:
        self.tell(ClockTick(at=self.clock.now()))

    def live(self) -> list[tuple[str, TriggerKind]]:
        live = self.directory.proxy("triggers").live_triggers().get(timeout=WAIT)
        return [(t.symbol, t.kind) for t in live]


@pytest.fixture(autouse=True)
def _stop_harnesses() -> Iterator[None]:
    """Each harness's supervisor stops its tree in order (the conftest's `_stop_actors` sweeps up after)."""
    yield
    for harness in Harness.started:
        harness.supervisor.stop()
    Harness.started.clear()


def profile(symbol: str, name: str, *, market_cap: int = 10**12, avg_volume: float = 1_000_000,
            atr: float = 2_000, ma: float = 70_000, avg_turnover: float = 7e10) -> SymbolProfile:
    return SymbolProfile(at=START, symbol=symbol, name=name, market="KOSPI", market_cap=market_cap,
                         prev_close=70_000, avg_volume_20d=avg_volume, avg_turnover_20d=avg_turnover,
                         atr_14d=atr, ma_20d=ma)


UNIVERSE = UniverseReady(at=START, day=START.date(), profiles=(
    profile("005930", "삼성전자"), profile("000660", "SK하이닉스"), profile("035720", "카카오")))


def quote(symbol: str, volume: int, *, price: int = 70_500, high: int = 71_000,
          low: int = 70_000) -> MultiQuote:
    return MultiQuote(symbol=symbol, name="", price=price, change=price - 70_000, sign="2", change_rate=0.7,
                      volume=volume, value=volume * price, open=70_000, high=high, low=low,
                      upper_limit=91_000, lower_limit=49_000, prev_close=70_000, base_price=70_000,
                      ask=price + 100, bid=price)


def scan(number: int, *rows: MultiQuote, at: datetime = START) -> ScanCompleted:
    return ScanCompleted(at=at, account="acct1", scan_no=number, rows=rows, calls=1, duration_seconds=0.5)


def trade(symbol: str, at: datetime, price: int = 70_500, volume: int = 10) -> TradeTick:
    return TradeTick(symbol, at, price, price - 70_000, "2", 0.7, volume, 1_000, 70_500_000, 70_000, 71_000,
                     70_000, price + 100, price, "1", 100.0, "0", ())


def long_scan(number: int, first: MultiQuote, last: MultiQuote) -> ScanCompleted:
    """`first`, then quiet rows of symbols outside the universe, `last`."""
    quiet = tuple(quote(f"9{n:05d}", 1_000) for n in range(47))
    return scan(number, first, *quiet, last)


LONG_SCAN = long_scan(1, quote("005930", 700_000), quote("000660", 700_000))


def test_a_surge_in_a_scan_becomes_one_trigger_one_alert_and_a_ranking(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    # an hour in, a normal day's pace is 1,000,000 x 60/390 = 153,846 shares: 700,000 is 4.55x
    harness.tell(scan(1, quote("005930", 700_000), quote("000660", 150_000), quote("035720", 100_000)))

    assert harness.alerts() == [("005930", "volume_surge")]
    alert = harness.received("notifier", AlertRaised)[0].alert
    assert alert.text.startswith(
        "[volume_surge] 005930 삼성전자 | volume vs a normal day's pace 4.55x >= 3.00x")
    assert harness.rankings() == [["005930"]]
    assert harness.live() == [("005930", TriggerKind.VOLUME_SURGE)]

    later = START + timedelta(seconds=60)
    harness.clock.set(later)
    harness.tell(scan(2, quote("005930", 720_000), quote("000660", 150_000), at=later))
    assert harness.alerts() == [("005930", "volume_surge")]  # a renewal raises no alert
    assert harness.rankings() == [["005930"]]  # and does not change the ranking materially
    assert harness.context.metrics.count("triggers") == 1


def test_rankings_follow_the_rebalance_cadence_and_triggers_expire(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    harness.tell(scan(1, quote("005930", 700_000), quote("000660", 150_000, high=75_000, low=69_000)))
    assert harness.live() == [("000660", TriggerKind.VOLATILITY_SPIKE), ("005930", TriggerKind.VOLUME_SURGE)]
    assert len(harness.rankings()) == 1

    harness.clock_tick()  # the first tick rebalances at once
    harness.clock_tick()  # no time has passed: nothing
    assert len(harness.rankings()) == 2
    harness.clock.advance(30)
    harness.clock_tick()
    assert harness.rankings()[-1] == ["005930", "000660"]  # volume surge weighs more than volatility
    assert len(harness.rankings()) == 3

    harness.clock.advance(271)  # 301 s after detection: past both 300 s TTLs
    harness.clock_tick()
    assert harness.live() == []
    assert harness.rankings()[-1] == []


def test_a_burst_of_trades_fires_trade_velocity_from_the_tick_path(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    frame = tuple(trade("035720", START + timedelta(seconds=i // 12)) for i in range(120))  # 12 trades/s
    harness.tell(TicksReceived(at=START, account="acct1", ticks=frame, received_mono=0.0))

    assert harness.alerts() == [("035720", "trade_velocity")]
    assert harness.rankings() == [["035720"]]
    harness.tell(TicksReceived(at=START, account="acct1", ticks=frame, received_mono=0.0))
    assert harness.alerts() == [("035720", "trade_velocity")]
    assert harness.context.metrics.count("triggers") == 1


def test_manual_overrides_are_candidates_without_alerts(tmp_path: Path) -> None:
    triggers = TriggerSettings(manual=ManualRule(symbols=("000660",)))
    harness = Harness(make_context(tmp_path, triggers=triggers))
    assert harness.live() == [("000660", TriggerKind.MANUAL)]

    harness.tell(ManualOverride(at=START, symbol="035720"))
    assert harness.received("slots", ManualOverride) == [ManualOverride(at=START, symbol="035720")]
    assert harness.rankings()[-1] == ["000660", "035720"]
    harness.tell(ManualOverride(at=START, symbol="000660", active=False))
    assert harness.live() == [("035720", TriggerKind.MANUAL)]
    assert harness.alerts() == []

    harness.clock.advance(86_400)  # no TTL
    harness.clock_tick()
    assert harness.live() == [("035720", TriggerKind.MANUAL)]


def test_a_long_scan_and_the_trades_after_it_are_evaluated_in_order(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    burst = tuple(trade("035720", START + timedelta(seconds=i // 12)) for i in range(120))  # 12 trades/s
    assert harness.directory.tell("triggers", LONG_SCAN)
    assert harness.directory.tell("triggers", TicksReceived(at=START, account="acct1", ticks=burst,
                                                            received_mono=0.0))
    harness.directory.ask("triggers", Ping(at=START), timeout=WAIT)

    assert harness.alerts() == [("005930", "volume_surge"), ("000660", "volume_surge"),
                                ("035720", "trade_velocity")]
    assert harness.context.metrics.count("triggers") == 3


def test_the_context_sync_reaches_slots_after_the_ranking_of_the_scans_before_it(tmp_path: Path) -> None:
    """The scanner tells its sync right after the pass it was made from: slots must get the pass's ranking
    first, or Track B's first allocation gives the free slots to the opening movers alone."""
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    synced = ContextSynced(at=START, movers=())
    assert harness.directory.tell("triggers", LONG_SCAN)
    assert harness.directory.tell("triggers", synced)
    harness.directory.ask("triggers", Ping(at=START), timeout=WAIT)
    told = [m for m in harness.directory.ask("slots", "messages", timeout=WAIT)
            if isinstance(m, CandidatesRanked | ContextSynced)]
    assert [type(m) for m in told][-2:] == [CandidatesRanked, ContextSynced] and told[-1] == synced
    assert sorted(c.symbol for c in told[-2].candidates) == ["000660", "005930"]
    assert len(harness.received("slots", ContextSynced)) == 1


def test_a_crash_keeps_the_live_triggers_and_profiles(tmp_path: Path) -> None:
    triggers = TriggerSettings(manual=ManualRule(symbols=("000660",)))
    harness = Harness(make_context(tmp_path, triggers=triggers))
    harness.tell(UNIVERSE)
    harness.tell(ManualOverride(at=START, symbol="000660", active=False))
    harness.tell(scan(1, quote("005930", 700_000)))
    harness.clock_tick()  # the rebalance saves the book
    before = harness.live()
    assert before == [("005930", TriggerKind.VOLUME_SURGE)]

    assert harness.directory.tell("triggers", Crash(at=START))
    assert harness.supervisor.status.wait_until(lambda s: s.restarts("triggers") == 1, timeout=WAIT)
    assert harness.live() == before  # the override that lifted the configured manual symbol held too
    harness.clock.advance(10)
    harness.tell(scan(2, quote("035720", 700_000), at=harness.clock.now()))
    assert harness.alerts() == [("005930", "volume_surge"), ("035720", "volume_surge")]
    assert harness.received("notifier", AlertRaised)[-1].alert.name == "카카오"  # profiles came back too


def test_a_crash_right_after_a_scan_keeps_its_triggers(tmp_path: Path) -> None:
    """No rebalance between the scan and the crash: the scan's triggers were saved with it."""
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    harness.tell(scan(1, quote("005930", 700_000)))
    assert harness.live() == [("005930", TriggerKind.VOLUME_SURGE)]

    assert harness.directory.tell("triggers", Crash(at=START))
    assert harness.supervisor.status.wait_until(lambda s: s.restarts("triggers") == 1, timeout=WAIT)
    assert harness.live() == [("005930", TriggerKind.VOLUME_SURGE)]


def test_hybrid_signals_alert_once_per_cooldown(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, signals=SignalSettings(enabled=True)))
    wide_atr = profile("000660", "SK하이닉스", atr=10_000)  # so the move is no volatility spike
    harness.tell(UniverseReady(at=START, day=START.date(), profiles=(wide_atr,)))
    # 64,000 against a 70,000 moving average is a disparity of -8.6 %
    harness.tell(scan(1, quote("000660", 100_000, price=64_000, high=70_000, low=63_500)))
    assert harness.alerts() == [("000660", "disparity")]

    frame = tuple(trade("000660", START + timedelta(seconds=i), price=63_900) for i in range(5))
    harness.tell(TicksReceived(at=START, account="acct1", ticks=frame, received_mono=0.0))
    assert harness.alerts() == [("000660", "disparity")]
    assert harness.rankings() == []  # signals alert; they do not compete for slots


def test_its_own_ticker_drives_the_rebalance_cadence(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    specs = [ChildSpec(id="slots", actor_class=Journal),
             ChildSpec(id="triggers", actor_class=TriggerActor, kwargs={"context": context})]
    supervisor = Supervisor(specs, clock=context.clock)
    supervisor.start()
    try:
        directory = supervisor.directory
        clock: SimulatedClock = context.clock  # type: ignore[assignment]
        arrived = threading.Event()

        def rankings() -> int:
            told = directory.ask("slots", "messages", timeout=WAIT)
            return sum(isinstance(m, CandidatesRanked) for m in told)

        def wait_for_rankings(count: int) -> bool:
            for _ in range(int(WAIT / 0.05)):
                if rankings() >= count:
                    return True
                arrived.wait(0.05)
            return False

        assert wait_for_rankings(1)  # the first tick rebalances at once
        clock.advance(30)
        assert wait_for_rankings(2)
    finally:
        supervisor.stop()


def test_a_fresh_start_asks_the_universe_for_the_profiles(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    specs = [ChildSpec(id="universe", actor_class=UniverseStandIn),
             ChildSpec(id="notifier", actor_class=Journal), ChildSpec(id="slots", actor_class=Journal),
             ChildSpec(id="triggers", actor_class=TriggerActor,
                       kwargs={"context": context, "tick_seconds": NO_TICKER})]
    supervisor = Supervisor(specs, clock=context.clock)
    supervisor.start()
    try:
        directory = supervisor.directory
        directory.tell("triggers", scan(1, quote("035720", 700_000)))
        directory.ask("triggers", Ping(at=START), timeout=WAIT)
        told = directory.ask("notifier", "messages", timeout=WAIT)
        alerts = [m for m in told if isinstance(m, AlertRaised)]
        assert [(a.alert.symbol, a.alert.name) for a in alerts] == [("035720", "카카오")]
    finally:
        supervisor.stop()


def test_the_same_days_universe_again_completes_baselines_and_keeps_the_tick_windows(tmp_path: Path) -> None:
    """The universe actor announces the day again once missed baselines are fetched: a scan now finds the
    surge of the completed symbol, and a burst of trades spanning the announcement still counts whole."""
    harness = Harness(make_context(tmp_path))
    lacking = profile("005930", "삼성전자", avg_volume=0, atr=0, ma=0, avg_turnover=0)
    harness.tell(UniverseReady(at=START, day=START.date(), profiles=(lacking, *UNIVERSE.profiles[1:])))
    harness.tell(scan(1, quote("005930", 700_000)))
    assert harness.live() == []

    first = tuple(trade("035720", START + timedelta(seconds=i // 12)) for i in range(60))  # 12 trades/s
    harness.tell(TicksReceived(at=START, account="acct1", ticks=first, received_mono=0.0))
    harness.tell(UNIVERSE.model_copy(update={"at": START + timedelta(seconds=5)}))
    second = tuple(trade("035720", START + timedelta(seconds=5 + i // 12)) for i in range(60))
    harness.tell(TicksReceived(at=START, account="acct1", ticks=second, received_mono=0.0))
    assert harness.alerts() == [("035720", "trade_velocity")]

    harness.tell(scan(2, quote("005930", 700_000)))
    assert ("005930", TriggerKind.VOLUME_SURGE) in harness.live()


def test_a_manual_trigger_lives_its_ttl_and_the_days_picks_replace_the_previous_ones(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    answer = harness.directory.ask("triggers", ManualTrigger(at=START, symbol="005930", ttl_seconds=60),
                                   timeout=WAIT)
    assert answer == "manual trigger on 005930 until 10:01:00 KST"
    assert harness.live() == [("005930", TriggerKind.MANUAL)]
    assert harness.alerts() == []
    harness.clock.advance(61)
    harness.clock_tick()
    assert harness.live() == []

    first = PicksLoaded(at=START, picks=(Pick(symbol="000660"), Pick(symbol="035720", score=0.5)))
    # The picks last until Track A ends, with Nextrade on the default unified feed.
    answer = harness.directory.ask("triggers", first, timeout=WAIT)
    assert answer == "2 picks loaded until 20:00 KST; 0 previous picks dropped"
    assert harness.live() == [("000660", TriggerKind.MANUAL), ("035720", TriggerKind.MANUAL)]
    harness.tell(ManualOverride(at=START, symbol="035720"))  # pinned by hand: it outlives its pick
    second = PicksLoaded(at=START, picks=(Pick(symbol="051910"),))
    answer = harness.directory.ask("triggers", second, timeout=WAIT)
    assert answer == "1 picks loaded until 20:00 KST; 1 previous picks dropped"
    assert harness.live() == [("035720", TriggerKind.MANUAL), ("051910", TriggerKind.MANUAL)]
    assert "051910" in harness.rankings()[-1]


def test_scheduled_picks_wait_for_their_time_even_across_a_restart(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    due = START + timedelta(minutes=5)
    scheduled = PicksLoaded(at=START, picks=(Pick(symbol="000660"),), apply_at=due)
    answer = harness.directory.ask("triggers", scheduled, timeout=WAIT)
    assert answer == "1 picks will replace the current picks at 2024-03-04 10:05 KST"
    harness.clock_tick()
    assert harness.live() == []
    harness.tell(Crash(at=START, reason="test"))
    harness.supervisor.status.wait_until(lambda status: status.restarts("triggers") == 1, WAIT)
    harness.clock.advance(300)
    harness.clock_tick()
    assert harness.live() == [("000660", TriggerKind.MANUAL)]


HYBRID = SignalSettings(enabled=True, rank_by_closeness=True)


def test_hybrid_slots_go_to_the_symbols_nearest_a_threshold_with_the_picks_first(tmp_path: Path) -> None:
    """websocket_monitor_hybrid.md 3.5: the Top-N is the scan's symbols by closeness to a signal threshold;
    the day's picks stay ahead of them; a tick trigger alerts but takes no slot."""
    harness = Harness(make_context(tmp_path, signals=HYBRID))
    harness.tell(UNIVERSE)  # every 20-day moving average is 70,000: the disparity threshold is at 64,400
    harness.tell(scan(1, quote("005930", 100_000, price=70_500), quote("000660", 100_000, price=65_000),
                      quote("035720", 100_000, price=68_000)))
    # 000660 is 0.9 points above the -8 % disparity; 035720 (5.1) and 005930 (8.7) are beyond the 5-point
    # horizon: no candidates
    assert harness.rankings() == [["000660"]]
    assert harness.alerts() == []

    harness.directory.ask("triggers", PicksLoaded(at=START, picks=(Pick(symbol="005930"),)), timeout=WAIT)
    ranked = harness.received("slots", CandidatesRanked)[-1].candidates
    assert [c.symbol for c in ranked] == ["005930", "000660"]
    assert [c.trigger for c in ranked] == [TriggerKind.MANUAL, TriggerKind.NEAR_SIGNAL]
    sent = len(harness.rankings())

    burst = tuple(trade("035720", START + timedelta(seconds=i // 12)) for i in range(120))  # 12 trades/s
    harness.tell(TicksReceived(at=START, account="acct1", ticks=burst, received_mono=0.0))
    assert harness.alerts() == [("035720", "trade_velocity")]
    assert len(harness.rankings()) == sent  # no slot for a tick trigger in the hybrid ranking

    later = START + timedelta(seconds=60)
    harness.clock.set(later)
    harness.tell(scan(2, quote("005930", 100_000, price=70_500), quote("000660", 100_000, price=65_000),
                      quote("035720", 100_000, price=64_000), at=later))
    assert harness.rankings()[-1] == ["005930", "035720", "000660"]  # 035720 now holds the condition
    assert harness.directory.proxy("triggers").candidates().get(timeout=WAIT)[1].strength == 1.0
    assert ("035720", "disparity") in harness.alerts()


def test_mode_b_breakout_alerts_once_per_cooldown(tmp_path: Path) -> None:
    signals = SignalSettings(enabled=True, breakout_enabled=True, breakout_minutes=1, breakout_pct=0.5)
    harness = Harness(make_context(tmp_path, signals=signals))
    harness.tell(UNIVERSE)

    def trades(first: int, last: int, price: int) -> TicksReceived:
        ticks = tuple(trade("005930", START + timedelta(seconds=s), price=price) for s in range(first, last))
        return TicksReceived(at=START, account="acct1", ticks=ticks, received_mono=0.0)

    harness.tell(trades(0, 61, 70_000))
    harness.tell(trades(61, 62, 70_300))  # +0.43 %: not yet
    assert harness.alerts() == []
    harness.tell(trades(62, 63, 70_700))  # +0.57 % over the prior minute's high (70,300)
    assert harness.alerts() == [("005930", "breakout")]
    alert = harness.received("notifier", AlertRaised)[0].alert
    assert "price +0.57 % above the prior high, >= 0.50 %" in alert.text
    harness.tell(trades(63, 120, 70_700))
    harness.tell(trades(120, 121, 71_200))  # a new breakout inside the 600 s cooldown
    assert harness.alerts() == [("005930", "breakout")]
    harness.tell(trades(121, 700, 71_200))
    harness.tell(trades(700, 701, 71_700))  # 638 s after the first alert
    assert harness.alerts() == [("005930", "breakout"), ("005930", "breakout")]


def test_the_context_syncs_baseline_reaches_the_scan_triggers_and_outlives_a_restart(tmp_path: Path) -> None:
    """A 4,000-won range is twice the ATR: a spike before the sync; after a sync whose opening half hour moved
    every symbol 5 % on average (threshold 7.5 %), the same 5.7 % range stands out no more."""
    harness = Harness(make_context(tmp_path))
    harness.tell(UNIVERSE)
    harness.tell(scan(1, quote("005930", 100_000, high=74_000)))
    assert harness.live() == [("005930", TriggerKind.VOLATILITY_SPIKE)]

    baseline = BaselineMetrics(avg_volume=1e6, avg_volatility=0.05, volume_threshold=1.5e6,
                               volatility_threshold=0.075, sample_count=3)
    harness.tell(ContextSynced(at=START, movers=(), baseline=baseline))
    harness.tell(scan(2, quote("000660", 100_000, high=74_000)))
    assert harness.live() == [("005930", TriggerKind.VOLATILITY_SPIKE)]
    harness.tell(scan(3, quote("035720", 100_000, high=76_000)))  # 8.6 %: still a spike
    assert ("035720", TriggerKind.VOLATILITY_SPIKE) in harness.live()

    harness.tell(Crash(at=START, reason="test"))
    harness.supervisor.status.wait_until(lambda status: status.restarts("triggers") == 1, WAIT)
    harness.tell(UNIVERSE)
    harness.tell(scan(4, quote("000660", 100_000, high=74_000)))
    assert ("000660", TriggerKind.VOLATILITY_SPIKE) not in harness.live()


def picks_settings(**source: Any) -> TriggerSettings:
    return TriggerSettings(manual=ManualRule(**source))


def live_soon(harness: Harness, expected: list[tuple[str, TriggerKind]]) -> bool:
    """The picks are read on a worker thread: wait for the actor to have them."""
    pause = threading.Event()
    for _ in range(int(WAIT / 0.05)):
        if harness.live() == expected:
            return True
        pause.wait(0.05)
    return False


PICKED = [("000660", TriggerKind.MANUAL), ("035720", TriggerKind.MANUAL)]


def test_the_picks_file_replaces_the_whole_tier_at_the_picks_time_once_a_day(tmp_path: Path) -> None:
    picks = tmp_path / "picks.json"
    picks.write_text(json.dumps({"picks": ["000660", {"stock_code": "035720", "score": 0.5}]}))
    settings = picks_settings(picks_file=str(picks), picks_time=time(10, 5))
    harness = Harness(make_context(tmp_path, triggers=settings))
    answer = harness.directory.ask("triggers", PicksLoaded(at=START, picks=(Pick(symbol="051910"),)),
                                   timeout=WAIT)
    assert answer.startswith("1 picks loaded")
    harness.clock_tick()
    assert harness.live() == [("051910", TriggerKind.MANUAL)]  # 10:00: before the picks time

    harness.clock.advance(300)
    harness.clock_tick()
    assert live_soon(harness, PICKED)  # the control API's pick went with the tier
    strengths = {t.symbol: t.strength for t in harness.directory.proxy("triggers").live_triggers().get()}
    assert strengths == {"000660": 1.0, "035720": 0.5}
    assert "2 picks loaded" in harness.context.metrics.snapshot()["picks_source"]

    picks.write_text(json.dumps(["005930"]))  # read once a day, even across a restart
    harness.tell(Crash(at=START, reason="test"))
    harness.supervisor.status.wait_until(lambda status: status.restarts("triggers") == 1, WAIT)
    harness.clock_tick()
    threading.Event().wait(0.5)  # time enough for a read, if one had started
    harness.clock_tick()
    assert harness.live() == PICKED


class PicksServer:
    """A real HTTP server on loopback answering the picks document (or an error status)."""

    def __init__(self) -> None:
        self.status, self.body = 200, b"[]"
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(owner.body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/picks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def picks_server() -> Iterator[PicksServer]:
    server = PicksServer()
    yield server
    server.close()


def test_a_start_after_the_picks_time_loads_them_from_the_url_and_a_failure_alerts_once(
    tmp_path: Path, picks_server: PicksServer
) -> None:
    picks_server.status, picks_server.body = 503, b"busy"
    missing = str(tmp_path / "no-such-picks.json")  # the file first; the URL answers when it is missing
    settings = picks_settings(picks_file=missing, picks_url=picks_server.url, picks_time=time(7, 20))
    harness = Harness(make_context(tmp_path, triggers=settings))

    def alerted() -> list[SystemAlert]:
        return harness.received("notifier", SystemAlert)

    pause = threading.Event()
    while not alerted() and pause.wait(0.05) is False:
        pass
    assert "HTTP 503" in alerted()[0].text and "no-such-picks.json" in alerted()[0].text
    assert "busy" not in alerted()[0].text
    harness.clock.advance(60)
    harness.clock_tick()
    assert harness.live() == []  # the next read waits for PICKS_RETRY_SECONDS

    picks_server.status = 200
    picks_server.body = json.dumps(["000660", {"symbol": "035720", "score": 0.5}]).encode()
    harness.clock.advance(PICKS_RETRY_SECONDS)
    harness.clock_tick()
    assert live_soon(harness, PICKED)
    assert len(alerted()) == 1
