"""`python run.py restore` as a user runs it: a day's archive into an empty directory, one line either way."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

from runtime.clock import KST
from runtime.paths import DataPaths
from store.backup import pack_day
from tests.store.test_backup import DAY, lay_out_a_day

REPO = Path(__file__).resolve().parents[2]


def run_restore(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "run.py", "restore", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip


def test_restore_into_an_empty_directory_and_refusals(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path / "data")
    expected = lay_out_a_day(paths)
    archive = pack_day(paths, DAY, datetime(2026, 9, 14, 21, tzinfo=KST)).archive

    done = run_restore(str(archive), "--data-dir", str(tmp_path / "restored"))
    assert done.returncode == 0, done.stderr
    assert f"2026-09-14: {len(expected)} files" in done.stdout and "verified" in done.stdout
    for relative in expected:
        assert (tmp_path / "restored" / relative).read_bytes() == (paths.root / relative).read_bytes()

    again = run_restore(str(archive), "--data-dir", str(tmp_path / "restored"))
    missing = run_restore(str(tmp_path / "nope.tar.gz"), "--data-dir", str(tmp_path / "x"))
    for refused in (again, missing):
        assert refused.returncode == 2
        assert len(refused.stderr.strip().splitlines()) == 1 and "Traceback" not in refused.stderr
    assert "not empty" in again.stderr and "is not a file" in missing.stderr
