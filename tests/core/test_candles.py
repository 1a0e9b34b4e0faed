"""Minute candles from trades, their reconciliation with KIS's bars, and the session's expected minutes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from core.candles import (
    EXPECTED_FUTURES_CANDLES,
    EXPECTED_STOCK_CANDLES,
    FUTURES_CLOSE,
    FUTURES_OPEN,
    STOCK_CLOSE,
    STOCK_OPEN,
    Candle,
    CandleBuilder,
    CandleSource,
    Difference,
    Trade,
    candles_from_trades,
    expected_candles,
    in_session,
    kst_minute,
    minute_ranges,
    missing_minutes,
    reconcile,
    session_minutes,
)
from runtime.clock import KST

DAY = date(2026, 12, 7)


def at(hour: int, minute: int, second: int = 0, micro: int = 0) -> datetime:
    return datetime(2026, 12, 7, hour, minute, second, micro, tzinfo=KST)


def test_trades_make_one_candle_per_symbol_and_kst_minute() -> None:
    trades = [
        Trade("005930", at(9, 0, 30), 70100, 5),
        Trade("005930", at(9, 0, 1), 70000, 10),  # out of order: still the open
        Trade("005930", at(9, 0, 45), 69900, 3),
        Trade("005930", at(9, 0, 59, 999_999), 70050, 2),
        Trade("000660", at(9, 0, 10), 120000, 1),
        Trade("005930", at(9, 1, 0), 70200, 7),  # next minute starts at :00.000
    ]
    candles = candles_from_trades(trades)
    assert candles == [
        Candle("000660", at(9, 0), 120000, 120000, 120000, 120000, 1),
        Candle("005930", at(9, 0), 70000, 70100, 69900, 70050, 20),
        Candle("005930", at(9, 1), 70200, 70200, 70200, 70200, 7),
    ]


def test_minutes_are_kst_whatever_zone_the_trade_carries() -> None:
    utc_trade = Trade("005930", datetime(2026, 12, 7, 0, 5, 42, tzinfo=UTC), 70000, 1)  # 09:05:42 KST
    (candle,) = candles_from_trades([utc_trade])
    assert candle.minute == at(9, 5)
    assert candle.minute.utcoffset() == KST.utcoffset(candle.minute)
    with pytest.raises(ValueError, match="naive"):
        kst_minute(datetime(2026, 12, 7, 9, 5))


def test_kis_bar_wins_and_the_differences_are_reported() -> None:
    built = Candle("005930", at(9, 0), 70000, 70100, 69900, 70050, 20)
    kis = Candle("005930", at(9, 0), 70000, 70200, 69900, 70050, 26, CandleSource.KIS)
    result = reconcile(built, kis)
    assert result is not None
    assert result.candle == kis
    assert result.differences == (Difference("high", 70100, 70200), Difference("volume", 20, 26))


def test_agreeing_candles_report_nothing_and_missing_sides_fall_back() -> None:
    built = Candle("005930", at(9, 0), 70000, 70100, 69900, 70050, 20)
    kis = Candle("005930", at(9, 0), 70000, 70100, 69900, 70050, 20)
    agreed = reconcile(built, kis)
    assert agreed is not None and agreed.differences == () and agreed.candle.source is CandleSource.KIS
    only_ticks = reconcile(built, None)
    assert only_ticks is not None and only_ticks.candle == built
    only_kis = reconcile(None, kis)
    assert only_kis is not None and only_kis.candle.source is CandleSource.KIS
    assert reconcile(None, None) is None
    with pytest.raises(ValueError, match="same minute"):
        reconcile(built, Candle("005930", at(9, 1), 1, 1, 1, 1, 1))


def test_expected_candles_of_the_sessions() -> None:
    assert expected_candles(STOCK_OPEN, STOCK_CLOSE) == EXPECTED_STOCK_CANDLES == 390
    assert expected_candles(FUTURES_OPEN, FUTURES_CLOSE) == EXPECTED_FUTURES_CANDLES == 420
    minutes = session_minutes(DAY, STOCK_OPEN, STOCK_CLOSE)
    assert len(minutes) == 390 and minutes[0] == at(9, 0) and minutes[-1] == at(15, 29)
    futures = session_minutes(DAY, FUTURES_OPEN, FUTURES_CLOSE)
    assert futures[0] == at(8, 45) and futures[-1] == at(15, 44)
    assert expected_candles(time(10, 0), STOCK_CLOSE) == 330  # the year's first day opens an hour late


def test_in_session_counts_from_the_open_to_before_the_close() -> None:
    stock, futures = (STOCK_OPEN, STOCK_CLOSE), (FUTURES_OPEN, FUTURES_CLOSE)
    assert in_session(at(9, 0), *stock) and in_session(at(15, 29, 59), *stock)
    assert not in_session(at(15, 30), *stock) and not in_session(at(8, 59), *stock)
    assert in_session(at(8, 45), *futures) and not in_session(at(15, 45), *futures)


def test_missing_minutes_and_their_ranges() -> None:
    gone = (at(9, 3), at(9, 4), at(15, 29))
    have = [m for m in session_minutes(DAY, STOCK_OPEN, STOCK_CLOSE) if m not in gone]
    have.append(at(9, 10, 30))  # a time inside a minute counts for that minute
    missing = missing_minutes(DAY, STOCK_OPEN, STOCK_CLOSE, have)
    assert missing == [at(9, 3), at(9, 4), at(15, 29)]
    assert minute_ranges(missing) == [(at(9, 3), at(9, 4)), (at(15, 29), at(15, 29))]
    assert missing_minutes(DAY, STOCK_OPEN, time(9, 2), []) == [at(9, 0), at(9, 1)]


def test_the_streaming_builder_gives_the_candles_of_the_batch_function() -> None:
    trades = [
        Trade("005930", at(9, 0, 30), 70100, 5),
        Trade("005930", at(9, 0, 1), 70000, 10),
        Trade("005930", at(9, 0, 45), 69900, 3),
        Trade("005930", at(9, 0, 59, 999_999), 70050, 2),
        Trade("005930", at(9, 0, 59, 999_999), 70060, 1),  # same time: the later one closes
        Trade("000660", at(9, 0, 10), 120000, 1),
        Trade("005930", at(9, 1, 0), 70200, 7),
        Trade("000660", at(9, 2, 5).astimezone(UTC), 121000, 4),
    ]
    builder = CandleBuilder()
    for trade in trades:
        builder.add(trade.symbol, trade.time, trade.price, trade.volume)
    first = builder.take_before(at(9, 1))
    assert first == [c for c in candles_from_trades(trades) if c.minute < at(9, 1)]
    assert builder.take_before(at(9, 1)) == []
    assert builder.take_before(at(9, 3)) == [c for c in candles_from_trades(trades) if c.minute >= at(9, 1)]
    # a symbol streamed over 09:01-09:02 without a trade in 09:01 is still one of the span's symbols
    assert builder.traded_since(at(9, 1)) == {"005930", "000660"}
    assert builder.traded_since(at(9, 1, 30)) == {"000660"}
