import random
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pykka
import pytest
from loguru import logger
from pykka.typing import proxy_method

from actors.base import ObserverActor, ObserverActorProxy
from actors.supervisor import EXIT_ESCALATED, ChildSpec, Directory, Restart, Supervisor
from messages.system import Crash
from runtime.backoff import Backoff
from runtime.clock import KST, SimulatedClock
from runtime.state_store import StateStore

START = datetime(2024, 5, 2, 9, 0, tzinfo=KST)
WAIT = 5.0


class Journal:
    """What the children did, in order, from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[str] = []

    def add(self, event: str) -> None:
        with self._lock:
            self._events.append(event)

    def events(self) -> list[str]:
        with self._lock:
            return list(self._events)


class StartFailures:
    """The first `count` starts of a child fail (shared by all its incarnations)."""

    def __init__(self, count: int) -> None:
        self._lock = threading.Lock()
        self.remaining = count

    def take(self) -> bool:
        with self._lock:
            if self.remaining == 0:
                return False
            self.remaining -= 1
            return True


class Worker(ObserverActor):
    def __init__(
        self,
        name: str,
        directory: Directory,
        journal: Journal,
        failures: StartFailures | None = None,
        release: threading.Event | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.journal = journal
        self.failures = failures
        self.release = release

    def on_start(self) -> None:
        if self.failures is not None and self.failures.take():
            self.journal.add(f"start-failed {self.name}")
            raise ConnectionError(f"{self.name} cannot connect")
        self.journal.add(f"start {self.name}")

    def on_stop(self) -> None:
        self.journal.add(f"stop {self.name}")

    def on_receive(self, message: Any) -> Any:
        if message == "urn":
            return self.actor_urn
        if message == "stop-self":
            self.stop()
        if message == "hang" and self.release is not None:
            self.release.wait(timeout=WAIT)
        return None


class Counter(ObserverActor):
    """Keeps its count in the state store so that a new incarnation carries on."""

    def __init__(self, name: str, directory: Directory, store: StateStore) -> None:
        super().__init__(name, directory)
        self.store = store
        self.count = 0

    def on_start(self) -> None:
        saved = self.store.load(self.name)
        self.count = saved["count"] if saved else 0

    def increment(self) -> int:
        self.count += 1
        self.store.save(self.name, {"count": self.count})
        return self.count

    def value(self) -> int:
        return self.count


class CounterProxy(ObserverActorProxy):
    increment = proxy_method(Counter.increment)
    value = proxy_method(Counter.value)


def worker(child_id: str, journal: Journal, **spec: Any) -> ChildSpec:
    return ChildSpec(id=child_id, actor_class=Worker, kwargs={"journal": journal}, **spec)


def crash(supervisor: Supervisor, child_id: str) -> None:
    assert supervisor.directory.tell(child_id, Crash(at=START, reason=f"test crash of {child_id}"))


def wait_ends(supervisor: Supervisor, child_id: str, count: int) -> None:
    assert supervisor.status.wait_until(lambda s: s.ends(child_id) >= count, timeout=WAIT)


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START, speed=0)


@pytest.fixture
def journal() -> Journal:
    return Journal()


def test_children_start_in_order_and_stop_in_reverse(clock: SimulatedClock, journal: Journal) -> None:
    supervisor = Supervisor([worker(name, journal) for name in ("token", "scanner", "ws")], clock=clock)
    supervisor.start()
    assert journal.events() == ["start token", "start scanner", "start ws"]
    assert supervisor.directory.child_ids() == ("token", "scanner", "ws")
    assert supervisor.stop() == 0
    assert journal.events()[3:] == ["stop ws", "stop scanner", "stop token"]
    assert supervisor.stopped.is_set()
    assert pykka.ActorRegistry.get_all() == []


def test_crashed_permanent_child_is_restarted_and_the_directory_reaches_it(
    clock: SimulatedClock, journal: Journal
) -> None:
    supervisor = Supervisor([worker("a", journal), worker("b", journal)], clock=clock)
    supervisor.start()
    first = supervisor.directory.ask("a", "urn")
    crash(supervisor, "a")
    wait_ends(supervisor, "a", 1)
    second = supervisor.directory.ask("a", "urn")
    assert first is not None and second is not None and second != first
    assert supervisor.restart_counts() == {"a": 1}
    assert journal.events().count("start a") == 2
    assert journal.events().count("start b") == 1
    assert supervisor.exit_code is None


def test_permanent_child_that_stops_itself_is_restarted(clock: SimulatedClock, journal: Journal) -> None:
    supervisor = Supervisor([worker("a", journal)], clock=clock)
    supervisor.start()
    supervisor.directory.tell("a", "stop-self")
    wait_ends(supervisor, "a", 1)
    assert supervisor.status.restarts("a") == 1
    assert supervisor.directory.ask("a", "urn") is not None


def test_transient_child_is_restarted_after_a_failure_only(clock: SimulatedClock, journal: Journal) -> None:
    supervisor = Supervisor([worker("t", journal, restart=Restart.TRANSIENT)], clock=clock)
    supervisor.start()
    crash(supervisor, "t")
    wait_ends(supervisor, "t", 1)
    assert supervisor.status.restarts("t") == 1
    supervisor.directory.tell("t", "stop-self")
    wait_ends(supervisor, "t", 2)
    assert supervisor.status.restarts("t") == 1
    assert supervisor.directory.ref("t") is None


def test_temporary_child_is_never_restarted_and_its_mail_becomes_dead_letters(
    clock: SimulatedClock, journal: Journal
) -> None:
    supervisor = Supervisor([worker("once", journal, restart=Restart.TEMPORARY)], clock=clock)
    supervisor.start()
    crash(supervisor, "once")
    wait_ends(supervisor, "once", 1)
    assert supervisor.status.restarts("once") == 0
    directory = supervisor.directory
    assert directory.tell("once", "hello") is False
    assert directory.ask("once", "urn", default="nobody") == "nobody"
    assert directory.tell("never-existed", "hello") is False
    assert directory.dead_letter_count == 3
    assert directory.dead_letters_by_child() == {"once": 2, "never-existed": 1}
    assert supervisor.exit_code is None


def test_crash_in_on_start_is_restarted(clock: SimulatedClock, journal: Journal) -> None:
    spec = ChildSpec(id="ws", actor_class=Worker, kwargs={"journal": journal, "failures": StartFailures(2)})
    supervisor = Supervisor([spec, worker("after", journal)], clock=clock)
    supervisor.start()
    assert supervisor.status.wait_until(lambda s: s.restarts("ws") == 2, timeout=WAIT)
    assert supervisor.directory.ask("ws", "urn") is not None
    events = journal.events()
    assert events.count("start-failed ws") == 2
    assert "start ws" in events
    assert events.index("start-failed ws") < events.index("start after")


def test_factory_that_raises_counts_as_a_failure(clock: SimulatedClock, journal: Journal) -> None:
    attempts: list[int] = []

    def build(directory: Directory) -> pykka.ActorRef[Any]:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("no such device")
        return Worker.start("dev", directory, journal)

    supervisor = Supervisor([ChildSpec(id="dev", factory=build)], clock=clock)
    supervisor.start()
    assert supervisor.status.restarts("dev") == 1
    assert supervisor.directory.ask("dev", "urn") is not None


def test_too_many_restarts_stop_everything_with_a_non_zero_exit(
    clock: SimulatedClock, journal: Journal, errors: list[str]
) -> None:
    always_failing = {"journal": journal, "failures": StartFailures(100)}
    flaky = ChildSpec(id="flaky", actor_class=Worker, kwargs=always_failing)
    supervisor = Supervisor(
        [worker("steady", journal), flaky, worker("last", journal)],
        clock=clock,
        max_restarts=3,
        period_seconds=30,
    )
    supervisor.start()
    assert supervisor.wait(timeout=WAIT) == EXIT_ESCALATED
    assert supervisor.status.restarts("flaky") == 3
    assert "restart 4 within 30 s is over the limit of 3" in supervisor.status.reason
    assert any("restart 4 within 30 s" in line for line in errors)
    events = journal.events()
    assert events.index("stop last") < events.index("stop steady")
    assert supervisor.directory.child_ids() == ()
    assert supervisor.stop() == EXIT_ESCALATED


def test_restarts_spread_wider_than_the_period_do_not_escalate(
    clock: SimulatedClock, journal: Journal
) -> None:
    now = [0.0]
    supervisor = Supervisor(
        [worker("a", journal)], clock=clock, max_restarts=1, period_seconds=10, monotonic=lambda: now[0]
    )
    supervisor.start()
    crash(supervisor, "a")
    wait_ends(supervisor, "a", 1)
    now[0] = 20.0
    crash(supervisor, "a")
    wait_ends(supervisor, "a", 2)
    assert supervisor.exit_code is None
    assert supervisor.status.restarts("a") == 2
    now[0] = 25.0
    crash(supervisor, "a")
    assert supervisor.wait(timeout=WAIT) == EXIT_ESCALATED


def test_backoff_delays_restarts_and_resets_after_a_stable_run(
    clock: SimulatedClock, journal: Journal
) -> None:
    now = [0.0]
    backoff = Backoff(steps=(0.01, 0.05, 0.2), jitter=0, reset_after=60)
    supervisor = Supervisor(
        [worker("ws", journal, backoff=backoff)], clock=clock, monotonic=lambda: now[0], max_restarts=10
    )
    supervisor.start()
    delays = []
    for restart in (1, 2):
        crash(supervisor, "ws")
        assert supervisor.status.wait_until(lambda s, n=restart: s.restarts("ws") == n, timeout=WAIT)
        delays.append(supervisor.status.last_backoff_seconds("ws"))
    now[0] = 100.0
    crash(supervisor, "ws")
    assert supervisor.status.wait_until(lambda s: s.restarts("ws") == 3, timeout=WAIT)
    delays.append(supervisor.status.last_backoff_seconds("ws"))
    assert delays == [0.01, 0.05, 0.01]
    assert supervisor.directory.ask("ws", "urn") is not None


def test_backoff_jitter_stays_within_bounds(clock: SimulatedClock, journal: Journal) -> None:
    backoff = Backoff(steps=(0.02, 0.04), jitter=0.5, reset_after=3600)
    supervisor = Supervisor(
        [worker("ws", journal, backoff=backoff)], clock=clock, rng=random.Random(5), max_restarts=10
    )
    supervisor.start()
    bounds = [(0.01, 0.03), (0.02, 0.06), (0.02, 0.06)]
    for restart, (low, high) in enumerate(bounds, start=1):
        crash(supervisor, "ws")
        assert supervisor.status.wait_until(lambda s, n=restart: s.restarts("ws") == n, timeout=WAIT)
        delay = supervisor.status.last_backoff_seconds("ws")
        assert delay is not None and low <= delay <= high


def test_restarted_child_recovers_its_state_from_the_store(clock: SimulatedClock, tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state")
    spec = ChildSpec(id="counter", actor_class=Counter, kwargs={"store": store})
    supervisor = Supervisor([spec], clock=clock)
    supervisor.start()
    counter = supervisor.directory.proxy("counter", CounterProxy)
    for _ in range(3):
        counter.increment().get(timeout=WAIT)
    crash(supervisor, "counter")
    wait_ends(supervisor, "counter", 1)
    assert counter.value().get(timeout=WAIT) == 3
    assert counter.increment().get(timeout=WAIT) == 4


def test_directory_proxy_turns_calls_to_a_missing_child_into_dead_letters(clock: SimulatedClock) -> None:
    directory = Supervisor([], clock=clock).directory
    missing = directory.proxy("counter", CounterProxy)
    assert missing.value().get(timeout=WAIT) is None
    missing.increment.defer()
    assert directory.dead_letters_by_child() == {"counter": 2}


def test_child_that_does_not_stop_in_time_is_abandoned(
    clock: SimulatedClock, journal: Journal, errors: list[str]
) -> None:
    release = threading.Event()
    stuck = ChildSpec(
        id="stuck", actor_class=Worker, kwargs={"journal": journal, "release": release}, shutdown_timeout=0.2
    )
    supervisor = Supervisor([worker("first", journal), stuck], clock=clock)
    supervisor.start()
    supervisor.directory.tell("stuck", "hang")
    try:
        assert supervisor.stop() == 0
        assert any("stuck did not stop within 0.2 s; abandoned" in line for line in errors)
        assert "stop first" in journal.events()
    finally:
        release.set()


def test_stopping_the_registry_from_outside_takes_every_child_along(
    clock: SimulatedClock, journal: Journal
) -> None:
    supervisor = Supervisor([worker("a", journal), worker("b", journal)], clock=clock)
    supervisor.start()
    pykka.ActorRegistry.stop_all(timeout=WAIT)
    assert supervisor.wait(timeout=WAIT) == EXIT_ESCALATED
    assert pykka.ActorRegistry.get_all() == []


def test_invalid_specs_are_refused_with_a_clear_error(journal: Journal, clock: SimulatedClock) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        ChildSpec(id="x")
    with pytest.raises(ValueError, match="timeouts"):
        ChildSpec(id="x", actor_class=Worker, shutdown_timeout=0)
    with pytest.raises(ValueError, match="duplicate child ids: a"):
        Supervisor([worker("a", journal), worker("a", journal)], clock=clock)


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="WARNING", format="{message}")
    yield lines
    logger.remove(sink)


class StopTeller(Worker):
    """Tells `ws` something as it stops, as a peer does whose on_stop reports to a child stopped before it."""

    def on_stop(self) -> None:
        self.directory.tell("ws", "bye")
        super().on_stop()


def test_an_orderly_start_restart_and_stop_count_dead_letters_without_a_warning(
    clock: SimulatedClock, journal: Journal, warnings: list[str]
) -> None:
    backoff = Backoff(steps=(0.3,), jitter=0, reset_after=60)
    specs = [ChildSpec(id="token", actor_class=StopTeller, kwargs={"journal": journal}),
             worker("ws", journal, backoff=backoff)]
    supervisor = Supervisor(specs, clock=clock)
    directory = supervisor.directory
    assert directory.tell("ws", "before the start") is False  # not started yet
    supervisor.start()
    crash(supervisor, "ws")
    wait_ends(supervisor, "ws", 1)
    assert directory.ask("ws", "urn", default="restarting") == "restarting"  # its restart is due
    assert supervisor.status.wait_until(lambda s: s.restarts("ws") == 1, timeout=WAIT)
    supervisor.stop()  # ws stops first, then token tells it "bye"
    assert "stop token" in journal.events()
    assert directory.dead_letters_by_child() == {"ws": 3}
    assert [line for line in warnings if "dead letter" in line] == []


def test_a_child_that_is_not_coming_back_is_still_worth_a_dead_letter_warning(
    clock: SimulatedClock, journal: Journal, warnings: list[str]
) -> None:
    supervisor = Supervisor([worker("once", journal, restart=Restart.TEMPORARY)], clock=clock)
    supervisor.start()
    crash(supervisor, "once")
    wait_ends(supervisor, "once", 1)
    assert supervisor.directory.tell("once", "hello") is False
    assert [line for line in warnings if "dead letter" in line] == [
        "dead letter: str for 'once', which is not running\n"
    ]
