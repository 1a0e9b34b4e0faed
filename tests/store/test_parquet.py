"""Parquet tables: typed columns, part files whole or absent, compaction in time order, replays never doubled,
and the journal of a day converted row for row."""

from __future__ import annotations

import json
import tracemalloc
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from actors.recorder import tick_line
from kis.ticks import TradeTick
from runtime.clock import KST
from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from store.journal import import_journal_day
from store.parquet import COMPACTED, TYPED_BATCH_ROWS, ParquetWriter, compact, partition_dir
from store.tables import STOCKS_1M, TICKS, to_table

DAY = date(2026, 9, 14)


def tick(symbol: str, second: int, price: int, cum_volume: int) -> TradeTick:
    at = datetime(2026, 9, 14, 9, 31, second, tzinfo=KST)
    return TradeTick(
        symbol, at, price, 100, "2", 0.14, 3, cum_volume, cum_volume * price, price - 50, price + 50,
        price - 60, price + 10, price, "1", 101.5, "0", (),
    )  # fmt: skip


def write_journal(paths: DataPaths) -> dict[str, list[int]]:
    """Two symbols' tick files as the recorder writes them (ties inside a second, a recovery row last); the
    cum_volume of each in file order."""
    written: dict[str, list[int]] = {}
    for symbol, base in (("005930", 71000), ("000660", 180000)):
        path = paths.tick_file("sim1", "KOSPI", DAY, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        volumes = []
        for n in range(30):
            t = tick(symbol, n // 10, base + n % 3, 1000 + n)
            lines.append(tick_line(t, t.exchange_time.isoformat(), "2026-09-14T09:31:05.000123+09:00"))
            volumes.append(1000 + n)
        bar = {"symbol": symbol, "exchange_time": "2026-09-14T09:30:00+09:00", "price": float(base),
               "received_at": "2026-09-14T09:33:00+09:00", "volume": 7, "cum_volume": None,
               "source": "recovery",
               "open": float(base), "high": float(base), "low": float(base), "close": float(base),
               "gap_start": "2026-09-14T09:30:00+09:00", "gap_end": "2026-09-14T09:30:40+09:00"}  # fmt: skip
        lines.append(json.dumps(bar))
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written[symbol] = volumes
    return written


def test_columns_are_typed_as_analysts_expect() -> None:
    row = {"symbol": "005930", "exchange_time": "2026-09-14T09:31:00.5+09:00", "price": 71000}
    table = to_table(TICKS, [row])
    row = table.to_pylist()[0]
    assert row["symbol"] == "005930"
    assert row["exchange_time"] == datetime(2026, 9, 14, 9, 31, 0, 500000, tzinfo=KST)
    assert table.schema.field("exchange_time").type == pa.timestamp("us", tz="Asia/Seoul")
    assert table.schema.field("price").type == pa.int64() and row["venue"] is None


def test_a_price_that_is_not_whole_won_is_refused() -> None:
    with pytest.raises(ValueError, match="price"):
        row = {"symbol": "005930", "exchange_time": "2026-09-14T09:31:00+09:00", "price": 71000.5}
        to_table(TICKS, [row])


def test_journal_day_converts_row_for_row_and_loads_in_one_line_each(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    volumes = write_journal(paths)
    assert import_journal_day(paths, DAY) == 62
    folder = partition_dir(paths.parquet_dir, "ticks", DAY)
    assert [path.name for path in folder.iterdir()] == [COMPACTED]

    journal = sorted(
        (record["symbol"], record["exchange_time"], record["price"], record["source"])
        for path in paths.tick_files("sim1", DAY)
        for record in read_jsonl(path).records
    )
    frame = pd.read_parquet(paths.parquet_dir / "ticks")  # the README's pandas line: every day, partitioned
    assert len(frame) == len(journal) == 62
    assert sorted(
        (row.symbol, row.exchange_time.isoformat(), row.price, row.source) for row in frame.itertuples()
    ) == [(s, datetime.fromisoformat(t).isoformat(), int(p), src) for s, t, p, src in journal]
    assert frame["date"].astype(str).unique().tolist() == ["20260914"]

    samsung = pl.read_parquet(folder / "*.parquet").filter(pl.col("symbol") == "005930")
    streamed = samsung.filter(pl.col("source") == "ws")["cum_volume"].to_list()
    assert streamed == volumes["005930"]  # time order, ties in file order
    assert samsung["source"][0] == "recovery"  # the back-filled 09:30 bar sorts first

    count = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{paths.parquet_dir}/ticks/*/*.parquet', hive_partitioning=true)"
        " WHERE symbol = '000660' AND date = '20260914'"
    ).fetchall()
    assert count == [(31,)]


def test_parts_then_compaction_keep_every_row_once_in_time_order(tmp_path: Path) -> None:
    writer = ParquetWriter(tmp_path)
    for seq, second in enumerate((3, 1, 2, 1, 0), start=1):
        writer.add("ticks", DAY, {"symbol": "005930", "exchange_time": f"2026-09-14T09:31:0{second}+09:00",
                                  "price": 70000 + seq}, seq=seq)  # fmt: skip
        if seq in (2, 4):
            writer.flush()
    writer.flush()
    folder = partition_dir(tmp_path, "ticks", DAY)
    assert len(list(folder.glob("part-*.parquet"))) == 3
    assert not list(folder.glob(".*"))  # no temporary file left behind
    assert compact(tmp_path, "ticks", DAY) == 5
    prices = pq.read_table(folder / COMPACTED)["price"].to_pylist()
    assert prices == [70005, 70002, 70004, 70003, 70001]
    assert compact(tmp_path, "ticks", DAY) == 5  # again: nothing changes


def test_a_busy_minute_waits_typed_and_comes_out_whole_in_order(tmp_path: Path) -> None:
    """Rows wait typed in Arrow batches, not as dicts of JSON values (about 1 KB each): 10,000 tick rows
    hold a few MB of Python objects, and their part file has every one of them in the order they came."""
    def row(n: int) -> dict[str, Any]:
        at, received = f"2026-09-14T09:31:{n % 60:02d}+09:00", "2026-09-14T09:31:00+09:00"
        return json.loads(tick_line(tick("005930", n % 60, 70_000 + n, n), at, received, "KRX"))

    warm = ParquetWriter(tmp_path / "warm")  # the first typing's one-time allocations, outside the count
    for n in range(TYPED_BATCH_ROWS):
        warm.add("ticks", DAY, row(n))
    writer = ParquetWriter(tmp_path)
    tracemalloc.start()
    try:
        for n in range(10_000):
            writer.add("ticks", DAY, row(n), seq=n + 1)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 6 * 1024 * 1024
    assert writer.buffered == 10_000
    assert writer.flush() == 10_000 and writer.buffered == 0
    (part,) = partition_dir(tmp_path, "ticks", DAY).glob("part-*.parquet")
    table = pq.read_table(part)
    assert table["stream_seq"].to_pylist() == list(range(1, 10_001))
    assert table["price"].to_pylist() == [70_000 + n for n in range(10_000)]


def test_a_replay_after_a_restart_writes_nothing_twice(tmp_path: Path) -> None:
    rows = [{"symbol": "005930", "exchange_time": f"2026-09-14T09:31:{n:02d}+09:00", "price": 70000 + n}
            for n in range(10)]  # fmt: skip
    first = ParquetWriter(tmp_path)
    for seq, row in enumerate(rows[:6], start=1):
        first.add("ticks", DAY, row, seq=seq)
    first.flush()
    restarted = ParquetWriter(tmp_path)  # the spine redelivers from seq 4 (acks of 4-6 were lost)
    accepted = [restarted.add("ticks", DAY, row, seq=seq) for seq, row in enumerate(rows[3:], start=4)]
    assert accepted == [False, False, False, True, True, True, True]
    restarted.flush()
    compact(tmp_path, "ticks", DAY)
    table = pq.read_table(partition_dir(tmp_path, "ticks", DAY) / COMPACTED)
    assert table["stream_seq"].to_pylist() == list(range(1, 11))


def test_parts_left_by_a_killed_compaction_are_not_counted_twice(tmp_path: Path) -> None:
    writer = ParquetWriter(tmp_path)
    for seq in range(1, 6):
        writer.add("ticks", DAY, {"symbol": "005930", "exchange_time": f"2026-09-14T09:31:0{seq}+09:00",
                                  "price": 70000 + seq}, seq=seq)  # fmt: skip
    writer.flush()
    folder = partition_dir(tmp_path, "ticks", DAY)
    (part,) = folder.glob("part-*.parquet")
    kept = part.read_bytes()
    assert compact(tmp_path, "ticks", DAY) == 5
    part.write_bytes(kept)  # the day's file was written, the part not yet removed
    assert compact(tmp_path, "ticks", DAY) == 5
    assert pq.read_table(folder / COMPACTED)["stream_seq"].to_pylist() == [1, 2, 3, 4, 5]


def test_a_second_writer_in_the_same_process_keeps_the_first_ones_parts(tmp_path: Path) -> None:
    """An actor restarted in the same process opens a new writer: its parts must not replace the old."""
    day = date(2024, 3, 4)
    rows = [{"timestamp": datetime(2024, 3, 4, 10, minute, tzinfo=KST), "symbol": "005930", "timeframe": "1m",
             "open": 1, "high": 1, "low": 1, "close": 1, "volume": 1, "source": "kis"} for minute in (1, 2)]
    for row in rows:
        writer = ParquetWriter(tmp_path, {"stocks_1m": STOCKS_1M})
        writer.add("stocks_1m", day, row)
        writer.flush()
    stored = pq.read_table(partition_dir(tmp_path, "stocks_1m", day)).column("timestamp").to_pylist()
    assert sorted(stored) == [datetime(2024, 3, 4, 10, 1), datetime(2024, 3, 4, 10, 2)]
