"""RecorderActor (id `recorder`): every data file of DESIGN.md section 5, and the 21:00 backup archive.

Files (provider = the account name, market from the day's universe, "KRX" when the symbol is not in it):

| what | file |
|---|---|
| Track B ticks | `scalp/{account}/{market}/{YYYYMMDD}/ticks_{symbol}.jsonl` |
| order books | `scalp/{account}/{market}/{YYYYMMDD}/orderbook_{symbol}.jsonl` |
| program trading | `scalp/{account}/{market}/{YYYYMMDD}/program_{symbol}.jsonl` |
| gap recovery (seed format) | `scalp/{account}/{market}/{YYYYMMDD}/recovery_{HHMMSS}_{symbol}.jsonl` |
| Track A snapshots | `swing/{account}/{market}/{YYYYMMDD}/snapshots.jsonl` |
| gap markers | `system/gaps/{account}/{YYYYMMDD}_gaps.jsonl` |
| overflow ledger | `system/overflow/{account}/{YYYYMMDD}_overflow.jsonl` |

At the daily backup the recorder closes the day: its ticks are rebuilt in Parquet from these files, and the
archive (`store.backup`) holds the whole day, the notifier's alerts ledger and the Parquet partitions too.

One tick file per symbol and day, because analysis loads one symbol at a time:
`pandas.read_json(path, lines=True)` gives one row per tick with the columns `symbol, exchange_time,
received_at, price, volume, cum_volume, cum_value, change_rate, ask1, bid1, side, strength, source, venue,
tr_id`. `venue` is KRX, NXT, or UN for a unified-feed trade made while both venues were in session
(`core.sessions.venue_of`); `tr_id` is the feed's TR (H0UNCNT0, H0STCNT0 or H0NXCNT0).
Order book lines have `symbol, exchange_time, received_at, asks, bids, ask_sizes, bid_sizes` (ten levels,
best first), `total_ask_size, total_bid_size, cum_volume, tr_id`; program trading lines `symbol,
exchange_time, received_at, sell_volume, sell_value, buy_volume, buy_value, net_volume, net_value,
sell_resting, buy_resting, net_resting, tr_id` (the day's totals so far). Their frames carry no date:
`exchange_time` is the frame's time on the day it arrived.
`source` is "ws" for streamed ticks and "recovery" for minute bars back-filled into a gap (those rows add
`open, high, low, close, gap_start, gap_end`, and `cum_volume` is null). Recovered rows are appended when
the recovery happens, so sort by `exchange_time` before use. The day of a file is the clock's day when
the frame arrived.

Durability: lines are buffered and handed to the OS within `FLUSH_INTERVAL_SECONDS` (a second), on stop, and
when a buffer passes 64 KiB, so a crash loses at most the last second; a torn last line is skipped by
readers. A tick file is flushed by the tick that finds its oldest line `TICK_FLUSH_AGE_SECONDS` old, one
file at a time between ticks; a ticker catches the files no tick came for. Flushing every file at once on
the ticker held the recorder 2-3 ms a second at 5,000 records/s (41 files), and each tick arriving
meanwhile waited out the whole of it.

A disk that refuses writes (full, read-only, gone): every line stays in memory and is retried by the
ticker; the first failure sends the SystemAlert `recorder.write_failed`, the first flush pass that writes
everything again sends `recorder.write_recovered`. The memory is bounded by `recorder.max_buffered_mb`:
past it, new ticks are dropped (not old ones: the lines kept are the oldest, contiguous with what is on
disk, and a line half written by a partial write is never cut) and each symbol's stretch of dropped ticks
becomes a gap marker (reason `recorder_buffer_full`) once ticks are kept again, or at the stop. Other
records (snapshots, ledgers, markers) are never dropped; order book and program trading lines are dropped
with the ticks (counter `depth_dropped`), without gap markers. `ticks_recorded` counts tick lines handed to
the OS, not ticks received; gauges `recorder_buffered_bytes` and `recorder_buffered_lines`, counter
`ticks_dropped` and gauge `recorder_write_failing_since` tell the status view how it stands.

The disk never fills silently: every `DISK_CHECK_SECONDS` the ticker reads the free space under the data
dir (`context.free_bytes`). Below `storage.min_free_megabytes` the recorder sheds its lower-priority writer
first: ticks and scan snapshots are still journaled but no longer handed to the spine, so neither its
JetStream stream nor the Parquet store fed from it grows (counter `spine_shed`, gauge `disk_below_floor`);
one warning and the SystemAlert `disk_floor` say so, again only after free space was back above the floor
plus 10 % (one line) and fell again. Events (gaps, recovery, overflow) still go on the spine; the 21:00 job
rebuilds the day's Parquet ticks from the journal.

| message | effect |
|---|---|
| TicksReceived | one line per tick in the symbol's tick file; counter `ticks_recorded` once on disk |
| OrderBooksReceived | one line per book in the symbol's order book file |
| ProgramTradesReceived | one line per record in the symbol's program trading file |
| ScanCompleted | one line per row in the swing snapshot file of the row's market (`closing_pass` on |
|  | the closing pass's) |
| OverflowRecorded | its lines in the account's overflow ledger |
| RecoveryRecorded | the seed-format recovery file, plus "recovery" rows in the tick file |
| GapMarked | one line in the account's gap markers |
| UniverseReady | symbol -> market map (also loaded from the universe snapshots at start) |
| DayEventFired DAILY_BACKUP | close the files, pack the day into `backup/{YYYYMMDD}.tar.gz` + manifest |

Each of the first seven is then handed to the spine (`context.spine`), so what consumers see follows the
journal.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from core.disk_floor import DiskFloor, FloorChange
from core.gaps import Gap
from core.recovery import GapMarker, RecoveryRecord, gap_marker
from core.schedule import DayEvent
from core.sessions import venue_of
from kis.ticks import OrderBook, ProgramTrade, TradeTick
from messages.alerts import SystemAlert
from messages.market import (
    OrderBooksReceived,
    ProgramTradesReceived,
    ScanCompleted,
    TicksReceived,
    UniverseReady,
)
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from messages.schedule import DayEventFired
from runtime.jsonl import JsonlWriter, json_number, json_text
from runtime.ticker import Ticker
from runtime.universe_store import UniverseFileError, UniverseStore
from store.backup import BackupResult, pack_day
from store.journal import import_journal_day
from store.retention import KeepDays, enforce

DEFAULT_MARKET = "KRX"
FLUSH_INTERVAL_SECONDS = 1.0
"""The longest a line waits in a buffer before it is handed to the OS."""
FLUSH_CHECK_SECONDS = 0.25
TICK_FLUSH_AGE_SECONDS = 0.5
"""Younger than the ticker's limit (`FLUSH_INTERVAL_SECONDS - FLUSH_CHECK_SECONDS`), so the files that ticks
keep coming for are flushed by their ticks, not all together by the ticker."""
MAX_OPEN_FILES = 256
ERROR_LOG_INTERVAL_SECONDS = 5.0
DROPPED_REASON = "recorder_buffer_full"
WRITE_FAILED_ALERT = "recorder.write_failed"
WRITE_RECOVERED_ALERT = "recorder.write_recovered"
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,32}")
PUBLISHED = (
    TicksReceived, OrderBooksReceived, ProgramTradesReceived, ScanCompleted, OverflowRecorded,
    RecoveryRecorded, GapMarked,
)
"""What goes on the spine once it is in the journal (`spine.convert` turns each into public messages)."""
SHED_BELOW_FLOOR = (TicksReceived, ScanCompleted)
"""What stays off the spine while free disk is below `storage.min_free_megabytes`: the bulk of its stream."""
DISK_CHECK_SECONDS = 5.0
"""How often the free disk under the data dir is read (by the flush ticker)."""
DISK_FLOOR_ALERT = "disk_floor"
MIB = 1024 * 1024


class _FlushDue:
    """Ticker message: hand the lines that would otherwise wait too long to the OS."""


@dataclass(slots=True)
class _Dropped:
    """The ticks of one symbol dropped while the buffer was full: what its gap marker will say."""

    start: datetime
    end: datetime
    count: int


@dataclass(slots=True)
class _TickCount:
    """How much of a tick file's lines `ticks_recorded` has counted, and where its recovery rows are
    (line numbers in the order the writer accepted them), which are not ticks."""

    counted: int = 0
    recovery_rows: deque[tuple[int, int]] | None = None


class RecorderActor(ObserverActor):
    """The one writer of data files. Not thread-safe by design: only its own thread touches the writers."""

    def __init__(self, name: str, directory: Directory, context: ObserverContext) -> None:
        super().__init__(name, directory)
        self.context = context
        self.paths = context.paths
        self._markets: dict[str, str] = {}
        self._writers: dict[Any, JsonlWriter] = {}
        self._time_text: dict[datetime, str] = {}
        self._ticker: Ticker | None = None
        self._errors_logged_at = 0.0
        self._buffer_limit = context.settings.recorder.max_buffered_mb * 1024 * 1024
        self._buffered = 0
        """Bytes waiting in the writers: summed at each flush pass, grown by every tick kept meanwhile."""
        self._tick_counts: dict[JsonlWriter, _TickCount] = {}
        self._dropped: dict[tuple[str, date, str], _Dropped] = {}
        self._failing_since: datetime | None = None
        self._floor = DiskFloor(context.settings.storage.min_free_megabytes * MIB)
        self._disk_checked_at = float("-inf")

    # --- lifecycle -------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_markets(self.context.clock.now().date())
        self.log.info("writing under {} ({} symbols' markets known; up to {} MiB kept in memory while the "
                      "disk refuses writes)", self.paths.observer, len(self._markets),
                      self._buffer_limit // (1024 * 1024))
        self._ticker = Ticker(self.actor_ref, _FlushDue, FLUSH_CHECK_SECONDS, name=f"{self.name}-flush")
        self._ticker.start()

    def on_stop(self) -> None:
        self._shut()

    def on_failure(self, *_exc: object) -> None:
        self._shut()

    def _shut(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._mark_dropped()
        self._close_all()

    # --- messages --------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            if isinstance(message, TicksReceived):
                self._record_ticks(message)
            elif isinstance(message, _FlushDue):
                self._flush_pass(time.monotonic() - (FLUSH_INTERVAL_SECONDS - FLUSH_CHECK_SECONDS))
                self._check_disk()
            elif isinstance(message, OrderBooksReceived):
                lines = [book_line(book, message.at, message.tr_id) for book in message.books]
                self._record_depth("book", message.account, message.at, lines)
            elif isinstance(message, ProgramTradesReceived):
                lines = [program_line(trade, message.at, message.tr_id) for trade in message.trades]
                self._record_depth("program", message.account, message.at, lines)
            elif isinstance(message, ScanCompleted):
                self._record_scan(message)
            elif isinstance(message, OverflowRecorded):
                writer = self._writer(("overflow", message.account, message.at.date()), self._overflow_path)
                for line in message.lines:
                    writer.write(line)
            elif isinstance(message, RecoveryRecorded):
                self._record_recovery(message)
            elif isinstance(message, GapMarked):
                self._write_marker(message.account, message.at.date(), message.marker)
            elif isinstance(message, UniverseReady):
                self._markets = {profile.symbol: profile.market for profile in message.profiles}
            elif isinstance(message, DayEventFired) and message.event is DayEvent.DAILY_BACKUP:
                return self.backup(message.at.date())
        except OSError as error:
            self._write_failed(type(message).__name__, error)
        except (TypeError, ValueError) as error:
            self._log_write_error(type(message).__name__, error)
        if isinstance(message, PUBLISHED):  # after the journal, whatever the disk said: the live feed goes on
            if self._floor.below and isinstance(message, SHED_BELOW_FLOOR):
                shed = len(message.ticks) if isinstance(message, TicksReceived) else len(message.rows)
                self.context.metrics.inc("spine_shed", shed)
            else:
                self.context.spine.publish(message)
        return None

    def _log_write_error(self, what: str, error: Exception, more: str = "", *, always: bool = False) -> None:
        """Disk trouble or an unwritable value: a line every few seconds, never a crash that drops buffers."""
        now = time.monotonic()
        if always or now - self._errors_logged_at >= ERROR_LOG_INTERVAL_SECONDS:
            self._errors_logged_at = now
            detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            first_line = detail.splitlines()[0] if detail else type(error).__name__
            self.log.error("cannot write {}: {}{}", what, first_line, more)

    # --- ticks (hot path) ------------------------------------------------------------------------

    def _record_ticks(self, message: TicksReceived) -> None:
        """Each tick buffered in its file (or dropped while the buffer is full); `ticks_recorded` grows as
        the lines are handed to the OS."""
        received = message.at.isoformat()
        day = message.at.date()
        account = message.account
        writers = self._writers
        iso = self._iso
        sessions = self.context.settings.sessions
        due = time.monotonic() - TICK_FLUSH_AGE_SECONDS
        stale: list[JsonlWriter] = []
        buffered, limit = self._buffered, self._buffer_limit
        for tick in message.ticks:
            if buffered >= limit:
                self._drop(account, day, tick)
                continue
            writer = writers.get((account, day, tick.symbol))
            if writer is None:
                try:
                    writer = self._tick_writer(account, day, tick.symbol)
                except OSError as error:  # the file cannot even be created: the tick cannot be kept
                    self._write_failed(f"the tick file of {tick.symbol}", error)
                    self._drop(account, day, tick)
                    continue
                if writer is None:
                    continue
            venue = venue_of(tick.feed, tick.exchange_time, sessions)
            line = tick_line(tick, iso(tick.exchange_time), received, venue)
            writer.write_line(line)
            buffered += len(line) + 1
            if writer.buffered_since <= due and not writer.failing:
                stale.append(writer)
        self._buffered = buffered
        self.context.quotes.record(account, message.ticks)
        for writer in stale:
            try:
                writer.flush()
            except OSError as error:
                self._write_failed(str(writer.path), error)
            self._count_ticks(writer)

    def _drop(self, account: str, day: date, tick: TradeTick) -> None:
        """A tick not kept: it widens its symbol's dropped stretch (a gap marker once ticks are kept)."""
        if not self._dropped:
            self.log.error("{:,} bytes wait for the disk, the limit (recorder.max_buffered_mb): new ticks "
                           "are dropped and marked as gaps until they can be written", self._buffered)
        key = (account, day, tick.symbol)
        at = tick.exchange_time
        dropped = self._dropped.get(key)
        if dropped is None:
            self._dropped[key] = _Dropped(at, at, 1)
        else:
            dropped.start, dropped.end = min(dropped.start, at), max(dropped.end, at)
            dropped.count += 1
        self.context.metrics.inc("ticks_dropped")

    def _mark_dropped(self) -> None:
        """One gap marker per symbol for the ticks dropped since the buffer filled (markers are never
        dropped themselves: one line per symbol)."""
        dropped, self._dropped = self._dropped, {}
        if not dropped:
            return
        now = self.context.clock.now()
        for (account, day, symbol), stretch in dropped.items():
            gap = Gap(symbol=symbol, start=stretch.start, end=stretch.end, expected=True,
                      reason=DROPPED_REASON)
            detail = f"{stretch.count} ticks dropped: the recorder's buffer was full while writes failed"
            try:
                self._write_marker(account, day, gap_marker(gap, detail, at=now))
            except OSError as error:
                self._write_failed("a gap marker", error)
        total = sum(stretch.count for stretch in dropped.values())
        self.log.warning("{:,} dropped ticks of {} symbols marked as gaps", total, len(dropped))

    def _write_marker(self, account: str, day: date, marker: GapMarker) -> None:
        self._writer(("gaps", account, day), self._gaps_path).write(marker.to_json_dict())

    def _count_ticks(self, writer: JsonlWriter) -> None:
        """Add the tick lines `writer` handed to the OS since the last count to `ticks_recorded` (its
        recovery rows are not ticks)."""
        count = self._tick_counts.get(writer)
        if count is None:
            return
        flushed = writer.lines_flushed
        if flushed == count.counted:
            return
        ticks = flushed - count.counted
        rows = count.recovery_rows
        while rows:
            start, end = rows[0]
            if start >= flushed:
                break
            ticks -= min(end, flushed) - max(start, count.counted)
            if end > flushed:
                break
            rows.popleft()
        count.counted = flushed
        if ticks:
            self.context.metrics.inc("ticks_recorded", ticks)

    def _iso(self, moment: datetime) -> str:
        """ISO text of a tick time; the ticks of one second share it, so it is cached."""
        text = self._time_text.get(moment)
        if text is None:
            if len(self._time_text) > 4096:
                self._time_text.clear()
            text = self._time_text[moment] = moment.isoformat()
        return text

    def _tick_writer(self, account: str, day: date, symbol: str) -> JsonlWriter | None:
        if not _SAFE_NAME.fullmatch(symbol):
            self.log.warning("tick with an unusable symbol {!r} not recorded", symbol[:40])
            return None
        path = self.paths.tick_file(account, self.market_of(symbol), day, symbol)
        writer = self._writer((account, day, symbol), lambda _key: path)
        if writer not in self._tick_counts:
            self._tick_counts[writer] = _TickCount(writer.lines_flushed)
        return writer

    # --- order books and program trading --------------------------------------------------------

    def _record_depth(self, kind: str, account: str, at: datetime, lines: list[dict[str, Any]]) -> None:
        """Each line in its symbol's order book (`kind` "book") or program trading file; dropped while the
        buffer is full, like new ticks."""
        day = at.date()
        path_of = self.paths.book_file if kind == "book" else self.paths.program_file
        for line in lines:
            symbol = line["symbol"]
            if self._buffered >= self._buffer_limit:
                self.context.metrics.inc("depth_dropped")
                continue
            if not _SAFE_NAME.fullmatch(symbol):
                self.log.warning("record with an unusable symbol {!r} not recorded", symbol[:40])
                continue
            path = path_of(account, self.market_of(symbol), day, symbol)
            self._writer((kind, account, day, symbol), lambda _key, path=path: path).write(line)

    # --- other records ---------------------------------------------------------------------------

    def _record_scan(self, message: ScanCompleted) -> None:
        """One line per row in the snapshot file of the row's market (the closing pass's marked as such)."""
        head: dict[str, object] = {"scan_no": message.scan_no, "scanned_at": message.at}
        if message.closing:
            head["closing_pass"] = True
        day = message.at.date()
        for row in message.rows:
            key = ("swing", message.account, self.market_of(row.symbol), day)
            writer = self._writer(key, self._swing_path)
            writer.write(head | row.model_dump())

    def _record_recovery(self, message: RecoveryRecorded) -> None:
        gap = message.gap
        market = self.market_of(gap.symbol)
        path = self.paths.recovery_file(message.account, market, gap.start, gap.symbol)
        writer = self._writer(("recovery", path), lambda _key: path)  # kept open: a failed flush is retried
        for record in message.records:
            writer.write(record.to_json_dict())
        tick_writer = self._tick_writer(message.account, message.at.date(), gap.symbol)
        if tick_writer is not None:
            first = tick_writer.lines_accepted
            for record in message.records:
                for line in recovery_lines(record):
                    tick_writer.write(line)
            count = self._tick_counts[tick_writer]
            if count.recovery_rows is None:
                count.recovery_rows = deque()
            count.recovery_rows.append((first, tick_writer.lines_accepted))
        writer.flush()

    def market_of(self, symbol: str) -> str:
        return self._markets.get(symbol, DEFAULT_MARKET)

    def _load_markets(self, day: date) -> None:
        """A restarted recorder finds today's universe on disk (the universe actor starts after it)."""
        store = UniverseStore(self.paths.universe_dir)
        for market in self.context.settings.universe.markets:
            with contextlib.suppress(UniverseFileError):
                snapshot = store.load(day, market)
                self._markets.update({symbol.code: snapshot.market for symbol in snapshot.symbols})

    def _swing_path(self, key: tuple[str, str, str, date]) -> Path:
        return self.paths.swing_dir(key[1], key[2], key[3]) / "snapshots.jsonl"

    def _overflow_path(self, key: tuple[str, str, date]) -> Path:
        return self.paths.overflow_ledger(key[1], key[2])

    def _gaps_path(self, key: tuple[str, str, date]) -> Path:
        return self.paths.gap_markers(key[1], key[2])

    # --- writers ---------------------------------------------------------------------------------

    def _writer(self, key: Any, path_for: Any) -> JsonlWriter:
        writer = self._writers.get(key)
        if writer is None:
            if len(self._writers) >= MAX_OPEN_FILES:
                # The oldest file with nothing waiting: closing one whose lines cannot be written loses them.
                oldest = next((k for k, w in self._writers.items() if w.buffered_lines == 0),
                              next(iter(self._writers)))
                evicted = self._writers.pop(oldest)
                lost, failure = self._close_writer(evicted)
                if failure is not None:
                    self._log_write_error(str(evicted.path), failure, f"; {lost:,} lines lost", always=True)
            writer = self._writers[key] = JsonlWriter(path_for(key))
        return writer

    def _flush_pass(self, moment: float) -> None:
        """Every file whose oldest buffered line was written at or before `moment`; one that cannot be
        written keeps its lines for the next pass and does not hold up the others. A pass that writes
        every file it tried ends a failure; one whose buffer is below the limit ends the dropping."""
        failure: tuple[str, OSError] | None = None
        tried = False
        buffered = lines = 0
        for writer in self._writers.values():
            if writer.buffered_since <= moment:
                tried = True
                try:
                    writer.flush()
                except OSError as error:
                    failure = failure or (str(writer.path), error)
            self._count_ticks(writer)
            buffered += writer.buffered_bytes
            lines += writer.buffered_lines
        self._buffered = buffered
        metrics = self.context.metrics
        metrics.set("recorder_buffered_bytes", buffered)
        metrics.set("recorder_buffered_lines", lines)
        if failure is not None:
            self._write_failed(*failure)
        elif tried and self._failing_since is not None:
            self._write_recovered()
        if self._dropped and buffered < self._buffer_limit:
            self._mark_dropped()

    def _write_failed(self, what: str, error: OSError) -> None:
        """A write the OS refused: the first one alerts, later ones are a line every few seconds."""
        if self._failing_since is not None:
            self._log_write_error(what, error, f"; {self._buffered:,} bytes wait in memory")
            return
        now = self.context.clock.now()
        self._failing_since = now
        self.context.metrics.set("recorder_write_failing_since", now)
        reason = error.strerror or type(error).__name__
        limit_mb = self._buffer_limit // (1024 * 1024)
        self._errors_logged_at = time.monotonic()
        self.log.error("cannot write {}: {}; lines are kept in memory (up to {} MiB) and retried", what,
                       reason, limit_mb)
        self._alert(WRITE_FAILED_ALERT, f"recorder: data files cannot be written ({reason}); lines are kept "
                                        f"in memory and retried, up to {limit_mb} MiB")

    def _write_recovered(self) -> None:
        since, self._failing_since = self._failing_since, None
        self.context.metrics.set("recorder_write_failing_since", None)
        dropped = sum(stretch.count for stretch in self._dropped.values())
        lost = f"; {dropped:,} ticks dropped, marked as gaps" if dropped else ""
        text = f"recorder: data files are written again (failing since {since:%H:%M:%S}){lost}"
        self.log.info(text)
        self._alert(WRITE_RECOVERED_ALERT, text)

    def _check_disk(self) -> None:
        """Read the free disk under the data dir every `DISK_CHECK_SECONDS`: below the floor, ticks and scan
        snapshots stay off the spine (one warning and one alert); back above it plus the margin, they go on
        again (one line)."""
        now = time.monotonic()
        floor = self._floor.floor_bytes
        if floor == 0 or now - self._disk_checked_at < DISK_CHECK_SECONDS:
            return
        self._disk_checked_at = now
        root = self.paths.root
        try:
            free = self.context.free_bytes(root)
        except OSError as error:
            self.log.debug("free disk under {} unknown: {}", root, type(error).__name__)
            return
        match self._floor.update(free):
            case FloorChange.FELL:
                self.context.metrics.set("disk_below_floor", True)
                text = (f"recorder: {free / MIB:,.0f} MiB free under {root}, below the floor of "
                        f"{floor / MIB:,.0f} MiB (storage.min_free_megabytes): ticks and scan snapshots no "
                        "longer go onto the spine (its stream, the Parquet store); the journal is still "
                        "written")
                self.log.warning(text)
                self._alert(DISK_FLOOR_ALERT, text)
            case FloorChange.RECOVERED:
                self.context.metrics.set("disk_below_floor", False)
                self.log.info("{:,.0f} MiB free under {} again: ticks and scan snapshots go onto the spine "
                              "again ({:,} were kept off it so far)", free / MIB, root,
                              self.context.metrics.count("spine_shed"))

    def _alert(self, key: str, text: str) -> None:
        self.directory.tell("notifier", SystemAlert(at=self.context.clock.now(), key=key, text=text))

    def _close_writer(self, writer: JsonlWriter) -> tuple[int, OSError | None]:
        """Close one file: the lines the disk still refuses are lost; how many, and why."""
        waiting = writer.buffered_lines
        failure = None
        try:
            writer.close()
        except OSError as error:
            failure = error
        self._count_ticks(writer)
        self._tick_counts.pop(writer, None)
        return (waiting if failure is not None else 0), failure

    def _close_all(self) -> None:
        """Every file closed (at a stop, a crash and the backup)."""
        writers, self._writers = list(self._writers.values()), {}
        lost, files, failure = 0, 0, None
        for writer in writers:
            lines, error = self._close_writer(writer)
            if error is not None:
                lost, files, failure = lost + lines, files + 1, failure or error
        if failure is not None:
            self._log_write_error(f"{files} files", failure, f"; {lost:,} lines lost", always=True)
        self._buffered = 0

    # --- backup ----------------------------------------------------------------------------------

    def backup(self, day: date) -> BackupResult:
        """The day's close: every file flushed and closed, the day's ticks rebuilt in Parquet from the
        journal (the source of truth), the day archived (`store.backup.pack_day`), old days removed
        (`store.retention`). Files reopen on the next line written."""
        self._mark_dropped()
        self._close_all()
        storage = self.context.settings.storage
        rows = import_journal_day(self.paths, day)
        self.log.info("{}: {:,} ticks in Parquet from the journal", day, rows)
        result = pack_day(self.paths, day, self.context.clock.now(), copy_to=storage.backup_copy_dir)
        copy = f" (copy {result.copy})" if result.copy else ""
        self.log.info("backup {}: {} files, {:,} bytes -> {}{}", day, result.files, result.bytes,
                      result.archive, copy)
        keep = KeepDays(storage.journal_days, storage.parquet_days, storage.backup_days, storage.ledger_days)
        for path in enforce(self.paths, keep, day):
            self.log.info("retention: removed {}", path.relative_to(self.paths.root))
        return result


def tick_line(tick: TradeTick, exchange_time: str, received_at: str, venue: str = "KRX") -> str:
    """One tick as a JSON line. Numbers come from int()/float() in the codec; text is escaped if needed."""
    return (
        f'{{"symbol":"{tick.symbol}","exchange_time":"{exchange_time}","received_at":"{received_at}",'
        f'"price":{tick.price},"volume":{tick.volume},"cum_volume":{tick.cum_volume},'
        f'"cum_value":{tick.cum_value},"change_rate":{json_number(tick.change_rate)},"ask1":{tick.ask1},'
        f'"bid1":{tick.bid1},"side":{json_text(tick.side)},"strength":{json_number(tick.strength)},"source":"ws",'
        f'"venue":{json_text(venue)},"tr_id":{json_text(tick.tr_id)}}}'
    )


def book_line(book: OrderBook, received_at: datetime, tr_id: str) -> dict[str, Any]:
    """One order book record as its line."""
    return {
        "symbol": book.symbol, "exchange_time": book.exchange_time(received_at), "received_at": received_at,
        "asks": book.asks, "bids": book.bids, "ask_sizes": book.ask_sizes, "bid_sizes": book.bid_sizes,
        "total_ask_size": book.total_ask_size, "total_bid_size": book.total_bid_size,
        "cum_volume": book.cum_volume, "tr_id": tr_id,
    }


def program_line(trade: ProgramTrade, received_at: datetime, tr_id: str) -> dict[str, Any]:
    """One program trading record as its line."""
    return {
        "symbol": trade.symbol, "exchange_time": trade.exchange_time(received_at), "received_at": received_at,
        "sell_volume": trade.sell_volume, "sell_value": trade.sell_value, "buy_volume": trade.buy_volume,
        "buy_value": trade.buy_value, "net_volume": trade.net_volume, "net_value": trade.net_value,
        "sell_resting": trade.sell_resting, "buy_resting": trade.buy_resting,
        "net_resting": trade.net_resting, "tr_id": tr_id,
    }


def recovery_lines(record: RecoveryRecord) -> Iterator[dict[str, Any]]:
    """The tick-file rows of one recovery record (one per recovered bar)."""
    gap = record.meta.original_gap
    for bar in record.instruments:
        yield {
            "symbol": bar.symbol,
            "exchange_time": bar.timestamp,
            "received_at": record.meta.recovered_at,
            "price": bar.price.close,
            "volume": bar.volume,
            "cum_volume": None,
            "source": "recovery",
            "open": bar.price.open,
            "high": bar.price.high,
            "low": bar.price.low,
            "close": bar.price.close,
            "gap_start": gap.start,
            "gap_end": gap.end,
        }
