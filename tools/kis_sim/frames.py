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


class _SymbolState:
    """Running counts for one symbol: what a real feed accumulates over the day."""

    __slots__ = (
        "buy_count", "buy_volume", "high", "high_hour", "limits", "low", "low_hour", "open_hour",
        "sell_count", "sell_volume", "started_at",
    )

    def __init__(self, trade: TradeLike, hhmmss: str) -> None:
        # Split the volume traded before we first saw the symbol evenly, so ratios start plausible.
        before = trade.cum_volume - trade.volume
        self.buy_volume = before // 2
        self.sell_volume = before - self.buy_volume
        self.buy_count = self.buy_volume // 100
        self.sell_count = self.sell_volume // 100
        self.high = trade.high
        self.low = trade.low
        self.open_hour = "090000"
        self.high_hour = hhmmss
        self.low_hour = hhmmss
        self.limits = price_limits(trade.prev_close)
        self.started_at = trade.time


class TradeFormatter:
    """Turns market trades into H0STCNT0 records (46 `^`-separated columns)."""

    def __init__(self, facts: Mapping[str, SymbolFacts] | None = None) -> None:
        self._facts = facts or {}
        self._states: dict[str, _SymbolState] = {}

    def record(self, trade: TradeLike) -> str:
        t = trade.time
        hhmmss = f"{t.hour:02d}{t.minute:02d}{t.second:02d}"
        state = self._states.get(trade.code)
        if state is None:
            state = self._states[trade.code] = _SymbolState(trade, hhmmss)
        if trade.side == "1":
            state.buy_count += 1
            state.buy_volume += trade.volume
        else:
            state.sell_count += 1
            state.sell_volume += trade.volume
        if trade.high > state.high:
            state.high, state.high_hour = trade.high, hhmmss
        if trade.low < state.low:
            state.low, state.low_hour = trade.low, hhmmss

        price, prev_close, cum_volume = trade.price, trade.prev_close, trade.cum_volume
        upper, lower = state.limits
        diff = price - prev_close
        facts = self._facts.get(trade.code)
        listed = facts.listed_shares if facts else 0
        prev_volume = facts.prev_volume if facts else 0
        # Yesterday's volume up to this time of day, assuming an even spread over the 390-minute session.
        minutes = max(1, min(390, (t.hour - 9) * 60 + t.minute + 1))
        prev_same_hour = prev_volume * minutes // 390
        ask_q1 = 50 + (cum_volume * 7919) % 20_000
        bid_q1 = 50 + (cum_volume * 104_729) % 20_000
        open_diff = price - trade.open
        high_diff = price - state.high
        low_diff = price - state.low
        avg = trade.cum_value / cum_volume if cum_volume else price
        total_volume = state.buy_volume + state.sell_volume
        return (
            f"{trade.code}^{hhmmss}^{price}^{sign_of(price, prev_close, upper, lower)}^{diff}^"
            f"{_pct(diff, prev_close)}^{avg:.2f}^{trade.open}^{state.high}^{state.low}^"
            f"{trade.ask1}^{trade.bid1}^{trade.volume}^{cum_volume}^{trade.cum_value}^"
            f"{state.sell_count}^{state.buy_count}^{state.buy_count - state.sell_count}^"
            f"{_pct(state.buy_volume, state.sell_volume)}^{state.sell_volume}^{state.buy_volume}^"
            f"{trade.side}^{_pct(state.buy_volume, total_volume)}^{_pct(cum_volume, prev_volume)}^"
            f"{state.open_hour}^{_diff_sign(open_diff)}^{open_diff}^"
            f"{state.high_hour}^{_diff_sign(high_diff)}^{high_diff}^"
            f"{state.low_hour}^{_diff_sign(low_diff)}^{low_diff}^"
            f"{t.year:04d}{t.month:02d}{t.day:02d}^20^N^{ask_q1}^{bid_q1}^{ask_q1 * 37}^{bid_q1 * 41}^"
            f"{_pct(cum_volume, listed)}^{prev_same_hour}^{_pct(cum_volume, prev_same_hour)}^0^^{trade.open}"
        )

    def book_record(self, trade: TradeLike, at: datetime) -> str:
        """An H0STASP0 record (59 columns) around the trade's best ask/bid at time `at`."""
        seed = trade.cum_volume * 2_654_435_761 + at.second
        asks = []
        bids = []
        ask = trade.ask1
        bid = trade.bid1
        for _ in range(BOOK_LEVELS):
            asks.append(ask)
            bids.append(max(bid, 0))
            ask += tick_size(ask)
            bid -= tick_size(max(bid - 1, 1))
        ask_qty = [100 + (seed >> (3 * i)) % 30_000 for i in range(BOOK_LEVELS)]
        bid_qty = [100 + (seed >> (3 * i + 1)) % 30_000 for i in range(BOOK_LEVELS)]
        hhmmss = f"{at.hour:02d}{at.minute:02d}{at.second:02d}"
        total_ask, total_bid = sum(ask_qty), sum(bid_qty)
        fields = (
            trade.code, hhmmss, "0",
            *map(str, asks), *map(str, bids), *map(str, ask_qty), *map(str, bid_qty),
            str(total_ask), str(total_bid), "0", "0",
            "0", "0", "0", "0", SIGN_FLAT, "0.00",
            str(trade.cum_volume), str(seed % 2_001 - 1_000), str(seed % 1_999 - 999), "0", "0", "0",
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
