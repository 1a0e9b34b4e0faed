"""Symbol selection: ranked candidates for the slot manager, manual overrides, and the Track B start."""

from __future__ import annotations

from core.context_sync import BaselineMetrics
from core.models import Candidate
from messages.base import Message


class CandidatesRanked(Message):
    """Every live candidate, best first (one per symbol)."""

    candidates: tuple[Candidate, ...]


class ContextSynced(Message):
    """Track B may start: baselines and opening movers from the first 30 minutes of Track A.

    `degraded` says why there is no context (too few snapshots): then `baseline` is None and there are no
    movers, and Track B starts without context (the seed's degraded mode)."""

    movers: tuple[Candidate, ...]
    baseline: BaselineMetrics | None = None
    degraded: str | None = None


class ContextSyncDay(Message):
    """Ask `scanner` the day of its last context sync: a `date`, or None if it has not synced yet.

    A slot manager that starts without its saved state asks this: the day's ContextSynced may have passed.
    """


class ManualOverride(Message):
    """Pin (`active`) or unpin a symbol by hand; a pinned symbol holds its slot and is never evicted."""

    symbol: str
    active: bool = True
