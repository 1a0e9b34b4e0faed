"""The benchmarks' server side, one child process per part: the KIS simulator (REST + WebSocket) or the
frame blaster.

A real KIS server does not share the observer's CPU or interpreter lock, so neither should the servers
here, nor each other's: in one process, the simulator answering a scan call held the lock the blaster
needed to send its frames. They still share the machine's cores, so the figures are pessimistic. The
child prints one READY line (JSON: its
URLs; the simulator's universe or the blaster's symbols, with their daily facts) and then answers one
JSON line per command read from stdin:

    {"cmd": "blast", "rate": 20000, "records_per_frame": 24}   -> {"ok": true}          (blaster)
    {"cmd": "status"}                                            -> {"records": ..., ...} (blaster)
    {"cmd": "disconnect"}                                        -> {"ok": true}  (abort blaster sessions)
    {"cmd": "drop"}                                              -> {"ok": true}  (drop every sim session)
    {"cmd": "quit"}                                              -> {"ok": true}, then exit

    python -m tools.bench.server --part sim|blaster [--start 10:00] [--speed 1] [--trade-rate 2]
        [--n-symbols 1200]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from datetime import date, datetime, time
from typing import Any

from loguru import logger

from runtime.clock import KST
from tools.bench.blaster import FrameBlaster, FrameBook
from tools.kis_sim.market import Market
from tools.kis_sim.server import KisSimulator, SimConfig

BENCH_DATE = date(2024, 3, 4)  # a Monday, a KRX trading day
SEED = 11
BENCH_START = datetime.combine(BENCH_DATE, time(10, 0), tzinfo=KST)
BLAST_SYMBOLS = 41
UNIVERSE = 1000
BLAST_TRADE_RATE = 20.0  # trades/s per symbol in the pre-built frames
BLAST_STRETCH_SECONDS = 60.0


def _hhmm(text: str) -> time:
    return time.fromisoformat(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.server", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--start", type=_hhmm, default=time(10, 0), help="simulated start HH:MM (10:00)")
    parser.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second (1)")
    parser.add_argument("--trade-rate", type=float, default=2.0, help="sim trades/s per symbol (2)")
    parser.add_argument("--n-symbols", type=int, default=1200, help="listed symbols (1200)")
    parser.add_argument("--part", choices=("sim", "blaster"), required=True, help="which server to run")
    args = parser.parse_args(argv)
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    if args.part == "blaster":
        return _run_blaster(args.n_symbols)
    config = SimConfig(seed=SEED, date=BENCH_DATE, start=args.start, speed=args.speed,
                       n_symbols=args.n_symbols, trade_rate=args.trade_rate, feed_interval=0.01,
                       pingpong_interval=10.0)
    with KisSimulator(config) as sim:
        symbols = _largest(sim.market)
        _reply({"rest_url": sim.rest_url, "ws_url": sim.ws_url,
                "universe": [_facts(sim.market, code) for code in symbols[:UNIVERSE]]}, prefix="READY ")
        for command in _commands():
            if command.get("cmd") == "drop":
                sim.faults.drop_sessions()
                _reply({"ok": True})
            elif not _served_common(command):
                break
    return 0


def _run_blaster(n_symbols: int) -> int:
    """Frames of the simulator's largest symbols (the same listings as `--part sim` with this seed)."""
    market = Market(seed=SEED, trading_date=BENCH_DATE, n_symbols=n_symbols, trade_rate=BLAST_TRADE_RATE)
    symbols = _largest(market)[:BLAST_SYMBOLS]
    blaster = FrameBlaster(FrameBook(market, symbols, BENCH_START, BLAST_STRETCH_SECONDS)).start()
    try:
        _reply({"blaster_url": blaster.url, "blast_symbols": [_facts(market, code) for code in symbols]},
               prefix="READY ")
        for command in _commands():
            name = command.get("cmd")
            if name == "blast":
                blaster.blast(float(command["rate"]), int(command.get("records_per_frame", 1)))
                _reply({"ok": True})
            elif name == "status":
                _reply(blaster.status())
            elif name == "disconnect":
                blaster.disconnect()
                _reply({"ok": True})
            elif not _served_common(command):
                break
    finally:
        blaster.stop()
    return 0


def _largest(market: Market) -> list[str]:
    return sorted(market.listings, key=lambda code: -market.listings[code].market_cap)


def _commands() -> Iterator[dict[str, Any]]:
    for line in sys.stdin:
        if line.strip():
            yield json.loads(line)


def _served_common(command: dict[str, Any]) -> bool:
    """`quit` (False: end), or an unknown command's error."""
    name = command.get("cmd")
    if name == "quit":
        _reply({"ok": True})
        return False
    _reply({"error": f"unknown command {name!r}"})
    return True


def _facts(market: Market, code: str) -> dict[str, Any]:
    listing = market.listings[code]
    return {"symbol": code, "name": listing.name, "market": listing.market,
            "market_cap": listing.market_cap * 100_000_000, "prev_close": listing.prev_close,
            "avg_volume_20d": listing.avg_volume_20d, "atr_14d": listing.atr_14}


def _reply(payload: dict[str, Any], prefix: str = "") -> None:
    sys.stdout.write(prefix + json.dumps(payload) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
