"""Streamed futures trades and dolpha1 signals as rows and spine messages: times completed with the day,
messages that fit their schema and land on their subjects."""

from __future__ import annotations

import json
from datetime import date, datetime

from core.candles import Candle
from core.dolpha1 import Bar, Params
from kis.fields import H0IFCNT0_FIELDS
from kis.ticks import FuturesTradeFrame
from kis.ws_codec import decode
from messages.market import FuturesTradesReceived
from pipeline.futures_trades import futures_trade_facts, futures_trade_row
from pipeline.stock_minute import signal_fact, signal_rows
from runtime.clock import KST
from spine import wire
from spine.subjects import Subjects
from store.tables import FUTURES_TRADES, to_table

DAY = date(2026, 3, 10)
AT = datetime(2026, 3, 10, 9, 58, 16, tzinfo=KST)


def record(hour: str, price: str, volume: str, cum: str) -> str:
    values = dict.fromkeys(H0IFCNT0_FIELDS, "0")
    values.update(FUTS_SHRN_ISCD="101603", BSOP_HOUR=hour, FUTS_PRPR=price, FUTS_OPRC="349.50",
                  FUTS_HGPR="351.00", FUTS_LWPR="349.00", LAST_CNQN=volume, ACML_VOL=cum, MRKT_BASIS="0.85",
                  HTS_OTST_STPL_QTY="36000", FUTS_ASKP1="350.10", FUTS_BIDP1="350.05", HTS_THPR="350.20")
    return "^".join(values[name] for name in H0IFCNT0_FIELDS)


def received() -> FuturesTradesReceived:
    frame = decode(f"0|H0IFCNT0|002|{record('095815', '350.05', '3', '1200')}^"
                   f"{record('095815', '350.10', '2', '1202')}")
    assert isinstance(frame, FuturesTradeFrame)
    return FuturesTradesReceived(at=AT, account="acct1", day=DAY, trades=frame.trades)


def test_futures_trades_become_rows_of_the_day_and_messages_on_their_subject() -> None:
    message = received()
    rows = [futures_trade_row(message.day, trade) for trade in message.trades]
    assert [row["timestamp"] for row in rows] == [datetime(2026, 3, 10, 9, 58, 15, tzinfo=KST)] * 2
    assert [(row["price"], row["volume"], row["cum_volume"]) for row in rows] == [(350.05, 3, 1200),
                                                                                   (350.10, 2, 1202)]
    table = to_table(FUTURES_TRADES, rows)  # KST wall time, as the pipeline's tables keep it
    assert table.column("timestamp").to_pylist()[0] == datetime(2026, 3, 10, 9, 58, 15)
    facts = futures_trade_facts(message)
    assert Subjects("main").of(facts[0].subject_pattern, **facts[0].subject_keys()) == (
        "observer.main.futures.trade.101603")
    sent = json.loads(facts[1].model_dump_json())
    assert sent["type"] == "futures_trade" and sent["exchange_time"] == "2026-03-10T09:58:15+09:00"
    assert (sent["open_interest"], sent["basis"], sent["received_at"]) == (36000, 0.85, AT.isoformat())
    assert wire.parse(facts[1].model_dump_json()) == facts[1]


def test_every_dolpha1_row_is_published_as_its_signal() -> None:
    minutes = [datetime(2026, 3, 10, 9, m, tzinfo=KST) for m in range(4)]
    bars = [Bar(minutes[0], 101, 99, 100, 10), Bar(minutes[1], 102, 100, 101, 10),
            Bar(minutes[2], 104, 101, 104, 10), Bar(minutes[3], 103, 99, 100, 10)]
    candles = [Candle("005930", b.minute, b.close, b.high, b.low, b.close, b.volume) for b in bars]
    rows = signal_rows("005930", candles, Params(atr_period=2))
    facts = [signal_fact(row) for row in rows]
    assert [fact.minute for fact in facts] == minutes
    assert facts[0].vwap == 100 and facts[0].atr is None and facts[0].level == "none"
    # 09:02: VWAP (100 + 101 + 103) / 3, ATR (2 + 3) / 2 = 2.5; 104 is 2.67 above: monitor, short
    assert facts[2].vwap is not None and abs(facts[2].vwap - 304 / 3) < 1e-9 and facts[2].atr == 2.5
    assert (facts[2].level, facts[2].side, facts[2].changed) == ("monitor", "short", True)
    assert facts[2].monitor_upper == facts[2].vwap + 2.5
    assert Subjects("main").of(facts[2].subject_pattern, **facts[2].subject_keys()) == (
        "observer.main.signal.dolpha1.005930")
    assert all(wire.parse(fact.model_dump_json()) == fact for fact in facts)
