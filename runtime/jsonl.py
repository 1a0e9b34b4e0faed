"""Append-only JSON Lines files: a line on disk is complete or absent, and readers survive torn lines.

The writer buffers whole lines in memory and hands them to the OS in one `os.write` per flush, so a
process killed at any moment leaves complete lines behind (a power cut may still tear the last one;
the reader skips it with a warning). Encoding uses the standard library's encoder with compact
separators, fast enough for the tick rates of DESIGN.md section 8 without another dependency.

A writer belongs to one owner (an actor): it is not thread-safe. The owner flushes it so that no line
waits longer than it allows (`buffered_since` says since when a line has waited) and calls `close()` on
stop; a full buffer flushes by itself.
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from time import monotonic
from types import TracebackType
from typing import Any, Self

from loguru import logger

FLUSH_BYTES = 64 * 1024
WARNINGS_PER_FILE = 5
TAIL_BYTES = 16 * 1024


def _to_json(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot write a {type(value).__name__} to JSONL (not JSON serialisable)")


_encode = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_to_json).encode


def encode_record(record: Mapping[str, Any]) -> str:
    """One record as one compact JSON line without the newline (datetimes as ISO 8601 text)."""
    return _encode(record)


def json_number(value: float) -> str:
    """A float as JSON text, as `encode_record` writes it (null where JSON has no number)."""
    return repr(value) if math.isfinite(value) else "null"


def json_text(value: str) -> str:
    """A string as JSON text, as `encode_record` writes it; plain words skip the encoder."""
    return f'"{value}"' if value.isalnum() or not value else json.dumps(value, ensure_ascii=False)


class JsonlWriter:
    """Appends records to `path` (parents created), one complete line each.

    A flush that fails (a full disk, say) keeps every line for the next one and sets `failing`; while it
    is set, a full buffer no longer tries to flush by itself, so writes never raise `OSError` and only the
    owner's own `flush()` retries. `lines_flushed` counts the lines handed to the OS, so an owner can count
    what is on disk rather than what it was given.
    """

    def __init__(self, path: Path | str, *, fsync: bool = False, flush_bytes: int = FLUSH_BYTES) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        self._flush_bytes = flush_bytes
        self._lines: list[str] = []
        self._buffered_chars = 0  # text in `_lines`, not yet encoded
        self._buffered_lines = 0  # lines not yet wholly handed to the OS
        self._unwritten = bytearray()  # encoded, not yet handed to the OS
        self._torn_tail_newline = False
        self.lines_accepted = 0
        """Lines given to `write` and `write_line` since the file was opened."""
        self.lines_flushed = 0
        """Complete lines handed to the OS since the file was opened."""
        self.failing = False
        """The last flush failed; the lines wait for the owner's next `flush()`."""
        self.buffered_since = math.inf
        """`monotonic()` when the oldest line not yet handed to the OS was written; infinity when none
        waits (a plain attribute: the recorder reads it for every tick)."""
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._end_torn_tail()

    def _end_torn_tail(self) -> None:
        """A previous process killed mid-line left a fragment: end it so the next record stays intact."""
        size = os.fstat(self._fd).st_size if self._fd is not None else 0
        if size == 0:
            return
        with self.path.open("rb") as existing:
            existing.seek(size - 1)
            last = existing.read(1)
        if last != b"\n":
            logger.warning("{}: last line was torn by an earlier stop; readers will skip it", self.path)
            self._unwritten += b"\n"
            self._torn_tail_newline = True

    def write(self, record: Mapping[str, Any]) -> None:
        """Buffer one record (a JSON object). Raises TypeError for values JSON cannot hold."""
        self.write_line(_encode(record))

    def write_line(self, line: str) -> None:
        """Buffer one line that is already JSON text (the hot path may build lines itself)."""
        if self._fd is None:
            raise ValueError(f"{self.path}: write after close")
        if "\n" in line:
            raise ValueError(f"{self.path}: a JSONL record must not contain a newline")
        if self.buffered_since == math.inf:
            self.buffered_since = monotonic()
        self._lines.append(line)
        self._lines.append("\n")
        self._buffered_chars += len(line) + 1
        self._buffered_lines += 1
        self.lines_accepted += 1
        if self._buffered_chars >= self._flush_bytes and not self.failing:
            self._flush_by_itself()

    @property
    def buffered_lines(self) -> int:
        """Lines not yet (wholly) handed to the OS."""
        return self._buffered_lines

    @property
    def buffered_bytes(self) -> int:
        """About how much waits in memory (text is counted in characters until it is encoded)."""
        return len(self._unwritten) + self._buffered_chars

    def _encode_lines(self) -> None:
        if self._lines:
            self._unwritten += "".join(self._lines).encode("utf-8")
            self._lines.clear()
            self._buffered_chars = 0

    def _flush_by_itself(self) -> None:
        """A full buffer's own flush: a failure keeps the lines and sets `failing` for the owner to see."""
        with contextlib.suppress(OSError):
            self.flush()

    def flush(self) -> None:
        """Hand every buffered line to the OS (and to the disk when `fsync` was asked for). On `OSError`
        the lines not written stay buffered, `buffered_since` keeps its time and `failing` is set."""
        if self._fd is None:
            return
        self._encode_lines()
        unwritten = self._unwritten
        try:
            while unwritten:
                # A partial write keeps the rest, so a retry continues the same line.
                written = os.write(self._fd, unwritten)
                newlines = unwritten.count(b"\n", 0, written)
                if newlines and self._torn_tail_newline:
                    self._torn_tail_newline = False
                    newlines -= 1
                del unwritten[:written]
                self.lines_flushed += newlines
                self._buffered_lines -= newlines
            if self._fsync:
                os.fsync(self._fd)
        except OSError:
            self.failing = True
            raise
        self.failing = False
        self.buffered_since = math.inf

    def close(self) -> None:
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None

    @property
    def closed(self) -> bool:
        return self._fd is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass(slots=True)
class JsonlReader:
    """Iterates the JSON objects of a JSONL file, skipping torn or invalid lines with a warning.

    After iteration `skipped` counts the lines that were not JSON objects (blank lines are not
    counted). A missing or unreadable file yields nothing and logs one warning. Never raises on content.
    """

    path: Path
    skipped: int = 0
    _warned: int = field(default=0, repr=False)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = 0
        self._warned = 0
        try:
            source = Path(self.path).open("rb")  # noqa: SIM115 (closed below; the open may fail alone)
        except OSError as error:
            logger.warning("{}: cannot read JSONL file: {}", self.path, error.strerror or error)
            return
        with source:
            for number, raw in enumerate(source, start=1):
                if not raw.strip():
                    continue
                record = self._parse(raw, number)
                if record is not None:
                    yield record
        if self._warned < self.skipped:
            logger.warning(
                "{}: {} invalid lines skipped in all ({} not shown)",
                self.path,
                self.skipped,
                self.skipped - self._warned,
            )

    def _parse(self, raw: bytes, number: int) -> dict[str, Any] | None:
        try:
            # Decoded here, not by json.loads: given bytes it guesses UTF-16/32 from leading NULs (a power
            # cut can leave a run of them) and then names the wrong codec in the warning.
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError) as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            self._skip(number, raw, reason)
            return None
        if not isinstance(record, dict):
            self._skip(number, raw, f"a JSON {type(record).__name__}, not an object")
            return None
        return record

    def _skip(self, number: int, raw: bytes, reason: str) -> None:
        self.skipped += 1
        if self._warned >= WARNINGS_PER_FILE:
            return
        self._warned += 1
        if raw.endswith(b"\n"):
            logger.warning("{}: skipping invalid line {}: {}", self.path, number, reason)
        else:
            logger.warning("{}: skipping torn last line {} (no newline): {}", self.path, number, reason)


@dataclass(frozen=True, slots=True)
class JsonlContents:
    records: list[dict[str, Any]]
    skipped: int


def tail_records(path: Path | str, max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The JSON objects among the complete lines of the last `max_bytes` of a file, in file order: what a
    restart needs of a long file without reading it all. Torn, invalid and partly read lines are left
    out silently; a missing or unreadable file gives []."""
    try:
        with Path(path).open("rb") as file:
            size = file.seek(0, os.SEEK_END)
            start = max(0, size - max_bytes)
            file.seek(start)
            data = file.read(size - start)
    except OSError:
        return []
    lines = data.split(b"\n")
    complete = lines[:-1] if start == 0 else lines[1:-1]  # the first may be cut, the last has no newline
    records = []
    for raw in complete:
        try:
            record = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def read_jsonl(path: Path | str) -> JsonlContents:
    """All records of a JSONL file and how many lines were skipped."""
    reader = JsonlReader(Path(path))
    records = list(reader)
    return JsonlContents(records=records, skipped=reader.skipped)
