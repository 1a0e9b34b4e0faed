"""Ticks and events of a made-up day as the observer publishes them, and the Parquet tables read back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from config.settings import SpineSettings
from runtime.clock import KST
from spine import wire
from spine.publisher import Publisher
from store.facts import row_of
from store.parquet import SEQ_COLUMN
from store.tables import TABLES, to_table

REPO = Path(__file__).resolve().parents[2]
INSTANCE = "storetest"
AT = datetime(2026, 9, 14, 9, 0, tzinfo=KST)


def facts(first: int, count: int) -> Iterator[wire.Fact]:
    """`count` ticks from number `first` on, with one event of every kind the store keeps (health and phase
    changes too) each 500 ticks."""
    for n in range(first, first + count):
        at = AT + timedelta(milliseconds=10 * n)
        yield wire.Tick(
            symbol=f"{n % 7:06d}",
            venue="KRX",
            exchange_time=at,
            received_at=at,
            price=70_000 + n % 90,
            volume=1 + n % 5,
            cum_volume=1_000 + n,
            source="ws",
            account="sim1",
            change_rate=0.5,
        )
        if n % 500 == 0:
            yield from events(n, at)


def events(n: int, at: datetime) -> Iterator[wire.Fact]:
    symbol = f"{n % 7:06d}"
    yield wire.Tick(
        symbol=symbol,
        venue="KRX",
        exchange_time=AT - timedelta(minutes=1 + n // 500),
        received_at=at,
        price=70_000,
        volume=9,
        cum_volume=None,
        source="recovery",
        account="sim1",
    )
    yield wire.Snapshot(
        account="sim1",
        scan_no=n,
        scanned_at=at,
        symbol=symbol,
        name="삼성전자",
        price=70_000,
        change=100,
        sign="2",
        change_rate=0.14,
        volume=10,
        value=700_000,
        open=69_900,
        high=70_100,
        low=69_800,
        upper_limit=90_000,
        lower_limit=50_000,
        prev_close=69_900,
        base_price=69_900,
        ask=70_100,
        bid=70_000,
    )
    yield wire.TriggerFired(
        symbol=symbol,
        kind="volume_surge",
        strength=0.8,
        value=3.1,
        threshold=2.0,
        detected_at=at,
        expires_at=None,
    )
    yield wire.SlotChanged(at=at, account="sim1", symbol=symbol, action="subscribe", reason="trigger")
    yield wire.Overflowed(
        account="sim1",
        timestamp=at,
        symbol=symbol,
        trigger_type="volume_surge",
        trigger_strength=0.8,
        priority_score=0.5,
        reason="slots_full",
        current_slot_min_score=0.6,
        metadata={"rank": n},
    )
    yield wire.GapOpened(at=at, account="sim1", symbol=symbol, start=at, reason="disconnect")
    yield wire.GapClosed(
        at=at,
        account="sim1",
        symbol=symbol,
        start=at,
        end=at + timedelta(seconds=5),
        duration_seconds=5.0,
        expected=False,
        reason="disconnect",
        action="queued",
    )
    yield wire.GapMarked(
        account="sim1",
        timestamp=at,
        symbol=symbol,
        start_time=at,
        end_time=at + timedelta(seconds=5),
        duration_seconds=5.0,
        reason="disconnect",
        detail="no bars",
        expected=False,
    )
    yield wire.AlertSent(at=at, key=f"{symbol}:surge", text="급등")
    yield wire.PhaseChange(at=at, phase="full_operation", previous="track_a_only")
    yield wire.Health(
        at=at,
        uptime_seconds=1.0,
        phase=None,
        actors_alive=1,
        actors_total=1,
        actors_down=(),
        restarts={},
        counters={},
        published=0,
        dropped=0,
    )


def publish(url: str, items: list[wire.Fact]) -> None:
    """Every item onto the spine through the observer's publisher (its queue large enough to drop none)."""
    publisher = Publisher(url, SpineSettings(instance=INSTANCE, publish_queue_limit=len(items) + 1)).start()
    assert publisher.wait_connected(15)
    for item in items:
        publisher.publish(item)
    publisher.stop(timeout=60)
    assert (publisher.dropped, publisher.published) == (0, len(items))


def expected_tables(items: list[wire.Fact]) -> dict[str, list[dict[str, Any]]]:
    """Each table's rows in publication order, typed as the Parquet files hold them."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        mapped = row_of(json.loads(item.model_dump_json()))
        if mapped is not None:
            rows.setdefault(mapped[0], []).append(mapped[1])
    return {table: to_table(TABLES[table], batch).to_pylist() for table, batch in rows.items()}


def parquet_rows(data_dir: Path, table: str) -> int:
    return sum(
        pq.ParquetFile(path).metadata.num_rows
        for path in (data_dir / "observer" / "parquet" / table).glob("date=*/*.parquet")
    )


def parquet_table(data_dir: Path, table: str) -> pa.Table:
    files = sorted((data_dir / "observer" / "parquet" / table).glob("date=*/*.parquet"))
    return pa.concat_tables([pq.read_table(path, partitioning=None) for path in files])


def stored_rows(data_dir: Path, table: str) -> list[dict[str, Any]]:
    """The table's rows in stream order, without the stream sequence."""
    rows = parquet_table(data_dir, table).sort_by(SEQ_COLUMN).to_pylist()
    return [{name: value for name, value in row.items() if name != SEQ_COLUMN} for row in rows]


def store_process(url: str, data_dir: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "store",
        "--nats",
        url,
        "--data-dir",
        str(data_dir),
        "--instance",
        INSTANCE,
        "--log-dir",
        str(log.parent),
        "--flush-seconds",
        "0.5",
        *extra,
    ]
    env = {key: value for key, value in os.environ.items() if not key.startswith("OBSERVER_")}
    with log.open("ab") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=60)
