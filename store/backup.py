"""The daily archive of everything a day left on disk, and its restore into an empty data directory.

An archive `backup/{YYYYMMDD}.tar.gz` holds the day's journal (ticks, recovery records, snapshots), its
Parquet partitions, the universe snapshot, the state files, the gap markers, the overflow, alert and audit
ledgers, and a manifest (its first member, also written beside it) giving each file's path below the data
directory, size and sha256. It is written under a temporary name and renamed, so it is whole or absent; an
optional second directory (a mounted disk) gets a copy. `restore` refuses a non-empty target, unpacks only the
manifest's files and checks every size and digest.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from runtime.paths import DataPaths

MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True, slots=True)
class BackupResult:
    archive: Path
    manifest: Path
    files: int
    bytes: int
    copy: Path | None = None


class RestoreError(Exception):
    """The archive cannot be restored as it is: one line saying why."""


def day_files(paths: DataPaths, day: date) -> Iterator[Path]:
    """Every file of `day` below the data directory, and the state files of the moment."""
    observer, stamp = paths.observer, f"{day:%Y%m%d}"
    for track in ("scalp", "swing"):
        for folder in observer.glob(f"{track}/*/*/{stamp}"):
            yield from (path for path in folder.rglob("*") if path.is_file())
    for kind in ("gaps", "overflow"):
        yield from observer.glob(f"system/{kind}/*/{stamp}_{kind}.jsonl")
    yield from observer.glob(f"system/alerts/{stamp}_alerts.jsonl")
    yield from observer.glob(f"system/candles/{stamp}_candles.json")
    yield from observer.glob("system/audit.jsonl")  # the control audit: one short line per command, whole
    for folder in paths.parquet_dir.glob(f"*/date={stamp}"):
        yield from (path for path in folder.glob("*.parquet") if path.is_file())
    yield from paths.universe_dir.glob(f"{stamp}_*.json")
    yield from (path for path in paths.state_dir.glob("*.json") if path.is_file())


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack_day(paths: DataPaths, day: date, now: datetime, copy_to: Path | None = None) -> BackupResult:
    """Archive the day's files (see the module docstring); the caller has closed its writers first."""
    files = sorted(set(day_files(paths, day)))
    entries = [
        {
            "path": path.relative_to(paths.root).as_posix(),
            "size": path.stat().st_size,
            "sha256": sha256_of(path),
        }
        for path in files
    ]
    manifest = {"day": day.isoformat(), "created_at": now.isoformat(), "files": entries}
    manifest_bytes = (json.dumps(manifest, ensure_ascii=False) + "\n").encode("utf-8")
    paths.backup_dir.mkdir(parents=True, exist_ok=True)
    archive = paths.backup_dir / f"{day:%Y%m%d}.tar.gz"
    temporary = archive.with_name(archive.name + ".tmp")
    with tarfile.open(temporary, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST_NAME)
        info.size = len(manifest_bytes)
        info.mtime = int(now.timestamp())
        tar.addfile(info, io.BytesIO(manifest_bytes))
        for path, entry in zip(files, entries, strict=True):
            tar.add(path, arcname=entry["path"], recursive=False)
    os.replace(temporary, archive)
    manifest_path = paths.backup_dir / f"{day:%Y%m%d}.manifest.json"
    manifest_path.write_bytes(manifest_bytes)
    copy = None
    if copy_to is not None:
        copy_to.mkdir(parents=True, exist_ok=True)
        copy = copy_to / archive.name
        shutil.copyfile(archive, copy.with_name(copy.name + ".tmp"))
        os.replace(copy.with_name(copy.name + ".tmp"), copy)
    return BackupResult(archive, manifest_path, len(files), sum(e["size"] for e in entries), copy)


def restore(archive: Path, data_dir: Path) -> dict[str, Any]:
    """Unpack `archive` into the empty (or missing) `data_dir` and verify it against its manifest; the
    manifest. Raises `RestoreError` with one line when the target is not empty or the archive is not whole."""
    if data_dir.exists() and any(data_dir.iterdir()):
        raise RestoreError(f"{data_dir} is not empty: restore into an empty directory")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            manifest = _read_manifest(tar)
            data_dir.mkdir(parents=True, exist_ok=True)
            for entry in manifest["files"]:
                _extract(tar, entry["path"], data_dir)
    except (OSError, tarfile.TarError, EOFError) as error:
        raise RestoreError(f"{archive.name}: not a readable archive ({type(error).__name__})") from None
    for entry in manifest["files"]:
        path = data_dir / entry["path"]
        if path.stat().st_size != entry["size"] or sha256_of(path) != entry["sha256"]:
            raise RestoreError(f"{entry['path']}: differs from the manifest (size or sha256)")
    return manifest


def _read_manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = tar.extractfile(MANIFEST_NAME)
        manifest = json.loads(member.read()) if member is not None else None
    except (KeyError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), list):
        raise RestoreError(f"the archive has no readable {MANIFEST_NAME}")
    return manifest


def _extract(tar: tarfile.TarFile, name: str, data_dir: Path) -> None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise RestoreError(f"{name}: a path outside the data directory")
    try:
        member = tar.getmember(name)
    except KeyError:
        raise RestoreError(f"{name}: in the manifest but not in the archive") from None
    tar.extract(member, data_dir, filter="data")
