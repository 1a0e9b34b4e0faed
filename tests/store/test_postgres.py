"""PostgreSQL: the observer migrates its own schema, a replay inserts nothing twice, and `system_status` keeps
one current row per component. Against a real server started by the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime

import psycopg
import pytest
from loguru import logger

from runtime.clock import KST
from spine import wire
from store.facts import row_of
from store.postgres import MIGRATIONS, insert_events, insert_ticks, migrate, set_status, upsert
from tools.pg_server import PostgresServer, postgres_server

DAY = date(2026, 9, 14)


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as running:
        yield running


@pytest.fixture
def conn(server: PostgresServer) -> Iterator[psycopg.Connection]:
    with psycopg.connect(server.url, autocommit=True) as admin:
        admin.execute("DROP DATABASE IF EXISTS t")
        admin.execute("CREATE DATABASE t")
    with psycopg.connect(server.url.rsplit("/", 1)[0] + "/t", autocommit=True) as connection:
        yield connection


def ticks(count: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = [
        {"symbol": "005930", "exchange_time": f"2026-09-14T09:31:{n // 4:02d}+09:00", "price": 71000 + n,
         "volume": 1, "cum_volume": 100 + n, "source": "ws", "received_at": "2026-09-14T09:31:30.5+09:00"}
        for n in range(count)
    ]  # fmt: skip
    rows.append({"symbol": "005930", "exchange_time": "2026-09-14T09:30:00+09:00", "price": 70900.0,
                 "open": 70800.0, "high": 71000.0, "low": 70700.0, "close": 70900.0, "volume": 9,
                 "cum_volume": None, "source": "recovery"})  # fmt: skip
    return rows


def test_migrations_apply_once_and_record_the_version(conn: psycopg.Connection) -> None:
    assert migrate(conn) == len(MIGRATIONS)
    assert migrate(conn) == len(MIGRATIONS)
    versions = [row[0] for row in conn.execute("SELECT version FROM observer_migrations ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"ticks", "system_status", "observer_migrations"} <= tables


def test_a_replay_inserts_nothing_twice(conn: psycopg.Connection) -> None:
    migrate(conn)
    rows = ticks(40)
    assert insert_ticks(conn, rows[:25]) == 25
    assert insert_ticks(conn, rows) == len(rows) - 25  # a replay from the start: only what was missing
    assert insert_ticks(conn, rows) == 0
    count, first_symbol = conn.execute("SELECT count(*), min(symbol) FROM ticks").fetchone()
    assert count == len(rows) and first_symbol == "005930"
    bar = conn.execute("SELECT price, open, exchange_time FROM ticks WHERE source = 'recovery'").fetchone()
    assert bar == (70900, 70800, datetime(2026, 9, 14, 9, 30, tzinfo=KST))


def test_system_status_keeps_one_current_row_per_component(conn: psycopg.Connection) -> None:
    migrate(conn)
    now = datetime(2026, 9, 14, 9, 31, tzinfo=KST)
    set_status(conn, "store", "ok", now=now, data_count=10, last_data_time=now)
    set_status(conn, "store", "waiting", now=now, message=json.dumps({"lag": 3}), data_count=12)
    rows = conn.execute("SELECT component, status, data_count, last_data_time FROM system_status").fetchall()
    assert rows == [("store", "waiting", 12, None)]


def candle(minute: int, close: int, volume: int, source: str = "ticks") -> dict[str, object]:
    return {"timestamp": datetime(2026, 9, 14, 9, minute, tzinfo=KST), "symbol": "005930", "timeframe": "1m",
            "open": 70000, "high": 70500, "low": 69900, "close": close, "volume": volume, "source": source}


def test_pipeline_tables_are_migration_2_with_wall_timestamps(conn: psycopg.Connection) -> None:
    assert migrate(conn) == len(MIGRATIONS) >= 2
    kinds = dict(conn.execute(
        "SELECT table_name, data_type FROM information_schema.columns WHERE column_name = 'timestamp'"
    ).fetchall())
    assert kinds == {name: "timestamp without time zone" for name in (
        "stocks_1m", "futures_101", "option_chain_raw", "option_matrices_kospi200", "dolpha1_signal",
        "futures_trades_101")} | {
        "overflow": "timestamp with time zone"}  # the store role's event table keeps aware times


def test_a_candle_replay_writes_nothing_twice_and_kis_bars_replace_tick_candles(
    conn: psycopg.Connection,
) -> None:
    migrate(conn)
    conn.execute("SET TIME ZONE 'UTC'")  # the wall time must not depend on the session's zone
    rows = [candle(minute, 70000 + minute, 10 + minute) for minute in range(30)]
    assert upsert(conn, "stocks_1m", rows[:20]) == 20
    assert upsert(conn, "stocks_1m", rows) == 10
    assert upsert(conn, "stocks_1m", rows) == 0
    assert upsert(conn, "stocks_1m", [candle(5, 70005, 19, "kis")]) == 1  # KIS's bar won: more volume
    stored = conn.execute(
        "SELECT timestamp, close, volume, source FROM stocks_1m WHERE timestamp = '2026-09-14 09:05'"
    ).fetchall()
    assert stored == [(datetime(2026, 9, 14, 9, 5), 70005, 19, "kis")]
    assert conn.execute("SELECT count(*) FROM stocks_1m").fetchone() == (30,)


def test_the_last_row_of_a_key_in_one_batch_wins(conn: psycopg.Connection) -> None:
    migrate(conn)
    assert upsert(conn, "stocks_1m", [candle(0, 70000, 1), candle(0, 70100, 2)]) == 1
    assert conn.execute("SELECT close, volume FROM stocks_1m").fetchall() == [(70100, 2)]


def test_futures_of_another_underlying_get_their_own_table(conn: psycopg.Connection) -> None:
    migrate(conn)
    bar = {"timestamp": "2026-09-14T08:45:00+09:00", "symbol": "105W12", "open": 1850.5, "high": 1851.0,
           "low": 1849.5, "close": 1850.0, "volume": 12}
    assert upsert(conn, "futures_105", [bar]) == 1
    assert upsert(conn, "futures_105", [bar]) == 0
    assert conn.execute("SELECT timestamp, close FROM futures_105").fetchall() == \
        [(datetime(2026, 9, 14, 8, 45), 1850.0)]
    for bad in ("futures_1; DROP TABLE ticks", "futures_1010", "ticks", "option_matrices_Bad"):
        with pytest.raises(ValueError, match="not a table"):
            upsert(conn, bad, [bar])


def test_matrix_rows_are_keyed_by_time_underlying_and_metric(conn: psycopg.Connection) -> None:
    migrate(conn)
    at = datetime(2026, 9, 14, 10, 15, tzinfo=KST)
    rows = [{"timestamp": at, "underlying_symbol": "KOSPI200", "metric_type": metric,
             "underlying_price": 351.3, "atm_strike": 352.5, "c_atm": 1.61, "p_atm": 2.14, "c_itm10": None}
            for metric in ("price", "iv", "delta", "open_interest", "volume")]
    assert upsert(conn, "option_matrices_kospi200", rows) == 5
    assert upsert(conn, "option_matrices_kospi200", rows) == 0
    assert upsert(conn, "option_matrices_kospi200", [{**rows[0], "c_atm": 1.7}]) == 1
    assert conn.execute(
        "SELECT c_atm, c_itm10 FROM option_matrices_kospi200 WHERE metric_type = 'price'"
    ).fetchall() == [(1.7, None)]


def test_event_rows_from_the_spine_go_in_once_each(conn: psycopg.Connection) -> None:
    migrate(conn)
    gap = wire.GapMarked(account="sim1", timestamp=datetime(2026, 9, 14, 9, 40, tzinfo=KST), symbol="005930",
                         start_time=datetime(2026, 9, 14, 9, 31, tzinfo=KST),
                         end_time=datetime(2026, 9, 14, 9, 32, tzinfo=KST), duration_seconds=60.0,
                         reason="disconnect", detail="no bars", expected=False)  # fmt: skip
    table, row = row_of(json.loads(gap.model_dump_json()))
    assert table == "gaps"
    assert insert_events(conn, table, [{**row, "stream_seq": 7}]) == 1
    assert insert_events(conn, table, [{**row, "stream_seq": 9}]) == 0  # the same gap delivered again
    stored = conn.execute('SELECT event, symbol, start, "end", stream_seq FROM gaps').fetchall()
    assert stored == [("marked", "005930", datetime(2026, 9, 14, 9, 31, tzinfo=KST),
                       datetime(2026, 9, 14, 9, 32, tzinfo=KST), 7)]  # fmt: skip
    with pytest.raises(ValueError, match="not an event table"):
        insert_events(conn, "ticks; DROP TABLE gaps", [row])


def test_phase_changes_and_health_are_migration_4_and_go_in_once_each(conn: psycopg.Connection) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="INFO", format="{message}")
    try:
        assert migrate(conn) == len(MIGRATIONS) >= 4
        migrate(conn)
    finally:
        logger.remove(sink)
    installed = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if installed is None:  # the suite's server has no TimescaleDB: plain tables, said once
        said = [line for line in lines if "TimescaleDB" in line]
        assert len(said) == 1 and "ticks, snapshots, health stay plain tables" in said[0], lines
    at = datetime(2026, 9, 14, 9, 30, tzinfo=KST)
    facts = [
        wire.PhaseChange(at=at, phase="full_operation", previous="track_a_only"),
        *(wire.Health(at=at, uptime_seconds=uptime, phase="full_operation", actors_alive=2, actors_total=2,
                      actors_down=(), restarts={"recorder": 0}, counters={"scans": 1}, published=5, dropped=0)
          for uptime in (3.0, 4.5)),  # two processes' health of one moment
    ]  # fmt: skip
    rows: dict[str, list[dict[str, object]]] = {}
    for seq, fact in enumerate(facts, start=1):
        table, row = row_of(json.loads(fact.model_dump_json()))
        rows.setdefault(table, []).append({**row, "stream_seq": seq})
    assert insert_events(conn, "phase_changes", rows["phase_changes"]) == 1
    assert insert_events(conn, "health", rows["health"]) == 2
    assert insert_events(conn, "health", rows["health"]) == 0  # delivered again
    assert conn.execute("SELECT phase, previous FROM phase_changes").fetchall() == [
        ("full_operation", "track_a_only")
    ]
    stored = conn.execute("SELECT uptime_seconds, restarts, counters FROM health ORDER BY 1").fetchall()
    assert stored == [(3.0, '{"recorder": 0}', '{"scans": 1}'), (4.5, '{"recorder": 0}', '{"scans": 1}')]


def test_futures_trades_sharing_a_second_are_kept_apart_by_their_cumulative_volume(
    conn: psycopg.Connection,
) -> None:
    migrate(conn)
    second = datetime(2026, 3, 10, 9, 58, 15, tzinfo=KST)
    rows = [{"timestamp": second, "symbol": "101603", "price": price, "volume": volume, "cum_volume": cum}
            for price, volume, cum in ((350.05, 3, 1200), (350.10, 2, 1202))]
    assert upsert(conn, "futures_trades_101", rows) == 2
    assert upsert(conn, "futures_trades_101", rows) == 0  # a replay doubles nothing
    query = "SELECT timestamp, cum_volume FROM futures_trades_101 ORDER BY cum_volume"
    stored = conn.execute(query).fetchall()
    assert stored == [(datetime(2026, 3, 10, 9, 58, 15), 1200), (datetime(2026, 3, 10, 9, 58, 15), 1202)]
