"""Downtime found at a start: each symbol streamed earlier in the day missed its ticks from its last one.

A stop, a crash of the process or a SIGKILL leaves the tick files as the record of what arrived. At the
next start each connection actor is told its account's symbols and their last streamed tick on disk; for
the symbols of its restored target it opens an expected gap from there, which ends when the symbol is
confirmed again and is then back-filled or marked like any other. Only the tail of each file is read, so a
start after a busy morning stays fast.
"""

from __future__ import annotations

from datetime import datetime

from messages.gaps import DowntimeFound
from runtime.jsonl import tail_records
from runtime.paths import DataPaths

STREAMED = "ws"


def last_streamed(paths: DataPaths, account: str, now: datetime) -> dict[str, datetime]:
    """Symbol -> exchange time of its last streamed tick in `account`'s tick files of `now`'s day, for
    symbols whose last tick is before `now` (a simulated day replayed from an earlier time has none).
    Recovered rows are not streamed ticks, and torn or unreadable lines are passed over."""
    found: dict[str, datetime] = {}
    for path in paths.tick_files(account, now.date()):
        for record in tail_records(path):
            if record.get("source") != STREAMED:
                continue
            symbol, at = record.get("symbol"), _aware(record.get("exchange_time"))
            if not isinstance(symbol, str) or at is None or at >= now:
                continue
            previous = found.get(symbol)
            if previous is None or at > previous:
                found[symbol] = at
    return found


def downtime_found(paths: DataPaths, accounts: tuple[str, ...], now: datetime) -> list[DowntimeFound]:
    """One message per account that streamed earlier today (none for a fresh day)."""
    messages = []
    for account in accounts:
        last = last_streamed(paths, account, now)
        if last:
            messages.append(DowntimeFound(at=now, account=account, last_streamed=tuple(sorted(last.items()))))
    return messages


def _aware(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None
