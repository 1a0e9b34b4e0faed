"""PostgreSQL tables, created and migrated by the observer, written so that a replay writes nothing twice.

Migrations are numbered SQL scripts applied in order inside one transaction each and recorded in
`observer_migrations`. Ticks go in through COPY into a temporary table and one `INSERT ... ON CONFLICT DO
NOTHING`, keyed on what identifies a trade (symbol, venue, time, source and the day's cumulative volume,
which grows with every trade); `system_status` is the earlier pipeline's table of one row per component. When
the TimescaleDB extension can be enabled, `ticks`, `snapshots` and `health` become hypertables on their time
(`HYPERTABLES`); when it cannot, they stay plain tables and one info line says so.

The store role's event tables (migration 3: snapshots, triggers, slot changes, overflow, gaps, alerts;
migration 4: phase changes and health) go in by `insert_events`, COPY and `ON CONFLICT DO NOTHING` on what
identifies each event (`store.tables.EVENT_KEYS`).

The earlier pipeline's tables (migration 2) are written by `upsert`, keyed as `store.tables.KEYS` says: a row
already there with the same values is left alone, a row whose values changed (a tick-built candle replaced
by KIS's bar) is updated, so a replay writes nothing twice. Their timestamps are KST wall time without a zone
(`store.tables.kst_wall_time`). Another underlying's `futures_{sym3}` or `option_matrices_{underlying}` is
created on first use like the KOSPI200 one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import psycopg
import pyarrow as pa
from loguru import logger

from store.tables import (
    EVENT_KEYS,
    EVENT_TABLES,
    FUTURES,
    KEYS,
    KOSPI200_FUTURES_TABLE,
    KOSPI200_MATRIX_TABLE,
    OPTION_MATRIX,
    TABLES,
    TICKS,
    from_kst_wall_time,
    futures_table,
    kst_wall_time,
    matrix_table,
)

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
        tr_id text,
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
    """
    CREATE TABLE stocks_1m (
        timestamp timestamp NOT NULL,
        symbol text NOT NULL,
        timeframe text NOT NULL,
        open bigint,
        high bigint,
        low bigint,
        close bigint,
        volume bigint,
        source text,
        PRIMARY KEY (timestamp, symbol, timeframe)
    );
    CREATE INDEX stocks_1m_symbol_time ON stocks_1m (symbol, timestamp);
    CREATE TABLE futures_101 (
        timestamp timestamp NOT NULL,
        symbol text NOT NULL,
        open double precision,
        high double precision,
        low double precision,
        close double precision,
        volume bigint,
        PRIMARY KEY (timestamp, symbol)
    );
    CREATE TABLE option_chain_raw (
        timestamp timestamp NOT NULL,
        underlying text,
        month text,
        code text NOT NULL,
        side text,
        strike double precision,
        price double precision,
        theoretical double precision,
        iv double precision,
        delta double precision,
        gamma double precision,
        vega double precision,
        theta double precision,
        open_interest bigint,
        volume bigint,
        PRIMARY KEY (timestamp, code)
    );
    CREATE TABLE option_matrices_kospi200 (
        timestamp timestamp NOT NULL,
        underlying_symbol text NOT NULL,
        metric_type text NOT NULL,
        underlying_price double precision,
        atm_strike double precision,
        c_itm10 double precision, c_itm9 double precision, c_itm8 double precision, c_itm7 double precision,
        c_itm6 double precision, c_itm5 double precision, c_itm4 double precision, c_itm3 double precision,
        c_itm2 double precision, c_itm1 double precision, c_atm double precision, c_otm1 double precision,
        c_otm2 double precision, c_otm3 double precision, c_otm4 double precision, c_otm5 double precision,
        c_otm6 double precision, c_otm7 double precision, c_otm8 double precision, c_otm9 double precision,
        c_otm10 double precision,
        p_itm10 double precision, p_itm9 double precision, p_itm8 double precision, p_itm7 double precision,
        p_itm6 double precision, p_itm5 double precision, p_itm4 double precision, p_itm3 double precision,
        p_itm2 double precision, p_itm1 double precision, p_atm double precision, p_otm1 double precision,
        p_otm2 double precision, p_otm3 double precision, p_otm4 double precision, p_otm5 double precision,
        p_otm6 double precision, p_otm7 double precision, p_otm8 double precision, p_otm9 double precision,
        p_otm10 double precision,
        PRIMARY KEY (timestamp, underlying_symbol, metric_type)
    );
    CREATE TABLE dolpha1_signal (
        timestamp timestamp NOT NULL,
        symbol text NOT NULL,
        close double precision,
        vwap double precision,
        atr double precision,
        monitor_upper double precision,
        monitor_lower double precision,
        trade_upper double precision,
        trade_lower double precision,
        level text,
        side text,
        changed boolean,
        PRIMARY KEY (timestamp, symbol)
    );
    CREATE INDEX dolpha1_signal_symbol_time ON dolpha1_signal (symbol, timestamp);
    """,
    """
    CREATE TABLE snapshots (
        scanned_at timestamptz NOT NULL,
        account text NOT NULL,
        scan_no bigint NOT NULL,
        symbol text NOT NULL,
        name text,
        price bigint,
        change bigint,
        sign text,
        change_rate double precision,
        volume bigint,
        value bigint,
        open bigint,
        high bigint,
        low bigint,
        upper_limit bigint,
        lower_limit bigint,
        prev_close bigint,
        base_price bigint,
        ask bigint,
        bid bigint,
        stream_seq bigint,
        PRIMARY KEY (scanned_at, account, scan_no, symbol)
    );
    CREATE INDEX snapshots_symbol_time ON snapshots (symbol, scanned_at);
    CREATE TABLE triggers (
        detected_at timestamptz NOT NULL,
        symbol text NOT NULL,
        kind text NOT NULL,
        strength double precision,
        value double precision,
        threshold double precision,
        expires_at timestamptz,
        stream_seq bigint,
        PRIMARY KEY (detected_at, symbol, kind)
    );
    CREATE TABLE slot_changes (
        at timestamptz NOT NULL,
        account text NOT NULL,
        symbol text NOT NULL,
        action text NOT NULL,
        reason text,
        stream_seq bigint,
        PRIMARY KEY (at, account, symbol, action)
    );
    CREATE TABLE overflow (
        timestamp timestamptz NOT NULL,
        account text NOT NULL,
        symbol text NOT NULL,
        trigger_type text,
        trigger_strength double precision,
        priority_score double precision,
        reason text NOT NULL,
        current_slot_min_score double precision,
        metadata text,
        stream_seq bigint,
        PRIMARY KEY (timestamp, account, symbol, reason)
    );
    CREATE TABLE gaps (
        at timestamptz NOT NULL,
        event text NOT NULL,
        account text NOT NULL,
        symbol text NOT NULL,
        start timestamptz NOT NULL,
        "end" timestamptz,
        duration_seconds double precision,
        expected boolean,
        reason text,
        action text,
        bars bigint,
        detail text,
        stream_seq bigint,
        PRIMARY KEY (at, event, account, symbol, start)
    );
    CREATE TABLE alerts (
        at timestamptz NOT NULL,
        key text NOT NULL,
        text text,
        stream_seq bigint,
        PRIMARY KEY (at, key)
    );
    """,
    """
    CREATE TABLE phase_changes (
        at timestamptz NOT NULL,
        phase text NOT NULL,
        previous text,
        stream_seq bigint,
        PRIMARY KEY (at, phase)
    );
    CREATE TABLE health (
        at timestamptz NOT NULL,
        uptime_seconds double precision NOT NULL,
        phase text,
        actors_alive bigint,
        actors_total bigint,
        actors_down text,
        restarts text,
        counters text,
        published bigint,
        dropped bigint,
        stream_seq bigint,
        PRIMARY KEY (at, uptime_seconds)
    );
    """,
    """
    CREATE TABLE futures_trades_101 (
        timestamp timestamp NOT NULL,
        symbol text NOT NULL,
        price double precision,
        volume bigint,
        cum_volume bigint NOT NULL,
        change double precision,
        open double precision,
        high double precision,
        low double precision,
        ask1 double precision,
        bid1 double precision,
        open_interest bigint,
        basis double precision,
        theoretical double precision,
        PRIMARY KEY (timestamp, symbol, cum_volume)
    );
    """,
)
"""Migration N is `MIGRATIONS[N - 1]`; append, never edit one that has shipped."""

HYPERTABLES: Mapping[int, Mapping[str, str]] = {
    1: {"ticks": "exchange_time"},
    4: {"ticks": "exchange_time", "snapshots": "scanned_at", "health": "at"},
}
"""The tables (and time columns) each migration makes TimescaleDB hypertables of, once its migrations are
applied, when the extension can be enabled; migration 4 also takes `ticks` of a database migrated without
it."""

TICK_COLUMNS = (*(field.name for field in TICKS), "stream_seq")
_IDENTITY = "(exchange_time, symbol, venue, source, (coalesce(cum_volume, -1)))"


def migrate(conn: psycopg.Connection[Any]) -> int:
    """Apply every migration not yet applied, each in its own transaction; the schema version now. Stores
    starting together (store workers) take turns: the first migrates, the others find it done."""
    conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
    try:
        return _migrate(conn)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))


def _migrate(conn: psycopg.Connection[Any]) -> int:
    with conn.transaction():
        conn.execute(
            "CREATE TABLE IF NOT EXISTS observer_migrations (version int PRIMARY KEY, applied_at timestamptz"
            " NOT NULL DEFAULT now())"
        )
    row = conn.execute("SELECT coalesce(max(version), 0) FROM observer_migrations").fetchone()
    version = int(row[0]) if row else 0
    hypertables: dict[str, str] = {}
    for number in range(version + 1, len(MIGRATIONS) + 1):
        with conn.transaction():
            conn.execute(MIGRATIONS[number - 1])
            conn.execute("INSERT INTO observer_migrations (version) VALUES (%s)", (number,))
        hypertables.update(HYPERTABLES.get(number, {}))
    if hypertables:
        with conn.transaction():
            _hypertables_if_available(conn, hypertables)
    return len(MIGRATIONS)


MIGRATION_LOCK = 0x0B5E_7E12
"""The advisory lock (a number of this application's choosing) held while a store migrates the schema."""


def _hypertables_if_available(conn: psycopg.Connection[Any], tables: Mapping[str, str]) -> bool:
    """Make `tables` (name: time column) hypertables when TimescaleDB can be enabled; else they stay plain
    tables and one info line says why. Whether they are hypertables now."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    if row is None:
        logger.info("PostgreSQL: TimescaleDB is not installed; {} stay plain tables", ", ".join(tables))
        return False
    try:
        with conn.transaction():  # a savepoint: a refusal leaves the migration's own work standing
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        logger.info("PostgreSQL: TimescaleDB could not be enabled ({}); {} stay plain tables", reason,
                    ", ".join(tables))
        return False
    for table, column in tables.items():
        conn.execute("SELECT create_hypertable(%s, %s, migrate_data => true, if_not_exists => true)",
                     (table, column))
    return True


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


def insert_events(conn: psycopg.Connection[Any], table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert rows of an event table (`store.tables.EVENT_TABLES`: rows of `store.facts.row_of`) that are not
    in it yet, identified by `store.tables.EVENT_KEYS`; how many were new."""
    if table not in EVENT_TABLES:
        raise ValueError(f"{table!r} is not an event table")
    columns = [*EVENT_TABLES[table].names, "stream_seq"]
    quoted = ", ".join(f'"{name}"' for name in columns)
    keys = ", ".join(f'"{name}"' for name in EVENT_KEYS[table])
    with conn.transaction():
        conn.execute(f"CREATE TEMPORARY TABLE incoming (LIKE {table}) ON COMMIT DROP")
        with conn.cursor().copy(f"COPY incoming ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row.get(name) for name in columns])
        cursor = conn.execute(
            f"INSERT INTO {table} ({quoted}) SELECT {quoted} FROM incoming ON CONFLICT ({keys}) DO NOTHING"
        )
        return cursor.rowcount


def _tick_value(row: Mapping[str, Any], column: str) -> Any:
    value = row.get(column)
    if column == "venue" and value is None:
        return ""
    if column in ("price", "open", "high", "low", "close") and isinstance(value, float):
        return int(value)
    return value


def upsert(conn: psycopg.Connection[Any], table: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert or update rows of an earlier-pipeline table (`stocks_1m`, `futures_{sym3}`,
    `option_chain_raw`, `option_matrices_{underlying}`, `dolpha1_signal`); how many rows were new or changed.
    Within one batch the last row of a key wins."""
    schema, key = _layout(table)
    columns = schema.names
    latest: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        values = [_pipeline_value(row, field.name, field.type) for field in schema]
        latest[tuple(values[columns.index(name)] for name in key)] = values
    with conn.transaction():
        if table not in TABLES:
            template = KOSPI200_FUTURES_TABLE if schema is FUTURES else KOSPI200_MATRIX_TABLE
            conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (LIKE {template} INCLUDING ALL)")
        conn.execute(f"CREATE TEMPORARY TABLE incoming (LIKE {table}) ON COMMIT DROP")
        with conn.cursor().copy(f"COPY incoming ({', '.join(columns)}) FROM STDIN") as copy:
            for values in latest.values():
                copy.write_row(values)
        rest = [name for name in columns if name not in key]
        updates = ", ".join(f"{name} = excluded.{name}" for name in rest)
        mine = ", ".join(f"{table}.{name}" for name in rest)
        theirs = ", ".join(f"excluded.{name}" for name in rest)
        cursor = conn.execute(
            f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM incoming"
            f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
            f" WHERE ({mine}) IS DISTINCT FROM ({theirs})"
        )
        return cursor.rowcount


def stored_minutes(conn: psycopg.Connection[Any], table: str, symbol: str, day: date) -> list[datetime]:
    """The aware KST minutes `symbol` has rows for in an earlier-pipeline table on `day`, in order."""
    schema, _key = _layout(table)  # the name goes into SQL: only a pipeline table's
    if "symbol" not in schema.names:
        raise ValueError(f"{table} has no symbol column")
    start = datetime.combine(day, datetime.min.time())
    rows = conn.execute(
        f"SELECT DISTINCT timestamp FROM {table} WHERE symbol = %s AND timestamp >= %s AND timestamp < %s"
        " ORDER BY timestamp",
        (symbol, start, start + timedelta(days=1)),
    ).fetchall()
    return [from_kst_wall_time(row[0]) for row in rows]


def _layout(table: str) -> tuple[pa.Schema, tuple[str, ...]]:
    """The schema and key of an earlier-pipeline table, dynamic names included (checked: they go into SQL)."""
    if table in KEYS:
        return TABLES[table], KEYS[table]
    futures, matrices = "futures_", "option_matrices_"
    try:
        if table.startswith(futures) and len(table) == len(futures) + 3 and futures_table(table[8:]) == table:
            return FUTURES, KEYS[KOSPI200_FUTURES_TABLE]
        if table.startswith(matrices) and matrix_table(table[len(matrices) :]) == table:
            return OPTION_MATRIX, KEYS[KOSPI200_MATRIX_TABLE]
    except ValueError:
        pass
    raise ValueError(f"{table!r} is not a table of the earlier pipeline")


def _pipeline_value(row: Mapping[str, Any], column: str, kind: pa.DataType) -> Any:
    value = row.get(column)
    if value is None:
        return None
    if pa.types.is_timestamp(kind):
        return kst_wall_time(value)
    if pa.types.is_integer(kind):
        return int(value)
    if pa.types.is_floating(kind):
        return float(value)
    if pa.types.is_string(kind):
        return str(value)
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
