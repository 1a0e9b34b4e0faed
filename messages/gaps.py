"""Expected gaps: what a connection actor tells the gap recovery actor around an outage it knows about.

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


class TicksUnreadable(Message):
    """A frame of `account` that may have carried trades of `symbols` could not be read at `at`: each
    symbol's ticks since its last one received are a gap (`reason` "bad_frame")."""

    account: str
    symbols: tuple[str, ...]
    reason: str
