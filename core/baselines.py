"""Per-symbol baselines from daily bars: 20-day average volume and turnover, 14-day ATR, 20-day MA.

Pure: the bars come in as an argument, oldest first or not (they are sorted here). Only bars strictly
before `before` count, so the day's own partial bar never skews the baseline it is compared with. The ATR
is the simple mean of the last `atr_days` true ranges (max of high - low, |high - previous close|,
|low - previous close|; the oldest bar of the series has no previous close and uses high - low). A symbol
with fewer bars than a window (a recent listing) averages what it has; none gives zeros, which the
detectors read as "unknown" and skip.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from core.bars import DailyBar

AVERAGE_DAYS = 20
ATR_DAYS = 14
LOOKBACK_CALENDAR_DAYS = 45
"""Calendar days fetched to cover 20 trading days plus the ATR's previous close, holidays included."""


@dataclass(frozen=True, slots=True)
class DailyBaseline:
    """One symbol's baselines; `days` is how many daily bars they were computed from."""

    avg_volume_20d: float
    avg_turnover_20d: float
    atr_14d: float
    ma_20d: float
    days: int

    def to_record(self, symbol: str) -> dict[str, Any]:
        return {
            "symbol": symbol,
            "avg_volume_20d": self.avg_volume_20d,
            "avg_turnover_20d": self.avg_turnover_20d,
            "atr_14d": self.atr_14d,
            "ma_20d": self.ma_20d,
            "days": self.days,
        }


EMPTY = DailyBaseline(0.0, 0.0, 0.0, 0.0, 0)


def lookback_start(day: date) -> date:
    """The first calendar day to fetch for the baselines of `day`."""
    return day - timedelta(days=LOOKBACK_CALENDAR_DAYS)


def daily_baseline(
    bars: Iterable[DailyBar],
    before: date,
    *,
    average_days: int = AVERAGE_DAYS,
    atr_days: int = ATR_DAYS,
) -> DailyBaseline:
    """Baselines from the bars dated before `before`."""
    if average_days < 1 or atr_days < 1:
        raise ValueError("baseline windows must be at least one day")
    history = sorted((bar for bar in bars if bar.day < before), key=lambda bar: bar.day)
    if not history:
        return EMPTY
    recent = history[-average_days:]
    ranges: list[float] = []
    for index in range(max(0, len(history) - atr_days), len(history)):
        bar = history[index]
        spread = float(bar.high - bar.low)
        if index > 0:
            previous = history[index - 1].close
            spread = max(spread, abs(bar.high - previous), abs(bar.low - previous))
        ranges.append(spread)
    return DailyBaseline(
        avg_volume_20d=sum(bar.volume for bar in recent) / len(recent),
        avg_turnover_20d=sum(bar.value for bar in recent) / len(recent),
        atr_14d=sum(ranges) / len(ranges),
        ma_20d=sum(bar.close for bar in recent) / len(recent),
        days=len(history),
    )


def baseline_from_record(record: Mapping[str, Any]) -> tuple[str, DailyBaseline]:
    """Read one cached line (`DailyBaseline.to_record`); ValueError with a one-line reason otherwise."""
    try:
        symbol = record["symbol"]
        values = [float(record[key]) for key in ("avg_volume_20d", "avg_turnover_20d", "atr_14d", "ma_20d")]
        days = int(record["days"])
    except KeyError as error:
        raise ValueError(f"baseline record without {error.args[0]!r}") from None
    except (TypeError, ValueError):
        raise ValueError("baseline record with a non-numeric value") from None
    if not isinstance(symbol, str) or not symbol:
        raise ValueError("baseline record without a symbol")
    if any(value < 0 or value != value for value in values) or days < 0:
        raise ValueError(f"baseline record for {symbol} with a negative or NaN value")
    return symbol, DailyBaseline(*values, days=days)
