"""GapRecoveryActor (id `gaps`): finds gaps in the tick streams and back-fills them from REST minute bars.

Unexpected gaps come from `core.gaps.GapDetector` run over every TicksReceived; expected gaps come from
the connection actors (ExpectedGapStarted at a drop, ExpectedGapEnded once the symbol streams again).
Each closed gap goes through `core.gaps.recovery_action`: shorter than 5 s is fetched at once, 5-60 s
is queued behind the urgent ones, longer gets a marker only. Fetching runs on one worker thread, one
gap at a time, with the account's REST client, whose per-key rate limiter is shared with the scanner;
the actor thread never waits for REST. Results come back to the actor as messages, which hands them to
the recorder (RecoveryRecorded, or GapMarked for what could not be recovered).

An expected gap starts at the symbol's last tick received before the drop (as the gap actor has seen
them when the drop is told), or `IN_FLIGHT_SECONDS` before the drop when that tick is older: ticks in
flight when the socket broke are inside the gap, and a quiet symbol's gap is not stretched back to its
last trade. A feed that lagged the clock (the account's newest exchange time is behind the drop) moves
that floor back with it, by `FEED_LAG_LIMIT_SECONDS` at most: its ticks in flight are older.

| message | effect |
|---|---|
| TicksReceived | detector per tick; an unexpected gap is handled by the policy |
| ExpectedGapStarted | open gaps noted (for the suspension marker) |
| ExpectedGapEnded | one expected gap per symbol, handled by the policy |
| TicksMissed | a gap per symbol from its last tick before the miss to `at` (bad frame, backpressure, |
|  | stop), handled by the policy; `until_next_tick` (a dead worker's symbols): from its last tick |
|  | received `UNJOURNALED_SECONDS` before its last one to its next tick from another account, at most |
|  | `MOVE_LIMIT_SECONDS` after `at` (no tick by then: it found no slot, or is quiet) |
| ConnectionChanged SUSPENDED | a marker per open gap of that account ("still open") + SystemAlert |
| SetSubscriptions (passed on by the connection) | symbols that left or joined the account's target: |
|  | their tracking ends (no silence measured across a time not subscribed) |
| (worker results) | RecoveryRecorded / GapMarked to `recorder`; counters |
| stop / crash | GapMarked for every gap not yet back-filled (and, on a stop, every expected gap still open) |

Metrics: `gaps_detected` (every closed gap), `gaps_recovered` (back-filled), `gaps_marked` (marker
only, or the back-fill failed), gauge `gap_queue_depth`.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pykka

from actors.base import ObserverActor, describe_exception
from actors.context import ObserverContext
from actors.directory import Directory
from core.gaps import Gap, GapDetector, RecoveryAction, recovery_action
from core.recovery import RecoveryRecord, build_recovery_records, gap_marker
from kis.protocol import MARKET_CODES
from kis.rest import KisRestClient
from messages.alerts import SystemAlert
from messages.gaps import ExpectedGapEnded, ExpectedGapStarted, TicksMissed
from messages.market import TicksReceived
from messages.recording import GapMarked, RecoveryRecorded
from messages.streaming import ConnectionChanged, ConnectionState, SetSubscriptions
from runtime.clock import KST
from runtime.logs import clock_time
from spine.convert import gap_closed, gap_opened

IN_FLIGHT_SECONDS = 2.0
FEED_LAG_LIMIT_SECONDS = 30.0
QUEUE_LIMIT = 500
WORKER_STOP_SECONDS = 5.0
MOVE_LIMIT_SECONDS = 60.0
"""A moved symbol's gap ends here when no tick of it came: its new subscription is long confirmed by then."""
UNJOURNALED_SECONDS = 3.0
"""Real seconds of a symbol's last ticks a SIGKILLed stream worker's journal may lack: its recorder hands
lines to the OS within a second (`actors.recorder.FLUSH_INTERVAL_SECONDS`), and the ticks took a while to
reach this actor. A dead worker's gap starts before them."""


@dataclass(frozen=True, slots=True)
class _Recovered:
    sequence: int
    account: str
    gap: Gap
    records: tuple[RecoveryRecord, ...]


@dataclass(frozen=True, slots=True)
class _NotRecovered:
    sequence: int
    account: str
    gap: Gap
    detail: str


@dataclass(order=True, slots=True)
class _Job:
    priority: int
    sequence: int
    account: str = field(compare=False)
    gap: Gap | None = field(compare=False)  # None: stop the worker


def expected_gap_start(
    last_tick: datetime | None, dropped_at: datetime, feed_head: datetime | None = None
) -> datetime:
    """The start of a symbol's expected gap (see the module docstring); `feed_head` is the newest exchange
    time of the account's feed when the drop was told."""
    reference = dropped_at
    if feed_head is not None:
        reference = max(min(feed_head, dropped_at), dropped_at - timedelta(seconds=FEED_LAG_LIMIT_SECONDS))
    earliest = reference - timedelta(seconds=IN_FLIGHT_SECONDS)
    if last_tick is None or last_tick < earliest:
        return earliest
    return min(last_tick, dropped_at)


class GapRecoveryActor(ObserverActor):
    def __init__(self, name: str, directory: Directory, context: ObserverContext) -> None:
        super().__init__(name, directory)
        self.context = context
        self.detector = GapDetector(context.settings.gaps)
        self._last_tick: dict[str, datetime] = {}
        self._recent: dict[str, deque[tuple[float, datetime]]] = {}
        """Symbol -> (arrival, exchange time) of its ticks of the last UNJOURNALED_SECONDS and the one
        before them."""
        self._feed_head: dict[str, datetime] = {}  # account -> newest exchange time of its feed
        self._open: dict[tuple[str, str], tuple[datetime, str]] = {}  # (account, symbol) -> (start, reason)
        self._marked_open: set[tuple[str, str]] = set()  # open gaps already marked "still open" (suspension)
        self._jobs: queue.PriorityQueue[_Job] = queue.PriorityQueue()
        self._sequence = itertools.count()
        self._worker: threading.Thread | None = None
        self._pending: dict[int, tuple[str, Gap]] = {}  # job sequence -> gap whose outcome is not back
        self._targets: dict[str, tuple[str, ...]] = {}  # account -> its connection's last target set
        self._moving: dict[str, tuple[str, datetime, datetime, str]] = {}
        """Symbol -> (old account, gap start, latest end, reason): a gap that ends at its next tick."""

    # --- lifecycle -------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._worker = threading.Thread(target=self._work, name=f"{self.name}-rest", daemon=True)
        self._worker.start()

    def on_stop(self) -> None:
        self._stop_worker("the observer stopped first", mark_open=True)

    def on_failure(self, *_exc: object) -> None:
        # Open expected gaps are closed by the next incarnation (the connection actor tells it the end).
        self._stop_worker("the gap actor restarted first", mark_open=False)

    def _stop_worker(self, why: str, *, mark_open: bool) -> None:
        """Stop the worker and leave a marker for every gap it will not finish (queued or running) and,
        on a stop, for every expected gap still open: they are gaps all the same."""
        worker = self._worker
        if worker is not None:
            self._jobs.put(_Job(-1, -1, "", None))
        pending, self._pending = list(self._pending.values()), {}
        for account, gap in pending:
            self._mark(account, gap, f"not back-filled: {why}")
        if mark_open:
            now = self.context.clock.now()
            for (account, symbol), (start, reason) in self._open.items():
                if (account, symbol) in self._marked_open:
                    continue
                gap = Gap(symbol=symbol, start=start, end=max(now, start), expected=True, reason=reason)
                self._mark(account, gap, f"still open: {why}")
            self._open.clear()
            for symbol, (account, start, _limit, reason) in self._moving.items():
                gap = Gap(symbol=symbol, start=start, end=max(now, start), expected=True, reason=reason)
                self._mark(account, gap, f"still open: {why}")
            self._moving.clear()
        if worker is not None:
            worker.join(WORKER_STOP_SECONDS)

    def idle(self) -> bool:
        """No back-fill queued or running (call through a proxy: `proxy.idle().get()`)."""
        return not self._pending

    # --- messages --------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, TicksReceived):
            self._observe(message)
        elif isinstance(message, ExpectedGapStarted):
            self._open_expected(message)
        elif isinstance(message, ExpectedGapEnded):
            self._close_expected(message)
        elif isinstance(message, TicksMissed):
            self._missed(message)
        elif isinstance(message, _Recovered):
            if self._pending.pop(message.sequence, None) is None:
                return None
            self._tell("recorder", RecoveryRecorded(
                at=self.context.clock.now(), account=message.account, gap=message.gap, records=message.records
            ))
            self.context.metrics.inc("gaps_recovered")
        elif isinstance(message, _NotRecovered):
            if self._pending.pop(message.sequence, None) is None:
                return None
            self._mark(message.account, message.gap, message.detail)
        elif isinstance(message, ConnectionChanged) and message.state is ConnectionState.SUSPENDED:
            self._mark_suspended(message)
        elif isinstance(message, SetSubscriptions):
            self._retarget(message)
        return None

    def _observe(self, message: TicksReceived) -> None:
        """Exchange times have whole seconds: only the first tick of each new second carries timing, so
        the detector sees intervals of one second or more (a run of same-second ticks would otherwise
        give a zero median and flag every ordinary one-second step)."""
        if self._moving:
            self._end_moves(message)
        observe = self.detector.observe
        last_tick = self._last_tick
        arrived = time.monotonic()
        for tick in message.ticks:
            symbol, at = tick.symbol, tick.exchange_time
            previous = last_tick.get(symbol)
            if previous is not None and at <= previous:
                continue
            last_tick[symbol] = at
            self._arrived(symbol, at, arrived)
            gap = observe(symbol, at)
            if gap is not None:
                self._handle(message.account, gap)
        if message.ticks:
            newest = message.ticks[-1].exchange_time
            head = self._feed_head.get(message.account)
            if head is None or newest > head:
                self._feed_head[message.account] = newest

    def _arrived(self, symbol: str, at: datetime, arrived: float) -> None:
        """Keep the symbol's ticks of the last UNJOURNALED_SECONDS (and the one before them, the last one
        surely on a dead worker's disk)."""
        recent = self._recent.setdefault(symbol, deque())
        recent.append((arrived, at))
        while len(recent) > 1 and recent[1][0] < arrived - UNJOURNALED_SECONDS:
            recent.popleft()

    def _open_expected(self, message: ExpectedGapStarted) -> None:
        """The start is fixed now: ticks seen later may come from after the reconnect. A gap open already
        only moves back (a restart after a kill reaches back to the last tick on disk)."""
        head = self._feed_head.get(message.account)
        for symbol in message.symbols:
            opened = self._open.get((message.account, symbol))
            start = expected_gap_start(self._last_tick.get(symbol), message.at, head)
            if opened is None or start < opened[0]:
                self._open[(message.account, symbol)] = (start, message.reason)
                self.context.spine.publish(gap_opened(message, symbol, start))

    def _close_expected(self, message: ExpectedGapEnded) -> None:
        for symbol in message.symbols:
            opened = self._open.pop((message.account, symbol), None)
            self._marked_open.discard((message.account, symbol))
            if opened is None:  # opened before this incarnation started
                start = expected_gap_start(self._last_tick.get(symbol), message.started_at,
                                           self._feed_head.get(message.account))
            else:
                start = opened[0]
            end = max(message.at, start)
            for gap in self.detector.mark_expected((symbol,), start, end, message.reason):
                self._handle(message.account, gap)

    def _missed(self, message: TicksMissed) -> None:
        """The missed ticks came after each symbol's last tick received before them, so the gap starts
        there: the connection's `since` (ticks after the miss may have reached this actor first), else this
        actor's last tick of the symbol, else `IN_FLIGHT_SECONDS` before `at`. A dead worker's
        (`until_next_tick`) starts at the last tick received UNJOURNALED_SECONDS before its last one: the
        ticks after that may have died in its recorder's buffers."""
        fallback = message.at - timedelta(seconds=IN_FLIGHT_SECONDS)
        since = dict(message.since)
        for symbol in message.symbols:
            last = since.get(symbol, self._last_tick.get(symbol))
            start = fallback if last is None or last > message.at else last
            recent = self._recent.get(symbol)
            if message.until_next_tick and recent and last is not None and last <= message.at:
                start = min(start, recent[0][1])
            if message.until_next_tick:
                limit = message.at + timedelta(seconds=MOVE_LIMIT_SECONDS)
                self._moving[symbol] = (message.account, start, limit, message.reason)
                continue
            for gap in self.detector.mark_expected((symbol,), start, message.at, message.reason):
                self._handle(message.account, gap)

    def _end_moves(self, message: TicksReceived) -> None:
        """Close the moving gaps of the symbols ticking again on another account (at their first tick there:
        the dead account's ticks still in flight are older) and of those past their limit."""
        ended: dict[str, datetime] = {}
        for tick in message.ticks:
            moving = self._moving.get(tick.symbol)
            if moving is not None and moving[0] != message.account and tick.symbol not in ended:
                ended[tick.symbol] = tick.exchange_time
        now = self.context.clock.now()
        for symbol, (_account, _start, limit, _reason) in self._moving.items():
            if symbol not in ended and limit <= now:
                ended[symbol] = limit
        for symbol, end in ended.items():
            account, start, limit, reason = self._moving.pop(symbol)
            for gap in self.detector.mark_expected((symbol,), start, max(start, min(end, limit)), reason):
                self._handle(account, gap)

    def _retarget(self, message: SetSubscriptions) -> None:
        """The first target seen of an account (this incarnation's detector is fresh) only sets where the
        changes start from."""
        previous = self._targets.get(message.account)
        self._targets[message.account] = message.symbols
        if previous is None:
            return
        for symbol in self.detector.retarget(previous, message.symbols):
            self._last_tick.pop(symbol, None)
            self._recent.pop(symbol, None)

    def _handle(self, account: str, gap: Gap) -> None:
        self.context.metrics.inc("gaps_detected")
        action = recovery_action(gap, self.context.settings.recovery)
        self.context.spine.publish(gap_closed(account, gap, action.value, self.context.clock.now()))
        self.log.info("{} gap {} {} -> {} ({:.1f} s): {}", gap.reason, gap.symbol, clock_time(gap.start),
                      clock_time(gap.end), gap.duration_seconds, action.value)
        if action is RecoveryAction.MARKER_ONLY:
            limit = self.context.settings.recovery.queued_up_to_seconds
            self._mark(account, gap, f"longer than {limit:g} s: not back-filled")
            return
        if self._jobs.qsize() >= QUEUE_LIMIT:
            self._mark(account, gap, f"recovery queue full ({QUEUE_LIMIT} gaps waiting)")
            return
        priority = 0 if action is RecoveryAction.IMMEDIATE else 1
        sequence = next(self._sequence)
        self._jobs.put(_Job(priority, sequence, account, gap))
        self._pending[sequence] = (account, gap)
        self.context.metrics.set("gap_queue_depth", self._jobs.qsize())

    def _mark(self, account: str, gap: Gap, detail: str) -> None:
        marker = gap_marker(gap, detail, at=self.context.clock.now())
        self._tell("recorder", GapMarked(at=marker.timestamp, account=account, marker=marker))
        self.context.metrics.inc("gaps_marked")

    def _mark_suspended(self, message: ConnectionChanged) -> None:
        """Track B is suspended: leave a marker for every open gap now, in case it never closes today."""
        now = self.context.clock.now()
        opened = [(symbol, at, reason) for (account, symbol), (at, reason) in self._open.items()
                  if account == message.account]
        for symbol, start, reason in opened:
            gap = Gap(symbol=symbol, start=start, end=max(now, start), expected=True, reason=reason)
            marker = gap_marker(gap, "track B suspended: gap still open", at=now)
            self._tell("recorder", GapMarked(at=now, account=message.account, marker=marker))
            self._marked_open.add((message.account, symbol))
        self._tell("notifier", SystemAlert(
            at=now, key=f"gaps_open.{message.account}",
            text=f"{message.account}: {len(opened)} symbols without ticks while Track B is suspended",
        ))

    def _tell(self, peer: str, message: object) -> None:
        if self.directory is not None:
            self.directory.tell(peer, message)

    # --- the worker thread -----------------------------------------------------------------------

    def _work(self) -> None:
        """One gap at a time: fetch the minute bars, build the records, hand the outcome to the actor."""
        clients: dict[str, KisRestClient] = {}
        try:
            while True:
                job = self._jobs.get()
                if job.gap is None:
                    return
                outcome = self._recover(clients, job.sequence, job.account, job.gap)
                self.context.metrics.set("gap_queue_depth", self._jobs.qsize())
                try:
                    self.actor_ref.tell(outcome)
                except pykka.ActorDeadError:
                    return
        finally:
            for client in clients.values():
                with contextlib.suppress(Exception):
                    client.close()

    def _recover(
        self, clients: dict[str, KisRestClient], sequence: int, account: str, gap: Gap
    ) -> _Recovered | _NotRecovered:
        try:
            client = clients.get(account)
            if client is None:
                client = clients[account] = self.context.rest_client(account)
            start, end = gap.start.astimezone(KST), gap.end.astimezone(KST)
            bars = client.minute_bars(
                gap.symbol, since=start.time().replace(second=0, microsecond=0), until=end.time(),
                market_code=MARKET_CODES[self.context.settings.websocket.feed].value,
            )
        except Exception as error:  # REST or credentials: the gap gets a marker, the worker goes on
            return _NotRecovered(sequence, account, gap, f"minute bars failed: {describe_exception(error)}")
        records = build_recovery_records(gap, bars, recovered_at=self.context.clock.now())
        if not records:
            return _NotRecovered(sequence, account, gap, "no minute bars cover the gap")
        return _Recovered(sequence, account, gap, records)
