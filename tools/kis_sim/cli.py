"""Command line of the standalone simulator: flags -> SimConfig, the `--faults` mini-language, READY line."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time as time_module
from collections.abc import Sequence
from datetime import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from runtime.arguments import clock_time, non_negative_number, positive_number, trading_date
from runtime.clock import Clock
from tools.kis_sim.faults import FaultSpecError, parse_faults
from tools.kis_sim.scenario import ScenarioError

if TYPE_CHECKING:
    from tools.kis_sim.server import SimConfig

FAULTS_HELP = """\
comma-separated faults, armed once the servers listen:
  drop               drop every WebSocket session now
  drop_every=S       drop each WebSocket session after S seconds of life
  refuse=S           refuse WebSocket (re)connects for S seconds
  malformed=N        garble the next N data frames
  truncated=N        cut the next N data frames short
  silence=S          no data frames and no PINGPONG for S seconds
  rate_limit=S       every REST call answers EGW00201 for S seconds
  expire_tokens      every access token issued so far has expired
  slow_rest=D:S      delay REST answers by D seconds for S seconds
  html=N             answer the next N /uapi calls with an HTML error page (HTTP 502)
  empty=N            answer the next N /uapi calls with HTTP 200 and an empty body
durations are real (wall) seconds; e.g. --faults drop_every=30,malformed=5,refuse=10"""


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535, got {text!r}")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"expected a whole number > 0, got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kis_sim",
        description=(
            "KIS Open API simulator on loopback: REST (tokens, approval keys, quotes, bars) and the "
            "real-time WebSocket (subscribe/ack, PINGPONG, H0STCNT0/H0STASP0 frames, encrypted "
            "H0STCNI0 notices). Prints one line 'READY rest=<url> ws=<url>' once it serves; "
            "stops cleanly on SIGINT/SIGTERM."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--faults syntax:\n" + FAULTS_HELP,
    )
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    add("--rest-port", type=_port, default=0, help="REST port; 0 picks a free one (default)")
    add("--ws-port", type=_port, default=0, help="WebSocket port; 0 picks a free one (default)")
    add("--seed", type=int, default=1, help="market model seed (default 1)")
    add("--date", type=trading_date, default=None, help="simulated trading date YYYYMMDD (default: today)")
    add("--start", type=clock_time, default=time(9, 0), help="simulated start HH:MM[:SS] (default 09:00)")
    add("--speed", type=non_negative_number, default=1.0,
        help="simulated seconds per real second (default 1; 0 stops the clock)")
    add("--wall-clock", action="store_true",
        help="follow the real KST wall clock (ignores --date, --start, --speed)")
    add("--scenario", type=Path, default=None, help="JSON file of scheduled market events (surges, halts)")
    add("--sent-log", type=Path, default=None,
        help="append every trade record sent over the WebSocket to this JSONL file")
    add("--n-symbols", type=_whole, default=1200, help="listed symbols to simulate (default 1200)")
    add("--trade-rate", type=positive_number, default=2.0,
        help="average trades per second per symbol, before intraday shape and scenario (default 2)")
    add("--pingpong-interval", type=positive_number, default=10.0,
        help="real seconds between PINGPONG heartbeats (default 10)")
    add("--require-pong", action="store_true",
        help="close a WebSocket session that answers a PINGPONG neither by echoing it nor with a pong "
             "frame carrying it within --pong-timeout seconds, like real KIS (default off)")
    add("--pong-timeout", type=positive_number, default=100.0,
        help="seconds a PINGPONG may stay unechoed with --require-pong (default 100)")
    add("--print-clock", action="store_true",
        help="after READY, print 'CLOCK <simulated ISO time> <wall epoch seconds>' (for observer processes)")
    add("--faults", default="", metavar="SPEC", help="faults to arm once serving (syntax below)")
    return parser


def config_from_args(args: argparse.Namespace) -> SimConfig:
    from tools.kis_sim.server import SimConfig

    return SimConfig(
        seed=args.seed,
        date=args.date,
        start=args.start,
        speed=args.speed,
        wall_clock=args.wall_clock,
        scenario=args.scenario,
        sent_log=args.sent_log,
        n_symbols=args.n_symbols,
        trade_rate=args.trade_rate,
        pingpong_interval=args.pingpong_interval,
        host=args.host,
        rest_port=args.rest_port,
        ws_port=args.ws_port,
        require_pong_echo=args.require_pong,
        pong_timeout=args.pong_timeout,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM; exit 0 then, 2 on bad flags or files, 1 if it cannot serve."""
    args = build_parser().parse_args(argv)
    try:
        fault_actions = parse_faults(args.faults)
    except FaultSpecError as exc:
        return _fail(f"--faults: {exc}", 2)
    stop_requested = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    # Imported here so that --help and flag errors answer at once, without loading the market model.
    from tools.kis_sim.server import KisSimulator

    try:
        simulator = KisSimulator(config_from_args(args))
    except (ScenarioError, OSError, ValueError) as exc:
        return _fail(str(exc), 2)
    try:
        simulator.start()
    except (OSError, RuntimeError) as exc:
        return _fail(str(exc), 1)
    try:
        for action in fault_actions:
            action(simulator.faults)
        print(simulator.ready_line(), flush=True)
        if args.print_clock:
            print(clock_line(simulator.clock), flush=True)
        while not stop_requested.wait(0.2):
            pass
    finally:
        simulator.stop()
    return 0


def clock_line(clock: Clock) -> str:
    """`CLOCK <simulated time> <wall time>`: the simulated time at one wall-clock moment (epoch seconds),
    so other processes can run a clock in step with this one (`runtime.clock.SimulatedClock.in_step`)."""
    wall = time_module.time()
    return f"CLOCK {clock.now().isoformat()} {wall:.6f}"


def _fail(message: str, code: int) -> int:
    print(f"kis_sim: error: {message}", file=sys.stderr, flush=True)
    return code
