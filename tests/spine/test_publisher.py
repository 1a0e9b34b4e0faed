"""The publisher against a real nats-server: facts reach an outside subscriber and the stream, a late
consumer replays them, and a dead or absent server never blocks `publish()`."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from config.settings import SpineSettings
from kis.ticks import TradeTick
from messages.market import TicksReceived
from runtime.clock import KST
from spine import wire
from spine.publisher import Publisher
from spine.server import NatsServer, free_port
from spine.subjects import Subjects
from tests.e2e.support import wait_for
from tests.spine.conftest import receive
from tools.bench.spine import throughput

SETTINGS = SpineSettings(instance="test")
SUBJECTS = Subjects("test")
AT = datetime(2024, 3, 4, 9, 30, tzinfo=KST)


def trade(symbol: str, second: int, price: int = 70_000) -> TradeTick:
    return TradeTick(symbol, AT + timedelta(seconds=second), price, 100, "2", 0.14, 3, 1_000 + second,
                     70_000_000, 69_900, 70_100, 69_800, 70_100, 70_000, "1", 101.5, "0", ())


def ticks(symbol: str, first: int, count: int) -> TicksReceived:
    return TicksReceived(at=AT + timedelta(seconds=first), account="sim1", received_mono=0.0,
                         ticks=tuple(trade(symbol, first + i) for i in range(count)))


def test_ticks_reach_an_outside_subscriber_on_their_symbols_subject(nats_server: NatsServer) -> None:
    publisher = Publisher(nats_server.url, SETTINGS).start()
    try:
        assert publisher.wait_connected(10)

        async def scenario() -> list[dict]:
            listening = asyncio.create_task(
                receive(nats_server.url, SUBJECTS.ticks("005930"), 30, timeout=10))
            await asyncio.sleep(0.5)
            for first in range(0, 30, 3):
                publisher.publish(ticks("005930", first, 3))
                publisher.publish(ticks("000660", first, 1))
            return await listening

        got = asyncio.run(scenario())
    finally:
        publisher.stop()
    assert len(got) == 30
    assert {message["symbol"] for message in got} == {"005930"}
    first = got[0]
    assert (first["type"], first["version"], first["venue"], first["source"]) == ("tick", 1, "KRX", "ws")
    assert first["exchange_time"] == "2024-03-04T09:30:00+09:00"
    assert {"received_at", "price", "volume", "cum_volume"} <= set(first)
    assert [wire.parse(message).exchange_time for message in got] == [
        AT + timedelta(seconds=i) for i in range(30)
    ]
    assert publisher.figures() == {"spine_published": 40, "spine_dropped": 0}


def test_a_late_consumer_replays_the_day_from_a_start_time(nats_server: NatsServer) -> None:
    publisher = Publisher(nats_server.url, SETTINGS).start()
    try:
        assert publisher.wait_connected(10)
        publisher.publish(ticks("005930", 0, 5))  # "09:00"
        assert wait_for(lambda: publisher.published == 5, timeout=10)
        time.sleep(0.3)
        later = datetime.now(KST)
        time.sleep(0.3)
        publisher.publish(ticks("005930", 5, 7))  # "10:00"
        publisher.publish(wire.AlertSent(at=AT, key="system:test", text="[system:test] hello"))
    finally:
        publisher.stop()  # everything is sent before it returns

    async def replay(policy: DeliverPolicy, start: datetime | None) -> list[wire.Fact]:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        config = ConsumerConfig(opt_start_time=start) if start else None
        sub = await js.subscribe(
            SUBJECTS.ticks(), ordered_consumer=True, deliver_policy=policy, config=config)
        facts = []
        while True:
            try:
                msg = await sub.next_msg(timeout=2)
            except nats.errors.TimeoutError:
                break
            facts.append(wire.parse(msg.data))
        await nc.close()
        return facts

    everything = asyncio.run(replay(DeliverPolicy.ALL, None))
    assert [fact.cum_volume for fact in everything] == [1_000 + i for i in range(12)]
    from_later = asyncio.run(replay(DeliverPolicy.BY_START_TIME, later))
    assert [fact.cum_volume for fact in from_later] == [1_000 + i for i in range(5, 12)]


def test_publish_never_waits_for_an_absent_server_and_counts_what_it_drops(warnings: list[str]) -> None:
    settings = SpineSettings(instance="test", publish_queue_limit=100)
    publisher = Publisher(f"nats://127.0.0.1:{free_port()}", settings).start()
    try:
        started = time.monotonic()
        outcomes = [publisher.publish(ticks("005930", i, 1)) for i in range(150)]
        elapsed = time.monotonic() - started
        assert wait_for(lambda: any("does not answer" in line for line in warnings), timeout=10)
        time.sleep(1.5)  # more failed attempts: still one line
    finally:
        publisher.stop(timeout=2)
    assert outcomes.count(True) == 100 and outcomes.count(False) == 50
    assert publisher.dropped == 50
    assert elapsed < 5, "publish() waited for the network"
    assert sum("new ones are dropped" in line for line in warnings) == 1, warnings
    assert sum("does not answer" in line for line in warnings) == 1, warnings


def test_the_publisher_recovers_when_the_killed_server_returns(nats_server: NatsServer) -> None:
    publisher = Publisher(nats_server.url, SETTINGS).start()
    try:
        assert publisher.wait_connected(10)
        os.kill(nats_server.pid or 0, signal.SIGKILL)
        for i in range(20):  # while the server is down or coming back: buffered or dropped, never blocking
            publisher.publish(ticks("005930", i, 1))
        assert wait_for(lambda: nats_server.restarts == 1 and nats_server.pid is not None, timeout=15)
        assert wait_for(lambda: publisher.connected, timeout=15)
        done_before = publisher.published

        async def after_return() -> list[dict]:
            listening = asyncio.create_task(
                receive(nats_server.url, SUBJECTS.ticks("000660"), 10, timeout=10))
            await asyncio.sleep(0.5)
            publisher.publish(ticks("000660", 100, 10))
            return await listening

        got = asyncio.run(after_return())
    finally:
        publisher.stop()
    assert len(got) == 10
    assert publisher.published >= done_before + 10
    assert publisher.published + publisher.dropped >= 30


def test_the_example_consumers_print_one_symbols_ticks(nats_server: NatsServer) -> None:
    repo = Path(__file__).resolve().parents[2]
    publisher = Publisher(nats_server.url, SETTINGS).start()
    live = subprocess.Popen([sys.executable, str(repo / "examples" / "print_ticks.py"), "005930",
                             nats_server.url, "test"], stdout=subprocess.PIPE, text=True)
    try:
        assert publisher.wait_connected(10)
        publisher.publish(ticks("005930", 0, 2))  # before it listens, perhaps: only the replay must see these
        time.sleep(3)  # the live consumer has subscribed
        publisher.publish(ticks("005930", 2, 3))
        publisher.publish(ticks("000660", 2, 3))
        assert wait_for(lambda: publisher.published == 8, timeout=10)
        time.sleep(1)
    finally:
        publisher.stop()
        live.terminate()
    printed = live.communicate(timeout=10)[0].splitlines()
    assert printed[-3:] == [f"2024-03-04T09:30:0{i}+09:00 70000 3 ws" for i in (2, 3, 4)]
    replay = subprocess.Popen([sys.executable, str(repo / "examples" / "replay_ticks.py"), "005930",
                               nats_server.url, "00:00", "test"], stdout=subprocess.PIPE, text=True)
    time.sleep(4)
    replay.terminate()
    replayed = replay.communicate(timeout=10)[0].splitlines()
    assert replayed == [f"2024-03-04T09:30:0{i}+09:00 70000 3 ws" for i in range(5)]


def test_the_spine_benchmark_counts_every_tick_at_the_outside_subscriber(tmp_path: Path) -> None:
    (result,) = throughput(tmp_path, ticks=2_000)
    assert result.name == "spine_ticks_to_outside_subscriber"
    assert result.figure > 0 and result.baseline > 0
    assert result.detail.startswith("2,000 of 2,000 ticks received (0 dropped), baseline 2,000; 4,000")
