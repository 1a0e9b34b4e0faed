"""Shared pieces of the end-to-end tests: a calibrated surge scenario, the run's files, polling.

The surge scenario makes "the strongest" a property of the scenario, not of chance. The simulated market's
normal volume pace differs a lot between symbols (some run at several times their 20-day average on a quiet
day), so each chosen symbol gets the factor that brings its pace at the first scan to a graded target, and
every other symbol that would look like a surge by itself is damped back to a normal day's pace.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

from core.triggers import session_fraction
from runtime.clock import KST
from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from tools.kis_sim.listings import build_universe
from tools.kis_sim.market import Market

MIN_CLOSE = 4000
"""`universe.min_close_price`: cheaper symbols are not in the observer's universe."""
QUIET_RATIO = 1.0
"""Pace a damped symbol is brought to (a normal day)."""
DAMP_ABOVE = 2.0
"""A symbol running at this multiple of its normal pace or more by itself is damped (the mild band)."""
QUIET_RANGE = 1.5
"""Symbols whose range so far is this multiple of their ATR or more are not chosen (a volatility spike
trigger would compete with their surge)."""


@dataclass(frozen=True, slots=True)
class Surge:
    symbol: str
    target_ratio: float
    factor: float


@dataclass(frozen=True, slots=True)
class SurgeScenario:
    """`surges` strongest first; `events` is the scenario file's content."""

    surges: tuple[Surge, ...]
    events: tuple[dict[str, Any], ...]

    @property
    def ranked_symbols(self) -> list[str]:
        return [surge.symbol for surge in self.surges]

    def write(self, path: Path) -> Path:
        path.write_text(json.dumps(list(self.events), indent=1), encoding="utf-8")
        return path


def surge_scenario(
    seed: int,
    day: date,
    n_symbols: int,
    count: int,
    *,
    scan_at: time_of_day,
    strongest: float = 4.8,
    weakest: float = 3.4,
) -> SurgeScenario:
    """`count` volume surges from 09:00 whose pace at `scan_at` runs evenly from `strongest` down to
    `weakest` times a normal day's (both below the 5x of full strength, above the 3x threshold)."""
    universe = build_universe(seed, day, n_symbols)
    market = Market(seed=seed, trading_date=day, n_symbols=n_symbols)
    at = datetime.combine(day, scan_at, tzinfo=KST)
    fraction = session_fraction(at)
    tradable = sorted(
        (item for item in universe.listings.values() if not item.halted and item.prev_close >= MIN_CLOSE),
        key=lambda item: item.code,
    )
    paces: dict[str, float] = {}
    quiet: list[str] = []
    for listing in tradable:
        quote = market.quote(listing.code, at)
        if listing.avg_volume_20d <= 0 or quote.volume <= 0:
            continue
        paces[listing.code] = quote.volume / (listing.avg_volume_20d * fraction)
        high, low = max(quote.high, listing.prev_close), min(quote.low, listing.prev_close)
        if listing.atr_14 > 0 and high - low < QUIET_RANGE * listing.atr_14:
            quiet.append(listing.code)
    if len(quiet) < count:
        raise ValueError(f"only {len(quiet)} quiet tradable symbols for {count} surges")
    step = (strongest - weakest) / max(count - 1, 1)
    surges = tuple(
        Surge(code, round(strongest - rank * step, 3), (strongest - rank * step) / paces[code])
        for rank, code in enumerate(quiet[:count])
    )
    chosen = {surge.symbol for surge in surges}
    events = [_volume_event(surge.symbol, surge.factor) for surge in surges]
    events += [
        _volume_event(code, QUIET_RATIO / pace)
        for code, pace in sorted(paces.items())
        if code not in chosen and pace >= DAMP_ABOVE
    ]
    return SurgeScenario(surges, tuple(events))


def _volume_event(symbol: str, factor: float) -> dict[str, Any]:
    return {
        "at": "09:00",
        "symbol": symbol,
        "event": "volume_surge",
        "factor": round(factor, 4),
        "minutes": 120,
    }


# --- the run's files ----------------------------------------------------------------------------------------


def tick_files(paths: DataPaths, account: str, day: date) -> dict[str, Path]:
    """symbol -> its tick file, over both markets."""
    found: dict[str, Path] = {}
    for market in ("KOSPI", "KOSDAQ"):
        for path in sorted(paths.scalp_dir(account, market, day).glob("ticks_*.jsonl")):
            found[path.stem.removeprefix("ticks_")] = path
    return found


def overflow_records(paths: DataPaths, account: str, day: date) -> list[dict[str, Any]]:
    ledger = paths.overflow_ledger(account, day)
    return read_jsonl(ledger).records if ledger.exists() else []


def ends_in_complete_lines(path: Path) -> bool:
    """Every line is a JSON object and the file ends with a newline (nothing torn)."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        return False
    contents = read_jsonl(path)
    return contents.skipped == 0


ALERT_KEY = re.compile(r"^\[(?:system:(?P<system>[^\]]+)|(?P<signal>[^\]]+))\]\s+(?P<symbol>\S+)?")


def alert_key(text: str) -> tuple[str, str]:
    """The notifier's cooldown key of a delivered message: (symbol, signal) or ("system", key)."""
    match = ALERT_KEY.match(text)
    if match is None:
        raise AssertionError(f"not an alert message: {text[:80]!r}")
    if match["system"] is not None:
        return ("system", match["system"])
    return (match["symbol"] or "", match["signal"])


# --- waiting ------------------------------------------------------------------------------------------------


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition` until it holds (True) or `timeout` real seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
