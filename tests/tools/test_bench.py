"""Smoke test of `python -m tools.bench`: every group runs end to end at a tiny size and reports well-formed,
finite figures. No figure is compared with its target here (speed is measured by the benchmark, not tests)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import pytest

from tools.bench.__main__ import GROUPS, Plan, run
from tools.bench.harness import BenchError, ServerPart
from tools.bench.report import Result, host_jitter, table, write_json

TINY = Plan(throughput_window=0.5, max_rate=5_000, latency_window=0.5, per_symbol_sample=3, drops=2, gaps=2,
            core_runs=3, day_speed=11_700.0, day_trade_rate=0.02, parse_seconds=0.1, spine_ticks=2_000,
            store_ticks=2_000, store_lag_seconds=0.5,
            minute_job_minutes=1, fanout_ticks=2_000, fanout_latency_seconds=0.5, scaling_accounts=(1, 2),
            scaling_ticks=2_000, scaling_allocation_runs=3)
EXPECTED = {
    "tick_pipeline_throughput", "tick_pipeline_throughput_1_record_frames",
    "tick_latency_p99_record_written_at_82_per_s_during_scan",
    "tick_latency_p99_trigger_evaluated_at_82_per_s_during_scan",
    "tick_latency_p99_record_written_at_5000_per_s_during_scan",
    "tick_latency_p99_trigger_evaluated_at_5000_per_s_during_scan",
    "universe_scan_wall_time", "universe_scan_calls", "reconnect_to_41_confirmed_p99",
    "gap_detection_latency_p99", "gap_recovery_latency_p99", "allocation_2500_candidates_p99",
    "context_sync_1000_symbols", "memory_growth_simulated_day", "spine_ticks_to_outside_subscriber",
    "spine_fanout_three_subscribers", "spine_fanout_p99_three_subscribers",
    "store_parquet_rows_per_s_from_spine", "store_postgres_rows_per_s_from_spine",
    "store_lag_p99_at_5000_per_s",
    "store_bytes_per_million_ticks_jsonl", "store_bytes_per_million_ticks_parquet",
    "store_bytes_per_million_ticks_postgres", "store_load_symbol_day_jsonl", "store_load_symbol_day_parquet",
    "store_load_symbol_day_postgres",
    "minute_jobs_seconds_per_minute", "minute_jobs_tick_latency_p99_record_written",
    "spine_ticks_1_accounts", "spine_ticks_2_accounts",
    "allocation_1_accounts_p50", "allocation_2_accounts_p50",
}


IN_PROCESS_GROUPS = tuple(group for group in GROUPS if group not in ("processes", "failover"))
"""`processes` runs the whole of `python run.py --sim`, `failover` several `run.py --role` processes killed
again and again (minutes); the e2e tests run those processes."""


@pytest.mark.timeout(180)
def test_every_group_runs_and_reports_finite_figures(tmp_path: Path) -> None:
    messages: list[str] = []
    results, crashes = run(TINY, tmp_path, IN_PROCESS_GROUPS, messages.append)

    assert crashes == 0, "\n".join(messages)
    assert {r.name for r in results} == EXPECTED
    out = tmp_path / "bench.json"
    write_json(out, results)
    records = json.loads(out.read_text())
    assert len(records) == len(EXPECTED)
    for record in records:
        assert {"name", "figure", "unit", "target", "baseline", "met"} <= record.keys()
        assert isinstance(record["figure"], float) and math.isfinite(record["figure"]), record
        assert isinstance(record["baseline"], float) and math.isfinite(record["baseline"]), record
        assert isinstance(record["met"], bool)
        assert record["unit"] and record["target"]
    assert records[0]["name"] in table(results)
    latency = [r for r in results if r.name.startswith("tick_latency_")]
    assert all(re.search(r"\d+ scanner passes so far", r.detail) for r in latency), latency[0].detail


def test_json_holds_no_nan_and_the_table_marks_misses(tmp_path: Path) -> None:
    missed = Result(name="x", figure=math.nan, unit="s", target="< 1", baseline=2.0, met=False)
    out = tmp_path / "one.json"
    write_json(out, [missed])

    assert json.loads(out.read_text())[0]["figure"] is None
    assert "NO" in table([missed]).splitlines()[-1]


def test_host_jitter_is_a_p99_over_median_ratio() -> None:
    jitter = host_jitter(0.2)
    assert math.isfinite(jitter) and jitter >= 1.0


def test_a_server_part_that_exits_before_it_is_ready_is_named_with_its_status() -> None:
    with pytest.raises(BenchError, match=r"\(--part nowhere\) exited with status 2 before it was ready"):
        ServerPart("--part", "nowhere")


def test_a_server_part_still_starting_when_the_wait_ends_is_ended_and_the_error_says_so() -> None:
    running = set(_children())
    with pytest.raises(BenchError, match=r"\(--part sim\) was not ready within 0.05 s: it starts in a few "
                                         r"seconds") as raised:
        ServerPart("--part", "sim", ready_timeout=0.05)

    assert "are the cores busy with other work?" in str(raised.value)
    assert set(_children()) <= running, "the part that was still starting was left running"


def _children() -> list[int]:
    """Processes this test process started that still exist (reaped ones are gone from /proc)."""
    pids: list[int] = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(pid) for pid in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue  # the thread ended between the listing and the read
    return pids
