"""The analysis tables: one Arrow schema each, typed as analysts expect.

Symbols are text (KRX codes keep their leading zeros), times are timestamps in the KST zone, prices and
volumes are integers of KRW and shares as KIS sends them. A row is the JSON dict of a journal line or of a
spine message; `to_table` casts a batch of them, and every column a row lacks is null.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

KST_TIMESTAMP = pa.timestamp("us", tz="Asia/Seoul")

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
        ("open", pa.int64()),
        ("high", pa.int64()),
        ("low", pa.int64()),
        ("close", pa.int64()),
        ("gap_start", KST_TIMESTAMP),
        ("gap_end", KST_TIMESTAMP),
    ]
)
"""Streamed ticks (`source` "ws") and back-filled minute bars (`source` "recovery", with OHLC and the gap)."""

TABLES: Mapping[str, pa.Schema] = {"ticks": TICKS}

TIME_COLUMN: Mapping[str, str] = {"ticks": "exchange_time"}
"""The column a table's rows are ordered and partitioned by."""


def to_table(schema: pa.Schema, rows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """The rows as a table of `schema`: times from ISO 8601 text with their offset, numbers as typed.

    Recovery bars carry prices as floats of whole won; they are cast to the schema's integers exactly.
    """
    rows = list(rows)
    columns = []
    for field in schema:
        values = [row.get(field.name) for row in rows]
        if pa.types.is_timestamp(field.type):
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
