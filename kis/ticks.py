"""Values decoded from the KIS WebSocket: ticks, order books, program trading, execution notices and control
messages.

Ticks arrive by the thousand per second, so ticks and trade frames are named tuples and the rest slots
dataclasses, not pydantic models. Every data value keeps its raw field tuple so a recorder can store the frame
losslessly, and a tick names the TR it arrived on (KRX, NXT or the unified feed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, time
from typing import NamedTuple

from core.subscriptions import AckCode
from kis.protocol import FEED_OF_TRADE_TR, TrId


class TradeTick(NamedTuple):
    """One trade record of H0STCNT0 (KRX), H0NXCNT0 (NXT) or H0UNCNT0 (unified); `exchange_time` is
    BSOP_DATE + STCK_CNTG_HOUR in KST. `fields` (the raw record) stays out of the repr; `tr_id` is the
    feed's TR, which says the venue (`feed`)."""

    symbol: str
    exchange_time: datetime
    price: int
    change: int
    sign: str
    change_rate: float
    volume: int
    cum_volume: int
    cum_value: int
    open: int
    high: int
    low: int
    ask1: int
    bid1: int
    side: str
    strength: float
    hour_class: str
    fields: tuple[str, ...]
    tr_id: str = TrId.TRADE.value

    @property
    def feed(self) -> str:
        """`krx`, `nxt` or `unified`: which venues' trades the tick's TR carries."""
        return FEED_OF_TRADE_TR.get(self.tr_id, "krx")

    def __repr__(self) -> str:
        named = ((name, value) for name, value in zip(self._fields, self, strict=True) if name != "fields")
        return f"TradeTick({', '.join(f'{name}={value!r}' for name, value in named)})"


@dataclass(frozen=True, slots=True)
class OrderBook:
    """One H0STASP0 / H0NXASP0 / H0UNASP0 record. The frame has no date, so the time stays the raw KST
    `HHMMSS` string."""

    symbol: str
    hour: str
    hour_class: str
    asks: tuple[int, ...]
    bids: tuple[int, ...]
    ask_sizes: tuple[int, ...]
    bid_sizes: tuple[int, ...]
    total_ask_size: int
    total_bid_size: int
    cum_volume: int
    fields: tuple[str, ...] = field(repr=False)

    def exchange_time(self, received_at: datetime) -> datetime:
        """`hour` on the day the record arrived (`received_at`, aware KST)."""
        return stamp(self.hour, received_at)


@dataclass(frozen=True, slots=True)
class ProgramTrade:
    """One H0STPGM0 / H0NXPGM0 / H0UNPGM0 record: the day's program trading of a symbol so far (volumes in
    shares, values in KRW; net = buy - sell) and the program orders resting at `hour` (raw KST HHMMSS)."""

    symbol: str
    hour: str
    sell_volume: int
    sell_value: int
    buy_volume: int
    buy_value: int
    net_volume: int
    net_value: int
    sell_resting: int
    buy_resting: int
    net_resting: int
    fields: tuple[str, ...] = field(repr=False)

    def exchange_time(self, received_at: datetime) -> datetime:
        """`hour` on the day the record arrived (`received_at`, aware KST)."""
        return stamp(self.hour, received_at)


def stamp(hour: str, received_at: datetime) -> datetime:
    """A frame's `HHMMSS` (no date on book and program frames) on the day of `received_at`; the arrival
    time itself when the text is no time of day."""
    hour = hour.zfill(6)
    if len(hour) != 6 or not hour.isdigit() or hour[:2] > "23" or hour[2:4] > "59" or hour[4:] > "59":
        return received_at
    moment = time(int(hour[:2]), int(hour[2:4]), int(hour[4:]), tzinfo=received_at.tzinfo)
    return datetime.combine(received_at.date(), moment)


@dataclass(frozen=True, slots=True)
class ExecutionNotice:
    """One decrypted H0STCNI0/H0STCNI9 record: an order receipt (`is_fill` False) or a fill.

    Account fields stay in `fields` only and out of the repr.
    """

    order_no: str
    original_order_no: str
    side: str
    symbol: str
    filled_qty: int
    filled_price: int
    hour: str
    rejected: bool
    is_fill: bool
    order_qty: int
    fields: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class NoticeKeys:
    """AES-256-CBC key and iv from a subscribe ack; kept out of the repr."""

    key: str = field(repr=False)
    iv: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Ack:
    """The server's JSON answer to a subscribe/unsubscribe (or a session-level refusal)."""

    tr_id: str
    tr_key: str
    rt_cd: str
    msg_cd: str
    msg1: str
    code: AckCode | None
    encrypted: bool
    keys: NoticeKeys | None

    @property
    def ok(self) -> bool:
        return self.rt_cd == "0"


@dataclass(frozen=True, slots=True)
class PingPong:
    """The server heartbeat; a client must send `raw` back unchanged as a text message."""

    raw: str


class TradeFrame(NamedTuple):
    """The trade records of one H0STCNT0 / H0NXCNT0 / H0UNCNT0 frame (a named tuple like `TradeTick`)."""

    tr_id: str
    ticks: tuple[TradeTick, ...]


@dataclass(frozen=True, slots=True)
class OrderBookFrame:
    tr_id: str
    books: tuple[OrderBook, ...]


@dataclass(frozen=True, slots=True)
class ProgramTradeFrame:
    tr_id: str
    trades: tuple[ProgramTrade, ...]


@dataclass(frozen=True, slots=True)
class ExecutionNoticeFrame:
    tr_id: str
    notices: tuple[ExecutionNotice, ...]


@dataclass(frozen=True, slots=True)
class FuturesTrade:
    """One H0IFCNT0 record (an index futures trade): prices in index points, volumes in contracts. The frame
    has no date, so the time stays the raw KST `HHMMSS` string (`hour`)."""

    symbol: str
    hour: str
    price: float
    change: float
    change_rate: float
    open: float
    high: float
    low: float
    volume: int
    cum_volume: int
    cum_value: int
    theoretical: float
    basis: float
    open_interest: int
    ask1: float
    bid1: float
    fields: tuple[str, ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class FuturesTradeFrame:
    tr_id: str
    trades: tuple[FuturesTrade, ...]


@dataclass(frozen=True, slots=True)
class OtherFrame:
    """A well-formed data frame of a TR this codec has no typed view for (e.g. H0STMKO0, H0UNANC0)."""

    tr_id: str
    count: int
    fields: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FrameError:
    """Why a frame could not be decoded, with a short excerpt that never carries an approval key.

    `tr_id` and `tr_key` are what a data frame's header and first field still say, when they read as
    a TR id and a code ("" otherwise): a garbled trade frame usually still names its symbol, so the
    ticks it carried can be accounted for as a gap of that symbol instead of all of them.
    """

    reason: str
    raw_excerpt: str
    tr_id: str = ""
    tr_key: str = ""

    @property
    def may_carry_trades(self) -> bool:
        """False only when the frame surely was no trade frame: a control message or another known TR."""
        if self.raw_excerpt.startswith("{"):
            return False
        return self.tr_id not in _NON_TRADE_TRS


_NON_TRADE_TRS = frozenset(tr.value for tr in TrId if tr.value.startswith("H0")) - frozenset(FEED_OF_TRADE_TR)

Decoded = (
    Ack | PingPong | TradeFrame | OrderBookFrame | ProgramTradeFrame | ExecutionNoticeFrame
    | FuturesTradeFrame | OtherFrame | FrameError
)
