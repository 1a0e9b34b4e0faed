"""Timing of the simulator's hot paths (CPU time, best of several rounds; no servers, no sockets):

    python -m tools.kis_sim.bench_hot [--symbols 40] [--rounds 5]

- tick generation: `_build_ticks` per symbol-minute (one symbol's trades of one minute);
- the feed's market work: `Market.trades` asked in 50 ms steps through one minute, as the WebSocket feed
  asks (building that minute's ticks included), per trade;
- frame text: `TradeFormatter.record` + `data_frames` per record.

Each at the default trade rate (2/s per symbol) and at the feed benchmark's (45/s).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from datetime import time as dtime

from runtime.clock import KST
from tools.kis_sim.frames import TradeFormatter, data_frames
from tools.kis_sim.market import Market, _build_ticks

DAY = date(2024, 3, 4)
FEED_STEP = timedelta(milliseconds=50)


def _best(run: Callable[[Market], int], rounds: int, prepare: Callable[[], Market]) -> float:
    """Least CPU seconds per item over `rounds` runs of `run` (which returns its item count); what
    `prepare` makes for each run is not timed."""
    best = float("inf")
    for _ in range(rounds):
        market = prepare()
        started = time.process_time()
        items = run(market)
        best = min(best, (time.process_time() - started) / max(1, items))
    return best


def measure(rate: float, symbols: int, rounds: int) -> dict[str, float]:
    market = Market(seed=3, trading_date=DAY, n_symbols=max(200, symbols), trade_rate=rate)
    codes = [code for code, listing in sorted(market.listings.items()) if not listing.halted][:symbols]
    paths = [market._path(code, 389) for code in codes]
    minutes = [(path, minute) for path in paths for minute in range(60, 90) if path.counts[minute]]

    def build(_: Market) -> int:
        for path, minute in minutes:
            _build_ticks(market.seed, market.trading_date, path, minute)
        return len(minutes)

    start = datetime.combine(DAY, dtime(10, 30), tzinfo=KST)
    steps = int(60 / FEED_STEP.total_seconds())  # one minute: each symbol-minute built once, then stepped

    def fresh() -> Market:
        """A market whose minute walks exist but whose ticks were never built or cached."""
        new = Market(seed=3, trading_date=DAY, n_symbols=max(200, symbols), trade_rate=rate)
        for code in codes:
            new._path(code, 389)
        return new

    def feed(fresh: Market) -> int:
        count = 0
        for step in range(steps):
            begin = start + step * FEED_STEP
            for code in codes:
                count += len(fresh.trades(code, begin, begin + FEED_STEP))
        return count

    trades = [market.trades(code, start, start + timedelta(seconds=30)) for code in codes]

    def records(_: Market) -> int:
        formatter = TradeFormatter(market.listings)
        for batch in trades:
            data_frames("H0STCNT0", [formatter.record(trade) for trade in batch])
        return sum(map(len, trades))

    return {
        "trade_rate_per_symbol": rate,
        "build_ticks_us_per_symbol_minute": round(_best(build, rounds, lambda: market) * 1e6, 1),
        "ticks_per_symbol_minute": round(sum(path.counts[m] for path, m in minutes) / len(minutes), 1),
        "feed_trades_us_per_trade": round(_best(feed, max(1, rounds // 2), fresh) * 1e6, 2),
        "record_and_frame_us_per_record": round(_best(records, rounds, lambda: market) * 1e6, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kis_sim.bench_hot", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--symbols", type=int, default=40, help="symbols measured (default 40)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the best counts (default 5)")
    args = parser.parse_args(argv)
    for rate in (2.0, 45.0):
        print(json.dumps(measure(rate, args.symbols, args.rounds)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
