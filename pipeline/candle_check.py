"""The seed's `EXPECTED_CANDLES_PER_DAY` check after the close: each table's day against its session.

`check_day` counts a symbol's stored minutes of a candle table against the session's (390 for stocks
09:00-15:30, 420 for KOSPI200 futures 08:45-15:45), `refill_stock` / `refill_futures` fetch the missing
ranges again (KIS's minute charts answer today's minutes; every call passes the client's rate limiter),
and `report` puts what is still missing in `system_status`, one row per table and symbol. `day_report` is
the day's report of the same checks, every minute still missing listed as ranges, which `write_day_report`
puts in `observer/system/candles/YYYYMMDD_candles.json`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import psycopg

from core.candles import expected_candles, minute_ranges, missing_minutes
from kis.rest import KisRestClient
from pipeline.derivatives_minute import futures_row
from pipeline.stock_minute import kis_candle, stocks_1m_row
from store.postgres import set_status, stored_minutes

MAX_RANGES_SHOWN = 10


@dataclass(frozen=True, slots=True)
class CandleCheck:
    table: str
    symbol: str
    day: date
    expected: int
    found: int
    missing: list[datetime]

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        """One line: how many of the expected candles are missing, and which minutes."""
        if self.complete:
            return f"{self.found} of {self.expected} candles"
        ranges = minute_ranges(self.missing)
        shown = ", ".join(
            first.strftime("%H:%M") if first == last else f"{first:%H:%M}-{last:%H:%M}"
            for first, last in ranges[:MAX_RANGES_SHOWN]
        )
        more = f" and {len(ranges) - MAX_RANGES_SHOWN} more ranges" if len(ranges) > MAX_RANGES_SHOWN else ""
        return f"missing {len(self.missing)} of {self.expected} candles: {shown}{more}"

    def missing_ranges(self) -> list[str]:
        """Every missing minute as "HH:MM" or "HH:MM-HH:MM" ranges (none left out)."""
        return [first.strftime("%H:%M") if first == last else f"{first:%H:%M}-{last:%H:%M}"
                for first, last in minute_ranges(self.missing)]


def check_day(
    conn: psycopg.Connection[Any], table: str, symbol: str, day: date, open_: time, close: time
) -> CandleCheck:
    return check_minutes(table, symbol, day, open_, close, stored_minutes(conn, table, symbol, day))


def check_minutes(
    table: str, symbol: str, day: date, open_: time, close: time, have: Iterable[datetime]
) -> CandleCheck:
    """The check of minutes already read (from PostgreSQL or Parquet) against the session's."""
    present = {minute for minute in have if minute.date() == day and open_ <= minute.time() < close}
    missing = missing_minutes(day, open_, close, present)
    return CandleCheck(table, symbol, day, expected_candles(open_, close), len(present), missing)


def refill_stock(client: KisRestClient, check: CandleCheck) -> list[dict[str, Any]]:
    """`stocks_1m` rows for the missing minutes KIS still has (today's)."""
    rows: list[dict[str, Any]] = []
    wanted = set(check.missing)
    for first, last in minute_ranges(check.missing):
        bars = client.minute_bars(check.symbol, since=first.time(), until=last.time())
        rows += [stocks_1m_row(kis_candle(bar)) for bar in bars if bar.time in wanted]
    return rows


def refill_futures(client: KisRestClient, check: CandleCheck) -> list[dict[str, Any]]:
    """`futures_{sym3}` rows for the missing minutes of a futures contract."""
    rows: list[dict[str, Any]] = []
    wanted = set(check.missing)
    for first, last in minute_ranges(check.missing):
        chart = client.fuop_minute_bars(check.symbol, since=first, until=last)
        rows += [futures_row(bar) for bar in chart.bars if bar.time in wanted]
    return rows


def day_report(day: date, checks: Sequence[CandleCheck], *, checked_at: datetime) -> dict[str, Any]:
    """The day's report of the candle checks after the refill: per table and symbol the expected and found
    candles and the minutes that still cannot be had; `incomplete` counts the symbols with a gap left."""
    return {
        "day": day.isoformat(),
        "checked_at": checked_at.isoformat(),
        "incomplete": sum(1 for check in checks if not check.complete),
        "checks": [
            {"table": check.table, "symbol": check.symbol, "expected": check.expected, "found": check.found,
             "complete": check.complete, "missing": check.missing_ranges()}
            for check in checks
        ],
    }


def write_day_report(path: Path, document: dict[str, Any]) -> None:
    """Replace the report file at once (a reader sees the old one or the new one, never half of one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(json.dumps(document, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def report(conn: psycopg.Connection[Any], check: CandleCheck, *, now: datetime) -> None:
    """The check's outcome as the `system_status` row `candles:{table}:{symbol}`."""
    set_status(
        conn,
        f"candles:{check.table}:{check.symbol}",
        "ok" if check.complete else "incomplete",
        now=now,
        message=check.describe(),
        data_count=check.found,
    )
