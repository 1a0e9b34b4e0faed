"""ScannerActor (id `scanner`): Track A, the REST batch scan of the universe, and the 09:30 context sync.

Cadence: its own `Ticker` sends `ClockTick` (the scheduler only announces boundaries); on every tick, and
on every `PhaseChanged`, the actor looks at the injected clock. In TRACK_A_ONLY, FULL_OPERATION and
TRACK_A_CLOSING a pass starts when the last one began `ScanSettings.interval_seconds` ago (simulated
time), the first one at once. A pass runs on a worker thread, one `multi_quote_batch` of up to 30 symbols
per call through the account's `KisRestClient` (the per-key limiter is shared with gap recovery), with
`CALLS_IN_FLIGHT` calls in flight so a pass keeps to the rate limit's pace while the mailbox stays free; a
stop sets an event the callers check between calls, so it ends within one call.

Safe mode (issue 6 item 4): `safe_mode_after_failures` failed calls in a row (after the client's own
retries) abort the pass (a call already waiting for its slot still goes) and widen the interval to
`safe_mode_interval_seconds`, alerted once; the first pass without a failed call ends it (announced).

Context sync: the passes from 09:00 on are kept (symbol, close, volume) until the day is synced. In
FULL_OPERATION, once no pass is running (a pass due at 09:30 runs first, and the sync comes before the pass
after it, even one already due: passes back to back must not starve it), `core.context_sync` ranks the
opening movers and `ContextSynced` goes to triggers, which passes it on to slots once it has ranked every
pass before it: Track B's first allocation then weighs the movers against that ranking. A scanner that
starts after 09:30 (late start, restart) scans at once and syncs from that; if no pass succeeds within
`SYNC_GRACE` of its waiting, it syncs from what it has (possibly nothing), so Track B never waits forever.
The synced day is saved, so a restart does not sync twice. With fewer than `scan.context_min_snapshots`
snapshots in the window the sync is degraded (the seed's fallback): `ContextSynced` carries no baseline and
no movers and says why, Track B starts without context, and the status shows it (`context_degraded`). The
baseline otherwise goes with the movers to the trigger engine.

Closing pass: at `DayEvent.CLOSING_PASS` (KRX's last close, 15:30) one more pass runs whatever the phase
and interval (after the pass under way, if any); its `ScanCompleted` is marked `closing`, so the snapshots
of the closing auction's prices are told apart.

| message | effect |
|---|---|
| UniverseReady | the symbols to scan (also asked of `universe` with `CurrentUniverse` while it has none) |
| ContextSyncDay (ask) | the day of the last context sync, or None |
| ClockTick, PhaseChanged | start a pass when due; context sync when due |
| DayEventFired(CLOSING_PASS) | the closing pass, now or right after the running pass |
| ScanNow | (asked) start a pass now unless one runs; replies what it did |
| internal pass result | ScanCompleted to triggers, recorder, slots; safe mode bookkeeping; sync if waiting |

Metrics: `scans`, gauges `last_scan_at`, `scanner_safe_mode`, `context_synced_at`, `context_snapshots`,
`context_movers`, `context_baseline`, `context_degraded`, `last_closing_pass_at`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import pykka

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from actors.scheduler import tick_interval_seconds
from core.context_sync import SnapshotQuote, TrackASnapshot, degraded_reason, synchronize_context
from core.schedule import DayEvent, Phase, phase_at
from kis.errors import KisError
from kis.models import MultiQuote
from kis.rest import KisRestClient
from messages.alerts import SystemAlert
from messages.control import ScanNow
from messages.market import ScanCompleted, UniverseReady
from messages.schedule import ClockTick, DayEventFired, PhaseChanged
from messages.selection import ContextSyncDay, ContextSynced
from messages.universe import CurrentUniverse
from runtime.ticker import Ticker

TRACK_A_PHASES = frozenset({Phase.TRACK_A_ONLY, Phase.FULL_OPERATION, Phase.TRACK_A_CLOSING})
SYNC_GRACE = timedelta(minutes=5)
"""How long (clock time) the scanner waits in FULL_OPERATION for a successful pass before syncing anyway."""
STATE_NAME = "scanner"
SAFE_MODE_KEY = "scanner.safe_mode"
STOP_JOIN_SECONDS = 2.0
CALLS_IN_FLIGHT = 2
"""Batch calls a pass keeps in flight: a call takes about as long as the limiter's spacing (50 ms at
20/s), so one caller alone would leave the key idle half the time; the shared limiter keeps the pace."""
UNIVERSE_ASK_INTERVAL = timedelta(seconds=2)
"""While it has no universe in a Track A phase, the scanner asks `universe` at most this often."""


@dataclass(frozen=True, slots=True)
class _PassFinished:
    """Internal: what one pass on the worker thread produced."""

    started_at: datetime
    rows: tuple[MultiQuote, ...]
    calls: int
    failed_calls: int
    failures_in_a_row: int
    aborted: bool
    duration_seconds: float
    closing: bool


class _Pass:
    """One pass's batches, handed out to its callers; failures counted in a row across callers."""

    def __init__(
        self, batches: list[tuple[str, ...]], failures_in_a_row: int, abort_after: int,
        stopping: threading.Event, log: Any,
    ) -> None:
        self._batches = batches
        self._results: list[list[MultiQuote]] = [[] for _ in batches]
        self._pending = list(range(len(batches)))
        self._lock = threading.Lock()
        self._abort_after = abort_after
        self._stopping = stopping
        self._log = log
        self.failures_in_a_row = failures_in_a_row
        self.calls = self.failed = 0
        self.aborted = False

    def call_batches(self, client: KisRestClient) -> None:
        with client:
            while (index := self._take()) is not None:
                try:
                    rows = client.multi_quote_batch(self._batches[index])
                except KisError as error:
                    self._log.warning("scan batch {} failed: {}", index + 1, error)
                    with self._lock:
                        self.failed += 1
                        self.failures_in_a_row += 1
                        self.aborted = self.aborted or self.failures_in_a_row >= self._abort_after
                    continue
                with self._lock:
                    self._results[index] = rows
                    self.failures_in_a_row = 0

    def rows(self) -> tuple[MultiQuote, ...]:
        return tuple(row for batch in self._results for row in batch)

    def _take(self) -> int | None:
        with self._lock:
            if self.aborted or self._stopping.is_set() or not self._pending:
                return None
            self.calls += 1
            return self._pending.pop(0)


class ScannerActor(ObserverActor):
    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        account: str | None = None,
        tick_seconds: float | None = None,
        concurrency: int = CALLS_IN_FLIGHT,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self.settings = context.settings.scan
        self._schedule = context.settings.schedule
        self._track_b_stop = self._schedule.track_b_stop
        if account is None and not context.accounts:
            raise ValueError("the scanner needs an account (settings.accounts is empty)")
        self.account = account or context.accounts[0].name
        self.tick_seconds = tick_seconds or tick_interval_seconds(context.clock.speed)
        self.concurrency = max(1, concurrency)
        self._store = context.state_store()
        self._symbols: tuple[str, ...] = ()
        self._market_caps: dict[str, float] = {}
        self._day: date | None = None
        self._scan_no = 0
        self._last_start: datetime | None = None
        self._opening: list[TrackASnapshot] = []
        self._synced_day: date | None = None
        self._sync_waiting_since: datetime | None = None
        self._failures_in_a_row = 0
        self._safe_mode = False
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._ticker: Ticker | None = None
        self._universe_asked_at: datetime | None = None
        self._closing_due = False

    # --- life -----------------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_state()
        self._ask_universe()
        tick = lambda: ClockTick(at=self.context.clock.now())  # noqa: E731
        self._ticker = Ticker(self.actor_ref, tick, self.tick_seconds, name=f"{self.name}-ticker").start()
        self.log.info("scanner ready: account {}, {} symbols, every {:.0f} s", self.account,
                      len(self._symbols), self.settings.interval_seconds)
        self._evaluate()

    def on_stop(self) -> None:
        self._shut_down()
        self._save_state()

    def on_failure(self, *_exc_info: object) -> None:
        self._shut_down()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ContextSyncDay):
            return self._synced_day
        if isinstance(message, UniverseReady):
            self._set_universe(message)
            self._evaluate()
        elif isinstance(message, ClockTick | PhaseChanged):
            self._evaluate()
        elif isinstance(message, DayEventFired) and message.event is DayEvent.CLOSING_PASS:
            self.log.info("closing pass due: KRX's closing auction is over")
            self._closing_due = True
            self._evaluate()
        elif isinstance(message, _PassFinished):
            self._finish_pass(message)
            self._evaluate()
        elif isinstance(message, ScanNow):
            return self._scan_now()
        return None

    def _scan_now(self) -> str:
        """A pass forced by hand (the control surface), in any phase, unless one is running."""
        if self._worker is not None:
            return "a Track A pass is already running: nothing started"
        if not self._symbols:
            self._ask_universe()
            return "no universe yet: nothing to scan"
        now = self.context.clock.now()
        self._roll_day(now.date())
        self._start_pass(now)
        self.log.info("Track A pass forced by hand: {} symbols", len(self._symbols))
        return f"Track A pass started over {len(self._symbols)} symbols"


    def _shut_down(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.stop()
        if self._worker is not None:
            self._worker.join(STOP_JOIN_SECONDS)

    # --- deciding -------------------------------------------------------------------------------------

    def _evaluate(self) -> None:
        now = self.context.clock.now()
        self._roll_day(now.date())
        if self._closing_due and self._worker is None:
            if not self._symbols:
                self._ask_universe(throttled=True)
            if self._symbols:
                self._closing_due = False
                self._start_pass(now, closing=True)
        phase = phase_at(now, self._schedule)
        if phase not in TRACK_A_PHASES:
            return
        if not self._symbols:
            self._ask_universe(throttled=True)
        if phase == Phase.FULL_OPERATION and self._synced_day != now.date():
            first_look = self._sync_waiting_since is None
            self._sync_waiting_since = self._sync_waiting_since or now
            pass_first = first_look and bool(self._symbols) and self._scan_due(now)  # sync from that pass
            if self._worker is None and not pass_first and (
                self._opening or now >= self._sync_waiting_since + SYNC_GRACE
            ):
                self._sync(now)
        if self._worker is None and self._symbols and self._scan_due(now):
            self._start_pass(now)

    def _scan_due(self, now: datetime) -> bool:
        if self._last_start is None:
            return True
        settings = self.settings
        interval = settings.safe_mode_interval_seconds if self._safe_mode else settings.interval_seconds
        return now >= self._last_start + timedelta(seconds=interval)

    def _roll_day(self, today: date) -> None:
        if self._day == today:
            return
        if self._day is not None:
            self.log.info("new day {}: scan count and opening snapshots reset", today)
        self._day = today
        self._scan_no = 0
        self._last_start = None
        self._opening = []
        self._sync_waiting_since = None

    # --- passes ---------------------------------------------------------------------------------------

    def _start_pass(self, now: datetime, *, closing: bool = False) -> None:
        self._last_start = now
        self._worker = threading.Thread(
            target=self._run_pass, args=(now, self._symbols, self._failures_in_a_row, closing),
            name=f"{self.name}-pass", daemon=True,
        )
        self._worker.start()

    def _run_pass(
        self, started_at: datetime, symbols: tuple[str, ...], failures_in_a_row: int, closing: bool
    ) -> None:
        """The pass thread: `concurrency` callers share the batches; the result goes back as a message."""
        began = time.monotonic()
        size = self.settings.batch_size
        batches = [symbols[first : first + size] for first in range(0, len(symbols), size)]
        abort_after = self.settings.safe_mode_after_failures
        scan = _Pass(batches, failures_in_a_row, abort_after, self._stopping, self.log)
        callers = [
            threading.Thread(target=scan.call_batches, args=(self.context.rest_client(self.account),),
                             name=f"{self.name}-call-{n}", daemon=True)
            for n in range(min(self.concurrency, len(batches)))
        ]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join()
        if self._stopping.is_set():
            return
        result = _PassFinished(
            started_at=started_at, rows=scan.rows(), calls=scan.calls,
            failed_calls=scan.failed, failures_in_a_row=scan.failures_in_a_row, aborted=scan.aborted,
            duration_seconds=time.monotonic() - began, closing=closing,
        )
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(result)

    def _finish_pass(self, result: _PassFinished) -> None:
        self._worker = None
        self._failures_in_a_row = result.failures_in_a_row
        self._scan_no += 1
        scan = ScanCompleted(
            at=self.context.clock.now(), account=self.account, scan_no=self._scan_no, rows=result.rows,
            calls=result.calls, failed_calls=result.failed_calls,
            duration_seconds=result.duration_seconds, closing=result.closing,
        )
        for peer in ("triggers", "recorder", "slots"):
            self.directory.tell(peer, scan)
        metrics = self.context.metrics
        metrics.inc("scans")
        metrics.set("last_scan_at", result.started_at.isoformat())
        if result.closing:
            metrics.set("last_closing_pass_at", result.started_at.isoformat())
        self.log.info(
            "{} {}: {} rows in {} calls ({} failed), {:.2f} s", "closing pass" if result.closing else "scan",
            self._scan_no, len(result.rows), result.calls, result.failed_calls, result.duration_seconds,
        )
        self._keep_for_sync(result)
        self._update_safe_mode(result)

    def _update_safe_mode(self, result: _PassFinished) -> None:
        if result.aborted and not self._safe_mode:
            self._safe_mode = True
            text = (
                f"scanner: {result.failures_in_a_row} REST calls failed in a row; safe mode, scanning every "
                f"{self.settings.safe_mode_interval_seconds:.0f} s until calls succeed again"
            )
            self._alert(SAFE_MODE_KEY, text)
        elif self._safe_mode and result.failed_calls == 0:
            self._safe_mode = False
            self._alert(
                f"{SAFE_MODE_KEY}.ended",
                f"scanner: calls succeed again; back to every {self.settings.interval_seconds:.0f} s",
            )
        self.context.metrics.set("scanner_safe_mode", self._safe_mode)

    def _alert(self, key: str, text: str) -> None:
        self.log.warning(text)
        self.directory.tell("notifier", SystemAlert(at=self.context.clock.now(), key=key, text=text))

    # --- context sync ---------------------------------------------------------------------------------

    def _keep_for_sync(self, result: _PassFinished) -> None:
        started = result.started_at
        if self._synced_day == started.date() or not result.rows or started.time() >= self._track_b_stop:
            return
        quotes = tuple(SnapshotQuote(row.symbol, float(row.price), float(row.volume)) for row in result.rows)
        self._opening.append(TrackASnapshot(result.started_at, quotes))

    def _sync(self, now: datetime) -> None:
        window_start = datetime.combine(now.date(), self._schedule.track_a_start, now.tzinfo)
        pool_slots = self.context.settings.slots.max_slots * max(1, len(self.context.accounts))
        synced = synchronize_context(self._opening, window_start, now, limit=pool_slots)
        degraded = degraded_reason(synced.snapshot_count, self.settings.context_min_snapshots)
        if degraded is not None:
            synced_message = ContextSynced(at=now, movers=(), degraded=degraded)
        else:
            movers = tuple(
                candidate.model_copy(update={"market_cap": self._market_caps.get(candidate.symbol, 0.0)})
                for candidate in synced.candidates
            )
            synced_message = ContextSynced(at=now, movers=movers, baseline=synced.baseline)
        self.directory.tell("triggers", synced_message)  # which passes it to slots
        self._synced_day = now.date()
        self._opening = []
        self._save_state()
        metrics = self.context.metrics
        metrics.set("context_synced_at", now)
        metrics.set("context_snapshots", synced.snapshot_count)
        metrics.set("context_movers", len(synced_message.movers))
        metrics.set("context_degraded", degraded)
        baseline = synced_message.baseline
        metrics.set("context_baseline", baseline.model_dump() if baseline is not None else None)
        if degraded is not None:
            self.log.warning("context sync: {}", degraded)
            return
        self.log.info(
            "context synced from {} snapshots: {} movers, top {}; baseline volume {:.0f}, volatility {:.4f}",
            synced.snapshot_count, len(synced_message.movers),
            ", ".join(m.symbol for m in synced_message.movers[:5]) or "none",
            synced.baseline.avg_volume, synced.baseline.avg_volatility,
        )

    # --- universe and state ---------------------------------------------------------------------------

    def _set_universe(self, ready: UniverseReady) -> None:
        self._symbols = tuple(profile.symbol for profile in ready.profiles)
        self._market_caps = {p.symbol: float(p.market_cap or 0) for p in ready.profiles}
        self.log.info("universe of {}: {} symbols to scan", ready.day, len(self._symbols))

    def _ask_universe(self, *, throttled: bool = False) -> None:
        now = self.context.clock.now()
        asked = self._universe_asked_at
        if throttled and asked is not None and now - asked < UNIVERSE_ASK_INTERVAL:
            return
        self._universe_asked_at = now
        ready = self.directory.ask("universe", CurrentUniverse(at=self.context.clock.now()), timeout=2.0)
        if isinstance(ready, UniverseReady):
            self._set_universe(ready)

    def _load_state(self) -> None:
        saved = self._store.load(STATE_NAME) or {}
        with contextlib.suppress(TypeError, ValueError):
            self._synced_day = date.fromisoformat(str(saved.get("synced_day")))

    def _save_state(self) -> None:
        day = self._synced_day.isoformat() if self._synced_day else None
        self._store.save(STATE_NAME, {"synced_day": day})
