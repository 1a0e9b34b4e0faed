"""The pre-market wake-up sequence (symbol_selection_architecture.md "System Wake-up and Pre-Market
Preparation"): which step is due, what each outcome does to the day's record, and what the status shows.

Steps, at the schedule's times (the seed's 08:00-08:50 on a KRX day; the unified feed, which opens at 08:00,
keeps the same distances to its open: 07:00-07:50):

    wake -> ws_preconnect -> system_warmup -> health_check -> token_refresh -> health_after_refresh -> ready

`health_after_refresh` is due as soon as the token refresh succeeds (the seed's "[5/5] health check"). A
failed step is alerted once (its first failure) and tried again `retry_seconds` later, at most
`max_retries` times; then it has failed for the day, and `ready` says so. A process that starts during
the sequence runs the steps it missed `retry_seconds` after its start (`deferred`), once the other actors
are up. Pure: the actor that runs the steps
(`actors.tokens`) passes the time in and keeps the record it gets back.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from core.calendar import KST
from core.settings import ScheduleSettings, WakeupSettings


class WakeupStep(StrEnum):
    WAKE = "wake"
    WS_PRECONNECT = "ws_preconnect"
    SYSTEM_WARMUP = "system_warmup"
    HEALTH_CHECK = "health_check"
    TOKEN_REFRESH = "token_refresh"
    HEALTH_AFTER_REFRESH = "health_after_refresh"
    READY = "ready"


class StepState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    RETRYING = "retrying"
    FAILED = "failed"
    """Given up for the day after its retries."""
    SKIPPED = "skipped"
    """Due before a start after the whole sequence: not run that day."""


class StepRecord(BaseModel):
    """One step of one day: when it is due, how it went, and when it is tried again."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: WakeupStep
    due_at: AwareDatetime
    state: StepState = StepState.PENDING
    attempts: int = 0
    last_at: AwareDatetime | None = None
    retry_at: AwareDatetime | None = None
    detail: str = ""


class Outcome(BaseModel):
    """What one attempt's result asks of the actor: alert (the step's first failure), give up, or retry."""

    model_config = ConfigDict(frozen=True)

    alert: bool = False
    gave_up: bool = False
    retry_at: AwareDatetime | None = None


class WakeupDay(BaseModel):
    """The sequence of one trading day, step by step in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    day: date
    steps: tuple[StepRecord, ...]

    def record(self, step: WakeupStep) -> StepRecord:
        return next(record for record in self.steps if record.step is step)

    def done(self, step: WakeupStep) -> bool:
        return self.record(step).state is StepState.DONE

    def unfinished(self) -> tuple[WakeupStep, ...]:
        """The steps before `ready` that are not done."""
        return tuple(r.step for r in self.steps
                     if r.step is not WakeupStep.READY and r.state is not StepState.DONE)

    def next_step(self) -> StepRecord | None:
        """The first step not done and not given up (what the status calls next)."""
        return next((r for r in self.steps if r.state in (StepState.PENDING, StepState.RETRYING)), None)

    def retries_due(self, now: datetime) -> tuple[WakeupStep, ...]:
        """Steps to try (again) now: failed ones whose retry time has come, and deferred ones (`deferred`)."""
        return tuple(r.step for r in self.steps if r.state in (StepState.PENDING, StepState.RETRYING)
                     and r.retry_at is not None and r.retry_at <= now)

    def skipped(self, steps: tuple[WakeupStep, ...], detail: str) -> WakeupDay:
        """The day with `steps` marked as not run (the process started after the sequence)."""
        records = tuple(r.model_copy(update={"state": StepState.SKIPPED, "detail": detail})
                        if r.step in steps else r for r in self.steps)
        return self.model_copy(update={"steps": records})

    def deferred(self, steps: tuple[WakeupStep, ...], until: datetime) -> WakeupDay:
        """The day with `steps` (still pending) to be run at `until` instead of at their own event."""
        records = tuple(r.model_copy(update={"retry_at": until}) if r.step in steps else r
                        for r in self.steps)
        return self.model_copy(update={"steps": records})

    def with_result(
        self, step: WakeupStep, now: datetime, ok: bool, detail: str, settings: WakeupSettings
    ) -> tuple[WakeupDay, Outcome]:
        """The day after one attempt of `step` at `now` succeeded (`ok`) or failed, and what to do next."""
        held = self.record(step)
        attempts = held.attempts + 1
        if ok:
            updated = held.model_copy(update={"state": StepState.DONE, "attempts": attempts, "last_at": now,
                                              "retry_at": None, "detail": detail})
            outcome = Outcome()
        elif attempts > settings.max_retries:
            updated = held.model_copy(update={"state": StepState.FAILED, "attempts": attempts, "last_at": now,
                                              "retry_at": None, "detail": detail})
            outcome = Outcome(alert=attempts == 1, gave_up=True)
        else:
            retry_at = now + timedelta(seconds=settings.retry_seconds)
            updated = held.model_copy(update={"state": StepState.RETRYING, "attempts": attempts,
                                              "last_at": now, "retry_at": retry_at, "detail": detail})
            outcome = Outcome(alert=attempts == 1, retry_at=retry_at)
        steps = tuple(updated if record.step is step else record for record in self.steps)
        return self.model_copy(update={"steps": steps}), outcome

    def status(self) -> list[dict[str, object]]:
        """JSON-ready rows for the status surfaces: step, due time, state, attempts, detail."""
        return [
            {"step": r.step.value, "due_at": r.due_at.isoformat(), "state": r.state.value,
             "attempts": r.attempts, "detail": r.detail,
             "retry_at": r.retry_at.isoformat() if r.retry_at else None}
            for r in self.steps
        ]


def step_times(schedule: ScheduleSettings) -> tuple[tuple[WakeupStep, time], ...]:
    """Each step's KST time in a resolved schedule (the health check after the refresh: the refresh's)."""
    if not schedule.resolved:
        raise ValueError("the schedule has unset wake-up times: take it from a Settings, which derives them")
    times = (
        (WakeupStep.WAKE, schedule.wakeup_time),
        (WakeupStep.WS_PRECONNECT, schedule.preconnect_time),
        (WakeupStep.SYSTEM_WARMUP, schedule.system_warmup_time),
        (WakeupStep.HEALTH_CHECK, schedule.health_check_time),
        (WakeupStep.TOKEN_REFRESH, schedule.token_refresh_time),
        (WakeupStep.HEALTH_AFTER_REFRESH, schedule.token_refresh_time),
        (WakeupStep.READY, schedule.ready_time),
    )
    return tuple((step, moment) for step, moment in times if moment is not None)


def plan_day(day: date, schedule: ScheduleSettings) -> WakeupDay:
    """The day's steps, all pending, due at the schedule's KST times."""
    return WakeupDay(day=day, steps=tuple(
        StepRecord(step=step, due_at=datetime.combine(day, moment, tzinfo=KST))
        for step, moment in step_times(schedule)
    ))


def passed_before_start(plan: WakeupDay, now: datetime) -> tuple[WakeupStep, ...]:
    """Steps a process starting at `now`, after the ready step's time, never runs today."""
    if now < plan.record(WakeupStep.READY).due_at:
        return ()
    return tuple(r.step for r in plan.steps if r.state is StepState.PENDING and r.due_at <= now)


def missed_at_start(plan: WakeupDay, now: datetime) -> tuple[WakeupStep, ...]:
    """Steps a process starting at `now` has missed today: those already due and still pending, while the
    sequence is not over (before the ready step's time)."""
    if now >= plan.record(WakeupStep.READY).due_at:
        return ()
    return tuple(r.step for r in plan.steps
                 if r.state is StepState.PENDING and r.due_at <= now
                 and r.step is not WakeupStep.HEALTH_AFTER_REFRESH)
