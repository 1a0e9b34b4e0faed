"""PostgreSQL tables, created and migrated by the observer, written so that a replay writes nothing twice.

Migrations are numbered SQL scripts applied in order inside one transaction each and recorded in
`observer_migrations`. Ticks go in through COPY into a temporary table and one `INSERT ... ON CONFLICT DO
NOTHING`, keyed on what identifies a trade (symbol, venue, time, source and the day's cumulative volume,
which grows with every trade); `system_status` is the earlier pipeline's table of one row per component. When
the TimescaleDB extension is available, `ticks` becomes a hypertable on its exchange time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import psycopg

from store.tables import TICKS

MIGRATIONS: Sequence[str] = (
    """
    CREATE TABLE ticks (
        symbol text NOT NULL,
        venue text NOT NULL DEFAULT '',
        exchange_time timestamptz NOT NULL,
        received_at timestamptz,
        price bigint NOT NULL,
        volume bigint,
        cum_volume bigint,
        cum_value bigint,
        change_rate double precision,
        ask1 bigint,
        bid1 bigint,
        side text,
        strength double precision,
        source text NOT NULL,
        open bigint,
        high bigint,
        low bigint,
        close bigint,
        gap_start timestamptz,
        gap_end timestamptz,
        stream_seq bigint
    );
    CREATE UNIQUE INDEX ticks_identity
        ON ticks (exchange_time, symbol, venue, source, (coalesce(cum_volume, -1)));
    CREATE INDEX ticks_symbol_time ON ticks (symbol, exchange_time);
    CREATE TABLE system_status (
        component text PRIMARY KEY,
        status text NOT NULL,
        message text NOT NULL DEFAULT '',
        data_count bigint NOT NULL DEFAULT 0,
        last_data_time timestamptz,
        updated_at timestamptz NOT NULL
    );
    """,
)
"""Migration N is `MIGRATIONS[N - 1]`; append, never edit one that has shipped."""

TICK_COLUMNS = (*(field.name for field in TICKS), "stream_seq")
_IDENTITY = "(exchange_time, symbol, venue, source, (coalesce(cum_volume, -1)))"


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply every migration not yet applied, each in its own transaction; the schema version now."""
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS observer_migrations (version int PRIMARY KEY, applied_at timestamptz"
            " NOT NULL DEFAULT now())"
        )
    row = conn.execute("SELECT coalesce(max(version), 0) FROM observer_migrations").fetchone()
    version = int(row[0]) if row else 0
    for number in range(version + 1, len(MIGRATIONS) + 1):
        with conn.transaction():
            conn.execute(MIGRATIONS[number - 1])
            conn.execute("INSERT INTO observer_migrations (version) VALUES (%s)", (number,))
            if number == 1:
                _hypertable_if_available(conn)
    return len(MIGRATIONS)


def _hypertable_if_available(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        return
    conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    conn.execute("SELECT create_hypertable('ticks', 'exchange_time', migrate_data => true)")


def insert_ticks(conn: psycopg.Connection[Any], rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert tick rows (journal lines or spine messages) that are not in the table yet; how many were new."""
    with conn.transaction():
        conn.execute("CREATE TEMPORARY TABLE incoming (LIKE ticks) ON COMMIT DROP")
        with conn.cursor().copy(f"COPY incoming ({', '.join(TICK_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([_tick_value(row, column) for column in TICK_COLUMNS])
        cursor = conn.execute(
            f"INSERT INTO ticks SELECT * FROM incoming ON CONFLICT {_IDENTITY} DO NOTHING"
        )
        return cursor.rowcount


def _tick_value(row: Mapping[str, Any], column: str) -> Any:
    value = row.get(column)
    if column == "venue" and value is None:
        return ""
    if column in ("price", "open", "high", "low", "close") and isinstance(value, float):
        return int(value)
    return value


def set_status(
    conn: psycopg.Connection[Any],
    component: str,
    status: str,
    *,
    now: datetime,
    message: str = "",
    data_count: int = 0,
    last_data_time: datetime | None = None,
) -> None:
    """Upsert the component's row of `system_status`."""
    with conn.transaction():
        conn.execute(
            "INSERT INTO system_status (component, status, message, data_count, last_data_time, updated_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (component) DO UPDATE SET status = excluded.status,"
            " message = excluded.message, data_count = excluded.data_count,"
            " last_data_time = excluded.last_data_time, updated_at = excluded.updated_at",
            (component, status, message, data_count, last_data_time, now),
        )
