"""The option matrix: one minute's call/put board as columns from deep ITM through ATM to deep OTM.

For each metric (price, implied volatility, delta, open interest, volume) one row keyed by (timestamp,
underlying, metric) with columns `c_itm{depth}` ... `c_itm1`, `c_atm`, `c_otm1` ... `c_otm{depth}` and the
same `p_` columns. ATM is the strike on the 2.5-point grid nearest the underlying (a tie goes to the lower
strike). A call is in the money below the underlying, a put above it, so `c_itm1` is the strike one step
below ATM and `p_itm1` the strike one step above. A strike the board lacks leaves its column empty (None).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

STRIKE_STEP = 2.5
DEFAULT_DEPTH = 10


class Metric(StrEnum):
    PRICE = "price"
    IV = "iv"
    DELTA = "delta"
    OPEN_INTEREST = "open_interest"
    VOLUME = "volume"


@dataclass(frozen=True, slots=True)
class BoardRow:
    """One strike of one side (call or put) of the board."""

    code: str
    strike: float
    price: float
    iv: float
    delta: float
    open_interest: int
    volume: int


@dataclass(frozen=True, slots=True)
class MatrixRow:
    """One metric of one minute's matrix; `columns` maps every matrix column name to a value or None."""

    timestamp: datetime
    underlying: str
    metric: Metric
    underlying_price: float
    atm_strike: float
    columns: Mapping[str, float | None]


def column_names(depth: int = DEFAULT_DEPTH) -> tuple[str, ...]:
    """The matrix's columns in order: calls deep ITM to deep OTM, then puts the same way."""
    names: list[str] = []
    for side in ("c", "p"):
        names += [f"{side}_itm{k}" for k in range(depth, 0, -1)]
        names.append(f"{side}_atm")
        names += [f"{side}_otm{k}" for k in range(1, depth + 1)]
    return tuple(names)


def atm_strike(underlying: float, step: float = STRIKE_STEP) -> float:
    """The grid strike nearest `underlying`; halfway between two strikes, the lower one."""
    if not math.isfinite(underlying) or underlying <= 0:
        raise ValueError(f"underlying must be a positive number, got {underlying!r}")
    lower = math.floor(underlying / step) * step
    return lower + step if underlying - lower > step / 2 else lower


def _key(strike: float) -> int:
    """Strikes compared in hundredths of a point: 352.5 from the board and from the grid are the same key."""
    return round(strike * 100)


def _strikes_by_column(atm: float, depth: int, step: float) -> dict[str, float]:
    """Each column's strike: call ITM below ATM, put ITM above."""
    strikes: dict[str, float] = {}
    for side, itm_sign in (("c", -1), ("p", 1)):
        strikes[f"{side}_atm"] = atm
        for k in range(1, depth + 1):
            strikes[f"{side}_itm{k}"] = atm + itm_sign * k * step
            strikes[f"{side}_otm{k}"] = atm - itm_sign * k * step
    return strikes


def option_matrix(
    timestamp: datetime,
    underlying: str,
    underlying_price: float,
    calls: Iterable[BoardRow],
    puts: Iterable[BoardRow],
    *,
    depth: int = DEFAULT_DEPTH,
    step: float = STRIKE_STEP,
) -> list[MatrixRow]:
    """One row per metric, in `Metric` order, from the board's call and put rows of one minute."""
    atm = atm_strike(underlying_price, step)
    boards = {"c": {_key(row.strike): row for row in calls}, "p": {_key(row.strike): row for row in puts}}
    strikes = _strikes_by_column(atm, depth, step)
    names = column_names(depth)
    rows = []
    for metric in Metric:
        columns: dict[str, float | None] = {}
        for name in names:
            row = boards[name[0]].get(_key(strikes[name]))
            columns[name] = None if row is None else getattr(row, metric.value)
        rows.append(MatrixRow(timestamp, underlying, metric, underlying_price, atm, columns))
    return rows
