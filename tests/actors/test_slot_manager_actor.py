"""SlotManagerActor under a real Supervisor: allocation to `ws.<account>`, overflow ledger lines, Track B
gating, pins from holdings and fills, MAX SUBSCRIBE OVER, failover and restore, and a crash that keeps
slots, dwell times and cooldowns. Peers (`ws.*`, `recorder`, `notifier`) are recording actors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
from loguru import logger
from pydantic import SecretStr

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from actors.slot_manager import SlotManagerActor, SlotManagerProxy
from actors.supervisor import ChildSpec, Supervisor
from config.accounts import Account
from config.settings import Settings
from core.models import Candidate, TriggerKind
from core.schedule import Phase
from core.settings import SlotSettings
from kis.models import Holding, MultiQuote
from kis.rest import KisRestClient, TokenSource
from kis.ticks import ExecutionNotice, TradeTick
from messages.alerts import SystemAlert
from messages.control import TrackBPaused
from messages.gaps import TicksMissed
from messages.market import ExecutionsReceived, HoldingsLoaded, ScanCompleted, TicksReceived
from messages.recording import OverflowRecorded
from messages.schedule import PhaseChanged
from messages.selection import CandidatesRanked, ContextSyncDay, ContextSynced, ManualOverride
from messages.streaming import (
    AccountsServed,
    BackPressure,
    ConnectionChanged,
    ConnectionState,
    SetSubscriptions,
    SubscriptionRefused,
)
from messages.system import Crash, Ping
from runtime.clock import KST, SimulatedClock
from runtime.metrics import Metrics
from runtime.paths import DataPaths

START = datetime(2024, 3, 4, 9, 40, tzinfo=KST)  # a Monday, in FULL_OPERATION
WAIT = 10.0
PEERS = ("recorder", "notifier", "gaps", "ws.acct1", "ws.acct2")


class Journal(ObserverActor):
    """A real peer standing in for a connection, the recorder or the notifier: it keeps what it is told.

    `ask("messages")` answers with everything so far; its mailbox order makes it a barrier."""

    def __init__(self, name: str, directory: Directory) -> None:
        super().__init__(name, directory)
        self.messages: list[Any] = []

    def on_receive(self, message: Any) -> Any:
        if message == "messages":
            return list(self.messages)
        self.messages.append(message)
        return None


class SyncedScanner(ObserverActor):
    """A peer standing in for the scanner: it answers `ContextSyncDay` with the day it was given."""

    def __init__(self, name: str, directory: Directory, synced: date) -> None:
        super().__init__(name, directory)
        self.synced = synced
        self.asked = 0

    def on_receive(self, message: Any) -> Any:
        if message == "asked":
            return self.asked
        if isinstance(message, ContextSyncDay):
            self.asked += 1
            return self.synced
        return None


class SimulatorVault:
    """Credentials for the simulator: each account's client issues its own token (kis.rest)."""

    def __init__(self, accounts: tuple[Account, ...], rest_url: str | None, clock: SimulatedClock) -> None:
        self._sources = {a.name: KisRestClient(a, base_url=rest_url, clock=clock).tokens for a in accounts}

    def token_source(self, account: str) -> TokenSource:
        return self._sources[account]

    def approval_key(self, account: str) -> SecretStr:
        raise AssertionError("the slot manager never opens a WebSocket")


def account(name: str, max_slots: int, account_no: str = "") -> Account:
    return Account(name=name, app_key=SecretStr(f"key-{name}-0123456789"),
                   app_secret=SecretStr(f"secret-{name}-0123456789"), account_no=account_no,
                   max_slots=max_slots)


TICKS_ONLY = {"order_book_held": False, "order_book_top": 0, "program_trading_held": False,
              "program_trading_top": 0}
"""Slots without order books or program trading: every registration is a tick slot."""


def make_context(tmp_path: Path, *, capacities: tuple[int, int] = (3, 3), slots: SlotSettings | None = None,
                 rest_url: str | None = None, account_no: str = "",
                 streams: dict[str, Any] | None = None) -> ObserverContext:
    accounts = (account("acct1", capacities[0], account_no), account("acct2", capacities[1], account_no))
    websocket = {"feed": "krx", **(TICKS_ONLY if streams is None else streams)}
    settings = Settings(accounts=accounts, slots=slots or SlotSettings(), websocket=websocket)
    clock = SimulatedClock(START, speed=0)
    return ObserverContext(settings=settings, clock=clock, metrics=Metrics(), paths=DataPaths(tmp_path),
                           vault=SimulatorVault(accounts, rest_url, clock), rest_url=rest_url)


class Harness:
    """A supervisor with the recording peers and the slot manager, and helpers to talk to them."""

    started: ClassVar[list[Harness]] = []

    def __init__(self, context: ObserverContext, *, scanner_synced: date | None = None) -> None:
        self.context = context
        self.clock: SimulatedClock = context.clock  # type: ignore[assignment]
        specs = [ChildSpec(id=peer, actor_class=Journal) for peer in PEERS]
        if scanner_synced is not None:
            scanner = ChildSpec(id="scanner", actor_class=SyncedScanner, kwargs={"synced": scanner_synced})
            specs.append(scanner)
        specs.append(ChildSpec(id="slots", actor_class=SlotManagerActor, kwargs={"context": context}))
        self.supervisor = Supervisor(specs, clock=self.clock, max_restarts=5, period_seconds=30)
        self.supervisor.start()
        Harness.started.append(self)
        self.directory = self.supervisor.directory

    def tell(self, message: Any) -> None:
        assert self.directory.tell("slots", message)
        self.directory.ask("slots", Ping(at=self.clock.now()), timeout=WAIT)

    def received(self, peer: str, kind: type) -> list[Any]:
        return [m for m in self.directory.ask(peer, "messages", timeout=WAIT) if isinstance(m, kind)]

    def targets(self, peer: str) -> list[tuple[str, ...]]:
        return [m.symbols for m in self.received(peer, SetSubscriptions)]

    def ledger(self) -> list[dict[str, Any]]:
        return [line for m in self.received("recorder", OverflowRecorded) for line in m.lines]

    def slots(self) -> SlotManagerProxy:
        return self.directory.proxy("slots", SlotManagerProxy)

    def rank(self, *candidates: Candidate) -> None:
        self.tell(CandidatesRanked(at=self.clock.now(), candidates=candidates))


def cand(symbol: str, score: float, kind: TriggerKind = TriggerKind.VOLUME_SURGE) -> Candidate:
    return Candidate(symbol=symbol, score=score, market_cap=1e11, trigger=kind, strength=0.5,
                     detected_at=START)


def fill(symbol: str, side: str, qty: int) -> ExecutionNotice:
    return ExecutionNotice(order_no="0000001", original_order_no="", side=side, symbol=symbol, filled_qty=qty,
                           filled_price=70000, hour="094000", rejected=False, is_fill=True, order_qty=qty,
                           fields=())


def ten_candidates() -> tuple[Candidate, ...]:
    return tuple(cand(f"{100000 + i:06d}", 30.0 - i) for i in range(10))


@pytest.fixture(autouse=True)
def _stop_harnesses() -> Iterator[None]:
    """Each harness's supervisor stops its tree in order (the conftest's `_stop_actors` sweeps up after)."""
    yield
    for harness in Harness.started:
        harness.supervisor.stop()
    Harness.started.clear()


def test_more_candidates_than_slots_the_strongest_get_them(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(ContextSynced(at=START, movers=()))
    ranked = ten_candidates()
    harness.rank(*ranked)

    acct1, acct2 = harness.targets("ws.acct1"), harness.targets("ws.acct2")
    assert len(acct1) == 1 and len(acct2) == 1
    strongest = {c.symbol for c in ranked[:6]}
    assert set(acct1[0]) | set(acct2[0]) == strongest
    assert len(acct1[0]) == len(acct2[0]) == 3

    ledger = harness.ledger()
    assert {line["symbol"] for line in ledger} == {c.symbol for c in ranked[6:]}
    line = ledger[0]
    assert set(line) == {"timestamp", "symbol", "trigger_type", "trigger_strength", "priority_score",
                         "reason", "current_slot_min_score", "metadata"}
    assert line["trigger_type"] == "VOLUME_SURGE"
    assert line["current_slot_min_score"] == 25.0
    assert line["metadata"]["reason_code"] == "dwell"  # every slot was just filled
    assert [m.account for m in harness.received("recorder", OverflowRecorded)] == ["acct1"]

    alerts = harness.received("notifier", SystemAlert)
    assert [a.key for a in alerts] == ["overflow_rate.0.05", "overflow_rate.0.1", "overflow_rate.0.2"]
    metrics = harness.context.metrics
    assert metrics.count("slot_changes") == 6
    assert metrics.count("overflows") == 4
    assert metrics.snapshot()["slots_in_use.acct1"] == 3
    assert metrics.snapshot()["slots_capacity.acct1"] == 3  # the status view shows "3 / 3"

    harness.rank(*ranked)  # the same ranking again: nothing to send, nothing new to record
    assert len(harness.targets("ws.acct1")) == 1
    assert len(harness.ledger()) == 4
    assert metrics.count("overflows") == 4


def test_track_b_waits_for_context_sync_and_stops_at_15(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.rank(cand("005930", 20.0), cand("000660", 19.0))
    assert harness.targets("ws.acct1") == [] and harness.targets("ws.acct2") == []
    assert harness.ledger() == []

    mover = cand("035720", 25.0, TriggerKind.VOLUME_SURGE)
    harness.tell(ContextSynced(at=START, movers=(mover,)))
    slotted = set(harness.targets("ws.acct1")[-1]) | set(harness.targets("ws.acct2")[-1])
    assert slotted == {"035720", "005930", "000660"}

    harness.clock.set(START.replace(hour=15))
    harness.tell(PhaseChanged(at=harness.clock.now(), phase=Phase.TRACK_A_CLOSING,
                              previous=Phase.FULL_OPERATION))
    assert harness.targets("ws.acct1")[-1] == () and harness.targets("ws.acct2")[-1] == ()
    assert harness.slots().snapshot().get(timeout=WAIT).placement() == {}
    harness.rank(cand("005930", 20.0))
    assert harness.targets("ws.acct1")[-1] == ()


def test_the_opening_movers_reach_the_first_allocation_though_a_ranking_arrives_before_9_30(
    tmp_path: Path,
) -> None:
    """At 09:30 the scanner's ContextSynced, the triggers' CandidatesRanked and the scheduler's PhaseChanged
    arrive in any order; a ranking between the sync and the phase change must not drop the movers."""
    context = make_context(tmp_path)
    context.clock.set(START.replace(minute=29, second=50))  # type: ignore[attr-defined]
    harness = Harness(context)
    movers = (cand("035720", 4.0), cand("051910", 3.0))
    harness.tell(ContextSynced(at=harness.clock.now(), movers=movers))
    harness.rank(cand("005930", 20.0))
    assert harness.targets("ws.acct1") == [] and harness.targets("ws.acct2") == []

    harness.clock.set(START.replace(minute=30))
    harness.tell(PhaseChanged(at=harness.clock.now(), phase=Phase.FULL_OPERATION,
                              previous=Phase.TRACK_A_ONLY))
    slotted = set(harness.slots().snapshot().get(timeout=WAIT).placement())
    assert slotted == {"005930", "035720", "051910"}

    harness.rank(cand("005930", 20.0))  # later rankings no longer carry the movers; they keep their slots
    assert set(harness.slots().snapshot().get(timeout=WAIT).placement()) == slotted


def test_a_crash_keeps_slots_dwell_times_and_cooldowns(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 1)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0))
    before = harness.slots().snapshot().get(timeout=WAIT)
    assert set(before.placement()) == {"000001", "000002", "000003"}

    assert harness.directory.tell("slots", Crash(at=START))
    status = harness.supervisor.status
    assert status.wait_until(lambda s: s.restarts("slots") == 1, timeout=WAIT)
    harness.directory.ask("slots", Ping(at=START), timeout=WAIT)
    assert harness.slots().snapshot().get(timeout=WAIT) == before

    harness.clock.advance(60)  # inside the 120 s dwell of the restored slots: no replacement
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0), cand("000009", 50.0))
    assert "000009" not in harness.slots().snapshot().get(timeout=WAIT).placement()
    assert harness.ledger()[-1]["metadata"]["reason_code"] == "dwell"

    harness.clock.advance(61)  # dwell over: 000009 replaces the weakest, which enters its cooldown
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0), cand("000009", 50.0))
    placement = harness.slots().snapshot().get(timeout=WAIT).placement()
    assert set(placement) == {"000001", "000002", "000009"}

    assert harness.directory.tell("slots", Crash(at=START))
    assert status.wait_until(lambda s: s.restarts("slots") == 2, timeout=WAIT)
    harness.clock.advance(10)
    harness.rank(cand("000003", 99.0), cand("000001", 10.0), cand("000002", 9.0), cand("000009", 50.0))
    assert "000003" not in harness.slots().snapshot().get(timeout=WAIT).placement()
    assert harness.ledger()[-1]["symbol"] == "000003"
    assert harness.ledger()[-1]["metadata"]["reason_code"] == "cooldown"


def test_failover_moves_symbols_and_restore_takes_them_back(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 4)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0))
    home = set(harness.targets("ws.acct1")[-1])
    assert len(home) == 2

    harness.tell(ConnectionChanged(at=START, account="acct1", state=ConnectionState.RECONNECTING,
                                   since_seconds=5))
    assert set(harness.targets("ws.acct1")[-1]) == home  # a short reconnect is no failover

    harness.tell(ConnectionChanged(at=START, account="acct1", state=ConnectionState.SUSPENDED,
                                   since_seconds=61))
    assert harness.targets("ws.acct1")[-1] == ()
    assert set(harness.targets("ws.acct2")[-1]) == {"000001", "000002", "000003"}
    assert harness.received("notifier", SystemAlert) == []  # the connection actor alerts on suspension

    harness.tell(ConnectionChanged(at=START, account="acct1", state=ConnectionState.CONNECTED))
    assert set(harness.targets("ws.acct1")[-1]) == home
    assert set(harness.targets("ws.acct2")[-1]) == {"000001", "000002", "000003"} - home


def test_an_account_no_live_worker_streams_fails_over_with_its_gaps_and_comes_back_with_a_worker(
    tmp_path: Path,
) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 4)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0))
    home = set(harness.targets("ws.acct1")[-1])
    told_before = len(harness.targets("ws.acct1"))

    harness.tell(AccountsServed(at=START, served=("acct2",), dead=("vm1-acct1",)))
    assert set(harness.targets("ws.acct2")[-1]) == {"000001", "000002", "000003"}
    assert len(harness.targets("ws.acct1")) == told_before  # nobody streams it: nothing is sent to it
    missed = harness.received("gaps", TicksMissed)
    assert [(m.account, set(m.symbols), m.reason) for m in missed] == [("acct1", home, "worker_lost")]
    # A late word from the dead worker's connection does not bring the account back; a worker does.
    harness.tell(ConnectionChanged(at=START, account="acct1", state=ConnectionState.CONNECTED))
    assert not harness.slots().snapshot().get(timeout=WAIT).account("acct1").available

    harness.tell(AccountsServed(at=START, served=("acct1", "acct2")))
    assert set(harness.targets("ws.acct1")[-1]) == home
    assert set(harness.targets("ws.acct2")[-1]) == {"000001", "000002", "000003"} - home
    assert len(harness.received("gaps", TicksMissed)) == 1


def test_a_cleanly_stopped_workers_accounts_fail_over_without_gaps_of_their_own(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 4)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0))
    harness.tell(AccountsServed(at=START, served=("acct2",), dead=("vm1-acct1",), stopped=("acct1",)))
    assert set(harness.targets("ws.acct2")[-1]) == {"000001", "000002", "000003"}
    assert harness.received("gaps", TicksMissed) == []  # its connections marked their gaps as they closed


def test_max_subscribe_over_shrinks_the_account(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(3, 4)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(*(cand(f"00000{i}", 10.0 - i) for i in range(1, 6)))
    first = harness.targets("ws.acct1")[-1]
    refused = first[-1]

    harness.tell(SubscriptionRefused(at=START, account="acct1", symbol=refused, msg_cd="OPSP0008",
                                     accepted_count=2))
    assert harness.targets("ws.acct1")[-1] == first[:-1]
    line = harness.ledger()[-1]
    assert line["symbol"] == refused and line["metadata"]["reason_code"] == "capacity_shrunk"

    harness.rank(*(cand(f"00000{i}", 10.0 - i) for i in range(1, 6)))
    assert refused in harness.targets("ws.acct2")[-1]  # no cooldown: it moved to the account with room
    assert harness.slots().snapshot().get(timeout=WAIT).account("acct1").capacity == 2


def test_held_positions_and_fills_pin_symbols(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 1)))
    harness.tell(ContextSynced(at=START, movers=()))
    holding = Holding(symbol="005930", name="삼성전자", quantity=10, orderable_quantity=10, avg_price=70000.0,
                      purchase_amount=700000, price=71000, eval_amount=710000, profit_loss=10000,
                      profit_loss_rate=1.43)
    harness.tell(HoldingsLoaded(at=START, account="acct1", holdings=(holding,)))
    harness.rank(cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0))
    slotted = harness.slots().snapshot().get(timeout=WAIT).placement()
    assert set(slotted) == {"005930", "000001", "000002"}

    harness.tell(ExecutionsReceived(at=START, account="acct1", notices=(fill("000660", "02", 5),)))
    slotted = harness.slots().snapshot().get(timeout=WAIT).placement()
    assert "000660" in slotted and "005930" in slotted  # the buy was pinned at once, evicting a candidate
    assert harness.slots().pinned().get(timeout=WAIT) == frozenset({"005930", "000660"})

    harness.tell(ExecutionsReceived(at=START, account="acct1", notices=(fill("005930", "01", 4),)))
    assert "005930" in harness.slots().pinned().get(timeout=WAIT)  # 6 shares still held
    harness.tell(ExecutionsReceived(at=START, account="acct1", notices=(fill("005930", "01", 6),)))
    assert harness.slots().pinned().get(timeout=WAIT) == frozenset({"000660"})

    harness.tell(ManualOverride(at=START, symbol="035720"))
    assert "035720" in harness.slots().snapshot().get(timeout=WAIT).placement()
    harness.tell(ManualOverride(at=START, symbol="035720", active=False))
    assert harness.slots().pinned().get(timeout=WAIT) == frozenset({"000660"})


def test_holdings_come_from_the_balance_inquiry_at_start(tmp_path: Path, kis_sim: Any) -> None:
    context = make_context(tmp_path, rest_url=kis_sim.rest_url, account_no="12345678")
    harness = Harness(context)
    harness.directory.ask("slots", Ping(at=START), timeout=WAIT)  # queued behind the inquiry it runs at start

    expected: set[str] = set()
    for name in ("acct1", "acct2"):
        sim_account = kis_sim.accounts.known(context.account(name).app_key.get_secret_value())
        expected |= {h.code for h in sim_account.holdings if h.quantity > 0}
    assert expected, "the simulator seeds holdings for every account"
    assert harness.slots().pinned().get(timeout=WAIT) == frozenset(expected)


def test_an_unreadable_saved_state_is_reported_and_the_day_goes_on(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    state_file = context.paths.state_dir / "slots.json"
    state_file.parent.mkdir(parents=True)
    state_file.write_text('{"day": "2024-03-04", "state": {"accounts": "not a list"}, '
                          '"synced_on": "2024-03-04"}')
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING", format="{message}")
    try:
        harness = Harness(context)
    finally:
        logger.remove(sink)
    assert [line for line in lines if line.startswith("saved slot state ignored: bad slot state at accounts")]
    harness.rank(cand("005930", 20.0))
    assert "005930" in harness.targets("ws.acct1")[-1]  # synced today per the file; slots start empty
    saved = state_file.read_text()
    assert '"005930"' in saved and "not a list" not in saved


@pytest.mark.parametrize("damage", ["missing", "cut in half"])
def test_a_start_without_todays_sync_in_its_state_asks_the_scanner(tmp_path: Path, damage: str) -> None:
    """The day's ContextSynced went by before the restart: the slot manager asks the scanner, which says
    it synced today, and the next ranking fills the slots."""
    context = make_context(tmp_path)
    first = Harness(context)
    first.tell(ContextSynced(at=START, movers=()))
    first.rank(cand("005930", 20.0))
    first.supervisor.stop()
    state_file = context.paths.state_dir / "slots.json"
    if damage == "missing":
        state_file.unlink()
    else:
        state_file.write_bytes(state_file.read_bytes()[:40])

    harness = Harness(context, scanner_synced=START.date())
    assert harness.directory.ask("scanner", "asked", timeout=WAIT) == 1
    harness.rank(cand("005930", 20.0), cand("000660", 19.0))
    assert set(harness.targets("ws.acct1")[-1]) | set(harness.targets("ws.acct2")[-1]) == {"005930", "000660"}
    assert harness.directory.ask("scanner", "asked", timeout=WAIT) == 1  # the answer was kept
    assert '"synced_on":"2024-03-04"' in state_file.read_text()


def test_a_start_with_todays_sync_saved_or_before_9_30_asks_nothing(tmp_path: Path) -> None:
    context = make_context(tmp_path)
    first = Harness(context)
    first.tell(ContextSynced(at=START, movers=()))
    first.supervisor.stop()
    harness = Harness(context, scanner_synced=START.date())
    assert harness.directory.ask("scanner", "asked", timeout=WAIT) == 0
    harness.supervisor.stop()

    (context.paths.state_dir / "slots.json").unlink()
    context.clock.set(START.replace(hour=9, minute=10))  # type: ignore[attr-defined]
    harness = Harness(context, scanner_synced=START.date() - timedelta(days=3))
    assert harness.directory.ask("scanner", "asked", timeout=WAIT) == 0
    harness.rank(cand("005930", 20.0))
    assert harness.targets("ws.acct1") == []


def test_a_second_context_sync_of_the_day_brings_no_movers(tmp_path: Path) -> None:
    """A scanner that lost its state syncs again mid-day: Track B goes on, its movers are not slotted."""
    harness = Harness(make_context(tmp_path, capacities=(1, 1)))
    harness.tell(ContextSynced(at=START, movers=(cand("035720", 40.0),)))
    harness.rank(cand("005930", 20.0))
    assert set(harness.slots().snapshot().get(timeout=WAIT).placement()) == {"035720", "005930"}

    harness.clock.advance(600)  # every dwell is over
    harness.tell(ContextSynced(at=harness.clock.now(), movers=(cand("051910", 90.0),)))
    harness.rank(cand("005930", 20.0), cand("000660", 19.0))
    assert set(harness.slots().snapshot().get(timeout=WAIT).placement()) == {"005930", "000660"}


def test_a_scanner_not_running_at_the_start_is_asked_at_the_next_ranking(tmp_path: Path) -> None:
    """Both restarted at once: the slot manager keeps asking at each ranking until the scanner answers."""
    harness = Harness(make_context(tmp_path))
    harness.rank(cand("005930", 20.0))
    assert harness.targets("ws.acct1") == []

    scanner = SyncedScanner.start("scanner", harness.directory, START.date())
    harness.directory.register("scanner", scanner)
    harness.rank(cand("005930", 20.0))
    assert "005930" in harness.targets("ws.acct1")[-1]
    assert harness.directory.ask("scanner", "asked", timeout=WAIT) == 1
    scanner.stop()


def test_track_b_paused_by_hand_stays_empty_until_resumed_even_across_a_restart(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(cand("005930", 20.0), cand("000660", 19.0))
    assert set(harness.targets("ws.acct1")[-1]) | set(harness.targets("ws.acct2")[-1]) == {"005930", "000660"}

    answer = harness.directory.ask("slots", TrackBPaused(at=START, paused=True), timeout=WAIT)
    assert answer == "Track B paused: every account's target set is empty until it is resumed"
    assert harness.targets("ws.acct1")[-1] == () and harness.targets("ws.acct2")[-1] == ()
    assert harness.slots().paused().get(timeout=WAIT) is True
    again = harness.directory.ask("slots", TrackBPaused(at=START, paused=True), timeout=WAIT)
    assert again == "Track B was already paused: nothing changed"

    assert harness.directory.tell("slots", Crash(at=START))
    assert harness.supervisor.status.wait_until(lambda s: s.restarts("slots") == 1, timeout=WAIT)
    harness.rank(cand("005930", 20.0), cand("000660", 19.0))
    assert harness.slots().snapshot().get(timeout=WAIT).placement() == {}

    answer = harness.directory.ask("slots", TrackBPaused(at=START, paused=False), timeout=WAIT)
    assert answer == "Track B resumed"
    slotted = set(harness.targets("ws.acct1")[-1]) | set(harness.targets("ws.acct2")[-1])
    assert slotted == {"005930", "000660"}


def test_back_pressure_sheds_the_lowest_scored_and_takes_them_back_when_caught_up(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(4, 4)))
    harness.tell(ContextSynced(at=START, movers=()))
    ranking = tuple(cand(f"00000{i}", 10.0 - i) for i in range(1, 9))
    harness.rank(*ranking)
    full = harness.targets("ws.acct1")[-1]
    other = harness.targets("ws.acct2")[-1]
    assert len(full) == 4 and len(other) == 4
    weakest = min(full, key=lambda symbol: next(c.score for c in ranking if c.symbol == symbol))

    harness.tell(BackPressure(at=START, account="acct1", level=1, lag_seconds=3.0, backlog=10))
    shed = harness.targets("ws.acct1")[-1]
    assert set(shed) == set(full) - {weakest}  # a quarter of 4 slots: the lowest scored goes
    line = harness.ledger()[-1]
    assert line["symbol"] == weakest and line["metadata"]["reason_code"] == "backpressure"
    harness.rank(*ranking)  # a new ranking does not fill the shed slot
    assert set(harness.targets("ws.acct1")[-1]) == set(shed)
    assert harness.targets("ws.acct2")[-1] == other
    assert harness.slots().snapshot().get(timeout=WAIT).account("acct1").capacity == 3

    harness.tell(BackPressure(at=START, account="acct1", level=0, lag_seconds=0.1, backlog=0))
    assert set(harness.targets("ws.acct1")[-1]) == set(full)  # no cooldown: it comes straight back
    assert harness.slots().snapshot().get(timeout=WAIT).account("acct1").capacity == 4


# --- intraday removal: halts, price limits, stale slots; churn ------------------------------------------


def row(symbol: str, *, price: int = 70_000, sign: str = "2", halted: bool = False) -> MultiQuote:
    return MultiQuote(symbol=symbol, name="", price=price, change=price - 70_000, sign=sign, change_rate=0.0,
                      volume=1_000, value=1_000 * price, open=70_000, high=price, low=70_000,
                      upper_limit=91_000, lower_limit=49_000, prev_close=70_000, base_price=70_000,
                      ask=price + 100, bid=price, halted=halted)


def scan(harness: Harness, *rows: MultiQuote) -> None:
    harness.tell(ScanCompleted(at=harness.clock.now(), account="acct1", scan_no=1, rows=rows, calls=1,
                               duration_seconds=0.1))


def ticks(harness: Harness, *symbols: str) -> None:
    now = harness.clock.now()
    trades = tuple(TradeTick(symbol, now, 70_000, 0, "3", 0.0, 1, 1, 70_000, 70_000, 70_000, 70_000, 70_100,
                             70_000, "1", 100.0, "0", ()) for symbol in symbols)
    harness.tell(TicksReceived(at=now, account="acct1", ticks=trades, received_mono=0.0))


def placed(harness: Harness) -> set[str]:
    return set(harness.slots().snapshot().get(timeout=WAIT).placement())


def reasons(harness: Harness) -> list[tuple[str, str]]:
    return [(line["symbol"], line["metadata"]["reason_code"]) for line in harness.ledger()]


def test_halted_and_limit_locked_symbols_leave_their_slots_and_come_back(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(2, 1)))
    harness.tell(ContextSynced(at=START, movers=()))
    ranking = (cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0), cand("000004", 7.0))
    harness.rank(*ranking)
    assert placed(harness) == {"000001", "000002", "000003"}

    harness.clock.advance(30)  # inside every dwell: a halt and a limit still take them out at once
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="INFO")
    try:
        scan(harness, row("000001", halted=True), row("000002", price=91_000, sign="1"), row("000003"))
    finally:
        logger.remove(sink)
    assert placed(harness) == {"000003", "000004"}
    assert "000001 trading halted: kept out of the slots" in messages
    assert not any("keeps its slot" in text for text in messages)  # removed, so not marked
    assert reasons(harness)[-2:] == [("000001", "halted"), ("000002", "price_limit")]
    assert harness.slots().held_out().get(timeout=WAIT) == {
        "000001": "halted: trading halted", "000002": "price_limit: at the upper price limit 91000"}
    assert harness.context.metrics.snapshot()["slots_held_out"] == 2

    harness.clock.advance(30)
    harness.rank(*ranking)  # still held out: no new ledger line while the reason stays the same
    assert placed(harness) == {"000003", "000004"} and len(harness.ledger()) == 3

    harness.clock.advance(600)
    scan(harness, row("000001"), row("000002", price=88_000))  # trading again, below the limit
    assert placed(harness) == {"000001", "000002", "000003"}  # no cooldown: back at once, 000004 replaced
    assert harness.slots().held_out().get(timeout=WAIT) == {}


def test_a_held_position_is_never_removed(tmp_path: Path) -> None:
    harness = Harness(make_context(tmp_path, capacities=(1, 1)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.tell(ManualOverride(at=START, symbol="000001"))
    harness.rank(cand("000002", 9.0))
    scan(harness, row("000001", halted=True), row("000002", price=49_000, sign="4"))
    assert placed(harness) == {"000001"}
    assert reasons(harness) == [("000002", "price_limit")]
    assert harness.slots().halted_in_slots().get(timeout=WAIT) == {"000001"}


def test_a_slot_without_data_for_30_minutes_is_released_but_a_venue_halt_is_only_marked(
    tmp_path: Path,
) -> None:
    slots = SlotSettings(remove_halted=False)
    harness = Harness(make_context(tmp_path, capacities=(2, 2), slots=slots))
    harness.tell(ContextSynced(at=START, movers=()))
    ranking = (cand("000001", 10.0), cand("000002", 9.0), cand("000003", 8.0), cand("000004", 7.0),
               cand("000005", 6.0))
    harness.rank(*ranking)
    assert placed(harness) == {"000001", "000002", "000003", "000004"}
    scan(harness, row("000003", halted=True))
    assert harness.context.metrics.snapshot()["slots_halted"] == 1

    for _ in range(6):  # 30 minutes: 000001 streams, the others are quiet
        harness.clock.advance(300)
        ticks(harness, "000001")
        harness.rank(*ranking)
    assert placed(harness) == {"000001", "000002", "000003", "000004"}  # exactly 30 min is not yet stale

    harness.clock.advance(60)
    harness.rank(*ranking)
    assert placed(harness) == {"000001", "000003", "000005"}  # 000003 is halted: kept, marked
    stale = [line for line in harness.ledger() if line["metadata"]["reason_code"] == "stale"]
    assert [line["symbol"] for line in stale] == ["000002", "000004"]
    assert stale[0]["reason"] == "no data for 31 min (stale after 30 min)"
    assert harness.context.metrics.count("slots_stale") == 2
    assert harness.slots().halted_in_slots().get(timeout=WAIT) == {"000003"}

    harness.clock.advance(60)  # released with the cooldown: not subscribed again at once
    harness.rank(*ranking)
    assert placed(harness) == {"000001", "000003", "000005"}


def test_rapid_churn_raises_the_replacement_threshold_and_calm_lowers_it(tmp_path: Path) -> None:
    slots = SlotSettings(min_dwell_seconds=0, resubscribe_cooldown_seconds=0, churn_replacements_per_hour=3,
                         calm_replacements_per_hour=1, stale_after_seconds=None)
    harness = Harness(make_context(tmp_path, capacities=(1, 1), slots=slots))
    harness.tell(ContextSynced(at=START, movers=()))
    steady = cand("000009", 100.0)  # holds the other slot throughout
    messages: list[str] = []
    sink = logger.add(lambda message: messages.append(message.record["message"]), level="INFO")
    try:
        scores = (10.0, 13.0, 16.0, 20.0, 25.0)  # each beats the one before by more than 1.2
        harness.rank(steady, cand("000001", scores[0]))
        for i in range(1, len(scores)):
            harness.clock.advance(60)
            harness.rank(steady, cand(f"{i:06d}", scores[i - 1]), cand(f"{i + 1:06d}", scores[i]))
        assert placed(harness) == {"000009", "000005"}  # the 4th replacement raised the threshold afterwards
        assert harness.slots().replacement_threshold().get(timeout=WAIT) == 1.5
        snapshot = harness.context.metrics.snapshot()
        assert (snapshot["replacement_threshold"], snapshot["replacements_last_hour"]) == (1.5, 4)

        assert harness.directory.tell("slots", Crash(at=harness.clock.now()))  # the raised threshold survives
        status = harness.supervisor.status
        assert status.wait_until(lambda s: s.restarts("slots") == 1, timeout=WAIT)
        assert harness.slots().replacement_threshold().get(timeout=WAIT) == 1.5

        harness.clock.advance(60)
        harness.rank(steady, cand("000005", 20.0), cand("000006", 28.0))  # 28 > 20 x 1.2 but not > 20 x 1.5
        assert placed(harness) == {"000009", "000005"}

        harness.clock.advance(3600)  # the hour's replacements slide out: back to 1.2
        harness.rank(steady, cand("000005", 20.0), cand("000006", 28.0))
        assert placed(harness) == {"000009", "000006"}
        assert harness.slots().replacement_threshold().get(timeout=WAIT) == 1.2
    finally:
        logger.remove(sink)
    assert any("rapid symbol churn: 4 replacements in the last hour (more than 3): replacement threshold "
               "1.2 -> 1.5" in text for text in messages)
    assert any("symbol churn calmed" in text and "1.5 -> 1.2" in text for text in messages)


def test_books_and_program_trading_share_the_key_with_the_tick_slots(tmp_path: Path) -> None:
    """Default choices (held + top 3 each): a held symbol costs 3 registrations; `slots.max_slots` caps the
    tick slots alone, and a key of 10 registrations trades its weakest tick slots for the extras."""
    streams = {"order_book_held": True, "order_book_top": 3, "program_trading_held": True,
               "program_trading_top": 3, "extra_registrations_max": 12}
    harness = Harness(make_context(tmp_path, capacities=(10, 41), slots=SlotSettings(max_slots=5),
                                   streams=streams))
    harness.tell(HoldingsLoaded(at=START, account="acct1", holdings=(holding("200000"),)))
    harness.tell(ContextSynced(at=START, movers=()))
    harness.rank(*(cand(f"{100000 + i:06d}", 60.0 - i) for i in range(20)))

    last = {peer: harness.received(peer, SetSubscriptions)[-1] for peer in ("ws.acct1", "ws.acct2")}
    for message in last.values():
        assert len(message.symbols) + len(message.order_books) + len(message.program_trading) <= 41
    # acct2 (41 registrations): 5 tick slots, the most max_slots allows, and all its extras beside them.
    acct2 = last["ws.acct2"]
    assert len(acct2.symbols) == 5 and len(acct2.order_books) == len(acct2.program_trading) == 3
    # acct1 (10 registrations) holds 200000: 3 tick slots and the 6 extras they want (4 would want 8).
    acct1 = last["ws.acct1"]
    assert "200000" in acct1.symbols and "200000" in acct1.order_books and "200000" in acct1.program_trading
    assert (len(acct1.symbols), len(acct1.order_books), len(acct1.program_trading)) == (3, 3, 3)


def holding(symbol: str) -> Holding:
    return Holding(symbol=symbol, name="held", quantity=10, orderable_quantity=10, avg_price=70_000.0,
                   purchase_amount=700_000, price=70_000, eval_amount=700_000, profit_loss=0,
                   profit_loss_rate=0.0)
