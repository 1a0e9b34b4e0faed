"""What other actors hand the recorder to write to disk (DESIGN.md section 5)."""

from __future__ import annotations

from typing import Any

from pydantic import SkipValidation

from core.gaps import Gap
from core.recovery import GapMarker, RecoveryRecord
from messages.base import Message


class OverflowRecorded(Message):
    """Overflow ledger lines for `account`'s ledger (`system/overflow/{account}/YYYYMMDD_overflow.jsonl`).

    Each line is one seed-format ledger record (`core.overflow.OverflowRecord.to_ledger()`), written as
    one JSON line, in order. The slot manager sends one message per account and allocation; symbols that
    overflowed without ever holding a slot go to the pool's first account. The lines are built by our own
    code, so they are not validated again (an allocation may overflow thousands of candidates).
    """

    account: str
    lines: SkipValidation[tuple[dict[str, Any], ...]]


class RecoveryRecorded(Message):
    """A gap back-filled from REST minute bars: `records` go to the gap's `recovery_{HHMMSS}_{symbol}.jsonl`
    (seed format) and, one line per bar with `source: "recovery"`, to the symbol's tick file."""

    account: str
    gap: Gap
    records: tuple[RecoveryRecord, ...]


class GapMarked(Message):
    """A gap not (or not wholly) back-filled: a line of `system/gaps/{account}/YYYYMMDD_gaps.jsonl`."""

    account: str
    marker: GapMarker
