"""Stock minute candles built from the simulator's trades, reconciled with its minute bars over real sockets,
and a day's dolpha1 signal rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time

import pytest
from pydantic import SecretStr

from config.accounts import Account
from core.candles import Difference, Trade, candles_from_trades
from core.dolpha1 import Bar, signals
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from pipeline.stock_minute import signal_rows, stock_minute
from runtime.clock import KST
from store.tables import DOLPHA1_SIGNAL, STOCKS_1M, to_table
from tools.kis_sim.server import KisSimulator, SimConfig

MINUTE = datetime(2024, 3, 4, 10, 59, tzinfo=KST)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(11, 0, 30))


@pytest.fixture
def client(kis_sim: KisSimulator) -> Iterator[KisRestClient]:
    account = Account(app_key=SecretStr("PSstockKey"), app_secret=SecretStr("stock-secret"))
    with KisRestClient(account, base_url=kis_sim.rest_url, clock=kis_sim.clock,
                       limiters=RateLimiterRegistry()) as rest:
        yield rest


def busy_symbol(sim: KisSimulator) -> str:
    for code in sorted(sim.market.listings):
        if len(sim.market.trades(code, MINUTE - timedelta(minutes=5), MINUTE + timedelta(minutes=1))) > 20:
            return code
    raise AssertionError("no busy symbol")


def test_tick_candles_agree_with_kis_and_lost_trades_show_as_differences(
    kis_sim: KisSimulator, client: KisRestClient
) -> None:
    code = busy_symbol(kis_sim)
    start = MINUTE - timedelta(minutes=3)
    end = MINUTE + timedelta(minutes=1)
    sent = kis_sim.market.trades(code, start - timedelta(microseconds=1), end)
    trades = [Trade(code, t.time, t.price, t.volume) for t in sent if t.time < end]
    built = candles_from_trades(trades)
    whole = stock_minute(client, kis_sim.clock, code, built, since=start)
    assert [row["timestamp"] for row in whole.rows] == [start + timedelta(minutes=n) for n in range(4)]
    assert whole.differences == {}  # the simulator's bars are exactly its trades
    assert {row["source"] for row in whole.rows} == {"kis"}
    assert trades[-2].time >= MINUTE  # the last minute keeps a trade when its last one is lost
    lost = trades[:-1]
    partial = stock_minute(client, kis_sim.clock, code, candles_from_trades(lost))
    assert [row["timestamp"] for row in partial.rows] == [MINUTE]
    (diffs,) = partial.differences.values()
    assert Difference("volume", sum(t.volume for t in lost if t.time >= MINUTE),
                      sum(t.volume for t in trades if t.time >= MINUTE)) in diffs
    assert partial.rows[0]["volume"] == sum(t.volume for t in trades if t.time >= MINUTE)
    assert to_table(STOCKS_1M, whole.rows).num_rows == 4


def test_an_unstreamed_symbol_gets_kis_bars_alone(kis_sim: KisSimulator, client: KisRestClient) -> None:
    code = busy_symbol(kis_sim)
    result = stock_minute(client, kis_sim.clock, code)
    assert len(result.rows) == 1 and result.rows[0]["source"] == "kis" and result.differences == {}


def test_signal_rows_carry_the_core_signals(kis_sim: KisSimulator, client: KisRestClient) -> None:
    code = busy_symbol(kis_sim)
    day = stock_minute(client, kis_sim.clock, code, since=datetime(2024, 3, 4, 9, 0, tzinfo=KST))
    assert len(day.rows) == 120
    candles = candles_from_trades(
        Trade(code, t.time, t.price, t.volume)
        for t in kis_sim.market.trades(code, datetime(2024, 3, 4, 8, 59, tzinfo=KST), MINUTE)
    )
    rows = signal_rows(code, candles)
    expected = signals(code, [Bar(c.minute, c.high, c.low, c.close, c.volume) for c in candles])
    assert [(r["timestamp"], r["vwap"], r["atr"], r["level"]) for r in rows] == \
        [(s.minute, s.vwap, s.atr, str(s.level)) for s in expected]
    assert to_table(DOLPHA1_SIGNAL, rows).num_rows == len(candles)
