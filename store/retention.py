"""What the daily job removes: each kind of file is kept a number of days, counted back from today.

Every kind below the data directory is named by its day (`.../{YYYYMMDD}/`, `{YYYYMMDD}_*.jsonl`,
`date={YYYYMMDD}/`, `{YYYYMMDD}.tar.gz`), so what is expired is read from names alone, never from file times
that a copy or a restore would change. Today's files are never expired, whatever the setting.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from runtime.paths import DataPaths

_DAY = re.compile(r"(?:^|date=)(\d{8})(?:$|[_.])")


@dataclass(frozen=True, slots=True)
class KeepDays:
    """Days kept of each kind (today counts as one)."""

    journal: int
    parquet: int
    backups: int
    ledgers: int


def day_of(name: str) -> date | None:
    """The day a file or folder is named by, or None."""
    match = _DAY.search(name)
    if match is None:
        return None
    stamp = match.group(1)
    try:
        return date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:]))
    except ValueError:
        return None


def expired(paths: DataPaths, keep: KeepDays, today: date) -> Iterator[Path]:
    """Every file or day folder older than its kind keeps, oldest kinds first."""
    observer = paths.observer
    kinds = (
        (keep.journal, observer.glob("scalp/*/*/*"), observer.glob("swing/*/*/*")),
        (keep.parquet, paths.parquet_dir.glob("*/date=*")),
        (keep.backups, paths.backup_dir.glob("*.tar.gz"), paths.backup_dir.glob("*.manifest.json")),
        (keep.ledgers, observer.glob("system/*/*/*.jsonl"), observer.glob("system/*/*.jsonl")),
    )
    for days, *globs in kinds:
        oldest_kept = today - timedelta(days=max(days, 1) - 1)
        for found in globs:
            for path in sorted(found):
                day = day_of(path.name)
                if day is not None and day < oldest_kept:
                    yield path


def enforce(paths: DataPaths, keep: KeepDays, today: date) -> list[Path]:
    """Remove what `expired` lists; the paths removed."""
    removed = []
    for path in list(expired(paths, keep, today)):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
        removed.append(path)
    return removed
