"""WSConnectionActor against the KIS simulator over loopback: subscriptions, drops, silence, suspension."""

from __future__ import annotations

import functools
import json
import time
from datetime import datetime, timedelta

import pytest

from actors.directory import Directory
from actors.ws_connection import (
    MAX_TICKS_PER_MESSAGE,
    Backlog,
    FrameRelay,
    SessionEnded,
    SessionEvent,
    TicksShed,
)
from core.gaps import RESTART
from core.schedule import DayEvent, Phase
from core.subscriptions import AckCode
from kis.ticks import Ack, PingPong, TradeFrame, TradeTick
from kis.ws_session import SessionClosed
from messages.alerts import SystemAlert
from messages.gaps import DowntimeFound, ExpectedGapEnded, ExpectedGapStarted, TicksMissed
from messages.market import ExecutionsReceived, TicksReceived
from messages.schedule import DayEventFired, PhaseChanged
from messages.streaming import (
    BackPressure,
    ConnectionChanged,
    ConnectionState,
    CredentialsRenewed,
    SetSubscriptions,
    SubscriptionRefused,
)
from messages.system import ChildFailed, Crash
from runtime.clock import KST, SimulatedClock
from tests.actors.control_plane_support import Journal, RecordingActor, sim_account
from tests.actors.data_plane_support import FAST_WS, WAIT, DataPlane, wait_until

PEERS = ("recorder", "triggers", "gaps", "slots", "notifier")
START = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


@pytest.fixture
def plane(tmp_path, kis_sim) -> DataPlane:
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers(*PEERS)
    return plane


def subscribe(plane: DataPlane, symbols: tuple[str, ...], account: str = "acct1") -> None:
    plane.tell(f"ws.{account}", SetSubscriptions(at=plane.sim.clock.now(), account=account, symbols=symbols))


def states(plane: DataPlane) -> list[ConnectionState]:
    return [m.state for m in plane.received("slots", ConnectionChanged)]


def test_targets_are_confirmed_and_ticks_reach_the_three_peers(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(5)
    subscribe(plane, symbols)
    status = plane.wait_confirmed(symbols)
    assert status.state is ConnectionState.CONNECTED and status.pending == () and status.refused == ()
    for peer in ("recorder", "triggers", "gaps"):
        assert wait_until(lambda p=peer: len(plane.received(p, TicksReceived)) >= 3, WAIT)
    frames = plane.received("recorder", TicksReceived)
    assert {tick.symbol for frame in frames for tick in frame.ticks} <= set(symbols)
    assert all(frame.account == "acct1" and frame.ticks for frame in frames)
    assert plane.metrics.count("frames") >= sum(frame.frames for frame in frames) >= len(frames)
    assert plane.metrics.snapshot()["ws_state.acct1"] == "connected"
    assert ConnectionState.CONNECTED in states(plane)


def trade(second: int, count: int = 1) -> TradeFrame:
    return TradeFrame("H0STCNT0", tuple(tick_at(second) for _ in range(count)))


def tick_at(second: int) -> TradeTick:
    return TradeTick("005930", START.replace(second=second), 70_500, 500, "2", 0.7, 10, 1_000, 70_500_000,
                     70_000, 71_000, 70_000, 70_600, 70_500, "1", 100.0, "0", ())


def seconds(message: TicksReceived) -> list[int]:
    return [tick.exchange_time.second for tick in message.ticks]


@pytest.fixture
def relayed() -> tuple[FrameRelay, Journal]:
    """A relay of session generation 7 telling a recording actor (the connection actor's place)."""
    journal = Journal()
    actor = RecordingActor.start("ws.acct1", Directory(SimulatedClock(START, speed=0)), journal)
    return FrameRelay(actor, "acct1", SimulatedClock(START, speed=0), 7), journal


def test_the_relay_tells_what_one_read_brought_as_one_message(relayed) -> None:
    relay, journal = relayed
    for second in range(3):
        relay.on_message(trade(second))
    relay.on_drained()
    relay.on_message(trade(3))
    relay.on_drained()
    relay.on_drained()  # nothing held: nothing told
    assert wait_until(lambda: len(journal.received()) == 2, WAIT)
    burst, alone = journal.received()
    assert isinstance(burst, TicksReceived) and isinstance(alone, TicksReceived)
    assert (seconds(burst), burst.frames) == ([0, 1, 2], 3)
    assert (seconds(alone), alone.frames) == ([3], 1)
    assert burst.account == alone.account == "acct1" and burst.received_mono <= alone.received_mono


def test_the_relay_keeps_arrival_order_around_other_messages_and_the_end(relayed) -> None:
    relay, journal = relayed
    ack = Ack("H0STCNT0", "005930", "0", "OPSP0000", "SUBSCRIBE SUCCESS", AckCode.SUBSCRIBE_SUCCESS, False,
              None)
    relay.on_message(trade(0))
    relay.on_message(PingPong("ping"))  # answered by the session itself; never told
    relay.on_message(ack)
    relay.on_message(trade(1))
    relay.on_closed(SessionClosed("connection ended", requested=False))
    assert wait_until(lambda: len(journal.received()) == 4, WAIT)
    first, event, second, ended = journal.received()
    assert isinstance(first, TicksReceived) and seconds(first) == [0]
    assert isinstance(event, SessionEvent) and event.value == ack and event.generation == 7
    assert isinstance(second, TicksReceived) and seconds(second) == [1]
    assert isinstance(ended, SessionEnded) and ended.generation == 7


def test_a_long_burst_is_told_in_pieces_and_a_frame_is_never_split(relayed) -> None:
    relay, journal = relayed
    big = MAX_TICKS_PER_MESSAGE - 1
    relay.on_message(trade(0, big))
    relay.on_message(trade(1, 3))  # crosses the cap: told with the frame whole
    relay.on_message(trade(2))
    relay.on_drained()
    assert wait_until(lambda: len(journal.received()) == 2, WAIT)
    first, rest = journal.received()
    assert (len(first.ticks), first.frames) == (big + 3, 2)
    assert (seconds(rest), rest.frames) == ([2], 1)


def test_trades_a_session_delivers_after_its_actor_crashed_reach_the_next_incarnation() -> None:
    """The session outlives its actor's failure by a moment (on_failure closes it): the trades it still
    relays are held by the Directory for the restarted actor; its session events are not."""
    clock = SimulatedClock(START, speed=0)
    directory = Directory(clock)
    first, second = Journal(), Journal()
    crashed = RecordingActor.start("ws.acct1", directory, first)
    directory.register("ws.acct1", crashed)
    relay = FrameRelay(crashed, "acct1", clock, 7, functools.partial(directory.tell, "ws.acct1"))
    relay.on_message(trade(0))
    relay.on_drained()
    crashed.tell(Crash(at=START, reason="test"))
    assert wait_until(lambda: not crashed.is_alive(), WAIT)
    relay.on_message(trade(1))
    relay.on_closed(SessionClosed("closed by the failing actor", requested=True))
    directory.register("ws.acct1", RecordingActor.start("ws.acct1", directory, second))
    assert wait_until(lambda: len(second.received()) == 1, WAIT)
    assert [seconds(message) for message in first.received(TicksReceived)] == [[0]]
    (held,) = second.received()
    assert isinstance(held, TicksReceived) and seconds(held) == [1]
    assert directory.dead_letter_count == 0


def test_a_burst_reaches_every_peer_whole_and_counts_its_frames(plane: DataPlane) -> None:
    name = plane.start_ws()
    burst = TicksReceived(at=START, account="acct1", ticks=tuple(tick_at(n) for n in range(5)),
                          received_mono=1.0, frames=5)
    plane.tell(name, burst)
    plane.barrier(name)
    for peer in ("recorder", "triggers", "gaps"):
        plane.barrier(peer)
        assert plane.received(peer, TicksReceived) == [burst]
    assert plane.metrics.count("frames") == 5


def test_target_changes_unsubscribe_and_subscribe_the_difference(plane: DataPlane) -> None:
    plane.start_ws()
    first = plane.symbols(4)
    subscribe(plane, first)
    plane.wait_confirmed(first)
    second = first[2:] + plane.symbols(2, skip=10)
    subscribe(plane, second)
    plane.wait_confirmed(second)
    subscribe(plane, second)  # idempotent
    plane.barrier("ws.acct1")
    assert plane.status().pending == ()


def test_after_a_drop_every_target_is_confirmed_again_and_gaps_are_announced(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(41)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    plane.sim.faults.drop_sessions()
    assert wait_until(lambda: plane.metrics.count("reconnects") >= 1, WAIT)
    plane.wait_confirmed(symbols)
    started = plane.received("gaps", ExpectedGapStarted)
    assert len(started) == 1 and set(started[0].symbols) == set(symbols)
    assert wait_until(
        lambda: {s for m in plane.received("gaps", ExpectedGapEnded) for s in m.symbols} == set(symbols), WAIT
    )
    ended = plane.received("gaps", ExpectedGapEnded)
    assert all(m.started_at == started[0].at and m.at >= m.started_at for m in ended)
    assert plane.status().open_gaps == ()
    assert states(plane)[-2:] == [ConnectionState.RECONNECTING, ConnectionState.CONNECTED]


def test_the_42nd_subscription_is_refused_once_and_not_retried(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(42)
    subscribe(plane, symbols)
    assert wait_until(lambda: len(plane.received("slots", SubscriptionRefused)) == 1, WAIT)
    refusal = plane.received("slots", SubscriptionRefused)[0]
    assert refusal.symbol == symbols[-1]
    assert refusal.msg_cd == AckCode.MAX_SUBSCRIBE_OVER.value and refusal.accepted_count == 41
    status = plane.wait_confirmed(symbols[:41])
    assert status.refused == (symbols[-1],)
    subscribe(plane, symbols)  # the same target again: nothing is re-sent
    # A swap behind it: its answers arrive after any answer to a (wrong) second try of the 42nd.
    swapped = symbols[1:41] + plane.symbols(1, skip=60)
    subscribe(plane, swapped)
    plane.wait_confirmed(swapped)
    assert len(plane.received("slots", SubscriptionRefused)) == 1


def test_already_in_subscribe_answers_leave_subscriptions_confirmed(plane: DataPlane) -> None:
    ref = plane.directory.ref(plane.start_ws())
    symbols = plane.symbols(2)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    # Subscribe again on the live session, as a replay racing the server would: KIS answers OPSP0002.
    actor = ref._actor_weakref()  # the real session: the actor has no test hook
    session = actor._session
    session.subscribe("H0STCNT0", symbols[0])
    session.subscribe("H0STCNT0", symbols[1])
    plane.barrier("ws.acct1")
    extra = plane.symbols(1, skip=20)
    subscribe(plane, symbols + extra)
    status = plane.wait_confirmed(symbols + extra)
    assert status.refused == () and plane.received("slots", SubscriptionRefused) == []


def test_a_silent_session_counts_as_a_drop(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(3)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    plane.sim.faults.silence_sessions(2.0)
    assert wait_until(lambda: plane.received("gaps", ExpectedGapStarted) != [], WAIT)
    assert wait_until(lambda: plane.metrics.count("reconnects") >= 1, WAIT)
    plane.wait_confirmed(symbols)
    assert ConnectionState.RECONNECTING in states(plane)


def test_refused_reconnects_suspend_track_b_once_then_recover(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(3)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    plane.sim.faults.refuse_reconnects(2.5)
    plane.sim.faults.drop_sessions()
    assert wait_until(lambda: ConnectionState.SUSPENDED in states(plane), WAIT)
    plane.wait_confirmed(symbols)
    assert states(plane)[-3:] == [ConnectionState.RECONNECTING, ConnectionState.SUSPENDED,
                                  ConnectionState.CONNECTED]
    keys = [alert.key for alert in plane.received("notifier", SystemAlert)]
    assert keys.count("ws_suspended.acct1") == 1 and keys.count("ws_resumed.acct1") == 1
    assert plane.received("gaps", ConnectionChanged)[-2].state is ConnectionState.SUSPENDED
    assert plane.metrics.snapshot()["ws_state.acct1"] == "connected"


def test_malformed_frames_are_counted_and_skipped(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(5)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    plane.sim.faults.malformed_frames(4)
    assert wait_until(lambda: plane.metrics.count("frame_errors") >= 4, WAIT)
    before = len(plane.received("recorder", TicksReceived))
    assert wait_until(lambda: len(plane.received("recorder", TicksReceived)) > before + 3, WAIT)
    assert plane.status().state is ConnectionState.CONNECTED


def test_credentials_renewed_restarts_the_session_with_the_same_targets(plane: DataPlane) -> None:
    plane.start_ws()
    symbols = plane.symbols(4)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    plane.context.vault.renew_approval_key("acct1")
    plane.tell("ws.acct1", CredentialsRenewed(at=plane.sim.clock.now(), account="acct1"))
    assert wait_until(lambda: plane.received("gaps", ExpectedGapEnded) != [], WAIT)
    plane.wait_confirmed(symbols)
    started = plane.received("gaps", ExpectedGapStarted)
    assert [m.reason for m in started] == ["token_refresh"]
    assert plane.metrics.count("reconnects") == 0  # a planned restart is not a failure


def test_execution_notices_reach_the_slot_manager(tmp_path, kis_sim) -> None:
    account = sim_account("acct1").model_copy(update={"hts_id": "hts0001"})
    plane = DataPlane(tmp_path, kis_sim, accounts=(account,))
    plane.peers(*PEERS)
    plane.start_ws()
    assert wait_until(lambda: plane.status().notice_confirmed, WAIT)
    symbol = plane.symbols(1)[0]
    sent = kis_sim.fill(account.app_key.get_secret_value(), symbol, "buy", 10, 50_000)
    assert sent == 1
    assert wait_until(lambda: plane.received("slots", ExecutionsReceived) != [], WAIT)
    notice = plane.received("slots", ExecutionsReceived)[0].notices[0]
    assert (notice.symbol, notice.filled_qty, notice.filled_price) == (symbol, 10, 50_000)
    assert notice.is_fill


def test_a_restarted_actor_resubscribes_its_saved_target_and_closes_the_gap(plane: DataPlane) -> None:
    ends = plane.watch_ends()
    name = plane.start_ws()
    symbols = plane.symbols(3)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: plane.received("recorder", TicksReceived) != [], WAIT)
    plane.tell(name, Crash(at=plane.sim.clock.now()))
    assert wait_until(lambda: ends.received(ChildFailed) != [], WAIT)
    started = plane.received("gaps", ExpectedGapStarted)
    assert [m.reason for m in started] == ["actor_restart"]
    # from the last trade passed on: any queued behind the crash are inside the gap
    assert started[0].at == plane.received("recorder", TicksReceived)[-1].ticks[-1].exchange_time
    plane.start_ws()  # what the supervisor does: a new incarnation with the same context
    plane.wait_confirmed(symbols)
    assert wait_until(
        lambda: {s for m in plane.received("gaps", ExpectedGapEnded) for s in m.symbols} == set(symbols), WAIT
    )
    assert all(m.started_at == started[0].at for m in plane.received("gaps", ExpectedGapEnded))


def test_once_the_tree_is_stopping_ticks_go_to_the_journal_only(plane: DataPlane) -> None:
    """A stop behind a deep backlog must finish within the shutdown timeout: the recorder keeps getting
    every tick, the other peers (whose part the stop's gap covers) none."""
    plane.start_ws()
    symbols = plane.symbols(3)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: plane.received("triggers", TicksReceived) != [], WAIT)
    plane.directory.stopping()
    time.sleep(0.2)  # what was told before the stop began
    before = {peer: len(plane.received(peer, TicksReceived)) for peer in ("recorder", "triggers", "gaps")}
    assert wait_until(lambda: len(plane.received("recorder", TicksReceived)) > before["recorder"] + 2, WAIT)
    assert len(plane.received("triggers", TicksReceived)) == before["triggers"]
    assert len(plane.received("gaps", TicksReceived)) == before["gaps"]


def test_nothing_is_opened_without_a_target_and_the_session_closes_when_emptied(plane: DataPlane) -> None:
    plane.start_ws()
    plane.barrier("ws.acct1")
    assert plane.status().state is ConnectionState.STOPPED
    assert plane.sim.ws.session_count() == 0
    symbols = plane.symbols(2)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    subscribe(plane, ())
    assert wait_until(lambda: plane.status().state is ConnectionState.STOPPED, WAIT)
    assert wait_until(lambda: plane.sim.ws.session_count() == 0, WAIT)
    assert plane.directory.ref("ws.acct1").is_alive()


def test_the_wake_up_pre_connect_opens_a_session_without_registrations_until_track_b_ends(
    plane: DataPlane,
) -> None:
    plane.start_ws()
    plane.barrier("ws.acct1")
    assert plane.sim.ws.session_count() == 0
    now = plane.sim.clock.now()
    plane.tell("ws.acct1", DayEventFired(at=now, event=DayEvent.WS_PRECONNECT))
    assert wait_until(lambda: plane.status().state is ConnectionState.CONNECTED, WAIT)
    assert plane.sim.ws.session_count() == 1 and plane.status().confirmed == ()
    plane.tell("ws.acct1", PhaseChanged(at=now, phase=Phase.TRACK_A_CLOSING, previous=Phase.FULL_OPERATION))
    assert wait_until(lambda: plane.status().state is ConnectionState.STOPPED, WAIT)
    assert wait_until(lambda: plane.sim.ws.session_count() == 0, WAIT)


def test_a_notice_only_session_follows_the_phase(tmp_path, kis_sim) -> None:
    account = sim_account("acct1").model_copy(update={"hts_id": "hts0002"})
    plane = DataPlane(tmp_path, kis_sim, accounts=(account,))
    plane.peers(*PEERS)
    plane.start_ws()
    assert wait_until(lambda: plane.status().notice_confirmed, WAIT)
    now = kis_sim.clock.now()
    plane.tell("ws.acct1", PhaseChanged(at=now, phase=Phase.IDLE, previous=Phase.SHUTDOWN))
    assert wait_until(lambda: plane.status().state is ConnectionState.STOPPED, WAIT)
    assert wait_until(lambda: kis_sim.ws.session_count() == 0, WAIT)
    assert plane.received("gaps", ExpectedGapStarted) == []  # no trade symbol was streaming
    plane.tell("ws.acct1", PhaseChanged(at=now, phase=Phase.WARMUP, previous=Phase.IDLE))
    assert wait_until(lambda: plane.status().notice_confirmed, WAIT)
    assert plane.metrics.count("reconnects") == 0


def test_a_start_opens_a_gap_from_each_target_symbols_last_tick_on_disk(plane: DataPlane) -> None:
    """What the tick files say was streamed before this start: the restored target's symbols get a gap
    from their own last tick (one without a tick on disk from the earliest of theirs), ended when confirmed
    again or at once when the slot manager has dropped them meanwhile; a symbol outside the restored target
    missed nothing."""
    name = plane.start_ws()
    symbols = plane.symbols(3)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    ref = plane.directory.ref(name)
    assert ref is not None
    ref.stop()
    plane.directory.unregister(name)

    plane.start_ws()  # a new process: the target comes back from the state store
    subscribe(plane, symbols[1:])  # the slot manager may speak first: symbols[0] left while we were down
    now = plane.sim.clock.now()
    last = {symbols[0]: now - timedelta(seconds=30), symbols[1]: now - timedelta(seconds=12),
            "999999": now - timedelta(seconds=5)}
    plane.tell(name, DowntimeFound(at=now, account="acct1", last_streamed=tuple(sorted(last.items()))))
    plane.wait_confirmed(symbols[1:])

    def restart_ends() -> dict[str, datetime]:
        return {symbol: m.started_at for m in plane.received("gaps", ExpectedGapEnded) if m.reason == RESTART
                for symbol in m.symbols}

    assert wait_until(lambda: len(restart_ends()) == 3, WAIT)
    assert restart_ends() == {symbols[0]: last[symbols[0]], symbols[1]: last[symbols[1]],
                              symbols[2]: last[symbols[0]]}
    started = {symbol: m.at for m in plane.received("gaps", ExpectedGapStarted) if m.reason == RESTART
               for symbol in m.symbols}
    assert started == restart_ends()
    assert plane.status().open_gaps == ()


def test_a_start_after_a_kill_opens_a_gap_for_a_symbol_that_just_left_the_target(plane: DataPlane) -> None:
    """A kill right after the slot manager dropped a symbol: its last ticks may never have reached the disk
    (queued, or in the recorder's buffers), so the next start opens its restart gap too, from its last tick
    on disk, and ends it at once (it is not wanted). One that left well before the kill missed nothing."""
    name = plane.start_ws()
    symbols = plane.symbols(4)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    subscribe(plane, symbols[2:])  # symbols[0] and symbols[1] leave the target
    assert wait_until(lambda: plane.status().target == symbols[2:], WAIT)
    state = plane.context.paths.state_dir / "subscriptions.acct1.json"
    killed = json.loads(state.read_text(encoding="utf-8"))  # what a SIGKILL leaves: the state last saved
    left_at = datetime.fromisoformat(killed["left"][symbols[1]])
    killed["left"][symbols[1]] = (left_at - timedelta(seconds=40)).isoformat()  # it left 40 s before the kill
    ref = plane.directory.ref(name)
    assert ref is not None
    ref.stop()
    plane.directory.unregister(name)
    state.write_text(json.dumps(killed), encoding="utf-8")

    plane.start_ws()  # a new process
    now = plane.sim.clock.now()
    last = {symbols[0]: now - timedelta(seconds=3), symbols[1]: now - timedelta(seconds=45),
            symbols[2]: now - timedelta(seconds=2)}
    plane.tell(name, DowntimeFound(at=now, account="acct1", last_streamed=tuple(sorted(last.items()))))
    plane.wait_confirmed(symbols[2:])

    def restart_ends() -> dict[str, datetime]:
        return {symbol: m.started_at for m in plane.received("gaps", ExpectedGapEnded) if m.reason == RESTART
                for symbol in m.symbols}

    assert wait_until(lambda: len(restart_ends()) == 3, WAIT)
    assert restart_ends() == {symbols[0]: last[symbols[0]], symbols[2]: last[symbols[2]],
                              symbols[3]: last[symbols[0]]}
    assert plane.status().open_gaps == ()


def test_a_gap_open_at_a_kill_reaches_back_to_the_last_tick_on_disk(plane: DataPlane) -> None:
    """A kill right after a drop: the drop's gap, saved open, starts after ticks that were still in the
    recorder's buffers; at the next start it becomes the restart's gap, from the last tick on disk."""
    name = plane.start_ws()
    symbols = plane.symbols(2)
    subscribe(plane, symbols)
    plane.wait_confirmed(symbols)
    state = plane.context.paths.state_dir / "subscriptions.acct1.json"
    killed = json.loads(state.read_text(encoding="utf-8"))
    now = plane.sim.clock.now()
    dropped = now - timedelta(seconds=5)
    killed["gaps"] = {symbol: [dropped.isoformat(), "websocket_reconnect"] for symbol in symbols}
    ref = plane.directory.ref(name)
    assert ref is not None
    ref.stop()
    plane.directory.unregister(name)
    state.write_text(json.dumps(killed), encoding="utf-8")  # what a SIGKILL during the drop leaves

    plane.sim.faults.refuse_reconnects(1.0)  # the downtime is told before any symbol is confirmed again
    plane.start_ws()
    last = {symbols[0]: dropped - timedelta(seconds=2), symbols[1]: dropped + timedelta(seconds=1)}
    plane.tell(name, DowntimeFound(at=now, account="acct1", last_streamed=tuple(sorted(last.items()))))
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: len(plane.received("gaps", ExpectedGapEnded)) >= 2, WAIT)
    ends = {symbol: (m.started_at, m.reason) for m in plane.received("gaps", ExpectedGapEnded)
            for symbol in m.symbols}
    assert ends == {symbols[0]: (last[symbols[0]], RESTART), symbols[1]: (dropped, "websocket_reconnect")}
    started = [(m.symbols, m.at, m.reason) for m in plane.received("gaps", ExpectedGapStarted)]
    assert started == [((symbols[0],), last[symbols[0]], RESTART)]


def test_a_miss_tells_each_symbols_last_tick_passed_on_before_it(plane: DataPlane) -> None:
    """The gap actor may get the ticks after a miss before the miss itself (over the link between
    processes): the connection says where each symbol's gap begins, from the ticks it passed on in order."""
    plane.start_ws()
    plane.tell("ws.acct1", TicksReceived(at=START, account="acct1", ticks=(tick_at(3), tick_at(5)),
                                         received_mono=0.0))
    plane.tell("ws.acct1", TicksShed(("005930", "000660"), START.replace(second=9)))
    plane.tell("ws.acct1", TicksReceived(at=START, account="acct1", ticks=(tick_at(8),), received_mono=0.0))
    assert wait_until(lambda: plane.received("gaps", TicksMissed), WAIT)
    (missed,) = plane.received("gaps", TicksMissed)
    assert missed.symbols == ("005930", "000660") and missed.since == (("005930", START.replace(second=5)),)


def test_a_full_receive_queue_drops_trades_and_reports_their_symbols_before_the_next_ones() -> None:
    journal = Journal()
    actor = RecordingActor.start("ws.acct1", Directory(SimulatedClock(START, speed=0)), journal)
    backlog = Backlog()
    backlog.told = 3
    relay = FrameRelay(actor, "acct1", SimulatedClock(START, speed=0), 7, backlog=backlog, max_queue=3)
    relay.on_message(trade(0))
    relay.on_drained()  # three messages wait: dropped
    backlog.handled = 3  # the actor caught up
    relay.on_message(trade(1))
    relay.on_drained()
    assert wait_until(lambda: len(journal.received()) == 2, WAIT)
    shed, ticks = journal.received()
    assert isinstance(shed, TicksShed) and shed.symbols == ("005930",)
    assert isinstance(ticks, TicksReceived) and seconds(ticks) == [1]
    assert backlog.told == 4 and backlog.pending() == 1


def test_ticks_handled_late_shed_subscriptions_alert_once_and_recover_when_quiet(tmp_path, kis_sim) -> None:
    websocket = FAST_WS.model_copy(update={"backpressure_lag_seconds": 0.05,
                                           "backpressure_recover_seconds": 0.2,
                                           "backpressure_step_seconds": 60.0})
    plane = DataPlane(tmp_path, kis_sim, websocket=websocket)
    plane.peers(*PEERS)
    plane.start_ws()
    stamped = time.monotonic()
    time.sleep(0.1)  # the message waited 0.1 s before the actor handled it: behind the 0.05 s limit
    for _ in range(2):
        plane.tell("ws.acct1", TicksReceived(at=START, account="acct1", ticks=(tick_at(0),),
                                             received_mono=stamped))
    plane.barrier("ws.acct1")
    assert wait_until(lambda: len(plane.received("slots", BackPressure)) >= 2, WAIT)
    started, first = plane.received("slots", BackPressure)[:2]
    assert started.level == 0  # each incarnation starts unshed (slots shed for a crashed one come back)
    assert (first.account, first.level) == ("acct1", 1) and first.lag_seconds >= 0.1

    # nothing more arrives: the check timer finds the queue empty and takes the slots back
    assert wait_until(lambda: [m.level for m in plane.received("slots", BackPressure)] == [0, 1, 0], WAIT)
    alerts = [m.key for m in plane.received("notifier", SystemAlert) if m.key.startswith("backpressure")]
    assert alerts == ["backpressure.acct1"]

    plane.tell("ws.acct1", TicksShed(("005930", "000660"), START))
    assert wait_until(lambda: plane.received("gaps", TicksMissed), WAIT)
    missed = plane.received("gaps", TicksMissed)[0]
    assert (missed.symbols, missed.reason, missed.at) == (("005930", "000660"), "backpressure", START)
