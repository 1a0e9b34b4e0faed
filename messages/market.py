"""Market data between actors: the universe, Track A scans, Track B trades (one message per socket read)."""

from __future__ import annotations

from datetime import date

from pydantic import ConfigDict, SkipValidation

from kis.models import Holding, MultiQuote
from kis.ticks import ExecutionNotice, FuturesTrade, OrderBook, ProgramTrade, TradeTick
from messages.base import Message


class SymbolProfile(Message):
    """What the observer knows of one universe symbol before the open (baselines from daily bars)."""

    symbol: str
    name: str
    market: str
    market_cap: int | None
    prev_close: int
    avg_volume_20d: float = 0.0
    avg_turnover_20d: float = 0.0
    atr_14d: float = 0.0
    ma_20d: float = 0.0


class UniverseReady(Message):
    """The day's frozen universe, best market cap first. `fallback` when an earlier snapshot stood in."""

    day: date
    profiles: tuple[SymbolProfile, ...]
    fallback: bool = False


class ScanCompleted(Message):
    """One full Track A pass over the universe by one account's REST client."""

    account: str
    scan_no: int
    rows: tuple[MultiQuote, ...]
    calls: int
    failed_calls: int = 0
    duration_seconds: float
    closing: bool = False
    """The closing pass: the prices after KRX's closing auction (`DayEvent.CLOSING_PASS`)."""


class TicksReceived(Message):
    """The trade records that arrived together: one H0STCNT0 frame, or the `frames` frames read from the
    socket in one read (a burst), in arrival order. `at` and `received_mono` (time.monotonic, for latency)
    are stamped when the first of them was decoded.

    Sent once per burst on the hot path, so the tick tuple is not validated record by record.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    account: str
    ticks: SkipValidation[tuple[TradeTick, ...]]
    received_mono: float
    frames: int = 1


class OrderBooksReceived(Message):
    """Order book records of one frame (H0STASP0 / H0NXASP0 / H0UNASP0 as `tr_id` says), as they arrived."""

    account: str
    tr_id: str
    books: tuple[OrderBook, ...]


class ProgramTradesReceived(Message):
    """Program trading records of one frame (H0STPGM0 / H0NXPGM0 / H0UNPGM0 as `tr_id` says)."""

    account: str
    tr_id: str
    trades: tuple[ProgramTrade, ...]


class ExecutionsReceived(Message):
    """Decrypted execution notices of one account (fills pin or release held symbols)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    account: str
    notices: SkipValidation[tuple[ExecutionNotice, ...]]


class HoldingsLoaded(Message):
    """The balance inquiry's holdings of one account at start."""

    account: str
    holdings: tuple[Holding, ...]


class FuturesTradesReceived(Message):
    """Index futures trades (H0IFCNT0) of one frame, from the connection actor to the minute jobs, which
    record them beside the futures candles and publish them. `day` is the KST day they were received on:
    the frame carries a time of day only."""

    account: str
    day: date
    trades: tuple[FuturesTrade, ...]
