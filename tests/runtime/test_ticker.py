import threading
from collections.abc import Iterator
from typing import Any

import pykka
import pytest

from runtime.ticker import Ticker


class Counter(pykka.ThreadingActor):
    """Counts ticks and releases a waiter once it has seen `wanted` of them."""

    def __init__(self, ticks: list[Any], enough: threading.Event, wanted: int) -> None:
        super().__init__()
        self.ticks = ticks
        self.wanted = wanted
        self.enough = enough

    def on_receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.ticks)
        self.ticks.append(message)
        if len(self.ticks) >= self.wanted:
            self.enough.set()
        return None


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


def test_ticker_tells_a_fresh_message_every_interval() -> None:
    ticks: list[Any] = []
    enough = threading.Event()
    ref = Counter.start(ticks, enough, wanted=3)
    numbers = iter(range(1000))
    ticker = Ticker(ref, lambda: ("tick", next(numbers)), 0.01, name="test-ticker").start()
    assert enough.wait(timeout=5)
    ticker.stop()
    assert not ticker.is_running
    assert ticks[:3] == [("tick", 0), ("tick", 1), ("tick", 2)]


def test_ticker_ends_by_itself_when_its_target_dies() -> None:
    ref = Counter.start([], threading.Event(), wanted=1)
    ref.stop()
    ticker = Ticker(ref, lambda: "tick", 0.01).start()
    ticker._thread.join(timeout=5)
    assert not ticker.is_running


def test_stop_ends_the_thread_and_no_more_ticks_arrive() -> None:
    enough = threading.Event()
    ref = Counter.start([], enough, wanted=1)
    ticker = Ticker(ref, lambda: "tick", 0.01).start()
    assert enough.wait(timeout=5)
    ticker.stop(timeout=5)
    assert not ticker.is_running
    seen = ref.ask("count", timeout=5)
    assert ref.ask("count", timeout=5) == seen


def test_a_callable_target_works_and_a_failing_factory_does_not_end_the_ticker() -> None:
    received: list[int] = []
    got_two = threading.Event()
    calls = iter(range(1000))

    def make() -> int:
        number = next(calls)
        if number == 0:
            raise RuntimeError("bad first message")
        return number

    def send(message: int) -> None:
        received.append(message)
        if len(received) >= 2:
            got_two.set()

    ticker = Ticker(send, make, 0.01, first_delay_seconds=0).start()
    assert got_two.wait(timeout=5)
    ticker.stop()
    assert received[:2] == [1, 2]


def test_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="interval"):
        Ticker(lambda _m: None, lambda: None, 0)
