"""A short `run.py --sim` on a real spine, then the store role catching up from the stream: the Parquet
ticks equal the JSONL journal's row for row."""

from __future__ import annotations

import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from runtime.paths import DataPaths
from spine.server import NatsServer
from store.journal import journal_ticks
from tests.e2e.support import wait_for
from tests.spine.test_run_spine import DAY, INSTANCE, REPO, command, environment
from tests.store.spine_facts import parquet_rows, parquet_table, stop, store_process


def identity(row: dict[str, Any]) -> tuple[Any, ...]:
    """What a tick row says of the trade, in both representations (JSON text or Parquet values)."""
    at = row["exchange_time"]
    at = datetime.fromisoformat(at) if isinstance(at, str) else at
    return (row["symbol"], at, int(row["price"]), row["volume"], row["cum_volume"], row["source"])


@pytest.mark.timeout(300)
def test_the_store_catches_up_after_a_run_and_its_ticks_equal_the_journal(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    run = command(tmp_path, 20, "--nats", nats_server.url, "--http", "off")  # no port shared with other runs
    completed = subprocess.run(run, cwd=REPO, env=environment(),
                               capture_output=True, text=True, timeout=200)  # fmt: skip
    assert completed.returncode == 0, (completed.stdout + completed.stderr)[-3000:]
    journal = Counter(identity(row) for row in journal_ticks(DataPaths(tmp_path / "data"), DAY))
    assert sum(journal.values()) > 100

    data, out = tmp_path / "store-data", tmp_path / "store.out"
    # The run's own store took the default consumer's messages: this one catches up on a consumer of its own.
    process = store_process(nats_server.url, data, out, "--instance", INSTANCE, "--consumer", "catchup")
    try:
        assert wait_for(lambda: parquet_rows(data, "ticks") >= sum(journal.values()), timeout=90), (
            out.read_text()
        )
    finally:
        assert stop(process) == 0, out.read_text()
    stored = Counter(identity(row) for row in parquet_table(data, "ticks").to_pylist())
    assert stored == journal
    assert parquet_rows(data, "snapshots") > 0 and parquet_rows(data, "slot_changes") > 0
