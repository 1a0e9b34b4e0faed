"""Memory over a simulated trading day: RSS of the observer's actors at the start and after 09:00-15:30 at
high speed, measured in a process of its own so the start figure is the actors' and not what the benchmarks
before it left behind:

    python -m tools.bench.memory --root DIR --speed 195 --trade-rate 1    (prints the Result as one JSON line)

The simulator's clock runs the session at `speed` x; a `WSConnectionActor` streams 41 symbols from its
feed into the real recorder, trigger and gap actors, and the real ScannerActor scans the 1,000-symbol
universe every 10 simulated minutes (its ScanCompleted to the recorder and the trigger actor, its context
sync at 09:30).
RSS is read from /proc/self/status; the start figure is taken once the first simulated minutes have
streamed (files opened, windows filled), so the growth is what a day adds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from actors.directory import Directory
from actors.gap_recovery import GapRecoveryActor
from actors.notifier import NotifierActor
from actors.recorder import RecorderActor
from actors.scanner import ScannerActor
from actors.triggers import TriggerActor
from actors.ws_connection import WSConnectionActor
from messages.streaming import SetSubscriptions
from runtime.clock import SimulatedClock
from runtime.logs import reset_logging, setup_logging
from tools.bench.harness import (
    ACCOUNT,
    BenchError,
    BenchServer,
    Sink,
    Started,
    bench_context,
    universe_message,
    wait_for,
)
from tools.bench.report import Result
from tools.bench.server import BENCH_START

SESSION_SECONDS = 6.5 * 3600
GROWTH_LIMIT_MB = 20.0
WARMUP_SHARE = 0.03
LOGGED_ACTORS = ("recorder", "notifier", "triggers", "slots", "universe", "gaps", f"ws.{ACCOUNT}", "scanner")


def rss_mb() -> float:
    """Resident set size (VmRSS) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def simulated_day_in_child(root: Path, *, speed: float, trade_rate: float) -> Result:
    """`simulated_day` in a fresh interpreter (`python -m tools.bench.memory`)."""
    command = [sys.executable, "-m", "tools.bench.memory", "--root", str(root), "--speed", str(speed),
               "--trade-rate", str(trade_rate)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=False)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"the memory benchmark's process ended with {done.returncode} (its stderr is above)")
    return Result.from_json(json.loads(lines[-1]))


def simulated_day(root: Path, *, speed: float, trade_rate: float) -> Result:
    args = ("--start", "09:00", "--speed", str(speed), "--trade-rate", str(trade_rate))
    with BenchServer(*args) as server:
        began = time.monotonic()
        clock = SimulatedClock(BENCH_START.replace(hour=9), speed=speed)
        context = bench_context(root, clock, rest_url=server.rest_url, ws_url=server.ws_url)
        facts = server.info["blast_symbols"]
        actors = Started(Directory(clock))
        try:
            actors.start("recorder", RecorderActor, context)
            actors.start("notifier", NotifierActor, context)
            actors.start("triggers", TriggerActor, context)
            actors.start("slots", Sink)
            actors.start("universe", Sink)
            actors.start("gaps", GapRecoveryActor, context)
            actors.start(f"ws.{ACCOUNT}", WSConnectionActor, context, ACCOUNT)
            ready = universe_message(clock, facts)
            actors.directory.tell("recorder", ready)
            actors.directory.tell("triggers", ready)
            actors.directory.tell(f"ws.{ACCOUNT}", SetSubscriptions(
                at=clock.now(), account=ACCOUNT, symbols=tuple(f["symbol"] for f in facts)))
            actors.start("scanner", ScannerActor, context)
            actors.directory.tell("scanner", universe_message(clock, server.info["universe"]))
            day = SESSION_SECONDS / speed
            time.sleep(max(0.0, began + day * WARMUP_SHARE - time.monotonic()))
            start_rss = rss_mb()
            ticks_at_start = context.metrics.count("ticks_recorded")
            time.sleep(max(0.0, began + day - time.monotonic()))
            actors.stop_one("scanner")
            wait_for(lambda: actors.mailbox_depth() == 0, 60.0, "the actors to drain", pause=0.05)
            end_rss = rss_mb()
            ticks = context.metrics.count("ticks_recorded") - ticks_at_start
        finally:
            actors.stop()
    growth = end_rss - start_rss
    return Result(
        name="memory_growth_simulated_day", figure=growth, unit="MB", target=f"< {GROWTH_LIMIT_MB:g}",
        baseline=start_rss, met=growth < GROWTH_LIMIT_MB,
        detail=f"RSS {start_rss:.1f} -> {end_rss:.1f} MB over 09:00-15:30 at {speed:g}x ({day:.0f} s): "
               f"{ticks:,} ticks recorded, {context.metrics.count('scans')} Track A scans; "
               f"baseline: RSS at the start (MB), in a process of its own",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="folder for the day's data and state")
    parser.add_argument("--speed", type=float, required=True, help="simulated seconds per second")
    parser.add_argument("--trade-rate", type=float, required=True, help="sim trades/s per symbol")
    args = parser.parse_args(argv)
    setup_logging(args.root / "logs", LOGGED_ACTORS, retention_days=1, console_level="ERROR")
    try:
        result = simulated_day(args.root, speed=args.speed, trade_rate=args.trade_rate)
    finally:
        reset_logging()
    print(json.dumps(result.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
