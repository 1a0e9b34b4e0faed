"""Where the minute jobs' rows go: Parquet always, PostgreSQL too when a URL is configured.

Parquet (`store.parquet.ParquetWriter` under `<data-dir>/observer/parquet/`) buffers rows and writes a part
file at each `flush`. PostgreSQL gets every batch through `store.postgres.upsert`, after the migrations were
applied on the first connection. When the database cannot be reached the batches wait in memory in their
order and the store tries again after the next step of its backoff; `on_outage` is called once per outage
(the actor turns it into one SystemAlert), and when the database answers again the waiting batches go in
first, so nothing is lost and, the writes being upserts, nothing is doubled. At start the day's Parquet rows
are queued again (`requeue_day`), so rows a stopped run could not deliver reach the database too.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pyarrow.parquet as pq
from loguru import logger

from pipeline.candle_check import CandleCheck, report
from runtime.backoff import Backoff
from runtime.logs import register_secret
from store.parquet import ParquetWriter, compact, partition_dir
from store.postgres import migrate, upsert
from store.tables import KEYS, TABLES, from_kst_wall_time

PIPELINE_TABLES = {name: TABLES[name] for name in KEYS}
CONNECT_TIMEOUT_SECONDS = 5

Batch = tuple[str, list[dict[str, Any]]] | CandleCheck
"""A table's rows to upsert, or a candle check to put in `system_status`."""


class PipelineStore:
    """One owner (the minute jobs' actor thread); not thread-safe."""

    def __init__(
        self,
        parquet_root: Path,
        postgres_url: str | None,
        *,
        retry: Backoff,
        on_outage: Callable[[str], None],
        now: Callable[[], datetime],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.parquet_root = parquet_root
        self._parquet = ParquetWriter(parquet_root, PIPELINE_TABLES)
        self._url = postgres_url
        if postgres_url is not None:
            register_secret(urlsplit(postgres_url).password)
        self._retry = retry
        self._on_outage = on_outage
        self._now = now
        self._monotonic = monotonic
        self._rng = random.Random()
        self._conn: psycopg.Connection[Any] | None = None
        self._pending: list[Batch] = []
        self._failures = 0
        self._next_try = 0.0

    @property
    def postgres(self) -> bool:
        return self._url is not None

    @property
    def waiting(self) -> int:
        """Rows waiting for PostgreSQL."""
        return sum(len(batch[1]) for batch in self._pending if isinstance(batch, tuple))

    def write(self, table: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Buffer rows of a pipeline table for Parquet and PostgreSQL; how many."""
        batch = [dict(row) for row in rows]
        for row in batch:
            self._parquet.add(table, row["timestamp"].date(), row)
        if batch and self._url is not None:
            self._pending.append((table, batch))
        return len(batch)

    def requeue_day(self, day: date) -> int:
        """Queue the Parquet rows of `day` for PostgreSQL again (at start: rows an earlier run or incarnation
        could not deliver before it stopped; the upserts leave the rows already there alone); how many."""
        if self._url is None:
            return 0
        count = 0
        for table in PIPELINE_TABLES:
            rows = self.rows(table, day)
            if rows:
                self._pending.append((table, rows))
                count += len(rows)
        return count

    def report(self, check: CandleCheck) -> None:
        """The check's outcome for `system_status` (PostgreSQL only; the actor logs it too)."""
        if self._url is not None:
            self._pending.append(check)

    def flush_parquet(self) -> int:
        return self._parquet.flush()

    def compact(self, day: date) -> None:
        """Flush, then merge each table's part files of `day` into one (after the close)."""
        self.flush_parquet()
        for table in PIPELINE_TABLES:
            if partition_dir(self.parquet_root, table, day).exists():
                compact(self.parquet_root, table, day)

    def open(self) -> None:
        """Connect and apply the migrations now (at start), so the tables exist before the first minute."""
        if self._url is None:
            return
        try:
            self._connect()
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._down(error)

    def sync(self) -> bool:
        """Send what waits to PostgreSQL when it is due; True when nothing waits any more."""
        if self._url is None or not self._pending:
            return True
        if self._monotonic() < self._next_try:
            return False
        try:
            conn = self._connect()
            while self._pending:
                batch = self._pending[0]
                if isinstance(batch, tuple):
                    upsert(conn, *batch)
                else:
                    report(conn, batch, now=self._now())
                self._pending.pop(0)
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            self._down(error)
            return False
        if self._failures:
            logger.info("PostgreSQL reachable again after {} failed attempts; caught up", self._failures)
        self._failures = 0
        return True

    def rows(self, table: str, day: date) -> list[dict[str, Any]]:
        """The table's rows in the Parquet files of `day` (flush first), times as aware KST."""
        found: list[dict[str, Any]] = []
        for path in sorted(partition_dir(self.parquet_root, table, day).glob("*.parquet")):
            for row in pq.read_table(path).to_pylist():
                row["timestamp"] = from_kst_wall_time(row["timestamp"])
                found.append(row)
        return found

    def has_day(self, table: str, day: date) -> bool:
        """Whether the table has Parquet files of `day`."""
        return any(partition_dir(self.parquet_root, table, day).glob("*.parquet"))

    def minutes(self, table: str, symbol: str, day: date) -> set[datetime]:
        """The aware KST minutes `symbol` has rows for in the table's Parquet files of `day` (flush first)."""
        found: set[datetime] = set()
        for path in sorted(partition_dir(self.parquet_root, table, day).glob("*.parquet")):
            data = pq.read_table(path, columns=["timestamp", "symbol"]).to_pydict()
            found.update(
                from_kst_wall_time(stamp)
                for stamp, owner in zip(data["timestamp"], data["symbol"], strict=True)
                if owner == symbol
            )
        return found

    def close(self) -> None:
        """Flush Parquet, try PostgreSQL once more, close the connection."""
        self.flush_parquet()
        self._next_try = 0.0
        self.sync()
        if self._pending:
            logger.warning("{} rows never reached PostgreSQL (they are in Parquet)", self.waiting)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> psycopg.Connection[Any]:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        assert self._url is not None
        conn = psycopg.connect(self._url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _down(self, error: Exception) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        delay = self._retry.delay(self._failures, self._rng)
        first = self._failures == 0
        self._failures += 1
        self._next_try = self._monotonic() + delay
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        logger.warning("PostgreSQL unreachable ({}); {} rows wait, next try in {:.1f} s",
                       reason, self.waiting, delay)
        if first:
            self._on_outage(f"PostgreSQL unreachable; rows wait in memory and in Parquet: {reason}")
