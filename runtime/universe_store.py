"""Universe snapshot files: `{directory}/{YYYYMMDD}_{market}.json`, written once per day, never rewritten.

Each configured market (KOSPI, KOSDAQ) has its file, which the observer reads back; the day's whole universe
is also written as `{YYYYMMDD}_kr_stocks.json` with `metadata.market = "kr_stocks"`
(symbol_selection_architecture.md's snapshot: one file, every symbol best market cap first), for the
user's tools.

Writes are atomic (temp file, fsync, hard link into place, directory fsync): a reader sees the whole
snapshot or none, and the link fails if the day's file already exists, so the day's universe cannot be
replaced even by a racing writer. A corrupt or invalid file yields one error line, never a crash: it is
skipped by listing-based fallback and reported by `load`. With a `replica` (the control process's copy in the
spine's key-value store) each written file is also handed to it as `universe.<file name without .json>`.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from loguru import logger
from pydantic import ValidationError

from core.universe import (
    UniverseMetadata,
    UniverseSnapshot,
    choose_fallback,
    days_to_prune,
    format_day,
    parse_day,
)
from runtime.state_store import StateReplica

_FILE_NAME = re.compile(r"^(\d{8})_([A-Za-z0-9_]+)\.json$")
KR_STOCKS = "kr_stocks"
UNIVERSE_KEY_PREFIX = "universe."
"""The market name of the whole day's universe in the seed's format."""


class UniverseFileError(Exception):
    """A snapshot file is missing, unreadable or invalid; the message is one line naming the file."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """The snapshot used instead of today's, and the newer files that had to be skipped (one line each)."""

    snapshot: UniverseSnapshot
    skipped: tuple[str, ...]


def combine_markets(snapshots: list[UniverseSnapshot] | tuple[UniverseSnapshot, ...]) -> UniverseSnapshot:
    """One day's per-market snapshots as the seed's single `kr_stocks` snapshot: every symbol, market cap
    descending then code, with the first snapshot's dates, generation time and filter."""
    if not snapshots:
        raise ValueError("no snapshot to combine")
    days = {snapshot.metadata.date for snapshot in snapshots}
    if len(days) != 1:
        raise ValueError(f"snapshots of different days cannot be combined: {', '.join(sorted(days))}")
    symbols = sorted((symbol for snapshot in snapshots for symbol in snapshot.symbols),
                     key=lambda symbol: (-symbol.market_cap, symbol.code))
    metadata = snapshots[0].metadata.model_copy(update={"symbol_count": len(symbols), "market": KR_STOCKS})
    return UniverseSnapshot(metadata=UniverseMetadata.model_validate(metadata.model_dump()),
                            symbols=tuple(symbols))


def _one_line(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "document"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


class UniverseStore:
    """Reads and writes the day's snapshots under one directory, keeping an in-memory cache of them."""

    def __init__(
        self, directory: Path | str, cache_days: int = 10, replica: StateReplica | None = None
    ) -> None:
        self.directory = Path(directory)
        self.cache_days = cache_days
        self.replica = replica
        self._cache: dict[tuple[date, str], UniverseSnapshot] = {}

    def path_for(self, day: date, market: str) -> Path:
        return self.directory / f"{format_day(day)}_{market}.json"

    def days(self, market: str) -> tuple[date, ...]:
        """Days with a file for `market` (by name; content is checked on load), oldest first."""
        if not self.directory.is_dir():
            return ()
        found = set()
        for path in self.directory.iterdir():
            match = _FILE_NAME.match(path.name)
            if match is None or match.group(2) != market:
                continue
            with contextlib.suppress(ValueError):
                found.add(parse_day(match.group(1)))
        return tuple(sorted(found))

    def load(self, day: date, market: str) -> UniverseSnapshot:
        """The stored snapshot, or `UniverseFileError` with one line saying what is wrong with the file."""
        cached = self._cache.get((day, market))
        if cached is not None:
            return cached
        path = self.path_for(day, market)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise UniverseFileError(f"universe snapshot {path}: not found") from None
        except OSError as error:
            raise UniverseFileError(f"universe snapshot {path}: unreadable ({error.strerror})") from None
        try:
            snapshot = UniverseSnapshot.model_validate_json(raw)
        except ValidationError as error:
            raise UniverseFileError(f"universe snapshot {path}: invalid, {_one_line(error)}") from None
        if snapshot.day != day or snapshot.market != market:
            raise UniverseFileError(
                f"universe snapshot {path}: holds {snapshot.metadata.date} {snapshot.market}, "
                f"not {format_day(day)} {market}"
            )
        self._remember(snapshot)
        return snapshot

    def save(self, snapshot: UniverseSnapshot) -> UniverseSnapshot:
        """Store the day's snapshot unless the day already has one; return the one that stands.

        The day's universe never changes: if a valid file exists it wins and `snapshot` is dropped.
        An existing corrupt file is kept aside as `*.corrupt` (never deleted) and replaced.
        """
        path = self.path_for(snapshot.day, snapshot.market)
        if path.exists():
            try:
                return self.load(snapshot.day, snapshot.market)
            except UniverseFileError as error:
                logger.error(f"{error}; kept as {path.name}.corrupt, writing a new one")
                os.replace(path, self._corrupt_name(path))
        self.directory.mkdir(parents=True, exist_ok=True)
        data = snapshot.model_dump_json(indent=2).encode("utf-8")
        if not self._write_once(path, data):
            return self.load(snapshot.day, snapshot.market)
        if self.replica is not None:
            key = f"{UNIVERSE_KEY_PREFIX}{path.stem}"
            self.replica.put(key, snapshot.model_dump_json(), path.stat().st_mtime)
        self._remember(snapshot)
        return snapshot

    def fallback(self, today: date, market: str) -> Fallback | None:
        """The latest valid snapshot from before `today`, skipping corrupt files (one error line each)."""
        days = list(self.days(market))
        skipped: list[str] = []
        while (day := choose_fallback(days, today)) is not None:
            try:
                return Fallback(snapshot=self.load(day, market), skipped=tuple(skipped))
            except UniverseFileError as error:
                logger.error(str(error))
                skipped.append(str(error))
                days.remove(day)
        return None

    def prune(self, market: str, keep: int | None = None) -> tuple[Path, ...]:
        """Delete snapshots older than the newest `keep` days (default `cache_days`); return what went."""
        removed = []
        for day in days_to_prune(self.days(market), self.cache_days if keep is None else keep):
            path = self.path_for(day, market)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
            self._cache.pop((day, market), None)
        return tuple(removed)

    def _remember(self, snapshot: UniverseSnapshot) -> None:
        self._cache[(snapshot.day, snapshot.market)] = snapshot
        for day in days_to_prune({d for d, m in self._cache if m == snapshot.market}, self.cache_days):
            self._cache.pop((day, snapshot.market), None)

    def _write_once(self, path: Path, data: bytes) -> bool:
        """Atomically create `path` with `data`; False if it appeared meanwhile (nothing overwritten)."""
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
        finally:
            os.unlink(temp)
        self._fsync_directory()
        return True

    def _fsync_directory(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _corrupt_name(path: Path) -> Path:
        candidate = path.with_name(path.name + ".corrupt")
        n = 1
        while candidate.exists():
            candidate = path.with_name(f"{path.name}.corrupt{n}")
            n += 1
        return candidate
