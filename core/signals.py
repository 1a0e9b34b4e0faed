"""The hybrid design's alert signals (websocket_monitor_hybrid.md section 4.1), evaluated purely.

* disparity: price / n-day moving average - 1 falls to or below `disparity_threshold` (-0.08);
* return drop: the n-minute return (%) falls to or below `return_threshold_pct` (-3 %);
* turnover surge with a fall: today's turnover runs at >= `turnover_surge_ratio` x a normal day's pace
  (the 20-day average scaled to the elapsed session, as for volume surges) while the price is below the
  previous close.

"Below the threshold" includes the threshold itself (the seed's "이하"), up to float noise. Hits are
slots dataclasses, not pydantic models, because the tick path evaluates signals on every trade; an
`Alert` is built only after the cooldown lets one through.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from config.settings import SignalSettings
from core.triggers import DEFAULT_MIN_SESSION_FRACTION, reaches, session_fraction


class SignalKind(StrEnum):
    DISPARITY = "disparity"
    RETURN_DROP = "return_drop"
    TURNOVER_SURGE_FALL = "turnover_surge_fall"


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
