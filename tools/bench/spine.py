"""Ticks per second through the publisher onto the spine, counted by a subscriber in another process.

    python -m tools.bench.spine [--ticks N]

One embedded nats-server with the day's JetStream stream. The baseline is nats-py alone in this process
publishing the same tick messages already encoded (the ceiling of the client, the server and the outside
subscriber together); the figure is `Publisher.publish` of one `TicksReceived` per tick from a producer
thread, as the recorder hands them over, with conversion to the public model and encoding on the
publisher's thread. Both are the ticks the subscriber received divided by the time from the first publish
to the last tick received (`time.monotonic` is one clock for every process of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import nats

from config.settings import SpineSettings
from core.settings import SessionSettings
from kis.ticks import TradeTick
from messages.market import TicksReceived
from runtime.clock import KST
from spine.convert import facts_of
from spine.publisher import Publisher
from spine.server import NatsServer
from spine.stream import ensure_stream
from spine.subjects import Subjects
from tools.bench.report import Result

INSTANCE = "bench"
TARGET_TICKS_PER_SECOND = 20_000
SYMBOLS = 40
AT = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


def tick_messages(count: int) -> list[TicksReceived]:
    """`count` single-tick messages over `SYMBOLS` symbols, one per exchange millisecond."""
    messages = []
    for i in range(count):
        at = AT + timedelta(milliseconds=i)
        tick = TradeTick(f"{i % SYMBOLS:06d}", at, 70_000 + i % 50, 100, "2", 0.14, 1 + i % 9, 1_000 + i,
                         70_000_000, 69_900, 70_100, 69_800, 70_100, 70_000, "1", 101.5, "0", ())
        messages.append(TicksReceived(at=at, account="bench", ticks=(tick,), received_mono=0.0))
    return messages


def subscriber(url: str, subject: str, count: int, timeout: float) -> subprocess.Popen[str]:
    """A plain nats-py subscriber in a child process; it prints READY, then `<received> <last monotonic>`."""
    code = f"""
import asyncio, time, nats
async def main():
    nc = await nats.connect({url!r})
    state = {{"n": 0, "last": 0.0}}
    done = asyncio.Event()
    async def on_message(msg):
        state["n"] += 1
        state["last"] = time.monotonic()
        if state["n"] >= {count}:
            done.set()
    await nc.subscribe({subject!r}, cb=on_message, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    print("READY", flush=True)
    try:
        await asyncio.wait_for(done.wait(), {timeout})
    except asyncio.TimeoutError:
        pass
    print(state["n"], state["last"], flush=True)
    await nc.close()
asyncio.run(main())
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "READY":
        raise RuntimeError("the outside subscriber did not start")
    return process


def received(process: subprocess.Popen[str]) -> tuple[int, float]:
    out, _ = process.communicate(timeout=120)
    count, last = out.split()
    return int(count), float(last)


def baseline_rate(server: NatsServer, messages: list[TicksReceived], timeout: float) -> tuple[float, int]:
    """nats-py alone: the same messages, encoded beforehand, published from one asyncio loop."""
    subjects = Subjects(INSTANCE)
    encoded = []
    for message in messages:
        for fact in facts_of(message, SessionSettings()):
            encoded.append((subjects.of(fact.subject_pattern, **fact.subject_keys()),
                            fact.model_dump_json().encode()))
    listener = subscriber(server.url, subjects.ticks(), len(encoded), timeout)

    async def publish_all() -> float:
        nc = await nats.connect(server.url)
        await ensure_stream(nc.jetstream(), SpineSettings(instance=INSTANCE))  # stored like the figure's
        started = time.monotonic()
        for number, (subject, payload) in enumerate(encoded, start=1):
            await nc.publish(subject, payload)
            if number % 500 == 0:
                await asyncio.sleep(0)
        await nc.flush()
        await nc.close()
        return started

    started = asyncio.run(publish_all())
    count, last = received(listener)
    return count / max(last - started, 1e-9), count


def publisher_rate(
    server: NatsServer, messages: list[TicksReceived], timeout: float
) -> tuple[float, int, int]:
    """The observer's path: `publish()` from a producer thread; conversion and sending on the publisher's."""
    settings = SpineSettings(instance=INSTANCE, publish_queue_limit=len(messages) + 1)
    publisher = Publisher(server.url, settings, name="bench").start()
    if not publisher.wait_connected(20):
        raise RuntimeError("the publisher could not connect")
    listener = subscriber(server.url, publisher.subjects.ticks(), len(messages), timeout)
    started = time.monotonic()
    producer = threading.Thread(target=lambda: [publisher.publish(message) for message in messages])
    producer.start()
    producer.join()
    count, last = received(listener)
    publisher.stop()
    return count / max(last - started, 1e-9), count, publisher.dropped


def stream_messages(server: NatsServer) -> int:
    async def ask() -> int:
        nc = await nats.connect(server.url)
        info = await nc.jetstream().stream_info(Subjects(INSTANCE).stream_name)
        await nc.close()
        return int(info.state.messages)

    return asyncio.run(ask())


def throughput(root: Path, ticks: int = 50_000, timeout: float = 60.0) -> list[Result]:
    messages = tick_messages(ticks)
    with NatsServer(root / "nats", log_file=root / "nats-server.log") as server:
        base, base_count = baseline_rate(server, messages, timeout)
        rate, count, dropped = publisher_rate(server, messages, timeout)
        stored = stream_messages(server)
    detail = (f"{count:,} of {ticks:,} ticks received ({dropped} dropped), baseline {base_count:,}; "
              f"{stored:,} messages in the stream (both runs)")
    met = rate >= TARGET_TICKS_PER_SECOND and count == ticks
    return [Result("spine_ticks_to_outside_subscriber", rate, "ticks/s",
                   f">= {TARGET_TICKS_PER_SECOND:,}", base, met, detail)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.spine", description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50_000, help="ticks per measurement (50,000)")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="observer-bench-spine-") as scratch:
        (result,) = throughput(Path(scratch), ticks=args.ticks)
    print(f"ticks through the publisher to an outside subscriber: {result.figure:,.0f}/s (target "
          f"{result.target}; baseline, nats-py alone with pre-encoded messages: {result.baseline:,.0f}/s); "
          f"{result.detail}")
    if args.json is not None:
        args.json.write_text(json.dumps([result.to_json()], indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
