"""SchedulerActor: freezegun time travel through whole days (alone and driving the control plane on the
simulator), catch-up after pauses, restarts, the ticker."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import partial

import pykka
import pytest
from freezegun import freeze_time

from actors.context import ObserverContext
from actors.directory import Directory
from actors.scanner import ScannerActor
from actors.scheduler import SchedulerActor, tick_interval_seconds
from actors.tokens import TokenActor
from actors.universe import UniverseActor
from config.settings import ScanSettings, Settings
from core.calendar import is_trading_day
from core.schedule import DayEvent, Phase
from messages.alerts import SystemAlert
from messages.market import ScanCompleted, UniverseReady
from messages.schedule import ClockTick, DayEventFired, PhaseChanged
from messages.selection import ContextSynced
from messages.streaming import CredentialsRenewed
from messages.system import Ping
from runtime.clock import KST, SimulatedClock, SystemClock
from tests.actors.control_plane_support import Journal, make_context, sim_account, start_recorders, wait_until
from tools.kis_sim.server import KisSimulator, SimConfig

MONDAY = date(2024, 3, 4)
SATURDAY = date(2024, 3, 9)
INDEPENDENCE_MOVEMENT_DAY = date(2024, 3, 1)  # a Friday, KRX closed
SUBSCRIBERS = ("recorder", "universe", "scanner")

TRADING_DAY = [
    ("event", DayEvent.UNIVERSE_BUILD, time(5, 0)),
    ("phase", Phase.WARMUP, time(8, 0)),
    ("event", DayEvent.WAKEUP, time(8, 0)),
    ("event", DayEvent.WS_PRECONNECT, time(8, 3)),
    ("event", DayEvent.SYSTEM_WARMUP, time(8, 5)),
    ("event", DayEvent.HEALTH_CHECK, time(8, 10)),
    ("event", DayEvent.TOKEN_REFRESH, time(8, 30)),
    ("event", DayEvent.READY, time(8, 50)),
    ("phase", Phase.TRACK_A_ONLY, time(9, 0)),
    ("phase", Phase.FULL_OPERATION, time(9, 30)),
    ("phase", Phase.TRACK_A_CLOSING, time(15, 0)),
    ("phase", Phase.SHUTDOWN, time(15, 30)),
    ("event", DayEvent.CLOSING_PASS, time(15, 30)),
    ("phase", Phase.IDLE, time(21, 0)),
    ("event", DayEvent.DAILY_BACKUP, time(21, 0)),
    ("event", DayEvent.TOKEN_CHECK, time(23, 0)),
]
"""What a KRX trading day must announce, in order (the seed's operation schedule): the KRX feed's day."""
KRX_FEED = Settings(websocket={"feed": "krx"})


def kst(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=KST)


def schedule_of(journal: Journal) -> list[tuple[str, object, datetime]]:
    """The phase changes and day events a subscriber received, as (kind, what, scheduled instant)."""
    seen = []
    for message in journal.received((PhaseChanged, DayEventFired)):
        if isinstance(message, PhaseChanged):
            seen.append(("phase", message.phase, message.at))
        else:
            seen.append(("event", message.event, message.at))
    return seen


def expected_day(day: date) -> list[tuple[str, object, datetime]]:
    return [(kind, what, datetime.combine(day, at, tzinfo=KST)) for kind, what, at in TRADING_DAY]


def start_system(tmp_path, clock) -> tuple[Directory, dict[str, Journal], pykka.ActorRef, ObserverContext]:
    context = make_context(tmp_path, clock, rest_url=None, settings=KRX_FEED)
    directory = Directory(clock)
    journals = start_recorders(directory, *SUBSCRIBERS)
    scheduler = SchedulerActor.start("scheduler", directory, context)
    directory.register("scheduler", scheduler)
    return directory, journals, scheduler, context


def barrier(directory: Directory, clock) -> tuple[object, ...]:
    """Make the scheduler look at the clock now, then make sure every subscriber has handled what it sent."""
    sent = directory.ask("scheduler", ClockTick(at=clock.now()))
    for name in SUBSCRIBERS:
        directory.ask(name, Ping(at=clock.now()))
    return sent


def test_a_whole_trading_day_reaches_every_subscriber_in_order_and_never_early(tmp_path):
    with freeze_time(kst(MONDAY, 4, 55)) as frozen:
        clock = SystemClock()
        directory, journals, _, context = start_system(tmp_path, clock)
        now = kst(MONDAY, 4, 55)
        while now < kst(MONDAY, 23, 0):
            now += timedelta(minutes=5)
            frozen.move_to(now)
            barrier(directory, clock)
            due = [entry for entry in expected_day(MONDAY) if entry[2] <= now]
            for name in SUBSCRIBERS:
                assert schedule_of(journals[name]) == due, f"{name} at {now:%H:%M}"

        assert context.metrics.snapshot()["phases_seen"] == [
            "idle", "warmup", "track_a_only", "full_operation", "track_a_closing", "shutdown",
        ]
        assert context.metrics.snapshot()["phase"] == "idle"


def test_scheduler_does_not_tell_itself(tmp_path):
    with freeze_time(kst(MONDAY, 8, 59)) as frozen:
        clock = SystemClock()
        directory, journals, _, _ = start_system(tmp_path, clock)
        frozen.move_to(kst(MONDAY, 9, 1))
        sent = barrier(directory, clock)
        assert [type(m) for m in sent] == [PhaseChanged]
        assert directory.dead_letter_count == 0
        assert all(len(journals[name].received(PhaseChanged)) == 1 for name in SUBSCRIBERS)


@pytest.mark.parametrize("day", [SATURDAY, INDEPENDENCE_MOVEMENT_DAY], ids=["weekend", "krx-holiday"])
def test_a_closed_day_announces_no_phase_and_only_the_token_check(tmp_path, day):
    assert not is_trading_day(day)
    with freeze_time(kst(day, 0, 5)) as frozen:
        clock = SystemClock()
        directory, journals, _, context = start_system(tmp_path, clock)
        now = kst(day, 0, 5)
        while now < kst(day, 23, 50):
            now += timedelta(minutes=15)
            frozen.move_to(now)
            barrier(directory, clock)
        for name in SUBSCRIBERS:
            assert schedule_of(journals[name]) == [("event", DayEvent.TOKEN_CHECK, kst(day, 23, 0))]
        assert context.metrics.snapshot()["phases_seen"] == ["idle"]


def test_a_pause_is_caught_up_in_order_in_one_tick(tmp_path):
    with freeze_time(kst(MONDAY, 4, 0)) as frozen:
        clock = SystemClock()
        directory, journals, _, _ = start_system(tmp_path, clock)
        frozen.move_to(kst(MONDAY, 16, 0))
        sent = barrier(directory, clock)
        assert len(sent) == 13
        assert schedule_of(journals["scanner"]) == expected_day(MONDAY)[:13]


def test_a_pause_over_a_weekend_catches_up_friday_evening_to_monday_morning(tmp_path):
    friday, monday = date(2024, 3, 8), date(2024, 3, 11)
    with freeze_time(kst(friday, 20, 0)) as frozen:
        clock = SystemClock()
        directory, journals, _, _ = start_system(tmp_path, clock)
        frozen.move_to(kst(monday, 9, 10))
        barrier(directory, clock)
        assert schedule_of(journals["recorder"]) == [
            ("phase", Phase.IDLE, kst(friday, 21)),
            ("event", DayEvent.DAILY_BACKUP, kst(friday, 21)),
            ("event", DayEvent.TOKEN_CHECK, kst(friday, 23)),
            ("event", DayEvent.TOKEN_CHECK, kst(friday + timedelta(days=1), 23)),
            ("event", DayEvent.TOKEN_CHECK, kst(friday + timedelta(days=2), 23)),
            *expected_day(monday)[:9],
        ]


def test_a_restarted_scheduler_resumes_where_the_last_one_stopped(tmp_path):
    with freeze_time(kst(MONDAY, 8, 50)) as frozen:
        clock = SystemClock()
        directory, journals, scheduler, _ = start_system(tmp_path, clock)
        frozen.move_to(kst(MONDAY, 8, 55))
        barrier(directory, clock)
        scheduler.stop()
        directory.unregister("scheduler")

        frozen.move_to(kst(MONDAY, 9, 40))  # the restart took a while: 09:00 and 09:30 passed meanwhile
        context = make_context(tmp_path, clock, rest_url=None, settings=KRX_FEED)
        directory.register("scheduler", SchedulerActor.start("scheduler", directory, context))
        barrier(directory, clock)

        assert schedule_of(journals["universe"]) == expected_day(MONDAY)[8:10]


def test_the_ticker_delivers_without_being_asked(tmp_path):
    clock = SimulatedClock(kst(MONDAY, 9, 29), speed=0)
    _, journals, _, _ = start_system(tmp_path, clock)
    clock.advance(120)
    assert wait_until(lambda: len(journals["scanner"].received(PhaseChanged)) == 1)
    message = journals["scanner"].received(PhaseChanged)[0]
    assert (message.previous, message.phase, message.at) == (
        Phase.TRACK_A_ONLY, Phase.FULL_OPERATION, kst(MONDAY, 9, 30),
    )


def test_a_clock_that_goes_back_sends_nothing_twice(tmp_path):
    clock = SimulatedClock(kst(MONDAY, 8, 59), speed=0)
    directory, journals, _, _ = start_system(tmp_path, clock)
    clock.advance(120)
    barrier(directory, clock)
    clock.advance(-240)
    assert barrier(directory, clock) == ()
    clock.advance(240)
    barrier(directory, clock)
    assert [m.phase for m in journals["recorder"].received(PhaseChanged)] == [Phase.TRACK_A_ONLY]


def test_tick_interval_follows_the_clock_speed():
    assert tick_interval_seconds(1.0) == 1.0
    assert tick_interval_seconds(10.0) == 0.5
    assert tick_interval_seconds(600.0) == 0.2
    assert tick_interval_seconds(0.0) == 0.2


def scans_reported(journal: Journal, count: int) -> bool:
    return len(journal.received(ScanCompleted)) == count


def test_the_control_plane_lives_through_a_whole_trading_day(tmp_path):
    """Real tokens, universe, scanner and scheduler on the simulator (following the frozen wall clock)
    from 04:55 to 23:00: the universe before the open, the 08:30 renewal reaching the connection, a scan
    every 10 minutes from 09:00 to 15:20, the closing pass at 15:30 and none outside, context sync right
    after the 09:30 scan."""
    with freeze_time(kst(MONDAY, 4, 55)) as frozen:
        clock = SystemClock()
        config = SimConfig(seed=5, wall_clock=True, n_symbols=60, pingpong_interval=0.5)
        with KisSimulator(config) as sim:
            context = make_context(
                tmp_path, clock, rest_url=sim.rest_url, accounts=(sim_account("acct1"),),
                settings=Settings(scan=ScanSettings(interval_seconds=600), websocket={"feed": "krx"}),
            )
            directory = Directory(clock)
            peers = ("recorder", "notifier", "triggers", "slots", "gaps", "ws.acct1")
            journals = start_recorders(directory, *peers)
            control_plane = {"tokens": TokenActor, "scanner": ScannerActor, "universe": UniverseActor}
            for name, actor in control_plane.items():
                directory.register(name, actor.start(name, directory, context))
                directory.ask(name, Ping(at=clock.now()))
            directory.register("scheduler", SchedulerActor.start("scheduler", directory, context))
            assert wait_until(lambda: journals["triggers"].received(UniverseReady) != [], timeout=20)

            scan_times: list[datetime] = []
            now = kst(MONDAY, 4, 55)
            while now < kst(MONDAY, 23, 0):
                now += timedelta(minutes=5)
                frozen.move_to(now)
                directory.ask("scheduler", ClockTick(at=now))
                directory.ask("scanner", ClockTick(at=now))
                if kst(MONDAY, 9) <= now <= kst(MONDAY, 15, 30) and now.minute % 10 == 0:
                    scan_times.append(now)
                assert wait_until(partial(scans_reported, journals["triggers"], len(scan_times)))
                for name in ("scanner", "tokens", "triggers", "slots", "ws.acct1"):
                    directory.ask(name, Ping(at=now))
                synced = journals["triggers"].received(ContextSynced)  # passed on to slots by triggers
                assert len(synced) == (1 if now >= kst(MONDAY, 9, 30) else 0), f"at {now:%H:%M}"
                renewed = journals["ws.acct1"].received(CredentialsRenewed)
                assert len(renewed) == (1 if now >= kst(MONDAY, 8, 30) else 0), f"at {now:%H:%M}"

    scans = journals["triggers"].received(ScanCompleted)
    assert [scan.at for scan in scans] == scan_times and len(scans) == 40
    assert [scan.closing for scan in scans] == [False] * 39 + [True]  # the closing auction's prices
    assert journals["recorder"].received(ScanCompleted) == scans
    assert synced[0].at == kst(MONDAY, 9, 30) and synced[0].movers
    assert journals["triggers"].received(UniverseReady)[0].day == MONDAY
    # No WebSocket runs here (ws.acct1 only records): the wake-up steps that need one fail and say so.
    alerts = {alert.key for alert in journals["notifier"].received(SystemAlert)}
    assert alerts == {"wakeup.ws_preconnect", "wakeup.health_check", "wakeup.health_after_refresh",
                      "wakeup.ready"}
    steps = {row["step"]: row["state"] for row in context.metrics.snapshot()["wakeup"]}
    assert steps["wake"] == steps["system_warmup"] == steps["token_refresh"] == "done"
    assert context.metrics.snapshot()["phases_seen"] == [
        "idle", "warmup", "track_a_only", "full_operation", "track_a_closing", "shutdown",
    ]
