"""The minute jobs' cost: real seconds per closed minute against the 60 s budget, and the tick path with
and without them.

    python -m tools.bench.minute_jobs [--symbols 41] [--minutes 4] [--speed 10]

Against the KIS simulator over loopback: `--symbols` streamed symbols reach a real `RecorderActor` through
the real connection actor, whose frames' arrival-to-journal latency is the tick path. A window without the
jobs is the baseline; then `MinuteJobsActor` runs the stock candles (one minute-bar call per streamed
symbol) and the derivatives job (three calls) for `--minutes` closed minutes through the rate-limited
client. Prints figures
only; the budget is the real market's minute (60 s), the simulated minute lasts 60/speed real seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import date
from datetime import time as clock_time
from pathlib import Path

from actors.directory import Directory
from actors.minute_jobs import MinuteJobsActor
from actors.recorder import RecorderActor
from actors.ws_connection import WSConnectionActor
from config.settings import PipelineSettings, Settings
from messages.streaming import SetSubscriptions
from runtime.latency import LatencyRecorder
from tools.bench.harness import ACCOUNT, Sink, Started, bench_context, timed, wait_for
from tools.bench.pipeline import P99_HIGH_MS
from tools.bench.report import Result
from tools.kis_sim.server import KisSimulator, SimConfig

STAGE = "record_written"
BUDGET_SECONDS = 60.0


def run(symbols: int, minutes: int, speed: float) -> dict[str, float | int]:
    config = SimConfig(seed=7, date=date(2024, 3, 4), start=clock_time(10, 0, 40), speed=speed, n_symbols=400)
    latency = LatencyRecorder()
    with tempfile.TemporaryDirectory(prefix="bench-minute-jobs-") as folder, KisSimulator(config) as sim:
        pipeline = PipelineSettings(stock_candles=True, derivatives=True, candle_check=False)
        context = bench_context(Path(folder), sim.clock, rest_url=sim.rest_url, ws_url=sim.ws_url,
                                settings=Settings(pipeline=pipeline))
        started = Started(Directory(sim.clock))
        for name in ("triggers", "gaps", "notifier", "slots", "minute_jobs"):
            started.start(name, Sink)
        started.start("recorder", timed(RecorderActor, STAGE, latency), context)
        connection = f"ws.{ACCOUNT}"
        started.start(connection, WSConnectionActor, context, ACCOUNT)
        streamed = tuple(sorted(sim.market.listings))[:symbols]
        subscribe = SetSubscriptions(at=sim.clock.now(), account=ACCOUNT, symbols=streamed)
        started.directory.tell(connection, subscribe)
        wait_for(lambda: latency.records(STAGE) > 0, 30.0, "the first ticks")
        window = minutes * 60.0 / speed
        try:
            latency.reset()
            time.sleep(window)
            idle = latency.summary(STAGE)
            started.stop_one("minute_jobs")
            started.start("minute_jobs", MinuteJobsActor, context)
            latency.reset()
            durations: list[float] = []
            seen = 0
            deadline = time.monotonic() + window * 3 + 30.0
            while len(durations) < minutes and time.monotonic() < deadline:
                runs = context.metrics.count("minute_job_runs")
                if runs > seen:
                    seen = runs
                    durations.append(float(context.metrics.snapshot()["minute_jobs_seconds"]))
                time.sleep(0.05)
            busy = latency.summary(STAGE)
        finally:
            started.stop()
    return {
        "minutes": len(durations),
        "job_seconds_mean": statistics.fmean(durations) if durations else float("nan"),
        "job_seconds_max": max(durations, default=float("nan")),
        "budget_share_max": max(durations, default=float("nan")) / BUDGET_SECONDS,
        "tick_p50_ms_without": idle.p50 * 1000, "tick_p99_ms_without": idle.p99 * 1000,
        "tick_p50_ms_with": busy.p50 * 1000, "tick_p99_ms_with": busy.p99 * 1000,
    }


def results(symbols: int = 41, minutes: int = 4, speed: float = 10.0) -> list[Result]:
    """The figures for `python -m tools.bench --only minute_jobs`."""
    figures = run(symbols, minutes, speed)
    seconds = float(figures["job_seconds_max"])
    p99, idle = float(figures["tick_p99_ms_with"]), float(figures["tick_p99_ms_without"])
    where = f"{symbols} streamed symbols at {speed:g}x, {figures['minutes']} minutes"
    return [
        Result(name="minute_jobs_seconds_per_minute", figure=seconds, unit="s",
               target=f"< {BUDGET_SECONDS:g}", baseline=60.0 / speed, met=seconds < BUDGET_SECONDS,
               detail=f"the slowest minute; mean {figures['job_seconds_mean']:.2f} s; baseline: the real "
                      f"length of a simulated minute, which the jobs must fit to keep up; {where}"),
        Result(name="minute_jobs_tick_latency_p99_record_written", figure=p99, unit="ms",
               target=f"<= {P99_HIGH_MS:g}", baseline=idle, met=p99 <= P99_HIGH_MS,
               detail=f"p50 {figures['tick_p50_ms_with']:.2f} ms; baseline: the same feed without the jobs; "
                      f"{where}"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.minute_jobs", description=__doc__)
    parser.add_argument("--symbols", type=int, default=41)
    parser.add_argument("--minutes", type=int, default=4)
    parser.add_argument("--speed", type=float, default=10.0)
    args = parser.parse_args()
    for name, value in run(args.symbols, args.minutes, args.speed).items():
        print(f"{name:>22}: {value:.3f}" if isinstance(value, float) else f"{name:>22}: {value}")


if __name__ == "__main__":
    main()
