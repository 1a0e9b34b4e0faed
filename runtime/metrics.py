"""Counters shared by every actor. They live outside the actors so a restart does not reset them."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any

COUNTERS = (
    "ticks_recorded",
    "ticks_dropped",
    "scans",
    "triggers",
    "slot_changes",
    "overflows",
    "gaps_detected",
    "gaps_recovered",
    "gaps_marked",
    "alerts_sent",
)
"""The run's counters, in the order the summary, the status view and the API show them."""


class Metrics:
    """Thread-safe named counters and gauges, read for the status view and the summary JSON."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._gauges: dict[str, object] = {}
        self._sets: dict[str, list[str]] = {}

    def inc(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def set(self, name: str, value: object) -> None:
        with self._lock:
            self._gauges[name] = value

    def append_unique(self, name: str, values: Iterable[str]) -> None:
        """Add to an ordered list without repeats (e.g. phases seen)."""
        with self._lock:
            seen = self._sets.setdefault(name, [])
            for value in values:
                if value not in seen:
                    seen.append(value)

    def push_recent(self, name: str, text: str, keep: int = 5) -> None:
        """Remember the last `keep` items of a kind (recent triggers, alerts) for the status view."""
        with self._lock:
            items = self._sets.setdefault(name, [])
            items.append(text)
            del items[:-keep]

    def count(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {**self._counts, **self._gauges, **{k: list(v) for k, v in self._sets.items()}}

    def shareable(self) -> dict[str, Any]:
        """Counters, gauges and lists as plain JSON-ready data, for another process's `absorb`."""
        with self._lock:
            return {
                "counts": dict(self._counts),
                "gauges": {name: _plain(value) for name, value in self._gauges.items()},
                "sets": {name: list(items) for name, items in self._sets.items()},
            }

    def absorb(self, shared: dict[str, Any]) -> None:
        """Take over another process's figures (`shareable`): the names it counts are its own, so its
        values replace these."""
        with self._lock:
            for name, count in shared.get("counts", {}).items():
                self._counts[name] = int(count)
            self._gauges.update(shared.get("gauges", {}))
            for name, items in shared.get("sets", {}).items():
                self._sets[name] = list(items)


def _plain(value: object) -> object:
    """A gauge as JSON can carry it (times as ISO text)."""
    return value if value is None or isinstance(value, bool | int | float | str) else str(value)
