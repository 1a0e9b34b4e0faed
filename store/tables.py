"""The analysis tables: one Arrow schema each, typed as analysts expect.

Symbols are text (KRX codes keep their leading zeros), times are timestamps in the KST zone, prices and
volumes are integers of KRW and shares as KIS sends them. A row is the JSON dict of a journal line or of a
spine message; `to_table` casts a batch of them, and every column a row lacks is null.

The earlier pipeline's tables (realtime_pipeline_ht_api.md: `stocks_1m`, `futures_{sym3}` and the streamed
`futures_trades_101`, `option_chain_raw`, `option_matrices_{underlying}`, `dolpha1_signal`) keep that
document's time policy: timestamps are KST wall time without a zone (`KST_WALL`), converted from aware
times by `kst_wall_time` and nowhere else; the rest of the observer stays zone-aware. Futures prices are
index points (floats).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from core.calendar import KST
from core.option_matrix import column_names

KST_TIMESTAMP = pa.timestamp("us", tz="Asia/Seoul")
KST_WALL = pa.timestamp("us")
"""A KST wall time without a zone: the earlier pipeline's TIMESTAMP columns."""

TICKS = pa.schema(
    [
        ("symbol", pa.string()),
        ("venue", pa.string()),
        ("exchange_time", KST_TIMESTAMP),
        ("received_at", KST_TIMESTAMP),
        ("price", pa.int64()),
        ("volume", pa.int64()),
        ("cum_volume", pa.int64()),
        ("cum_value", pa.int64()),
        ("change_rate", pa.float64()),
        ("ask1", pa.int64()),
        ("bid1", pa.int64()),
        ("side", pa.string()),
        ("strength", pa.float64()),
        ("source", pa.string()),
        ("tr_id", pa.string()),
        ("open", pa.int64()),
        ("high", pa.int64()),
        ("low", pa.int64()),
        ("close", pa.int64()),
        ("gap_start", KST_TIMESTAMP),
        ("gap_end", KST_TIMESTAMP),
    ]
)
"""Streamed ticks (`source` "ws") and back-filled minute bars (`source` "recovery", with OHLC and the gap)."""

STOCKS_1M = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("symbol", pa.string()),
        ("timeframe", pa.string()),
        ("open", pa.int64()),
        ("high", pa.int64()),
        ("low", pa.int64()),
        ("close", pa.int64()),
        ("volume", pa.int64()),
        ("source", pa.string()),
    ]
)
"""Stock minute candles keyed by (timestamp, symbol, timeframe); `source` "ticks" or "kis" (the bar won)."""

FUTURES = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("symbol", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.int64()),
    ]
)
"""One underlying's futures minute candles (`futures_{sym3}`), front and next month, keyed by (timestamp,
symbol)."""

FUTURES_TRADES = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("volume", pa.int64()),
        ("cum_volume", pa.int64()),
        ("change", pa.float64()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("ask1", pa.float64()),
        ("bid1", pa.float64()),
        ("open_interest", pa.int64()),
        ("basis", pa.float64()),
        ("theoretical", pa.float64()),
    ]
)
"""One underlying's futures trades streamed over the WebSocket (H0IFCNT0), beside its minute candles, keyed by
(timestamp, symbol, cum_volume): several trades share a second, never a cumulative volume."""

OPTION_CHAIN_RAW = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("underlying", pa.string()),
        ("month", pa.string()),
        ("code", pa.string()),
        ("side", pa.string()),
        ("strike", pa.float64()),
        ("price", pa.float64()),
        ("theoretical", pa.float64()),
        ("iv", pa.float64()),
        ("delta", pa.float64()),
        ("gamma", pa.float64()),
        ("vega", pa.float64()),
        ("theta", pa.float64()),
        ("open_interest", pa.int64()),
        ("volume", pa.int64()),
    ]
)
"""Each minute's option board as it came, one row per contract, keyed by (timestamp, code)."""

OPTION_MATRIX = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("underlying_symbol", pa.string()),
        ("metric_type", pa.string()),
        ("underlying_price", pa.float64()),
        ("atm_strike", pa.float64()),
        *((name, pa.float64()) for name in column_names()),
    ]
)
"""One underlying's matrices (`option_matrices_{underlying}`) keyed by (timestamp, underlying_symbol,
metric_type), columns c_/p_ from deep ITM through ATM to deep OTM."""

DOLPHA1_SIGNAL = pa.schema(
    [
        ("timestamp", KST_WALL),
        ("symbol", pa.string()),
        ("close", pa.float64()),
        ("vwap", pa.float64()),
        ("atr", pa.float64()),
        ("monitor_upper", pa.float64()),
        ("monitor_lower", pa.float64()),
        ("trade_upper", pa.float64()),
        ("trade_lower", pa.float64()),
        ("level", pa.string()),
        ("side", pa.string()),
        ("changed", pa.bool_()),
    ]
)
"""dolpha1's features and signal per symbol and minute, keyed by (timestamp, symbol)."""

SNAPSHOTS = pa.schema(
    [
        ("scanned_at", KST_TIMESTAMP),
        ("account", pa.string()),
        ("scan_no", pa.int64()),
        ("symbol", pa.string()),
        ("name", pa.string()),
        ("price", pa.int64()),
        ("change", pa.int64()),
        ("sign", pa.string()),
        ("change_rate", pa.float64()),
        ("volume", pa.int64()),
        ("value", pa.int64()),
        ("open", pa.int64()),
        ("high", pa.int64()),
        ("low", pa.int64()),
        ("upper_limit", pa.int64()),
        ("lower_limit", pa.int64()),
        ("prev_close", pa.int64()),
        ("base_price", pa.int64()),
        ("ask", pa.int64()),
        ("bid", pa.int64()),
    ]
)
"""One row per symbol of each Track A scan (the spine's `snapshot` messages)."""

TRIGGERS = pa.schema(
    [
        ("detected_at", KST_TIMESTAMP),
        ("symbol", pa.string()),
        ("kind", pa.string()),
        ("strength", pa.float64()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("expires_at", KST_TIMESTAMP),
    ]
)
"""New triggers (the spine's `trigger` messages)."""

SLOT_CHANGES = pa.schema(
    [
        ("at", KST_TIMESTAMP),
        ("account", pa.string()),
        ("symbol", pa.string()),
        ("action", pa.string()),
        ("reason", pa.string()),
    ]
)
"""Subscribe and unsubscribe decisions of the slot manager (the spine's `slot` messages)."""

OVERFLOW = pa.schema(
    [
        ("timestamp", KST_TIMESTAMP),
        ("account", pa.string()),
        ("symbol", pa.string()),
        ("trigger_type", pa.string()),
        ("trigger_strength", pa.float64()),
        ("priority_score", pa.float64()),
        ("reason", pa.string()),
        ("current_slot_min_score", pa.float64()),
        ("metadata", pa.string()),
    ]
)
"""Candidates that got no slot (the overflow ledger's lines); `metadata` is its JSON object as text."""

GAPS = pa.schema(
    [
        ("at", KST_TIMESTAMP),
        ("event", pa.string()),
        ("account", pa.string()),
        ("symbol", pa.string()),
        ("start", KST_TIMESTAMP),
        ("end", KST_TIMESTAMP),
        ("duration_seconds", pa.float64()),
        ("expected", pa.bool_()),
        ("reason", pa.string()),
        ("action", pa.string()),
        ("bars", pa.int64()),
        ("detail", pa.string()),
    ]
)
"""Every gap event, `event` saying which: "opened", "closed", "recovered" (back-filled; the bars are ticks of
source "recovery") or "marked" (the gap marker line: `at` is its timestamp, `start`/`end` its times)."""

ALERTS = pa.schema(
    [
        ("at", KST_TIMESTAMP),
        ("key", pa.string()),
        ("text", pa.string()),
    ]
)
"""Alerts that passed their cooldown: "<symbol>:<signal>" for market alerts, "system:<key>" for operations."""

PHASE_CHANGES = pa.schema(
    [
        ("at", KST_TIMESTAMP),
        ("phase", pa.string()),
        ("previous", pa.string()),
    ]
)
"""The day's phase changes (the spine's `phase` messages): `phase` began at `at`, after `previous`."""

HEALTH = pa.schema(
    [
        ("at", KST_TIMESTAMP),
        ("uptime_seconds", pa.float64()),
        ("phase", pa.string()),
        ("actors_alive", pa.int64()),
        ("actors_total", pa.int64()),
        ("actors_down", pa.string()),
        ("restarts", pa.string()),
        ("counters", pa.string()),
        ("published", pa.int64()),
        ("dropped", pa.int64()),
    ]
)
"""Each process's health every few seconds (the spine's `health` messages); `actors_down` (a list),
`restarts` and `counters` (objects) are their JSON as text."""

EVENT_TABLES: Mapping[str, pa.Schema] = {
    "snapshots": SNAPSHOTS,
    "triggers": TRIGGERS,
    "slot_changes": SLOT_CHANGES,
    "overflow": OVERFLOW,
    "gaps": GAPS,
    "alerts": ALERTS,
    "phase_changes": PHASE_CHANGES,
    "health": HEALTH,
}
"""The tables the store role fills from the spine besides `ticks`, each keyed by its first (time) column."""

EVENT_KEYS: Mapping[str, tuple[str, ...]] = {
    "snapshots": ("scanned_at", "account", "scan_no", "symbol"),
    "triggers": ("detected_at", "symbol", "kind"),
    "slot_changes": ("at", "account", "symbol", "action"),
    "overflow": ("timestamp", "account", "symbol", "reason"),
    "gaps": ("at", "event", "account", "symbol", "start"),
    "alerts": ("at", "key"),
    "phase_changes": ("at", "phase"),
    "health": ("at", "uptime_seconds"),
}
"""What identifies an event row in PostgreSQL, so a replay from the spine inserts nothing twice (two
processes' health messages of one moment differ in their uptime)."""

KOSPI200_FUTURES_TABLE = "futures_101"
KOSPI200_FUTURES_TRADES_TABLE = "futures_trades_101"
KOSPI200_MATRIX_TABLE = "option_matrices_kospi200"
_TABLE_PART = re.compile(r"^[0-9a-z]{1,32}$")

TABLES: Mapping[str, pa.Schema] = {
    "ticks": TICKS,
    "stocks_1m": STOCKS_1M,
    KOSPI200_FUTURES_TABLE: FUTURES,
    KOSPI200_FUTURES_TRADES_TABLE: FUTURES_TRADES,
    "option_chain_raw": OPTION_CHAIN_RAW,
    KOSPI200_MATRIX_TABLE: OPTION_MATRIX,
    "dolpha1_signal": DOLPHA1_SIGNAL,
    **EVENT_TABLES,
}

TIME_COLUMN: Mapping[str, str] = {
    name: "exchange_time" if name == "ticks" else schema.names[0] if name in EVENT_TABLES else "timestamp"
    for name, schema in TABLES.items()
}
"""The column a table's rows are ordered and partitioned by."""

KEYS: Mapping[str, tuple[str, ...]] = {
    "stocks_1m": ("timestamp", "symbol", "timeframe"),
    KOSPI200_FUTURES_TABLE: ("timestamp", "symbol"),
    KOSPI200_FUTURES_TRADES_TABLE: ("timestamp", "symbol", "cum_volume"),
    "option_chain_raw": ("timestamp", "code"),
    KOSPI200_MATRIX_TABLE: ("timestamp", "underlying_symbol", "metric_type"),
    "dolpha1_signal": ("timestamp", "symbol"),
}
"""What identifies a row of each earlier-pipeline table: an upsert's conflict target."""


def futures_table(code: str) -> str:
    """The table of a futures code's underlying, named by the code's first three characters (101W09 ->
    futures_101, the KOSPI200 futures)."""
    return _table_name("futures", code[:3] if len(code) >= 3 else code)


def matrix_table(underlying: str) -> str:
    """The matrix table of an underlying (KOSPI200 -> option_matrices_kospi200)."""
    return _table_name("option_matrices", underlying)


def _table_name(prefix: str, part: str) -> str:
    part = part.lower()
    if not _TABLE_PART.match(part):
        raise ValueError(f"{prefix}: {part!r} is no table name part (1 to 32 letters or digits)")
    return f"{prefix}_{part}"


def kst_wall_time(moment: datetime | str) -> datetime:
    """An aware time (or ISO 8601 text with its offset) as KST wall time without a zone: the one place the
    earlier pipeline's tables get their timestamps from. A time without a zone is refused, not guessed."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no zone; pass an aware time")
    return moment.astimezone(KST).replace(tzinfo=None)


def from_kst_wall_time(wall: datetime) -> datetime:
    """A wall timestamp read back from those tables as the aware KST time it stands for (the inverse)."""
    if wall.tzinfo is not None:
        raise ValueError(f"{wall.isoformat()} already has a zone; the pipeline's tables hold wall times")
    return wall.replace(tzinfo=KST)


def to_table(schema: pa.Schema, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """The rows as a table of `schema`: times from ISO 8601 text with their offset, numbers as typed.

    Recovery bars carry prices as floats of whole won; they are cast to the schema's integers exactly.
    """
    rows = list(rows)
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_timestamp(field.type) and field.type.tz is None:
            walls = [None if value is None else kst_wall_time(value) for value in values]
            column = pa.array(walls, field.type)
        elif pa.types.is_timestamp(field.type):
            column = pa.array(values, pa.string()).cast(field.type)
        elif pa.types.is_integer(field.type):
            column = pa.array([None if value is None else _whole(value, field.name) for value in values])
            column = column.cast(field.type)
        else:
            column = pa.array(values, field.type)
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=schema)


def _whole(value: Any, name: str) -> int:
    number = int(value)
    if number != value:
        raise ValueError(f"column {name}: {value!r} is not a whole number")
    return number
