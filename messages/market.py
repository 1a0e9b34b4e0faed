"""Market data between actors: the universe, Track A scans, Track B trades (one message per socket read)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import ConfigDict, SkipValidation, model_validator

from kis.models import Holding, MultiQuote
from kis.ticks import ExecutionNotice, TradeTick
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

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    account: str
    scan_no: int
    rows: SkipValidation[tuple[MultiQuote, ...]]  # checked when parsed: a pass has about 1,000
    lines: SkipValidation[tuple[bytes, ...]] = ()
    """Each row's `json_fields()` in UTF-8, rendered where it was read (the fetch worker's child), so the
    recorder only writes them; rendered here from `rows` when not given."""
    calls: int
    failed_calls: int = 0
    duration_seconds: float

    @model_validator(mode="before")
    @classmethod
    def _render_lines(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("lines"):
            return {**data, "lines": tuple(row.json_fields().encode() for row in data.get("rows", ()))}
        return data

    @model_validator(mode="after")
    def _one_line_a_row(self) -> ScanCompleted:
        if len(self.lines) != len(self.rows):
            raise ValueError(f"a scan of {len(self.rows)} rows with {len(self.lines)} rendered lines")
        return self


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


class ExecutionsReceived(Message):
    """Decrypted execution notices of one account (fills pin or release held symbols)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    account: str
    notices: SkipValidation[tuple[ExecutionNotice, ...]]


class HoldingsLoaded(Message):
    """The balance inquiry's holdings of one account at start."""

    account: str
    holdings: tuple[Holding, ...]
