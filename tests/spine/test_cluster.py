"""A three-server NATS cluster on loopback (`tools.nats_cluster`): the stream and the key-value buckets
kept in `spine.replicas` copies, and a server SIGKILLed while the publisher sends loses no fact and doubles
none."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.errors import Error as NatsError
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from config.settings import SpineSettings
from kis.ticks import TradeTick
from messages.market import TicksReceived
from runtime.clock import KST
from spine import wire
from spine.publisher import Publisher
from spine.server import server_urls
from spine.stream import ensure_bucket, ensure_stream
from spine.subjects import Subjects
from tests.e2e.support import wait_for
from tools.nats_cluster import ClusterServer, NatsCluster

SUBJECTS = Subjects("test")
AT = datetime(2024, 3, 4, 9, 30, tzinfo=KST)
BATCHES = 600
TICKS_PER_BATCH = 5
ALERT_EVERY = 20


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "cluster") as started:
        yield started


def batch(number: int) -> TicksReceived:
    first = number * TICKS_PER_BATCH
    return TicksReceived(at=AT, account="sim1", received_mono=0.0, ticks=tuple(
        TradeTick("005930", AT + timedelta(milliseconds=first + i), 70_000, 1, "2", 0.14, 1, first + i,
                  70_000, 69_900, 70_100, 69_800, 70_100, 70_000, "1", 101.5, "0", ())
        for i in range(TICKS_PER_BATCH)))


def serving(cluster: NatsCluster, client: str) -> ClusterServer:
    """The server a named client is connected to (each server's `/connz`)."""
    for server in cluster.servers:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.monitor_port}/connz", timeout=2) as reply:
            if any(conn.get("name") == client for conn in json.loads(reply.read())["connections"] or ()):
                return server
    raise AssertionError(f"no server has a client named {client}")


async def durable_consumer(urls: str) -> None:
    nc = await nats.connect(server_urls(urls))
    await nc.jetstream().add_consumer(SUBJECTS.stream_name, ConsumerConfig(
        durable_name="reader", ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL))
    await nc.close()


async def read_durable(urls: str, expected: int, timeout: float = 30.0) -> list[dict]:
    """What the durable consumer delivers (each message acknowledged): until `expected` came, then whatever
    more comes within a second (a fact stored twice would). Its own copies elect a leader again after the
    kill, so a fetch may fail for a while."""
    nc = await nats.connect(server_urls(urls))
    sub = await nc.jetstream().pull_subscribe_bind("reader", stream=SUBJECTS.stream_name)
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        try:
            msgs = await sub.fetch(1_000, timeout=1)
        except (TimeoutError, NatsError):
            continue
        for msg in msgs:
            got.append(json.loads(msg.data))
            await msg.ack()
    with contextlib.suppress(TimeoutError, NatsError):
        got += [json.loads(msg.data) for msg in await sub.fetch(1_000, timeout=1)]
    await nc.close()
    return got


async def stream_replicas(urls: str, stream: str, timeout: float = 10.0) -> tuple[int, int]:
    """The stream's configured copies and the copies the cluster reports (leader and followers), once they
    agree (a stream scaled up gets its new copies in the background) or `timeout` passed."""
    nc = await nats.connect(server_urls(urls))
    deadline = time.monotonic() + timeout
    while True:
        info = await nc.jetstream().stream_info(stream)
        assert info.cluster is not None
        copies = (info.config.num_replicas or 1, 1 + len(info.cluster.replicas or ()))
        if copies[0] == copies[1] or time.monotonic() > deadline:
            await nc.close()
            return copies
        await asyncio.sleep(0.1)


def test_a_server_killed_mid_run_loses_no_fact_and_doubles_none(cluster: NatsCluster) -> None:
    settings = SpineSettings(instance="test", replicas=3)
    publisher = Publisher(cluster.urls, settings, name="cluster").start()
    try:
        assert publisher.wait_connected(20)
        assert asyncio.run(stream_replicas(cluster.urls, SUBJECTS.stream_name)) == (3, 3)
        asyncio.run(durable_consumer(cluster.urls))
        victim = serving(cluster, "observer-test-cluster")
        for number in range(BATCHES):
            publisher.publish(batch(number))
            if number % ALERT_EVERY == 0:
                publisher.publish(wire.AlertSent(at=AT, key=f"k{number}", text="an event"))
            if number == BATCHES // 3:
                victim.kill()  # the publisher's own server, with whatever it had not passed on yet
            if number % 20 == 19:
                time.sleep(0.02)
        assert wait_for(lambda: publisher.unacknowledged == 0, timeout=30), "the stream did not take them"
    finally:
        publisher.stop()
    assert victim.pid is None
    got = asyncio.run(read_durable(cluster.urls, BATCHES * TICKS_PER_BATCH + BATCHES // ALERT_EVERY))
    ticks = Counter(fact["cum_volume"] for fact in got if fact["type"] == "tick")
    alerts = Counter(fact["key"] for fact in got if fact["type"] == "alert")
    assert set(ticks) == set(range(BATCHES * TICKS_PER_BATCH)), "ticks lost"
    assert set(alerts) == {f"k{number}" for number in range(0, BATCHES, ALERT_EVERY)}, "events lost"
    assert max(ticks.values()) == 1 and max(alerts.values()) == 1, "a fact stored twice"
    assert publisher.figures()["spine_dropped"] == 0


def test_the_replicas_setting_reaches_an_existing_stream_and_bucket(cluster: NatsCluster) -> None:
    async def scenario() -> tuple[tuple[int, int], tuple[int, int], bytes]:
        nc = await nats.connect(server_urls(cluster.urls))
        js = nc.jetstream(timeout=10)
        one, three = SpineSettings(instance="test"), SpineSettings(instance="test", replicas=3)
        await ensure_stream(js, one)
        kv = await ensure_bucket(js, one, "OBSERVER_TEST_LEASE", ttl=15)
        await kv.put("control", b"host-a")
        await ensure_stream(js, three)
        kv = await ensure_bucket(js, three, "OBSERVER_TEST_LEASE", ttl=15)
        entry = await kv.get("control")
        await nc.close()
        assert entry.value is not None
        return (await stream_replicas(cluster.urls, SUBJECTS.stream_name),
                await stream_replicas(cluster.urls, "KV_OBSERVER_TEST_LEASE"), entry.value)

    stream, bucket, kept = asyncio.run(scenario())
    assert stream == (3, 3)
    assert bucket == (3, 3)
    assert kept == b"host-a"


def test_the_cluster_starter_prints_the_url_list_and_stops_on_sigterm(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-m", "tools.nats_cluster", "--dir", str(tmp_path)],
                               stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        assert starter.stdout is not None
        line = starter.stdout.readline().strip()
        assert line.startswith("NATS ")
        urls = line.split(" ", 1)[1]
        assert len(server_urls(urls)) == 3

        async def answers() -> bool:
            nc = await nats.connect(server_urls(urls))
            await nc.jetstream().account_info()
            await nc.close()
            return True

        assert asyncio.run(answers())
    finally:
        starter.send_signal(signal.SIGTERM)
        assert starter.wait(15) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "n1", "n1.log", "n2", "n2.log", "n3", "n3.log"]
