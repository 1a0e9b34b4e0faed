"""What a start finds in the day's tick files: each symbol's last streamed tick, written by the recorder's
own line format, read from the files' tails."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from actors.recorder import tick_line
from app.downtime import downtime_found, last_streamed
from kis.ticks import TradeTick
from runtime.clock import KST
from runtime.jsonl import JsonlWriter
from runtime.paths import DataPaths

DAY = date(2024, 3, 4)
NOW = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


def trade(symbol: str, at: datetime) -> TradeTick:
    return TradeTick(symbol, at, 70_500, 500, "2", 0.7, 10, 1_000, 70_500_000, 70_000, 71_000, 70_000,
                     70_600, 70_500, "1", 100.0, "0", ())


def write_ticks(paths: DataPaths, account: str, market: str, day: date, symbol: str,
                times: list[datetime]) -> Path:
    path = paths.tick_file(account, market, day, symbol)
    with JsonlWriter(path) as writer:
        for at in times:
            writer.write_line(tick_line(trade(symbol, at), at.isoformat(), at.isoformat()))
    return path


def test_each_symbols_last_streamed_tick_of_the_day_before_now(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    morning = [NOW - timedelta(minutes=30) + timedelta(seconds=s) for s in range(0, 600, 3)]
    write_ticks(paths, "acct1", "KOSPI", DAY, "005930", morning)
    kosdaq = write_ticks(paths, "acct1", "KOSDAQ", DAY, "035720", morning[:50])
    with JsonlWriter(kosdaq) as writer:  # a recovered row later than any streamed one: not a streamed tick
        writer.write({"symbol": "035720", "exchange_time": NOW - timedelta(minutes=1), "source": "recovery"})
    with kosdaq.open("a", encoding="utf-8") as file:
        file.write('{"symbol":"035720","exchange_time":"2024-03-04T09:59')  # torn by a power cut
    write_ticks(paths, "acct1", "KOSPI", DAY, "000660", [NOW + timedelta(seconds=5)])  # a replayed day
    write_ticks(paths, "acct1", "KOSPI", DAY - timedelta(days=1), "051910", [NOW - timedelta(days=1)])
    write_ticks(paths, "acct2", "KOSPI", DAY, "068270", morning)

    assert last_streamed(paths, "acct1", NOW) == {"005930": morning[-1], "035720": morning[49]}
    (message,) = downtime_found(paths, ("acct1", "acct3"), NOW)
    assert message.account == "acct1" and message.at == NOW
    assert message.last_streamed == (("005930", morning[-1]), ("035720", morning[49]))


def test_a_fresh_day_finds_no_downtime(tmp_path: Path) -> None:
    assert downtime_found(DataPaths(tmp_path), ("acct1",), NOW) == []
