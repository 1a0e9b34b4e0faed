"""Spine messages as rows of the analysis tables: which table a message goes to and the row it makes.

The row is the message's JSON object with its fields renamed where a table unites several message types
(the gap events); times stay ISO 8601 text with their offset, which `store.tables.to_table` types. Messages
the store keeps no table of (scan summaries, day events...) map to None.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from spine import wire
from store.tables import KST, TIME_COLUMN

TABLE_OF_TYPE: Mapping[str, str] = {
    "tick": "ticks",
    "snapshot": "snapshots",
    "trigger": "triggers",
    "slot": "slot_changes",
    "overflow": "overflow",
    "gap_opened": "gaps",
    "gap_closed": "gaps",
    "gap_recovered": "gaps",
    "gap_marked": "gaps",
    "alert": "alerts",
    "phase": "phase_changes",
    "health": "health",
}
"""The message types the store keeps, and their table."""

_GAP_EVENT = {"gap_opened": "opened", "gap_closed": "closed", "gap_recovered": "recovered",
              "gap_marked": "marked"}  # fmt: skip


def row_of(document: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The table and row of one spine message (its parsed JSON object), None when no table keeps its type.
    ValueError when the message does not fit its model (`spine.wire.parse` decides)."""
    kind = document.get("type")
    table = TABLE_OF_TYPE.get(str(kind))
    if table is None:
        return None
    wire.parse(dict(document))
    row = dict(document)
    match kind:
        case "overflow":
            row["metadata"] = json.dumps(row.get("metadata"), ensure_ascii=False, sort_keys=True)
        case "gap_marked":
            row.update(at=row["timestamp"], start=row["start_time"], end=row["end_time"],
                       event=_GAP_EVENT[kind])
        case "gap_opened" | "gap_closed" | "gap_recovered":
            row["event"] = _GAP_EVENT[kind]
        case "health":
            for name in ("actors_down", "restarts", "counters"):
                row[name] = json.dumps(row.get(name), ensure_ascii=False, sort_keys=True)
    return table, row


def day_of(table: str, row: Mapping[str, Any]) -> date:
    """The KST day whose partition holds the row: the day of its table's time column."""
    return datetime.fromisoformat(str(row[TIME_COLUMN[table]])).astimezone(KST).date()
