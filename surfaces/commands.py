"""The control commands of the HTTP API and `run.py ctl`: a request body checked into one message.

Pure: no I/O and no clock, so every bad request is refused here with one sentence before anything is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time
from typing import Any

from core.calendar import is_trading_day, next_trading_day
from messages.base import Message
from messages.control import (
    MAX_PICKS,
    MAX_TRIGGER_TTL_SECONDS,
    ManualTrigger,
    Pick,
    PicksLoaded,
    ScanNow,
    TrackBPaused,
)
from messages.selection import ManualOverride

COMMANDS = ("pin", "unpin", "trigger", "picks", "scan", "trackb")
SYMBOL = re.compile(r"^[0-9A-Z]{6}$")
"""A KRX short code: six characters, digits and capitals (005930, 0088M0)."""


class CommandError(Exception):
    """A refused request: `status` is the HTTP status, `sentence` the one line said to the caller."""

    def __init__(self, status: int, sentence: str) -> None:
        super().__init__(sentence)
        self.status = status
        self.sentence = sentence


@dataclass(frozen=True)
class Command:
    """A checked command: the actor it goes to, the message, and the symbols that must be in the universe."""

    name: str
    actor: str
    message: Message
    symbols: tuple[str, ...] = ()


def parse_command(name: str, body: Any, now: datetime, picks_time: time = time(7, 20)) -> Command:
    """The command `name` with its JSON `body`, or CommandError(400/404) saying what is wrong.

    Picks load at once (`"when": "now"`, the default) or at the next `picks_time` of a trading day
    (`"when": "scheduled"`).
    """
    if name not in COMMANDS:
        raise CommandError(404, f"unknown command {name!r}: use one of {', '.join(COMMANDS)}")
    if not isinstance(body, dict):
        raise CommandError(400, "the request body must be a JSON object")
    match name:
        case "pin" | "unpin":
            symbol = _symbol(body)
            _only(body, {"symbol"})
            return Command(
                name, "triggers", ManualOverride(at=now, symbol=symbol, active=name == "pin"), (symbol,)
            )
        case "trigger":
            symbol = _symbol(body)
            _only(body, {"symbol", "ttl_seconds"})
            ttl = body.get("ttl_seconds")
            if isinstance(ttl, bool) or not isinstance(ttl, int | float):
                raise CommandError(400, "ttl_seconds must be a number of seconds")
            if not 0 < ttl <= MAX_TRIGGER_TTL_SECONDS:
                raise CommandError(
                    400,
                    f"ttl_seconds {ttl:g} is out of range: it must be in (0, {MAX_TRIGGER_TTL_SECONDS:g}]",
                )
            return Command(name, "triggers", ManualTrigger(at=now, symbol=symbol, ttl_seconds=ttl), (symbol,))
        case "picks":
            _only(body, {"picks", "when"})
            picks = _picks(body.get("picks"))
            when = body.get("when", "now")
            if when not in ("now", "scheduled"):
                raise CommandError(400, 'when must be "now" or "scheduled" (the configured picks time)')
            apply_at = _next_picks_time(now, picks_time) if when == "scheduled" else None
            message = PicksLoaded(at=now, picks=picks, apply_at=apply_at)
            return Command(name, "triggers", message, tuple(p.symbol for p in picks))
        case "scan":
            _only(body, set())
            return Command(name, "scanner", ScanNow(at=now))
        case _:
            _only(body, {"paused"})
            paused = body.get("paused")
            if not isinstance(paused, bool):
                raise CommandError(400, "paused must be true (pause Track B) or false (resume it)")
            return Command(name, "slots", TrackBPaused(at=now, paused=paused))


def _next_picks_time(now: datetime, picks_time: time) -> datetime:
    """The next `picks_time` of a trading day after `now`."""
    day = now.date()
    if not is_trading_day(day) or now >= datetime.combine(day, picks_time, tzinfo=now.tzinfo):
        day = next_trading_day(day)
    return datetime.combine(day, picks_time, tzinfo=now.tzinfo)


def _symbol(body: dict[str, Any]) -> str:
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol.strip():
        raise CommandError(400, "symbol is missing: give a six-character KRX code such as 005930")
    symbol = symbol.strip().upper()
    if not SYMBOL.match(symbol):
        raise CommandError(400, f"unknown symbol {symbol[:20]!r}: a KRX code has six characters, e.g. 005930")
    return symbol


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise CommandError(400, f"unexpected field {extra[0]!r}")


def _picks(value: Any) -> tuple[Pick, ...]:
    if not isinstance(value, list) or not value:
        raise CommandError(400, "picks must be a non-empty list of symbols or {symbol, score} objects")
    if len(value) > MAX_PICKS:
        raise CommandError(400, f"{len(value)} picks: at most {MAX_PICKS} are taken")
    picks: dict[str, Pick] = {}
    for item in value:
        entry = {"symbol": item} if isinstance(item, str) else item
        if not isinstance(entry, dict):
            raise CommandError(400, "each pick is a symbol or a {symbol, score} object")
        symbol = _symbol(entry)
        score = entry.get("score", 1.0)
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            raise CommandError(400, f"the score of {symbol} must be a number from 0 to 1")
        _only(entry, {"symbol", "score"})
        picks[symbol] = Pick(symbol=symbol, score=float(score))
    return tuple(picks.values())
