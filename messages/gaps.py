"""Expected gaps: what a connection actor tells the gap recovery actor around an outage it knows about,
and what the system tells a connection actor at a start about the time the observer was not running.

Unexpected gaps need no message: the gap actor finds them in the TicksReceived stream itself.
"""

from __future__ import annotations

from pydantic import AwareDatetime

from messages.base import Message


class ExpectedGapStarted(Message):
    """`account`'s session ended at `at`; its confirmed H0STCNT0 `symbols` get no ticks until re-confirmed."""

    account: str
    symbols: tuple[str, ...]
    reason: str


class ExpectedGapEnded(Message):
    """`symbols` of `account` stream again (re-confirmed) or are no longer wanted, from `at`.

    `started_at` repeats the start, so a gap actor restarted in between can still close the gap.
    """

    account: str
    symbols: tuple[str, ...]
    started_at: AwareDatetime
    reason: str


class DowntimeFound(Message):
    """The observer started at `at` on a day it had already streamed: each symbol of `last_streamed`
    (symbol, exchange time of its last streamed tick on disk) missed its ticks from then until it streams
    again."""

    account: str
    last_streamed: tuple[tuple[str, AwareDatetime], ...]


class TicksMissed(Message):
    """`symbols` of `account` may have missed ticks between their last one received and `at`: a frame
    that could not be read ("bad_frame"), trades dropped at the receive queue's bound ("backpressure"), or
    the stream closed by a stop ("observer_stop"). With `until_next_tick` the symbols' streams move to
    another account (a dead worker's, "worker_lost"), so each gap runs on to the symbol's next tick received
    from another account.

    `since` (symbol, exchange time) is each symbol's last tick received before the miss, as the connection
    saw them in arrival order: ticks received after the miss may reach the gap actor first (another
    process's link sends them on a faster path), so its own last tick can be past the missed ones.
    """

    account: str
    symbols: tuple[str, ...]
    reason: str
    until_next_tick: bool = False
    since: tuple[tuple[str, AwareDatetime], ...] = ()
