"""A short `run.py --sim` on a real spine: its own store, stopped last, leaves Parquet ticks equal to the
JSONL journal's row for row (the summary JSON says so), and a store started after the run catches up from
the stream to the same rows."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runtime.paths import DataPaths
from spine.server import NatsServer
from store.journal import compare_ticks, journal_ticks
from store.parquet import partition_dir
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
    paths = DataPaths(tmp_path / "data")
    journal = Counter(identity(row) for row in journal_ticks(paths, DAY))
    assert sum(journal.values()) > 100
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parquet_ticks_equal_journal"] is True, summary
    assert summary["parquet_ticks"] == summary["journal_ticks"] == sum(journal.values())
    day_file = partition_dir(paths.parquet_dir, "ticks", DAY) / "day.parquet"
    table = pq.read_table(day_file)
    pq.write_table(table.slice(1), day_file)  # one row removed
    assert compare_ticks(paths, DAY).figures() == {"parquet_ticks_equal_journal": False,
                                                   "journal_ticks": table.num_rows,
                                                   "parquet_ticks": table.num_rows - 1}
    prices = table["price"].to_pylist()
    prices[0] += 1  # every row there, one of them one won off
    pq.write_table(table.set_column(table.schema.get_field_index("price"), "price",
                                    pa.array(prices, pa.int64())), day_file)
    assert not compare_ticks(paths, DAY).equal

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
