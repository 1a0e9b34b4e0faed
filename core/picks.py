"""The day's picks as a file or a URL hands them over (websocket_manager_design.md "Daily Picks", priority 2).

Accepted JSON: a list, or an object whose `picks` is that list; each item a symbol (`"005930"`) or an object
with `symbol` (or the seed's `stock_code`) and an optional `score` in [0, 1] (1 when absent). Other fields of
an object (a name, a reason) are ignored, so an analyser's own output can be served as it is. A repeated
symbol keeps its last score. Anything else is refused with one line saying where.
"""

from __future__ import annotations

import re
from typing import Any

SYMBOL = re.compile(r"^[0-9A-Z]{6}$")
"""A KRX short code: six characters, digits and capitals (005930, 0088M0)."""
MAX_PICKS = 200


def parse_picks(document: Any) -> tuple[tuple[str, float], ...]:
    """(symbol, score) pairs in the document's order, or ValueError with a one-line reason."""
    items = document.get("picks") if isinstance(document, dict) else document
    if not isinstance(items, list) or not items:
        raise ValueError("picks must be a non-empty list of symbols or {symbol, score} objects")
    if len(items) > MAX_PICKS:
        raise ValueError(f"{len(items)} picks: at most {MAX_PICKS} are taken")
    picks: dict[str, float] = {}
    for position, item in enumerate(items):
        entry = {"symbol": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise ValueError(f"pick {position}: a symbol or a {{symbol, score}} object is expected")
        symbol = entry.get("symbol", entry.get("stock_code"))
        if not isinstance(symbol, str) or not SYMBOL.match(symbol.strip().upper()):
            raise ValueError(f"pick {position}: a six-character KRX code such as 005930 is expected")
        score = entry.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise ValueError(f"pick {position}: the score must be a number from 0 to 1")
        picks[symbol.strip().upper()] = float(score)
    return tuple(picks.items())
