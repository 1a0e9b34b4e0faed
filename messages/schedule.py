"""What the scheduler tells the other actors: clock ticks, phase changes and the day's fixed events."""

from __future__ import annotations

from core.schedule import Boundary, DayEvent, Phase
from messages.base import Message


class ClockTick(Message):
    """A periodic nudge from the ticker thread; `at` is the clock's time when it fired."""


class PhaseChanged(Message):
    """The operation phase became `phase` at the scheduled instant `at` (it was `previous` before)."""

    phase: Phase
    previous: Phase


class DayEventFired(Message):
    """The day event `event` fell due at the scheduled instant `at`."""

    event: DayEvent


def message_for(boundary: Boundary) -> PhaseChanged | DayEventFired:
    """The message announcing `boundary`, stamped with its scheduled instant (even when noticed late)."""
    if boundary.event is not None:
        return DayEventFired(at=boundary.at, event=boundary.event)
    fields = {"at": boundary.at, "phase": boundary.phase, "previous": boundary.previous}
    return PhaseChanged.model_validate(fields)
