"""Universe scan: the real `ScannerActor` passing over 1,000 symbols with the batch quote call.

The scanner's worker calls `multi_quote_batch` (30 symbols) through the account's per-key limiter against
the simulator, which enforces 20 requests/s per key like the gateway. The figure is the pass's own
`ScanCompleted.duration_seconds`; the floor is ceil(1000/30) calls at 20/s. The baseline is one `quote`
call per symbol through the same client code, timed on a sample and scaled to 1,000.

The simulator computes a symbol's day on first touch, which a real server does not make the client wait
for; a warm-up pass (not timed) comes first. The detail gives the CPU the first pass cost per call, and the
CPU a pass costs once passes run back to back (the steady state).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from actors.directory import Directory
from actors.scanner import ScannerActor
from config.settings import ScanSettings, Settings
from messages.market import ScanCompleted
from runtime.clock import SimulatedClock
from tools.bench.harness import (
    ACCOUNT,
    BenchServer,
    Sink,
    Started,
    bench_context,
    universe_message,
    wait_for,
    warm_up,
)
from tools.bench.report import Result
from tools.bench.server import BENCH_START, UNIVERSE

BATCH = 30
RATE = 20.0
TOLERANCE = 0.10
STEADY_PASSES = 3
"""Passes after the first, back to back, over which the steady CPU per pass is taken (the first pays for
its imports and caches)."""
PEERS = ("notifier", "universe", "triggers", "slots")


class ScanJournal(Sink):
    """Stands in for the recorder: keeps each ScanCompleted it is told."""

    def __init__(self, name: str, directory: Directory, passes: list[ScanCompleted]) -> None:
        super().__init__(name, directory)
        self._passes = passes

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ScanCompleted):
            self._passes.append(message)
        return None


def universe_scan(server: BenchServer, root: Path, *, per_symbol_sample: int) -> list[Result]:
    warm_up(server, root / "warm")
    clock = SimulatedClock(BENCH_START, speed=1.0)
    settings = Settings().model_copy(update={"scan": ScanSettings(interval_seconds=1.0)})  # back to back
    context = bench_context(root, clock, rest_url=server.rest_url, ws_url=None, settings=settings)
    with context.rest_client(ACCOUNT) as client:
        client.multi_quote_batch(server.universe[:BATCH])  # the token, outside the timing
        time.sleep(1.5)  # an idle key, as at the start of a scan interval
        started = time.monotonic()
        for symbol in server.universe[:per_symbol_sample]:
            client.quote(symbol)
        per_symbol = (time.monotonic() - started) / per_symbol_sample * UNIVERSE
    passes: list[ScanCompleted] = []
    actors = Started(Directory(clock))
    try:
        for peer in PEERS:
            actors.start(peer, Sink)
        actors.start("recorder", ScanJournal, passes)
        actors.start("scanner", ScannerActor, context)
        time.sleep(1.5)  # an idle key
        cpu_before = time.process_time()
        actors.directory.tell("scanner", universe_message(clock, server.info["universe"]))
        wait_for(lambda: bool(passes), 60.0, "the scanner's pass", pause=0.01)
        steady_from = time.process_time(), len(passes)
        calls = max(passes[0].calls, 1)
        cpu_per_call = (steady_from[0] - cpu_before) / calls
        wait_for(lambda: len(passes) >= steady_from[1] + STEADY_PASSES, 60.0, "the passes after the first",
                 pause=0.1)  # this thread's polls count in the process's CPU too
        cpu_per_pass = (time.process_time() - steady_from[0]) / (len(passes) - steady_from[1])
    finally:
        actors.stop()
    scan = passes[0]
    floor = math.ceil(UNIVERSE / BATCH) / RATE
    limit = floor * (1 + TOLERANCE)
    wall = scan.duration_seconds
    return [
        Result(name="universe_scan_wall_time", figure=wall, unit="s",
               target=f"<= {limit:.2f} (floor {floor:.2f})",
               baseline=per_symbol, met=wall <= limit and scan.failed_calls == 0,
               detail=f"ScannerActor pass: {scan.calls} calls ({scan.failed_calls} failed), "
                      f"{len(scan.rows)} rows, CPU per call {cpu_per_call * 1000:.2f} ms; the passes after "
                      f"it, back to back: {cpu_per_pass * 1000:.1f} ms CPU a pass in this process (the "
                      f"scanner; the recorder and trigger actor are sinks here); "
                      f"{wall / floor:.3f} x the floor; baseline: one call per symbol, {per_symbol_sample} "
                      f"timed and scaled to {UNIVERSE} (s)"),
        Result(name="universe_scan_calls", figure=float(scan.calls), unit="calls",
               target=f"= {math.ceil(UNIVERSE / BATCH)}", baseline=float(UNIVERSE),
               met=scan.calls == math.ceil(UNIVERSE / BATCH), detail="baseline: one call per symbol"),
    ]
