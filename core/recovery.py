"""What a gap becomes on disk: recovery records built from REST minute bars, or a gap marker.

Formats follow symbol_selection_architecture.md ("Gap Detection Mechanism"): recovery records go to
`data/observer/scalp/{provider}/{market}/{YYYYMMDD}/recovery_{HHMMSS}_{symbol}.jsonl`, one record per minute
bar; markers for gaps that cannot be (or were not) recovered go to
`data/observer/system/gaps/{provider}/{YYYYMMDD}_gaps.jsonl`. `to_json_dict()` gives the exact line.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from core.bars import MinuteBar
from core.gaps import Gap

BAR_LENGTH = timedelta(minutes=1)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json_dict(self) -> dict[str, Any]:
        """The JSONL line as a dict (aware KST ISO-8601 times)."""
        return self.model_dump(mode="json")


class OriginalGap(_Record):
    start: AwareDatetime
    end: AwareDatetime
    duration_seconds: float
    reason: str


class RecoveryMeta(_Record):
    source: Literal["gap_recovery"] = "gap_recovery"
    recovery_method: Literal["rest_api_minute_bar"] = "rest_api_minute_bar"
    original_gap: OriginalGap
    recovered_at: AwareDatetime


class RecoveredPrice(_Record):
    open: float
    high: float
    low: float
    close: float


class RecoveredInstrument(_Record):
    symbol: str
    timestamp: AwareDatetime
    price: RecoveredPrice
    volume: int
    data_quality: Literal["recovered"] = "recovered"


class RecoveryRecord(_Record):
    """One recovered minute bar in the seed's format: `{"meta": {...}, "instruments": [{...}]}`."""

    meta: RecoveryMeta
    instruments: tuple[RecoveredInstrument, ...]


class GapMarker(_Record):
    """The seed's unrecoverable-gap record. `reason` is why the gap happened (the gap's own reason);
    `detail` says why it was not back-filled (e.g. longer than 60 s, no minute bars); `expected` tells
    an announced outage from a detected silence."""

    timestamp: AwareDatetime
    gap_type: Literal["unrecoverable"] = "unrecoverable"
    symbol: str
    start_time: AwareDatetime
    end_time: AwareDatetime
    duration_seconds: float
    reason: str
    detail: str
    expected: bool


def overlaps(bar: MinuteBar, gap: Gap) -> bool:
    """A bar stamped `t` covers [t, t + 1 min); it overlaps the gap if the two intervals intersect.

    A zero-length gap (a single instant) overlaps the bar that contains that instant.
    """
    bar_end = bar.time + BAR_LENGTH
    if gap.start == gap.end:
        return bar.time <= gap.start < bar_end
    return bar.time < gap.end and bar_end > gap.start


def build_recovery_records(
    gap: Gap, bars: Sequence[MinuteBar], *, recovered_at: datetime
) -> tuple[RecoveryRecord, ...]:
    """One record per bar of `gap.symbol` that overlaps the gap, in time order, each bar time once.

    Bars of other symbols and bars outside the gap are ignored (the REST call returns whole stretches).
    If KIS returns the same minute twice, the last copy wins (it is the more complete one).
    """
    original = OriginalGap(start=gap.start, end=gap.end, duration_seconds=gap.duration_seconds,
                           reason=gap.reason)
    meta = RecoveryMeta(original_gap=original, recovered_at=recovered_at)
    chosen = {bar.time: bar for bar in bars if bar.symbol == gap.symbol and overlaps(bar, gap)}
    return tuple(
        RecoveryRecord(
            meta=meta,
            instruments=(
                RecoveredInstrument(
                    symbol=bar.symbol,
                    timestamp=bar.time,
                    price=RecoveredPrice(open=bar.open, high=bar.high, low=bar.low, close=bar.close),
                    volume=bar.volume,
                ),
            ),
        )
        for _, bar in sorted(chosen.items())
    )


def gap_marker(gap: Gap, reason: str, *, at: datetime) -> GapMarker:
    """The marker written at `at` for a gap that is not back-filled, `reason` saying why not."""
    return GapMarker(
        timestamp=at,
        symbol=gap.symbol,
        start_time=gap.start,
        end_time=gap.end,
        duration_seconds=gap.duration_seconds,
        reason=gap.reason,
        detail=reason,
        expected=gap.expected,
    )
