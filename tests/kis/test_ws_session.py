"""KisWebSocketSession over real loopback sockets: the KIS simulator, and a tiny echo-recording server."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import date

import pytest
from pydantic import SecretStr
from websockets.sync.server import Server, ServerConnection, serve

from core.subscriptions import AckCode
from kis.ticks import Ack, Decoded, ExecutionNoticeFrame, FrameError, PingPong, TradeFrame, TradeTick
from kis.ws_session import KisWebSocketError, KisWebSocketSession, SessionClosed
from runtime.clock import KST
from tools.kis_sim.server import KisSimulator, SimConfig

APP_KEY, APP_SECRET = "APPKEY-WS-SESSION", "SECRET-WS-SESSION"
SYMBOL = "005930"
WAIT = 5.0


class Inbox:
    """Collects what a session reports, and lets a test wait for a condition on it."""

    def __init__(self) -> None:
        self.values: list[Decoded] = []
        self.closed: list[SessionClosed] = []
        self._changed = threading.Condition()

    def on_message(self, value: Decoded) -> None:
        with self._changed:
            self.values.append(value)
            self._changed.notify_all()

    def on_closed(self, closed: SessionClosed) -> None:
        with self._changed:
            self.closed.append(closed)
            self._changed.notify_all()

    def wait(self, condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def acks(self, msg_cd: str) -> list[Ack]:
        return [v for v in self.values if isinstance(v, Ack) and v.msg_cd == msg_cd]

    def ticks(self, symbol: str) -> list[TradeTick]:
        return [t for v in self.values if isinstance(v, TradeFrame) for t in v.ticks if t.symbol == symbol]

    def count(self, kind: type) -> int:
        return sum(isinstance(v, kind) for v in self.values)


@pytest.fixture
def approval(kis_sim: KisSimulator) -> SecretStr:
    return SecretStr(kis_sim.accounts.issue_approval(APP_KEY, APP_SECRET))


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
def session(kis_sim: KisSimulator, approval: SecretStr, inbox: Inbox) -> Iterator[KisWebSocketSession]:
    session = KisWebSocketSession(kis_sim.ws_url, approval, inbox.on_message, inbox.on_closed)
    session.connect()
    yield session
    session.close()


# --- against the KIS simulator ---------------------------------------------------------------------------


def test_subscribe_is_acknowledged_and_typed_trade_ticks_follow(
    session: KisWebSocketSession, inbox: Inbox
) -> None:
    session.subscribe("H0STCNT0", SYMBOL)

    inbox.wait(lambda: len(inbox.ticks(SYMBOL)) >= 5, "five ticks")
    (ack,) = inbox.acks(AckCode.SUBSCRIBE_SUCCESS)
    assert (ack.tr_id, ack.tr_key, ack.ok) == ("H0STCNT0", SYMBOL, True)
    assert inbox.values.index(ack) < next(i for i, v in enumerate(inbox.values) if isinstance(v, TradeFrame))
    ticks = inbox.ticks(SYMBOL)
    assert all(t.exchange_time.tzinfo is KST and t.exchange_time.date() == date(2024, 3, 4) for t in ticks)
    assert all(t.price > 0 and t.volume > 0 and len(t.fields) >= 46 for t in ticks)
    assert [t.cum_volume for t in ticks] == sorted(t.cum_volume for t in ticks)
    assert inbox.count(FrameError) == 0


def test_second_subscribe_of_the_same_registration_is_already_in_subscribe(
    session: KisWebSocketSession, inbox: Inbox
) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    session.subscribe("H0STCNT0", SYMBOL)

    inbox.wait(lambda: bool(inbox.acks(AckCode.ALREADY_SUBSCRIBED)), "the second ack")
    assert inbox.acks(AckCode.ALREADY_SUBSCRIBED)[0].ok is False


def test_no_trades_of_a_symbol_follow_its_unsubscribe_ack(session: KisWebSocketSession, inbox: Inbox) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    inbox.wait(lambda: bool(inbox.ticks(SYMBOL)), "a first tick")

    session.unsubscribe("H0STCNT0", SYMBOL)

    inbox.wait(lambda: bool(inbox.acks(AckCode.UNSUBSCRIBE_SUCCESS)), "the unsubscribe ack")
    after = inbox.values.index(inbox.acks(AckCode.UNSUBSCRIBE_SUCCESS)[0])
    inbox.wait(lambda: sum(isinstance(v, PingPong) for v in inbox.values[after:]) >= 2, "two heartbeats")
    assert not [v for v in inbox.values[after:] if isinstance(v, TradeFrame)]


def test_heartbeats_are_reported_and_the_session_stays_open(
    session: KisWebSocketSession, inbox: Inbox
) -> None:
    inbox.wait(lambda: inbox.count(PingPong) >= 3, "three PINGPONGs")

    assert session.is_open and not inbox.closed
    first = next(v for v in inbox.values if isinstance(v, PingPong))
    assert json.loads(first.raw)["header"]["tr_id"] == "PINGPONG"


def test_encrypted_execution_notice_is_decrypted_with_the_key_from_its_ack(
    kis_sim: KisSimulator, session: KisWebSocketSession, inbox: Inbox
) -> None:
    session.subscribe("H0STCNI0", "my-hts-id")
    inbox.wait(lambda: bool(inbox.acks(AckCode.SUBSCRIBE_SUCCESS)), "the notice subscribe ack")
    assert inbox.acks(AckCode.SUBSCRIBE_SUCCESS)[0].keys is not None

    kis_sim.accounts.apply_fill(APP_KEY, SYMBOL, "buy", 7, 70000)  # something to sell (books, sends nothing)
    assert kis_sim.fill(APP_KEY, SYMBOL, "sell", 7, 71000) == 1

    inbox.wait(lambda: inbox.count(ExecutionNoticeFrame) == 1, "the notice")
    (frame,) = [v for v in inbox.values if isinstance(v, ExecutionNoticeFrame)]
    (notice,) = frame.notices
    assert (notice.symbol, notice.side, notice.filled_qty, notice.filled_price) == (SYMBOL, "01", 7, 71000)
    assert notice.is_fill and not notice.rejected


def test_garbled_frames_arrive_as_errors_and_the_stream_goes_on(
    kis_sim: KisSimulator, session: KisWebSocketSession, inbox: Inbox
) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    inbox.wait(lambda: bool(inbox.ticks(SYMBOL)), "a first tick")

    kis_sim.faults.malformed_frames(1)
    kis_sim.faults.truncated_frames(1)

    inbox.wait(lambda: inbox.count(FrameError) == 2, "two frame errors")
    last_error = max(i for i, v in enumerate(inbox.values) if isinstance(v, FrameError))
    inbox.wait(lambda: any(isinstance(v, TradeFrame) for v in inbox.values[last_error:]), "a tick after them")
    assert session.is_open and not inbox.closed


def test_a_second_session_of_the_same_app_key_is_refused(
    kis_sim: KisSimulator, session: KisWebSocketSession
) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    second_inbox = Inbox()
    second = KisWebSocketSession(
        kis_sim.ws_url,
        SecretStr(kis_sim.accounts.issue_approval(APP_KEY, APP_SECRET)),
        second_inbox.on_message,
        second_inbox.on_closed,
    )
    second.connect()
    try:
        second.subscribe("H0STCNT0", "000660")
        second_inbox.wait(lambda: bool(second_inbox.closed), "the refused session to end")
    finally:
        second.close()

    assert second_inbox.acks(AckCode.APPKEY_IN_USE)
    assert second_inbox.closed[0].requested is False
    assert session.is_open


def test_close_from_another_thread_ends_the_loop_once(session: KisWebSocketSession, inbox: Inbox) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    inbox.wait(lambda: bool(inbox.ticks(SYMBOL)), "a first tick")

    closer = threading.Thread(target=session.close)
    closer.start()
    closer.join(WAIT)

    inbox.wait(lambda: bool(inbox.closed), "the close report")
    assert inbox.closed == [SessionClosed("closed on request", requested=True)]
    assert not session.is_open
    with pytest.raises(KisWebSocketError, match="not open"):
        session.subscribe("H0STCNT0", "000660")
    session.close()
    assert len(inbox.closed) == 1


def test_a_dropped_connection_is_reported_as_not_requested(
    kis_sim: KisSimulator, session: KisWebSocketSession, inbox: Inbox
) -> None:
    session.subscribe("H0STCNT0", SYMBOL)
    inbox.wait(lambda: bool(inbox.ticks(SYMBOL)), "a first tick")

    kis_sim.faults.drop_sessions()

    inbox.wait(lambda: bool(inbox.closed), "the drop report")
    assert inbox.closed[0].requested is False
    assert not session.is_open


def test_the_session_echoes_pingpong_so_a_strict_server_keeps_it_open(
    kis_sim_config: SimConfig, inbox: Inbox
) -> None:
    strict = dataclasses.replace(
        kis_sim_config, pingpong_interval=0.2, require_pong_echo=True, pong_timeout=0.5
    )
    with KisSimulator(strict) as sim:
        approval = SecretStr(sim.accounts.issue_approval(APP_KEY, APP_SECRET))
        session = KisWebSocketSession(sim.ws_url, approval, inbox.on_message, inbox.on_closed)
        session.connect()
        try:
            session.subscribe("H0STCNT0", SYMBOL)
            inbox.wait(lambda: inbox.count(PingPong) >= 8, "eight PINGPONGs (over three echo deadlines)")
            assert session.is_open and not inbox.closed
            assert sim.ws.session_count() == 1
        finally:
            session.close()


def test_a_failing_callback_does_not_stop_the_receive_loop(
    kis_sim: KisSimulator, approval: SecretStr
) -> None:
    inbox = Inbox()

    def fragile(value: Decoded) -> None:
        inbox.on_message(value)
        raise RuntimeError("callback bug")

    session = KisWebSocketSession(kis_sim.ws_url, approval, fragile, inbox.on_closed)
    session.connect()
    try:
        session.subscribe("H0STCNT0", SYMBOL)
        inbox.wait(lambda: len(inbox.ticks(SYMBOL)) >= 3, "ticks despite the failing callback")
    finally:
        session.close()


def test_connect_failure_is_a_clear_error_without_the_approval_key() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    secret = "00000000-approval-key-never-shown-0000"
    session = KisWebSocketSession(
        f"ws://127.0.0.1:{port}", SecretStr(secret), lambda _v: None, connect_timeout=1
    )

    with pytest.raises(KisWebSocketError) as info:
        session.connect()

    assert f"ws://127.0.0.1:{port}/tryitout" in str(info.value) and secret not in str(info.value)
    assert secret not in repr(session.__dict__)


# --- against a recording server: what the session itself sends -------------------------------------------


class RecordingServer:
    """Sends scripted text to each client and records every text it receives."""

    def __init__(self, script: Callable[[ServerConnection], None]) -> None:
        self.received: list[str] = []
        self.got_message = threading.Event()
        self._script = script
        self._server: Server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, connection: ServerConnection) -> None:
        self._script(connection)
        for message in connection:
            self.received.append(message if isinstance(message, str) else message.decode())
            self.got_message.set()

    def shutdown(self) -> None:
        self._server.shutdown()


@pytest.fixture
def recording_server(request: pytest.FixtureRequest) -> Iterator[RecordingServer]:
    server = RecordingServer(request.param)
    yield server
    server.shutdown()


PINGPONG = '{"header":{"tr_id":"PINGPONG","datetime":"20240304093000"}}'


@pytest.mark.parametrize("recording_server", [lambda c: c.send(PINGPONG)], indirect=True)
def test_pingpong_is_echoed_as_the_same_text(recording_server: RecordingServer, inbox: Inbox) -> None:
    session = KisWebSocketSession(recording_server.url, SecretStr("k"), inbox.on_message, inbox.on_closed)
    session.connect()
    try:
        assert recording_server.got_message.wait(WAIT)
    finally:
        session.close()

    assert recording_server.received == [PINGPONG]
    assert inbox.values == [PingPong(PINGPONG)]


@pytest.mark.parametrize(
    "recording_server",
    [lambda c: (c.send(b"\xff\xfe not text"), c.send("{"), c.close(4000, "bye"))],
    indirect=True,
)
def test_undecodable_messages_are_reported_and_a_server_close_ends_the_loop(
    recording_server: RecordingServer, inbox: Inbox
) -> None:
    session = KisWebSocketSession(recording_server.url, SecretStr("k"), inbox.on_message, inbox.on_closed)
    session.connect()
    try:
        inbox.wait(lambda: bool(inbox.closed), "the server's close")
    finally:
        session.close()

    assert [type(v) for v in inbox.values] == [FrameError, FrameError]
    assert inbox.closed == [SessionClosed("closed by server (code 4000: bye)", requested=False)]


@pytest.mark.parametrize("recording_server", [lambda c: None], indirect=True)
def test_subscribe_sends_the_documented_registration(recording_server: RecordingServer, inbox: Inbox) -> None:
    session = KisWebSocketSession(recording_server.url, SecretStr("approval-1"), inbox.on_message)
    session.connect()
    try:
        session.subscribe("H0STCNT0", SYMBOL)
        assert recording_server.got_message.wait(WAIT)
    finally:
        session.close()

    assert json.loads(recording_server.received[0]) == {
        "header": {"approval_key": "approval-1", "custtype": "P", "tr_type": "1", "content-type": "utf-8"},
        "body": {"input": {"tr_id": "H0STCNT0", "tr_key": SYMBOL}},
    }


def live_frame(second: int) -> str:
    """The verbatim H0STCNT0 frame of docs/kis_api_facts.md, its trade time set to 11:26:`second`."""
    fields = LIVE_FRAME.split("^")
    fields[1] = f"1126{second:02d}"
    return "^".join(fields)


LIVE_FRAME = (
    "0|H0STCNT0|001|005930^112616^62700^2^400^0.64^62700.41^62700^63000^62300^62700^62600^125^9694968"
    "^607878273600^25807^15918^-9889^93.01^4614191^4291558^1^0.45^63.03^090013^3^0^090646^5^-300^100741^2"
    "^400^20230324^20^N^71292^244009^2795345^2044512^0.16^5367918^180.61^0^^62700"
)
BURST = [live_frame(second) for second in range(40)]


@pytest.mark.parametrize("recording_server", [lambda c: [c.send(frame) for frame in BURST]], indirect=True)
def test_drained_follows_the_last_message_of_what_the_socket_held(
    recording_server: RecordingServer, inbox: Inbox
) -> None:
    events: list[str] = []

    def on_message(value: Decoded) -> None:
        events.append("message")
        inbox.on_message(value)

    def on_drained() -> None:
        events.append("drained")
        inbox.on_message(PingPong("drained"))  # wakes the waiting test; not a message of the session

    session = KisWebSocketSession(recording_server.url, SecretStr("k"), on_message, inbox.on_closed,
                                  on_drained=on_drained)
    session.connect()
    try:
        inbox.wait(lambda: inbox.count(TradeFrame) == len(BURST) and events[-1] == "drained", "a drain")
    finally:
        session.close()

    assert events.count("message") == len(BURST)
    assert events[0] == "message" and "drained drained" not in " ".join(events)
    seconds = [tick.exchange_time.second for tick in inbox.ticks(SYMBOL)]
    assert seconds == list(range(40))


PONGS: list[bool] = []


def send_fragmented_then_ping(connection: ServerConnection) -> None:
    """One message in three fragments, a protocol ping (its pong awaited), two more messages, the last over
    64 KiB."""
    connection.send(iter([BURST[0][:10], BURST[0][10:50], BURST[0][50:]]))
    PONGS.append(connection.ping(b"are you there").wait(WAIT))
    connection.send(f"0|H0STCNT0|{len(BURST):03d}|" + "^".join(frame.split("|")[3] for frame in BURST))
    connection.send("0|H0STCNT0|300|" + "^".join(LIVE_FRAME.split("|")[3] for _ in range(300)))


@pytest.mark.parametrize("recording_server", [send_fragmented_then_ping], indirect=True)
def test_fragments_are_joined_pings_answered_and_large_frames_read_whole(
    recording_server: RecordingServer, inbox: Inbox
) -> None:
    PONGS.clear()
    session = KisWebSocketSession(recording_server.url, SecretStr("k"), inbox.on_message, inbox.on_closed)
    session.connect()
    try:
        inbox.wait(lambda: inbox.count(TradeFrame) == 3, "three trade messages")
    finally:
        session.close()

    frames = [v for v in inbox.values if isinstance(v, TradeFrame)]
    assert [len(frame.ticks) for frame in frames] == [1, len(BURST), 300]
    assert len(LIVE_FRAME) * 300 > 65_536  # the last one took the 64-bit length form
    assert PONGS == [True]
    assert [tick.exchange_time.second for tick in frames[1].ticks] == list(range(40))
    assert not any(isinstance(v, FrameError) for v in inbox.values)
    assert not inbox.closed or inbox.closed[0].requested


def test_a_frame_a_client_must_refuse_ends_the_session_with_a_one_line_reason(inbox: Inbox) -> None:
    """A raw server: a correct handshake, then a text frame with a reserved bit set."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        connection, _ = listener.accept()
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                request += connection.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in request.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key:"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            connection.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            connection.sendall(bytes([0x80 | 0x40 | 0x1, 2]) + b"{}")
            connection.recv(4096)  # until the client goes

    server = threading.Thread(target=serve_one, daemon=True)
    server.start()
    session = KisWebSocketSession(f"ws://127.0.0.1:{listener.getsockname()[1]}", SecretStr("k"),
                                  inbox.on_message, inbox.on_closed)
    try:
        session.connect()
        inbox.wait(lambda: bool(inbox.closed), "the session's end")
    finally:
        session.close()
        listener.close()
        server.join(WAIT)

    assert inbox.values == []
    (closed,) = inbox.closed
    assert closed.reason.startswith("WebSocketProtocolException: ") and "\n" not in closed.reason
    assert not closed.requested
