"""A day backed up holds every kind of file it left, restores elsewhere byte for byte, and a bad archive or a
non-empty target is refused with one line."""

from __future__ import annotations

import io
import tarfile
from datetime import date, datetime
from pathlib import Path

import pytest

from runtime.clock import KST
from runtime.paths import DataPaths
from store.backup import MANIFEST_NAME, RestoreError, pack_day, restore
from store.journal import import_journal_day

DAY = date(2026, 9, 14)
NOW = datetime(2026, 9, 14, 21, 0, tzinfo=KST)


def lay_out_a_day(paths: DataPaths) -> set[str]:
    """One file of each kind the day leaves (and one of the day before, which is not packed)."""
    tick = '{"symbol":"005930","exchange_time":"2026-09-14T09:31:00+09:00","price":71000,"source":"ws"}\n'
    files = {
        paths.tick_file("sim1", "KOSPI", DAY, "005930"): tick,
        paths.tick_file("sim1", "KOSPI", date(2026, 9, 11), "005930"): tick,
        paths.swing_dir("sim1", "KOSPI", DAY) / "snapshots.jsonl": '{"symbol":"005930"}\n',
        paths.gap_markers("sim1", DAY): '{"symbol":"005930"}\n',
        paths.overflow_ledger("sim1", DAY): '{"symbol":"000660"}\n',
        paths.alerts_ledger(DAY): '{"text":"surge"}\n',
        paths.observer / "system" / "audit.jsonl": '{"who":"local","what":"pin"}\n',
        paths.observer / "system" / "candles" / "20260914_candles.json": '{"missing":{}}\n',
        paths.universe_dir / "20260914_kr_stocks.json": '{"metadata":{"market":"kr_stocks"}}\n',
        paths.state_dir / "slots.json": '{"day":"2026-09-14"}\n',
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    import_journal_day(paths, DAY)
    expected = {path.relative_to(paths.root).as_posix() for path in files if "20260911" not in str(path)}
    return expected | {"observer/parquet/ticks/date=20260914/day.parquet"}


def test_a_day_restores_elsewhere_byte_for_byte(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    expected = lay_out_a_day(paths)
    result = pack_day(paths, DAY, NOW, copy_to=tmp_path / "mounted")
    assert result.files == len(expected) and result.copy is not None and result.copy.is_file()
    assert result.copy.read_bytes() == result.archive.read_bytes()

    target = tmp_path / "restored"
    manifest = restore(result.copy, target)
    assert {entry["path"] for entry in manifest["files"]} == expected
    for relative in expected:
        assert (target / relative).read_bytes() == (paths.root / relative).read_bytes()
    assert not (target / "observer/scalp/sim1/KOSPI/20260911").exists()


def test_a_non_empty_target_is_refused_and_left_alone(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    lay_out_a_day(paths)
    archive = pack_day(paths, DAY, NOW).archive
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(RestoreError, match="not empty"):
        restore(archive, target)
    assert [path.name for path in target.iterdir()] == ["keep.txt"]


def test_a_tampered_or_broken_archive_is_refused(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    lay_out_a_day(paths)
    archive = pack_day(paths, DAY, NOW).archive
    tampered = tmp_path / "tampered.tar.gz"
    with tarfile.open(archive, "r:gz") as source, tarfile.open(tampered, "w:gz") as copy:
        for member in source.getmembers():
            data = source.extractfile(member)
            body = data.read() if data is not None else b""
            if member.name.endswith("slots.json"):
                body = body.replace(b"14", b"15")
            copy.addfile(member, io.BytesIO(body))
    with pytest.raises(RestoreError, match=r"slots\.json: differs"):
        restore(tampered, tmp_path / "t1")

    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(RestoreError, match="not a readable archive"):
        restore(truncated, tmp_path / "t2")

    no_manifest = tmp_path / "plain.tar.gz"
    with tarfile.open(no_manifest, "w:gz") as tar:
        tar.add(paths.state_dir / "slots.json", arcname="observer/state/slots.json")
    with pytest.raises(RestoreError, match=MANIFEST_NAME):
        restore(no_manifest, tmp_path / "t3")
