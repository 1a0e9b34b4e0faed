"""A crashed child keeps its mail: what it had not handled and what was told while it restarted reach
the next incarnation in order; a child that is not restarted turns its held mail into dead letters."""

import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pykka
import pytest

from actors.base import ObserverActor
from actors.supervisor import ChildSpec, Directory, Restart, Supervisor
from messages.base import Message
from messages.system import Crash
from runtime.backoff import Backoff
from runtime.clock import KST, SimulatedClock

START = datetime(2024, 5, 2, 9, 0, tzinfo=KST)
WAIT = 5.0


class Note(Message):
    number: int


class Ledger:
    """Every Note handled by any incarnation, in order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.numbers: list[int] = []
        self.changed = threading.Condition(self.lock)

    def add(self, number: int) -> None:
        with self.changed:
            self.numbers.append(number)
            self.changed.notify_all()

    def wait_for(self, count: int) -> list[int]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.numbers) >= count, timeout=WAIT)
            return list(self.numbers)


class Slow(ObserverActor):
    """Handles Notes after `gate` opens, so they pile up in the inbox behind a Crash."""

    def __init__(self, name: str, directory: Directory, ledger: Ledger, gate: threading.Event) -> None:
        super().__init__(name, directory)
        self.ledger = ledger
        self.gate = gate

    def on_receive(self, message: Any) -> Any:
        if message == "block":
            self.gate.wait(WAIT)
        elif isinstance(message, Note):
            self.ledger.add(message.number)
        return None


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def supervised(restart: Restart, backoff: Backoff | None) -> tuple[Supervisor, Ledger, threading.Event]:
    ledger, gate = Ledger(), threading.Event()
    spec = ChildSpec("slow", actor_class=Slow, kwargs={"ledger": ledger, "gate": gate}, restart=restart,
                     backoff=backoff)
    supervisor = Supervisor([spec], clock=SimulatedClock(START, speed=0))
    supervisor.start()
    return supervisor, ledger, gate


def test_unhandled_and_restart_time_mail_reach_the_next_incarnation_in_order() -> None:
    supervisor, ledger, gate = supervised(Restart.PERMANENT, Backoff(steps=(0.3,), jitter=0.0))
    directory = supervisor.directory
    directory.tell("slow", "block")
    directory.tell("slow", Note(at=START, number=1))
    directory.tell("slow", Crash(at=START))
    for number in range(2, 6):  # behind the crash: unhandled by the first incarnation
        directory.tell("slow", Note(at=START, number=number))
    gate.set()
    assert supervisor.status.wait_until(lambda status: status.ends("slow") == 1, WAIT)
    for number in range(6, 9):  # while the restart waits out its backoff
        assert directory.tell("slow", Note(at=START, number=number))
    assert ledger.wait_for(8) == list(range(1, 9))
    assert supervisor.restart_counts() == {"slow": 1}
    assert directory.dead_letter_count == 0


def test_a_child_that_is_not_restarted_drops_its_held_mail_as_dead_letters() -> None:
    supervisor, ledger, gate = supervised(Restart.TEMPORARY, None)
    directory = supervisor.directory
    directory.tell("slow", "block")
    directory.tell("slow", Crash(at=START))
    directory.tell("slow", Note(at=START, number=1))
    gate.set()
    assert supervisor.status.wait_until(lambda status: status.ends("slow") == 1, WAIT)
    assert not directory.tell("slow", Note(at=START, number=2))
    assert directory.dead_letter_count == 2
    assert ledger.numbers == []
