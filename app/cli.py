"""Command-line flags of `python run.py` (DESIGN.md section 7)."""

from __future__ import annotations

import argparse
from datetime import date, time
from pathlib import Path

from app.chaos import CHAOS_DEFAULT_DURATION


def _hhmm(text: str) -> time:
    try:
        if len(text) != 5:
            raise ValueError(text)
        return time.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM, got {text!r}") from None


def _yyyymmdd(text: str) -> date:
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected YYYYMMDD, got {text!r}") from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py",
        description=(
            "Observer: a real-time KRX market observer on the KIS Open API. Without KIS credentials in the "
            "environment it runs the whole system against the embedded KIS simulator."
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
        type=_positive,
        help=f"stop gracefully after this many real seconds (--chaos: {CHAOS_DEFAULT_DURATION:g} by default)",
    )
    parser.add_argument("--summary-json", type=Path, help="write the run's counts here at exit")
    sim = parser.add_argument_group("simulator mode")
    sim.add_argument("--speed", type=_positive, default=10.0, help="simulated seconds per real second (10)")
    sim.add_argument("--start", type=_hhmm, default=time(9, 28), help="simulated start time HH:MM (09:28)")
    sim.add_argument("--date", type=_yyyymmdd, help="simulated trading day YYYYMMDD (default: a recent one)")
    sim.add_argument("--seed", type=int, default=1, help="market model seed (1)")
    sim.add_argument("--symbols", type=int, default=400, help="listed symbols in the simulated market (400)")
    sim.add_argument("--accounts", type=int, default=1, help="simulated app keys in the provider pool (1)")
    sim.add_argument("--scenario", type=Path, help="scenario JSON for the simulator (default: a demo one)")
    sim.add_argument(
        "--chaos",
        action="store_true",
        help=(
            "a chaos day: WebSocket drops, refused reconnects, rate-limit bursts, an expired token, bad "
            "frames, a silent session and one crash per actor, then the sent ticks are reconciled with "
            f"the recorded ones; runs {CHAOS_DEFAULT_DURATION:g} s unless --duration is given; "
            "needs simulator mode"
        ),
    )
    return parser
