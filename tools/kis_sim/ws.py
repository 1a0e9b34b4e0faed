"""The simulator's KIS WebSocket server: subscribe/ack, PINGPONG, trade/order-book frames, encrypted notices.

Trades are served on the three feeds KIS has: H0STCNT0 (KRX), H0NXCNT0 (Nextrade) and H0UNCNT0 (both
venues unified), order books on H0STASP0 / H0NXASP0 / H0UNASP0 and program trading on H0STPGM0 / H0NXPGM0 /
H0UNPGM0 (both every `book_interval` seconds), KOSPI200 futures trades on H0IFCNT0 (from
`tools.kis_sim.futures`, when the server is given the derivatives; not in the sent log). H0UNANC0 and
H0UNMKO0 (and the KRX market status) are acknowledged but send no data.

An asyncio server (the `websockets` library) runs in its own thread. One feed task wakes every
`feed_interval` real seconds, asks the market for each subscribed symbol's trades since the previous
step, formats them once and writes the same frame to every session subscribed to the symbol. The
faults object is read on every step (drops, silence) and on every frame (malformed, truncated);
`refuse_reconnects` is enforced at the HTTP handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import string
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Protocol

from loguru import logger
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import Event, State

from core.subscriptions import MAX_REGISTRATIONS_PER_KEY, AckCode
from kis.crypto import encrypt_notice
from kis.fields import H0STCNI0_FIELDS
from kis.protocol import ACK_MESSAGES, WS_PATH, TrId
from runtime.clock import Clock
from tools.kis_sim.faults import Faults
from tools.kis_sim.frames import (
    MAX_RECORDS_PER_FRAME,
    ProgramFormatter,
    SymbolFacts,
    TradeFormatter,
    data_frames,
    encrypted_frame,
)
from tools.kis_sim.futures import Derivatives
from tools.kis_sim.market import Trade
from tools.kis_sim.sent_log import SentLog, app_key_hash

ACCEPTED_PATHS = frozenset({WS_PATH, "/"})
TR_ID_PATH_PREFIX = f"{WS_PATH}/"
"""KIS also serves `/tryitout/<TR_ID>` (its samples connect to `/tryitout/H0STCNT0`); the TR id in the path
does not limit what the session may subscribe."""
NOTICE_TR_IDS = frozenset({TrId.NOTICE_REAL.value, TrId.NOTICE_PAPER.value})
TRADE_FEEDS = {
    TrId.TRADE.value: "trades",
    TrId.TRADE_NXT.value: "nxt_trades",
    TrId.TRADE_UNIFIED.value: "unified_trades",
}
"""Each trade TR and the market method whose trades it carries."""
FUTURES_TR = TrId.FUTURES_TRADE.value
BOOK_TR_IDS = frozenset({TrId.ORDER_BOOK.value, TrId.ORDER_BOOK_NXT.value, TrId.ORDER_BOOK_UNIFIED.value})
PROGRAM_TR_IDS = frozenset({
    TrId.PROGRAM_TRADE.value, TrId.PROGRAM_TRADE_NXT.value, TrId.PROGRAM_TRADE_UNIFIED.value,
})
SUBSCRIBABLE_TR_IDS = frozenset({
    *TRADE_FEEDS, *BOOK_TR_IDS, *PROGRAM_TR_IDS, TrId.MARKET_STATUS.value, TrId.MARKET_STATUS_UNIFIED.value,
    TrId.EXPECTED_TRADE_UNIFIED.value, *NOTICE_TR_IDS, FUTURES_TR,
})
SUBSCRIBE, UNSUBSCRIBE = "1", "2"
MIN_CATCH_UP = 60.0  # simulated seconds of trades one feed step may carry after a clock jump
SLOW_CONSUMER_BYTES = 32 * 1024 * 1024  # unsent bytes after which a session is cut
SHUTDOWN_GRACE = 1.0  # seconds a client has to answer the close frame at stop
PONG_TIMEOUT = 100.0  # seconds real KIS reportedly waits for a PINGPONG echo before closing a session
PONG_MISSING_CLOSE = (1008, "PINGPONG not echoed")  # close code and reason when the echo never came
_KEY_ALPHABET = string.ascii_letters + string.digits


class MarketFeed(Protocol):
    """What the server needs from the market model."""

    listings: Mapping[str, SymbolFacts]

    def trades(self, code: str, start: datetime, end: datetime) -> Sequence[Trade]: ...

    def nxt_trades(self, code: str, start: datetime, end: datetime) -> Sequence[Trade]: ...

    def unified_trades(self, code: str, start: datetime, end: datetime) -> Sequence[Trade]: ...

    def quote(self, code: str, at: datetime) -> QuoteLike: ...


class QuoteLike(Protocol):
    price: int
    volume: int
    ask1: int
    bid1: int


class ApprovalBook(Protocol):
    """What the server needs from the accounts: which app key an approval key belongs to, and where a
    fill is booked so the balance inquiry shows it."""

    def app_key_for_approval(self, approval_key: str) -> str | None: ...

    def apply_fill(self, app_key: str, symbol: str, side: str, qty: int, price: int) -> object: ...


@dataclass(frozen=True, slots=True)
class Fill:
    """An execution the simulator reports to the owner of `app_key` as an H0STCNI0/H0STCNI9 notice."""

    symbol: str
    side: str  # "buy" or "sell"
    qty: int
    price: int
    at: datetime
    order_no: str
    account_no: str = ""
    account_name: str = ""
    symbol_name: str = ""


@dataclass(slots=True, eq=False)
class _Session:
    ws: ServerConnection
    opened: float
    drop_generation: int
    app_key: str | None = None
    key_hash: str = ""
    approval_key: str = ""  # the key of its first registration (a session keeps one app key)
    subs: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (tr_id, tr_key) -> (key, iv)
    closed: bool = False
    pong_due_since: float | None = None  # monotonic time of the oldest PINGPONG not answered yet

    def answered_pingpong(self) -> None:
        """A PINGPONG came back (echoed text frame or pong control frame): every one so far is answered."""
        self.pong_due_since = None


def ack_text(tr_id: str, tr_key: str, code: AckCode, output: tuple[str, str] | None = None,
             detail: str = "") -> str:
    """A subscribe/unsubscribe answer; `output` is the (key, iv) pair of a successful one."""
    rt_cd, msg1 = ACK_MESSAGES[code]
    body: dict[str, object] = {"rt_cd": rt_cd, "msg_cd": code.value, "msg1": msg1 + detail}
    if output is not None:
        body["output"] = {"iv": output[1], "key": output[0]}
    return json.dumps({"header": {"tr_id": tr_id, "tr_key": tr_key, "encrypt": "N"}, "body": body})


class _PongAwareConnection(ServerConnection):
    """A server connection that reports pong control frames carrying a PINGPONG message: KIS's own samples
    answer PINGPONG with `ws.pong(raw)` rather than by echoing the text frame."""

    on_pingpong_pong: Callable[[], None] | None = None

    def process_event(self, event: Event) -> None:
        super().process_event(event)
        if not (isinstance(event, Frame) and event.opcode is Opcode.PONG):
            return
        answered = self.on_pingpong_pong
        if answered is not None and _is_pingpong(bytes(event.data)):
            answered()


def _is_pingpong(payload: bytes) -> bool:
    """Whether `payload` is a PINGPONG message (`{"header": {"tr_id": "PINGPONG", ...}}`)."""
    try:
        header = json.loads(payload)["header"]
        return isinstance(header, dict) and header.get("tr_id") == TrId.PINGPONG.value
    except (ValueError, KeyError, TypeError):
        return False


def _random_text(length: int) -> str:
    return "".join(secrets.choice(_KEY_ALPHABET) for _ in range(length))


def notice_record(fill: Fill, hts_id: str) -> str:
    """The plaintext `^`-separated H0STCNI0 record of a fill (26 columns) for the subscriber `hts_id`."""
    values = {
        "CUST_ID": hts_id,
        "ACNT_NO": fill.account_no,
        "ODER_NO": fill.order_no,
        "OODER_NO": "",
        "SELN_BYOV_CLS": "01" if fill.side == "sell" else "02",
        "RCTF_CLS": "0",
        "ODER_KIND": "00",
        "ODER_COND": "0",
        "STCK_SHRN_ISCD": fill.symbol,
        "CNTG_QTY": str(fill.qty),
        "CNTG_UNPR": str(fill.price),
        "STCK_CNTG_HOUR": fill.at.strftime("%H%M%S"),
        "RFUS_YN": "0",
        "CNTG_YN": "2",
        "ACPT_YN": "2",
        "BRNC_NO": "00950",
        "ODER_QTY": str(fill.qty),
        "ACNT_NAME": fill.account_name,
        "ORD_COND_PRC": "0",
        "ORD_EXG_GB": "1",
        "POPUP_YN": "Y",
        "FILLER": "",
        "CRDT_CLS": "10",
        "CRDT_LOAN_DATE": "",
        "CNTG_ISNM40": fill.symbol_name,
        "ODER_PRC": str(fill.price),
    }
    return "^".join(values[name] for name in H0STCNI0_FIELDS)


def _malform(frame: str) -> str:
    """A frame a parser must reject: the record count no longer matches, and a price is not a number."""
    flag, tr_id, _count, payload = frame.split("|", 3)
    head, _, rest = payload.partition("^")
    return f"{flag}|{tr_id}|9X9|{head}^#!garbled!#^{rest}"


def _truncate(frame: str) -> str:
    return frame[: max(1, len(frame) // 2)]


class WsServer:
    """KIS-compatible WebSocket server on loopback. `start` returns once it listens; `stop` is idempotent."""

    def __init__(
        self,
        market: MarketFeed,
        accounts: ApprovalBook,
        faults: Faults,
        clock: Clock,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pingpong_interval: float = 10.0,
        feed_interval: float = 0.05,
        book_interval: float = 1.0,
        sent_log: SentLog | None = None,
        require_pong_echo: bool = False,
        pong_timeout: float = PONG_TIMEOUT,
        derivatives: Derivatives | None = None,
    ) -> None:
        if pong_timeout <= 0:
            raise ValueError(f"pong_timeout must be > 0 seconds, got {pong_timeout}")
        self._market = market
        self._derivatives = derivatives
        self._accounts = accounts
        self._faults = faults
        self._clock = clock
        self._host = host
        self._port = port
        self._pingpong_interval = pingpong_interval
        self._feed_interval = feed_interval
        self._book_interval = book_interval
        self._sent_log = sent_log
        self._require_pong_echo = require_pong_echo
        self._pong_timeout = pong_timeout
        self._closing: dict[asyncio.Task[None], _Session] = {}  # close handshakes under way
        self._formatters = {tr_id: TradeFormatter(market.listings) for tr_id in TRADE_FEEDS}
        self._book_formatter = TradeFormatter(market.listings)
        self._program_formatters = {tr_id: ProgramFormatter() for tr_id in PROGRAM_TR_IDS}
        self._sessions: set[_Session] = set()
        self._by_key: dict[str, _Session] = {}
        self._sessions_per_key: Counter[str] = Counter()
        """App key hash -> sessions that ever registered with that key (a reconnect counts again)."""
        self._refused_in_use: Counter[str] = Counter()
        """App key hash -> second sessions refused while the key's session was open (APPKEY_IN_USE)."""
        self._subs: dict[str, dict[str, set[_Session]]] = {
            tr: {} for tr in (*TRADE_FEEDS, *BOOK_TR_IDS, *PROGRAM_TR_IDS, FUTURES_TR)
        }
        """TR id -> symbol -> the sessions subscribed to it, for the TRs that send data."""
        self._order_numbers = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._feed_task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._start_error: BaseException | None = None
        self._stopping = False
        self.records_sent = 0
        self.frames_sent = 0

    # ---- lifecycle ---------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"ws://{self._host}:{self._port}"

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("WsServer already started")
        self._thread = threading.Thread(target=self._run, name="kis-sim-ws", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise RuntimeError("the simulator WebSocket server did not start in time")
        if self._start_error is not None:
            raise RuntimeError(f"the simulator WebSocket server could not start: {self._start_error}")

    def stop(self, timeout: float = 10.0) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(RuntimeError):  # the loop already ended
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout)
        thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except OSError as exc:
            self._start_error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _open(self) -> None:
        self._server = await serve(
            self._handle,
            self._host,
            self._port,
            process_request=self._check_handshake,
            create_connection=_PongAwareConnection,
            compression=None,
            ping_interval=None,
            max_size=64 * 1024,
        )
        self._port = self._server.sockets[0].getsockname()[1]
        self._feed_task = asyncio.get_running_loop().create_task(self._feed_loop())

    async def _shutdown(self) -> None:
        if self._feed_task is not None:
            self._feed_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed_task
        if self._server is not None:
            self._server.close()  # sends 1001 going away to every session
            try:
                await asyncio.wait_for(self._server.wait_closed(), SHUTDOWN_GRACE)
            except TimeoutError:
                for session in [*self._sessions, *self._closing.values()]:
                    self._drop(session)  # a client that does not answer the close frame
                await self._server.wait_closed()
        asyncio.get_running_loop().stop()

    # ---- in-process API (any thread) ---------------------------------------------------------------------

    def fill(self, app_key: str, fill: Fill, timeout: float = 5.0) -> int:
        """Book `fill` into `app_key`'s holdings, then send it as an encrypted notice to the key's session.

        Returns how many frames went out. A fill the account refuses (ValueError: an unknown key or symbol,
        selling more than is held) is neither booked nor sent.
        """
        if self._loop is None:
            raise RuntimeError("WsServer is not running")
        self._accounts.apply_fill(app_key, fill.symbol, fill.side, fill.qty, fill.price)
        future = asyncio.run_coroutine_threadsafe(self._send_notice(app_key, fill), self._loop)
        return future.result(timeout)

    def next_order_no(self) -> str:
        """A fresh 10-digit order number for a notice (thread-safe: `count` is atomic under the GIL)."""
        return f"{next(self._order_numbers):010d}"

    def session_count(self) -> int:
        return len(self._sessions)

    def registered(self, tr_id: str) -> set[str]:
        """The keys some session has registered on `tr_id` (a data TR: trades, books, futures trades)."""
        return set(self._subs.get(tr_id, {}))

    def sessions_per_key(self) -> dict[str, int]:
        """How many sessions registered with each app key (by its hash) since the server started: a client
        that reconnected, or opened a second session, counts more than one."""
        return dict(self._sessions_per_key)

    def refused_in_use(self) -> dict[str, int]:
        """By app key hash: the sessions refused because the key already had one open (a client that tried
        to open a second session for a key; KIS allows one)."""
        return dict(self._refused_in_use)

    def open_sessions_per_key(self) -> dict[str, int]:
        """By app key hash: the sessions open now that registered with it."""
        return dict(Counter(session.key_hash for session in list(self._sessions) if session.key_hash))

    def registered_by_key(self) -> dict[str, set[str]]:
        """By app key hash: the symbols each open session has registered for trades (any trade feed)."""
        return {session.key_hash: {key for tr_id, key in list(session.subs) if tr_id in TRADE_FEEDS}
                for session in list(self._sessions) if session.key_hash}

    def session_approval_keys(self) -> list[str]:
        """The approval key each open session registered with (sessions not registered yet are left out),
        so a test can tell which key a client presented after a refresh."""
        return [session.approval_key for session in list(self._sessions) if session.approval_key]

    # ---- handshake and messages --------------------------------------------------------------------------

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        tr_id_path = path.startswith(TR_ID_PATH_PREFIX) and path[len(TR_ID_PATH_PREFIX) :].isalnum()
        if path not in ACCEPTED_PATHS and not tr_id_path:
            return connection.respond(HTTPStatus.NOT_FOUND, f"no WebSocket service at {path}\n")
        if self._faults.ws_refusing():
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "reconnects refused (fault)\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        session = _Session(ws=ws, opened=time.monotonic(), drop_generation=self._faults.drop_generation())
        if isinstance(ws, _PongAwareConnection):
            ws.on_pingpong_pong = session.answered_pingpong
        self._sessions.add(session)
        try:
            async for message in ws:
                answer = self._on_message(session, message)
                if answer:
                    await ws.send(answer)
                if session.closed:
                    await ws.close()
                    break
        except ConnectionClosed:
            pass
        finally:
            self._forget(session)

    def _on_message(self, session: _Session, message: str | bytes) -> str | None:
        try:
            request = json.loads(message)
            header = request["header"]
            if header.get("tr_id") == TrId.PINGPONG.value:
                session.answered_pingpong()
                return None
            approval_key = str(header.get("approval_key", ""))
            tr_type = str(header.get("tr_type", ""))
            body_input = request["body"]["input"]
            tr_id, tr_key = str(body_input["tr_id"]), str(body_input["tr_key"])
        except (ValueError, KeyError, TypeError, AttributeError):
            return ack_text("", "", AckCode.INTERNAL_ERROR, detail=" (JSON PARSING ERROR)")
        app_key = self._accounts.app_key_for_approval(approval_key)
        if app_key is None or (session.app_key is not None and app_key != session.app_key):
            return ack_text(tr_id, tr_key, AckCode.INVALID_APPROVAL, detail=approval_key)
        if session.app_key is None:
            holder = self._by_key.get(app_key)
            if holder is not None and not holder.closed:
                session.closed = True
                self._refused_in_use[app_key_hash(app_key)] += 1
                return ack_text(tr_id, tr_key, AckCode.APPKEY_IN_USE)
            session.app_key = app_key
            session.key_hash = app_key_hash(app_key)
            session.approval_key = approval_key
            self._by_key[app_key] = session
            self._sessions_per_key[session.key_hash] += 1
        if tr_id not in SUBSCRIBABLE_TR_IDS or tr_type not in (SUBSCRIBE, UNSUBSCRIBE):
            return ack_text(tr_id, tr_key, AckCode.INTERNAL_ERROR)
        slot = (tr_id, tr_key)
        if tr_type == SUBSCRIBE:
            if slot in session.subs:
                return ack_text(tr_id, tr_key, AckCode.ALREADY_SUBSCRIBED)
            if len(session.subs) >= MAX_REGISTRATIONS_PER_KEY:
                return ack_text(tr_id, tr_key, AckCode.MAX_SUBSCRIBE_OVER)
            secret = (_random_text(32), _random_text(16))
            session.subs[slot] = secret
            index = self._index_for(tr_id)
            if index is not None:
                index.setdefault(tr_key, set()).add(session)
            return ack_text(tr_id, tr_key, AckCode.SUBSCRIBE_SUCCESS, output=secret)
        secret = session.subs.pop(slot, None)
        if secret is None:
            return ack_text(tr_id, tr_key, AckCode.UNSUBSCRIBE_NOT_FOUND)
        self._unindex(session, tr_id, tr_key)
        return ack_text(tr_id, tr_key, AckCode.UNSUBSCRIBE_SUCCESS, output=secret)

    def _index_for(self, tr_id: str) -> dict[str, set[_Session]] | None:
        return self._subs.get(tr_id)

    def _unindex(self, session: _Session, tr_id: str, tr_key: str) -> None:
        index = self._index_for(tr_id)
        if index is None:
            return
        subscribers = index.get(tr_key)
        if subscribers is not None:
            subscribers.discard(session)
            if not subscribers:
                del index[tr_key]

    def _forget(self, session: _Session) -> None:
        """Drop every trace of a session: its registrations end with it, as on the real server."""
        session.closed = True
        self._sessions.discard(session)
        for tr_id, tr_key in session.subs:
            self._unindex(session, tr_id, tr_key)
        session.subs.clear()
        if session.app_key is not None and self._by_key.get(session.app_key) is session:
            del self._by_key[session.app_key]

    def _close_unechoed(self, session: _Session) -> None:
        """Close a session that left a PINGPONG unanswered too long (with a close frame, not a cut)."""
        self._forget(session)
        code, reason = PONG_MISSING_CLOSE
        task = asyncio.get_running_loop().create_task(session.ws.close(code, reason))
        self._closing[task] = session
        task.add_done_callback(self._closing.pop)

    def _drop(self, session: _Session) -> None:
        """Cut the TCP connection without a close frame, the way a network failure looks to the client."""
        self._forget(session)
        session.ws.transport.abort()

    # ---- feed --------------------------------------------------------------------------------------------

    async def _feed_loop(self) -> None:
        loop = asyncio.get_running_loop()
        previous = self._clock.now()
        next_step = loop.time()
        next_pingpong = next_step + self._pingpong_interval
        next_book = next_step + self._book_interval
        catch_up = timedelta(seconds=max(MIN_CATCH_UP, 10 * self._feed_interval * self._clock.speed))
        while True:
            next_step += self._feed_interval
            delay = next_step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                next_step = loop.time()  # fell behind: do not try to catch up with a burst of steps
                await asyncio.sleep(0)
            try:
                self._apply_drops()
                silent = self._faults.ws_silent()
                now = self._clock.now()
                if now > previous:
                    # A jump of the clock (set/advance) must not replay hours of trades in one burst.
                    self._step(max(previous, now - catch_up), now, silent)
                    previous = now
                if loop.time() >= next_book:
                    next_book = loop.time() + self._book_interval
                    if not silent:
                        self._send_books(now)
                        self._send_programs(now)
                if loop.time() >= next_pingpong:
                    next_pingpong = loop.time() + self._pingpong_interval
                    if not silent:
                        self._send_pingpong(now)
            except Exception as exc:  # one line, no traceback: a session's repr would show its app key
                logger.error("kis_sim WebSocket feed step failed ({}); the feed goes on", type(exc).__name__)

    def _apply_drops(self) -> None:
        """Drop sessions a fault asks to drop, and those whose client stopped reading (the buffer grows)."""
        generation = self._faults.drop_generation()
        every = self._faults.drop_interval()
        now = time.monotonic()
        for session in list(self._sessions):
            transport = session.ws.transport
            if transport.is_closing():
                self._forget(session)
            elif session.drop_generation < generation or (
                every is not None and now - session.opened >= every
            ):
                self._drop(session)
            elif (
                self._require_pong_echo
                and session.pong_due_since is not None
                and now - session.pong_due_since >= self._pong_timeout
            ):
                logger.info("kis_sim: closing a WebSocket session that did not echo PINGPONG in time")
                self._close_unechoed(session)
            elif transport.get_write_buffer_size() > SLOW_CONSUMER_BYTES:
                logger.warning("kis_sim: dropping a WebSocket session whose client stopped reading")
                self._drop(session)

    def _step(self, start: datetime, end: datetime, silent: bool) -> None:
        market = self._market
        listings = market.listings
        for tr_id, method in TRADE_FEEDS.items():
            trades_of = getattr(market, method)
            formatter = self._formatters[tr_id]
            for code, subscribers in list(self._subs[tr_id].items()):
                if code not in listings:
                    continue
                trades = trades_of(code, start, end)
                if not trades:
                    continue
                records = [formatter.record(t) for t in trades]
                if silent:
                    continue
                for i, frame in enumerate(data_frames(tr_id, records)):
                    first = i * MAX_RECORDS_PER_FRAME
                    self._send_data(subscribers, frame, trades[first:first + MAX_RECORDS_PER_FRAME])
        if self._derivatives is not None and not silent:
            self._send_futures(self._derivatives, start, end)

    def _send_futures(self, derivatives: Derivatives, start: datetime, end: datetime) -> None:
        for code, subscribers in list(self._subs[FUTURES_TR].items()):
            ticks = derivatives.trades(code, start, end)
            if not ticks:
                continue
            sessions = [s.ws for s in subscribers if s.ws.state is State.OPEN]
            for frame in data_frames(FUTURES_TR, [derivatives.trade_record(tick) for tick in ticks]):
                broadcast(sessions, frame)

    def _send_data(self, subscribers: set[_Session], frame: str, trades: Sequence[Trade]) -> None:
        clean = []
        sent = 0
        faults = self._faults
        sent_log = self._sent_log
        for session in subscribers:
            ws = session.ws
            if ws.state is not State.OPEN or ws.transport.is_closing():  # closing: not sent, not logged
                continue
            sent += 1
            fault = None
            text = frame
            if faults.take_malformed():
                fault, text = "malformed", _malform(frame)
            elif faults.take_truncated():
                fault, text = "truncated", _truncate(frame)
            if fault is None:
                clean.append(ws)
            else:
                broadcast((ws,), text)
            if sent_log is not None:
                sent_log.add(trades, session.key_hash, fault=fault)
        if clean:
            broadcast(clean, frame)
        self.frames_sent += sent
        self.records_sent += len(trades) * sent

    def _send_books(self, now: datetime) -> None:
        for tr_id in BOOK_TR_IDS:
            wide = tr_id != TrId.ORDER_BOOK.value
            for code, subscribers in self._subs[tr_id].items():
                if code not in self._market.listings:
                    continue
                quote = self._market.quote(code, now)
                record = self._book_formatter.book_record(
                    code, quote.ask1, quote.bid1, quote.volume, now, wide
                )
                broadcast([s.ws for s in subscribers], f"0|{tr_id}|001|{record}")

    def _send_programs(self, now: datetime) -> None:
        for tr_id in PROGRAM_TR_IDS:
            formatter = self._program_formatters[tr_id]
            for code, subscribers in self._subs[tr_id].items():
                if code not in self._market.listings:
                    continue
                quote = self._market.quote(code, now)
                record = formatter.record(code, quote.price, quote.volume, now)
                broadcast([s.ws for s in subscribers], f"0|{tr_id}|001|{record}")

    def _send_pingpong(self, now: datetime) -> None:
        stamp = now.strftime("%Y%m%d%H%M%S")
        text = json.dumps({"header": {"tr_id": TrId.PINGPONG.value, "datetime": stamp}})
        sent_at = time.monotonic()
        for session in self._sessions:
            if session.pong_due_since is None:
                session.pong_due_since = sent_at
        broadcast([s.ws for s in self._sessions], text)

    async def _send_notice(self, app_key: str, fill: Fill) -> int:
        """Every notice subscription of the key's session gets the fill, whatever HTS id it used."""
        session = self._by_key.get(app_key)
        if session is None or session.closed:
            return 0
        sent = 0
        for (tr_id, tr_key), (key, iv) in list(session.subs.items()):
            if tr_id not in NOTICE_TR_IDS:
                continue
            plaintext = notice_record(fill, tr_key)
            await session.ws.send(encrypted_frame(tr_id, encrypt_notice(plaintext, key, iv)))
            sent += 1
        return sent
