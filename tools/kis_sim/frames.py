"""H0STCNT0 / H0STASP0 record and frame text, as the real KIS WebSocket sends them.

The feed formats each trade once and shares the text between every session subscribed to the
symbol, so the formatter is the hot path: one f-string per record, no per-record validation.
Columns the market model does not carry (buy/sell counts, trade strength, high/low times) are
accumulated here per symbol from the trades seen, which is what a real feed's values also are.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from kis.protocol import SIGN_FALL, SIGN_FLAT, SIGN_LOWER_LIMIT, SIGN_RISE, SIGN_UPPER_LIMIT
from tools.kis_sim.listings import price_limits, tick_size

MAX_RECORDS_PER_FRAME = 999
BOOK_LEVELS = 10


class TradeLike(Protocol):
    """The fields of the market model's `Trade` that a record needs."""

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


class SymbolFacts(Protocol):
    """Static per-symbol numbers some columns are relative to (the market's `Listing` has them)."""

    listed_shares: int
    prev_volume: int


def sign_of(price: int, prev_close: int, upper: int, lower: int) -> str:
    if price >= upper:
        return SIGN_UPPER_LIMIT
    if price <= lower:
        return SIGN_LOWER_LIMIT
    if price > prev_close:
        return SIGN_RISE
    if price < prev_close:
        return SIGN_FALL
    return SIGN_FLAT


def _diff_sign(diff: int) -> str:
    return SIGN_RISE if diff > 0 else SIGN_FALL if diff < 0 else SIGN_FLAT


def _pct(num: float, den: float) -> str:
    return f"{num * 100 / den:.2f}" if den else "0.00"


def _avg(value: int, volume: int, price: int) -> str:
    """Volume-weighted average price so far (WGHN_AVRG_STCK_PRC)."""
    return f"{value / volume:.2f}" if volume else f"{price}.00"


class _SymbolState:
    """Running counts for one symbol (what a real feed accumulates over the day) and its constant columns."""

    __slots__ = (
        "buy_count",
        "buy_volume",
        "day",
        "hhmmss",
        "high",
        "high_hour",
        "listed",
        "low",
        "low_hour",
        "lower",
        "minute_of_day",
        "prev_volume",
        "second",
        "sell_count",
        "sell_volume",
        "upper",
    )

    def __init__(self, trade: TradeLike, facts: SymbolFacts | None) -> None:
        # Split the volume traded before we first saw the symbol evenly, so ratios start plausible.
        before = trade.cum_volume - trade.volume
        self.buy_volume = before // 2
        self.sell_volume = before - self.buy_volume
        self.buy_count = self.buy_volume // 100
        self.sell_count = self.sell_volume // 100
        self.high = trade.high
        self.low = trade.low
        self.upper, self.lower = price_limits(trade.prev_close)
        self.listed = facts.listed_shares if facts else 0
        self.prev_volume = facts.prev_volume if facts else 0
        t = trade.time
        self.day = f"{t.year:04d}{t.month:02d}{t.day:02d}"
        self.second = -1
        self.hhmmss = ""
        self.minute_of_day = 0
        self.high_hour = self.low_hour = self.clock_columns(t)

    def clock_columns(self, t: datetime) -> str:
        """HHMMSS of `t`, recomputed only when the second changes (many trades share one)."""
        second = t.hour * 3600 + t.minute * 60 + t.second
        if second != self.second:
            self.second = second
            self.hhmmss = f"{t.hour:02d}{t.minute:02d}{t.second:02d}"
            self.minute_of_day = second // 60
        return self.hhmmss


class TradeFormatter:
    """Turns market trades into H0STCNT0 records (46 `^`-separated columns)."""

    def __init__(self, facts: Mapping[str, SymbolFacts] | None = None) -> None:
        self._facts = facts or {}
        self._states: dict[str, _SymbolState] = {}

    def record(self, trade: TradeLike) -> str:
        code = trade.code
        state = self._states.get(code)
        if state is None:
            state = self._states[code] = _SymbolState(trade, self._facts.get(code))
        hhmmss = state.clock_columns(trade.time)
        volume = trade.volume
        if trade.side == "1":
            state.buy_count += 1
            state.buy_volume += volume
        else:
            state.sell_count += 1
            state.sell_volume += volume
        high, low = state.high, state.low
        if trade.high > high:
            state.high = high = trade.high
            state.high_hour = hhmmss
        if trade.low < low:
            state.low = low = trade.low
            state.low_hour = hhmmss
        buy_volume, sell_volume = state.buy_volume, state.sell_volume
        price, prev_close, cum_volume, day_open = trade.price, trade.prev_close, trade.cum_volume, trade.open
        diff = price - prev_close
        prev_volume = state.prev_volume
        # Yesterday's volume up to this time of day, assuming an even spread over the 390-minute session.
        prev_same_hour = prev_volume * max(1, min(390, state.minute_of_day - 539)) // 390
        ask_q1 = 50 + (cum_volume * 7919) % 20_000
        bid_q1 = 50 + (cum_volume * 104_729) % 20_000
        open_diff = price - day_open
        high_diff = price - high
        low_diff = price - low
        return (
            f"{code}^{hhmmss}^{price}^{sign_of(price, prev_close, state.upper, state.lower)}^{diff}^"
            f"{_pct(diff, prev_close)}^{_avg(trade.cum_value, cum_volume, price)}^{day_open}^{high}^{low}^"
            f"{trade.ask1}^{trade.bid1}^{volume}^{cum_volume}^{trade.cum_value}^"
            f"{state.sell_count}^{state.buy_count}^{state.buy_count - state.sell_count}^"
            f"{_pct(buy_volume, sell_volume)}^{sell_volume}^{buy_volume}^"
            f"{trade.side}^{_pct(buy_volume, buy_volume + sell_volume)}^{_pct(cum_volume, prev_volume)}^"
            f"090000^{_diff_sign(open_diff)}^{open_diff}^"
            f"{state.high_hour}^{_diff_sign(high_diff)}^{high_diff}^"
            f"{state.low_hour}^{_diff_sign(low_diff)}^{low_diff}^"
            f"{state.day}^20^N^{ask_q1}^{bid_q1}^{ask_q1 * 37}^{bid_q1 * 41}^"
            f"{_pct(cum_volume, state.listed)}^{prev_same_hour}^{_pct(cum_volume, prev_same_hour)}^"
            f"0^^{day_open}"
        )

    def book_record(self, code: str, ask1: int, bid1: int, cum_volume: int, at: datetime) -> str:
        """An H0STASP0 record (59 columns): ten price levels each side of the best ask/bid at `at`."""
        seed = (cum_volume + 1) * 2_654_435_761 + at.second * 40_503 + at.microsecond
        asks = []
        bids = []
        ask, bid = ask1, bid1
        for _ in range(BOOK_LEVELS):
            asks.append(ask)
            bids.append(bid)
            ask += tick_size(ask)
            bid = max(0, bid - tick_size(max(bid - 1, 1)))
        ask_qty = [100 + (seed >> (3 * i)) % 30_000 for i in range(BOOK_LEVELS)]
        bid_qty = [100 + (seed >> (3 * i + 1)) % 30_000 for i in range(BOOK_LEVELS)]
        fields = (
            code, f"{at.hour:02d}{at.minute:02d}{at.second:02d}", "0",
            *map(str, asks), *map(str, bids), *map(str, ask_qty), *map(str, bid_qty),
            str(sum(ask_qty)), str(sum(bid_qty)), "0", "0",
            "0", "0", "0", "0", SIGN_FLAT, "0.00",
            str(cum_volume), str(seed % 2_001 - 1_000), str(seed % 1_999 - 999), "0", "0", "0",
        )
        return "^".join(fields)


def data_frames(tr_id: str, records: list[str]) -> list[str]:
    """`0|TR_ID|NNN|payload` frames, split so no frame carries more than 999 records."""
    frames = []
    for i in range(0, len(records), MAX_RECORDS_PER_FRAME):
        chunk = records[i:i + MAX_RECORDS_PER_FRAME]
        frames.append(f"0|{tr_id}|{len(chunk):03d}|{'^'.join(chunk)}")
    return frames


def encrypted_frame(tr_id: str, ciphertext_b64: str) -> str:
    return f"1|{tr_id}|001|{ciphertext_b64}"
