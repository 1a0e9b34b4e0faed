"""Universe scan: 1,000 symbols over REST with the batch quote call, inside the key's rate limit.

`KisRestClient.iter_multi_quote_batches` against the simulator (which enforces 20 requests/s per key like
the gateway), through the client's own per-key limiter. The floor is ceil(1000/30) calls at 20/s; the
baseline is one `quote` call per symbol, timed on a sample and scaled to 1,000.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from runtime.clock import SimulatedClock
from tools.bench.harness import ACCOUNT, BenchServer, bench_context
from tools.bench.report import Result
from tools.bench.server import BENCH_START

UNIVERSE = 1000
BATCH = 30
RATE = 20.0
TOLERANCE = 0.10


def universe_scan(server: BenchServer, root: Path, *, per_symbol_sample: int) -> list[Result]:
    context = bench_context(root, SimulatedClock(BENCH_START, speed=1.0), rest_url=server.rest_url, ws_url=None)
    symbols = list(server.info["universe"][:UNIVERSE])
    if len(symbols) < UNIVERSE:
        raise RuntimeError(f"the bench server lists {len(symbols)} symbols, fewer than {UNIVERSE}")
    floor = math.ceil(UNIVERSE / BATCH) / RATE
    with context.rest_client(ACCOUNT) as client:
        client.multi_quote_batch(symbols[:BATCH])  # the token, outside the timing
        time.sleep(1.5)  # an idle key, as at the start of a scan interval
        calls = rows = 0
        started = time.monotonic()
        for batch in client.iter_multi_quote_batches(symbols):
            calls += 1
            rows += len(batch)
        wall = time.monotonic() - started
        time.sleep(1.5)
        started = time.monotonic()
        for symbol in symbols[:per_symbol_sample]:
            client.quote(symbol)
        per_symbol = (time.monotonic() - started) / per_symbol_sample * UNIVERSE
    limit = floor * (1 + TOLERANCE)
    return [
        Result(name="universe_scan_wall_time", figure=wall, unit="s", target=f"<= {limit:.2f} (floor {floor:.2f})",
               baseline=per_symbol, met=wall <= limit,
               detail=f"{calls} calls, {rows} rows; {wall / floor:.3f} x the floor; baseline: one call per "
                      f"symbol, {per_symbol_sample} timed and scaled to {UNIVERSE}"),
        Result(name="universe_scan_calls", figure=float(calls), unit="calls",
               target=f"= {math.ceil(UNIVERSE / BATCH)}", baseline=float(UNIVERSE),
               met=calls == math.ceil(UNIVERSE / BATCH), detail="baseline: one call per symbol"),
    ]
