"""The scan ratio's floor: Track A passes made back to back by another process at the lowest CPU priority,
with nothing of them in the observer's process.

    python -m tools.bench.scan_elsewhere REST_URL ROOT INTERVAL SYMBOL...

The tick path's p99 meanwhile, against idle, is what the machine's cores cost it with a scan's calls on them
(the simulator answering, the JSON parsed, the rows built); the in-process scan's ratio beyond it is the
observer's own share. A pass starts INTERVAL seconds after the last began (at once if it took longer), as
the benchmark's scanner does. The process prints READY once its client is built, then scans until killed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from loguru import logger

from kis.fetch_worker import lower_priority
from runtime.clock import SimulatedClock
from tools.bench.harness import ACCOUNT, bench_context
from tools.bench.server import BENCH_START


def scan_forever(rest_url: str, root: Path, interval: float, symbols: list[str]) -> None:
    lower_priority()
    logger.remove()
    context = bench_context(root, SimulatedClock(BENCH_START, speed=1.0), rest_url=rest_url, ws_url=None)
    with context.rest_client(ACCOUNT) as client:
        print("READY", flush=True)
        while True:
            began = time.monotonic()
            client.multi_quotes(symbols)
            time.sleep(max(0.0, interval - (time.monotonic() - began)))


if __name__ == "__main__":
    scan_forever(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3]), sys.argv[4:])
