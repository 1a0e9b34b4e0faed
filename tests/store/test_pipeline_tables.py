"""The earlier pipeline's Arrow tables: KST wall times without a zone, converted in one place."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.clock import KST
from store.parquet import ParquetWriter
from store.tables import (
    DOLPHA1_SIGNAL,
    KEYS,
    KST_WALL,
    OPTION_MATRIX,
    TABLES,
    TIME_COLUMN,
    futures_table,
    kst_wall_time,
    matrix_table,
    to_table,
)


def test_wall_time_is_the_kst_clock_reading_without_a_zone() -> None:
    assert kst_wall_time(datetime(2026, 12, 7, 0, 31, tzinfo=UTC)) == datetime(2026, 12, 7, 9, 31)
    assert kst_wall_time(datetime(2026, 12, 7, 9, 31, tzinfo=KST)) == datetime(2026, 12, 7, 9, 31)
    assert kst_wall_time("2026-12-07T09:31:00+09:00") == datetime(2026, 12, 7, 9, 31)
    with pytest.raises(ValueError, match="no zone"):
        kst_wall_time(datetime(2026, 12, 7, 9, 31))


def test_pipeline_tables_are_keyed_and_timed_by_their_wall_timestamp() -> None:
    for name, key in KEYS.items():
        schema = TABLES[name]
        assert TIME_COLUMN[name] == "timestamp" and key[0] == "timestamp"
        assert schema.field("timestamp").type == KST_WALL and set(key) <= set(schema.names)
    assert TIME_COLUMN["ticks"] == "exchange_time"
    assert OPTION_MATRIX.names[5:8] == ["c_itm10", "c_itm9", "c_itm8"] and len(OPTION_MATRIX) == 47


def test_table_names_of_other_underlyings() -> None:
    assert futures_table("101W09") == "futures_101"
    assert futures_table("105W09") == "futures_105"
    assert matrix_table("KOSPI200") == "option_matrices_kospi200"
    for bad in ("101; DROP", "x-y", ""):
        with pytest.raises(ValueError):
            matrix_table(bad)


def test_a_signal_row_from_aware_times_lands_as_wall_time_in_parquet(tmp_path: Path) -> None:
    row = {"timestamp": datetime(2026, 12, 7, 1, 0, tzinfo=UTC), "symbol": "005930", "close": 70000,
           "vwap": 69950.5, "atr": None, "level": "none", "side": "", "changed": False}
    table = to_table(DOLPHA1_SIGNAL, [row])
    assert table.column("timestamp").type == pa.timestamp("us")
    assert table.column("timestamp")[0].as_py() == datetime(2026, 12, 7, 10, 0)
    writer = ParquetWriter(tmp_path)
    assert writer.add("dolpha1_signal", datetime(2026, 12, 7).date(), row)
    writer.flush()
    (written,) = tmp_path.rglob("*.parquet")
    assert pq.read_table(written).column("timestamp")[0].as_py() == datetime(2026, 12, 7, 10, 0)
