"""Benchmarks of DESIGN.md section 8 against the KIS simulator over loopback, in one run.

    python -m tools.bench [--quick] [--json FILE] [--only GROUP ...]

Prints a table (figure, target, a baseline measured in the same run, met) and writes the same as JSON:
a list of objects with `name`, `figure`, `unit`, `target`, `baseline`, `met` and `detail`. The exit
status is non-zero only when a benchmark crashed, never because a figure missed its target. `--quick`
uses shorter windows and fewer repetitions (about 3 minutes, plus several for `failover`); the published
figures come from a full run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runtime.logs import reset_logging, setup_logging
from tools.bench import (
    decisions,
    failover,
    memory,
    minute_jobs,
    pipeline,
    processes,
    reconnect,
    scan,
    spine,
    store,
)
from tools.bench.harness import BenchServer
from tools.bench.report import Result, host_jitter, machine, steal_seconds, table, write_json

GROUPS = ("pipeline", "latency", "scan", "reconnect", "gaps", "core", "memory", "spine", "fanout", "store",
          "minute_jobs", "processes", "failover", "scaling")
PROCESS_RUN_SPEED = 10.0
"""Simulated seconds per second of the `processes` group's run (about 2,000 ticks/s at one account)."""
LOGGED_ACTORS = ("recorder", "notifier", "triggers", "slots", "gaps", "ws.bench")


@dataclass(frozen=True, slots=True)
class Plan:
    """Window lengths and repetitions of one run."""

    throughput_window: float
    max_rate: float
    latency_window: float
    per_symbol_sample: int
    drops: int
    gaps: int
    core_runs: int
    day_speed: float
    day_trade_rate: float
    allocation_runs: int = 200
    latency_rounds: int = 1
    parse_seconds: float = 1.0
    spine_ticks: int = 100_000
    store_ticks: int = 100_000
    store_lag_seconds: float = 10.0
    minute_job_minutes: int = 4
    fanout_ticks: int = 100_000
    fanout_latency_seconds: float = 10.0
    process_window: float = 60.0
    """Real seconds of the `processes` group's run measured once ticks flow (its start comes before); 30 in
    the quick run, since an 8 s window was mostly the first scan and the slots filling."""
    control_kills: int = 10
    worker_kills: int = 5
    scaling_accounts: tuple[int, ...] = (1, 2, 3, 5, 10)
    scaling_ticks: int = 100_000
    scaling_allocation_runs: int = 250


FULL = Plan(throughput_window=5.0, max_rate=120_000, latency_window=6.0, per_symbol_sample=100, drops=20,
            gaps=20, core_runs=100, day_speed=195.0, day_trade_rate=1.0, allocation_runs=1000,
            latency_rounds=5)
QUICK = Plan(throughput_window=1.5, max_rate=20_000, latency_window=2.5, per_symbol_sample=30, drops=8,
             gaps=8, core_runs=20, day_speed=2340.0, day_trade_rate=0.125, allocation_runs=100,
             parse_seconds=0.5, spine_ticks=20_000, store_ticks=20_000, store_lag_seconds=3.0,
             minute_job_minutes=2, fanout_ticks=20_000, fanout_latency_seconds=2.0, process_window=30.0,
             control_kills=5, worker_kills=3, scaling_accounts=(1, 2, 5, 10), scaling_ticks=20_000,
             scaling_allocation_runs=25)


def run(
    plan: Plan, root: Path, groups: tuple[str, ...], say: Callable[[str], None]
) -> tuple[list[Result], int]:
    """Every selected group; a group that raises is reported and counted, the others still run."""
    results: list[Result] = []
    crashes = 0

    def attempt(group: str, body: Callable[[], list[Result]]) -> None:
        nonlocal crashes
        if group not in groups:
            return
        started = time.monotonic()
        say(f"[bench] {group} ...")
        try:
            produced = body()
        except Exception:
            crashes += 1
            say(f"[bench] {group} CRASHED:\n{traceback.format_exc()}")
            return
        results.extend(produced)
        say(f"[bench] {group} done in {time.monotonic() - started:.1f} s")

    server_needed = set(groups) & {"pipeline", "latency", "scan", "reconnect", "gaps"}
    server = BenchServer() if server_needed else None
    try:
        if server is not None:
            _run_with_server(plan, root, server, attempt)
        attempt("core", lambda: [decisions.allocation(runs=plan.allocation_runs),
                                 decisions.context_sync(runs=max(3, plan.core_runs // 10))])
    finally:
        if server is not None:
            server.close()
    attempt("memory", lambda: [memory.simulated_day_in_child(root / "day", speed=plan.day_speed,
                                                    trade_rate=plan.day_trade_rate)])
    attempt("spine", lambda: spine.throughput(root / "spine", ticks=plan.spine_ticks))
    attempt("fanout", lambda: spine.fanout(root / "fanout", ticks=plan.fanout_ticks,
                                           latency_seconds=plan.fanout_latency_seconds))
    attempt("store", lambda: store.store_figures(root / "store", ticks=plan.store_ticks,
                                                 lag_seconds=plan.store_lag_seconds))
    attempt("minute_jobs", lambda: minute_jobs.results(minutes=plan.minute_job_minutes))
    attempt("processes", lambda: processes.measure(root / "processes", speed=PROCESS_RUN_SPEED,
                                                   window=plan.process_window))
    attempt("scaling", lambda: failover.scaling(root / "scaling", accounts=plan.scaling_accounts,
                                                ticks=plan.scaling_ticks,
                                                allocation_runs=plan.scaling_allocation_runs))
    attempt("failover", lambda: failover.failover(root / "failover", control_kills=plan.control_kills,
                                                  worker_kills=plan.worker_kills))
    return results, crashes


def _run_with_server(plan: Plan, root: Path, server: BenchServer, attempt: Callable[..., None]) -> None:
    line: list[pipeline.Pipeline] = []

    def tick_path() -> pipeline.Pipeline:
        """One set of tick-path actors for the throughput and latency groups, started on first use."""
        if not line:
            line.append(pipeline.Pipeline(root / "pipeline", server))
        return line[0]

    def throughputs() -> list[Result]:
        """Both framings; the bare receive loop is measured first, while no actor is subscribed."""
        ceiling = pipeline.receive_ceiling(server, seconds=plan.throughput_window, rate=plan.max_rate)
        return [
            pipeline.throughput(tick_path(), window=plan.throughput_window, max_rate=plan.max_rate,
                                parse_rates=pipeline.parse_baseline(tick_path(), seconds=plan.parse_seconds)),
            pipeline.throughput(tick_path(), window=plan.throughput_window, max_rate=plan.max_rate,
                                parse_rates=pipeline.parse_baseline(tick_path(), seconds=plan.parse_seconds,
                                                                  frame_records=1) | {"receive": ceiling},
                                frame_records=1),
        ]

    try:
        attempt("pipeline", throughputs)
        attempt("latency", lambda: pipeline.latency_results(tick_path(), plan.latency_window,
                                                                          plan.latency_rounds))
    finally:
        if line:
            line[0].stop()
    attempt("scan", lambda: scan.universe_scan(server, root / "scan",
                                               per_symbol_sample=plan.per_symbol_sample))
    attempt("reconnect", lambda: [reconnect.reconnects(server, root / "reconnect", drops=plan.drops)])
    attempt("gaps", lambda: decisions.gap_latencies(server, root / "gaps", gaps=plan.gaps))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short windows, fewer repetitions (~3 min)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write the results here")
    parser.add_argument("--only", nargs="+", choices=GROUPS, default=list(GROUPS), metavar="GROUP",
                        help=f"run only these groups ({', '.join(GROUPS)})")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    facts = machine()
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    say(f"[bench] {'quick' if args.quick else 'full'} run on {facts['nproc']} cores, {facts['cpu']}, "
        f"Python {facts['python']}")
    jitter_before = host_jitter()
    started, stolen = time.monotonic(), steal_seconds()
    with tempfile.TemporaryDirectory(prefix="observer-bench-") as scratch:
        root = Path(scratch)
        setup_logging(root / "logs", LOGGED_ACTORS, retention_days=1, console_level="ERROR")
        try:
            results, crashes = run(plan, root, tuple(args.only), say)
        finally:
            reset_logging()
    elapsed, stolen = time.monotonic() - started, steal_seconds() - stolen
    jitter_after = host_jitter()
    print(table(results))
    met = sum(r.met for r in results)
    share = stolen / (elapsed * int(facts["nproc"]))
    print(f"\n{met}/{len(results)} targets met in {elapsed:.0f} s; "
          f"{facts['nproc']} cores, {facts['cpu']}, Python {facts['python']}; "
          f"the host stole {stolen:.1f} s of CPU ({share:.1%} of the cores' time; above a few % the "
          f"figures are not a quiet machine's); host jitter (p99 / median of a fixed 0.1 ms job) "
          f"{jitter_before:.2f}x before the run and {jitter_after:.2f}x after it (well above 1.1x, latency "
          f"p99s are the host's as much as ours)")
    if args.json is not None:
        write_json(args.json, results)
    if crashes:
        print(f"{crashes} benchmark group(s) crashed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
