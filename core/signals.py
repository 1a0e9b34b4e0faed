"""The hybrid design's alert signals (websocket_monitor_hybrid.md section 4.1), evaluated purely.

* disparity: price / n-day moving average - 1 falls to or below `disparity_threshold` (-0.08);
* return drop: the n-minute return (%) falls to or below `return_threshold_pct` (-3 %);
* turnover surge with a fall: today's turnover runs at >= `turnover_surge_ratio` x a normal day's pace
  (the 20-day average scaled to the elapsed session, as for volume surges) while the price is below the
  previous close;
* breakout (Mode B, section 7, when `breakout_enabled`): a trade at least `breakout_pct` % above the
  highest trade of the `breakout_minutes` before it (`HighWindow`).

"Below the threshold" includes the threshold itself (the seed's "이하"), up to float noise. Hits are
slots dataclasses, not pydantic models, because the tick path evaluates signals on every trade; an
`Alert` is built only after the cooldown lets one through.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from core.settings import SignalSettings
from core.triggers import DEFAULT_MIN_SESSION_FRACTION, reaches, session_fraction


class SignalKind(StrEnum):
    DISPARITY = "disparity"
    RETURN_DROP = "return_drop"
    TURNOVER_SURGE_FALL = "turnover_surge_fall"
    BREAKOUT = "breakout"


@dataclass(frozen=True, slots=True)
class SignalHit:
    symbol: str
    signal: SignalKind
    threshold: float
    value: float
    at: datetime


@dataclass(frozen=True, slots=True)
class SignalInputs:
    """What is known about one symbol at `at`; None (or a baseline <= 0) skips the signals needing it."""

    symbol: str
    price: float
    at: datetime
    prev_close: float = 0.0
    moving_average: float | None = None
    return_pct: float | None = None
    turnover: float | None = None
    avg_turnover_20d: float = 0.0
    high: float = 0.0
    low: float = 0.0
    prior_high: float | None = None
    """The highest trade of the `breakout_minutes` before this one (None: history too short)."""


def disparity(price: float, moving_average: float) -> float:
    return price / moving_average - 1.0


def check_disparity(inputs: SignalInputs, settings: SignalSettings) -> SignalHit | None:
    ma = inputs.moving_average
    if ma is None or ma <= 0:
        return None
    value = disparity(inputs.price, ma)
    if not reaches(-value, -settings.disparity_threshold):
        return None
    return SignalHit(inputs.symbol, SignalKind.DISPARITY, settings.disparity_threshold, value, inputs.at)


def check_return_drop(inputs: SignalInputs, settings: SignalSettings) -> SignalHit | None:
    value = inputs.return_pct
    if value is None or not reaches(-value, -settings.return_threshold_pct):
        return None
    return SignalHit(inputs.symbol, SignalKind.RETURN_DROP, settings.return_threshold_pct, value, inputs.at)


def turnover_ratio(inputs: SignalInputs, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION) -> float | None:
    if inputs.turnover is None or inputs.avg_turnover_20d <= 0:
        return None
    return inputs.turnover / (inputs.avg_turnover_20d * session_fraction(inputs.at, min_fraction))


def check_turnover_fall(
    inputs: SignalInputs, settings: SignalSettings, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION
) -> SignalHit | None:
    if inputs.prev_close <= 0 or inputs.price >= inputs.prev_close:
        return None
    ratio = turnover_ratio(inputs, min_fraction)
    if ratio is None or not reaches(ratio, settings.turnover_surge_ratio):
        return None
    return SignalHit(
        inputs.symbol, SignalKind.TURNOVER_SURGE_FALL, settings.turnover_surge_ratio, ratio, inputs.at
    )


def breakout_pct(inputs: SignalInputs) -> float | None:
    """How far (%) the price is above the prior window's high; None when that high is unknown."""
    high = inputs.prior_high
    if high is None or high <= 0:
        return None
    return (inputs.price / high - 1.0) * 100.0


def check_breakout(inputs: SignalInputs, settings: SignalSettings) -> SignalHit | None:
    if not settings.breakout_enabled:
        return None
    value = breakout_pct(inputs)
    if value is None or value <= 0 or not reaches(value, settings.breakout_pct):
        return None
    return SignalHit(inputs.symbol, SignalKind.BREAKOUT, settings.breakout_pct, value, inputs.at)


def evaluate_signals(
    inputs: SignalInputs, settings: SignalSettings, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION
) -> tuple[SignalHit, ...]:
    """Every signal that holds for `inputs` (none when signals are disabled)."""
    if not settings.enabled:
        return ()
    hits = (
        check_disparity(inputs, settings),
        check_return_drop(inputs, settings),
        check_turnover_fall(inputs, settings, min_fraction),
        check_breakout(inputs, settings),
    )
    return tuple(h for h in hits if h is not None)


class ReturnWindow:
    """The n-minute return of one symbol's trades, O(1) amortised per trade.

    The reference is the last price at or before `t - span`; until the history covers the span the
    return is unknown (None). Times that go backwards are treated as the latest seen.
    """

    __slots__ = ("_points", "_span")

    def __init__(self, minutes: float) -> None:
        self._span = minutes * 60.0
        self._points: deque[tuple[float, float]] = deque()

    def add(self, t: float, price: float) -> float | None:
        """Record a trade at `t` seconds and return the percentage return over the span, if known."""
        points = self._points
        if points and t < points[-1][0]:
            t = points[-1][0]
        points.append((t, price))
        horizon = t - self._span
        while len(points) > 1 and points[1][0] <= horizon:
            points.popleft()
        first_t, first_price = points[0]
        if first_t > horizon or first_price <= 0:
            return None
        return (price / first_price - 1.0) * 100.0


class HighWindow:
    """The highest price of one symbol's trades over the `minutes` before each new trade, O(1) amortised.

    A monotonic deque keeps the candidates for the maximum. Until the history covers the span the prior
    high is unknown (None): a breakout needs a full window to break out of.
    """

    __slots__ = ("_first", "_highs", "_span")

    def __init__(self, minutes: float) -> None:
        self._span = minutes * 60.0
        self._highs: deque[tuple[float, float]] = deque()
        self._first: float | None = None

    def add(self, t: float, price: float) -> float | None:
        """The highest price in [t - span, t) before this trade, then record the trade at `t` seconds."""
        highs = self._highs
        if highs and t < highs[-1][0]:
            t = highs[-1][0]
        if self._first is None:
            self._first = t
        horizon = t - self._span
        while highs and highs[0][0] < horizon:
            highs.popleft()
        prior = highs[0][1] if highs and self._first <= horizon else None
        while highs and highs[-1][1] <= price:
            highs.pop()
        highs.append((t, price))
        return prior
