"""Gaps in a symbol's tick stream: detection from tick times, expected gaps at reconnect, recovery policy.

Detection rule (`GapDetector.observe`, O(1) per tick, no allocation on the common path):

    silence > max(expected_interval + tolerance, quiet_symbol_factor x median(symbol's recent intervals))

The seed flags any silence above 500 + 200 ms. Real ticks only come when trades happen, so a quiet symbol
(a trade every few seconds) would flag nearly every tick. Each symbol therefore keeps a ring of its last
`HISTORY` intervals; the median of that ring, times the factor (10 by default), is its own threshold. The
median is only computed when a silence already exceeds the fixed threshold, so busy symbols never pay for it.
Every interval, flagged or not, enters the ring, so a symbol that turns quiet adapts after half a ring of
flags instead of flooding; one long outage barely moves the median. Until a symbol has `MIN_HISTORY`
intervals its cadence is unknown and nothing is flagged (the first silences after a subscription are learnt).
Ticks that arrive out of order (older than the newest seen) are ignored for timing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, computed_field, model_validator

from core.settings import GapSettings, RecoverySettings

UNEXPECTED = "unexpected_gap"
RECONNECT = "websocket_reconnect"
RESTART = "observer_restart"


class Gap(BaseModel):
    """A stretch of time in which `symbol` has (or may have) missed ticks.

    `expected` is True for gaps we caused and announced (reconnect, token refresh, the observer's own
    restart), False for silences the detector found. `reason` follows the seed: "websocket_reconnect",
    "token_refresh", "unexpected_gap"; and "observer_restart" for the time the observer was not running.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    start: AwareDatetime
    end: AwareDatetime
    expected: bool
    reason: str

    @model_validator(mode="after")
    def _ordered(self) -> Gap:
        if self.end < self.start:
            raise ValueError(f"gap for {self.symbol} ends ({self.end}) before it starts ({self.start})")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def duration_seconds(self) -> float:
        return (self.end - self.start).total_seconds()


class RecoveryAction(StrEnum):
    """The seed's recovery policy by gap duration."""

    IMMEDIATE = "immediate"  # < 5 s: back-fill from REST at once
    QUEUED = "queued"  # 5-60 s: back-fill from the recovery queue
    MARKER_ONLY = "marker_only"  # > 60 s: write a gap marker, no back-fill


def recovery_action(gap: Gap, settings: RecoverySettings) -> RecoveryAction:
    """Below immediate_below_seconds: IMMEDIATE; up to queued_up_to_seconds (inclusive): QUEUED; longer:
    MARKER_ONLY. So exactly 5 s is queued and exactly 60 s is still queued, as the seed's table reads."""
    duration = gap.duration_seconds
    if duration < settings.immediate_below_seconds:
        return RecoveryAction.IMMEDIATE
    if duration <= settings.queued_up_to_seconds:
        return RecoveryAction.QUEUED
    return RecoveryAction.MARKER_ONLY


def mark_expected_gaps(
    symbols: Iterable[str], start: datetime, end: datetime, reason: str = RECONNECT
) -> tuple[Gap, ...]:
    """One expected gap per symbol (each symbol once, in the given order) for an outage we know about."""
    return tuple(Gap(symbol=symbol, start=start, end=end, expected=True, reason=reason)
                 for symbol in dict.fromkeys(symbols))


class _Track:
    """Per-symbol timing: newest tick time and a ring of recent intervals (seconds)."""

    __slots__ = ("count", "intervals", "last_at", "position")

    def __init__(self, last_at: datetime, size: int) -> None:
        self.last_at = last_at
        self.intervals = [0.0] * size
        self.position = 0
        self.count = 0


class GapDetector:
    """Finds unexpected silences in each symbol's ticks (rule in the module docstring).

    Mutable, single-owner state (one per connection actor); pure in the sense that time only comes in as
    the tick times it is given.
    """

    HISTORY = 16
    MIN_HISTORY = 3

    def __init__(self, settings: GapSettings) -> None:
        self._base = (settings.expected_interval_ms + settings.tolerance_ms) / 1000.0
        self._factor = settings.quiet_symbol_factor
        self._tracks: dict[str, _Track] = {}

    def observe(self, symbol: str, at: datetime) -> Gap | None:
        """Record a tick of `symbol` at `at`; return the unexpected gap it ends, if any."""
        track = self._tracks.get(symbol)
        if track is None:
            self._tracks[symbol] = _Track(at, self.HISTORY)
            return None
        previous = track.last_at
        silence = (at - previous).total_seconds()  # exact to the microsecond, unlike epoch floats
        if silence < 0:
            return None
        track.last_at = at
        flagged = (silence > self._base and track.count >= self.MIN_HISTORY
                   and silence > self._threshold(track))
        track.intervals[track.position] = silence
        track.position = (track.position + 1) % self.HISTORY
        if track.count < self.HISTORY:
            track.count += 1
        if not flagged:
            return None
        return Gap(symbol=symbol, start=previous, end=at, expected=False, reason=UNEXPECTED)

    def threshold_seconds(self, symbol: str) -> float | None:
        """The silence above which `symbol` would be flagged now (None while its cadence is unknown)."""
        track = self._tracks.get(symbol)
        if track is None or track.count < self.MIN_HISTORY:
            return None
        return max(self._base, self._threshold(track))

    def mark_expected(
        self, symbols: Iterable[str], start: datetime, end: datetime, reason: str = RECONNECT
    ) -> tuple[Gap, ...]:
        """Announce an outage (reconnect) for `symbols`: return their expected gaps and restart their clocks
        at `end`, so the first tick after the reconnect does not report the same silence again."""
        gaps = mark_expected_gaps(symbols, start, end, reason)
        for gap in gaps:
            track = self._tracks.get(gap.symbol)
            if track is not None and end > track.last_at:
                track.last_at = end
        return gaps

    def forget(self, symbols: Iterable[str]) -> None:
        """Drop unsubscribed symbols, so memory follows the slots and a re-subscription starts fresh."""
        for symbol in symbols:
            self._tracks.pop(symbol, None)

    def retarget(self, previous: Iterable[str], target: Iterable[str]) -> tuple[str, ...]:
        """A connection's target set went from `previous` to `target`: the symbols that left it and those
        that joined it are forgotten (and returned, sorted). A symbol taken back after a replacement starts
        fresh, so the time it was not subscribed is no silence; ticks of a dropped one still in flight
        after its removal are forgotten again when it comes back."""
        changed = tuple(sorted(set(previous) ^ set(target)))
        self.forget(changed)
        return changed

    def _threshold(self, track: _Track) -> float:
        recent = sorted(track.intervals[: track.count])
        return self._factor * recent[len(recent) // 2]
