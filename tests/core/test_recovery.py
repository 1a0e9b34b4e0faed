"""Recovery records from minute bars and gap markers, in the seed's formats."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.bars import MinuteBar
from core.gaps import Gap
from core.recovery import build_recovery_records, gap_marker

KST = ZoneInfo("Asia/Seoul")
DAY = datetime(2026, 1, 20, tzinfo=KST)


def hms(h: int, m: int, s: float = 0) -> datetime:
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


def bar(minute: int, symbol: str = "005930", close: int = 71200, volume: int = 1500) -> MinuteBar:
    return MinuteBar(symbol=symbol, time=hms(9, minute), open=71000, high=71500, low=70800, close=close,
                     volume=volume, value=close * volume)


def gap(start: datetime, end: datetime, reason: str = "websocket_reconnect") -> Gap:
    return Gap(symbol="005930", start=start, end=end, expected=True, reason=reason)


BARS = [bar(13), bar(14), bar(15), bar(16), bar(17)]


def times(records) -> list[datetime]:
    return [record.instruments[0].timestamp for record in records]


def test_the_record_is_the_seed_format():
    recovered_at = hms(9, 15, 40)
    (record,) = build_recovery_records(gap(hms(9, 15, 31), hms(9, 15, 34)), BARS, recovered_at=recovered_at)
    assert record.to_json_dict() == {
        "meta": {
            "source": "gap_recovery",
            "recovery_method": "rest_api_minute_bar",
            "original_gap": {
                "start": "2026-01-20T09:15:31+09:00",
                "end": "2026-01-20T09:15:34+09:00",
                "duration_seconds": 3.0,
                "reason": "websocket_reconnect",
            },
            "recovered_at": "2026-01-20T09:15:40+09:00",
        },
        "instruments": [{
            "symbol": "005930",
            "timestamp": "2026-01-20T09:15:00+09:00",
            "price": {"open": 71000.0, "high": 71500.0, "low": 70800.0, "close": 71200.0},
            "volume": 1500,
            "data_quality": "recovered",
        }],
    }
    json.dumps(record.to_json_dict())


def test_only_bars_overlapping_the_gap_are_used_in_time_order():
    records = build_recovery_records(gap(hms(9, 15, 50), hms(9, 17, 10)), list(reversed(BARS)),
                                     recovered_at=hms(9, 18))
    assert times(records) == [hms(9, 15), hms(9, 16), hms(9, 17)]


def test_bar_edges_touching_the_gap_do_not_count():
    records = build_recovery_records(gap(hms(9, 15), hms(9, 16)), BARS, recovered_at=hms(9, 18))
    assert times(records) == [hms(9, 15)]
    records = build_recovery_records(gap(hms(9, 14, 59.5), hms(9, 16, 0.5)), BARS, recovered_at=hms(9, 18))
    assert times(records) == [hms(9, 14), hms(9, 15), hms(9, 16)]


def test_an_instant_gap_takes_the_bar_that_contains_it():
    records = build_recovery_records(gap(hms(9, 16), hms(9, 16)), BARS, recovered_at=hms(9, 18))
    assert times(records) == [hms(9, 16)]


def test_other_symbols_and_duplicate_minutes_are_handled():
    bars = [bar(15, symbol="000660"), bar(15, close=71100), bar(15, close=71300, volume=1700)]
    (record,) = build_recovery_records(gap(hms(9, 15, 10), hms(9, 15, 20)), bars, recovered_at=hms(9, 16))
    instrument = record.instruments[0]
    assert (instrument.symbol, instrument.price.close, instrument.volume) == ("005930", 71300.0, 1700)


def test_no_bars_no_records():
    assert build_recovery_records(gap(hms(10, 0), hms(10, 0, 3)), BARS, recovered_at=hms(10, 1)) == ()


def test_gap_marker_is_the_seed_format_with_why_it_was_not_recovered():
    detected = Gap(symbol="000660", start=hms(11, 0), end=hms(11, 2, 30), expected=False,
                   reason="unexpected_gap")
    marker = gap_marker(detected, "longer than 60 s", at=hms(11, 2, 31))
    assert marker.to_json_dict() == {
        "timestamp": "2026-01-20T11:02:31+09:00",
        "gap_type": "unrecoverable",
        "symbol": "000660",
        "start_time": "2026-01-20T11:00:00+09:00",
        "end_time": "2026-01-20T11:02:30+09:00",
        "duration_seconds": 150.0,
        "reason": "unexpected_gap",
        "detail": "longer than 60 s",
        "expected": False,
    }
