"""The day's tick journal (JSONL, the source of truth) into the Parquet ticks table.

Run after the close, it gives the analysts a day they can load in one line even when no store consumed the
spine during the day, and it is what the spine-fed table is checked against (`compare_ticks`, whose verdict
the run's summary JSON carries).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from core.sessions import Venue
from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from spine import wire
from store.parquet import ParquetWriter, compact, partition_dir
from store.tables import TICKS, to_table

FLUSH_ROWS = 200_000
"""Rows buffered before a part file is written, so a day of any size converts in bounded memory."""
COMPARE_BATCH = 50_000
"""Rows typed and hashed at a time by `compare_ticks`."""
COMPARED = pa.schema([field for field in TICKS if field.name in wire.Tick.model_fields])
"""The tick columns the spine carries, so the store's Parquet has them for every row: `tr_id` and the
recovery rows' bar columns (open, high, low, close, gap_start, gap_end) are the journal's alone."""


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


@dataclass(frozen=True, slots=True)
class TickComparison:
    """The day's ticks in the journal and in Parquet, and whether they are the same rows."""

    journal_rows: int
    parquet_rows: int
    equal: bool

    def figures(self) -> dict[str, Any]:
        """The summary JSON's fields."""
        return {"parquet_ticks_equal_journal": self.equal, "journal_ticks": self.journal_rows,
                "parquet_ticks": self.parquet_rows}


def compare_ticks(paths: DataPaths, day: date) -> TickComparison:
    """The day's journal ticks against its Parquet ticks, row for row: equal when both hold the same rows
    (every column of `COMPARED`, each row as often) in any order. A journal recovery row without a venue
    counts as KRX's, as the spine names it (`spine.convert`).

    Both sides are typed by the same schema and streamed in batches; each side is summed as a multiset
    fingerprint (a 128-bit hash per row, added up), so a day of any size compares in bounded memory.
    """
    journal = _fingerprint(_batches(journal_ticks(paths, day)))
    parquet = _fingerprint(_parquet_batches(paths.parquet_dir, day))
    return TickComparison(journal_rows=journal[0], parquet_rows=parquet[0], equal=journal == parquet)


def _batches(rows: Iterator[dict[str, Any]]) -> Iterator[pa.Table]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        if row.get("venue") is None and row.get("source") == "recovery":
            row = {**row, "venue": Venue.KRX.value}
        batch.append(row)
        if len(batch) >= COMPARE_BATCH:
            yield to_table(COMPARED, batch)
            batch = []
    if batch:
        yield to_table(COMPARED, batch)


def _parquet_batches(root: Path, day: date) -> Iterator[pa.Table]:
    for path in sorted(partition_dir(root, "ticks", day).glob("*.parquet")):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=COMPARE_BATCH, columns=COMPARED.names):
            yield pa.Table.from_batches([batch]).cast(COMPARED)


def _fingerprint(tables: Iterable[pa.Table]) -> tuple[int, int]:
    """(rows, the sum of their hashes modulo 2**128): equal for the same rows in any order."""
    count = total = 0
    for table in tables:
        columns = [
            (column.cast(pa.int64()) if pa.types.is_timestamp(column.type) else column).to_pylist()
            for column in table.columns
        ]  # times as microseconds: the same instant hashes alike, and no datetime objects are made
        for row in zip(*columns, strict=True):
            digest = hashlib.blake2b(repr(row).encode(), digest_size=16).digest()
            total = (total + int.from_bytes(digest, "big")) % (1 << 128)
            count += 1
    return count, total
