"""Retention reads days from names: each kind keeps its number of days, today is never removed."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from runtime.paths import DataPaths
from store.retention import KeepDays, day_of, enforce

TODAY = date(2026, 9, 14)


def test_day_of_reads_every_naming_of_the_data_directory() -> None:
    assert day_of("20260911") == date(2026, 9, 11)
    assert day_of("20260911_gaps.jsonl") == date(2026, 9, 11)
    assert day_of("date=20260911") == date(2026, 9, 11)
    assert day_of("20260911.tar.gz") == date(2026, 9, 11)
    assert day_of("slots.json") is None and day_of("20261399") is None


def test_each_kind_keeps_its_days(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    made = []
    for day in ("20260910", "20260911", "20260914"):
        made += [
            paths.observer / "scalp" / "sim1" / "KOSPI" / day / "ticks_005930.jsonl",
            paths.parquet_dir / "ticks" / f"date={day}" / "day.parquet",
            paths.backup_dir / f"{day}.tar.gz",
            paths.observer / "system" / "gaps" / "sim1" / f"{day}_gaps.jsonl",
        ]
    made.append(paths.state_dir / "slots.json")
    for path in made:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x", encoding="utf-8")

    removed = enforce(paths, KeepDays(journal=2, parquet=3, backups=4, ledgers=1), TODAY)
    names = {path.relative_to(tmp_path).as_posix() for path in removed}
    assert names == {
        "observer/scalp/sim1/KOSPI/20260910",
        "observer/scalp/sim1/KOSPI/20260911",
        "observer/parquet/ticks/date=20260910",
        "observer/parquet/ticks/date=20260911",
        "observer/backup/20260910.tar.gz",
        "observer/system/gaps/sim1/20260910_gaps.jsonl",
        "observer/system/gaps/sim1/20260911_gaps.jsonl",
    }
    assert (paths.observer / "scalp/sim1/KOSPI/20260914/ticks_005930.jsonl").exists()
    assert (paths.state_dir / "slots.json").exists()
    assert enforce(paths, KeepDays(journal=0, parquet=0, backups=0, ledgers=0), TODAY)  # 0 still keeps today
    assert (paths.parquet_dir / "ticks/date=20260914/day.parquet").exists()
