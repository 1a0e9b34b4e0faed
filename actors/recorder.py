"""RecorderActor (id `recorder`): every data file of DESIGN.md section 5, and the 21:00 backup archive.

Files (provider = the account name, market from the day's universe, "KRX" when the symbol is not in it):

| what | file |
|---|---|
| Track B ticks | `scalp/{account}/{market}/{YYYYMMDD}/ticks_{symbol}.jsonl` |
| gap recovery (seed format) | `scalp/{account}/{market}/{YYYYMMDD}/recovery_{HHMMSS}_{symbol}.jsonl` |
| Track A snapshots | `swing/{account}/{market}/{YYYYMMDD}/snapshots.jsonl` |
| gap markers | `system/gaps/{account}/{YYYYMMDD}_gaps.jsonl` |
| overflow ledger | `system/overflow/{account}/{YYYYMMDD}_overflow.jsonl` |

The backup also packs the notifier's alerts ledger (`system/alerts/{YYYYMMDD}_alerts.jsonl`, written by
the notifier, not here), so the archive holds the whole day.

One tick file per symbol and day, because analysis loads one symbol at a time:
`pandas.read_json(path, lines=True)` gives one row per tick with the columns `symbol, exchange_time,
received_at, price, volume, cum_volume, cum_value, change_rate, ask1, bid1, side, strength, source, venue,
tr_id`. `venue` is KRX, NXT, or UN for a unified-feed trade made while both venues were in session
(`core.sessions.venue_of`); `tr_id` is the feed's TR (H0UNCNT0, H0STCNT0 or H0NXCNT0).
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
Ticks are the hot path (thousands per second): each becomes one f-string, no model, no json.dumps.

A Track A scan (about 1,000 rows) arrives with each row's line rendered (`MultiQuote.json_fields`, made
in the fetch worker's child), so writing `SCAN_CHUNK_LINES` rows of it is a join per market behind the
scan's head: about a millisecond for the whole pass, where rendering and writing it row by row
took ten. Each chunk is written on a turn of the mailbox of its own, behind the ticks that arrived
meanwhile: the whole pass in one handler held them 1-3.5 ms (wall time in situ at 5,000 records/s).

| message | effect |
|---|---|
| TicksReceived | one line per tick in the symbol's tick file; counter `ticks_recorded` |
| ScanCompleted | one line per row in the swing snapshot file of the row's market |
| OverflowRecorded | its lines in the account's overflow ledger |
| RecoveryRecorded | the seed-format recovery file, plus "recovery" rows in the tick file |
| GapMarked | one line in the account's gap markers |
| UniverseReady | symbol -> market map (also loaded from the universe snapshots at start) |
| DayEventFired DAILY_BACKUP | close the files, pack the day into `backup/{YYYYMMDD}.tar.gz` + manifest |
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import tarfile
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
from core.recovery import RecoveryRecord
from core.schedule import DayEvent
from core.sessions import venue_of
from kis.models import MultiQuote
from kis.ticks import TradeTick
from messages.market import ScanCompleted, TicksReceived, UniverseReady
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from messages.schedule import DayEventFired
from runtime.jsonl import JsonlWriter, encode_record, json_number, json_text
from runtime.ticker import Ticker
from runtime.universe_store import UniverseFileError, UniverseStore

DEFAULT_MARKET = "KRX"
FLUSH_INTERVAL_SECONDS = 1.0
"""The longest a line waits in a buffer before it is handed to the OS."""
FLUSH_CHECK_SECONDS = 0.25
TICK_FLUSH_AGE_SECONDS = 0.5
"""Younger than the ticker's limit (`FLUSH_INTERVAL_SECONDS - FLUSH_CHECK_SECONDS`), so the files that ticks
keep coming for are flushed by their ticks, not all together by the ticker."""
SCAN_CHUNK_LINES = 100
"""Rows of a scan written in one turn of the mailbox: about 40 KB of snapshot lines."""
MAX_OPEN_FILES = 256
ERROR_LOG_INTERVAL_SECONDS = 5.0
MANIFEST_NAME = "manifest.json"
_SAFE_NAME = re.compile(r"[0-9A-Za-z_-]{1,32}")


class _FlushDue:
    """Ticker message: hand the lines that would otherwise wait too long to the OS."""


class _ScanChunkDue:
    """Internal: write the oldest queued chunk of a scan's snapshot lines."""


@dataclass(frozen=True, slots=True)
class _ScanChunk:
    account: str
    day: date
    head: bytes
    rows: tuple[MultiQuote, ...]
    lines: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class BackupResult:
    archive: Path
    manifest: Path
    files: int
    bytes: int


class RecorderActor(ObserverActor):
    """The one writer of data files. Not thread-safe by design: only its own thread touches the writers."""

    def __init__(self, name: str, directory: Directory, context: ObserverContext) -> None:
        super().__init__(name, directory, realtime_priority=context.settings.websocket.tick_path_priority)
        self.context = context
        self.paths = context.paths
        self._markets: dict[str, str] = {}
        self._writers: dict[Any, JsonlWriter] = {}
        self._time_text: dict[datetime, str] = {}
        self._scan_chunks: deque[_ScanChunk] = deque()
        self._ticker: Ticker | None = None
        self._errors_logged_at = 0.0

    # --- lifecycle -------------------------------------------------------------------------------

    def on_start(self) -> None:
        self._load_markets(self.context.clock.now().date())
        self._ticker = Ticker(self.actor_ref, _FlushDue, FLUSH_CHECK_SECONDS, name=f"{self.name}-flush")
        self._ticker.start()

    def on_stop(self) -> None:
        self._shut()

    def on_failure(self, *_exc: object) -> None:
        self._shut()

    def _shut(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._close_all()

    # --- messages --------------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        try:
            if isinstance(message, TicksReceived):
                self._record_ticks(message)
            elif isinstance(message, _FlushDue):
                self._flush_older_than(time.monotonic() - (FLUSH_INTERVAL_SECONDS - FLUSH_CHECK_SECONDS))
            elif isinstance(message, ScanCompleted):
                self._record_scan(message)
            elif isinstance(message, _ScanChunkDue):
                self._next_scan_chunk()
            elif isinstance(message, OverflowRecorded):
                writer = self._writer(("overflow", message.account, message.at.date()), self._overflow_path)
                for line in message.lines:
                    writer.write(line)
            elif isinstance(message, RecoveryRecorded):
                self._record_recovery(message)
            elif isinstance(message, GapMarked):
                writer = self._writer(("gaps", message.account, message.at.date()), self._gaps_path)
                writer.write(message.marker.to_json_dict())
            elif isinstance(message, UniverseReady):
                self._markets = {profile.symbol: profile.market for profile in message.profiles}
            elif isinstance(message, DayEventFired) and message.event is DayEvent.DAILY_BACKUP:
                return self.backup(message.at.date())
        except (OSError, TypeError, ValueError) as error:
            self._log_write_error(type(message).__name__, error)
        return None

    def _log_write_error(self, what: str, error: Exception) -> None:
        """Disk trouble or an unwritable value: a line every few seconds, never a crash that drops buffers."""
        now = time.monotonic()
        if now - self._errors_logged_at >= ERROR_LOG_INTERVAL_SECONDS:
            self._errors_logged_at = now
            detail = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            first_line = detail.splitlines()[0] if detail else type(error).__name__
            self.log.error("cannot write {}: {}", what, first_line)

    # --- ticks (hot path) ------------------------------------------------------------------------

    def _record_ticks(self, message: TicksReceived) -> None:
        received = message.at.isoformat()
        day = message.at.date()
        account = message.account
        writers = self._writers
        iso = self._iso
        sessions = self.context.settings.sessions
        due = time.monotonic() - TICK_FLUSH_AGE_SECONDS
        stale: list[JsonlWriter] = []
        written = 0
        for tick in message.ticks:
            writer = writers.get((account, day, tick.symbol))
            if writer is None:
                writer = self._tick_writer(account, day, tick.symbol)
                if writer is None:
                    continue
            venue = venue_of(tick.feed, tick.exchange_time, sessions)
            writer.write_line(tick_line(tick, iso(tick.exchange_time), received, venue))
            written += 1
            if writer.buffered_since <= due:
                stale.append(writer)
        if written:
            self.context.metrics.inc("ticks_recorded", written)
        for writer in stale:
            writer.flush()

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
        return self._writer((account, day, symbol), lambda _key: path)

    # --- other records ---------------------------------------------------------------------------

    def _record_scan(self, message: ScanCompleted) -> None:
        """The pass queued in chunks of rows, each written on a turn of the mailbox of its own."""
        head = f'{{"scan_no":{message.scan_no},"scanned_at":"{message.at.isoformat()}",'.encode()
        day = message.at.date()
        writing = bool(self._scan_chunks)  # an earlier scan's chunks go first; their turn is already asked
        self._scan_chunks.extend(
            _ScanChunk(message.account, day, head, message.rows[first:first + SCAN_CHUNK_LINES],
                       message.lines[first:first + SCAN_CHUNK_LINES])
            for first in range(0, len(message.rows), SCAN_CHUNK_LINES)
        )
        if not writing:
            self.actor_ref.tell(_ScanChunkDue())

    def _next_scan_chunk(self) -> None:
        try:
            self._write_scan_chunk()
        finally:
            if self._scan_chunks:
                self.actor_ref.tell(_ScanChunkDue())

    def _write_scan_chunk(self) -> None:
        """The oldest chunk's lines behind the scan's head, one block per market."""
        if not self._scan_chunks:
            return
        chunk = self._scan_chunks.popleft()
        by_market: dict[str, list[bytes]] = {}
        markets = self._markets
        for row, line in zip(chunk.rows, chunk.lines, strict=True):
            by_market.setdefault(markets.get(row.symbol, DEFAULT_MARKET), []).append(line)
        head = chunk.head
        for market, lines in by_market.items():
            path = self.paths.swing_dir(chunk.account, market, chunk.day) / "snapshots.jsonl"
            writer = self._writer(("swing", chunk.account, market, chunk.day), lambda _key, path=path: path)
            writer.write_block(head + (b"\n" + head).join(lines), len(lines))

    def _record_recovery(self, message: RecoveryRecorded) -> None:
        gap = message.gap
        market = self.market_of(gap.symbol)
        path = self.paths.recovery_file(message.account, market, gap.start, gap.symbol)
        with JsonlWriter(path) as writer:
            for record in message.records:
                writer.write(record.to_json_dict())
        tick_writer = self._tick_writer(message.account, message.at.date(), gap.symbol)
        if tick_writer is not None:
            for record in message.records:
                for line in recovery_lines(record):
                    tick_writer.write(line)

    def market_of(self, symbol: str) -> str:
        return self._markets.get(symbol, DEFAULT_MARKET)

    def _load_markets(self, day: date) -> None:
        """A restarted recorder finds today's universe on disk (the universe actor starts after it)."""
        store = UniverseStore(self.paths.universe_dir)
        for market in self.context.settings.universe.markets:
            with contextlib.suppress(UniverseFileError):
                snapshot = store.load(day, market)
                self._markets.update({symbol.code: snapshot.market for symbol in snapshot.symbols})

    def _overflow_path(self, key: tuple[str, str, date]) -> Path:
        return self.paths.overflow_ledger(key[1], key[2])

    def _gaps_path(self, key: tuple[str, str, date]) -> Path:
        return self.paths.gap_markers(key[1], key[2])

    # --- writers ---------------------------------------------------------------------------------

    def _writer(self, key: Any, path_for: Any) -> JsonlWriter:
        writer = self._writers.get(key)
        if writer is None:
            if len(self._writers) >= MAX_OPEN_FILES:
                oldest = next(iter(self._writers))
                self._writers.pop(oldest).close()
            writer = self._writers[key] = JsonlWriter(path_for(key))
        return writer

    def _flush_older_than(self, moment: float) -> None:
        """Every file whose oldest buffered line was written at or before `moment`; one that cannot be
        written keeps its lines for the next look and does not hold up the others."""
        for writer in self._writers.values():
            if writer.buffered_since <= moment:
                try:
                    writer.flush()
                except OSError as error:
                    self._log_write_error(str(writer.path), error)

    def _close_all(self) -> None:
        """Every queued scan chunk written, then every file closed (at a stop, a crash and the backup)."""
        while self._scan_chunks:
            try:
                self._write_scan_chunk()
            except (OSError, ValueError) as error:
                self._log_write_error("a scan's snapshot lines", error)
        writers, self._writers = list(self._writers.values()), {}
        for writer in writers:
            try:
                writer.close()
            except OSError as error:
                self._log_write_error(str(writer.path), error)

    # --- backup ----------------------------------------------------------------------------------

    def backup(self, day: date) -> BackupResult:
        """Pack the day's data files into `backup/{YYYYMMDD}.tar.gz` with a manifest (path, size, sha256).

        The manifest is the archive's first member and also sits beside it as `{YYYYMMDD}.manifest.json`.
        The archive is written under a temporary name and renamed, so a crash never leaves half of one.
        """
        self._close_all()
        root = self.paths.observer
        files = sorted(day_files(root, day))
        entries = [manifest_entry(root, path) for path in files]
        manifest = {"day": day.isoformat(), "created_at": self.context.clock.now(), "files": entries}
        manifest_bytes = (encode_record(manifest) + "\n").encode("utf-8")
        backup_dir = self.paths.backup_dir
        backup_dir.mkdir(parents=True, exist_ok=True)
        archive = backup_dir / f"{day:%Y%m%d}.tar.gz"
        temporary = archive.with_name(archive.name + ".tmp")
        with tarfile.open(temporary, "w:gz") as tar:
            info = tarfile.TarInfo(MANIFEST_NAME)
            info.size = len(manifest_bytes)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(manifest_bytes))
            for path, entry in zip(files, entries, strict=True):
                tar.add(path, arcname=entry["path"], recursive=False)
        os.replace(temporary, archive)
        manifest_path = backup_dir / f"{day:%Y%m%d}.manifest.json"
        manifest_path.write_bytes(manifest_bytes)
        total = sum(entry["size"] for entry in entries)
        self.log.info("backup {}: {} files, {:,} bytes -> {}", day, len(files), total, archive)
        return BackupResult(archive, manifest_path, len(files), total)


def day_files(root: Path, day: date) -> Iterator[Path]:
    """Every data file of `day` below the observer root (ticks, recovery, snapshots, markers, ledgers)."""
    stamp = f"{day:%Y%m%d}"
    for track in ("scalp", "swing"):
        for folder in root.glob(f"{track}/*/*/{stamp}"):
            yield from (path for path in folder.rglob("*") if path.is_file())
    for kind in ("gaps", "overflow"):
        yield from root.glob(f"system/{kind}/*/{stamp}_{kind}.jsonl")
    yield from root.glob(f"system/alerts/{stamp}_alerts.jsonl")


def manifest_entry(root: Path, path: Path) -> dict[str, Any]:
    return {"path": path.relative_to(root).as_posix(), "size": path.stat().st_size, "sha256": sha256_of(path)}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tick_line(tick: TradeTick, exchange_time: str, received_at: str, venue: str = "KRX") -> str:
    """One tick as a JSON line. Numbers come from int()/float() in the codec; text is escaped if needed."""
    return (
        f'{{"symbol":"{tick.symbol}","exchange_time":"{exchange_time}","received_at":"{received_at}",'
        f'"price":{tick.price},"volume":{tick.volume},"cum_volume":{tick.cum_volume},'
        f'"cum_value":{tick.cum_value},"change_rate":{json_number(tick.change_rate)},"ask1":{tick.ask1},'
        f'"bid1":{tick.bid1},"side":{json_text(tick.side)},"strength":{json_number(tick.strength)},"source":"ws",'
        f'"venue":{json_text(venue)},"tr_id":{json_text(tick.tr_id)}}}'
    )


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
