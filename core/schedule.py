"""The operation schedule: which phase a KST moment is in, and which boundaries lie between two moments.

Pure functions of time and the KRX calendar (no clock reads), so a scheduler that remembers the last
moment it looked at can ask `boundaries_between(last, now)` on every tick and never miss a phase change or
a day event, even after a jump of hours or days (a suspended VM, a fast simulated clock).

Trading days: IDLE -> WARMUP -> TRACK_A_ONLY -> FULL_OPERATION -> TRACK_A_CLOSING -> SHUTDOWN -> IDLE
(21:00). The phase times follow the trading sessions of the streamed feed (`core.settings`): with
the unified feed (KRX and Nextrade, 08:00-20:00) 07:00, 08:00, 08:30, 19:30 and 20:00; with the KRX
feed alone (09:00-15:30) 08:00, 09:00, 09:30, 15:00 and 15:30. Non-trading days stay IDLE.

Day events: UNIVERSE_BUILD (05:00), the wake-up sequence (WAKEUP with WARMUP, WS_PRECONNECT, SYSTEM_WARMUP,
HEALTH_CHECK, TOKEN_REFRESH half an hour before the open, READY; `core.wakeup`), CLOSING_PASS (KRX's close)
and DAILY_BACKUP (21:00) fire on trading days only. TOKEN_CHECK (23:00) fires every day, because a token ages
on holidays and weekends too and the check keeps it from expiring unnoticed before the next trading day.

At the same instant a phase change comes before an event (WARMUP, then WAKEUP), so whoever handles
the event already sees the new phase.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum
from functools import lru_cache

from pydantic import AwareDatetime, BaseModel, ConfigDict, model_validator

from core.calendar import KST, is_trading_day
from core.settings import DEFAULT_FEED, ScheduleSettings, SessionSettings


class Phase(StrEnum):
    IDLE = "idle"
    WARMUP = "warmup"
    TRACK_A_ONLY = "track_a_only"
    FULL_OPERATION = "full_operation"
    TRACK_A_CLOSING = "track_a_closing"
    SHUTDOWN = "shutdown"


class DayEvent(StrEnum):
    UNIVERSE_BUILD = "universe_build"
    WAKEUP = "wakeup"
    WS_PRECONNECT = "ws_preconnect"
    SYSTEM_WARMUP = "system_warmup"
    HEALTH_CHECK = "health_check"
    TOKEN_REFRESH = "token_refresh"
    READY = "ready"
    CLOSING_PASS = "closing_pass"
    DAILY_BACKUP = "daily_backup"
    TOKEN_CHECK = "token_check"


EVERY_DAY_EVENTS = frozenset({DayEvent.TOKEN_CHECK})
"""Events that fire on every calendar day; the others fire on trading days only."""

DEFAULT_SCHEDULE = ScheduleSettings().following(
    *SessionSettings().span(DEFAULT_FEED), SessionSettings().krx_close()
)
"""The default settings' schedule: the unified feed's trading day."""


class Boundary(BaseModel):
    """One scheduled instant: a phase change (`phase` with its `previous`) or a day event (`event`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
    phase: Phase | None = None
    previous: Phase | None = None
    event: DayEvent | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Boundary:
        if (self.phase is None) == (self.event is None):
            raise ValueError("a boundary is either a phase change or an event")
        if (self.phase is None) != (self.previous is None):
            raise ValueError("a phase change names its previous phase; an event has none")
        return self

    @property
    def is_phase_change(self) -> bool:
        return self.phase is not None


def phase_starts(schedule: ScheduleSettings = DEFAULT_SCHEDULE) -> tuple[tuple[time, Phase], ...]:
    """A trading day's phase changes in order, as (KST time, phase from then on)."""
    _require_resolved(schedule)
    return (
        (schedule.wakeup_time, Phase.WARMUP),
        (schedule.track_a_start, Phase.TRACK_A_ONLY),
        (schedule.track_b_start, Phase.FULL_OPERATION),
        (schedule.track_b_stop, Phase.TRACK_A_CLOSING),
        (schedule.track_a_stop, Phase.SHUTDOWN),
        (schedule.idle_time, Phase.IDLE),
    )


def event_times(schedule: ScheduleSettings = DEFAULT_SCHEDULE) -> tuple[tuple[time, DayEvent], ...]:
    """Every day event with its KST time (on a trading day; see EVERY_DAY_EVENTS for the others); the
    closing pass only when the schedule has one (KRX sessions configured)."""
    _require_resolved(schedule)
    events = [
        (schedule.universe_time, DayEvent.UNIVERSE_BUILD),
        (schedule.wakeup_time, DayEvent.WAKEUP),
        (schedule.preconnect_time, DayEvent.WS_PRECONNECT),
        (schedule.system_warmup_time, DayEvent.SYSTEM_WARMUP),
        (schedule.health_check_time, DayEvent.HEALTH_CHECK),
        (schedule.token_refresh_time, DayEvent.TOKEN_REFRESH),
        (schedule.ready_time, DayEvent.READY),
        (schedule.closing_pass_time, DayEvent.CLOSING_PASS),
        (schedule.backup_time, DayEvent.DAILY_BACKUP),
        (schedule.token_check_time, DayEvent.TOKEN_CHECK),
    ]
    return tuple((moment, event) for moment, event in events if moment is not None)


def phase_at(moment: datetime, schedule: ScheduleSettings = DEFAULT_SCHEDULE) -> Phase:
    """The operation phase at an aware `moment` (converted to KST)."""
    local = _kst(moment)
    if not is_trading_day(local.date()):
        return Phase.IDLE
    clock_time = local.time()
    current = Phase.IDLE
    for start, phase in phase_starts(schedule):
        if clock_time < start:
            break
        current = phase
    return current


def day_boundaries(day: date, schedule: ScheduleSettings = DEFAULT_SCHEDULE) -> list[Boundary]:
    """All boundaries of one KST calendar day, in order."""
    return list(_day_boundaries(day, schedule))


@lru_cache(maxsize=32)
def _day_boundaries(day: date, schedule: ScheduleSettings) -> tuple[Boundary, ...]:
    """Cached because a scheduler asks about the same day on every tick."""
    trading = is_trading_day(day)
    timed: list[tuple[time, int, Boundary]] = []
    if trading:
        previous = Phase.IDLE
        for start, phase in phase_starts(schedule):
            timed.append((start, 0, Boundary(at=_at(day, start), phase=phase, previous=previous)))
            previous = phase
    for moment, event in event_times(schedule):
        if trading or event in EVERY_DAY_EVENTS:
            timed.append((moment, 1, Boundary(at=_at(day, moment), event=event)))
    timed.sort(key=lambda item: (item[0], item[1]))
    return tuple(boundary for _, _, boundary in timed)


def boundaries_between(
    start: datetime, end: datetime, schedule: ScheduleSettings = DEFAULT_SCHEDULE
) -> list[Boundary]:
    """Every boundary with start < at <= end, in order; empty when `end` is not after `start`."""
    start, end = _kst(start), _kst(end)
    found: list[Boundary] = []
    day = start.date()
    while start < end and day <= end.date():
        found.extend(boundary for boundary in _day_boundaries(day, schedule) if start < boundary.at <= end)
        day += timedelta(days=1)
    return found


def next_boundary(after: datetime, schedule: ScheduleSettings = DEFAULT_SCHEDULE) -> Boundary:
    """The first boundary strictly after `after` (never more than two days away: TOKEN_CHECK is daily)."""
    after = _kst(after)
    day = after.date()
    while True:
        for boundary in _day_boundaries(day, schedule):
            if boundary.at > after:
                return boundary
        day += timedelta(days=1)


def _require_resolved(schedule: ScheduleSettings) -> None:
    if not schedule.resolved:
        raise ValueError("the schedule has unset phase times: take it from a Settings, which derives them")


def _at(day: date, moment: time) -> datetime:
    return datetime.combine(day, moment, tzinfo=KST)


def _kst(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("schedule functions need an aware datetime (KST from the injected clock)")
    return moment.astimezone(KST)
