"""PostgreSQL: the observer migrates its own schema, a replay inserts nothing twice, and `system_status` keeps
one current row per component. Against a real server started by the test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime

import psycopg
import pytest

from runtime.clock import KST
from store.postgres import MIGRATIONS, insert_ticks, migrate, set_status
from tests.pg_server import PostgresServer, postgres_server

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
