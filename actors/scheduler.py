"""SchedulerActor: tells every other running actor the phase changes and day events as they fall due.

Time is only ever read from the injected clock. A ticker thread nudges the actor with `ClockTick`; on each
tick the actor lists `core.schedule.boundaries_between(last, now)` and tells each boundary, in order, to
every running child but itself. A pause (suspended VM, a jump of the simulated clock, a restart) therefore
never loses a boundary: the next tick catches up on all of them, and non-trading days yield none because the
schedule module knows the KRX calendar. An `ask(ClockTick)` is handled the same way and answers with the
messages it sent, which makes it the barrier time-travel tests use.

Cadence: the scheduler sends boundaries only. Actors that need periodic work (scan interval, token
check, flushes) run their own `runtime.ticker.Ticker`, so each cadence is expressed in its owner's terms
and a slow recipient never delays the schedule.

The last moment looked at is saved in the state store whenever boundaries went out, so a restarted
scheduler resumes from there (bounded by `RESUME_WINDOW`: after a long outage actors compute their phase
with `phase_at` on start, and replaying hours of stale events would only confuse them).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from core.schedule import boundaries_between, phase_at
from messages.schedule import ClockTick, DayEventFired, PhaseChanged, message_for
from runtime.ticker import Ticker

STATE_NAME = "scheduler"
RESUME_WINDOW = timedelta(hours=1)
MIN_TICK_SECONDS = 0.2
MAX_TICK_SECONDS = 1.0
SIMULATED_SECONDS_PER_TICK = 5.0
"""At speed s the ticker fires every 5/s real seconds, kept within [0.2, 1] s: 1 s on the wall clock,
0.2 s (one tick per 12 simulated seconds) at 60x, so a phase change is noticed within a few seconds of
simulated time without waking the process more than 5 times a second."""


def tick_interval_seconds(speed: float) -> float:
    """Real seconds between clock ticks for a clock running `speed` times real time (0: manual clock)."""
    if speed <= 0:
        return MIN_TICK_SECONDS
    return min(MAX_TICK_SECONDS, max(MIN_TICK_SECONDS, SIMULATED_SECONDS_PER_TICK / speed))


class SchedulerActor(ObserverActor):
    """Child id `scheduler`. Handles `ClockTick` (told by its ticker or asked by tests)."""

    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        tick_seconds: float | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self.tick_seconds = tick_seconds or tick_interval_seconds(context.clock.speed)
        self._state = context.state_store()
        self._last: datetime = context.clock.now()
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        now = self.context.clock.now()
        self._last = self._resume_point(now)
        phase = phase_at(now, self.context.settings.schedule)
        self.context.metrics.set("phase", phase.value)
        self.context.metrics.append_unique("phases_seen", [phase.value])
        self.log.info("scheduler started at {:%Y-%m-%d %H:%M:%S} in phase {}", now, phase.value)
        self._ticker = Ticker(
            self.actor_ref,
            lambda: ClockTick(at=self.context.clock.now()),
            self.tick_seconds,
            name=f"{self.name}-ticker",
        ).start()
        self._catch_up(now)

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
        self._save()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, ClockTick):
            return self._catch_up(self.context.clock.now())
        self.log.warning("scheduler ignores {}", type(message).__name__)
        return None

    def _catch_up(self, now: datetime) -> tuple[PhaseChanged | DayEventFired, ...]:
        """Tell every boundary in (last, now] to every other running child; return what was sent."""
        if now < self._last:
            self.log.warning("clock went back from {} to {}; waiting for it to pass again", self._last, now)
            return ()
        boundaries = boundaries_between(self._last, now, self.context.settings.schedule)
        self._last = now
        sent = tuple(message_for(boundary) for boundary in boundaries)
        if not sent:
            return sent
        everyone = (*self.directory.child_ids(), *sorted(self.directory.remote_ids()))
        recipients = [child for child in everyone if child != self.name]
        for message in sent:
            self._note(message, now)
            for child in recipients:
                self.directory.tell(child, message)
        self._save()
        return sent

    def _note(self, message: PhaseChanged | DayEventFired, now: datetime) -> None:
        self.context.spine.publish(message)
        late = (now - message.at).total_seconds()
        suffix = f" (noticed {late:.0f} s late)" if late >= 60 else ""
        if isinstance(message, PhaseChanged):
            self.context.metrics.set("phase", message.phase.value)
            self.context.metrics.append_unique("phases_seen", [message.phase.value])
            self.log.info(
                "phase {} -> {} at {:%Y-%m-%d %H:%M}{}", message.previous, message.phase, message.at, suffix
            )
        else:
            self.log.info("day event {} at {:%Y-%m-%d %H:%M}{}", message.event, message.at, suffix)

    def _resume_point(self, now: datetime) -> datetime:
        saved = self._state.load(STATE_NAME)
        if not saved:
            return now
        try:
            last = datetime.fromisoformat(str(saved["last"]))
        except (KeyError, ValueError):
            self.log.warning("scheduler state has no readable 'last' moment; starting from now")
            return now
        if last.tzinfo is None or last > now:
            return now
        return max(last, now - RESUME_WINDOW)

    def _save(self) -> None:
        self._state.save(STATE_NAME, {"last": self._last.isoformat()})
