import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pykka
import pytest
from loguru import logger
from pykka.typing import proxy_method

from actors.base import InjectedCrash, ObserverActor, ObserverActorProxy, describe_exception
from actors.directory import Directory
from messages.system import ChildExited, ChildFailed, Crash, Ping
from runtime.clock import KST, SimulatedClock

START = datetime(2024, 5, 2, 9, 0, tzinfo=KST)


class Inbox(pykka.ThreadingActor):
    """Stands in for a supervisor: keeps what children report and lets a test wait for it."""

    def __init__(self, received: list[Any], arrived: threading.Event) -> None:
        super().__init__()
        self.received = received
        self.arrived = arrived

    def on_receive(self, message: Any) -> Any:
        self.received.append(message)
        self.arrived.set()


class Echo(ObserverActor):
    def __init__(self, name: str, directory: Directory | None = None, *, fail_on_start: bool = False) -> None:
        super().__init__(name, directory)
        self.fail_on_start = fail_on_start

    def on_start(self) -> None:
        logger.info("echo starting")
        if self.fail_on_start:
            raise ConnectionError("broker unreachable\nsecond line")

    def on_receive(self, message: Any) -> Any:
        if message == "thread":
            return threading.current_thread().name
        if message == "boom":
            raise ValueError("handler broke")
        return ("echo", message)

    def shout(self, text: str) -> str:
        return text.upper()


class EchoProxy(ObserverActorProxy):
    shout = proxy_method(Echo.shout)


@pytest.fixture(autouse=True)
def _stop_actors() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture
def reports() -> tuple[Directory, list[Any], threading.Event]:
    directory = Directory(SimulatedClock(START, speed=0))
    received: list[Any] = []
    arrived = threading.Event()
    directory.attach_supervisor(Inbox.start(received, arrived))
    return directory, received, arrived


def test_thread_is_named_after_the_actor_and_log_records_carry_its_name() -> None:
    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(message.record), level="INFO")
    try:
        ref = Echo.start("scanner")
        assert ref.ask("thread", timeout=5) == "scanner"
    finally:
        logger.remove(sink)
    started = [r for r in records if r["message"] == "echo starting"]
    assert len(started) == 1
    assert started[0]["extra"]["actor"] == "scanner"
    assert started[0]["thread"].name == "scanner"


def test_ping_answers_with_the_name_after_on_start() -> None:
    ref = Echo.start("a")
    assert ref.ask(Ping(at=START), timeout=5) == "a"
    assert ref.ask("hello", timeout=5) == ("echo", "hello")


def test_crash_sent_with_tell_ends_the_actor_and_reports_a_failure(reports: Any) -> None:
    directory, received, arrived = reports
    ref = Echo.start("a", directory)
    ref.tell(Crash(at=START, reason="chaos"))
    assert arrived.wait(timeout=5)
    assert not ref.is_alive()
    assert len(received) == 1
    report = received[0]
    assert isinstance(report, ChildFailed)
    assert (report.child_id, report.actor_urn, report.error) == ("a", ref.actor_urn, "InjectedCrash: chaos")


def test_crash_sent_with_ask_fails_only_the_asker() -> None:
    ref = Echo.start("a")
    with pytest.raises(InjectedCrash):
        ref.ask(Crash(at=START), timeout=5)
    assert ref.ask("still here", timeout=5) == ("echo", "still here")


def test_exception_in_a_told_handler_is_reported(reports: Any) -> None:
    directory, received, arrived = reports
    ref = Echo.start("a", directory)
    ref.tell("boom")
    assert arrived.wait(timeout=5)
    assert received[0].error == "ValueError: handler broke"


def test_exception_in_on_start_is_reported_although_pykka_skips_on_failure(reports: Any) -> None:
    directory, received, arrived = reports
    ref = Echo.start("ws", directory, fail_on_start=True)
    assert arrived.wait(timeout=5)
    assert not ref.is_alive()
    assert isinstance(received[0], ChildFailed)
    assert received[0].error == "ConnectionError: broker unreachable"


def test_normal_stop_is_reported_as_an_exit(reports: Any) -> None:
    directory, received, arrived = reports
    ref = Echo.start("a", directory)
    ref.stop(timeout=5)
    assert arrived.wait(timeout=5)
    assert isinstance(received[0], ChildExited)
    assert received[0].actor_urn == ref.actor_urn


def test_typed_proxy_calls_reach_the_actor() -> None:
    ref = Echo.start("a")
    proxy: EchoProxy = ref.proxy()  # type: ignore[assignment]
    assert proxy.shout("buy").get(timeout=5) == "BUY"


def test_describe_exception_is_one_line() -> None:
    assert describe_exception(RuntimeError("first\nsecond")) == "RuntimeError: first"
    assert describe_exception(KeyError()) == "KeyError"
    assert describe_exception(None) == "unknown error"
