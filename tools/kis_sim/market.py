"""The simulated market: per-symbol random walks whose ticks and bars always agree.

Two levels, both deterministic from `(seed, trading_date, code)`:
- a cheap minute-level walk (trade count, open, high, low, close, volume per minute), generated lazily and in
  order, so a REST scan of the whole universe only walks the minutes that have happened;
- the ticks of one minute, generated on demand from `(seed, code, minute)` as a bridge from the minute's open
  to its close that touches its high and low, with volumes that add up to the minute's volume. The minute bar
  is therefore exactly the aggregate of its ticks, and the same ticks come back on every call.

Trading value is the minute's volume times its (O+H+L+C)/4; a tick's cumulative value is the value before its
minute plus the minute value in proportion to the minute volume traded so far, so it reaches the bar's value
at the minute's last tick.

Two venues: KRX trades every symbol 09:00-15:30 (the walk above); Nextrade (NXT) trades the larger caps
(`nxt_listed`) in its sessions (`config.settings.SessionSettings().nxt`: 08:00-08:50, 09:00-15:20,
15:30-20:00). While KRX is open an NXT minute has KRX's prices and a share of its trades; outside KRX's
hours NXT walks on its own at a quieter pace, from the previous close before the open and from KRX's close
after it. `trades` are KRX's, `nxt_trades` NXT's, `unified_trades` both merged with combined running totals,
which is what the H0STCNT0, H0NXCNT0 and H0UNCNT0 feeds carry.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import math
import random
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from itertools import accumulate, repeat, starmap
from typing import NamedTuple

from core.settings import SessionSettings
from runtime.clock import KST
from tools.kis_sim.listings import (
    NORMAL_BITS,
    NORMALS,
    SESSION_MINUTES,
    DailyBarState,
    Listing,
    build_universe,
    price_limits,
    snap,
    tick_size,
)
from tools.kis_sim.scenario import NO_EFFECTS, Effects, Scenario

__all__ = [
    "SESSION_CLOSE",
    "SESSION_OPEN",
    "DailyBarState",
    "Listing",
    "Market",
    "MinuteBarState",
    "QuoteState",
    "Trade",
]

SESSION_OPEN = time(9, 0)
SESSION_CLOSE = time(15, 30)
KRX, NXT = "KRX", "NXT"
NXT_SESSIONS = SessionSettings().nxt
NXT_LISTED_SHARE = 0.3
"""The share of the universe, largest market caps first, that Nextrade lists (about 800 of 2,700 in 2025)."""
NXT_MAIN_SHARE = 0.15
"""NXT's share of a listed symbol's trades and volume while both venues trade."""
NXT_BARS_PER_CALL = 30
"""Minute bars in one NX/UN chart answer (KIS's page size)."""
NXT_OFF_HOURS_ACTIVITY = 0.1
"""Pre- and after-market trade rate and volume against an average KRX minute."""


def _minute_of_day(moment: time) -> int:
    return moment.hour * 60 + moment.minute


_KRX_OPEN_MINUTE = _minute_of_day(SESSION_OPEN)
_NXT_FIRST_MINUTE = min(_minute_of_day(session.start) for session in NXT_SESSIONS)
_NXT_END_MINUTE = max(_minute_of_day(session.end) for session in NXT_SESSIONS)
_NXT_MINUTES = _NXT_END_MINUTE - _NXT_FIRST_MINUTE
_MINUTE_US = 60_000_000
_MICROSECOND = timedelta(microseconds=1)
_TICK_CACHE_SIZE = 8192


class Trade(NamedTuple):
    """One simulated trade and the day's running values right after it. A named tuple: the feed makes
    thousands a second, and a tuple is several times cheaper to build than a frozen dataclass."""

    code: str
    time: datetime
    price: int
    volume: int
    cum_volume: int
    cum_value: int
    side: str
    open: int
    high: int
    low: int
    prev_close: int
    ask1: int
    bid1: int
    venue: str = KRX


@dataclass(frozen=True, slots=True)
class QuoteState:
    """The state of one symbol as of `at`; open/high/low are 0 before its first trade of the day."""

    code: str
    at: datetime
    price: int
    open: int
    high: int
    low: int
    volume: int
    value: int
    prev_close: int
    upper_limit: int
    lower_limit: int
    ask1: int
    bid1: int
    halted: bool


@dataclass(frozen=True, slots=True)
class MinuteBarState:
    """One minute starting at `start`; a minute without trades repeats the last price with volume 0."""

    code: str
    start: datetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int
    cum_volume: int
    cum_value: int


def _intraday_shape() -> tuple[float, ...]:
    """Relative activity per minute: busy open, quiet lunch, busier close; the mean is 1."""
    raw = [
        1.0 + 2.5 * math.exp(-m / 15.0) + 1.2 * math.exp(-(SESSION_MINUTES - 1 - m) / 20.0)
        - 0.25 * math.exp(-(((m - 200) / 60.0) ** 2))
        for m in range(SESSION_MINUTES)
    ]
    mean = sum(raw) / len(raw)
    return tuple(value / mean for value in raw)


_SHAPE = _intraday_shape()
_SHAPE_ROOT = tuple(math.sqrt(value) for value in _SHAPE)


class _Ticks:
    """The ticks of one minute as parallel lists (cheap to build, cheap to slice with bisect).

    `highs`/`lows` are the running high and low of the minute through each tick, so the day's high and low
    at any tick are one lookup rather than a scan of the minute so far.
    """

    __slots__ = ("cum_values", "cum_volumes", "highs", "lows", "offsets_us", "prices", "sides", "volumes")

    def __init__(
        self,
        offsets_us: list[int],
        prices: list[int],
        volumes: list[int],
        sides: list[str],
        cum_volumes: list[int],
        cum_values: list[int],
        highs: list[int],
        lows: list[int],
    ) -> None:
        self.offsets_us = offsets_us
        self.prices = prices
        self.volumes = volumes
        self.sides = sides
        self.cum_volumes = cum_volumes
        self.cum_values = cum_values
        self.highs = highs
        self.lows = lows


class _DayPath:
    """Minute-level walk of one symbol for the trading day, extended lazily in minute order.

    A latent fair value moves by a normal step each minute; prices are that value snapped to the KRX price
    grid, so moves smaller than one price unit still accumulate instead of being rounded away.
    """

    def __init__(
        self, seed: int, day: date, listing: Listing, trade_rate: float, effects: tuple[Effects, ...]
    ) -> None:
        self.listing = listing
        self.lock = threading.Lock()
        self.rng = random.Random(f"day:{seed}:{day.isoformat()}:{listing.code}")
        self.trade_rate = trade_rate
        self.effects = effects
        self.upper, self.lower = price_limits(listing.prev_close)
        self.sigma_day = listing.daily_volatility
        self.sigma_minute = listing.daily_volatility / math.sqrt(SESSION_MINUTES)
        activity = math.exp(NORMALS[self.rng.getrandbits(NORMAL_BITS)] * 0.25)
        self.volume_per_minute = listing.avg_volume_20d / SESSION_MINUTES * activity
        self.level = float(listing.prev_close)
        # per minute
        self.counts: list[int] = []
        self.opens: list[int] = []
        self.highs: list[int] = []
        self.lows: list[int] = []
        self.closes: list[int] = []
        self.volumes: list[int] = []
        self.values: list[int] = []
        # running day state through the end of each minute (0 for open/high/low before the first trade)
        self.cum_volumes: list[int] = []
        self.cum_values: list[int] = []
        self.day_highs: list[int] = []
        self.day_lows: list[int] = []
        self.day_opens: list[int] = []
        # the ticks of the minute asked for last: the feed asks for the same minute twenty times a second
        self.recent: tuple[int, _Ticks] | None = None

    def extend(self, last_minute: int) -> None:
        with self.lock:
            if len(self.counts) <= last_minute:
                self._walk(last_minute)

    def _walk(self, last_minute: int) -> None:
        draw, bits, normals, exp, sqrt = self.rng.getrandbits, NORMAL_BITS, NORMALS, math.exp, math.sqrt
        upper, lower, prev_close = self.upper, self.lower, self.listing.prev_close
        blocked = self.listing.halted
        effects_by_minute = self.effects
        per_minute_trades = self.trade_rate * 60.0
        sigma_minute, open_gap = self.sigma_minute, 0.4 * self.sigma_day
        volume_per_minute = self.volume_per_minute
        level = self.level
        first = len(self.counts)
        last = self.closes[-1] if first else prev_close
        day_open = self.day_opens[-1] if first else 0
        cum_volume = self.cum_volumes[-1] if first else 0
        cum_value = self.cum_values[-1] if first else 0
        day_high = self.day_highs[-1] if first else 0
        day_low = self.day_lows[-1] if first else 0
        rows = []
        for minute in range(first, last_minute + 1):
            effects = effects_by_minute[minute] if effects_by_minute else NO_EFFECTS
            shape = _SHAPE[minute]
            expected = per_minute_trades * shape * effects.trade_rate * effects.volume
            count = round(expected + sqrt(expected) * normals[draw(bits)])
            if blocked or effects.halted or count <= 0:
                rows.append(
                    (last, last, last, last, 0, 0, cum_volume, cum_value, day_high, day_low, day_open, 0)
                )
                continue
            sigma = sigma_minute * effects.volatility * _SHAPE_ROOT[minute]
            if day_open == 0:
                level = min(upper, max(lower, prev_close * exp(normals[draw(bits)] * open_gap)))
                open_ = day_open = snap(level)
            else:
                open_ = last
            if count == 1:
                close = open_
            else:
                level = min(upper, max(lower, level * exp(normals[draw(bits)] * sigma)))
                close = snap(level)
            high, low = (open_, close) if open_ >= close else (close, open_)
            if count >= 4:
                wick = 0.6 * sigma
                high = max(high, min(upper, snap(high * exp(abs(normals[draw(bits)]) * wick))))
                low = min(low, max(lower, snap(low * exp(-abs(normals[draw(bits)]) * wick))))
            noise = exp(normals[draw(bits)] * 0.5 - 0.125)
            volume = max(count, int(volume_per_minute * shape * effects.volume * noise + 0.5))
            value = volume * (open_ + high + low + close) // 4
            cum_volume += volume
            cum_value += value
            if high > day_high:
                day_high = high
            if day_low == 0 or low < day_low:
                day_low = low
            last = close
            rows.append((
                open_, high, low, close, volume, value,
                cum_volume, cum_value, day_high, day_low, day_open, count,
            ))
        self.level = level
        for column, values in zip(self._columns(), zip(*rows, strict=True), strict=True):
            column.extend(values)

    def _columns(self) -> tuple[list[int], ...]:
        """Every per-minute column; `counts` comes last because readers check `len(counts)` without the lock,
        so a minute is counted only once all its other columns are in place."""
        return (
            self.opens, self.highs, self.lows, self.closes, self.volumes, self.values,
            self.cum_volumes, self.cum_values, self.day_highs, self.day_lows, self.day_opens, self.counts,
        )


class _NxtPath:
    """One NXT-listed symbol's minutes from the first NXT session's start, extended lazily in order like
    `_DayPath` and with the same columns, so the same tick and trade code reads both.

    `krx_minute(m)` gives the symbol's KRX path through KRX minute `m`: an NXT minute inside KRX's hours
    copies that minute's prices with a share of its trades; the others walk on their own.
    """

    def __init__(self, seed: int, day: date, listing: Listing, trade_rate: float) -> None:
        self.listing = listing
        self.lock = threading.Lock()
        self.rng = random.Random(f"nxt:{seed}:{day.isoformat()}:{listing.code}")
        self.upper, self.lower = price_limits(listing.prev_close)
        self.sigma_minute = 0.5 * listing.daily_volatility / math.sqrt(SESSION_MINUTES)
        self.off_hours_trades = trade_rate * 60.0 * NXT_OFF_HOURS_ACTIVITY
        self.off_hours_volume = listing.avg_volume_20d / SESSION_MINUTES * NXT_OFF_HOURS_ACTIVITY
        self.level = float(listing.prev_close)
        self.walking = False
        self.counts: list[int] = []
        self.opens: list[int] = []
        self.highs: list[int] = []
        self.lows: list[int] = []
        self.closes: list[int] = []
        self.volumes: list[int] = []
        self.values: list[int] = []
        self.cum_volumes: list[int] = []
        self.cum_values: list[int] = []
        self.day_highs: list[int] = []
        self.day_lows: list[int] = []
        self.day_opens: list[int] = []
        self.recent: tuple[int, _Ticks] | None = None

    def extend(self, last_minute: int, krx_minute: Callable[[int], _DayPath]) -> None:
        with self.lock:
            while len(self.counts) <= last_minute:
                self._add_minute(len(self.counts), krx_minute)

    def _add_minute(self, minute: int, krx_minute: Callable[[int], _DayPath]) -> None:
        draw, bits = self.rng.getrandbits, NORMAL_BITS
        last = self.closes[-1] if minute else self.listing.prev_close
        of_day = _NXT_FIRST_MINUTE + minute
        in_session = any(_minute_of_day(session.start) <= of_day < _minute_of_day(session.end)
                         for session in NXT_SESSIONS)
        krx = of_day - _KRX_OPEN_MINUTE
        row: tuple[int, int, int, int, int] | None = None  # open, high, low, close, count
        volume = 0
        if in_session and not self.listing.halted and 0 <= krx < SESSION_MINUTES:
            self.walking = False
            path = krx_minute(krx)
            expected = path.counts[krx] * NXT_MAIN_SHARE
            count = round(expected + math.sqrt(expected) * NORMALS[draw(bits)]) if expected else 0
            if count > 0:
                open_, close = path.opens[krx], path.closes[krx]
                high, low = max(open_, close), min(open_, close)
                if count >= 4:
                    high, low = path.highs[krx], path.lows[krx]
                row = (open_, high, low, close, count)
                volume = max(count, int(path.volumes[krx] * NXT_MAIN_SHARE))
        elif in_session and not self.listing.halted:
            if not self.walking:  # a session starts: from the last price, KRX's close once KRX has closed
                self.walking = True
                if krx >= SESSION_MINUTES:
                    last = krx_minute(SESSION_MINUTES - 1).closes[SESSION_MINUTES - 1]
                self.level = float(last)
            expected = self.off_hours_trades
            count = round(expected + math.sqrt(expected) * NORMALS[draw(bits)])
            if count > 0:
                open_ = snap(self.level)
                step = math.exp(NORMALS[draw(bits)] * self.sigma_minute)
                self.level = min(self.upper, max(self.lower, self.level * step))
                close = snap(self.level) if count > 1 else open_
                high, low = max(open_, close), min(open_, close)
                if count >= 4:
                    wick = 0.6 * self.sigma_minute
                    high = max(high, min(self.upper, snap(high * math.exp(abs(NORMALS[draw(bits)]) * wick))))
                    low = min(low, max(self.lower, snap(low * math.exp(-abs(NORMALS[draw(bits)]) * wick))))
                row = (open_, high, low, close, count)
                noise = math.exp(NORMALS[draw(bits)] * 0.5 - 0.125)
                volume = max(count, int(self.off_hours_volume * noise + 0.5))
        else:
            self.walking = False
        cum_volume = self.cum_volumes[-1] if minute else 0
        cum_value = self.cum_values[-1] if minute else 0
        day_high = self.day_highs[-1] if minute else 0
        day_low = self.day_lows[-1] if minute else 0
        day_open = self.day_opens[-1] if minute else 0
        if row is None:
            open_ = high = low = close = last
            count = value = 0
        else:
            open_, high, low, close, count = row
            value = volume * (open_ + high + low + close) // 4
            cum_volume += volume
            cum_value += value
            day_high = max(day_high, high)
            day_low = low if day_low == 0 else min(day_low, low)
            day_open = day_open or open_
        self.opens.append(open_)
        self.highs.append(high)
        self.lows.append(low)
        self.closes.append(close)
        self.volumes.append(volume)
        self.values.append(value)
        self.cum_volumes.append(cum_volume)
        self.cum_values.append(cum_value)
        self.day_highs.append(day_high)
        self.day_lows.append(day_low)
        self.day_opens.append(day_open)
        self.counts.append(count)  # last: readers check len(counts) without the lock


class Market:
    """The simulated KRX market for one trading day. All queries are deterministic and thread-safe."""

    def __init__(
        self,
        *,
        seed: int = 1,
        trading_date: date,
        scenario: Scenario | None = None,
        n_symbols: int = 1200,
        trade_rate: float = 2.0,
    ) -> None:
        if trade_rate <= 0:
            raise ValueError(f"trade_rate must be > 0 trades per second, got {trade_rate}")
        self.seed = seed
        self.trading_date = trading_date
        self.trade_rate = float(trade_rate)
        self.scenario = scenario or Scenario()
        universe = build_universe(seed, trading_date, n_symbols)
        self.listings: dict[str, Listing] = universe.listings
        self._history = universe.history
        self.scenario.check_symbols(self.listings)
        self.session_open = datetime.combine(trading_date, SESSION_OPEN, tzinfo=KST)
        self.session_close = datetime.combine(trading_date, SESSION_CLOSE, tzinfo=KST)
        first = time(_NXT_FIRST_MINUTE // 60, _NXT_FIRST_MINUTE % 60)
        self.nxt_open = datetime.combine(trading_date, first, tzinfo=KST)
        by_cap = sorted(self.listings.values(), key=lambda listing: (-listing.market_cap, listing.code))
        self.nxt_listed: frozenset[str] = frozenset(
            listing.code for listing in by_cap[: round(len(by_cap) * NXT_LISTED_SHARE)]
        )
        """Codes Nextrade trades: the largest market caps."""
        self._nxt_paths: dict[str, _NxtPath] = {}
        self._effects = {symbol: self._minute_effects(symbol) for symbol in self.scenario.symbols}
        self._paths: dict[str, _DayPath] = {}
        self._paths_lock = threading.Lock()
        self._ticks: OrderedDict[tuple[str, int], _Ticks] = OrderedDict()
        self._ticks_lock = threading.Lock()

    # ---- queries ----------------------------------------------------------------------------------------

    def listing(self, code: str) -> Listing:
        """The listing of `code`; KeyError for an unknown code."""
        return self.listings[code]

    def history(self, code: str) -> tuple[DailyBarState, ...]:
        """Daily bars of the trading days before the trading date, oldest first."""
        return self._history[code]

    def halted(self, code: str, at: datetime) -> bool:
        """Whether `code` is suspended at `at` (listed as halted, or inside a scenario halt)."""
        if self.listings[code].halted:
            return True
        effects = self._effects.get(code)
        minute = self._minute_of(at)
        return bool(effects) and minute is not None and effects[minute].halted

    def trades(self, code: str, start: datetime, end: datetime) -> list[Trade]:
        """Every trade of `code` with `start < time <= end`, in time order."""
        listing = self.listings[code]
        start_us = self._session_us(start)
        end_us = min(self._session_us(end), SESSION_MINUTES * _MINUTE_US - 1)
        if end_us < 0 or end_us <= start_us:
            return []
        first_minute = max(0, start_us // _MINUTE_US)
        last_minute = end_us // _MINUTE_US
        path = self._path(code, last_minute)
        result: list[Trade] = []
        for minute in range(first_minute, last_minute + 1):
            if path.counts[minute] == 0:
                continue
            ticks = self._minute_ticks(path, minute)
            base_us = minute * _MINUTE_US
            lo = bisect.bisect_right(ticks.offsets_us, start_us - base_us)
            hi = bisect.bisect_right(ticks.offsets_us, end_us - base_us)
            if lo >= hi:
                continue
            result.extend(self._trades_of(listing, path, minute, ticks, lo, hi))
        return result

    def nxt_trades(self, code: str, start: datetime, end: datetime) -> list[Trade]:
        """Every Nextrade trade of `code` with `start < time <= end` (none for a symbol NXT does not list)."""
        listing = self.listings[code]
        if code not in self.nxt_listed:
            return []
        start_us = (start - self.nxt_open) // _MICROSECOND
        end_us = min((end - self.nxt_open) // _MICROSECOND, _NXT_MINUTES * _MINUTE_US - 1)
        if end_us < 0 or end_us <= start_us:
            return []
        last_minute = end_us // _MINUTE_US
        path = self._nxt_path(code, last_minute)
        result: list[Trade] = []
        for minute in range(max(0, start_us // _MINUTE_US), last_minute + 1):
            if path.counts[minute] == 0:
                continue
            ticks = self._nxt_minute_ticks(path, minute)
            base_us = minute * _MINUTE_US
            lo = bisect.bisect_right(ticks.offsets_us, start_us - base_us)
            hi = bisect.bisect_right(ticks.offsets_us, end_us - base_us)
            if lo < hi:
                result.extend(self._trades_of(listing, path, minute, ticks, lo, hi, NXT))
        return result

    def unified_trades(self, code: str, start: datetime, end: datetime) -> list[Trade]:
        """Both venues' trades of `code` in time order, with the day's totals and extremes over both venues
        (what KIS's unified feed carries): cumulative volume and value add up, high and low span both."""
        krx = self.trades(code, start, end)
        nxt = self.nxt_trades(code, start, end)
        if not nxt and code not in self.nxt_listed:
            return krx
        totals = {KRX: self._running(code, start, KRX), NXT: self._running(code, start, NXT)}
        pre_market = self._running(code, self.session_open, NXT)[0] > 0
        result = []
        for trade in sorted(krx + nxt, key=lambda t: (t.time, t.venue)):
            totals[trade.venue] = (trade.cum_volume, trade.cum_value, trade.open, trade.high, trade.low)
            (k_volume, k_value, k_open, k_high, k_low), (n_volume, n_value, n_open, n_high, n_low) = (
                totals[KRX], totals[NXT]
            )
            day_open = (n_open if pre_market else k_open) or k_open or n_open
            lows = [low for low in (k_low, n_low) if low]
            result.append(trade._replace(
                cum_volume=k_volume + n_volume, cum_value=k_value + n_value, open=day_open,
                high=max(k_high, n_high), low=min(lows) if lows else trade.low,
            ))
        return result

    def _feed_minute_bars(
        self, code: str, at: datetime, until: time, market_code: str
    ) -> list[MinuteBarState]:
        """Minute bars of the NXT ("NX") or unified ("UN") trades, every minute of the window included."""
        until_minute = until.replace(second=0, microsecond=0)
        last_start = min(
            at.replace(second=0, microsecond=0), datetime.combine(self.trading_date, until_minute, tzinfo=KST)
        )
        first_start = max(self.nxt_open, last_start - timedelta(minutes=NXT_BARS_PER_CALL - 1))
        if last_start < first_start:
            return []
        trades_of = self.unified_trades if market_code == "UN" else self.nxt_trades
        trades = trades_of(code, first_start - _MICROSECOND, min(at, last_start + timedelta(minutes=1)))
        venues = (KRX, NXT) if market_code == "UN" else (NXT,)
        running = [self._running(code, first_start - _MICROSECOND, venue) for venue in venues]
        cum_volume, cum_value = sum(r[0] for r in running), sum(r[1] for r in running)
        last = trades[0].price if trades else self.quote(code, at).price
        bars = []
        start = first_start
        index = 0
        while start <= last_start:
            end = start + timedelta(minutes=1)
            minute = []
            while index < len(trades) and trades[index].time < end:
                minute.append(trades[index])
                index += 1
            if minute:
                prices = [trade.price for trade in minute]
                volume = sum(trade.volume for trade in minute)
                value = minute[-1].cum_value - cum_value
                cum_volume, cum_value, last = minute[-1].cum_volume, minute[-1].cum_value, prices[-1]
                bars.append(MinuteBarState(
                    code, start, prices[0], max(prices), min(prices), last, volume, value,
                    cum_volume, cum_value,
                ))
            else:
                bars.append(MinuteBarState(code, start, last, last, last, last, 0, 0, cum_volume, cum_value))
            start = end
        return bars

    def _running(self, code: str, at: datetime, venue: str) -> tuple[int, int, int, int, int]:
        """(cumulative volume, value, day open, high, low) of `code` on `venue` through `at`."""
        if venue == KRX:
            quote = self.quote(code, at)
            return quote.volume, quote.value, quote.open, quote.high, quote.low
        if code not in self.nxt_listed:
            return 0, 0, 0, 0, 0
        at_us = min((at - self.nxt_open) // _MICROSECOND, _NXT_MINUTES * _MINUTE_US - 1)
        if at_us < 0:
            return 0, 0, 0, 0, 0
        minute = at_us // _MINUTE_US
        path = self._nxt_path(code, minute)
        if minute:
            volume, value = path.cum_volumes[minute - 1], path.cum_values[minute - 1]
            day_open, high = path.day_opens[minute - 1], path.day_highs[minute - 1]
            low = path.day_lows[minute - 1]
        else:
            volume = value = day_open = high = low = 0
        if path.counts[minute]:
            ticks = self._nxt_minute_ticks(path, minute)
            upto = bisect.bisect_right(ticks.offsets_us, at_us - minute * _MINUTE_US)
            if upto:
                last = upto - 1
                volume += ticks.cum_volumes[last]
                value += ticks.cum_values[last]
                day_open = day_open or ticks.prices[0]
                high = max(high, ticks.highs[last])
                low = ticks.lows[last] if low == 0 else min(low, ticks.lows[last])
        return volume, value, day_open, high, low

    def venue_quote(self, code: str, at: datetime, market_code: str) -> QuoteState:
        """`quote` for a quote call's market code: "J" KRX's, "NX" Nextrade's, "UN" both venues' (totals
        added up, the extremes of both, the price of the venue trading at `at`)."""
        krx = self.quote(code, at)
        if market_code == "J":
            return krx
        volume, value, day_open, high, low = self._running(code, at, NXT)
        nxt_price = self._nxt_last_price(code, at)
        if market_code == "NX":
            price = nxt_price or krx.prev_close
        else:
            krx_open = self.session_open <= at < self.session_close
            price = nxt_price if nxt_price and not krx_open else krx.price
            pre_market = self._running(code, self.session_open, NXT)[0] > 0
            day_open = (day_open if pre_market else krx.open) or krx.open or day_open
            lows = [one for one in (low, krx.low) if one]
            volume, value = volume + krx.volume, value + krx.value
            high, low = max(high, krx.high), min(lows) if lows else 0
        ask1, bid1 = _book_top(price, "1")
        return dataclasses.replace(
            krx, price=price, open=day_open, high=high, low=low, volume=volume, value=value,
            ask1=ask1, bid1=bid1,
        )

    def _nxt_last_price(self, code: str, at: datetime) -> int:
        """The price of `code`'s last Nextrade trade at or before `at`; 0 before its first of the day."""
        if code not in self.nxt_listed:
            return 0
        at_us = min((at - self.nxt_open) // _MICROSECOND, _NXT_MINUTES * _MINUTE_US - 1)
        if at_us < 0:
            return 0
        minute = at_us // _MINUTE_US
        path = self._nxt_path(code, minute)
        price = path.closes[minute - 1] if minute and path.cum_volumes[minute - 1] else 0
        if path.counts[minute]:
            ticks = self._nxt_minute_ticks(path, minute)
            upto = bisect.bisect_right(ticks.offsets_us, at_us - minute * _MINUTE_US)
            if upto:
                price = ticks.prices[upto - 1]
        return price

    def quote(self, code: str, at: datetime) -> QuoteState:
        """Price, day open/high/low and cumulative volume/value as of `at` (the last trade at or before)."""
        listing = self.listings[code]
        upper, lower = price_limits(listing.prev_close)
        halted = self.halted(code, at)
        at_us = min(self._session_us(at), SESSION_MINUTES * _MINUTE_US - 1)
        if at_us < 0:
            unit = tick_size(listing.prev_close)
            return QuoteState(
                code, at, listing.prev_close, 0, 0, 0, 0, 0, listing.prev_close, upper, lower,
                listing.prev_close + unit, listing.prev_close, halted,
            )
        minute = at_us // _MINUTE_US
        path = self._path(code, minute)
        if minute > 0:
            price = path.closes[minute - 1]
            day_open, high = path.day_opens[minute - 1], path.day_highs[minute - 1]
            low = path.day_lows[minute - 1]
            volume, value = path.cum_volumes[minute - 1], path.cum_values[minute - 1]
        else:
            price, day_open, high, low, volume, value = listing.prev_close, 0, 0, 0, 0, 0
        side = "1"
        if path.counts[minute]:
            ticks = self._minute_ticks(path, minute)
            upto = bisect.bisect_right(ticks.offsets_us, at_us - minute * _MINUTE_US)
            if upto:
                last = upto - 1
                price = ticks.prices[last]
                day_open = day_open or ticks.prices[0]
                high = max(high, ticks.highs[last])
                low = ticks.lows[last] if low == 0 else min(low, ticks.lows[last])
                volume += ticks.cum_volumes[upto - 1]
                value += ticks.cum_values[upto - 1]
                side = ticks.sides[upto - 1]
        ask1, bid1 = _book_top(price, side)
        return QuoteState(
            code, at, price, day_open, high, low, volume, value, listing.prev_close, upper, lower,
            ask1, bid1, halted,
        )

    def minute_bars(
        self, code: str, at: datetime, until: time, market_code: str = "J"
    ) -> list[MinuteBarState]:
        """Today's minute bars that start at or before `until` and have started by `at`, oldest first.

        The minute in progress at `at` is included with the trades so far. `market_code` "J" gives KRX's
        bars from 09:00; "NX" and "UN" the last `NXT_BARS_PER_CALL` minutes of NXT's or both venues'
        trades (their running totals are that feed's).
        """
        if code not in self.listings:
            raise KeyError(code)
        if market_code != "J":
            return self._feed_minute_bars(code, at, until, market_code)
        at_us = self._session_us(at)
        if at_us < 0:
            return []
        until_minute = (until.hour * 60 + until.minute) - (SESSION_OPEN.hour * 60 + SESSION_OPEN.minute)
        last_minute = min(SESSION_MINUTES - 1, at_us // _MINUTE_US, until_minute)
        if last_minute < 0:
            return []
        path = self._path(code, last_minute)
        bars = [
            MinuteBarState(
                code, self.session_open + timedelta(minutes=m), path.opens[m], path.highs[m], path.lows[m],
                path.closes[m], path.volumes[m], path.values[m], path.cum_volumes[m], path.cum_values[m],
            )
            for m in range(last_minute + 1)
        ]
        if at_us < (last_minute + 1) * _MINUTE_US:
            bars[-1] = self._partial_bar(path, last_minute, at_us)
        return bars

    def minute_closes(self, code: str, last_minute: int) -> list[int]:
        """The closes of session minutes 0 to `last_minute` (0 is 09:00), whether or not they have happened:
        what an index over the listings is computed from."""
        last_minute = min(last_minute, SESSION_MINUTES - 1)
        if last_minute < 0:
            return []
        return self._path(code, last_minute).closes[: last_minute + 1]

    def daily_bars(
        self, code: str, start: date, end: date, at: datetime | None = None
    ) -> list[DailyBarState]:
        """Daily bars with `start <= day <= end`, oldest first; with `at`, today's bar so far."""
        bars = [bar for bar in self._history[code] if start <= bar.day <= end]
        if at is not None and start <= self.trading_date <= end and self._session_us(at) >= 0:
            quote = self.quote(code, at)
            price = quote.price
            bars.append(
                DailyBarState(
                    self.trading_date, quote.open or price, quote.high or price, quote.low or price, price,
                    quote.volume, quote.value,
                )
            )
        return bars

    # ---- internals --------------------------------------------------------------------------------------

    def _session_us(self, moment: datetime) -> int:
        return (moment - self.session_open) // _MICROSECOND

    def _minute_of(self, moment: datetime) -> int | None:
        us = self._session_us(moment)
        if us < 0 or us >= SESSION_MINUTES * _MINUTE_US:
            return None
        return us // _MINUTE_US

    def _minute_effects(self, symbol: str) -> tuple[Effects, ...]:
        base = SESSION_OPEN.hour * 3600 + SESSION_OPEN.minute * 60
        return tuple(
            self.scenario.effects(symbol, base + m * 60, base + (m + 1) * 60) for m in range(SESSION_MINUTES)
        )

    def _path(self, code: str, last_minute: int) -> _DayPath:
        path = self._paths.get(code)
        if path is None:
            with self._paths_lock:
                path = self._paths.get(code)
                if path is None:
                    path = _DayPath(
                        self.seed, self.trading_date, self.listings[code], self.trade_rate,
                        self._effects.get(code, ()),
                    )
                    self._paths[code] = path
        if len(path.counts) <= last_minute:
            path.extend(last_minute)
        return path

    def _nxt_path(self, code: str, last_minute: int) -> _NxtPath:
        path = self._nxt_paths.get(code)
        if path is None:
            with self._paths_lock:
                path = self._nxt_paths.get(code)
                if path is None:
                    path = _NxtPath(self.seed, self.trading_date, self.listings[code], self.trade_rate)
                    self._nxt_paths[code] = path
        if len(path.counts) <= last_minute:
            path.extend(last_minute, lambda minute: self._path(code, minute))
        return path

    def _nxt_minute_ticks(self, path: _NxtPath, minute: int) -> _Ticks:
        recent = path.recent
        if recent is not None and recent[0] == minute:
            return recent[1]
        ticks = _build_ticks(self.seed, self.trading_date, path, minute, NXT)
        path.recent = (minute, ticks)
        return ticks

    def _minute_ticks(self, path: _DayPath, minute: int) -> _Ticks:
        recent = path.recent  # one read: another thread may replace it, never half-way
        if recent is not None and recent[0] == minute:
            return recent[1]
        key = (path.listing.code, minute)
        with self._ticks_lock:
            ticks = self._ticks.get(key)
            if ticks is not None:
                self._ticks.move_to_end(key)
        if ticks is None:
            ticks = _build_ticks(self.seed, self.trading_date, path, minute)
            with self._ticks_lock:
                self._ticks[key] = ticks
                if len(self._ticks) > _TICK_CACHE_SIZE:
                    self._ticks.popitem(last=False)
        path.recent = (minute, ticks)
        return ticks

    def _trades_of(
        self, listing: Listing, path: _DayPath | _NxtPath, minute: int, ticks: _Ticks, lo: int, hi: int,
        venue: str = KRX,
    ) -> list[Trade]:
        if minute > 0:
            day_open = path.day_opens[minute - 1]
            high, low = path.day_highs[minute - 1], path.day_lows[minute - 1]
            cum_volume, cum_value = path.cum_volumes[minute - 1], path.cum_values[minute - 1]
        else:
            day_open = high = low = cum_volume = cum_value = 0
        prices, sides, volumes = ticks.prices, ticks.sides, ticks.volumes
        offsets, cum_volumes, cum_values = ticks.offsets_us, ticks.cum_volumes, ticks.cum_values
        minute_highs, minute_lows = ticks.highs, ticks.lows
        day_open = day_open or prices[0]
        code, prev_close = listing.code, listing.prev_close
        base = (self.session_open if venue == KRX else self.nxt_open) + timedelta(minutes=minute)
        microseconds = _MICROSECOND
        result = []
        append = result.append
        for i in range(lo, hi):
            price = prices[i]
            side = sides[i]
            ask1, bid1 = _book_top(price, side)
            minute_high, minute_low = minute_highs[i], minute_lows[i]
            append(Trade(
                code, base + offsets[i] * microseconds, price, volumes[i],
                cum_volume + cum_volumes[i], cum_value + cum_values[i], side, day_open,
                high if high > minute_high else minute_high,
                minute_low if low == 0 or minute_low < low else low,
                prev_close, ask1, bid1, venue,
            ))
        return result

    def _partial_bar(self, path: _DayPath, minute: int, at_us: int) -> MinuteBarState:
        last = path.closes[minute - 1] if minute else path.listing.prev_close
        cum_volume = path.cum_volumes[minute - 1] if minute else 0
        cum_value = path.cum_values[minute - 1] if minute else 0
        start = self.session_open + timedelta(minutes=minute)
        upto = 0
        ticks = None
        if path.counts[minute]:
            ticks = self._minute_ticks(path, minute)
            upto = bisect.bisect_right(ticks.offsets_us, at_us - minute * _MINUTE_US)
        if ticks is None or upto == 0:
            code = path.listing.code
            return MinuteBarState(code, start, last, last, last, last, 0, 0, cum_volume, cum_value)
        last = upto - 1
        volume, value = ticks.cum_volumes[last], ticks.cum_values[last]
        return MinuteBarState(
            path.listing.code, start, ticks.prices[0], ticks.highs[last], ticks.lows[last],
            ticks.prices[last], volume, value, cum_volume + volume, cum_value + value,
        )


def _book_top(price: int, side: str) -> tuple[int, int]:
    """(ask1, bid1) right after a trade: a buy lifts the ask at `price`, a sell hits the bid at `price`."""
    if side == "1":
        return price, max(1, price - tick_size(max(1, price - 1)))
    return price + tick_size(price), price


def _build_ticks(
    seed: int, day: date, path: _DayPath | _NxtPath, minute: int, venue: str = KRX
) -> _Ticks:
    """The trades of one minute: a bridge open -> close through high and low, volumes summing to the bar's.

    The generator's draws and the arithmetic on them are those of the first version, in the same order, so
    a seed still gives exactly the same KRX ticks.
    """
    count = path.counts[minute]
    open_, high, low, close = path.opens[minute], path.highs[minute], path.lows[minute], path.closes[minute]
    volume, value = path.volumes[minute], path.values[minute]
    kind = "ticks" if venue == KRX else "nxt-ticks"
    rng = random.Random(f"{kind}:{seed}:{day.isoformat()}:{path.listing.code}:{minute}")
    draw = rng.random
    offsets = [int(u * _MINUTE_US) for u in starmap(draw, repeat((), count))]
    offsets.sort()
    if count == 1:
        prices = [open_]
    elif count == 2:
        prices = [open_, close]
    elif count == 3:
        prices = [open_, snap(low + (high - low) * draw()), close]
    else:
        prices = _bridge(rng, count, open_, high, low, close)
    log = math.log
    weights = [0.05 - log(1.0 - u) for u in starmap(draw, repeat((), count))]
    scale = volume / sum(weights)
    volumes = [int(w * scale) or 1 for w in weights]
    _fix_sum(volumes, volume)
    previous = path.closes[minute - 1] if minute else path.listing.prev_close
    sides: list[str] = []
    highs: list[int] = []
    lows: list[int] = []
    side, running_high, running_low = sides.append, highs.append, lows.append
    top = bottom = prices[0]
    for price in prices:
        if price > previous:
            side("1")
        elif price < previous:
            side("5")
        else:
            side("1" if draw() < 0.5 else "5")
        previous = price
        if price > top:
            top = price
        elif price < bottom:
            bottom = price
        running_high(top)
        running_low(bottom)
    cum_volumes = list(accumulate(volumes))
    cum_values = [value * c // volume for c in cum_volumes]
    return _Ticks(offsets, prices, volumes, sides, cum_volumes, cum_values, highs, lows)


def _bridge(rng: random.Random, count: int, open_: int, high: int, low: int, close: int) -> list[int]:
    """`count` prices from `open_` to `close` that reach exactly `high` and `low` and never leave them."""
    high_at, low_at = rng.sample(range(1, count - 1), 2)
    anchors = sorted({0: open_, count - 1: close, high_at: high, low_at: low}.items())
    spread = (high - low) * 0.2
    draw, bits, normals = rng.getrandbits, NORMAL_BITS, NORMALS
    unit = tick_size(low)
    uniform_grid = tick_size(high) == unit
    prices: list[int] = []
    for (a, pa), (b, pb) in itertools.pairwise(anchors):
        prices.append(pa)
        step = (pb - pa) / (b - a)
        if uniform_grid:  # one price unit over the whole range: snap with integer steps
            prices += [
                high if (level := pa + step * k + normals[draw(bits)] * spread) >= high
                else low if level <= low
                else low + int((level - low) / unit + 0.5) * unit
                for k in range(1, b - a)
            ]
        else:
            prices += [
                high if (level := pa + step * k + normals[draw(bits)] * spread) >= high
                else low if level <= low
                else min(high, max(low, snap(level)))
                for k in range(1, b - a)
            ]
    prices.append(close)
    return prices


def _fix_sum(volumes: list[int], total: int) -> None:
    """Adjust `volumes` (each >= 1, sum(volumes) close to `total`) so they add up to `total` exactly."""
    diff = total - sum(volumes)
    if diff >= 0:
        volumes[volumes.index(max(volumes))] += diff
        return
    for i in sorted(range(len(volumes)), key=volumes.__getitem__, reverse=True):
        take = min(-diff, volumes[i] - 1)
        volumes[i] -= take
        diff += take
        if diff == 0:
            return
