"""One closed minute (or a span of minutes) of stock candles, and the dolpha1 signals of a symbol's day.

`stock_minute` is the job `actors.minute_jobs` runs after each minute closes: it takes the candles
built from a symbol's ticks, asks KIS for its minute bars (FHKST03010200) over the same minutes, keeps KIS's
bar where there is one (`core.candles.reconcile` says why) and reports where the ticks disagreed. A symbol
that is not streamed has no tick-built candles; its rows are KIS's bars alone. `signal_rows` turns a
symbol's candles of the session into `dolpha1_signal` rows, and `signal_fact` one of them into the spine
message. Rows carry aware KST times; the store converts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.bars import MinuteBar
from core.candles import Candle, CandleSource, Difference, kst_minute, reconcile
from core.dolpha1 import Bar, Params, signals
from kis.rest import KisRestClient
from runtime.clock import Clock
from spine.wire import Dolpha1Signal

TIMEFRAME = "1m"


@dataclass(frozen=True, slots=True)
class StockMinutes:
    """The `stocks_1m` rows of one symbol's closed minutes and the tick candles' differences from KIS's."""

    rows: list[dict[str, Any]]
    differences: dict[datetime, tuple[Difference, ...]]


def stock_minute(
    client: KisRestClient,
    clock: Clock,
    symbol: str,
    built: Iterable[Candle] = (),
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> StockMinutes:
    """Reconcile `symbol`'s tick-built candles with KIS's bars from `since` (default: the minute that closed
    last) to `until` (default: the minute that closed last before `clock.now()`)."""
    last = kst_minute(until) if until is not None else kst_minute(clock.now()) - timedelta(minutes=1)
    first = kst_minute(since) if since is not None else last
    bars = client.minute_bars(symbol, since=first.time(), until=last.time())
    kis = {bar.time: kis_candle(bar) for bar in bars if first <= bar.time <= last}
    ticks = {c.minute: c for c in built if c.symbol == symbol and first <= c.minute <= last}
    rows: list[dict[str, Any]] = []
    differences: dict[datetime, tuple[Difference, ...]] = {}
    for minute in sorted(kis.keys() | ticks.keys()):
        kept = reconcile(ticks.get(minute), kis.get(minute))
        if kept is None:
            continue
        rows.append(stocks_1m_row(kept.candle))
        if kept.differences:
            differences[minute] = kept.differences
    return StockMinutes(rows, differences)


def stocks_1m_row(candle: Candle) -> dict[str, Any]:
    """A `stocks_1m` row of a candle (prices in whole won)."""
    return {
        "timestamp": candle.minute, "symbol": candle.symbol, "timeframe": TIMEFRAME, "open": int(candle.open),
        "high": int(candle.high), "low": int(candle.low), "close": int(candle.close), "volume": candle.volume,
        "source": str(candle.source),
    }


def kis_candle(bar: MinuteBar) -> Candle:
    return Candle(bar.symbol, bar.time, bar.open, bar.high, bar.low, bar.close, bar.volume, CandleSource.KIS)


def signal_rows(symbol: str, candles: Sequence[Candle], params: Params = Params()) -> list[dict[str, Any]]:
    """`dolpha1_signal` rows of a symbol's session candles (oldest first)."""
    bars = [Bar(c.minute, c.high, c.low, c.close, c.volume) for c in candles]
    return [
        {"timestamp": s.minute, "symbol": s.symbol, "close": s.close, "vwap": s.vwap, "atr": s.atr,
         "monitor_upper": s.monitor_upper, "monitor_lower": s.monitor_lower, "trade_upper": s.trade_upper,
         "trade_lower": s.trade_lower, "level": str(s.level), "side": str(s.side), "changed": s.changed}
        for s in signals(symbol, bars, params)
    ]


def signal_fact(row: dict[str, Any]) -> Dolpha1Signal:
    """A `dolpha1_signal` row as published (`signal.dolpha1.<symbol>`): its timestamp becomes `minute`."""
    fields = {name: value for name, value in row.items() if name != "timestamp"}
    return Dolpha1Signal(minute=row["timestamp"], **fields)
