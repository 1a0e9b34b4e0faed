"""TriggerActor (id `triggers`): turns scans and ticks into live triggers and a ranked candidate list.

A thin shell over `core.triggers`, `core.scoring`, `core.signals` and `core.alerts`:

- UniverseReady gives each symbol's profile (name, market cap, previous close, 20-day average volume and
  turnover, 14-day ATR, 20-day MA); the tick detectors get their one-minute volume baselines from it.
- ScanCompleted rows go through `evaluate_scan` (volume surge, volatility spike) into the `TriggerBook`
  in one handler; the ranking goes out after it if it changed materially.
- TicksReceived is the hot path: per message, each trade goes to `TickDetector.on_tick` (trade velocity and
  the real-time profile) and, when `signals.enabled`, to the hybrid signals; no pydantic per tick, no I/O.
- A trigger that is new (not a renewal) raises an `AlertRaised` to `notifier` (manual ones do not);
  signals raise one too, pre-filtered here by a local cooldown so a held condition does not send one
  message per tick (the notifier's saved cooldown is the authority).
- The hybrid profile (`signals.rank_by_closeness`) ranks differently: the manual tier first (the day's
  picks, manual triggers with a TTL, pins: the book's manual triggers, lifted above everything else by
  `core.closeness.hybrid_ranking`), then the latest scan's symbols within `closeness_horizon` of a signal
  threshold by their closeness (`core.closeness`, websocket_monitor_hybrid.md 3.5); tick triggers still
  raise alerts but take no slot. Held positions and pins are the slot manager's pins, placed first
  whatever the ranking. The scan's n-minute return comes from the scan prices (a `ReturnWindow` per
  symbol fed by the scans).
- Mode B (`signals.breakout_enabled`): each trade is also checked against the highest trade of the
  `breakout_minutes` before it (`core.signals.HighWindow`); a breakout alert has the same per-(symbol,
  signal) cooldown as the other signals.
- `CandidatesRanked` goes to `slots` every `slots.rebalance_interval_seconds` of clock time and at once
  when the ranking changes materially: the set of symbols that would fit in the pool's slots differs
  from the last one sent. The cadence is this actor's own `runtime.ticker.Ticker` sending `ClockTick`
  (the scheduler only sends boundaries); due-ness is judged on the injected clock, so a ClockTick from
  anyone (a test's `ask`) is handled the same way.
- Manual overrides (`triggers.manual.symbols` and `ManualOverride`) are manual triggers with no TTL;
  a `ManualOverride` is forwarded to `slots`, which pins the symbol.

State: the day's profiles (`trigger_universe`, written at UniverseReady) and the live triggers with the
manual overrides (`triggers`, written on the rebalance cadence, after a scan with new triggers and at every
override, by a `runtime.state_saver.StateSaver` so the mailbox never waits for the disk's fsync; flushed
when the actor ends) go to the StateStore and are loaded in `on_start`, so a restart keeps its
candidates (a tick trigger younger than one rebalance interval may be lost; the ticks raise it again).
Without today's profiles on disk, `on_start` asks `universe` (`CurrentUniverse`) for the day's
announcement.

| message | effect |
|---|---|
| UniverseReady | profiles and baselines; a new day starts an empty book (manual triggers kept); the same |
|  | day again (baselines completed) keeps the book and the tick windows |
| ScanCompleted | scan triggers (+ signals on the rows); then ranking sent if changed materially |
| TicksReceived | tick triggers (+ signals); ranking sent if a new trigger changed it materially |
| ManualOverride | manual trigger added / removed, override saved, forwarded to `slots`; replies what it did |
| ManualTrigger | (asked) a manual trigger with a TTL; replies what it did |
| PicksLoaded | (asked) the day's picks replace the previous ones (manual triggers until 15:30) at once, or |
|  | at its `apply_at` (`triggers.manual.picks_time`, 07:20), kept and saved until then; replies |
| ClockTick (picks source) | at `picks_time` of a trading day (at start when later), the picks file or URL |
|  | (`triggers.manual.picks_file` / `picks_url`) is read on a worker thread and replaces the picks tier; |
|  | once a day (saved); a failure is alerted once and read again every `PICKS_RETRY_SECONDS` |
| ClockTick | scheduled picks when due; expire triggers; every rebalance interval: |
|  | CandidatesRanked, book saved |
| PhaseChanged | ranking sent at once (e.g. FULL_OPERATION starts) |
| ContextSynced | its baseline kept (saved) for the scan triggers (`core.triggers`); ranking sent at once, |
|  | then the ContextSynced passed to `slots` |

Metrics: `triggers` (new triggers, manual included).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

import pykka
from pydantic import ValidationError

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from core.alerts import AlertCooldown, alert_for_signal, alert_for_trigger
from core.calendar import is_trading_day
from core.closeness import hybrid_ranking, rank_by_closeness
from core.context_sync import BaselineMetrics
from core.models import Candidate, Trigger, TriggerKind
from core.scoring import Scored, rank_candidates, ranking_of, score_symbols
from core.signals import HighWindow, ReturnWindow, SignalHit, SignalInputs, evaluate_signals
from core.triggers import (
    Baseline,
    Renewal,
    ScanRow,
    TickDetector,
    TriggerBook,
    evaluate_scan,
    manual_trigger,
    minute_baseline,
)
from kis.ticks import TradeTick
from messages.alerts import AlertRaised, SystemAlert
from messages.control import ManualTrigger, Pick, PicksLoaded
from messages.market import ScanCompleted, SymbolProfile, TicksReceived, UniverseReady
from messages.schedule import ClockTick, PhaseChanged
from messages.selection import CandidatesRanked, ContextSynced, ManualOverride
from messages.universe import CurrentUniverse
from runtime.picks_source import read_picks
from runtime.state_saver import StateSaver
from runtime.ticker import Ticker

UNIVERSE_STATE = "trigger_universe"
BOOK_STATE = "triggers"
MIN_TICK_SECONDS = 0.1
MAX_TICK_SECONDS = 1.0
TICKS_PER_REBALANCE = 4
UNIVERSE_ASK_SECONDS = 2.0
SAVER_CLOSE_SECONDS = 5.0
PICKS_RETRY_SECONDS = 300.0
"""Clock seconds before a picks file or URL that could not be read is read again."""


@dataclass(frozen=True, slots=True)
class _PicksRead:
    """Internal: what the worker thread read from the picks file or URL for `day` (or why it could not)."""

    day: date
    picks: tuple[tuple[str, float], ...]
    error: str | None


def tick_interval_seconds(rebalance_seconds: float, speed: float) -> float:
    """Real seconds between ClockTicks: a quarter of the rebalance interval in real time, within [0.1, 1] s
    (0.2 s on a manual clock, where time moves only when a test moves it)."""
    if speed <= 0:
        return 0.2
    real = rebalance_seconds / speed / TICKS_PER_REBALANCE
    return min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, real))


@dataclass(frozen=True, slots=True)
class Profile:
    """What the triggers need of one universe symbol (a slots dataclass: looked up per tick)."""

    name: str
    market_cap: float | None
    prev_close: float
    avg_volume_20d: float
    avg_turnover_20d: float
    atr_14d: float
    ma_20d: float

    @classmethod
    def of(cls, profile: SymbolProfile) -> Profile:
        return cls(profile.name, profile.market_cap, float(profile.prev_close), profile.avg_volume_20d,
                   profile.avg_turnover_20d, profile.atr_14d, profile.ma_20d)


class TriggerActor(ObserverActor):
    """See the module docstring for the message table."""

    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        tick_seconds: float | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        settings = context.settings
        self._trigger_settings = settings.triggers
        self._signal_settings = settings.signals
        self._rebalance = timedelta(seconds=settings.slots.rebalance_interval_seconds)
        self._tick_seconds = tick_seconds or tick_interval_seconds(
            settings.slots.rebalance_interval_seconds, context.clock.speed)
        capacities = [min(a.max_slots, settings.slots.max_slots) for a in context.accounts]
        self._pool_slots = sum(capacities) if capacities else settings.slots.max_slots
        self._store = context.state_store()
        self._saver: StateSaver | None = None
        self._day: date | None = None
        self._profiles: dict[str, Profile] = {}
        self._baselines: dict[str, Baseline] = {}
        self._market_caps: dict[str, float | None] = {}
        self._book = TriggerBook()
        self._detector = TickDetector(settings.triggers)
        self._returns: dict[str, ReturnWindow] = {}
        self._highs: dict[str, HighWindow] = {}
        self._hybrid = settings.signals.rank_by_closeness
        self._scan_returns: dict[str, ReturnWindow] = {}
        self._snapshots: dict[str, SignalInputs] = {}
        self._last_exchange_time: datetime | None = None
        self._last_timestamp = 0.0
        self._signal_cooldown = AlertCooldown(settings.alerts.cooldown_seconds)
        self._overrides: dict[str, bool] = {}
        self._picks: tuple[str, ...] = ()
        self._pending_picks: PicksLoaded | None = None
        self._last_rebalance: datetime | None = None
        self._sent_top: frozenset[str] | None = None
        self._book_changed = False
        self._warnings: tuple[str, ...] = ()
        self._opening: BaselineMetrics | None = None
        self._opening_day: date | None = None
        self._source_day: date | None = None
        self._source_reading = False
        self._source_retry_at: datetime | None = None
        self._source_alerted: date | None = None
        self._ticker: Ticker | None = None

    # --- life -----------------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._saver = StateSaver(self._store, thread_name=f"{self.name}-saver", log=self.log)
        now = self.context.clock.now()
        self._load_universe(now.date())
        if not self._profiles:
            self._ask_universe()
        self._load_book(now)
        for symbol in self._manual_symbols():
            self._book.renew_or_add(manual_trigger(symbol, now, self._trigger_settings.manual))
        self._ticker = Ticker(self.actor_ref, lambda: ClockTick(at=self.context.clock.now()),
                              self._tick_seconds, name=f"{self.name}-ticker").start()
        self.log.info("triggers ready: {} profiles, {} live triggers, rebalance every {:.0f} s",
                      len(self._profiles), len(self._book), self._rebalance.total_seconds())
        self._read_picks_source_if_due(now)

    def on_stop(self) -> None:
        self._stop_ticker()
        self._save_book(self.context.clock.now())
        self._close_saver()

    def on_failure(self, *_exc_info: object) -> None:
        self._stop_ticker()
        self._close_saver()

    def on_receive(self, message: Any) -> Any:
        match message:
            case TicksReceived():
                self._on_ticks(message.ticks)
            case ClockTick():
                self._on_clock_tick()
            case ScanCompleted():
                self._on_scan(message)
            case UniverseReady():
                self._on_universe(message)
            case ManualOverride():
                return self._on_manual(message)
            case ManualTrigger():
                return self._on_manual_trigger(message)
            case PicksLoaded():
                return self._on_picks(message)
            case _PicksRead():
                self._on_picks_read(message)
            case PhaseChanged():
                self._rebalance_now(self.context.clock.now())
            case ContextSynced():
                self._on_context_synced(message)
                # Track B's first allocation must see the scans before the sync: rank, then pass on.
                self._rebalance_now(self.context.clock.now())
                self.directory.tell("slots", message)
        return None

    # --- queries (proxy calls: status view, tests) -------------------------------------------------------

    def live_triggers(self) -> tuple[Trigger, ...]:
        return self._book.live(self.context.clock.now())

    def candidates(self) -> tuple[Candidate, ...]:
        return self._ranking(self.context.clock.now())

    # --- the hot path -----------------------------------------------------------------------------------

    def _on_ticks(self, ticks: tuple[TradeTick, ...]) -> None:
        on_tick = self._detector.on_tick
        signals = self._signal_settings.enabled
        added = False
        for tick in ticks:
            fired = on_tick(tick.symbol, tick.exchange_time, tick.price, tick.volume)
            if fired:
                for trigger in fired:
                    added = self._add(trigger) or added
            if signals:
                self._tick_signals(tick)
        if added and not self._hybrid:  # the hybrid ranking takes no tick trigger
            self._send_if_material(self.context.clock.now())

    def _tick_signals(self, tick: TradeTick) -> None:
        symbol = tick.symbol
        window = self._returns.get(symbol)
        if window is None:
            window = self._returns[symbol] = ReturnWindow(self._signal_settings.return_minutes)
        at = tick.exchange_time
        if at != self._last_exchange_time:  # trades of a frame mostly share their second
            self._last_exchange_time = at
            self._last_timestamp = at.timestamp()
        return_pct = window.add(self._last_timestamp, tick.price)
        inputs = self._signal_inputs(symbol, tick.price, at, return_pct, tick.cum_value)
        if self._signal_settings.breakout_enabled:
            highs = self._highs.get(symbol)
            if highs is None:
                highs = self._highs[symbol] = HighWindow(self._signal_settings.breakout_minutes)
            inputs = replace(inputs, prior_high=highs.add(self._last_timestamp, tick.price))
        hits = evaluate_signals(inputs, self._signal_settings)
        if hits:
            self._raise_signals(hits)

    def _signal_inputs(self, symbol: str, price: float, at: datetime, return_pct: float | None,
                       turnover: float) -> SignalInputs:
        profile = self._profiles.get(symbol)
        if profile is None:
            return SignalInputs(symbol, price, at, return_pct=return_pct)
        return SignalInputs(symbol, price, at, profile.prev_close, profile.ma_20d or None, return_pct,
                            float(turnover), profile.avg_turnover_20d)

    # --- other handlers ---------------------------------------------------------------------------------

    def _on_clock_tick(self) -> None:
        now = self.context.clock.now()
        self._read_picks_source_if_due(now)
        pending = self._pending_picks
        if pending is not None and pending.apply_at is not None and now >= pending.apply_at:
            self._load_picks(pending.picks, now)
        expired = self._book.expire(now)
        if expired:
            self._book_changed = True
            self.log.debug("{} triggers expired: {}", len(expired),
                           ", ".join(f"{t.symbol}/{t.kind.value}" for t in expired[:10]))
        if self._last_rebalance is None or now - self._last_rebalance >= self._rebalance:
            self._rebalance_now(now)
        elif expired:
            self._send_if_material(now)

    def _on_scan(self, scan: ScanCompleted) -> None:
        at = scan.at
        rows = []
        for quote in scan.rows:
            if quote.symbol not in self._baselines:
                continue  # evaluate_scan skips a symbol without a baseline
            profile = self._profiles.get(quote.symbol)
            rows.append(ScanRow(quote.symbol, float(quote.price), float(quote.open), float(quote.high),
                                float(quote.low), float(quote.volume), float(quote.prev_close),
                                profile.market_cap if profile else None, at))
        found = evaluate_scan(rows, self._baselines, self._trigger_settings, opening=self._opening_of(at))
        added = sum(self._add(trigger) for trigger in found)
        if self._signal_settings.enabled or self._hybrid:
            seconds = at.timestamp()
            minutes = self._signal_settings.return_minutes
            for quote in scan.rows:
                window = self._scan_returns.get(quote.symbol)
                if window is None:
                    window = self._scan_returns[quote.symbol] = ReturnWindow(minutes)
                return_pct = window.add(seconds, float(quote.price))
                inputs = replace(
                    self._signal_inputs(quote.symbol, float(quote.price), at, return_pct, quote.value),
                    high=float(quote.high), low=float(quote.low))
                self._snapshots[quote.symbol] = inputs
                if self._signal_settings.enabled:
                    hits = evaluate_signals(inputs, self._signal_settings)
                    if hits:
                        self._raise_signals(hits)
        self.log.info("scan {} of {}: {} rows, {} triggers ({} new)", scan.scan_no, scan.account,
                      len(scan.rows), len(found), added)
        now = self.context.clock.now()
        if added:
            # A crash before the next rebalance must not lose a scan's new triggers; its renewals only
            # extend expiries, saved at that rebalance (a scan renews them again after a crash).
            self._save_book(now)
        self._send_if_material(now)

    def _on_context_synced(self, message: ContextSynced) -> None:
        """Keep the day's opening baseline for the scan triggers (none in degraded mode)."""
        if message.baseline is None:
            self.log.warning("context sync without a baseline ({}): scan triggers keep their daily baselines",
                             message.degraded or "no reason given")
        else:
            self.log.info("opening baseline: volatility threshold {:.4f}, volume threshold {:.0f}, {} "
                          "symbols", message.baseline.volatility_threshold, message.baseline.volume_threshold,
                          message.baseline.sample_count)
        self._opening, self._opening_day = message.baseline, message.at.date()
        self._save_book(self.context.clock.now())

    def _opening_of(self, at: datetime) -> BaselineMetrics | None:
        return self._opening if self._opening_day == at.date() else None

    def _on_universe(self, message: UniverseReady) -> None:
        now = self.context.clock.now()
        # The same day again (baselines completed later): the tick windows of the day go on.
        profiles = {p.symbol: Profile.of(p) for p in message.profiles}
        self._set_profiles(profiles, same_day=self._day == message.day)
        if self._day is not None and self._day != message.day:
            self._book = TriggerBook()
            self._returns.clear()
            self._highs.clear()
            self._scan_returns.clear()
            self._snapshots.clear()
            for symbol in self._manual_symbols():
                self._book.renew_or_add(manual_trigger(symbol, now, self._trigger_settings.manual))
            self._book_changed = True
        self._day = message.day
        self._save_universe()
        self.log.info("universe of {}: {} profiles{}", message.day, len(self._profiles),
                      " (fallback snapshot)" if message.fallback else "")

    def _on_manual(self, message: ManualOverride) -> str:
        now = self.context.clock.now()
        self._overrides[message.symbol] = message.active
        if message.active:
            self._add(manual_trigger(message.symbol, now, self._trigger_settings.manual))
        elif self._book.remove(message.symbol, TriggerKind.MANUAL) is not None:
            self._book_changed = True
        self.log.info("manual override: {} {}", message.symbol, "on" if message.active else "off")
        self.directory.tell("slots", message)
        self._save_book(now)
        self._send_if_material(now)
        if message.active:
            return f"{message.symbol} pinned: it holds a slot while Track B runs and is never evicted"
        return f"{message.symbol} unpinned: it keeps its slot only on its other triggers"

    def _on_manual_trigger(self, message: ManualTrigger) -> str:
        """A manual trigger with a TTL: it competes for a slot by score and expires (a pin stays a pin)."""
        now = self.context.clock.now()
        expires = now + timedelta(seconds=message.ttl_seconds)
        trigger = manual_trigger(message.symbol, now, self._trigger_settings.manual)
        self._add(trigger.model_copy(update={"expires_at": expires}))
        self.log.info("manual trigger on {} until {:%H:%M:%S}", message.symbol, expires)
        self._save_book(now)
        self._send_if_material(now)
        return f"manual trigger on {message.symbol} until {expires:%H:%M:%S} KST"

    def _on_picks(self, message: PicksLoaded) -> str:
        """The day's picks replace the previous ones now, or at `apply_at` (kept, and saved, until then)."""
        now = self.context.clock.now()
        if message.apply_at is not None and message.apply_at > now:
            self._pending_picks = message
            self._save_book(now)
            self.log.info("{} picks will load at {:%Y-%m-%d %H:%M}", len(message.picks), message.apply_at)
            return (f"{len(message.picks)} picks will replace the current picks at "
                    f"{message.apply_at:%Y-%m-%d %H:%M} KST")
        return self._load_picks(message.picks, now)

    def _read_picks_source_if_due(self, now: datetime) -> None:
        """Start reading the picks file or URL at `picks_time` of a trading day not loaded from it yet."""
        manual = self._trigger_settings.manual
        if not (manual.picks_file or manual.picks_url) or self._source_reading:
            return
        today = now.date()
        if self._source_day == today or not is_trading_day(today):
            return
        if now < datetime.combine(today, manual.picks_time, tzinfo=now.tzinfo):
            return
        if self._source_retry_at is not None and now < self._source_retry_at:
            return
        self._source_reading = True
        threading.Thread(target=self._read_picks_source, args=(today, manual.picks_file, manual.picks_url),
                         name=f"{self.name}-picks", daemon=True).start()

    def _read_picks_source(self, day: date, file: str | None, url: str | None) -> None:
        """The worker thread: read, and tell the result back (the mailbox never waits for the network)."""
        try:
            result = _PicksRead(day, read_picks(file, url), None)
        except (OSError, ValueError) as error:
            result = _PicksRead(day, (), str(error))
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(result)

    def _on_picks_read(self, message: _PicksRead) -> None:
        now = self.context.clock.now()
        self._source_reading = False
        if message.error is not None:
            self._source_retry_at = now + timedelta(seconds=PICKS_RETRY_SECONDS)
            self.log.warning("day's picks not loaded: {}; trying again at {:%H:%M:%S}", message.error,
                             self._source_retry_at)
            self.context.metrics.set("picks_source", f"not loaded: {message.error}")
            if self._source_alerted != message.day:
                self._source_alerted = message.day
                self.directory.tell("notifier", SystemAlert(
                    at=now, key="triggers.picks_source", text=f"day's picks not loaded: {message.error}"))
            return
        known = [(symbol, score) for symbol, score in message.picks
                 if not self._profiles or symbol in self._profiles]
        unknown = [symbol for symbol, _ in message.picks if self._profiles and symbol not in self._profiles]
        if unknown:
            self.log.warning("day's picks: {} not in today's universe, left out: {}", len(unknown),
                             ", ".join(unknown[:10]))
        self._source_day, self._source_retry_at = message.day, None
        said = self._load_picks(tuple(Pick(symbol=symbol, score=score) for symbol, score in known), now)
        self.context.metrics.set("picks_source", f"{said} (read {now:%H:%M})")

    def _load_picks(self, picks: tuple[Pick, ...], now: datetime) -> str:
        """Manual triggers (strength = score) until the close; the previous picks go unless pinned."""
        self._pending_picks = None
        pinned = set(self._manual_symbols())
        dropped = [symbol for symbol in self._picks if symbol not in pinned]
        for symbol in dropped:
            if self._book.remove(symbol, TriggerKind.MANUAL) is not None:
                self._book_changed = True
        close = datetime.combine(now.date(), self.context.settings.schedule.track_a_stop, tzinfo=now.tzinfo)
        expires = close if close > now else now + timedelta(days=1)
        for pick in picks:
            trigger = manual_trigger(pick.symbol, now, self._trigger_settings.manual, strength=pick.score)
            self._add(trigger.model_copy(update={"expires_at": expires}))
        self._picks = tuple(pick.symbol for pick in picks)
        self.log.info("day's picks: {} loaded, {} previous picks dropped", len(self._picks), len(dropped))
        self._save_book(now)
        self._rebalance_now(now)
        return (f"{len(self._picks)} picks loaded until {expires:%H:%M} KST; "
                f"{len(dropped)} previous picks dropped")

    # --- triggers, alerts, ranking ----------------------------------------------------------------------

    def _add(self, trigger: Trigger) -> bool:
        """Into the book; True when new (then counted, and alerted unless manual)."""
        self._book_changed = True
        if self._book.renew_or_add(trigger) is not Renewal.ADDED:
            return False
        self.context.metrics.inc("triggers")
        self.context.spine.publish(trigger)
        self.context.metrics.push_recent(
            "recent_triggers", f"{trigger.detected_at:%H:%M:%S} {trigger.symbol} {trigger.kind.value}"
        )
        profile = self._profiles.get(trigger.symbol)
        name = profile.name if profile else ""
        self.log.info("trigger {} {} {}: value {:.2f}, strength {:.2f}", trigger.kind.value, trigger.symbol,
                      name, trigger.value, trigger.strength)
        if trigger.kind is not TriggerKind.MANUAL:
            alert = alert_for_trigger(trigger, name)
            self.directory.tell("notifier", AlertRaised(at=self.context.clock.now(), alert=alert))
        return True

    def _raise_signals(self, hits: tuple[SignalHit, ...]) -> None:
        for hit in hits:
            if not self._signal_cooldown.should_send((hit.symbol, hit.signal), hit.at):
                continue
            profile = self._profiles.get(hit.symbol)
            alert = alert_for_signal(hit, profile.name if profile else "")
            self.log.info("signal {} {}: {:.4g}", hit.signal.value, hit.symbol, hit.value)
            self.directory.tell("notifier", AlertRaised(at=self.context.clock.now(), alert=alert))

    def _ranking(self, now: datetime, scored: list[Scored] | None = None) -> tuple[Candidate, ...]:
        """The candidates, from `scored` when the book was just scored at `now`."""
        if self._hybrid:
            return self._hybrid_ranking(now)
        if scored is None:
            ranking = rank_candidates(self._book, self._market_caps, now, self._trigger_settings)
        else:
            ranking = ranking_of(scored)
        if ranking.warnings != self._warnings:
            self._warnings = ranking.warnings
            for warning in ranking.warnings:
                self.log.warning(warning)
        return ranking.candidates

    def _hybrid_ranking(self, now: datetime) -> tuple[Candidate, ...]:
        """The manual tier, then the latest scan's symbols by closeness to a signal threshold."""
        manual = [trigger for trigger in self._book if trigger.kind is TriggerKind.MANUAL]
        first = rank_candidates(manual, self._market_caps, now, self._trigger_settings).candidates
        near = rank_by_closeness(self._snapshots.values(), self._signal_settings)
        return hybrid_ranking(first, near, self._market_caps, self._signal_settings.closeness_horizon)

    def _send_if_material(self, now: datetime) -> None:
        """Send now if the symbols that would get the pool's slots differ from the last ranking sent (the
        candidates are built only then: this runs whenever a tick adds a trigger)."""
        if self._hybrid:
            candidates = self._hybrid_ranking(now)
            top = frozenset(candidate.symbol for candidate in candidates[: self._pool_slots])
            if top != (self._sent_top or frozenset()):
                self._send(candidates, top, now)
            return
        scored = score_symbols(self._book, self._market_caps, now, self._trigger_settings)
        top = frozenset(entry.symbol for entry in scored[: self._pool_slots])
        if top != (self._sent_top or frozenset()):
            self._send(self._ranking(now, scored), top, now)

    def _rebalance_now(self, now: datetime) -> None:
        self._book.expire(now)
        candidates = self._ranking(now)
        self._send(candidates, frozenset(c.symbol for c in candidates[: self._pool_slots]), now)
        self._last_rebalance = now
        if self._book_changed:
            self._save_book(now)

    def _send(self, candidates: tuple[Candidate, ...], top: frozenset[str], now: datetime) -> None:
        self._sent_top = top
        self.directory.tell("slots", CandidatesRanked(at=now, candidates=candidates))

    def _manual_symbols(self) -> list[str]:
        symbols = dict.fromkeys(self._trigger_settings.manual.symbols)
        symbols.update((symbol, None) for symbol, active in self._overrides.items() if active)
        return [symbol for symbol in symbols if self._overrides.get(symbol, True)]

    def _set_profiles(self, profiles: dict[str, Profile], *, same_day: bool = False) -> None:
        """New profiles; `same_day` keeps the tick detector's windows, with the new minute baselines."""
        self._profiles = profiles
        self._baselines = {s: Baseline(p.avg_volume_20d, p.atr_14d) for s, p in profiles.items()}
        self._market_caps = {s: p.market_cap for s, p in profiles.items()}
        minute = {s: minute_baseline(p.avg_volume_20d) for s, p in profiles.items() if p.avg_volume_20d > 0}
        if not same_day:
            self._detector = TickDetector(self._trigger_settings, minute)
            return
        for symbol, baseline in minute.items():
            self._detector.set_minute_baseline(symbol, baseline)

    def _ask_universe(self) -> None:
        """A (re)start after today's announcement: the universe actor answers with it (None while building;
        then its UniverseReady arrives when the build ends)."""
        try:
            answer = self.directory.ask("universe", CurrentUniverse(at=self.context.clock.now()),
                                        timeout=UNIVERSE_ASK_SECONDS)
        except pykka.Timeout:
            self.log.warning("universe did not answer within {} s; waiting for its UniverseReady",
                             UNIVERSE_ASK_SECONDS)
            return
        if isinstance(answer, UniverseReady):
            self._on_universe(answer)

    def _stop_ticker(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()

    # --- persistence ------------------------------------------------------------------------------------

    def _save_universe(self) -> None:
        profiles = {
            symbol: [p.name, p.market_cap, p.prev_close, p.avg_volume_20d, p.avg_turnover_20d, p.atr_14d,
                     p.ma_20d]
            for symbol, p in self._profiles.items()
        }
        day = self._day.isoformat() if self._day else None
        self._save(UNIVERSE_STATE, {"day": day, "profiles": profiles})

    def _load_universe(self, today: date) -> None:
        document = self._store.load(UNIVERSE_STATE)
        if document is None:
            return
        if document.get("day") != today.isoformat():
            self.log.info("saved profiles are from {}; waiting for today's universe", document.get("day"))
            return
        saved = document.get("profiles")
        profiles: dict[str, Profile] = {}
        if isinstance(saved, dict):
            for symbol, values in saved.items():
                try:
                    profiles[str(symbol)] = Profile(str(values[0]), _number_or_none(values[1]),
                                                    *(float(v) for v in values[2:7]))
                except (TypeError, ValueError, IndexError):
                    self.log.warning("state {}: bad profile for {!r}; skipped", UNIVERSE_STATE, symbol)
        self._day = today
        self._set_profiles(profiles)

    def _save_book(self, now: datetime) -> None:
        live = [trigger.model_dump(mode="json") for trigger in self._book.live(now)]
        pending = self._pending_picks.model_dump(mode="json") if self._pending_picks else None
        opening = self._opening.model_dump() if self._opening is not None else None
        day = self._opening_day.isoformat() if self._opening_day else None
        document = {"overrides": dict(self._overrides), "live": live, "picks": list(self._picks),
                    "pending_picks": pending, "opening": {"day": day, "baseline": opening},
                    "picks_source_day": self._source_day.isoformat() if self._source_day else None}
        if self._saver is None:
            self._save(BOOK_STATE, document)
        else:
            self._saver.save(BOOK_STATE, document)
        self._book_changed = False

    def _close_saver(self) -> None:
        """The saves still queued reach the disk before this incarnation ends (the next one loads them)."""
        saver, self._saver = self._saver, None
        if saver is not None and not saver.close(SAVER_CLOSE_SECONDS):
            self.log.error("state {} still being saved after {} s", BOOK_STATE, SAVER_CLOSE_SECONDS)

    def _load_book(self, now: datetime) -> None:
        document = self._store.load(BOOK_STATE)
        if document is None:
            return
        overrides = document.get("overrides")
        if isinstance(overrides, dict):
            self._overrides = {str(k): v for k, v in overrides.items() if isinstance(v, bool)}
        picks = document.get("picks")
        if isinstance(picks, list):
            self._picks = tuple(str(symbol) for symbol in picks)
        pending = document.get("pending_picks")
        if pending is not None:
            try:
                self._pending_picks = PicksLoaded.model_validate(pending)
            except ValidationError:
                self.log.warning("state {}: the scheduled picks are invalid; dropped", BOOK_STATE)
        self._load_opening(document.get("opening"), now)
        if document.get("picks_source_day") == now.date().isoformat():
            self._source_day = now.date()
        live = document.get("live")
        for data in live if isinstance(live, list) else ():
            try:
                trigger = Trigger.model_validate(data)
            except ValidationError as error:
                self.log.warning("state {}: a saved trigger is invalid ({}); skipped", BOOK_STATE,
                                 error.errors()[0]["msg"])
                continue
            if trigger.alive_at(now):
                self._book.renew_or_add(trigger)

    def _load_opening(self, saved: Any, now: datetime) -> None:
        """Today's opening baseline, if the context sync gave one before this start."""
        if not isinstance(saved, dict) or saved.get("day") != now.date().isoformat():
            return
        try:
            baseline = saved.get("baseline")
            self._opening = None if baseline is None else BaselineMetrics.model_validate(baseline)
        except ValidationError:
            self.log.warning("state {}: the opening baseline is invalid; dropped", BOOK_STATE)
            return
        self._opening_day = now.date()

    def _save(self, name: str, document: dict[str, Any]) -> None:
        try:
            self._store.save(name, document)
        except (OSError, TypeError) as error:
            self.log.error("could not save state {}: {}", name, error)


def _number_or_none(value: Any) -> float | None:
    return None if value is None else float(value)
