"""Actor messages between processes: their JSON form round-trips, and a Directory whose children run
elsewhere reaches them over a real nats-server (two Directories here stand for two processes)."""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import date, datetime, timedelta
from typing import Any

import pykka
import pytest

from actors.base import ObserverActor
from actors.directory import Directory
from core.bars import MinuteBar
from core.gaps import Gap
from core.recovery import build_recovery_records, gap_marker
from kis.models import MultiQuote
from kis.ticks import ExecutionNotice, TradeTick
from messages.gaps import DowntimeFound
from messages.market import ExecutionsReceived, ScanCompleted, SymbolProfile, TicksReceived, UniverseReady
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from messages.streaming import ConnectionChanged, ConnectionState, CurrentTargets, SetSubscriptions
from messages.system import Crash
from runtime.clock import KST, SystemClock
from spine.internal import MESSAGE_TYPES, NotCrossable, decode, encode, internal_subject
from spine.link import SETTLE_QUIET_SECONDS, Link, RemoteError
from spine.server import NatsServer

AT = datetime(2026, 9, 14, 9, 31, 5, tzinfo=KST)
GAP = Gap(symbol="005930", start=AT - timedelta(seconds=70), end=AT, expected=True, reason="observer_restart")


def trade(symbol: str, price: int, raw: tuple[str, ...] = ()) -> TradeTick:
    return TradeTick(
        symbol, AT, price, 100, "2", 0.14, 3, 1000, 1000 * price, price - 50, price + 50,
        price - 60, price + 10, price, "1", 101.5, "0", raw,
    )  # fmt: skip


def ticks_message() -> TicksReceived:
    return TicksReceived(at=AT, account="sim1", ticks=(trade("005930", 71000), trade("000660", 180000)),
                         received_mono=12.5, frames=2)


def test_every_crossing_message_round_trips() -> None:
    notice = ExecutionNotice("1", "0", "buy", "005930", 10, 71000, "093105", False, True, 10, ("a", "b"))
    samples: list[Any] = [
        ticks_message(),
        ExecutionsReceived(at=AT, account="sim1", notices=(notice,)),
        SetSubscriptions(at=AT, account="sim1", symbols=("005930", "000660")),
        ConnectionChanged(at=AT, account="sim1", state=ConnectionState.RECONNECTING, since_seconds=2.5),
        UniverseReady(at=AT, day=date(2026, 9, 14), profiles=(
            SymbolProfile(at=AT, symbol="005930", name="Samsung", market="KOSPI", market_cap=None,
                          prev_close=70000),
        )),
        DowntimeFound(at=AT, account="sim1", last_streamed=(("005930", AT),)),
        Crash(at=AT, reason="chaos"),
        RecoveryRecorded(at=AT, account="sim1", gap=GAP, records=build_recovery_records(GAP, (
            MinuteBar(symbol="005930", time=AT.replace(second=0), open=1, high=3, low=1, close=2, volume=9,
                      value=18),
        ), recovered_at=AT)),
        GapMarked(at=AT, account="sim1", marker=gap_marker(GAP, "longer than 60 s", at=AT)),
        OverflowRecorded(at=AT, account="sim1", lines=({"symbol": "005930", "rank": 41},)),
        ScanCompleted(at=AT, account="sim1", scan_no=3, calls=1, duration_seconds=0.4, rows=(
            MultiQuote(symbol="005930", name="Samsung", price=71000, change=100, sign="2", change_rate=0.14,
                       volume=10, value=710000, open=70900, high=71100, low=70800, upper_limit=92000,
                       lower_limit=49000, prev_close=70900, base_price=70900, ask=71100, bid=71000),
        )),
    ]
    for message in samples:
        back = decode(encode(message))
        assert back == message
        assert type(back) is type(message)
    ticks = decode(encode(ticks_message())).ticks
    assert all(isinstance(tick, TradeTick) for tick in ticks)
    assert ticks[1].exchange_time == AT


def test_a_tick_crosses_without_its_raw_record() -> None:
    """The raw KIS record stays in the stream process: no actor of another process reads it."""
    raw = ticks_message().model_copy(update={"ticks": (trade("005930", 71000, raw=("a^b", "005930")),)})
    assert b"a^b" not in encode(raw)
    assert decode(encode(raw)).ticks == (trade("005930", 71000),)


def test_replies_round_trip_and_strangers_are_refused() -> None:
    assert decode(encode(("005930", "000660"))) == ("005930", "000660")
    assert decode(encode(None)) is None
    assert decode(encode("done: scan started")) == "done: scan started"
    with pytest.raises(NotCrossable):
        encode(object())
    with pytest.raises(NotCrossable):
        decode(b'{"type": "NoSuchMessage", "message": {}}')
    assert "TicksReceived" in MESSAGE_TYPES and "CredentialsRenewed" in MESSAGE_TYPES


def test_internal_subjects_stay_outside_the_public_tree() -> None:
    subject = internal_subject("main", "ws.sim1")
    assert subject == "observer-internal.main.ws_sim1"
    assert not subject.startswith("observer.main.")


class Recording(ObserverActor):
    """Keeps what it is told; answers CurrentTargets with two symbols and fails on anything else asked."""

    def __init__(self, name: str, directory: Directory, got: list[Any], arrived: threading.Event) -> None:
        super().__init__(name, directory)
        self.got = got
        self.arrived = arrived

    def on_receive(self, message: Any) -> Any:
        match message:
            case CurrentTargets():
                return ("005930", "000660")
            case SetSubscriptions():
                raise ValueError("not here")
            case _:
                self.got.append(message)
                self.arrived.set()
                return None


def wait_for(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def nats_server(tmp_path: Any) -> Any:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    try:
        yield server
    finally:
        server.stop()


def test_a_remote_child_is_told_and_asked_over_nats_and_survives_a_server_kill(
    nats_server: NatsServer,
) -> None:
    clock = SystemClock()
    stream, control = Directory(clock), Directory(clock)
    got: list[Any] = []
    arrived = threading.Event()
    recorder = Recording.start("recorder", stream, got, arrived)
    stream.register("recorder", recorder)
    stream_link = Link(nats_server.url, "test", name="stream").start(stream)
    control_link = Link(nats_server.url, "test", name="control").start(control)
    control.route_remote(control_link, ["recorder", "ws.sim1"])
    early = DowntimeFound(at=AT, account="sim1", last_streamed=())
    assert control.tell("recorder", early)  # before the recorder is served: kept and sent again
    time.sleep(0.5)
    stream_link.serve(["recorder"])
    try:
        assert control.tell("recorder", ticks_message())
        assert wait_for(lambda: len(got) == 2, 5)
        assert early in got and ticks_message() in got
        assert control.ask("recorder", CurrentTargets(at=AT, account="sim1")) == ("005930", "000660")
        with pytest.raises(RemoteError, match="ValueError: not here"):
            control.ask("recorder", SetSubscriptions(at=AT, account="sim1", symbols=()))
        assert control.ask("ws.sim1", CurrentTargets(at=AT, account="sim1"), default="nobody") == "nobody"

        os.kill(nats_server.pid or 0, signal.SIGKILL)
        during = DowntimeFound(at=AT, account="sim2", last_streamed=())
        assert control.tell("recorder", during)  # told while the server is down: sent once it is back
        assert wait_for(lambda: during in got, 20)
        assert control_link.connected and stream_link.connected
    finally:
        control_link.stop()
        stream_link.stop()
        pykka.ActorRegistry.stop_all()


def test_ticks_told_while_nats_is_down_reach_the_other_process_in_order_once_both_are_back(
    nats_server: NatsServer,
) -> None:
    """NATS is killed and the control process is gone; the stream keeps telling ticks. After NATS is back
    and a new control process serves its children, it gets every one of them, in order."""
    clock = SystemClock()
    stream, control = Directory(clock), Directory(clock)
    got: list[Any] = []
    arrived = threading.Event()
    control.register("triggers", Recording.start("triggers", control, got, arrived))
    stream_link = Link(nats_server.url, "test", name="stream").start(stream)
    stream.route_remote(stream_link, ["triggers"])
    control_link = Link(nats_server.url, "test", name="control").start(control)
    control_link.serve(["triggers"])
    later: Link | None = None
    try:
        assert stream.tell("triggers", ticks_message())
        assert wait_for(lambda: len(got) == 1, 5)
        control_link.stop()
        os.kill(nats_server.pid or 0, signal.SIGKILL)
        assert wait_for(lambda: not stream_link.connected, 5)
        told = [tick_numbered(number) for number in range(30)]
        for message in told:
            assert stream.tell("triggers", message)
        assert wait_for(lambda: stream_link.connected, 20)
        time.sleep(1.0)  # the stream is back first: what it held must wait for the other side
        later = Link(nats_server.url, "test", name="control-again").start(control)
        later.serve(["triggers"])
        assert stream.tell("triggers", tick_numbered(30))  # after the outage, behind what was held
        assert wait_for(lambda: len(got) == 32, 20), f"{len(got) - 1} of 31 arrived"
        assert got[1:] == [*told, tick_numbered(30)]
    finally:
        if later is not None:
            later.stop()
        control_link.stop()
        stream_link.stop()
        pykka.ActorRegistry.stop_all()


def tick_numbered(number: int) -> TicksReceived:
    return TicksReceived(at=AT + timedelta(seconds=number), account="sim1",
                         ticks=(trade("005930", 71000 + number),), received_mono=float(number), frames=1)


def test_settling_waits_until_the_other_process_said_it_stopped(nats_server: NatsServer) -> None:
    """A stopping stream process keeps its recorder until control's last messages are in: control sends
    its last gap markers only after its other actors stopped, which may be more than a quiet second."""
    clock = SystemClock()
    stream, control = Directory(clock), Directory(clock)
    got: list[Any] = []
    recorder = Recording.start("recorder", stream, got, threading.Event())
    stream.register("recorder", recorder)
    stream_link = Link(nats_server.url, "test", name="stream").start(stream)
    control_link = Link(nats_server.url, "test", name="control").start(control)
    control.route_remote(control_link, ["recorder"])
    stream_link.serve(["recorder"])
    last = GapMarked(at=AT, account="sim1", marker=gap_marker(
        Gap(symbol="005930", start=AT, end=AT, expected=True, reason="observer_stop"), "stopped", at=AT))

    def control_stops_late() -> None:
        time.sleep(SETTLE_QUIET_SECONDS + 0.5)
        control.tell("recorder", last)
        control_link.stop()

    stopping = threading.Thread(target=control_stops_late)
    stopping.start()
    try:
        stream_link.settle("control")
        assert last in got
    finally:
        stopping.join()
        stream_link.stop()
        pykka.ActorRegistry.stop_all()


def test_a_child_two_processes_serve_gets_each_message_once_but_the_universe_in_both(
    nats_server: NatsServer,
) -> None:
    """Two stream processes serve `recorder`; a third serves it too but its recorder has stopped. Each
    message told reaches one running recorder (the stopped one's process leaves it unanswered, so it is
    sent again), UniverseReady reaches both running recorders."""
    clock = SystemClock()
    control = Directory(clock)
    control_link = Link(nats_server.url, "test", name="control").start(control)
    control.route_remote(control_link, ["recorder"])
    got: dict[str, list[Any]] = {"a": [], "b": []}
    links = []
    for name in ("a", "b", "stopped"):
        directory = Directory(clock)
        if name in got:
            recorder = Recording.start("recorder", directory, got[name], threading.Event())
            directory.register("recorder", recorder)
        links.append(Link(nats_server.url, "test", name=name).start(directory))
        links[-1].serve(["recorder"])
    try:
        universe = UniverseReady(at=AT, day=AT.date(), profiles=())
        told = [DowntimeFound(at=AT, account=f"acct{number}", last_streamed=()) for number in range(12)]
        assert control.tell("recorder", universe)
        for message in told:
            assert control.tell("recorder", message)
        everything = lambda: [m for messages in got.values() for m in messages]  # noqa: E731
        assert wait_for(lambda: len(everything()) >= len(told) + 2, 20), everything()
        time.sleep(0.5)
        assert sorted(m.account for m in everything() if isinstance(m, DowntimeFound)) == sorted(
            m.account for m in told)
        assert all(messages.count(universe) == 1 for messages in got.values())
    finally:
        for link in (control_link, *links):
            link.stop()
        pykka.ActorRegistry.stop_all()
