"""WSConnectionActor (id `ws.<account>`): one KIS WebSocket per app key, kept alive and re-subscribed.

The receive thread of `kis.ws_session.KisWebSocketSession` decodes every message; its `FrameRelay` hands
this actor the trades of the frames one socket read brought as one `TicksReceived` (a lone frame: its own),
which the actor forwards as it is, and any other message on its own, after the trades before it.
The actor owns a `core.subscriptions.SubscriptionBook`: the target set from the slot manager, replayed on
every new session, saved, and restored at a start (same day); without a readable saved one, the slot
manager is asked for it (`CurrentTargets`).

Reconnects happen here, not through the supervisor (a crash per failed connect would exhaust the restart
intensity): after a drop the next attempt waits `Backoff(reconnect_backoff_seconds, backoff_jitter)`,
1, 2, 5, 10, 30, 60 s by default, the count starting over once a session has lived `reset_after`. A
session with no message at all (no frame, no PINGPONG) for `silence_timeout_seconds` counts as a drop.
After `suspend_track_b_after_seconds` without a session the account is SUSPENDED (slots fail over, one
SystemAlert), and attempts go on; CONNECTED is told again when a session is back.

The connection is wanted while there is a trade target, or an execution-notice registration (the account
has an `hts_id`) outside the IDLE phase, or from the wake-up sequence's pre-connect (`DayEventFired`
WS_PRECONNECT, or a start in WARMUP or TRACK_A_ONLY after its time) until Track B ends: the session is open,
without registrations, before the first slot needs it. Otherwise the session is closed.

| message | effect |
|---|---|
| SetSubscriptions (own account) | new target (saved to the state store); subscribe/unsubscribe the diff; |
|  | passed on to `gaps` (after the ticks before it), which stops timing the symbols that left |
| TicksReceived (receive thread) | forwarded to `recorder`, `triggers`, `gaps`, `slots`; counter `frames` |
|  | (once the tree is stopping, to `recorder` only: a backlog drains within the shutdown timeout) |
| CredentialsRenewed (own account) | graceful restart: close, reconnect at once with a new approval key |
| PhaseChanged | connect or close as the phase makes the session wanted or not |
| DayEventFired(WS_PRECONNECT) | open the session now, with no registration (the wake-up sequence) |
| DowntimeFound (own account, at a start) | a gap per restored target symbol from its last tick on disk, |
|  | and per symbol that left the target shortly before the stop (`LEFT_RECENTLY_SECONDS`) |
| acks (internal) | subscription state; refusals -> SubscriptionRefused to `slots` (once) |
| execution notices (internal) | ExecutionsReceived to `slots` |
| futures trades (internal) | FuturesTradesReceived to `minute_jobs`; counter `futures_trades` |
| order books, program trading (internal) | OrderBooksReceived / ProgramTradesReceived to `recorder` |
| frame errors (internal) | counter `frame_errors`, a log line (1/s at most); TicksMissed to `gaps` |
| session ended (internal) | ExpectedGapStarted to `gaps`, RECONNECTING to `slots`, reconnect after backoff |

Sent: ExpectedGapEnded to `gaps` as each symbol is confirmed again (or leaves the target); ConnectionChanged
to `slots` and `gaps`; SystemAlert to `notifier` on suspension. Metrics: gauge `ws_state.<account>`,
counters `frames`, `frame_errors`, `reconnects`.

Tick registrations use the trade TR of `websocket.feed`: H0UNCNT0 (unified, the default), H0STCNT0 (KRX)
or H0NXCNT0 (NXT). The symbols the slot manager names for an order book or program trading get a
registration of the feed's book TR (H0UNASP0 / H0STASP0 / H0NXASP0) or program TR (H0UNPGM0 / H0STPGM0 /
H0NXPGM0) too; their frames go to `recorder` as OrderBooksReceived / ProgramTradesReceived. Gauges
`registrations_{trades,books,program,notice}.<account>` count what is confirmed, for the status.

Back-pressure (websocket_monitor_hybrid.md 5.3): the receive queue is bounded. A `Backlog` counts the trade
messages the relay told and this actor has not handled yet; at `max_queue_messages` the relay drops new
trades, and tells the symbols it dropped (`TicksShed`, passed to `gaps` as TicksMissed "backpressure") once
the backlog is below the bound again. Where the ticks are handled, each message's wait (now less its
`received_mono`) and the backlog go to a `core.backpressure.LagMonitor`: a new shed level is told to
`slots` as `BackPressure` (it sheds the lowest scored symbols, or takes them back at 0), with one
SystemAlert when shedding starts. While shed, a timer checks every few seconds, so a quiet stream recovers.

Execution notices: H0STCNI0 (H0STCNI9 on paper) with tr_key = the account's HTS id. KIS counts it among
the 41 registrations of the key, so with an HTS id 40 remain for ticks; a 41st is refused and reported.

Futures trades (`pipeline.futures_trades`, real accounts only: KIS serves H0IFCNT0 to no paper key): the
first account's session also registers the front-month KOSPI200 future (`core.derivatives.futures_pair`,
rolled on expiry day) while the notice and the stock target leave one of the key's 41 registrations free.
Stocks always win: the futures registration opens no session of its own, and when the slot manager's target
needs the last registration the futures one is released first. Its frames go to `minute_jobs` as
`FuturesTradesReceived`; they are no stock ticks (no journal, no gaps).
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pykka

from actors.base import ObserverActor, describe_exception
from actors.context import ObserverContext
from actors.directory import Directory
from core.backpressure import LagMonitor, max_level
from core.derivatives import futures_pair
from core.gaps import RECONNECT, RESTART
from core.schedule import DayEvent, Phase, phase_at
from core.subscriptions import (
    MAX_REGISTRATIONS_PER_KEY,
    Action,
    Registration,
    SubscriptionBook,
    SubState,
    is_session_refusal,
)
from kis.protocol import (
    ORDER_BOOK_TR_IDS,
    PAPER_WS_URL,
    PROGRAM_TRADE_TR_IDS,
    REAL_WS_URL,
    TRADE_TR_IDS,
    TrId,
)
from kis.ticks import (
    Ack,
    Decoded,
    ExecutionNoticeFrame,
    FrameError,
    FuturesTradeFrame,
    OrderBookFrame,
    PingPong,
    ProgramTradeFrame,
    TradeFrame,
    TradeTick,
)
from kis.ws_session import KisWebSocketSession, SessionClosed
from messages.alerts import SystemAlert
from messages.gaps import DowntimeFound, ExpectedGapEnded, ExpectedGapStarted, TicksMissed
from messages.market import (
    ExecutionsReceived,
    FuturesTradesReceived,
    OrderBooksReceived,
    ProgramTradesReceived,
    TicksReceived,
)
from messages.schedule import DayEventFired, PhaseChanged
from messages.streaming import (
    BackPressure,
    ConnectionChanged,
    ConnectionState,
    CredentialsRenewed,
    CurrentTargets,
    SetSubscriptions,
    SubscriptionRefused,
)
from runtime.backoff import Backoff
from runtime.clock import Clock
from runtime.state_store import StateStore

TICK_PEERS = ("recorder", "triggers", "gaps", "slots", "minute_jobs")
TOKEN_REFRESH = "token_refresh"
BAD_FRAME = "bad_frame"
OBSERVER_STOP = "observer_stop"
FRAME_ERROR_LOG_INTERVAL_SECONDS = 1.0
MAX_TICKS_PER_MESSAGE = 256
"""Trades of one burst told in one TicksReceived (a frame is never split), so a socket that never drains
still hands on."""
CONNECT_TIMEOUT_SECONDS = 5.0
BACKPRESSURE = "backpressure"
PRECONNECT_PHASES = frozenset({Phase.WARMUP, Phase.TRACK_A_ONLY, Phase.FULL_OPERATION})
"""Phases in which a pre-connected session stays open without registrations."""
PRESSURE_CHECKS_PER_RECOVERY = 4
LEFT_RECENTLY_SECONDS = 30.0
"""How long a symbol that left the target is remembered (saved with the target): one that left less than
this before the newest tick on disk may have streamed until the process was killed, its last ticks still in
flight or in the recorder's buffers, so the next start opens its restart gap too."""


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """What `WSConnectionActor.status()` answers (status view, tests): trade registrations by state, the
    symbols whose order book and program trading are confirmed, and every registration held now."""

    state: ConnectionState
    target: tuple[str, ...]
    confirmed: tuple[str, ...]
    pending: tuple[str, ...]
    refused: tuple[str, ...]
    open_gaps: tuple[str, ...]
    notice_confirmed: bool
    order_books: tuple[str, ...] = ()
    program_trading: tuple[str, ...] = ()
    registrations: int = 0


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """A decoded control message or non-trade frame from the receive thread of session `generation`,
    which arrived `at` (a bad frame's gap ends there, however late the actor gets to it)."""

    generation: int
    value: Decoded
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class SessionEnded:
    generation: int
    closed: SessionClosed
    at: datetime


@dataclass(frozen=True, slots=True)
class TicksShed:
    """Trades of `symbols` the relay dropped while the receive queue was full."""

    symbols: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class _PressureCheck:
    """While shed: measure again even if no trade message comes."""


class Backlog:
    """Trade messages told to the actor and not handled yet. `told` is written by the receive thread only,
    `handled` by the actor only, so no lock is needed."""

    __slots__ = ("handled", "told")

    def __init__(self) -> None:
        self.told = 0
        self.handled = 0

    def pending(self) -> int:
        return max(self.told - self.handled, 0)


@dataclass(frozen=True, slots=True)
class _ConnectDue:
    generation: int


@dataclass(frozen=True, slots=True)
class _SuspendDue:
    outage: int


class FrameRelay:
    """What runs on one session's receive thread: no work but wrapping and telling. The trades of the
    frames a socket read brought (up to `on_drained`) are told as one `TicksReceived`, stamped when the
    first of them was decoded (a new one once `MAX_TICKS_PER_MESSAGE` are held); any other message is
    told after the trades before it, so the actor sees everything in arrival order.

    Trades go through `tell_ticks` (the Directory, by child id): if the actor crashes while its session
    still delivers, the Directory holds them for the next incarnation instead of dropping them at a dead
    ref. Session events stay with this incarnation's ref: they only mean something to it."""

    def __init__(
        self,
        actor: pykka.ActorRef[Any],
        account: str,
        clock: Clock,
        generation: int,
        tell_ticks: Callable[[TicksReceived], object] | None = None,
        backlog: Backlog | None = None,
        max_queue: int = 0,
    ) -> None:
        self._actor = actor
        self._tell_ticks = tell_ticks or self._tell
        self._account = account
        self._clock = clock
        self._generation = generation
        self._ticks: list[TradeTick] = []
        self._frames = 0
        self._at: datetime | None = None
        self._mono = 0.0
        self._backlog = backlog
        self._max_queue = max_queue
        self._dropped: set[str] = set()

    def on_message(self, value: Decoded) -> None:
        if isinstance(value, TradeFrame):
            if self._at is None:
                self._at, self._mono = self._clock.now(), time.monotonic()
            self._ticks.extend(value.ticks)
            self._frames += 1
            if len(self._ticks) >= MAX_TICKS_PER_MESSAGE:
                self.on_drained()
        elif not isinstance(value, PingPong):
            self.on_drained()
            self._tell(SessionEvent(self._generation, value, self._clock.now()))

    def on_drained(self) -> None:
        at = self._at
        if at is None:
            return
        backlog = self._backlog
        if backlog is not None and backlog.pending() >= self._max_queue:
            self._dropped.update(tick.symbol for tick in self._ticks)
            self._ticks, self._frames, self._at = [], 0, None
            return
        self._report_dropped()
        if backlog is not None:
            backlog.told += 1
        self._tell_ticks(TicksReceived(at=at, account=self._account, ticks=tuple(self._ticks),
                                       received_mono=self._mono, frames=self._frames))
        self._ticks, self._frames, self._at = [], 0, None

    def on_closed(self, closed: SessionClosed) -> None:
        self.on_drained()
        self._report_dropped()
        self._tell(SessionEnded(self._generation, closed, self._clock.now()))

    def _report_dropped(self) -> None:
        if self._dropped:
            self._tell(TicksShed(tuple(sorted(self._dropped)), self._clock.now()))
            self._dropped = set()

    def _tell(self, message: Any) -> None:
        with contextlib.suppress(pykka.ActorDeadError):
            self._actor.tell(message)


class WSConnectionActor(ObserverActor):
    def __init__(self, name: str, directory: Directory, context: ObserverContext, account: str) -> None:
        super().__init__(name, directory)
        self.context = context
        self.account = context.account(account)
        self.settings = context.settings.websocket
        self._trade_tr = TRADE_TR_IDS[self.settings.feed].value  # the feed a slot streams (websocket.feed)
        self._book_tr = ORDER_BOOK_TR_IDS[self.settings.feed].value
        self._program_tr = PROGRAM_TRADE_TR_IDS[self.settings.feed].value
        self.url = context.ws_url or (PAPER_WS_URL if self.account.paper else REAL_WS_URL)
        self.book = SubscriptionBook()
        self.backoff = Backoff(
            steps=self.settings.reconnect_backoff_seconds, jitter=self.settings.backoff_jitter
        )
        self._rng = random.Random()
        self._store: StateStore | None = None
        self._state_name = f"subscriptions.{self.account.name}"
        self._trade_target: tuple[str, ...] = ()
        self._book_target: tuple[str, ...] = ()
        self._program_target: tuple[str, ...] = ()
        self._restored_target: frozenset[str] = frozenset()  # until the start's DowntimeFound
        self._left: dict[str, datetime] = {}
        """Symbol -> when it left the trade target, for `LEFT_RECENTLY_SECONDS` (saved with the target)."""
        self._restored_left: dict[str, datetime] = {}  # until the start's DowntimeFound
        self._notice: Registration | None = None
        if self.account.hts_id:
            tr_id = TrId.NOTICE_PAPER if self.account.paper else TrId.NOTICE_REAL
            self._notice = Registration(tr_id.value, self.account.hts_id)
        self._futures_on = (
            bool(context.settings.pipeline.futures_trades)
            and not self.account.paper
            and self.account.name == context.accounts[0].name
        )
        self._phase = Phase.IDLE
        self._preconnect = False
        self._session: KisWebSocketSession | None = None
        self._generation = 0
        self._connect_pending = False
        self._close_intent: str | None = None  # "restart" | "idle" | "refused" while we close on purpose
        self._attempt = 0
        self._session_opened = 0.0
        self._down_since: float | None = None
        self._outage = 0
        self._suspended = False
        self._state = ConnectionState.STOPPED
        self._gaps: dict[str, tuple[datetime, str]] = {}  # symbol -> (start, reason) of its open gap
        self._restart_reason = RECONNECT
        self._timers: list[threading.Timer] = []
        self._frame_errors_unlogged = 0
        self._frame_error_logged_at = 0.0
        self._backlog = Backlog()
        self._started_mono = time.monotonic()
        self._last_handled_trade: datetime | None = None
        """Exchange time of the last trade this incarnation passed on: a crash loses the ones queued after."""
        self._last_trades: dict[str, datetime] = {}
        """Symbol -> exchange time of its last trade this incarnation passed on: where a miss begins."""
        self._pressure = LagMonitor(
            lag_limit=self.settings.backpressure_lag_seconds,
            backlog_limit=max(self.settings.max_queue_messages // 4, 1),
            step_seconds=self.settings.backpressure_step_seconds,
            recover_seconds=self.settings.backpressure_recover_seconds,
            max_level=max_level(self.settings.backpressure_shed_fraction),
        )

    # --- lifecycle -------------------------------------------------------------------------------

    def on_start(self) -> None:
        now = self.context.clock.now()
        schedule = self.context.settings.schedule
        self._phase = phase_at(now, schedule)
        preconnect_at = schedule.preconnect_time
        self._preconnect = (self._phase in (Phase.WARMUP, Phase.TRACK_A_ONLY) and preconnect_at is not None
                            and now.time() >= preconnect_at)
        self._store = StateStore(self.context.paths.state_dir)
        self._restore()
        self.book.set_target(self._registrations())
        self._publish_state(ConnectionState.STOPPED, tell=False)
        # A new incarnation starts unshed: slots shed for an earlier one come back (a no-op if none were).
        self._tell("slots", BackPressure(at=self.context.clock.now(), account=self.account.name, level=0,
                                         lag_seconds=0.0, backlog=0))
        self.actor_ref.tell(_ConnectDue(self._generation))
        self._connect_pending = True

    def on_stop(self) -> None:
        self._shut_down(crashed=False)

    def on_failure(self, *_exc: object) -> None:
        self._shut_down(crashed=True)

    def _shut_down(self, *, crashed: bool) -> None:
        for timer in self._timers:
            timer.cancel()
        confirmed = self._trade_symbols(self.book.on_disconnected())
        session, self._session = self._session, None
        if session is not None:
            self._generation += 1
            session.close()
        if crashed and confirmed:
            # The next incarnation re-subscribes and closes these gaps (they are saved below). They start
            # at the last trade passed on: the ones still queued for this incarnation are lost with it.
            now = self.context.clock.now()
            last = self._last_handled_trade
            self._open_gap(confirmed, now if last is None else min(now, last), "actor_restart")
        if not crashed:
            self._end_at_stop(confirmed)
            self._left.clear()  # a stop drains every tick told to the journal: none is lost
        self._save()
        self._publish_state(ConnectionState.STOPPED, tell=False)

    def _end_at_stop(self, streaming: tuple[str, ...]) -> None:
        """A stop on purpose: ticks in flight when the session closed are missed, and open gaps end now
        (the gap actor, stopped next, marks what it cannot back-fill); the next start is a new process."""
        now = self.context.clock.now()
        account = self.account.name
        if streaming:
            self._tell_missed(streaming, now, OBSERVER_STOP)
        opened: dict[tuple[datetime, str], list[str]] = {}
        for symbol, started in self._gaps.items():
            opened.setdefault(started, []).append(symbol)
        for (started_at, reason), symbols in opened.items():
            self._tell("gaps", ExpectedGapEnded(
                at=now, account=account, symbols=tuple(symbols), started_at=started_at, reason=reason
            ))
        self._gaps.clear()

    def status(self) -> ConnectionStatus:
        """Trade symbols by subscription state (call through a proxy: `proxy.status().get()`)."""
        trade = self._trade_tr
        confirmed = self.book.confirmed()
        return ConnectionStatus(
            state=self._state,
            target=self._trade_target,
            confirmed=tuple(reg.tr_key for reg in self.book.confirmed() if reg.tr_id == trade),
            pending=tuple(reg.tr_key for reg in self.book.pending() if reg.tr_id == trade),
            refused=tuple(reg.tr_key for reg in self.book.refused() if reg.tr_id == trade),
            open_gaps=tuple(sorted(self._gaps)),
            notice_confirmed=self._notice is not None and self._notice in self.book.confirmed(),
            order_books=tuple(reg.tr_key for reg in confirmed if reg.tr_id == self._book_tr),
            program_trading=tuple(reg.tr_key for reg in confirmed if reg.tr_id == self._program_tr),
            registrations=len(confirmed) + len(self.book.pending()),
        )

    def _count_registrations(self) -> None:
        """The confirmed registrations by kind, for the status: trades / books / program (and the notice)."""
        kinds = {self._trade_tr: "trades", self._book_tr: "books", self._program_tr: "program"}
        counts = dict.fromkeys(("trades", "books", "program", "notice"), 0)
        for registration in self.book.confirmed():
            counts[kinds.get(registration.tr_id, "notice")] += 1
        for kind, count in counts.items():
            self.context.metrics.set(f"registrations_{kind}.{self.account.name}", count)

    # --- messages --------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TicksReceived):
            if self.directory is not None:
                tell = self.directory.tell
                # Stopping: the journal only, so a backlog drains within the shutdown timeout; the stop's
                # gap (from each symbol's last tick the gap actor saw) covers what the others miss.
                for peer in ("recorder",) if self.directory.is_stopping else TICK_PEERS:
                    tell(peer, message)
            self.context.metrics.inc("frames", message.frames)
            if message.ticks:
                self._last_handled_trade = message.ticks[-1].exchange_time
                last_trades = self._last_trades
                for tick in message.ticks:
                    last_trades[tick.symbol] = tick.exchange_time
            if message.received_mono >= self._started_mono:  # told by this incarnation's relay
                self._backlog.handled += 1
                now = time.monotonic()
                self._observe_pressure(now - message.received_mono, now)
        elif isinstance(message, TicksShed):
            self._on_ticks_shed(message)
        elif isinstance(message, _PressureCheck):
            if self._pressure.level > 0:
                self._observe_pressure(0.0, time.monotonic())
                self._check_pressure_later()
        elif isinstance(message, SessionEvent):
            self.context.metrics.inc("frames")
            if message.generation == self._generation:
                self._on_session_event(message.value, message.at or self.context.clock.now())
        elif isinstance(message, SessionEnded):
            if message.generation == self._generation:
                self._on_session_ended(message)
        elif isinstance(message, _ConnectDue):
            if message.generation == self._generation:
                self._connect_pending = False
                self._connect()
        elif isinstance(message, _SuspendDue):
            if message.outage == self._outage and self._down_since is not None:
                self._suspend()
        elif isinstance(message, SetSubscriptions):
            self._set_target(message)
        elif isinstance(message, CredentialsRenewed):
            if message.account == self.account.name:
                self._restart_session(TOKEN_REFRESH)
        elif isinstance(message, PhaseChanged):
            self._phase = message.phase
            if self._futures_on:  # a new day may have rolled the front month
                self._send(self.book.set_target(self._registrations()))
            self._preconnect = self._preconnect and message.phase in PRECONNECT_PHASES
            self._apply_wanted()
        elif isinstance(message, DayEventFired) and message.event is DayEvent.WS_PRECONNECT:
            self.log.info("pre-connect: opening the session before the open")
            self._preconnect = True
            self._apply_wanted()
        elif isinstance(message, DowntimeFound) and message.account == self.account.name:
            self._open_downtime(message)
        return None

    def _open_downtime(self, message: DowntimeFound) -> None:
        """The observer was not running: each symbol of the target restored at the start (what was wanted
        at the stop, whatever the slot manager has told since) has a gap from its last tick on disk; one
        with none on disk (subscribed just before a kill, all its ticks still in the recorder's buffers)
        from the earliest of the others' last ticks, as every file is flushed within the same second or so.
        So does a symbol that left the target less than `LEFT_RECENTLY_SECONDS` before the newest tick on
        disk: it streamed until its unsubscription was confirmed, and a kill soon after loses its ticks
        still queued or buffered. The gap ends as any expected gap (confirmed again, refused or no longer
        wanted: a symbol that left ends at once). Symbols that had left the target earlier missed nothing.
        A gap saved open at the kill (a drop just before it) reaches back to the last tick on disk too."""
        restored, self._restored_target = self._restored_target, frozenset()
        left, self._restored_left = self._restored_left, {}
        last = dict(message.last_streamed)
        newest = max(last.values(), default=None)
        recently = newest - timedelta(seconds=LEFT_RECENTLY_SECONDS) if newest is not None else None
        leaving = {symbol for symbol, at in left.items()
                   if recently is not None and at >= recently and symbol not in restored}
        missed = restored | leaving
        on_disk = {symbol: at for symbol, at in last.items() if symbol in missed}
        earliest = min(on_disk.values(), default=newest)
        if earliest is not None:
            self._open_gaps({symbol: on_disk.get(symbol, earliest) for symbol in missed}, RESTART)
        streamed = on_disk.keys()
        self.log.info("{} of {} restored target symbols and {} of {} that had just left it streamed earlier "
                      "today: gaps from their last ticks on disk (the others' from the earliest of those)",
                      len(restored & streamed), len(restored), len(leaving & streamed), len(leaving))
        self._end_gaps()

    def _set_target(self, message: SetSubscriptions) -> None:
        if message.account != self.account.name:
            self.log.warning("SetSubscriptions for {} reached {}; ignored", message.account, self.name)
            return
        target = tuple(dict.fromkeys(message.symbols))
        books = tuple(symbol for symbol in dict.fromkeys(message.order_books) if symbol in target)
        programs = tuple(symbol for symbol in dict.fromkeys(message.program_trading) if symbol in target)
        if (target, books, programs) != (self._trade_target, self._book_target, self._program_target):
            now = self.context.clock.now()
            self._left.update(dict.fromkeys(set(self._trade_target) - set(target), now))
            for symbol in target:
                self._left.pop(symbol, None)
            self._trade_target, self._book_target, self._program_target = target, books, programs
            self._save()
        self._send(self.book.set_target(self._registrations()))
        self._end_gaps()
        self._tell("gaps", message)
        self._apply_wanted()

    def _registrations(self) -> list[Registration]:
        """The notice, every trade symbol, the books and program trading (all count against the 41), then the
        front-month future when a registration is left for it."""
        notice = [self._notice] if self._notice is not None else []
        wanted = [
            *notice,
            *(Registration(self._trade_tr, symbol) for symbol in self._trade_target),
            *(Registration(self._book_tr, symbol) for symbol in self._book_target),
            *(Registration(self._program_tr, symbol) for symbol in self._program_target),
        ]
        if self._futures_on and len(wanted) < MAX_REGISTRATIONS_PER_KEY:
            front, _next = futures_pair(self.context.clock.now().date())
            wanted.append(Registration(TrId.FUTURES_TRADE.value, front.futures_code))
        return wanted

    # --- the session -----------------------------------------------------------------------------

    def _wanted(self) -> bool:
        if self._preconnect and self._phase in PRECONNECT_PHASES:
            return True
        return bool(self._trade_target) or (self._notice is not None and self._phase is not Phase.IDLE)

    def _apply_wanted(self) -> None:
        if self._wanted():
            if self._session is None and not self._connect_pending:
                self._connect()
        elif self._session is not None:
            self.log.info("no registration wanted: closing the session")
            self._close_session("idle")

    def _connect(self) -> None:
        if self._session is not None or not self._wanted():
            if not self._wanted():
                self._down_since = None
                self._publish_state(ConnectionState.STOPPED)
            return
        self._generation += 1
        generation = self._generation
        try:
            approval_key = self.context.vault.approval_key(self.account.name)
            tell_ticks = functools.partial(self.directory.tell, self.name) if self.directory else None
            receiving = FrameRelay(
                self.actor_ref, self.account.name, self.context.clock, generation, tell_ticks,
                self._backlog, self.settings.max_queue_messages,
            )
            session = KisWebSocketSession(
                self.url,
                approval_key,
                on_message=receiving.on_message,
                on_closed=receiving.on_closed,
                on_drained=receiving.on_drained,
                connect_timeout=CONNECT_TIMEOUT_SECONDS,
                idle_timeout=self.settings.silence_timeout_seconds,
                name=f"{self.name}-receive",
            )
            session.connect()
        except Exception as error:  # the vault or the socket: both mean "try again later"
            self.log.warning("connect attempt {} failed: {}", self._attempt + 1, describe_exception(error))
            self._schedule_reconnect()
            return
        self._session = session
        self._session_opened = time.monotonic()
        if self._down_since is not None and self._state is not ConnectionState.STOPPED:
            self.context.metrics.inc("reconnects")
        self.log.info("session open to {} (attempt {})", self.url, self._attempt + 1)
        was_suspended = self._suspended
        self._down_since = None
        self._suspended = False
        self._publish_state(ConnectionState.CONNECTED)
        if was_suspended:
            self._alert("ws_resumed", "WebSocket is back; Track B resumes")
        self._send(self.book.on_connected())

    def _close_session(self, intent: str) -> None:
        session = self._session
        if session is None:
            return
        self._close_intent = intent
        session.close()  # the receive thread reports the end; _on_session_ended does the rest

    def _restart_session(self, reason: str) -> None:
        if self._session is None:
            if self._wanted() and not self._connect_pending:
                self._attempt = 0
                self._connect()
            return
        self.log.info("graceful restart of the session ({})", reason)
        self._restart_reason = reason
        self._close_session("restart")

    def _on_session_ended(self, message: SessionEnded) -> None:
        intent, self._close_intent = self._close_intent, None
        lived = time.monotonic() - self._session_opened
        self._session = None
        lost = self._trade_symbols(self.book.on_disconnected())
        self._count_registrations()
        reason = self._restart_reason if intent == "restart" else RECONNECT
        self._restart_reason = RECONNECT
        if lost:
            self._open_gap(lost, message.at, reason)
        if intent == "idle":
            self._publish_state(ConnectionState.STOPPED)
            self._apply_wanted()
            return
        if intent == "restart":
            self._attempt = 0
            self._connect()
            return
        self.log.warning("session ended: {}", message.closed.reason)
        if self.backoff.is_stable(lived):
            self._attempt = 0
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            self._outage += 1
            self._after(self.settings.suspend_track_b_after_seconds, _SuspendDue(self._outage))
        if self._state is not ConnectionState.SUSPENDED:
            self._publish_state(ConnectionState.RECONNECTING)
        delay = self.backoff.delay(self._attempt, self._rng)
        self._attempt += 1
        self._connect_pending = True
        self._after(delay, _ConnectDue(self._generation))

    def _suspend(self) -> None:
        if self._suspended:
            return
        self._suspended = True
        down = time.monotonic() - (self._down_since or time.monotonic())
        self.log.error("no session for {:.0f} s: Track B suspended for {}", down, self.account.name)
        self._publish_state(ConnectionState.SUSPENDED, since_seconds=down)
        self._alert("ws_suspended", f"WebSocket down for {down:.0f} s; Track B suspended, reconnecting")

    def _after(self, seconds: float, message: object) -> None:
        ref = self.actor_ref

        def fire() -> None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(message)

        self._timers = [timer for timer in self._timers if timer.is_alive()]
        timer = threading.Timer(seconds, fire)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def _send(self, commands: Any) -> None:
        session = self._session
        if session is None:
            return
        for command in commands:
            registration = command.registration
            try:
                if command.action is Action.SUBSCRIBE:
                    session.subscribe(registration.tr_id, registration.tr_key)
                else:
                    session.unsubscribe(registration.tr_id, registration.tr_key)
            except ConnectionError as error:
                self.log.warning("{}; the session's end will trigger a reconnect", error)
                return

    def _on_session_event(self, value: Decoded, at: datetime) -> None:
        if isinstance(value, Ack):
            self._on_ack(value)
        elif isinstance(value, ExecutionNoticeFrame):
            self._tell(
                "slots",
                ExecutionsReceived(
                    at=self.context.clock.now(), account=self.account.name, notices=value.notices
                ),
            )
        elif isinstance(value, FuturesTradeFrame):
            now = self.context.clock.now()
            self.context.metrics.inc("futures_trades", len(value.trades))
            self._tell("minute_jobs", FuturesTradesReceived(at=now, account=self.account.name, day=now.date(),
                                                             trades=value.trades))
        elif isinstance(value, OrderBookFrame):
            self._tell("recorder", OrderBooksReceived(
                at=self.context.clock.now(), account=self.account.name, tr_id=value.tr_id, books=value.books
            ))
        elif isinstance(value, ProgramTradeFrame):
            self._tell("recorder", ProgramTradesReceived(
                at=self.context.clock.now(), account=self.account.name, tr_id=value.tr_id, trades=value.trades
            ))
        elif isinstance(value, FrameError):
            self._frame_error(value, at)

    def _on_ack(self, ack: Ack) -> None:
        if is_session_refusal(ack.msg_cd):
            self.log.error("session refused by KIS: {} {}", ack.msg_cd, ack.msg1)
            self._close_session("refused")
            return
        result = self.book.on_ack(ack.tr_id, ack.tr_key, ack.msg_cd, ack.msg1)
        if not result.matched:
            self.log.debug("unmatched ack {} {} {}", ack.tr_id, ack.tr_key, ack.msg_cd)
        refusal = result.refusal
        if refusal is not None:
            registration = refusal.registration
            self.log.warning(
                "{} {} refused: {} {}", registration.tr_id, registration.tr_key, refusal.msg_cd, refusal.msg1
            )
            if registration.tr_id == self._trade_tr:
                self._tell(
                    "slots",
                    SubscriptionRefused(
                        at=self.context.clock.now(),
                        account=self.account.name,
                        symbol=registration.tr_key,
                        msg_cd=refusal.msg_cd,
                        accepted_count=self._confirmed_trades(),
                    ),
                )
        self._send(result.commands)
        self._end_gaps()
        self._count_registrations()

    def _confirmed_trades(self) -> int:
        """Tick registrations live now: the notice registration shares the key's limit but is no slot."""
        return sum(1 for registration in self.book.confirmed() if registration.tr_id == self._trade_tr)

    def _observe_pressure(self, lag: float, now: float) -> None:
        """One measurement of how far behind the ticks are handled; a new shed level goes to `slots`."""
        backlog = self._backlog.pending()
        was = self._pressure.level
        level = self._pressure.observe(lag, backlog, now)
        if level is None:
            return
        self._tell("slots", BackPressure(at=self.context.clock.now(), account=self.account.name, level=level,
                                         lag_seconds=lag, backlog=backlog))
        if level == 0:
            self.log.info("caught up with the stream: shed subscriptions are taken back")
            return
        self.log.warning("ticks handled {:.1f} s late, {} messages waiting: shed level {}", lag, backlog,
                         level)
        if was == 0:
            self._alert(BACKPRESSURE, f"processing {lag:.1f} s behind the stream; the lowest scored "
                                      "subscriptions are shed until it catches up")
            self._check_pressure_later()

    def _check_pressure_later(self) -> None:
        if self._pressure.level > 0:
            seconds = max(self.settings.backpressure_recover_seconds / PRESSURE_CHECKS_PER_RECOVERY, 0.5)
            self._after(seconds, _PressureCheck())

    def _on_ticks_shed(self, message: TicksShed) -> None:
        """Trades dropped at the queue's bound: a gap for each symbol, from its last tick received."""
        self.context.metrics.inc("ticks_shed_bursts")
        self.log.warning("receive queue full ({} messages): trades of {} symbols dropped, gaps marked",
                         self.settings.max_queue_messages, len(message.symbols))
        self._tell_missed(message.symbols, message.at, BACKPRESSURE)

    def _frame_error(self, error: FrameError, at: datetime) -> None:
        self.context.metrics.inc("frame_errors")
        self._account_for_unreadable(error, at)
        now = time.monotonic()
        if now - self._frame_error_logged_at < FRAME_ERROR_LOG_INTERVAL_SECONDS:
            self._frame_errors_unlogged += 1
            return
        unlogged = self._frame_errors_unlogged
        more = f" (+{unlogged} more since the last line)" if unlogged else ""
        self._frame_error_logged_at, self._frame_errors_unlogged = now, 0
        self.log.warning("bad frame skipped: {} [{}]{}", error.reason, error.raw_excerpt, more)

    def _account_for_unreadable(self, error: FrameError, at: datetime) -> None:
        """A frame that may have carried trades, arrived `at`, is a gap: of the symbol it names when that
        one streams here, else of every streaming symbol (which one lost ticks cannot be known)."""
        if not error.may_carry_trades:
            return
        streaming = self._trade_symbols(self.book.confirmed())
        symbols = (error.tr_key,) if error.tr_key in streaming else streaming
        if symbols:
            self._tell_missed(symbols, at, BAD_FRAME)

    def _tell_missed(self, symbols: tuple[str, ...], at: datetime, reason: str) -> None:
        """TicksMissed to `gaps`, with each symbol's last trade passed on before the miss: its gap starts
        there, whatever later ticks reach the gap actor first."""
        last = self._last_trades
        since = tuple((symbol, last[symbol]) for symbol in symbols if symbol in last)
        self._tell("gaps", TicksMissed(at=at, account=self.account.name, symbols=symbols, reason=reason,
                                       since=since))

    # --- expected gaps ---------------------------------------------------------------------------

    def _open_gap(self, symbols: tuple[str, ...], at: datetime, reason: str) -> None:
        self._open_gaps(dict.fromkeys(symbols, at), reason)

    def _open_gaps(self, starts: dict[str, datetime], reason: str) -> None:
        """A gap per symbol from its own start; a symbol whose gap is open already keeps it, moved back to
        this start (and reason) when that is earlier: a gap saved open before a kill began after ticks the
        kill lost unwritten, which the restart's gap from the last tick on disk covers."""
        fresh: dict[datetime, list[str]] = {}
        for symbol, at in starts.items():
            opened = self._gaps.get(symbol)
            if opened is None or at < opened[0]:
                self._gaps[symbol] = (at, reason)
                fresh.setdefault(at, []).append(symbol)
        for at, symbols in fresh.items():
            self._tell("gaps", ExpectedGapStarted(at=at, account=self.account.name, symbols=tuple(symbols),
                                                  reason=reason))
        if fresh:
            self._save()

    def _end_gaps(self) -> None:
        """Close the gap of every symbol that streams again, was refused, or is no longer wanted."""
        if not self._gaps:
            return
        target = set(self._trade_target)
        refused = {reg.tr_key for reg in self.book.refused() if reg.tr_id == self._trade_tr}
        ended: dict[tuple[datetime, str], list[str]] = {}
        for symbol, opened in self._gaps.items():
            confirmed = self.book.state(Registration(self._trade_tr, symbol)) is SubState.CONFIRMED
            if confirmed or symbol not in target or symbol in refused:
                ended.setdefault(opened, []).append(symbol)
        if not ended:
            return
        now = self.context.clock.now()
        for (started_at, reason), symbols in ended.items():
            for symbol in symbols:
                del self._gaps[symbol]
            self._tell(
                "gaps",
                ExpectedGapEnded(
                    at=now,
                    account=self.account.name,
                    symbols=tuple(symbols),
                    started_at=started_at,
                    reason=reason,
                ),
            )
        self._save()

    # --- state and peers -------------------------------------------------------------------------

    def _trade_symbols(self, registrations: tuple[Registration, ...]) -> tuple[str, ...]:
        return tuple(reg.tr_key for reg in registrations if reg.tr_id == self._trade_tr)

    def _publish_state(
        self, state: ConnectionState, *, since_seconds: float = 0.0, tell: bool = True
    ) -> None:
        changed = state is not self._state
        self._state = state
        self.context.metrics.set(f"ws_state.{self.account.name}", state.value)
        if changed and tell:
            message = ConnectionChanged(
                at=self.context.clock.now(),
                account=self.account.name,
                state=state,
                since_seconds=since_seconds,
            )
            self._tell("slots", message)
            self._tell("gaps", message)

    def _alert(self, kind: str, text: str) -> None:
        """One SystemAlert to the notifier, keyed by kind and account (its cooldown key)."""
        name = self.account.name
        alert = SystemAlert(at=self.context.clock.now(), key=f"{kind}.{name}", text=f"{name}: {text}")
        self._tell("notifier", alert)

    def _tell(self, peer: str, message: object) -> None:
        if self.directory is not None:
            self.directory.tell(peer, message)

    def _save(self) -> None:
        """Target, symbols that left it recently and open gaps survive a restart of this actor (same day
        only)."""
        now = self.context.clock.now()
        forgotten = now - timedelta(seconds=LEFT_RECENTLY_SECONDS)
        self._left = {symbol: at for symbol, at in self._left.items() if at >= forgotten}
        document = {
            "day": now.date().isoformat(),
            "symbols": list(self._trade_target),
            "order_books": list(self._book_target),
            "program_trading": list(self._program_target),
            "left": {symbol: at.isoformat() for symbol, at in self._left.items()},
            "gaps": {symbol: [start.isoformat(), reason] for symbol, (start, reason) in self._gaps.items()},
        }
        if self._store is None:
            return
        try:
            self._store.save(self._state_name, document)
        except OSError as error:
            self.log.error("cannot save subscriptions: {}", error.strerror or error)

    def _restore(self) -> None:
        assert self._store is not None
        document = self._store.load(self._state_name)
        if document is None:
            self._restore_from_slots()
            return
        if document.get("day") != self.context.clock.now().date().isoformat():
            return
        try:
            symbols = tuple(str(symbol) for symbol in document.get("symbols", ()))
            books = tuple(str(symbol) for symbol in document.get("order_books", ()))
            programs = tuple(str(symbol) for symbol in document.get("program_trading", ()))
            gaps = {
                str(symbol): (datetime.fromisoformat(start), str(reason))
                for symbol, (start, reason) in dict(document.get("gaps", {})).items()
            }
            left = {str(symbol): datetime.fromisoformat(at)
                    for symbol, at in dict(document.get("left", {})).items()}
        except (TypeError, ValueError) as error:
            self.log.warning("saved subscriptions unreadable, starting empty: {}", error)
            return
        self._trade_target = symbols
        self._book_target, self._program_target = books, programs
        self._restored_target = frozenset(symbols)
        self._left = left
        self._restored_left = dict(left)
        self._gaps = gaps
        self.log.info("restored {} target symbols ({} in an open gap)", len(symbols), len(gaps))

    def _restore_from_slots(self) -> None:
        """No readable saved target (lost, or cut and moved aside): the slot manager's target for this
        account, when it runs (it restored its own), stands for what was wanted before this start."""
        if self.directory is None:
            return
        if self.directory.ref("slots") is None and "slots" not in self.directory.remote_ids():
            return
        ask = CurrentTargets(at=self.context.clock.now(), account=self.account.name)
        try:
            symbols = self.directory.ask("slots", ask, timeout=CONNECT_TIMEOUT_SECONDS)
        except pykka.Timeout:
            return
        if not isinstance(symbols, tuple) or not symbols:
            return
        self._trade_target = symbols
        self._restored_target = frozenset(symbols)
        self.log.info("restored {} target symbols from the slot manager (no saved target)", len(symbols))
