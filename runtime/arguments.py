"""argparse value types shared by `run.py` and `python -m tools.kis_sim`: one clear line per bad value."""

from __future__ import annotations

import argparse
import math
from datetime import date, time


def trading_date(text: str) -> date:
    """YYYYMMDD."""
    if len(text) == 8 and text.isdigit():
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"expected YYYYMMDD, got {text!r}")


def clock_time(text: str) -> time:
    """HH:MM or HH:MM:SS."""
    if len(text) in (5, 8):
        try:
            return time.fromisoformat(text)
        except ValueError:
            pass
    raise argparse.ArgumentTypeError(f"expected HH:MM or HH:MM:SS, got {text!r}")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_number(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def non_negative_number(text: str) -> float:
    value = _number(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def positive_integer(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value
