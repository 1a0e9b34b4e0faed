"""The store role: rows per second from the spine into Parquet and PostgreSQL, its lag behind publication at
5,000 ticks/s, bytes on disk per million ticks and the time to load one symbol-day, for JSONL, Parquet and
PostgreSQL.

    python -m tools.bench.store [--ticks N] [--lag-seconds S] [--json FILE]

One embedded nats-server; PostgreSQL from the machine's server binaries (as the tests start it), its figures
NaN when there are none. Baselines, measured in the same run: the same rows written straight from memory
(`ParquetWriter`, `insert_ticks`) for the rates; a bare pull consumer that acknowledges what it fetches for
the lag; JSONL for the sizes and load times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
import psycopg
import pyarrow.parquet as pq
from nats.js.api import AckPolicy, ConsumerConfig

from config.settings import SpineSettings
from core.settings import SessionSettings
from messages.market import TicksReceived
from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from spine.convert import facts_of
from spine.publisher import Publisher
from spine.server import NatsServer
from spine.stream import ensure_stream
from spine.subjects import Subjects
from store.parquet import ParquetWriter, partition_dir
from store.postgres import insert_ticks, migrate
from store.role import StoreOptions, StoreRole
from tools.bench.report import Result
from tools.bench.spine import AT, tick_messages

RATE = 5_000
"""Ticks per second of the lag measurement: a busy minute of the day."""
LAG_FLUSH_SECONDS = 1.0
CAPACITY_INSTANCE = "benchstore"
LAG_INSTANCE = "benchlag"
LOAD_BUDGET_SECONDS = 0.5
"""DESIGN.md section 8: a symbol-day of ticks loads in under half a second (JSONL's load is the baseline)."""
SYMBOL = "000000"


class RunningStore:
    """A `StoreRole` on a thread of its own until `stop()`."""

    def __init__(self, options: StoreOptions) -> None:
        self.role = StoreRole(options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._main()), name="bench-store", daemon=True
        )
        self._thread.start()
        self._ready.wait(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        await self.role.run(self._stop)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(120)


def _rows(messages: list[TicksReceived]) -> list[dict[str, Any]]:
    sessions = SessionSettings()
    facts = (fact for message in messages for fact in facts_of(message, sessions))
    return [json.loads(fact.model_dump_json()) for fact in facts]


def _publish_backlog(url: str, instance: str, rows: list[dict[str, Any]]) -> None:
    """The rows as tick messages in the stream, published by plain nats-py and confirmed by JetStream."""
    subjects = Subjects(instance)

    async def publish() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream(timeout=30)
        await ensure_stream(js, SpineSettings(instance=instance))
        for start in range(0, len(rows), 1_000):
            acks = [
                js.publish(subjects.ticks(row["symbol"]), json.dumps(row).encode())
                for row in rows[start : start + 1_000]
            ]
            await asyncio.gather(*acks)
        await nc.close()

    asyncio.run(publish())


def _until(condition: Callable[[], bool], timeout: float) -> float:
    """Seconds until `condition` held (NaN when `timeout` passed first)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return math.nan
        time.sleep(0.01)
    return time.monotonic() - started


def _p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


@contextlib.contextmanager
def _database(root: Path) -> Iterator[str | None]:
    """A PostgreSQL server's URL for this run, None when the machine has no server binaries."""
    try:
        from tools.pg_server import postgres_bin, postgres_server

        postgres_bin()
    except (ImportError, RuntimeError):
        yield None
        return
    with postgres_server() as server:
        yield server.url


def _fresh_database(url: str, name: str) -> str:
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + f"/{name}"


def capacity(server: NatsServer, root: Path, database: str | None, ticks: int) -> tuple[list[Result], dict]:
    """The store catching up a backlog of `ticks` ticks; the rates and what the sizes and loads need."""
    rows = _rows(tick_messages(ticks))
    _publish_backlog(server.url, CAPACITY_INSTANCE, rows)
    day = AT.date()

    started = time.monotonic()
    direct = ParquetWriter(root / "direct")
    for row in rows:
        direct.add("ticks", day, row)
    direct.flush()
    parquet_base = ticks / (time.monotonic() - started)
    postgres_base = math.nan
    store_url = None
    if database is not None:
        direct_url = _fresh_database(database, "direct")
        with psycopg.connect(direct_url, autocommit=True) as conn:
            migrate(conn)
            started = time.monotonic()
            for start in range(0, ticks, 1_000):
                insert_ticks(conn, rows[start : start + 1_000])
            postgres_base = ticks / (time.monotonic() - started)
        store_url = _fresh_database(database, "store")

    data = root / "store"
    options = StoreOptions(
        nats_url=server.url,
        data_dir=data,
        postgres_url=store_url,
        instance=CAPACITY_INSTANCE,
        flush_seconds=1.0,
    )
    store = RunningStore(options)
    stats = store.role.stats
    started = time.monotonic()
    parquet_seconds = postgres_seconds = math.nan
    while time.monotonic() - started < 300:
        now = time.monotonic() - started
        if math.isnan(parquet_seconds) and stats.parquet.rows >= ticks:
            parquet_seconds = now
        if math.isnan(postgres_seconds) and stats.postgres.rows >= ticks:
            postgres_seconds = now
        if not math.isnan(parquet_seconds) and (store_url is None or not math.isnan(postgres_seconds)):
            break
        time.sleep(0.01)
    store.stop()

    detail = f"{ticks:,} ticks waiting in the stream, caught up by the store role (flush every 1 s)"
    results = [
        Result("store_parquet_rows_per_s_from_spine", ticks / parquet_seconds, "rows/s", "> 5,000",
               parquet_base, ticks / parquet_seconds > RATE,
               f"{detail}; baseline: ParquetWriter straight from memory"),
        Result("store_postgres_rows_per_s_from_spine", ticks / postgres_seconds, "rows/s", "> 5,000",
               postgres_base, ticks / postgres_seconds > RATE,
               f"{detail}; baseline: insert_ticks straight from memory, 1,000 a batch"
               if store_url else "no PostgreSQL server binaries on this machine"),
    ]  # fmt: skip
    return results, {"rows": rows, "data": data, "postgres": store_url}


def lag(server: NatsServer, root: Path, seconds: float) -> Result:
    """Ticks published at `RATE` per second by the observer's publisher while the store runs live."""
    messages = tick_messages(int(RATE * seconds))
    settings = SpineSettings(instance=LAG_INSTANCE, publish_queue_limit=len(messages) + 1)
    publisher = Publisher(server.url, settings, name="bench-lag").start()
    if not publisher.wait_connected(20):
        raise RuntimeError("the publisher could not connect")
    store = RunningStore(
        StoreOptions(
            nats_url=server.url, data_dir=root / "lag", instance=LAG_INSTANCE, flush_seconds=LAG_FLUSH_SECONDS
        )
    )
    bare: list[float] = []
    done = threading.Event()
    reader = threading.Thread(target=lambda: asyncio.run(_bare_consumer(server.url, bare, done)), daemon=True)
    reader.start()
    time.sleep(1.0)  # both consumers set up
    started = time.monotonic()
    for number, message in enumerate(messages):
        due = started + number / RATE
        if (wait := due - time.monotonic()) > 0:
            time.sleep(wait)
        publisher.publish(message)
    publisher.stop()
    _until(lambda: store.role.stats.parquet.rows >= len(messages) and len(bare) >= len(messages), timeout=60)
    done.set()
    reader.join(10)
    store.stop()
    lags = list(store.role.stats.lags)
    figure = _p99(lags)
    return Result(
        f"store_lag_p99_at_{RATE}_per_s", figure, "s", f"<= {LAG_FLUSH_SECONDS + 1:g} (flush every "
        f"{LAG_FLUSH_SECONDS:g} s)", _p99(bare), figure <= LAG_FLUSH_SECONDS + 1,
        f"{len(lags):,} of {len(messages):,} ticks on disk, {publisher.dropped} dropped by the publisher; "
        f"from arrival in the stream to the Parquet part written; baseline: a bare pull consumer's fetch",
    )  # fmt: skip


async def _bare_consumer(url: str, lags: list[float], done: threading.Event) -> None:
    nc = await nats.connect(url)
    subjects = Subjects(LAG_INSTANCE)
    js = nc.jetstream()
    await ensure_stream(js, SpineSettings(instance=LAG_INSTANCE))
    sub = await js.pull_subscribe(
        subjects.everything,
        durable="bare",
        stream=subjects.stream_name,
        config=ConsumerConfig(ack_policy=AckPolicy.ALL, max_ack_pending=-1),
    )
    while not done.is_set():
        try:
            msgs = await sub.fetch(1_000, timeout=0.2)
        except TimeoutError:
            continue
        now = time.time()
        lags.extend(now - msg.metadata.timestamp.timestamp() for msg in msgs)
        if msgs:
            await msgs[-1].ack()
    await nc.close()


def footprint(root: Path, backlog: dict[str, Any]) -> list[Result]:
    """Bytes per million ticks and one symbol-day's load time: the JSONL journal, Parquet, PostgreSQL."""
    rows: list[dict[str, Any]] = backlog["rows"]
    paths = DataPaths(root / "jsonl")
    day = AT.date()
    by_symbol: dict[str, list[str]] = {}
    for row in rows:
        line = json.dumps(
            {
                key: row[key]
                for key in (
                    "symbol",
                    "exchange_time",
                    "received_at",
                    "price",
                    "volume",
                    "cum_volume",
                    "cum_value",
                    "change_rate",
                    "ask1",
                    "bid1",
                    "side",
                    "strength",
                    "source",
                )
            },
            separators=(",", ":"),
        )
        by_symbol.setdefault(row["symbol"], []).append(line)
    for symbol, lines in by_symbol.items():
        path = paths.tick_file("bench", "KOSPI", day, symbol)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    jsonl_bytes = sum(path.stat().st_size for path in paths.tick_files("bench", day))
    folder = partition_dir(backlog["data"] / "observer" / "parquet", "ticks", day)
    parquet_bytes = sum(path.stat().st_size for path in folder.glob("*.parquet"))
    per_million = 1_000_000 / len(rows)

    def timed(load: Callable[[], int]) -> tuple[float, int]:
        started = time.monotonic()
        count = load()
        return time.monotonic() - started, count

    jsonl_load, jsonl_rows = timed(
        lambda: len(read_jsonl(paths.tick_file("bench", "KOSPI", day, SYMBOL)).records)
    )
    parquet_load, parquet_rows = timed(
        lambda: pq.read_table(folder, filters=[("symbol", "=", SYMBOL)]).num_rows
    )
    postgres_bytes = postgres_load = math.nan
    postgres_rows = 0
    if backlog["postgres"] is not None:
        with psycopg.connect(backlog["postgres"]) as conn:
            postgres_bytes = float(conn.execute("SELECT pg_total_relation_size('ticks')").fetchone()[0])
            postgres_load, postgres_rows = timed(
                lambda: len(
                    conn.execute(
                        "SELECT * FROM ticks WHERE symbol = %s AND exchange_time >= %s"
                        " AND exchange_time < %s",
                        (SYMBOL, AT.replace(hour=0, minute=0), AT.replace(hour=23, minute=59)),
                    ).fetchall()
                )
            )
    note = f"{len(rows):,} ticks over 40 symbols"
    load_note = (f"{jsonl_rows:,} ticks of {SYMBOL} (JSONL), {parquet_rows:,} (Parquet), "
                 f"{postgres_rows:,} (PostgreSQL)")
    return [
        Result("store_bytes_per_million_ticks_jsonl", jsonl_bytes * per_million, "bytes", "reference",
               jsonl_bytes * per_million, True, note),
        Result("store_bytes_per_million_ticks_parquet", parquet_bytes * per_million, "bytes", "< JSONL",
               jsonl_bytes * per_million, parquet_bytes < jsonl_bytes, f"{note}, compacted, zstd"),
        Result("store_bytes_per_million_ticks_postgres", postgres_bytes * per_million, "bytes", "reported",
               jsonl_bytes * per_million, not math.isnan(postgres_bytes), f"{note}, table and indexes"),
        Result("store_load_symbol_day_jsonl", jsonl_load, "s", "reference", jsonl_load, True, load_note),
        Result("store_load_symbol_day_parquet", parquet_load, "s", f"< {LOAD_BUDGET_SECONDS:g}", jsonl_load,
               parquet_load < LOAD_BUDGET_SECONDS, load_note),
        Result("store_load_symbol_day_postgres", postgres_load, "s", f"< {LOAD_BUDGET_SECONDS:g}", jsonl_load,
               postgres_load < LOAD_BUDGET_SECONDS, load_note),
    ]  # fmt: skip


def store_figures(root: Path, ticks: int = 100_000, lag_seconds: float = 10.0) -> list[Result]:
    root.mkdir(parents=True, exist_ok=True)
    with NatsServer(root / "nats", log_file=root / "nats-server.log") as server, _database(root) as database:
        results, backlog = capacity(server, root, database, ticks)
        results.append(lag(server, root, lag_seconds))
        results.extend(footprint(root, backlog))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.store", description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=100_000, help="ticks in the backlog (100,000)")
    parser.add_argument("--lag-seconds", type=float, default=10.0, help="seconds at 5,000 ticks/s (10)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="observer-bench-store-") as scratch:
        results = store_figures(Path(scratch), ticks=args.ticks, lag_seconds=args.lag_seconds)
    for result in results:
        print(
            f"{result.name}: {result.figure:,.4g} {result.unit} (baseline {result.baseline:,.4g}; target "
            f"{result.target}) {result.detail}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
