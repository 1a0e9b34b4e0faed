"""Trade (H0STCNT0 / H0NXCNT0 / H0UNCNT0), order book and program trading record and frame text, as KIS
sends them.

The feed formats each trade once and shares the text between every session subscribed to the
symbol, so the formatter is the hot path: one f-string per record, no per-record validation.
Columns the market model does not carry (buy/sell counts, trade strength, high/low times) are
accumulated here per symbol from the trades seen, which is what a real feed's values also are.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Protocol

from kis.protocol import SIGN_FALL, SIGN_FLAT, SIGN_LOWER_LIMIT, SIGN_RISE, SIGN_UPPER_LIMIT
from tools.kis_sim.listings import price_limits, tick_size
from tools.kis_sim.market import Trade

MAX_RECORDS_PER_FRAME = 999
BOOK_LEVELS = 10


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


class _SymbolState:
    """Running counts for one symbol (what a real feed accumulates over the day) and its constant columns.

    Columns that depend only on the price and on values that rarely move (the previous close, the day's
    open, high and low) are kept as ready strings: prices repeat on the KRX grid, so most records reuse them.
    """

    __slots__ = (
        "buy_count",
        "buy_volume",
        "day",
        "day_open",
        "day_tail",
        "extremes",
        "heads",
        "hhmmss",
        "high",
        "high_hour",
        "listed",
        "low",
        "low_hour",
        "lower",
        "marks",
        "minute_of_day",
        "open_tail",
        "prev_close",
        "prev_volume",
        "second",
        "sell_count",
        "sell_volume",
        "upper",
    )

    def __init__(self, trade: Trade, facts: SymbolFacts | None) -> None:
        # Split the volume traded before we first saw the symbol evenly, so ratios start plausible.
        before = trade.cum_volume - trade.volume
        self.buy_volume = before // 2
        self.sell_volume = before - self.buy_volume
        self.buy_count = self.buy_volume // 100
        self.sell_count = self.sell_volume // 100
        self.high = trade.high
        self.low = trade.low
        self.listed = facts.listed_shares if facts else 0
        self.prev_volume = facts.prev_volume if facts else 0
        t = trade.time
        self.day = f"{t.year:04d}{t.month:02d}{t.day:02d}"
        self.day_tail = f"{self.day}^20^N^"
        self.second = -1
        self.hhmmss = ""
        self.minute_of_day = 0
        self.high_hour = self.low_hour = self.clock_columns(t)
        self.heads: dict[int, str] = {}
        self.marks: dict[int, str] = {}
        self.rebase(trade.prev_close, trade.open)

    def clock_columns(self, t: datetime) -> str:
        """HHMMSS of `t`, recomputed only when the second changes (many trades share one)."""
        second = t.hour * 3600 + t.minute * 60 + t.second
        if second != self.second:
            self.second = second
            self.hhmmss = f"{t.hour:02d}{t.minute:02d}{t.second:02d}"
            self.minute_of_day = second // 60
        return self.hhmmss

    def rebase(self, prev_close: int, day_open: int) -> None:
        """Take a (new) previous close and day open: every string derived from them is rebuilt."""
        self.prev_close, self.day_open = prev_close, day_open
        self.upper, self.lower = price_limits(prev_close)
        self.open_tail = f"0^^{day_open}"
        self.heads.clear()
        self.new_extremes()

    def new_extremes(self) -> None:
        """The day's high or low (or open) moved: the strings relative to them are stale."""
        self.extremes = f"{self.day_open}^{self.high}^{self.low}^"
        self.marks.clear()

    def head(self, price: int) -> str:
        """STCK_PRPR ^ PRDY_VRSS_SIGN ^ PRDY_VRSS ^ PRDY_CTRT ^ for `price`."""
        prev_close = self.prev_close
        diff = price - prev_close
        if price >= self.upper:
            sign = SIGN_UPPER_LIMIT
        elif price <= self.lower:
            sign = SIGN_LOWER_LIMIT
        else:
            sign = _diff_sign(diff)
        rate = diff * 100 / prev_close if prev_close else 0
        text = self.heads[price] = f"{price}^{sign}^{diff}^{rate:.2f}^"
        return text

    def mark(self, price: int) -> str:
        """OPRC_HOUR .. LWPR_VRSS_PRPR ^: where `price` stands against the day's open, high and low."""
        open_diff, high_diff, low_diff = price - self.day_open, price - self.high, price - self.low
        text = self.marks[price] = (
            f"090000^{_diff_sign(open_diff)}^{open_diff}^"
            f"{self.high_hour}^{_diff_sign(high_diff)}^{high_diff}^"
            f"{self.low_hour}^{_diff_sign(low_diff)}^{low_diff}^"
        )
        return text


def _diff_sign(diff: int) -> str:
    return SIGN_RISE if diff > 0 else SIGN_FALL if diff < 0 else SIGN_FLAT


class TradeFormatter:
    """Turns market trades into H0STCNT0-layout records (46 `^`-separated columns; H0NXCNT0 and H0UNCNT0
    have the same layout). Use one formatter per feed: its running counts are that feed's."""

    def __init__(self, facts: Mapping[str, SymbolFacts] | None = None) -> None:
        self._facts = facts or {}
        self._states: dict[str, _SymbolState] = {}

    def record(self, trade: Trade) -> str:
        """One H0STCNT0 record. Hot: the per-trade columns are formatted inline, the price-dependent ones
        come from the symbol's ready strings; a zero denominator reads "0.00", as on the real feed."""
        code = trade.code
        state = self._states.get(code)
        if state is None:
            state = self._states[code] = _SymbolState(trade, self._facts.get(code))
        hhmmss = state.clock_columns(trade.time)
        volume, side = trade.volume, trade.side
        if side == "1":
            buy_count = state.buy_count = state.buy_count + 1
            buy_volume = state.buy_volume = state.buy_volume + volume
            sell_count, sell_volume = state.sell_count, state.sell_volume
        else:
            sell_count = state.sell_count = state.sell_count + 1
            sell_volume = state.sell_volume = state.sell_volume + volume
            buy_count, buy_volume = state.buy_count, state.buy_volume
        price, cum_volume, cum_value, day_open = trade.price, trade.cum_volume, trade.cum_value, trade.open
        if trade.prev_close != state.prev_close or day_open != state.day_open:
            state.rebase(trade.prev_close, day_open)
        if trade.high > state.high:
            state.high, state.high_hour = trade.high, hhmmss
            state.new_extremes()
        if trade.low < state.low:
            state.low, state.low_hour = trade.low, hhmmss
            state.new_extremes()
        head = state.heads.get(price) or state.head(price)
        mark = state.marks.get(price) or state.mark(price)
        prev_volume, listed = state.prev_volume, state.listed
        # Yesterday's volume up to this time of day, assuming an even spread over the 390-minute session.
        prev_same_hour = prev_volume * max(1, min(390, state.minute_of_day - 539)) // 390
        ask_q1 = 50 + (cum_volume * 7919) % 20_000
        bid_q1 = 50 + (cum_volume * 104_729) % 20_000
        both = buy_volume + sell_volume
        return (
            f"{code}^{hhmmss}^{head}{cum_value / cum_volume if cum_volume else price:.2f}^{state.extremes}"
            f"{trade.ask1}^{trade.bid1}^{volume}^{cum_volume}^{cum_value}^"
            f"{sell_count}^{buy_count}^{buy_count - sell_count}^"
            f"{buy_volume * 100 / sell_volume if sell_volume else 0:.2f}^{sell_volume}^{buy_volume}^"
            f"{side}^{buy_volume * 100 / both if both else 0:.2f}^"
            f"{cum_volume * 100 / prev_volume if prev_volume else 0:.2f}^{mark}{state.day_tail}"
            f"{ask_q1}^{bid_q1}^{ask_q1 * 37}^{bid_q1 * 41}^"
            f"{cum_volume * 100 / listed if listed else 0:.2f}^{prev_same_hour}^"
            f"{cum_volume * 100 / prev_same_hour if prev_same_hour else 0:.2f}^{state.open_tail}"
        )

    def book_record(
        self, code: str, ask1: int, bid1: int, cum_volume: int, at: datetime, wide: bool = False
    ) -> str:
        """An H0STASP0 record (59 columns): ten price levels each side of the best ask/bid at `at`; `wide`
        adds the six mid-price columns of H0NXASP0 / H0UNASP0 (65 columns)."""
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
            code,
            f"{at.hour:02d}{at.minute:02d}{at.second:02d}",
            "0",
            *map(str, asks),
            *map(str, bids),
            *map(str, ask_qty),
            *map(str, bid_qty),
            str(sum(ask_qty)),
            str(sum(bid_qty)),
            "0",
            "0",
            "0",
            "0",
            "0",
            "0",
            SIGN_FLAT,
            "0.00",
            str(cum_volume),
            str(seed % 2_001 - 1_000),
            str(seed % 1_999 - 999),
            "0",
            "0",
            "0",
        )
        if wide:
            middle = (ask1 + bid1) // 2
            fields += (str(middle), "0", "0", str(middle), "0", "0")  # KMID_*, NMID_*
        return "^".join(fields)


class ProgramFormatter:
    """H0STPGM0-layout records (11 columns; H0NXPGM0 and H0UNPGM0 alike) that agree with the symbol's trading:
    programs take a fixed share of each side of the day's volume (5-15 %, by symbol), their values grow by
    the new volume times the price at each update, net = buy - sell, and the resting program orders vary
    with the volume."""

    def __init__(self) -> None:
        self._totals: dict[str, list[int]] = {}
        """code -> [day volume seen, sell volume, sell value, buy volume, buy value]"""

    def record(self, code: str, price: int, cum_volume: int, at: datetime) -> str:
        seed = zlib.crc32(code.encode())
        totals = self._totals.setdefault(code, [0, 0, 0, 0, 0])
        if cum_volume > totals[0]:
            sell = cum_volume * (5 + seed % 11) // 100
            buy = cum_volume * (5 + (seed >> 8) % 11) // 100
            totals[2] += (sell - totals[1]) * price
            totals[4] += (buy - totals[3]) * price
            totals[0], totals[1], totals[3] = cum_volume, sell, buy
        _, sell_volume, sell_value, buy_volume, buy_value = totals
        sell_resting = 100 + (cum_volume * 7_919 + seed) % 5_000
        buy_resting = 100 + (cum_volume * 104_729 + seed) % 5_000
        return "^".join(map(str, (
            code, f"{at.hour:02d}{at.minute:02d}{at.second:02d}",
            sell_volume, sell_value, buy_volume, buy_value,
            buy_volume - sell_volume, buy_value - sell_value,
            sell_resting, buy_resting, buy_resting - sell_resting,
        )))


def data_frames(tr_id: str, records: list[str]) -> list[str]:
    """`0|TR_ID|NNN|payload` frames, split so no frame carries more than 999 records."""
    frames = []
    for i in range(0, len(records), MAX_RECORDS_PER_FRAME):
        chunk = records[i : i + MAX_RECORDS_PER_FRAME]
        frames.append(f"0|{tr_id}|{len(chunk):03d}|{'^'.join(chunk)}")
    return frames


def encrypted_frame(tr_id: str, ciphertext_b64: str) -> str:
    return f"1|{tr_id}|001|{ciphertext_b64}"
