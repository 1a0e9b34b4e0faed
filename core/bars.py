"""Minute and daily bars as KIS reports them: the values gap recovery and the baselines are built from.

In `core` because its pure functions take them; `kis.models` parses them from KIS's answers.
"""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Bar(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MinuteBar(Bar):
    """One minute of trading; `time` is the bar's KST time as KIS reports it (stck_cntg_hour)."""

    symbol: str
    time: AwareDatetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int


class DailyBar(Bar):
    symbol: str
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int
