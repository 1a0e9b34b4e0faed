"""Trigger detection and the book of live triggers.

Two profiles feed the same `Trigger` type:

* Track A (symbol_selection_architecture.md): each REST scan row is checked for a volume surge and a
  volatility spike against per-symbol daily baselines (`evaluate_scan`).
* The tick path: trade velocity (main design) and the real-time detectors of
  track_b_independent_scanner.md (one-minute volume, one-minute price move) run per tick inside
  `TickDetector`, O(1) amortised per tick on deques, building a pydantic `Trigger` only when a condition
  holds and at most once per `renew_interval` per symbol and kind.

Every trigger carries its TTL as `expires_at`; `TriggerBook` renews a trigger while its condition keeps
firing and drops it once the TTL passes without renewal (manual overrides never expire).

The 09:30 context sync's baseline (`core.context_sync.BaselineMetrics`, the seed's
`trigger_engine.set_baseline_metrics`) reaches `evaluate_scan` as `opening`: from then on a volatility spike
also needs the symbol's intraday range (high - low) / open to reach the baseline's `volatility_threshold`
(1.5 x the market's opening volatility), so a day that opens volatile everywhere does not make every
symbol a spike (the seed's "trigger misfire" without a baseline). The baseline's volume figure sums
cumulative snapshot volumes across the window, so it is not comparable with one row's volume and gates
nothing; the volume surge keeps its 20-day baseline.

Strength (0..1), as in the seed: volume surge ratio / severe (5x), trade velocity rate / (2 x threshold)
(the seed's 20/s "high" for a 10/s threshold), volatility ratio / (1.5 x threshold) (the seed's 3.0 for
2.0); the real-time detectors saturate at twice their threshold.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import NamedTuple

from core.calendar import KST
from core.context_sync import BaselineMetrics
from core.models import Trigger, TriggerKind
from core.settings import (
    ManualRule,
    RealtimeDetectorRule,
    TradeVelocityRule,
    TriggerRule,
    TriggerSettings,
    VolatilitySpikeRule,
    VolumeSurgeRule,
)

SESSION_OPEN = time(9, 0)
SESSION_MINUTES = 390.0  # KRX regular session 09:00-15:30
DEFAULT_MIN_SESSION_FRACTION = 0.1
DEFAULT_RENEW_INTERVAL_SECONDS = 1.0


class ScanRow(NamedTuple):
    """One symbol in one Track A scan (REST batch quote). Prices in KRW, `cum_volume` since the open."""

    symbol: str
    price: float
    open: float
    high: float
    low: float
    cum_volume: float
    prev_close: float
    market_cap: float | None
    at: datetime


@dataclass(frozen=True, slots=True)
class Baseline:
    """Per-symbol history the detectors compare against; a value <= 0 means unknown (no detection)."""

    avg_volume_20d: float
    atr_14d: float


class SurgeLevel(StrEnum):
    MILD = "mild"
    MODERATE = "moderate"
    SEVERE = "severe"


def reaches(value: float, threshold: float) -> bool:
    """value >= threshold, forgiving float noise (1e-9 relative): a ratio computed as 9200/10000 - 1
    must count as exactly at a threshold of -0.08, not a hair above it."""
    return value >= threshold - 1e-9 * max(1.0, abs(threshold))


def _expiry(at: datetime, rule: TriggerRule | RealtimeDetectorRule) -> datetime | None:
    return None if rule.ttl_seconds is None else at + timedelta(seconds=rule.ttl_seconds)


def _unit(x: float) -> float:
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


def session_fraction(at: datetime, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION) -> float:
    """Elapsed share of the KRX regular session at `at` (KST), clamped to [min_fraction, 1]."""
    local = at.astimezone(KST)
    opened = datetime.combine(local.date(), SESSION_OPEN, tzinfo=KST)
    fraction = (local - opened).total_seconds() / 60.0 / SESSION_MINUTES
    return min(1.0, max(min_fraction, fraction))


def minute_baseline(avg_volume_20d: float) -> float:
    """Average one-minute volume of a normal day: the 20-day daily average over the 390-minute session."""
    return avg_volume_20d / SESSION_MINUTES


def surge_level(ratio: float, rule: VolumeSurgeRule) -> SurgeLevel | None:
    """The seed's severity bands: mild >= 2x, moderate >= threshold (3x), severe >= 5x."""
    if reaches(ratio, rule.severe):
        return SurgeLevel.SEVERE
    if reaches(ratio, rule.threshold):
        return SurgeLevel.MODERATE
    if reaches(ratio, rule.mild):
        return SurgeLevel.MILD
    return None


def volume_ratio(row: ScanRow, avg_volume_20d: float, min_fraction: float) -> float | None:
    """Cumulative volume against the 20-day daily average scaled to the elapsed part of the session.

    The seed compares `snapshot.volume / avg_volume_20d`, i.e. a daily figure; during the session the
    scan sees cumulative volume, which would only reach a daily multiple near the close. Comparing it
    to `avg_volume_20d x elapsed fraction` keeps the seed's meaning (today's pace vs a normal day) at
    any time. The fraction has a floor (`min_fraction`, default 0.1 = 39 minutes) because the opening
    auction front-loads volume and a tiny denominator would flag every symbol at 09:00.
    """
    if avg_volume_20d <= 0:
        return None
    return row.cum_volume / (avg_volume_20d * session_fraction(row.at, min_fraction))


def detect_volume_surge(
    row: ScanRow,
    baseline: Baseline,
    rule: VolumeSurgeRule,
    min_fraction: float = DEFAULT_MIN_SESSION_FRACTION,
) -> Trigger | None:
    """Volume surge: session-scaled volume ratio >= `rule.threshold` (3x by default)."""
    if not rule.enabled:
        return None
    ratio = volume_ratio(row, baseline.avg_volume_20d, min_fraction)
    if ratio is None or not reaches(ratio, rule.threshold):
        return None
    return Trigger(
        symbol=row.symbol,
        kind=TriggerKind.VOLUME_SURGE,
        strength=_unit(ratio / rule.severe),
        value=ratio,
        threshold=rule.threshold,
        detected_at=row.at,
        expires_at=_expiry(row.at, rule),
    )


def true_range(row: ScanRow) -> float:
    """Today's range so far, widened to the previous close when the stock gapped (Wilder's true range).
    No trade yet today (a scan before the venue's open: high and low 0) has no range."""
    if row.high <= 0 or row.low <= 0:
        return 0.0
    high = max(row.high, row.prev_close) if row.prev_close > 0 else row.high
    low = min(row.low, row.prev_close) if row.prev_close > 0 else row.low
    return max(0.0, high - low)


def intraday_volatility(row: ScanRow) -> float:
    """(high - low) / open: the measure of the context sync's volatility baseline (0 before a trade)."""
    if row.open <= 0 or row.high <= 0 or row.low <= 0:
        return 0.0
    return (row.high - row.low) / row.open


def detect_volatility_spike(
    row: ScanRow, baseline: Baseline, rule: VolatilitySpikeRule, opening: BaselineMetrics | None = None
) -> Trigger | None:
    """Volatility spike: today's true range >= `rule.threshold` x the 14-day ATR, and, once the context
    sync gave an `opening` baseline, an intraday range at least its `volatility_threshold`."""
    if not rule.enabled or baseline.atr_14d <= 0:
        return None
    if opening is not None and opening.volatility_threshold > 0 and not reaches(
        intraday_volatility(row), opening.volatility_threshold
    ):
        return None
    ratio = true_range(row) / baseline.atr_14d
    if not reaches(ratio, rule.threshold):
        return None
    return Trigger(
        symbol=row.symbol,
        kind=TriggerKind.VOLATILITY_SPIKE,
        strength=_unit(ratio / (1.5 * rule.threshold)),
        value=ratio,
        threshold=rule.threshold,
        detected_at=row.at,
        expires_at=_expiry(row.at, rule),
    )


def detect_trade_velocity(
    symbol: str, trades_per_second: float, at: datetime, rule: TradeVelocityRule
) -> Trigger | None:
    """Trade velocity: trades per second over the sliding window >= `rule.threshold` (10/s)."""
    if not rule.enabled or not reaches(trades_per_second, rule.threshold):
        return None
    return Trigger(
        symbol=symbol,
        kind=TriggerKind.TRADE_VELOCITY,
        strength=_unit(trades_per_second / (2.0 * rule.threshold)),
        value=trades_per_second,
        threshold=rule.threshold,
        detected_at=at,
        expires_at=_expiry(at, rule),
    )


def detect_realtime_volume(
    symbol: str, window_volume: float, minute_baseline: float, at: datetime, rule: RealtimeDetectorRule
) -> Trigger | None:
    """Track B profile: volume traded in the last window >= `volume_ratio` x the average for that span.

    `minute_baseline` is the average one-minute volume (the 20-day daily average / 390 minutes).
    """
    if not rule.enabled or minute_baseline <= 0:
        return None
    expected = minute_baseline * rule.window_seconds / 60.0
    ratio = window_volume / expected
    if not reaches(ratio, rule.volume_ratio):
        return None
    return Trigger(
        symbol=symbol,
        kind=TriggerKind.REALTIME_VOLUME,
        strength=_unit(ratio / (2.0 * rule.volume_ratio)),
        value=ratio,
        threshold=rule.volume_ratio,
        detected_at=at,
        expires_at=_expiry(at, rule),
    )


def detect_realtime_price_move(
    symbol: str, move_pct: float, at: datetime, rule: RealtimeDetectorRule
) -> Trigger | None:
    """Track B profile: the price moved >= `price_move_pct` % (either way) within the window."""
    if not rule.enabled or not reaches(abs(move_pct), rule.price_move_pct):
        return None
    return Trigger(
        symbol=symbol,
        kind=TriggerKind.REALTIME_PRICE_MOVE,
        strength=_unit(abs(move_pct) / (2.0 * rule.price_move_pct)),
        value=move_pct,
        threshold=rule.price_move_pct,
        detected_at=at,
        expires_at=_expiry(at, rule),
    )


def manual_trigger(symbol: str, at: datetime, rule: ManualRule, strength: float = 1.0) -> Trigger:
    """A manual override: alive until released (TTL None by default)."""
    return Trigger(
        symbol=symbol,
        kind=TriggerKind.MANUAL,
        strength=strength,
        value=1.0,
        threshold=0.0,
        detected_at=at,
        expires_at=_expiry(at, rule),
    )


def evaluate_scan(
    rows: Iterable[ScanRow],
    baselines: Mapping[str, Baseline],
    settings: TriggerSettings,
    min_fraction: float = DEFAULT_MIN_SESSION_FRACTION,
    opening: BaselineMetrics | None = None,
) -> tuple[Trigger, ...]:
    """All Track A triggers of one scan; symbols without a baseline are skipped. `opening`: the context
    sync's baseline, once there is one."""
    found: list[Trigger] = []
    for row in rows:
        baseline = baselines.get(row.symbol)
        if baseline is None:
            continue
        surge = detect_volume_surge(row, baseline, settings.volume_surge, min_fraction)
        if surge is not None:
            found.append(surge)
        spike = detect_volatility_spike(row, baseline, settings.volatility_spike, opening)
        if spike is not None:
            found.append(spike)
    return tuple(found)


class RateWindow:
    """Events in the last `window` seconds; O(1) amortised per event. Times must not go backwards
    (an older time is treated as the latest seen, so a late tick still counts once)."""

    __slots__ = ("_times", "_window")

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._times: deque[float] = deque()

    def add(self, t: float) -> float:
        """Record an event at `t` (seconds) and return events per second over the window ending at `t`."""
        times = self._times
        if times and t < times[-1]:
            t = times[-1]
        times.append(t)
        horizon = t - self._window
        while times[0] <= horizon:
            times.popleft()
        return len(times) / self._window


class SumWindow:
    """Sum of amounts over the last `window` seconds; O(1) amortised per add."""

    __slots__ = ("_items", "_sum", "_window")

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._items: deque[tuple[float, float]] = deque()
        self._sum = 0.0

    def add(self, t: float, amount: float) -> float:
        items = self._items
        if items and t < items[-1][0]:
            t = items[-1][0]
        items.append((t, amount))
        self._sum += amount
        horizon = t - self._window
        while items[0][0] <= horizon:
            self._sum -= items.popleft()[1]
        if len(items) == 1:
            self._sum = amount  # resync: no float drift accumulates across quiet gaps
        return self._sum


class MoveWindow:
    """Largest move (%) of the latest price from the window's low or high; O(1) amortised per price.

    Keeps monotonic deques of the window's minimum and maximum. The move is positive when the price
    rose from the low by more than it fell from the high, negative otherwise.
    """

    __slots__ = ("_highs", "_lows", "_window")

    def __init__(self, window_seconds: float) -> None:
        self._window = window_seconds
        self._lows: deque[tuple[float, float]] = deque()
        self._highs: deque[tuple[float, float]] = deque()

    def add(self, t: float, price: float) -> float:
        lows, highs = self._lows, self._highs
        if lows and t < lows[-1][0]:
            t = lows[-1][0]
        while lows and lows[-1][1] >= price:
            lows.pop()
        lows.append((t, price))
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((t, price))
        horizon = t - self._window
        while lows[0][0] <= horizon:
            lows.popleft()
        while highs[0][0] <= horizon:
            highs.popleft()
        low, high = lows[0][1], highs[0][1]
        up = (price / low - 1.0) * 100.0 if low > 0 else 0.0
        down = (price / high - 1.0) * 100.0 if high > 0 else 0.0
        return up if up >= -down else down


class _SymbolMeters:
    __slots__ = ("last_fired", "moves", "trades", "volumes")

    def __init__(self, velocity_window: float, realtime_window: float) -> None:
        self.trades = RateWindow(velocity_window)
        self.volumes = SumWindow(realtime_window)
        self.moves = MoveWindow(realtime_window)
        self.last_fired: dict[TriggerKind, float] = {}


class TickDetector:
    """The tick-path detectors for every subscribed symbol (trade velocity + the real-time profile).

    `on_tick` costs a few deque operations per tick; a `Trigger` is built only when a condition holds,
    and at most once per `renew_interval` seconds per symbol and kind (enough to renew TTLs of minutes).
    """

    def __init__(
        self,
        settings: TriggerSettings,
        minute_baselines: Mapping[str, float] | None = None,
        renew_interval: float = DEFAULT_RENEW_INTERVAL_SECONDS,
    ) -> None:
        self._velocity = settings.trade_velocity
        self._realtime = settings.realtime
        self._renew = renew_interval
        self._baselines: dict[str, float] = dict(minute_baselines or {})
        self._meters: dict[str, _SymbolMeters] = {}
        self._last_at: datetime | None = None
        self._last_t = 0.0

    def set_minute_baseline(self, symbol: str, avg_volume_per_minute: float) -> None:
        self._baselines[symbol] = avg_volume_per_minute

    def forget(self, symbol: str) -> None:
        """Drop a symbol's windows (after unsubscribing), so memory follows the subscriptions."""
        self._meters.pop(symbol, None)

    def _due(self, meters: _SymbolMeters, kind: TriggerKind, t: float) -> bool:
        last = meters.last_fired.get(kind)
        if last is not None and t - last < self._renew:
            return False
        meters.last_fired[kind] = t
        return True

    def on_tick(self, symbol: str, at: datetime, price: float, volume: float) -> tuple[Trigger, ...]:
        """Feed one trade (price, traded volume) at `at`; return the triggers it fires or renews."""
        meters = self._meters.get(symbol)
        if meters is None:
            meters = _SymbolMeters(self._velocity.window_seconds, self._realtime.window_seconds)
            self._meters[symbol] = meters
        if at is not self._last_at:  # the codec hands a second's ticks one datetime; timestamp() costs ~1 us
            self._last_at, self._last_t = at, at.timestamp()
        t = self._last_t
        fired: list[Trigger] = []
        velocity = self._velocity
        if velocity.enabled:
            rate = meters.trades.add(t)
            if reaches(rate, velocity.threshold) and self._due(meters, TriggerKind.TRADE_VELOCITY, t):
                trigger = detect_trade_velocity(symbol, rate, at, velocity)
                if trigger is not None:
                    fired.append(trigger)
        realtime = self._realtime
        if realtime.enabled:
            window_volume = meters.volumes.add(t, volume)
            baseline = self._baselines.get(symbol, 0.0)
            if (
                baseline > 0
                and reaches(window_volume, realtime.volume_ratio * baseline * realtime.window_seconds / 60.0)
                and self._due(meters, TriggerKind.REALTIME_VOLUME, t)
            ):
                trigger = detect_realtime_volume(symbol, window_volume, baseline, at, realtime)
                if trigger is not None:
                    fired.append(trigger)
            move = meters.moves.add(t, price)
            if reaches(abs(move), realtime.price_move_pct) and self._due(
                meters, TriggerKind.REALTIME_PRICE_MOVE, t
            ):
                trigger = detect_realtime_price_move(symbol, move, at, realtime)
                if trigger is not None:
                    fired.append(trigger)
        return tuple(fired)


class Renewal(StrEnum):
    ADDED = "added"
    RENEWED = "renewed"


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return None
    return max(a, b)


class TriggerBook:
    """Live triggers, one per (symbol, kind). Not thread-safe: owned by one actor."""

    def __init__(self) -> None:
        self._live: dict[tuple[str, TriggerKind], Trigger] = {}

    def __len__(self) -> int:
        return len(self._live)

    def __iter__(self) -> Iterator[Trigger]:
        """Every held trigger, expired ones too, in no set order (the ranking filters and orders them)."""
        return iter(self._live.values())

    def renew_or_add(self, trigger: Trigger) -> Renewal:
        """Add `trigger`, or renew the live one of the same symbol and kind.

        Renewal keeps the first `detected_at` (how long the condition has held), takes the new strength,
        value and threshold, and extends the expiry to the later of the two. A held one that had already
        expired at the new detection is replaced (ADDED).
        """
        key = (trigger.symbol, trigger.kind)
        held = self._live.get(key)
        if held is None or not held.alive_at(trigger.detected_at):
            self._live[key] = trigger
            return Renewal.ADDED
        self._live[key] = trigger.model_copy(
            update={
                "detected_at": held.detected_at,
                "expires_at": _later(held.expires_at, trigger.expires_at),
            }
        )
        return Renewal.RENEWED

    def remove(self, symbol: str, kind: TriggerKind) -> Trigger | None:
        """Release one trigger (e.g. a manual override lifted by hand)."""
        return self._live.pop((symbol, kind), None)

    def expire(self, now: datetime) -> tuple[Trigger, ...]:
        """Remove and return every trigger whose TTL has run out at `now` (at `expires_at` exactly, too)."""
        gone = [t for t in self._live.values() if not t.alive_at(now)]
        for trigger in gone:
            del self._live[(trigger.symbol, trigger.kind)]
        return tuple(sorted(gone, key=lambda t: (t.symbol, t.kind)))

    def live(self, now: datetime) -> tuple[Trigger, ...]:
        """Triggers alive at `now`, ordered by symbol then kind."""
        return tuple(
            sorted((t for t in self._live.values() if t.alive_at(now)), key=lambda t: (t.symbol, t.kind))
        )

    def symbols(self, now: datetime) -> frozenset[str]:
        """Symbols with at least one live trigger: a symbol missing here has lost its candidacy."""
        return frozenset(t.symbol for t in self._live.values() if t.alive_at(now))
