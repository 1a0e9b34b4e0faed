"""The day's tick journal (JSONL, the source of truth) into the Parquet ticks table.

Run after the close, it gives the analysts a day they can load in one line even when no store consumed the
spine during the day, and it is what the spine-fed table is checked against.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from store.parquet import ParquetWriter, compact, partition_dir

FLUSH_ROWS = 200_000
"""Rows buffered before a part file is written, so a day of any size converts in bounded memory."""


def journal_ticks(paths: DataPaths, day: date) -> Iterator[dict[str, Any]]:
    """Every tick row of every provider's journal of `day`, file by file in file order."""
    for provider in sorted(path.name for path in (paths.observer / "scalp").glob("*") if path.is_dir()):
        for path in paths.tick_files(provider, day):
            yield from read_jsonl(path).records


def import_journal_day(paths: DataPaths, day: date) -> int:
    """Replace the day's Parquet ticks with the journal's; the rows written."""
    root = paths.parquet_dir
    folder = partition_dir(root, "ticks", day)
    for old in folder.glob("*.parquet"):
        old.unlink()
    writer = ParquetWriter(root)
    for row in journal_ticks(paths, day):
        writer.add("ticks", day, row)
        if writer.buffered >= FLUSH_ROWS:
            writer.flush()
    writer.flush()
    return compact(root, "ticks", day)
