"""Commands from the control surface (HTTP API, `run.py ctl`) to the control actors, asked for a reply.

Each command is asked (request and reply): the actor answers with one sentence saying what it did, so the
surface can hand it back to whoever sent the command. `ManualOverride` (pin / unpin) lives in
`messages.selection`.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from messages.base import Message

MAX_TRIGGER_TTL_SECONDS = 6.5 * 3600
"""A manual trigger lives at most one trading session (09:00-15:30)."""
MAX_PICKS = 200
"""The most picks one load takes."""


class ManualTrigger(Message):
    """A manual trigger on `symbol` that expires after `ttl_seconds` (a pin never expires)."""

    symbol: str
    ttl_seconds: float = Field(gt=0, le=MAX_TRIGGER_TTL_SECONDS)


class Pick(BaseModel):
    """One of the day's picks; `score` in [0, 1] is the trigger's strength (1 when not given)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    score: float = Field(default=1.0, ge=0.0, le=1.0)


class PicksLoaded(Message):
    """The day's picks: they replace the previous picks tier (manual triggers until 15:30) at `apply_at`,
    or at once when it is None or past."""

    picks: tuple[Pick, ...]
    apply_at: AwareDatetime | None = None


class ScanNow(Message):
    """Start a Track A pass now (unless one is running), whatever the interval says."""


class TrackBPaused(Message):
    """Pause (`paused`) or resume Track B: while paused every account's target set is empty."""

    paused: bool
