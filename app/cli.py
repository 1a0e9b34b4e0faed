"""Command-line flags of `python run.py` (DESIGN.md section 7)."""

from __future__ import annotations

import argparse
import re
from datetime import date, datetime, time
from pathlib import Path
from typing import NoReturn

from actors.system import ROLES
from app.chaos import CHAOS_DEFAULT_DURATION
from core.calendar import is_trading_day, previous_trading_day
from runtime.arguments import clock_time, positive_integer, positive_number, trading_date
from tools.kis_sim.starter import ScenarioError, check_scenario

ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")


class OneLineParser(argparse.ArgumentParser):
    """A bad flag or value is one line on stderr and exit 2 (argparse's usage block is left to --help)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def simulated_day(text: str) -> date:
    """YYYYMMDD of a KRX trading day: the simulator has no market on a weekend or holiday."""
    day = trading_date(text)
    if not is_trading_day(day):
        raise argparse.ArgumentTypeError(
            f"{text} is not a KRX trading day (the last one before it: {previous_trading_day(day):%Y%m%d})"
        )
    return day


def scenario_file(text: str) -> Path:
    """A scenario file that reads and validates (its symbols are checked against the market later)."""
    try:
        check_scenario(Path(text))
    except ScenarioError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return Path(text)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="run.py",
        description=(
            "Observer: a real-time KRX market observer on the KIS Open API. Without KIS credentials in the "
            "environment it runs the whole system against the embedded KIS simulator. "
            "`run.py ctl --help`: steer a running observer through its HTTP API; "
            "`run.py restore ARCHIVE --data-dir DIR`: a day's backup into an empty directory."
        ),
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--sim", action="store_true", help="run against the embedded KIS simulator")
    mode.add_argument("--live", action="store_true", help="run against KIS with the configured credentials")
    parser.add_argument("--config", type=Path, help="JSON config file (see README, Configuration)")
    parser.add_argument("--data-dir", type=Path, help="root of everything written (default ./data)")
    parser.add_argument("--log-dir", type=Path, help="per-actor log files (default ./logs)")
    parser.add_argument(
        "--duration",
        type=positive_number,
        help=f"stop gracefully after this many real seconds (--chaos: {CHAOS_DEFAULT_DURATION:g} by default)",
    )
    parser.add_argument("--postgres", metavar="URL",
                        help="also write the minute jobs' tables to PostgreSQL (env OBSERVER_POSTGRES_URL)")
    parser.add_argument("--summary-json", type=Path, help="write the run's counts here at exit")
    parser.add_argument("--http", default="127.0.0.1:8600", metavar="HOST:PORT",
                        help="dashboard, API and /metrics (127.0.0.1:8600; port 0: a free one; 'off': none)")
    parser.add_argument(
        "--nats",
        metavar="URL",
        help="publish on this NATS server or cluster (a cluster's URLs comma-separated; env "
             "OBSERVER_NATS_URL) instead of starting one",
    )
    parser.add_argument(
        "--role", choices=ROLES, default="all",
        help="all: the whole observer (default); control or stream: that process only, joining the others "
             "over --nats (one machine each, or several)",
    )
    sim = parser.add_argument_group("simulator mode")
    sim.add_argument(
        "--speed", type=positive_number, default=10.0, help="simulated seconds per real second (10)"
    )
    sim.add_argument(
        "--start", type=clock_time, default=time(9, 28), help="simulated start time HH:MM (09:28)"
    )
    sim.add_argument(
        "--date", type=simulated_day, help="simulated trading day YYYYMMDD (default: a recent one)"
    )
    sim.add_argument("--seed", type=int, default=1, help="market model seed (1)")
    sim.add_argument(
        "--symbols", type=positive_integer, default=400, help="listed symbols in the simulated market (400)"
    )
    parser.add_argument(
        "--accounts", type=account_choice, default=1, metavar="N|NAME,NAME",
        help="a number: simulated app keys in the simulator's pool (1); names (acct3,acct4, or sim3,sim4 in "
             "simulator mode): the accounts a --role stream worker streams (default: every configured one)",
    )
    sim.add_argument(
        "--scenario", type=scenario_file, help="scenario JSON for the simulator (default: a demo one)"
    )
    sim.add_argument(
        "--chaos",
        action="store_true",
        help=(
            "a chaos day: SIGKILL of the control process, the stream process and the NATS server, "
            "WebSocket drops, refused reconnects, rate-limit bursts, an expired token, bad frames, a silent "
            "session and one crash per actor, then the sent ticks are reconciled with the recorded ones; "
            f"runs {CHAOS_DEFAULT_DURATION:g} s unless --duration is given; needs simulator mode"
        ),
    )
    sim.add_argument("--kis-rest", metavar="URL", help="a role's shared simulator: REST URL")
    sim.add_argument("--kis-ws", metavar="URL", help="a role's shared simulator: WebSocket URL")
    sim.add_argument(
        "--chaos-plan", type=Path, metavar="FILE",
        help="--role control|stream: the crashes of its actors on a chaos day (a file the parent writes)",
    )
    sim.add_argument(
        "--sim-clock", type=clock_anchor, metavar="ISO@EPOCH",
        help="--role control|stream: the shared simulator's time at a wall-clock moment (its CLOCK line)",
    )
    return parser


def account_choice(text: str) -> int | tuple[str, ...]:
    """A whole number >= 1 (the simulator's pool size) or a comma list of distinct account names."""
    if re.fullmatch(r"\s*[-+]?\d+\s*", text):
        return positive_integer(text.strip())
    names = tuple(name.strip() for name in text.split(","))
    if all(ACCOUNT_NAME.fullmatch(name) for name in names) and len(set(names)) == len(names):
        return names
    shown = repr(text) if len(text) <= 40 else f"{len(text)} characters (not shown)"
    raise argparse.ArgumentTypeError(
        f"expected a number of simulated keys or distinct account names separated by commas, got {shown}")


def clock_anchor(text: str) -> tuple[datetime, float]:
    """`2024-11-20T09:28:00+09:00@1765000000.5`: a simulated time and the wall time (epoch) it was read."""
    simulated, _, wall = text.partition("@")
    try:
        at, epoch = datetime.fromisoformat(simulated), float(wall)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected ISO-TIME@EPOCH-SECONDS, got {text!r}") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"the simulated time needs its offset (+09:00), got {simulated!r}")
    return at, epoch
