"""Operation phases and day boundaries, walked through time with freezegun and the system clock.

Most tests walk the KRX feed's day (09:00-15:30 sessions, the design's original times); the default
unified feed's day (KRX and Nextrade, 08:00-20:00) has its own tests at the end.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from freezegun import freeze_time
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import Settings
from core import schedule as core_schedule
from core.schedule import DEFAULT_SCHEDULE, Boundary, DayEvent, Phase
from core.sessions import Venue, open_sessions, venue_of
from core.settings import ScheduleSettings, SessionSettings, TradingSession
from messages.schedule import ClockTick, DayEventFired, PhaseChanged, message_for
from runtime.clock import KST, SystemClock

TRADING_MONDAY = datetime(2026, 9, 14, tzinfo=KST)
SATURDAY = datetime(2026, 9, 19, tzinfo=KST)
CHUSEOK = datetime(2026, 9, 25, tzinfo=KST)  # Friday, an exchange holiday

TRADING_DAY_SEQUENCE = [
    ("05:00", None, DayEvent.UNIVERSE_BUILD),
    ("08:00", Phase.WARMUP, None),
    ("08:00", None, DayEvent.WAKEUP),
    ("08:03", None, DayEvent.WS_PRECONNECT),
    ("08:05", None, DayEvent.SYSTEM_WARMUP),
    ("08:10", None, DayEvent.HEALTH_CHECK),
    ("08:30", None, DayEvent.TOKEN_REFRESH),
    ("08:50", None, DayEvent.READY),
    ("09:00", Phase.TRACK_A_ONLY, None),
    ("09:30", Phase.FULL_OPERATION, None),
    ("15:00", Phase.TRACK_A_CLOSING, None),
    ("15:30", Phase.SHUTDOWN, None),
    ("15:30", None, DayEvent.CLOSING_PASS),
    ("21:00", Phase.IDLE, None),
    ("21:00", None, DayEvent.DAILY_BACKUP),
    ("23:00", None, DayEvent.TOKEN_CHECK),
]


KRX_DAY = Settings(websocket={"feed": "krx"}).schedule


def phase_at(moment: datetime, schedule: ScheduleSettings = KRX_DAY) -> Phase:
    return core_schedule.phase_at(moment, schedule)


def boundaries_between(
    start: datetime, end: datetime, schedule: ScheduleSettings = KRX_DAY
) -> list[Boundary]:
    return core_schedule.boundaries_between(start, end, schedule)


def day_boundaries(day: date, schedule: ScheduleSettings = KRX_DAY) -> list[Boundary]:
    return core_schedule.day_boundaries(day, schedule)


def next_boundary(after: datetime, schedule: ScheduleSettings = KRX_DAY) -> Boundary:
    return core_schedule.next_boundary(after, schedule)


def summary(boundaries: list[Boundary]) -> list[tuple[str, Phase | None, DayEvent | None]]:
    return [(b.at.strftime("%H:%M"), b.phase, b.event) for b in boundaries]


def walk(day_start: datetime, step: timedelta) -> tuple[list[Boundary], list[tuple[datetime, Phase]]]:
    """Drive the system clock through one day as a scheduler would: list boundaries since the last look."""
    clock = SystemClock()
    seen: list[Boundary] = []
    phases: list[tuple[datetime, Phase]] = []
    with freeze_time(day_start) as frozen:
        last = clock.now()
        assert last == day_start
        while last < day_start + timedelta(days=1):
            frozen.move_to(last + step)
            now = clock.now()
            seen.extend(boundaries_between(last, now))
            phases.append((now, phase_at(now)))
            last = now
    return seen, phases


@pytest.mark.parametrize(
    ("clock_time", "phase"),
    [
        (time(0, 0), Phase.IDLE),
        (time(5, 0), Phase.IDLE),
        (time(7, 59, 59, 999999), Phase.IDLE),
        (time(8, 0), Phase.WARMUP),
        (time(8, 59, 59), Phase.WARMUP),
        (time(9, 0), Phase.TRACK_A_ONLY),
        (time(9, 29), Phase.TRACK_A_ONLY),
        (time(9, 30), Phase.FULL_OPERATION),
        (time(12, 0), Phase.FULL_OPERATION),
        (time(15, 0), Phase.TRACK_A_CLOSING),
        (time(15, 30), Phase.SHUTDOWN),
        (time(20, 59, 59), Phase.SHUTDOWN),
        (time(21, 0), Phase.IDLE),
        (time(23, 59, 59), Phase.IDLE),
    ],
)
def test_phase_of_a_trading_day_under_a_frozen_system_clock(clock_time: time, phase: Phase) -> None:
    moment = datetime.combine(TRADING_MONDAY.date(), clock_time, tzinfo=KST)
    with freeze_time(moment):
        now = SystemClock().now()
        assert now == moment and now.utcoffset() == timedelta(hours=9)
        assert phase_at(now) is phase


def test_walking_a_trading_day_sees_every_boundary_once_in_order() -> None:
    seen, phases = walk(TRADING_MONDAY, timedelta(minutes=7))
    assert summary(seen) == TRADING_DAY_SEQUENCE
    changes = [b for b in seen if b.is_phase_change]
    assert [b.previous for b in changes] == [
        Phase.IDLE,
        Phase.WARMUP,
        Phase.TRACK_A_ONLY,
        Phase.FULL_OPERATION,
        Phase.TRACK_A_CLOSING,
        Phase.SHUTDOWN,
    ]
    distinct_in_order = [phase for i, (_, phase) in enumerate(phases) if i == 0 or phase != phases[i - 1][1]]
    assert distinct_in_order == [
        Phase.IDLE,
        Phase.WARMUP,
        Phase.TRACK_A_ONLY,
        Phase.FULL_OPERATION,
        Phase.TRACK_A_CLOSING,
        Phase.SHUTDOWN,
        Phase.IDLE,
    ]


def test_one_jump_over_the_whole_day_loses_nothing() -> None:
    with freeze_time(TRADING_MONDAY) as frozen:
        start = SystemClock().now()
        frozen.move_to(TRADING_MONDAY + timedelta(hours=23, minutes=59))
        assert summary(boundaries_between(start, SystemClock().now())) == TRADING_DAY_SEQUENCE


@pytest.mark.parametrize("day_start", [SATURDAY, CHUSEOK], ids=["saturday", "chuseok"])
def test_closed_days_stay_idle_with_only_the_token_check(day_start: datetime) -> None:
    seen, phases = walk(day_start, timedelta(minutes=13))
    assert {phase for _, phase in phases} == {Phase.IDLE}
    assert summary(seen) == [("23:00", None, DayEvent.TOKEN_CHECK)]


def test_jump_over_chuseok_and_the_weekend() -> None:
    wednesday_noon = datetime(2026, 9, 23, 12, 0, tzinfo=KST)
    with freeze_time(wednesday_noon) as frozen:
        clock = SystemClock()
        start = clock.now()
        frozen.move_to(datetime(2026, 9, 28, 9, 0, tzinfo=KST))
        seen = boundaries_between(start, clock.now())
        assert phase_at(clock.now()) is Phase.TRACK_A_ONLY
    assert [(b.at.date().day, b.at.strftime("%H:%M"), b.phase or b.event) for b in seen] == [
        (23, "15:00", Phase.TRACK_A_CLOSING),
        (23, "15:30", Phase.SHUTDOWN),
        (23, "15:30", DayEvent.CLOSING_PASS),
        (23, "21:00", Phase.IDLE),
        (23, "21:00", DayEvent.DAILY_BACKUP),
        (23, "23:00", DayEvent.TOKEN_CHECK),
        (24, "23:00", DayEvent.TOKEN_CHECK),
        (25, "23:00", DayEvent.TOKEN_CHECK),
        (26, "23:00", DayEvent.TOKEN_CHECK),
        (27, "23:00", DayEvent.TOKEN_CHECK),
        (28, "05:00", DayEvent.UNIVERSE_BUILD),
        (28, "08:00", Phase.WARMUP),
        (28, "08:00", DayEvent.WAKEUP),
        (28, "08:03", DayEvent.WS_PRECONNECT),
        (28, "08:05", DayEvent.SYSTEM_WARMUP),
        (28, "08:10", DayEvent.HEALTH_CHECK),
        (28, "08:30", DayEvent.TOKEN_REFRESH),
        (28, "08:50", DayEvent.READY),
        (28, "09:00", Phase.TRACK_A_ONLY),
    ]


def test_start_is_exclusive_and_end_inclusive() -> None:
    nine = TRADING_MONDAY.replace(hour=9)
    half_past = TRADING_MONDAY.replace(hour=9, minute=30)
    assert summary(boundaries_between(nine, half_past)) == [("09:30", Phase.FULL_OPERATION, None)]
    assert boundaries_between(nine, nine) == []
    assert boundaries_between(half_past, nine) == []


def test_other_zones_are_converted_to_kst() -> None:
    utc_midnight = datetime(2026, 9, 14, 0, 0, tzinfo=UTC)  # 09:00 KST
    assert phase_at(utc_midnight) is Phase.TRACK_A_ONLY
    sunday_utc = datetime(2026, 9, 13, 23, 30, tzinfo=UTC)  # Monday 08:30 KST
    assert phase_at(sunday_utc) is Phase.WARMUP
    (boundary,) = boundaries_between(datetime(2026, 9, 13, 23, 59, tzinfo=UTC), utc_midnight)
    assert boundary.at == utc_midnight and boundary.at.tzinfo == KST


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        phase_at(datetime(2026, 9, 14, 9, 0))
    with pytest.raises(ValueError, match="aware"):
        boundaries_between(datetime(2026, 9, 14, 9, 0), TRADING_MONDAY)


def test_custom_schedule_times_move_the_phases() -> None:
    late_open = Settings(
        websocket={"feed": "krx"}, schedule={"track_a_start": "10:00", "track_b_start": "10:30"}
    ).schedule
    assert phase_at(TRADING_MONDAY.replace(hour=9, minute=45), late_open) is Phase.WARMUP
    assert phase_at(TRADING_MONDAY.replace(hour=10, minute=15), late_open) is Phase.TRACK_A_ONLY
    times = [b.at.strftime("%H:%M") for b in day_boundaries(TRADING_MONDAY.date(), late_open) if b.phase]
    assert times == ["08:00", "10:00", "10:30", "15:00", "15:30", "21:00"]


def test_schedule_phase_times_must_be_in_order() -> None:
    with pytest.raises(ValidationError, match="phase times must increase"):
        ScheduleSettings(**{**KRX_DAY.model_dump(), "track_b_stop": time(16, 0)})
    with pytest.raises(ValidationError, match="phase times must increase"):
        Settings(websocket={"feed": "krx"}, schedule={"track_b_stop": "16:00"})


def test_an_unresolved_schedule_is_refused_by_the_schedule_functions() -> None:
    with pytest.raises(ValueError, match="unset phase times"):
        core_schedule.phase_at(TRADING_MONDAY, ScheduleSettings())


UNIFIED_DAY_SEQUENCE = [
    ("05:00", None, DayEvent.UNIVERSE_BUILD),
    ("07:00", Phase.WARMUP, None),
    ("07:00", None, DayEvent.WAKEUP),
    ("07:03", None, DayEvent.WS_PRECONNECT),
    ("07:05", None, DayEvent.SYSTEM_WARMUP),
    ("07:10", None, DayEvent.HEALTH_CHECK),
    ("07:30", None, DayEvent.TOKEN_REFRESH),
    ("07:50", None, DayEvent.READY),
    ("08:00", Phase.TRACK_A_ONLY, None),
    ("08:30", Phase.FULL_OPERATION, None),
    ("15:30", None, DayEvent.CLOSING_PASS),
    ("19:30", Phase.TRACK_A_CLOSING, None),
    ("20:00", Phase.SHUTDOWN, None),
    ("21:00", Phase.IDLE, None),
    ("21:00", None, DayEvent.DAILY_BACKUP),
    ("23:00", None, DayEvent.TOKEN_CHECK),
]


def test_the_default_day_follows_the_unified_feed_from_nextrades_pre_market_to_its_after_market() -> None:
    assert Settings().websocket.feed == "unified" and Settings().schedule == DEFAULT_SCHEDULE
    day = core_schedule.day_boundaries(TRADING_MONDAY.date())
    assert summary(day) == UNIFIED_DAY_SEQUENCE
    assert core_schedule.phase_at(TRADING_MONDAY.replace(hour=8, minute=40)) is Phase.FULL_OPERATION
    assert core_schedule.phase_at(TRADING_MONDAY.replace(hour=17)) is Phase.FULL_OPERATION


def test_each_feed_takes_the_span_of_its_venues_sessions() -> None:
    nxt = Settings(websocket={"feed": "nxt"}).schedule
    assert (nxt.track_a_start, nxt.track_a_stop) == (time(8, 0), time(20, 0))
    krx = (KRX_DAY.wakeup_time, KRX_DAY.track_b_start, KRX_DAY.track_b_stop)
    assert krx == (time(8), time(9, 30), time(15))


def test_a_new_krx_session_in_the_settings_moves_the_krx_feeds_day() -> None:
    sessions = SessionSettings(krx=(
        TradingSession(name="pre", start=time(8, 0), end=time(8, 50)),
        TradingSession(name="regular", start=time(9, 0), end=time(15, 30)),
        TradingSession(name="after", start=time(15, 30), end=time(20, 0)),
    ))
    krx = Settings(websocket={"feed": "krx"}, sessions=sessions).schedule
    assert (krx.track_a_start, krx.track_b_start, krx.track_a_stop) == (time(8), time(8, 30), time(20))


def test_an_explicit_phase_time_wins_over_the_derived_one() -> None:
    schedule = Settings(schedule={"track_b_stop": "15:00", "track_a_stop": "15:30"}).schedule
    assert (schedule.track_a_start, schedule.track_b_stop, schedule.track_a_stop) == (
        time(8), time(15), time(15, 30)
    )


def test_sessions_must_not_overlap_and_must_end_after_they_start() -> None:
    with pytest.raises(ValidationError, match="overlap"):
        SessionSettings(nxt=(
            TradingSession(name="a", start=time(8), end=time(10)),
            TradingSession(name="b", start=time(9), end=time(11)),
        ))
    with pytest.raises(ValidationError, match="start before it ends"):
        TradingSession(name="a", start=time(10), end=time(9))


@pytest.mark.parametrize(
    ("feed", "clock_time", "venue"),
    [
        ("unified", time(8, 10), Venue.NXT),
        ("unified", time(10, 0), Venue.UNIFIED),
        ("unified", time(15, 25), Venue.KRX),
        ("unified", time(17, 0), Venue.NXT),
        ("krx", time(10, 0), Venue.KRX),
        ("nxt", time(10, 0), Venue.NXT),
    ],
)
def test_the_venue_of_a_trade_follows_its_feed_and_the_sessions_open(
    feed: str, clock_time: time, venue: Venue
) -> None:
    moment = datetime.combine(TRADING_MONDAY.date(), clock_time, tzinfo=KST)
    assert venue_of(feed, moment, SessionSettings()) is venue  # type: ignore[arg-type]


def test_open_sessions_name_the_venue_and_session() -> None:
    at = TRADING_MONDAY.replace(hour=12)
    assert [(venue, session.name) for venue, session in open_sessions(at, SessionSettings())] == [
        (Venue.KRX, "regular"), (Venue.NXT, "main"),
    ]


def test_next_boundary() -> None:
    assert next_boundary(TRADING_MONDAY.replace(hour=9)).phase is Phase.FULL_OPERATION
    after_check = datetime(2026, 9, 18, 23, 0, tzinfo=KST)  # Friday's token check, then a weekend
    following = next_boundary(after_check)
    assert following.event is DayEvent.TOKEN_CHECK and following.at.date().day == 19


def test_boundary_is_either_a_phase_change_or_an_event() -> None:
    with pytest.raises(ValidationError):
        Boundary(at=TRADING_MONDAY, phase=Phase.WARMUP, previous=Phase.IDLE, event=DayEvent.WAKEUP)
    with pytest.raises(ValidationError):
        Boundary(at=TRADING_MONDAY, phase=Phase.WARMUP)
    with pytest.raises(ValidationError):
        Boundary(at=TRADING_MONDAY, event=DayEvent.WAKEUP, previous=Phase.IDLE)


def test_messages_for_boundaries() -> None:
    first, second = day_boundaries(TRADING_MONDAY.date())[:2]
    assert message_for(first) == DayEventFired(at=first.at, event=DayEvent.UNIVERSE_BUILD)
    changed = message_for(second)
    assert changed == PhaseChanged(at=second.at, phase=Phase.WARMUP, previous=Phase.IDLE)
    with pytest.raises(ValidationError):
        changed.phase = Phase.IDLE  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ClockTick(at=TRADING_MONDAY, extra="no")  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        ClockTick(at=datetime(2026, 9, 14, 9, 0))


moments = st.datetimes(
    min_value=datetime(2025, 12, 20), max_value=datetime(2026, 10, 10), timezones=st.just(KST)
)


@given(moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=6)))
def test_phase_after_a_jump_is_the_last_phase_change_crossed(start: datetime, jump: timedelta) -> None:
    end = start + jump
    crossed = [b for b in boundaries_between(start, end) if b.is_phase_change]
    expected = crossed[-1].phase if crossed else phase_at(start)
    assert phase_at(end) is expected
    assert all(start < b.at <= end for b in boundaries_between(start, end))


near_moments = st.datetimes(
    min_value=datetime(2026, 9, 1), max_value=datetime(2026, 10, 15), timezones=st.just(KST)
)


@given(near_moments, near_moments, near_moments)
def test_splitting_an_interval_changes_nothing(a: datetime, b: datetime, c: datetime) -> None:
    first, middle, last = sorted((a, b, c))
    joined = boundaries_between(first, middle) + boundaries_between(middle, last)
    assert joined == boundaries_between(first, last)


def test_the_closing_pass_follows_krxs_last_close_on_every_feed_and_needs_krx_sessions() -> None:
    def closing(settings: Settings) -> list[str]:
        return [b.at.strftime("%H:%M") for b in core_schedule.day_boundaries(TRADING_MONDAY.date(),
                settings.schedule) if b.event is DayEvent.CLOSING_PASS]

    assert closing(Settings()) == ["15:30"]  # unified: Track A goes on to 20:00, the pass is extra
    assert closing(Settings(websocket={"feed": "krx"})) == ["15:30"]  # with SHUTDOWN, after it
    later_close = Settings(sessions={"krx": [{"name": "regular", "start": "09:00", "end": "16:00"}]})
    assert closing(later_close) == ["16:00"]
    assert closing(Settings(schedule={"closing_pass_time": "15:35"})) == ["15:35"]
    assert closing(Settings(websocket={"feed": "nxt"}, sessions={"krx": []})) == []
