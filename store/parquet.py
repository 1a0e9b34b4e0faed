"""Parquet files of the analysis tables, in Hive partitions: `<root>/<table>/date=YYYYMMDD/*.parquet`.

During the day the writer buffers rows and writes them as a new part file at each `flush` (the store flushes
at least every 5 minutes), so a reader sees the day up to the last flush and a crash loses only what was not
flushed, which the spine delivers again. A part is written under a temporary name and renamed, so a file is
whole or absent. After the close `compact` merges a day's parts into one file ordered by time.

Rows from the spine carry its stream sequence (`stream_seq`): the writer remembers the highest one on disk per
table and drops any row at or below it, so a replay after a crash writes nothing twice.
"""

from __future__ import annotations

import os
import uuid
from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from store.tables import TABLES, TIME_COLUMN, to_table

SEQ_COLUMN = "stream_seq"
COMPACTED = "day.parquet"
TYPED_BATCH_ROWS = 5_000
"""Buffered rows are typed into Arrow columns this many at a time: a row waiting as a dict of JSON values
costs about 1 KB, typed a tenth of that, so a minute of a busy day waits in tens of MB, not hundreds."""


def partition_dir(root: Path, table: str, day: date) -> Path:
    return root / table / f"date={day:%Y%m%d}"


def with_seq(schema: pa.Schema) -> pa.Schema:
    return schema.append(pa.field(SEQ_COLUMN, pa.int64()))


class ParquetWriter:
    """Buffers rows per (table, day) and writes them as part files; one owner, not thread-safe."""

    def __init__(self, root: Path, tables: Mapping[str, pa.Schema] = TABLES) -> None:
        self.root = root
        self.schemas = {name: with_seq(schema) for name, schema in tables.items()}
        self._rows: dict[tuple[str, date], list[Mapping[str, Any]]] = defaultdict(list)
        self._typed: dict[tuple[str, date], list[pa.Table]] = defaultdict(list)
        self._typed_rows = 0
        self._high_seq: dict[str, int] = {name: self._seq_on_disk(name) for name in self.schemas}
        self._parts = 0
        self._writer = uuid.uuid4().hex[:8]  # a later writer in the same process never reuses a name

    def add(self, table: str, day: date, row: Mapping[str, Any], seq: int | None = None) -> bool:
        """Buffer one row of `table` for `day`; False when its stream sequence is already on disk."""
        if seq is not None:
            if seq <= self._high_seq[table]:
                return False
            self._high_seq[table] = seq
            row = {**row, SEQ_COLUMN: seq}
        rows = self._rows[(table, day)]
        rows.append(row)
        if len(rows) >= TYPED_BATCH_ROWS:
            self._type((table, day))
        return True

    @property
    def highest_seq(self) -> int:
        """The highest stream sequence written or buffered, over every table."""
        return max(self._high_seq.values(), default=0)

    def renumbered(self) -> None:
        """The stream was made anew and numbers from 1 again: sequences on disk no longer mark duplicates."""
        self._high_seq = dict.fromkeys(self._high_seq, 0)

    @property
    def buffered(self) -> int:
        return self._typed_rows + sum(len(rows) for rows in self._rows.values())

    def flush(self) -> int:
        """Write every buffered batch as a new part file; the number of rows written."""
        written = 0
        for key in list(self._rows):
            self._type(key)
        for (table, day), batches in list(self._typed.items()):
            rows = sum(batch.num_rows for batch in batches)
            if not rows:
                continue
            folder = partition_dir(self.root, table, day)
            folder.mkdir(parents=True, exist_ok=True)
            self._parts += 1
            name = f"part-{os.getpid()}-{self._writer}-{self._parts:06d}-{rows}.parquet"
            _write_atomically(pa.concat_tables(batches), folder / name)
            written += rows
            self._typed_rows -= rows
            del self._typed[(table, day)]
        return written

    def _type(self, key: tuple[str, date]) -> None:
        """The rows of `key` waiting as dicts, typed into one Arrow batch."""
        rows = self._rows.get(key)
        if rows:
            self._typed[key].append(to_table(self.schemas[key[0]], rows))
            self._typed_rows += len(rows)
        self._rows.pop(key, None)

    def _seq_on_disk(self, table: str) -> int:
        """The highest stream sequence in the table's files, from their column statistics (0 when none)."""
        highest = 0
        for path in (self.root / table).glob("date=*/*.parquet"):
            metadata = pq.ParquetFile(path).metadata
            index = metadata.schema.to_arrow_schema().get_field_index(SEQ_COLUMN)
            if index < 0:
                continue
            for group in range(metadata.num_row_groups):
                stats = metadata.row_group(group).column(index).statistics
                if stats is not None and stats.has_min_max:
                    highest = max(highest, int(stats.max))
        return highest


def compact(root: Path, table: str, day: date) -> int:
    """Merge a day's part files into one, ordered by the table's time column (ties keep their order), each
    stream sequence once; the rows in it. Idempotent: a day already compacted and without new parts is left as
    it is."""
    folder = partition_dir(root, table, day)
    parts = sorted(path for path in folder.glob("*.parquet") if path.name != COMPACTED)
    if not parts:
        target = folder / COMPACTED
        return pq.ParquetFile(target).metadata.num_rows if target.exists() else 0
    sources = sorted(folder.glob("*.parquet"))  # the compacted file (if any) sorts first: "day" < "part"
    merged = pa.concat_tables([pq.read_table(path) for path in sources], promote_options="default")
    merged = _once_per_seq(merged, TIME_COLUMN[table])
    order = pc.sort_indices(merged, sort_keys=[(TIME_COLUMN[table], "ascending")])  # a stable sort
    _write_atomically(merged.take(order), folder / COMPACTED)
    for path in parts:
        path.unlink()
    return merged.num_rows


def _once_per_seq(table: pa.Table, time_column: str) -> pa.Table:
    """The rows without repeats of a (stream sequence, time) pair, the first kept: parts left by a compaction
    killed between writing the day's file and removing them hold rows the day's file already has. The time
    tells apart rows of a stream that was made anew and numbers from 1 again."""
    if SEQ_COLUMN not in table.column_names:
        return table
    seen: set[tuple[int, Any]] = set()
    keep = []
    pairs = zip(table[SEQ_COLUMN].to_pylist(), table[time_column].to_pylist(), strict=True)
    for index, pair in enumerate(pairs):
        if pair[0] is None or pair not in seen:
            keep.append(index)
            seen.add(pair)
    return table if len(keep) == table.num_rows else table.take(keep)


def _write_atomically(table: pa.Table, path: Path) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary, compression="zstd")
    os.replace(temporary, path)
