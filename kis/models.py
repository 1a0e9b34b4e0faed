"""Typed results of the KIS REST calls (frozen; times are aware KST)."""

from __future__ import annotations

from datetime import date

from pydantic import AwareDatetime, BaseModel, ConfigDict


class KisModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MinuteBar(KisModel):
    """One minute of trading; `time` is the bar's KST time as KIS reports it (stck_cntg_hour)."""

    symbol: str
    time: AwareDatetime
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int


class DailyBar(KisModel):
    symbol: str
    day: date
    open: int
    high: int
    low: int
    close: int
    volume: int
    value: int
