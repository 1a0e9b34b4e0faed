"""The dolpha1 strategy's features and signals from one symbol's one-minute candles of one session.

Features per candle: the session VWAP (cumulative typical price (H+L+C)/3 weighted by volume), Wilder's
ATR over `atr_period` candles (true range max(H-L, |H-prevC|, |L-prevC|), the first candle's range H-L; the
first ATR is the mean of the first `atr_period` ranges, then ATR = (ATR_prev*(n-1) + TR)/n), and bands at
VWAP +- k*ATR for the monitor and the trade multiples.

Signals, read as a reversion to VWAP: a close beyond the monitor band puts the symbol under watch
(`monitor`), a close beyond the trade band is a `trade` signal, `short` above VWAP and `long` below. A
candle before the ATR exists, or with no volume yet, gives no signal. `changed` marks a candle whose signal
differs from the one before: what an alert is raised on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Level(StrEnum):
    NONE = "none"
    MONITOR = "monitor"
    TRADE = "trade"


class Side(StrEnum):
    NONE = ""
    LONG = "long"
    SHORT = "short"


@dataclass(frozen=True, slots=True)
class Params:
    atr_period: int = 14
    monitor_k: float = 1.0
    trade_k: float = 2.0

    def __post_init__(self) -> None:
        if self.atr_period < 1:
            raise ValueError(f"atr_period must be >= 1, got {self.atr_period}")
        if not 0 < self.monitor_k <= self.trade_k:
            raise ValueError(f"need 0 < monitor_k <= trade_k, got {self.monitor_k} and {self.trade_k}")


@dataclass(frozen=True, slots=True)
class Bar:
    """What the features need of a candle."""

    minute: datetime
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True, slots=True)
class Signal:
    """One candle's features and signal (None where a feature does not exist yet)."""

    symbol: str
    minute: datetime
    close: float
    vwap: float | None
    atr: float | None
    monitor_upper: float | None
    monitor_lower: float | None
    trade_upper: float | None
    trade_lower: float | None
    level: Level
    side: Side
    changed: bool


def session_vwap(bars: Sequence[Bar]) -> list[float | None]:
    """Cumulative VWAP at each candle; None until the session has traded any volume."""
    values: list[float | None] = []
    weighted, volume = 0.0, 0
    for bar in bars:
        weighted += (bar.high + bar.low + bar.close) / 3 * bar.volume
        volume += bar.volume
        values.append(weighted / volume if volume else None)
    return values


def true_ranges(bars: Sequence[Bar]) -> list[float]:
    ranges = []
    for index, bar in enumerate(bars):
        if index == 0:
            ranges.append(bar.high - bar.low)
        else:
            previous = bars[index - 1].close
            ranges.append(max(bar.high - bar.low, abs(bar.high - previous), abs(bar.low - previous)))
    return ranges


def wilder_atr(bars: Sequence[Bar], period: int) -> list[float | None]:
    """Wilder's ATR at each candle; None for the first `period - 1` candles."""
    values: list[float | None] = []
    atr: float | None = None
    for index, true_range in enumerate(true_ranges(bars)):
        if index + 1 < period:
            values.append(None)
            continue
        if atr is None:
            atr = sum(true_ranges(bars[:period])) / period
        else:
            atr = (atr * (period - 1) + true_range) / period
        values.append(atr)
    return values


def signals(symbol: str, bars: Sequence[Bar], params: Params = Params()) -> list[Signal]:
    """Features and signal of every candle, in the order given (one session, oldest first)."""
    vwaps = session_vwap(bars)
    atrs = wilder_atr(bars, params.atr_period)
    result: list[Signal] = []
    previous = (Level.NONE, Side.NONE)
    for bar, vwap, atr in zip(bars, vwaps, atrs, strict=True):
        level, side = Level.NONE, Side.NONE
        bands: tuple[float | None, ...] = (None, None, None, None)
        if vwap is not None and atr is not None:
            bands = (vwap + params.monitor_k * atr, vwap - params.monitor_k * atr,
                     vwap + params.trade_k * atr, vwap - params.trade_k * atr)
            distance = abs(bar.close - vwap)
            if atr > 0 and distance > params.trade_k * atr:
                level = Level.TRADE
            elif atr > 0 and distance > params.monitor_k * atr:
                level = Level.MONITOR
            if level is not Level.NONE:
                side = Side.SHORT if bar.close > vwap else Side.LONG
        current = (level, side)
        changed = current != previous
        result.append(Signal(symbol, bar.minute, bar.close, vwap, atr, *bands, level, side, changed))
        previous = current
    return result
