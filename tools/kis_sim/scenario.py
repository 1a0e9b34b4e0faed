"""Scheduled market events for the simulator (`--scenario FILE`).

A scenario is a JSON list of events such as
`{"at": "09:30", "symbol": "005930", "event": "volume_surge", "factor": 5.0, "minutes": 10}`.
Events act on whole minutes: every minute that overlaps `[at, at + minutes)` is affected.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any


class ScenarioError(ValueError):
    """A scenario file or entry is invalid; the message is one line that says where and why."""


class EventKind(StrEnum):
    VOLUME_SURGE = "volume_surge"
    VOLATILITY_SPIKE = "volatility_spike"
    TRADE_BURST = "trade_burst"
    HALT = "halt"


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    at: time
    symbol: str
    event: EventKind
    factor: float
    minutes: float

    @property
    def start_second(self) -> int:
        """Seconds after midnight at which the event starts."""
        return self.at.hour * 3600 + self.at.minute * 60 + self.at.second

    @property
    def end_second(self) -> float:
        return self.start_second + self.minutes * 60


@dataclass(frozen=True, slots=True)
class Effects:
    """Multipliers in force for one symbol during one minute."""

    volume: float = 1.0
    volatility: float = 1.0
    trade_rate: float = 1.0
    halted: bool = False


NO_EFFECTS = Effects()

_TIME = re.compile(r"^(\d{2}):(\d{2})(?::(\d{2}))?$")
_SYMBOL = re.compile(r"^[0-9A-Z]{6}$")
_KEYS = frozenset({"at", "symbol", "event", "factor", "minutes"})
DEFAULT_MINUTES = 10.0


class Scenario:
    """An immutable, validated list of events with fast lookup per symbol."""

    def __init__(self, events: tuple[ScenarioEvent, ...] = ()) -> None:
        self.events = tuple(sorted(events, key=lambda e: (e.start_second, e.symbol)))
        by_symbol: dict[str, list[ScenarioEvent]] = {}
        for event in self.events:
            by_symbol.setdefault(event.symbol, []).append(event)
        self._by_symbol = {symbol: tuple(items) for symbol, items in by_symbol.items()}

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(self._by_symbol)

    def events_for(self, symbol: str) -> tuple[ScenarioEvent, ...]:
        return self._by_symbol.get(symbol, ())

    def effects(self, symbol: str, start_second: int, end_second: int) -> Effects:
        """Combined effects of every event of `symbol` that overlaps `[start_second, end_second)`."""
        events = self._by_symbol.get(symbol)
        if not events:
            return NO_EFFECTS
        volume = volatility = rate = 1.0
        halted = False
        for event in events:
            if event.start_second >= end_second or event.end_second <= start_second:
                continue
            if event.event is EventKind.VOLUME_SURGE:
                volume *= event.factor
            elif event.event is EventKind.VOLATILITY_SPIKE:
                volatility *= event.factor
            elif event.event is EventKind.TRADE_BURST:
                rate *= event.factor
            else:
                halted = True
        return Effects(volume=volume, volatility=volatility, trade_rate=rate, halted=halted)

    @classmethod
    def from_json(cls, text: str, source: str = "scenario") -> Scenario:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno}, column {exc.colno}"
            raise ScenarioError(f"{source}: not valid JSON ({where}: {exc.msg})") from None
        except RecursionError:
            raise ScenarioError(f"{source}: not valid JSON (nested too deeply)") from None
        return cls.from_list(data, source)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ScenarioError(f"{path}: cannot read scenario file ({type(exc).__name__}: {exc})") from None
        return cls.from_json(text, str(path))

    @classmethod
    def from_list(cls, data: Any, source: str = "scenario") -> Scenario:
        if not isinstance(data, list):
            raise ScenarioError(f"{source}: expected a JSON list of events, got {type(data).__name__}")
        return cls(tuple(_parse_event(item, f"{source}[{index}]") for index, item in enumerate(data)))

    def check_symbols(self, known: set[str] | frozenset[str] | dict[str, Any]) -> None:
        """Refuse events for symbols the market does not list."""
        for index, event in enumerate(self.events):
            if event.symbol not in known:
                where = f"scenario event {index} ({event.event})"
                raise ScenarioError(f"{where}: unknown symbol {event.symbol!r}")


def _parse_event(item: Any, where: str) -> ScenarioEvent:
    if not isinstance(item, dict):
        raise ScenarioError(f"{where}: expected an object, got {type(item).__name__}")
    unknown = sorted(set(item) - _KEYS)
    if unknown:
        allowed = ", ".join(sorted(_KEYS))
        raise ScenarioError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {allowed}")
    for key in ("at", "symbol", "event"):
        if key not in item:
            raise ScenarioError(f"{where}: missing required key {key!r}")
    at = _parse_time(item["at"], where)
    symbol = item["symbol"]
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ScenarioError(f"{where}: symbol must be a 6-character code like \"005930\", got {symbol!r}")
    try:
        kind = EventKind(item["event"])
    except ValueError:
        allowed = ", ".join(kind.value for kind in EventKind)
        raise ScenarioError(f"{where}: event must be one of {allowed}; got {item['event']!r}") from None
    if kind is EventKind.HALT:
        factor = _positive_number(item.get("factor", 1.0), "factor", where)
    elif "factor" not in item:
        raise ScenarioError(f"{where}: {kind.value} needs a 'factor'")
    else:
        factor = _positive_number(item["factor"], "factor", where)
    minutes = _positive_number(item.get("minutes", DEFAULT_MINUTES), "minutes", where)
    return ScenarioEvent(at=at, symbol=symbol, event=kind, factor=factor, minutes=minutes)


def _parse_time(value: Any, where: str) -> time:
    match = _TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise ScenarioError(f"{where}: 'at' must be \"HH:MM\" or \"HH:MM:SS\", got {value!r}")
    hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ScenarioError(f"{where}: 'at' is not a time of day: {value!r}")
    return time(hour, minute, second)


def _positive_number(value: Any, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0 or value != value:
        raise ScenarioError(f"{where}: {key!r} must be a positive number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = float("inf")
    if number == float("inf"):
        raise ScenarioError(f"{where}: {key!r} must be finite")
    return number
