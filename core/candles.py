"""One-minute candles: built from ticks, reconciled with KIS's minute bars, counted against the session.

A candle is labelled by the KST minute it starts (09:00 holds the trades of 09:00:00.000-09:00:59.999), the
way KIS labels its minute bars (`stck_cntg_hour`). The session's expected candles are the minutes from its
open up to, not including, its close: KRX's regular stock session 09:00-15:30 gives 390, the KOSPI200 futures'
regular session 08:45-15:45 gives 420 (the seed's `EXPECTED_CANDLES_PER_DAY` check).

Reconciliation: once a minute has closed and KIS's bar for it is at hand, KIS's bar wins. It is the
exchange's own record of the minute, complete even when the stream lost frames or the observer restarted,
while a tick-built candle holds only the trades that reached us. The differences are reported so a stream
that drops trades shows up in the numbers; a minute KIS has no bar for keeps the tick-built candle.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from enum import StrEnum

from core.calendar import KST

STOCK_OPEN, STOCK_CLOSE = time(9, 0), time(15, 30)
"""KRX's regular stock session (the closing auction 15:20-15:30 included)."""
FUTURES_OPEN, FUTURES_CLOSE = time(8, 45), time(15, 45)
"""KRX's regular session for KOSPI200 futures and options (KRX derivatives market rules)."""
FUTURES_LAST_DAY_CLOSE = time(15, 20)
"""An expiring KOSPI200 futures or options contract stops trading at 15:20 on its last trading day."""

EXPECTED_STOCK_CANDLES = 390
EXPECTED_FUTURES_CANDLES = 420


class CandleSource(StrEnum):
    TICKS = "ticks"
    KIS = "kis"


@dataclass(frozen=True, slots=True)
class Trade:
    """What a candle needs of one trade: who, when (aware), at what price, how many."""

    symbol: str
    time: datetime
    price: float
    volume: int


@dataclass(frozen=True, slots=True)
class Candle:
    """One symbol's minute starting at `minute` (aware KST, seconds zero)."""

    symbol: str
    minute: datetime
    open: float
    high: float
    low: float
    close: float
    volume: int
    source: CandleSource = CandleSource.TICKS


@dataclass(frozen=True, slots=True)
class Difference:
    """A field where the tick-built candle and KIS's bar disagree."""

    field: str
    ticks: float
    kis: float


@dataclass(frozen=True, slots=True)
class Reconciled:
    """The candle to keep for a minute, and how the tick-built one differed from KIS's bar."""

    candle: Candle
    differences: tuple[Difference, ...]


def kst_minute(moment: datetime) -> datetime:
    """The KST minute `moment` falls in (aware, seconds and microseconds zero)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: pass an aware time")
    return moment.astimezone(KST).replace(second=0, microsecond=0)


def candles_from_trades(trades: Iterable[Trade]) -> list[Candle]:
    """OHLCV per symbol per KST minute, ordered by (minute, symbol). Trades may come in any order; within
    a minute the open is the earliest trade and the close the latest (equal times keep their order)."""
    groups: dict[tuple[datetime, str], list[Trade]] = {}
    for trade in trades:
        groups.setdefault((kst_minute(trade.time), trade.symbol), []).append(trade)
    candles = []
    for (minute, symbol), group in sorted(groups.items()):
        ordered = sorted(group, key=lambda trade: trade.time)
        prices = [trade.price for trade in ordered]
        candles.append(
            Candle(symbol, minute, prices[0], max(prices), min(prices), prices[-1],
                   sum(trade.volume for trade in ordered))
        )
    return candles


@dataclass(slots=True)
class _Running:
    """A minute's candle while its trades come in: the times of its open and close trades kept."""

    first: datetime
    open: float
    high: float
    low: float
    last: datetime
    close: float
    volume: int


class CandleBuilder:
    """The candles of trades as they stream in, one running OHLCV per (symbol, minute), so a minute's close
    costs no pass over its trades. Same candles as `candles_from_trades` over the same trades, in any order.
    Not thread-safe: owned by one actor."""

    def __init__(self) -> None:
        self._running: dict[tuple[datetime, str], _Running] = {}
        self._last_trade: dict[str, datetime] = {}

    def add(self, symbol: str, moment: datetime, price: float, volume: int) -> None:
        latest = self._last_trade.get(symbol)
        if latest is None or moment > latest:
            self._last_trade[symbol] = moment
        key = (kst_minute(moment), symbol)
        entry = self._running.get(key)
        if entry is None:
            self._running[key] = _Running(moment, price, price, price, moment, price, volume)
            return
        if moment < entry.first:
            entry.first, entry.open = moment, price
        if moment >= entry.last:
            entry.last, entry.close = moment, price
        entry.high = max(entry.high, price)
        entry.low = min(entry.low, price)
        entry.volume += volume

    def take_before(self, minute: datetime) -> list[Candle]:
        """The candles of minutes before `minute`, ordered by (minute, symbol), and forget them."""
        candles = []
        for start, symbol in sorted(key for key in self._running if key[0] < minute):
            c = self._running.pop((start, symbol))
            candles.append(Candle(symbol, start, c.open, c.high, c.low, c.close, c.volume))
        return candles

    def traded_since(self, moment: datetime) -> set[str]:
        """The symbols with a trade at or after `moment`: those streamed over a span of minutes, even when
        one of its minutes had no trade of theirs or began before the builder did."""
        return {symbol for symbol, last in self._last_trade.items() if last >= moment}


def reconcile(built: Candle | None, kis: Candle | None) -> Reconciled | None:
    """The candle to keep for one symbol's minute: KIS's bar when there is one, else the tick-built candle
    (None when neither exists). The differences list each OHLCV field where both exist and disagree."""
    if built is not None and kis is not None and (built.symbol, built.minute) != (kis.symbol, kis.minute):
        raise ValueError(f"not the same minute: {built.symbol} {built.minute} vs {kis.symbol} {kis.minute}")
    if kis is None:
        return None if built is None else Reconciled(built, ())
    kept = replace(kis, source=CandleSource.KIS)
    if built is None:
        return Reconciled(kept, ())
    differences = tuple(
        Difference(name, getattr(built, name), getattr(kis, name))
        for name in ("open", "high", "low", "close", "volume")
        if getattr(built, name) != getattr(kis, name)
    )
    return Reconciled(kept, differences)


def session_minutes(day: date, open_: time, close: time) -> list[datetime]:
    """Every minute label of a session on `day`: from `open_` up to, not including, `close` (aware KST)."""
    start = datetime.combine(day, open_, tzinfo=KST)
    end = datetime.combine(day, close, tzinfo=KST)
    count = int((end - start) / timedelta(minutes=1))
    return [start + timedelta(minutes=n) for n in range(count)]


def in_session(minute: datetime, open_: time, close: time) -> bool:
    """Whether the minute labelled `minute` is one of a session's candles (from `open_`, before `close`)."""
    local = kst_minute(minute).time()
    return open_ <= local < close


def expected_candles(open_: time, close: time) -> int:
    """How many one-minute candles a full session from `open_` to `close` has (390 for 09:00-15:30)."""
    return (close.hour * 60 + close.minute) - (open_.hour * 60 + open_.minute)


def missing_minutes(day: date, open_: time, close: time, have: Iterable[datetime]) -> list[datetime]:
    """The session's minutes that `have` lacks, in order; times in `have` are compared as KST minutes."""
    present = {kst_minute(moment) for moment in have}
    return [minute for minute in session_minutes(day, open_, close) if minute not in present]


def minute_ranges(minutes: Sequence[datetime]) -> list[tuple[datetime, datetime]]:
    """Consecutive minutes merged into (first, last) ranges: what to fetch again, in few calls."""
    ranges: list[tuple[datetime, datetime]] = []
    for minute in sorted(minutes):
        if ranges and minute - ranges[-1][1] == timedelta(minutes=1):
            ranges[-1] = (ranges[-1][0], minute)
        else:
            ranges.append((minute, minute))
    return ranges
