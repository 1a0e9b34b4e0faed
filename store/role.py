"""The store role: the spine's ticks and events into Parquet and, when configured, PostgreSQL.

Each destination reads the instance's JetStream stream through a durable pull consumer of its own
(`<consumer>_parquet`, `<consumer>_postgres`) and acknowledges a message only once its row is on disk or
committed, so a store that was stopped, killed or cut off from its database resumes where it left off:
the stream delivers again whatever was not acknowledged. Replays write nothing twice: Parquet drops rows
whose stream sequence is already on disk (`store.parquet.ParquetWriter`), PostgreSQL skips rows whose key
is already in the table. The consumers acknowledge cumulatively (`AckPolicy.ALL`) once per written batch.

Parquet rows are buffered and written as part files every `flush_seconds` (and whenever `flush_rows`
wait); when the phase becomes "shutdown" (after the close) and at stop, every partition with part files is
compacted (those a killed run left too). At stop the Parquet sink first takes what the stream still holds for
it (up to `STOP_DRAIN_SECONDS`), so a run that stops its store last has every tick of the journal in Parquet.
An unreachable database is retried with backoff; the first failure of an outage is logged once and published
as one system alert on the spine, and the rows wait in the stream meanwhile. The tick path never waits for
any of this: the store is a process of its own and the stream keeps the messages.

Store workers (`shared`): several stores, on any hosts, pull from one durable consumer
(`<consumer>_postgres_shared`, created by the first, never replaced) and meet in one PostgreSQL database.
Each message goes to one worker, acknowledged on its own once its row is committed; what a dead worker held
goes to another after `ack_wait_seconds`, and the rows' keys make that redelivery write nothing twice.
Workers write no Parquet: a host that wants Parquet runs a store of its own consumer, a whole copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import socket
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import nats
import psycopg
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError
from psycopg.conninfo import conninfo_to_dict

from config.settings import SpineSettings
from runtime.backoff import Backoff
from runtime.clock import Clock, SystemClock
from spine import wire
from spine.server import quiet_nats_errors, server_urls
from spine.stream import ensure_stream
from spine.subjects import Subjects
from store.facts import day_of, row_of
from store.parquet import SEQ_COLUMN, ParquetWriter, compact
from store.postgres import insert_events, insert_ticks, migrate, set_status
from store.tables import TIME_COLUMN

COMPACT_PHASE = "shutdown"
"""The phase after the close: the day's partitions are compacted when it begins."""
FETCH_BATCH = 1_000
FETCH_SECONDS = 1.0
GATHER_SECONDS = 0.05
STOP_DRAIN_SECONDS = 15.0
"""At stop, how long the Parquet sink goes on taking what the stream still holds for it (the run's last
facts: `run.py` stops the store after the processes that publish)."""
DATABASE_BACKOFF = Backoff(steps=(0.5, 1.0, 2.0, 5.0, 10.0, 30.0), jitter=0.1)
NATS_BACKOFF = Backoff(steps=(0.5, 1.0, 2.0, 5.0), jitter=0.1)
LAG_SAMPLES = 1_000_000
DATABASE_ALERT_KEY = "system:store_postgres"


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """What `python -m store` is given."""

    nats_url: str
    data_dir: Path | None
    """Parquet goes under it; None for a store worker (`shared`), which writes PostgreSQL only."""
    postgres_url: str | None = None
    instance: str = "main"
    flush_seconds: float = 60.0
    """How often buffered rows become a Parquet part file (at most 300: a row group at least every 5 min)."""
    flush_rows: int = 100_000
    consumer: str = "store"
    """The durable consumers' name stem: two stores on one stream need different ones, workers the same."""
    shared: bool = False
    """One of several store workers sharing `<consumer>_postgres_shared`: PostgreSQL only, no Parquet."""
    ack_wait_seconds: float = 10.0
    """A worker's message not acknowledged this long goes to another worker (its own death, a stuck write)."""

    def __post_init__(self) -> None:
        if not 0 < self.flush_seconds <= 300:
            raise ValueError(f"flush_seconds must be in (0, 300], got {self.flush_seconds}")
        if self.shared and not self.postgres_url:
            raise ValueError("store workers (--shared) meet in PostgreSQL: give --postgres URL")
        if (self.data_dir is None) != self.shared:
            raise ValueError("a store writes Parquet under --data-dir; a worker (--shared) has none")
        if not 1 <= self.ack_wait_seconds <= 600:
            raise ValueError(f"ack_wait_seconds must be in [1, 600], got {self.ack_wait_seconds}")


@dataclass
class Sink:
    """One destination's figures: rows written (new ones only), the newest row time, the last error."""

    rows: int = 0
    last_data_time: datetime | None = None
    status: str = "starting"
    message: str = ""

    def wrote(self, count: int, rows_times: list[datetime]) -> None:
        self.rows += count
        if rows_times:
            newest = max(rows_times)
            if self.last_data_time is None or newest > self.last_data_time:
                self.last_data_time = newest


@dataclass
class StoreStats:
    parquet: Sink = field(default_factory=Sink)
    postgres: Sink = field(default_factory=Sink)
    lags: deque[float] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))
    """Seconds from a message's arrival in the stream to its row being in a Parquet file."""
    alerts: int = 0
    bad_messages: int = 0


class StoreRole:
    """`await run(stop)` until `stop` is set; then the buffered rows are written, acknowledged, compacted."""

    def __init__(self, options: StoreOptions, clock: Clock | None = None) -> None:
        self.options = options
        self.clock = clock or SystemClock()
        self.subjects = Subjects(options.instance)
        self.parquet_root = (options.data_dir or Path()) / "observer" / "parquet"
        self.stats = StoreStats()
        self._rng = random.Random()
        self._unfit: set[str] = set()
        self._nc: Client | None = None

    async def run(self, stop: asyncio.Event) -> None:
        nc = await self._connect(stop)
        if nc is None:
            return
        self._nc = nc
        try:
            js = nc.jetstream(timeout=10.0)
            if not await self._stream_ready(js, stop):
                return
            tasks = [] if self.options.shared else [
                asyncio.create_task(self._parquet(js, stop), name="store-parquet")]
            if self.options.postgres_url:
                tasks.append(asyncio.create_task(self._postgres(js, stop), name="store-postgres"))
            await asyncio.gather(*tasks)
        finally:
            with contextlib.suppress(NatsError, TimeoutError):
                await nc.close()

    # --- NATS ---------------------------------------------------------------------------------------

    async def _connect(self, stop: asyncio.Event) -> Client | None:
        attempt = 0
        while not stop.is_set():
            try:
                nc = await nats.connect(server_urls(self.options.nats_url),
                                        name=f"observer-{self.options.instance}-store",
                                        max_reconnect_attempts=-1, reconnect_time_wait=0.5,
                                        connect_timeout=2, allow_reconnect=True, error_cb=quiet_nats_errors)
            except (NatsError, OSError, TimeoutError) as error:
                if attempt == 0:
                    logger.warning("store: NATS at {} does not answer ({}); still trying",
                                   self.options.nats_url, type(error).__name__)
                await _sleep(stop, NATS_BACKOFF.delay(attempt, self._rng))
                attempt += 1
                continue
            logger.info("store: connected to NATS at {}", self.options.nats_url)
            return nc
        return None

    async def _stream_ready(self, js: JetStreamContext, stop: asyncio.Event) -> bool:
        """The stream exists (created with the default limits when the observer has not made it yet)."""
        attempt = 0
        while not stop.is_set():
            try:
                await js.stream_info(self.subjects.stream_name)
                return True
            except NotFoundError:
                await ensure_stream(js, SpineSettings(instance=self.options.instance))
                return True
            except (NatsError, TimeoutError) as error:
                logger.debug("store: stream info: {}", type(error).__name__)
                await _sleep(stop, NATS_BACKOFF.delay(attempt, self._rng))
                attempt += 1
        return False

    async def _subscribe(
        self, js: JetStreamContext, sink: str, ack_wait: float
    ) -> JetStreamContext.PullSubscription:
        """The sink's durable consumer, resumed after its last acknowledged message.

        A consumer left by an earlier store is replaced by one starting just after its acknowledgement
        floor: what the earlier process had been handed but not acknowledged comes again now, not after
        `ack_wait` (one store process per consumer name).
        """
        durable = f"{self.options.consumer}_{sink}"
        stream = self.subjects.stream_name
        start: int | None = None
        with contextlib.suppress(NotFoundError):
            info = await js.consumer_info(stream, durable)
            start = info.ack_floor.stream_seq + 1 if info.ack_floor and info.ack_floor.stream_seq else None
            await js.delete_consumer(stream, durable)
            logger.info("store: {} resumes after stream message {}", durable, (start or 1) - 1)
        policy = DeliverPolicy.ALL if start is None else DeliverPolicy.BY_START_SEQUENCE
        config = ConsumerConfig(
            durable_name=durable, ack_policy=AckPolicy.ALL, ack_wait=ack_wait, max_ack_pending=-1,
            max_deliver=-1, deliver_policy=policy, opt_start_seq=start,
        )  # fmt: skip
        return await js.pull_subscribe(self.subjects.everything, durable=durable,
                                       stream=self.subjects.stream_name, config=config)

    async def _join(self, js: JetStreamContext, sink: str) -> JetStreamContext.PullSubscription:
        """The workers' durable consumer of `sink`, made by whichever worker comes first and never replaced:
        each message to one worker, acknowledged on its own."""
        durable = f"{self.options.consumer}_{sink}_shared"
        stream = self.subjects.stream_name
        try:
            await js.consumer_info(stream, durable)
        except NotFoundError:
            config = ConsumerConfig(
                durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=self.options.ack_wait_seconds,
                max_ack_pending=-1, max_deliver=-1, deliver_policy=DeliverPolicy.ALL,
                filter_subject=self.subjects.everything,
            )  # fmt: skip
            await js.add_consumer(stream, config)  # the same config from two workers at once: one consumer
        logger.info("store: a worker of {} (shared with the other workers)", durable)
        return await js.pull_subscribe_bind(durable, stream=stream)

    async def _fetch(self, sub: JetStreamContext.PullSubscription, batch: int, timeout: float) -> list[Msg]:
        """Up to `batch` messages: what arrives within `timeout`, gathered for `GATHER_SECONDS` after the
        first one (a pull often brings only a few)."""
        msgs: list[Msg] = []
        deadline = time.monotonic() + max(0.05, timeout)
        while len(msgs) < batch:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                msgs += await sub.fetch(batch - len(msgs), timeout=max(0.05, left))
            except TimeoutError:
                break
            except NatsError as error:  # disconnected: nats-py reconnects by itself
                logger.debug("store: fetch: {}", type(error).__name__)
                await asyncio.sleep(0.5)
                break
            if msgs:
                deadline = min(deadline, time.monotonic() + GATHER_SECONDS)
        return msgs

    async def _drain(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        """At stop: what the stream still holds for the consumer, up to `STOP_DRAIN_SECONDS`, so the last
        facts of a run are written before the store exits (what is left waits in the stream for the next
        start)."""
        msgs: list[Msg] = []
        deadline = time.monotonic() + STOP_DRAIN_SECONDS
        while time.monotonic() < deadline:
            batch = await self._fetch(sub, FETCH_BATCH, GATHER_SECONDS * 4)
            msgs += batch
            if not batch or batch[-1].metadata.num_pending == 0:
                break
        return msgs

    def _rows(self, msg: Msg) -> tuple[str, dict[str, Any]] | None:
        """The table and row of one message (its stream sequence added), or None; a bad message gets one
        log line per type and is skipped."""
        try:
            document = json.loads(msg.data)
            mapped = row_of(document)
        except ValueError as error:
            self.stats.bad_messages += 1
            kind = msg.subject.rsplit(".", 1)[0]
            if kind not in self._unfit:
                self._unfit.add(kind)
                logger.error("store: skipped a message on {} that fits no model (said once per subject): {}",
                             msg.subject, str(error).splitlines()[0][:200])
            return None
        if mapped is None:
            return None
        table, row = mapped
        row[SEQ_COLUMN] = msg.metadata.sequence.stream
        return table, row

    # --- Parquet ------------------------------------------------------------------------------------

    async def _parquet(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        options = self.options
        writer = await asyncio.to_thread(ParquetWriter, self.parquet_root)
        info = await js.stream_info(self.subjects.stream_name)
        if info.state.last_seq < writer.highest_seq:
            logger.warning("store: the stream {} ends at message {} but Parquet holds rows up to {}: the "
                           "stream was made anew; its messages are taken as new rows",
                           self.subjects.stream_name, info.state.last_seq, writer.highest_seq)
            writer.renumbered()
        sub = await self._subscribe(js, "parquet", ack_wait=2 * options.flush_seconds + 60)
        sink = self.stats.parquet
        sink.status = "running"
        touched: set[tuple[str, date]] = set()
        arrived: list[float] = []
        times: list[datetime] = []
        newest: Msg | None = None
        compact_due = False
        flushed_at = time.monotonic()
        while True:
            stopping = stop.is_set()
            if stopping:
                msgs = await self._drain(sub)
            else:
                wait = min(FETCH_SECONDS, flushed_at + options.flush_seconds - time.monotonic())
                msgs = await self._fetch(sub, FETCH_BATCH, wait)
            for msg in msgs:
                newest = msg
                compact_due |= _is_phase(msg, COMPACT_PHASE)
                mapped = self._rows(msg)
                if mapped is None:
                    continue
                table, row = mapped
                day = day_of(table, row)
                if writer.add(table, day, row, seq=row[SEQ_COLUMN]):
                    touched.add((table, day))
                    arrived.append(msg.metadata.timestamp.timestamp())
                    times.append(datetime.fromisoformat(row[TIME_COLUMN[table]]))
            due = time.monotonic() - flushed_at >= options.flush_seconds
            if due or writer.buffered >= options.flush_rows or stopping or compact_due:
                written = await asyncio.to_thread(writer.flush)
                on_disk = time.time()
                self.stats.lags.extend(on_disk - at for at in arrived)
                sink.wrote(written, times)
                arrived, times = [], []
                if newest is not None:
                    await _acknowledge(newest)
                    newest = None
                flushed_at = time.monotonic()
                if written:
                    logger.debug("store: {} rows into Parquet", written)
            if compact_due or stopping:
                for table, day in sorted(touched | _with_parts(self.parquet_root)):
                    rows = await asyncio.to_thread(compact, self.parquet_root, table, day)
                    logger.info("store: compacted {} of {:%Y-%m-%d}: {} rows", table, day, rows)
                touched.clear()
                compact_due = False
            if stopping:
                sink.status, sink.message = "stopped", ""
                return

    # --- PostgreSQL ---------------------------------------------------------------------------------

    async def _postgres(self, js: JetStreamContext, stop: asyncio.Event) -> None:
        shared = self.options.shared
        sub = await (self._join(js, "postgres") if shared else self._subscribe(js, "postgres", ack_wait=60.0))
        sink = self.stats.postgres
        database = _describe(self.options.postgres_url or "")
        conn: psycopg.Connection[Any] | None = None
        outage_since: float | None = None
        attempt = 0
        status_at = 0.0
        try:
            while not stop.is_set():
                msgs = await self._fetch(sub, FETCH_BATCH, FETCH_SECONDS)
                batch: dict[str, list[dict[str, Any]]] = defaultdict(list)
                for msg in msgs:
                    mapped = self._rows(msg)
                    if mapped is not None:
                        batch[mapped[0]].append(mapped[1])
                pending = msgs[-1].metadata.num_pending if msgs else 0
                while True:
                    try:
                        if conn is None:
                            conn = await asyncio.to_thread(_open, self.options.postgres_url or "")
                        written = await asyncio.to_thread(_write, conn, batch)
                        break
                    except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure) as error:
                        logger.debug("store: {} with another writer; the batch again", type(error).__name__)
                    except psycopg.Error as error:
                        conn = await asyncio.to_thread(_close, conn)
                        if outage_since is None:
                            outage_since = time.monotonic()
                            await self._database_down(database, error)
                        else:
                            logger.debug("store: PostgreSQL still unreachable ({})", type(error).__name__)
                        if await _sleep(stop, DATABASE_BACKOFF.delay(attempt, self._rng)):
                            return  # stopped while the database is away: the stream keeps the batch
                        attempt += 1
                if outage_since is not None:
                    away = time.monotonic() - outage_since
                    logger.info("store: PostgreSQL at {} is back after {:.0f} s; catching up from the spine",
                                database, away)
                    sink.message = f"back after {away:.0f} s unreachable"
                    outage_since, attempt = None, 0
                sink.wrote(written, [datetime.fromisoformat(row[TIME_COLUMN[table]])
                                     for table, rows in batch.items() for row in rows])
                if shared:
                    await _acknowledge_each(msgs)
                elif msgs:
                    await _acknowledge(msgs[-1])
                sink.status = "running" if not pending else "catching_up"
                if time.monotonic() - status_at >= 1.0 or not msgs:
                    status_at = time.monotonic()
                    with contextlib.suppress(psycopg.Error):
                        await asyncio.to_thread(self._statuses, conn, pending)
            if conn is not None:
                sink.status, sink.message = "stopped", ""
                with contextlib.suppress(psycopg.Error):
                    await asyncio.to_thread(self._statuses, conn, 0)
        finally:
            await asyncio.to_thread(_close, conn)

    async def _database_down(self, database: str, error: psycopg.Error) -> None:
        """The first failure of an outage: one log line, one status, one system alert on the spine."""
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        what = "is unreachable" if isinstance(error, psycopg.OperationalError) else "refuses the rows"
        text = f"store: PostgreSQL at {database} {what} ({reason}); retrying, rows wait on the spine"
        logger.warning(text)
        self.stats.postgres.status, self.stats.postgres.message = "unreachable", reason
        alert = wire.AlertSent(at=self.clock.now(), key=DATABASE_ALERT_KEY, text=text)
        nc = self._nc
        if nc is None:
            return
        try:
            await nc.publish(self.subjects.of(alert.subject_pattern), alert.model_dump_json().encode())
            self.stats.alerts += 1
        except NatsError as err:
            logger.warning("store: the alert could not be published ({})", type(err).__name__)

    def _statuses(self, conn: psycopg.Connection[Any] | None, pending: int) -> None:
        if conn is None:
            return
        now = self.clock.now()
        sinks = (("store.parquet", self.stats.parquet), ("store.postgres", self.stats.postgres))
        if self.options.shared:  # a row per worker: its rows written, its state
            sinks = ((f"store.postgres@{socket.gethostname()}:{os.getpid()}", self.stats.postgres),)
        for component, sink in sinks:
            message = sink.message or (f"{pending} messages behind the spine" if pending else "caught up")
            set_status(conn, component, sink.status, now=now, message=message, data_count=sink.rows,
                       last_data_time=sink.last_data_time)


def _open(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
    migrate(conn)
    return conn


def _close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.close()


def _write(conn: psycopg.Connection[Any], batch: Mapping[str, list[dict[str, Any]]]) -> int:
    """Every table's rows of one fetched batch (a transaction per table); the rows that were new."""
    written = 0
    for table, rows in batch.items():
        written += insert_ticks(conn, rows) if table == "ticks" else insert_events(conn, table, rows)
    return written


def _describe(url: str) -> str:
    """Host, port and database of a connection string: what a log line may say of it (no password)."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.Error:
        return "the configured URL"
    return f"{parts.get('host', 'localhost')}:{parts.get('port', 5432)}/{parts.get('dbname', '')}"


def _with_parts(root: Path) -> set[tuple[str, date]]:
    """The (table, day) partitions holding part files: written since their last compaction, by any run."""
    found = set()
    for folder in root.glob("*/date=*"):
        if any(folder.glob("part-*.parquet")):
            found.add((folder.parent.name, date.fromisoformat(folder.name[5:])))
    return found


def _is_phase(msg: Msg, phase: str) -> bool:
    if not msg.subject.endswith(".phase"):
        return False
    with contextlib.suppress(ValueError):
        return json.loads(msg.data).get("phase") == phase
    return False


async def _acknowledge(msg: Msg) -> None:
    """Acknowledge `msg` and, the policy being cumulative, every message before it."""
    try:
        await msg.ack_sync(timeout=5.0)
    except (NatsError, TimeoutError) as error:  # not acknowledged: delivered again, skipped as a duplicate
        logger.debug("store: acknowledgement lost ({})", type(error).__name__)


async def _acknowledge_each(msgs: list[Msg]) -> None:
    """Acknowledge every message of a worker's batch (one by one: the others' messages lie between them)."""
    for msg in msgs:
        try:
            await msg.ack()
        except NatsError as error:  # not acknowledged: another worker gets it, its row already there
            logger.debug("store: acknowledgement lost ({})", type(error).__name__)
            return


async def _sleep(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` or until `stop`; True when stopped."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()

