"""The default simulator scenario: more surging symbols than slots, so a newcomer sees every mechanism."""

from __future__ import annotations

import json
from datetime import date, datetime, time, timedelta
from pathlib import Path

from tools.kis_sim.starter import tradable_symbols

SURGING_SYMBOLS = 60
"""More than one account's 41 slots: the weakest surges land in the overflow ledger."""


def demo_scenario(
    seed: int, day: date, n_symbols: int, start: time, min_close: int
) -> list[dict[str, object]]:
    """Volume surges of graded strength on tradable symbols, starting a simulated minute after `start`."""
    tradable = tradable_symbols(seed, day, n_symbols, min_close)
    begin = datetime.combine(day, start) + timedelta(minutes=1)
    events: list[dict[str, object]] = []
    for rank, symbol in enumerate(tradable[:SURGING_SYMBOLS]):
        at = begin + timedelta(seconds=5 * (rank % 12))
        events.append(
            {
                "at": at.strftime("%H:%M:%S"),
                "symbol": symbol,
                "event": "volume_surge",
                "factor": 4.0 + (rank % 7),
                "minutes": 40,
            }
        )
    return events


def write_demo_scenario(path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(demo_scenario(**kwargs), indent=1), encoding="utf-8")  # type: ignore[arg-type]
    return path
