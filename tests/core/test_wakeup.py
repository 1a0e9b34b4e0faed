"""The wake-up sequence's record (`core.wakeup`), walked with freezegun: due times on each feed, a failed
step alerted once and retried a bounded number of times, the ready step, a start in the middle."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from freezegun import freeze_time

from config.settings import Settings
from core.schedule import DayEvent, day_boundaries
from core.settings import WakeupSettings
from core.wakeup import StepState, WakeupStep, missed_at_start, passed_before_start, plan_day
from runtime.clock import KST, SystemClock

MONDAY = date(2026, 9, 14)
UNIFIED = Settings().schedule
KRX = Settings(websocket={"feed": "krx"}).schedule
RETRY = WakeupSettings(max_retries=3, retry_seconds=60)


def due(schedule) -> dict[WakeupStep, time]:
    return {record.step: record.due_at.time() for record in plan_day(MONDAY, schedule).steps}


def test_the_krx_day_keeps_the_seeds_times_and_the_unified_day_the_same_distances_to_its_open() -> None:
    assert due(KRX) == {
        WakeupStep.WAKE: time(8, 0), WakeupStep.WS_PRECONNECT: time(8, 3),
        WakeupStep.SYSTEM_WARMUP: time(8, 5), WakeupStep.HEALTH_CHECK: time(8, 10),
        WakeupStep.TOKEN_REFRESH: time(8, 30), WakeupStep.HEALTH_AFTER_REFRESH: time(8, 30),
        WakeupStep.READY: time(8, 50),
    }
    assert due(UNIFIED) == {
        WakeupStep.WAKE: time(7, 0), WakeupStep.WS_PRECONNECT: time(7, 3),
        WakeupStep.SYSTEM_WARMUP: time(7, 5), WakeupStep.HEALTH_CHECK: time(7, 10),
        WakeupStep.TOKEN_REFRESH: time(7, 30), WakeupStep.HEALTH_AFTER_REFRESH: time(7, 30),
        WakeupStep.READY: time(7, 50),
    }
    custom = Settings(schedule={"health_check_time": "07:40"}).schedule
    assert due(custom)[WakeupStep.HEALTH_CHECK] == time(7, 40)


def test_each_step_is_a_day_event_of_the_schedule_at_its_time() -> None:
    events = {b.event: b.at.time() for b in day_boundaries(MONDAY, UNIFIED) if b.event is not None}
    steps = due(UNIFIED)
    pairs = ((DayEvent.WAKEUP, WakeupStep.WAKE), (DayEvent.WS_PRECONNECT, WakeupStep.WS_PRECONNECT),
             (DayEvent.SYSTEM_WARMUP, WakeupStep.SYSTEM_WARMUP),
             (DayEvent.HEALTH_CHECK, WakeupStep.HEALTH_CHECK),
             (DayEvent.TOKEN_REFRESH, WakeupStep.TOKEN_REFRESH), (DayEvent.READY, WakeupStep.READY))
    for event, step in pairs:
        assert events[event] == steps[step]


def test_a_failed_step_alerts_once_and_is_retried_until_it_succeeds_under_a_frozen_clock() -> None:
    clock = SystemClock()
    day = plan_day(MONDAY, UNIFIED)
    with freeze_time(datetime(2026, 9, 14, 7, 30, tzinfo=KST)) as frozen:
        day, first = day.with_result(WakeupStep.TOKEN_REFRESH, clock.now(), False, "EGW00201", RETRY)
        assert first.alert and not first.gave_up and first.retry_at == clock.now() + timedelta(seconds=60)
        assert day.record(WakeupStep.TOKEN_REFRESH).state is StepState.RETRYING
        assert day.next_step() is not None and day.next_step().step is WakeupStep.WAKE  # earlier ones pending

        frozen.tick(timedelta(seconds=59))
        assert day.retries_due(clock.now()) == ()
        frozen.tick(timedelta(seconds=1))
        assert day.retries_due(clock.now()) == (WakeupStep.TOKEN_REFRESH,)
        day, second = day.with_result(WakeupStep.TOKEN_REFRESH, clock.now(), False, "EGW00201", RETRY)
        assert not second.alert  # alerted once, at the first failure

        frozen.tick(timedelta(seconds=60))
        day, third = day.with_result(WakeupStep.TOKEN_REFRESH, clock.now(), True, "renewed", RETRY)
        assert not third.alert and third.retry_at is None
    record = day.record(WakeupStep.TOKEN_REFRESH)
    assert (record.state, record.attempts, record.detail) == (StepState.DONE, 3, "renewed")
    assert day.retries_due(datetime(2026, 9, 14, 8, 0, tzinfo=KST)) == ()


def test_retries_are_bounded_then_the_step_has_failed_for_the_day_and_ready_names_it() -> None:
    day = plan_day(MONDAY, UNIFIED)
    now = datetime(2026, 9, 14, 7, 10, tzinfo=KST)
    outcomes = []
    for _ in range(RETRY.max_retries + 1):
        day, outcome = day.with_result(WakeupStep.HEALTH_CHECK, now, False, "acct1: REST quote failed", RETRY)
        outcomes.append(outcome)
        now += timedelta(seconds=60)
    assert [o.alert for o in outcomes] == [True, False, False, False]
    assert [o.gave_up for o in outcomes] == [False, False, False, True]
    assert day.record(WakeupStep.HEALTH_CHECK).state is StepState.FAILED
    assert day.retries_due(now + timedelta(hours=1)) == ()
    for step in (WakeupStep.WAKE, WakeupStep.WS_PRECONNECT, WakeupStep.SYSTEM_WARMUP,
                 WakeupStep.TOKEN_REFRESH, WakeupStep.HEALTH_AFTER_REFRESH):
        day, _ = day.with_result(step, now, True, "ok", RETRY)
    assert day.unfinished() == (WakeupStep.HEALTH_CHECK,)
    rows = {row["step"]: row for row in day.status()}
    assert rows["health_check"]["state"] == "failed" and rows["health_check"]["attempts"] == 4
    assert rows["ready"]["state"] == "pending" and day.next_step().step is WakeupStep.READY


def test_no_retry_at_all_gives_up_at_the_first_failure_with_its_one_alert() -> None:
    day = plan_day(MONDAY, KRX)
    day, outcome = day.with_result(WakeupStep.SYSTEM_WARMUP, datetime(2026, 9, 14, 8, 5, tzinfo=KST), False,
                                   "universe not built", WakeupSettings(max_retries=0))
    assert outcome.alert and outcome.gave_up


def test_a_start_in_the_middle_runs_the_missed_steps_later_and_none_after_the_ready_time() -> None:
    day = plan_day(MONDAY, UNIFIED)
    start = datetime(2026, 9, 14, 7, 12, tzinfo=KST)
    missed = missed_at_start(day, start)
    assert missed == (WakeupStep.WAKE, WakeupStep.WS_PRECONNECT, WakeupStep.SYSTEM_WARMUP,
                      WakeupStep.HEALTH_CHECK)
    later = start + timedelta(seconds=60)
    day = day.deferred(missed, later)
    assert day.retries_due(start) == ()
    assert day.retries_due(later) == missed
    assert missed_at_start(plan_day(MONDAY, UNIFIED), datetime(2026, 9, 14, 7, 50, tzinfo=KST)) == ()
    assert missed_at_start(plan_day(MONDAY, UNIFIED), datetime(2026, 9, 14, 6, 59, tzinfo=KST)) == ()


def test_a_start_after_the_sequence_skips_the_steps_already_due() -> None:
    start = datetime(2026, 9, 14, 9, 25, tzinfo=KST)
    day = plan_day(MONDAY, UNIFIED)
    assert passed_before_start(day, datetime(2026, 9, 14, 7, 12, tzinfo=KST)) == ()
    passed = passed_before_start(day, start)
    assert passed == tuple(WakeupStep)
    day = day.skipped(passed, "started at 09:25")
    assert {r.state for r in day.steps} == {StepState.SKIPPED} and day.next_step() is None
