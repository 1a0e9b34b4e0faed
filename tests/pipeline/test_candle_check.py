"""The expected-candle check after the close against a real PostgreSQL, refilled from the simulator."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from datetime import datetime
from datetime import time as clock_time
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr

from config.accounts import Account
from core.candles import FUTURES_CLOSE, FUTURES_OPEN, STOCK_CLOSE, STOCK_OPEN, session_minutes
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from pipeline.candle_check import (
    check_day,
    check_minutes,
    day_report,
    refill_futures,
    refill_stock,
    report,
    write_day_report,
)
from pipeline.derivatives_minute import futures_row
from pipeline.stock_minute import stock_minute
from runtime.clock import KST
from store.postgres import migrate, upsert
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.pg_server import PostgresServer, postgres_server

DAY = datetime(2024, 3, 4).date()


def at(hour: int, minute: int) -> datetime:
    return datetime(2024, 3, 4, hour, minute, tzinfo=KST)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(15, 50))


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


@pytest.fixture
def conn(server: PostgresServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS c")
        admin.execute("CREATE DATABASE c")
    with psycopg.connect(server.url.rsplit("/", 1)[0] + "/c", autocommit=True) as connection:
        migrate(connection)
        yield connection


@pytest.fixture
def client(kis_sim: KisSimulator) -> Iterator[KisRestClient]:
    account = Account(app_key=SecretStr("PScheckKey"), app_secret=SecretStr("check-secret"))
    with KisRestClient(account, base_url=kis_sim.rest_url, clock=kis_sim.clock,
                       limiters=RateLimiterRegistry()) as rest:
        yield rest


def test_stock_day_missing_minutes_are_reported_refilled_and_cleared(
    kis_sim: KisSimulator, client: KisRestClient, conn: psycopg.Connection
) -> None:
    code = sorted(kis_sim.market.listings)[0]
    day = stock_minute(client, kis_sim.clock, code, since=at(9, 0))
    assert len(day.rows) == 390
    gone = {at(9, 3), at(9, 4), at(15, 29)}
    upsert(conn, "stocks_1m", [row for row in day.rows if row["timestamp"] not in gone])
    check = check_day(conn, "stocks_1m", code, DAY, STOCK_OPEN, STOCK_CLOSE)
    assert (check.expected, check.found, check.missing) == (390, 387, sorted(gone))
    assert check.describe() == "missing 3 of 390 candles: 09:03-09:04, 15:29"
    report(conn, check, now=at(15, 50))
    assert conn.execute("SELECT status, message, data_count FROM system_status").fetchall() == \
        [("incomplete", check.describe(), 387)]
    refill = refill_stock(client, check)
    assert sorted(row["timestamp"] for row in refill) == sorted(gone)
    assert upsert(conn, "stocks_1m", refill) == 3
    again = check_day(conn, "stocks_1m", code, DAY, STOCK_OPEN, STOCK_CLOSE)
    assert again.complete and again.describe() == "390 of 390 candles"
    report(conn, again, now=at(15, 51))
    assert conn.execute("SELECT component, status FROM system_status").fetchall() == \
        [(f"candles:stocks_1m:{code}", "ok")]


def test_futures_day_has_420_candles_and_gaps_are_refilled(
    client: KisRestClient, conn: psycopg.Connection
) -> None:
    chart = client.fuop_minute_bars("101V03", since=at(8, 45))
    rows = [futures_row(bar) for bar in chart.bars]
    assert len(rows) == 420
    upsert(conn, "futures_101", [row for row in rows if row["timestamp"] not in (at(8, 45), at(12, 0))])
    check = check_day(conn, "futures_101", "101V03", DAY, FUTURES_OPEN, FUTURES_CLOSE)
    assert check.missing == [at(8, 45), at(12, 0)]
    assert upsert(conn, "futures_101", refill_futures(client, check)) == 2
    assert check_day(conn, "futures_101", "101V03", DAY, FUTURES_OPEN, FUTURES_CLOSE).complete


def test_the_day_report_lists_every_minute_still_missing(tmp_path: Path) -> None:
    gone = [at(9, 3), at(9, 4), *(at(10, 2 * n) for n in range(12)), at(15, 29)]  # more than describe() shows
    missing = check_minutes("stocks_1m", "005930", DAY, STOCK_OPEN, STOCK_CLOSE,
                            [minute for minute in session_minutes(DAY, STOCK_OPEN, STOCK_CLOSE)
                             if minute not in gone])
    whole = check_minutes("futures_101", "101V03", DAY, FUTURES_OPEN, FUTURES_CLOSE,
                          session_minutes(DAY, FUTURES_OPEN, FUTURES_CLOSE))
    document = day_report(DAY, [missing, whole], checked_at=at(15, 47))
    assert "more ranges" in missing.describe()
    assert document == {
        "day": "2024-03-04", "checked_at": "2024-03-04T15:47:00+09:00", "incomplete": 1,
        "checks": [
            {"table": "stocks_1m", "symbol": "005930", "expected": 390, "found": 375, "complete": False,
             "missing": ["09:03-09:04", *(f"10:{2 * n:02d}" for n in range(12)), "15:29"]},
            {"table": "futures_101", "symbol": "101V03", "expected": 420, "found": 420, "complete": True,
             "missing": []},
        ],
    }
    path = tmp_path / "observer" / "system" / "candles" / "20240304_candles.json"
    write_day_report(path, document)
    write_day_report(path, document)  # replaced, not appended
    assert json.loads(path.read_text(encoding="utf-8")) == document
    assert [p.name for p in path.parent.iterdir()] == ["20240304_candles.json"]
