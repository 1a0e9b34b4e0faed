"""Ticks per second through the publisher onto the spine, counted by a subscriber in another process; and
the fan-out to three outside subscribers.

    python -m tools.bench.spine [--ticks N] [--fanout] [--json FILE]

One embedded nats-server with the day's JetStream stream. The baseline is nats-py alone in this process
publishing the same tick messages already encoded (the ceiling of the client, the server and the outside
subscriber together); the figure is `Publisher.publish` of one `TicksReceived` per tick from a producer
thread, as the recorder hands them over, with conversion to the public model and encoding on the
publisher's thread. Both are the ticks the subscriber received divided by the time from the first publish
to the last tick received (`time.monotonic` is one clock for every process of the machine).

`--fanout` (group `fanout` of `python -m tools.bench`): the same publisher to three outside subscribers at
once, each its own process receiving every tick, against one subscriber: the slowest one's rate, and the
worst p99 from `publish()` to receipt with ticks published at 5,000/s (each stamped with the wall time of
its publication in `received_at`; the machine's processes share one wall clock).
"""

from __future__ import annotations

import argparse
import asyncio
import math
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
from tools.bench.report import Result, table, write_json

INSTANCE = "bench"
TARGET_TICKS_PER_SECOND = 20_000
SYMBOLS = 40
AT = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
FANOUT_SUBSCRIBERS = 3
FANOUT_RATE = 5_000.0
"""Ticks per second of the fan-out's latency (DESIGN.md section 8: p99 -> outside subscriber <= 50 ms)."""
FANOUT_P99_MS = 50.0
PACE_BATCH = 50


def tick_messages(count: int, accounts: int = 0) -> list[TicksReceived]:
    """`count` single-tick messages over `SYMBOLS` symbols, one per exchange millisecond; with `accounts`,
    over 41 symbols of each of that many accounts (sim1, sim2, ...) in turn."""
    symbols = 41 * accounts if accounts else SYMBOLS
    messages = []
    for i in range(count):
        at = AT + timedelta(milliseconds=i)
        account = f"sim{i % symbols // 41 + 1}" if accounts else "bench"
        tick = TradeTick(f"{i % symbols:06d}", at, 70_000 + i % 50, 100, "2", 0.14, 1 + i % 9, 1_000 + i,
                         70_000_000, 69_900, 70_100, 69_800, 70_100, 70_000, "1", 101.5, "0", ())
        messages.append(TicksReceived(at=at, account=account, ticks=(tick,), received_mono=0.0))
    return messages


def subscriber(
    url: str, subject: str, count: int, timeout: float, *, then_timed: int = 0
) -> subprocess.Popen[str]:
    """A plain nats-py subscriber in a child process; it prints READY, then `<received> <last monotonic>`
    once `count` ticks came (or `timeout` passed). With `then_timed` it goes on for that many more ticks
    and prints `<received> <last monotonic> <p99 ms>`, the p99 of wall time at receipt minus each tick's
    `received_at` (its publication, for the fan-out's paced ticks)."""
    code = f"""
import asyncio, json, time, nats
from datetime import datetime
async def main():
    nc = await nats.connect({url!r})
    phases = [({count}, False)] + ([({then_timed}, True)] if {then_timed} else [])
    state = {{"n": 0, "last": 0.0, "phase": 0}}
    delays = []
    done = asyncio.Event()
    async def on_message(msg):
        state["n"] += 1
        state["last"] = time.monotonic()
        wanted, timed = phases[state["phase"]]
        if timed:
            sent = datetime.fromisoformat(json.loads(msg.data)["received_at"]).timestamp()
            delays.append(time.time() - sent)
        if state["n"] >= wanted:
            done.set()
    await nc.subscribe({subject!r}, cb=on_message, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    print("READY", flush=True)
    for number, (_, timed) in enumerate(phases):
        try:
            await asyncio.wait_for(done.wait(), {timeout})
        except asyncio.TimeoutError:
            pass
        delays.sort()
        p99 = delays[int(len(delays) * 0.99)] * 1000 if delays else float("nan")
        print(state["n"], state["last"], p99 if timed else "", flush=True)
        state.update(n=0, phase=min(number + 1, len(phases) - 1))
        done.clear()
    await nc.close()
asyncio.run(main())
"""
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    if process.stdout.readline().strip() != "READY":
        raise RuntimeError("the outside subscriber did not start")
    return process


def received(process: subprocess.Popen[str]) -> tuple[int, float]:
    """What a subscriber printed at its end: ticks received, the monotonic time of the last."""
    count, last, _ = received_timed(process)
    return count, last


def received_timed(process: subprocess.Popen[str], *, last: bool = True) -> tuple[int, float, float]:
    """The next line a subscriber prints: ticks received, the monotonic time of the last, the p99 in ms
    (NaN for a phase that was not timed); after its `last` line the process is waited for."""
    assert process.stdout is not None
    words = process.stdout.readline().split()
    if last:
        process.wait(120)
    if len(words) < 2:
        raise RuntimeError("the outside subscriber ended without its figures")
    return int(words[0]), float(words[1]), float(words[2]) if len(words) > 2 else math.nan


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


def fanout_run(
    server: NatsServer, messages: list[TicksReceived], paced: list[TicksReceived], subscribers: int,
    timeout: float,
) -> tuple[float, int, float, int]:
    """`subscribers` outside subscribers at once. First `messages` as fast as `publish()` takes them: the
    slowest subscriber's rate and the fewest ticks any received. Then `paced` at FANOUT_RATE/s, each
    stamped with the wall time of its `publish()` call: the worst p99 (ms) of publication -> receipt and
    the fewest received."""
    settings = SpineSettings(instance=INSTANCE, publish_queue_limit=len(messages) + len(paced) + 1)
    publisher = Publisher(server.url, settings, name="bench-fanout").start()
    if not publisher.wait_connected(20):
        raise RuntimeError("the publisher could not connect")
    listeners = [subscriber(server.url, publisher.subjects.ticks(), len(messages), timeout,
                            then_timed=len(paced)) for _ in range(subscribers)]
    started = time.monotonic()
    for message in messages:
        publisher.publish(message)
    ends = [received_timed(listener, last=False) for listener in listeners]
    rate = min(count / max(end - started, 1e-9) for count, end, _ in ends)
    started = time.monotonic()
    for number, message in enumerate(paced):
        publisher.publish(message.model_copy(update={"at": datetime.now(KST)}))
        if number % PACE_BATCH == PACE_BATCH - 1:
            time.sleep(max(0.0, started + (number + 1) / FANOUT_RATE - time.monotonic()))
    timed = [received_timed(listener) for listener in listeners]
    publisher.stop()
    return (rate, min(count for count, _, _ in ends), max(p99 for _, _, p99 in timed),
            min(count for count, _, _ in timed))


def fanout(root: Path, ticks: int = 50_000, latency_seconds: float = 4.0, timeout: float = 60.0
           ) -> list[Result]:
    """Three outside subscribers, each receiving every tick, against one: throughput (`ticks` published as
    fast as the publisher takes them) and p99 publication -> receipt at FANOUT_RATE ticks/s."""
    messages = tick_messages(ticks)
    paced = tick_messages(int(FANOUT_RATE * latency_seconds))
    with NatsServer(root / "nats", log_file=root / "nats-server.log") as server:
        one_rate, one_count, one_p99, one_paced = fanout_run(server, messages, paced, 1, timeout)
        three_rate, three_count, three_p99, three_paced = fanout_run(server, messages, paced,
                                                                     FANOUT_SUBSCRIBERS, timeout)
    whole = three_count == ticks and one_count == ticks
    return [
        Result("spine_fanout_three_subscribers", three_rate, "ticks/s",
               f">= {TARGET_TICKS_PER_SECOND:,} each", one_rate,
               three_rate >= TARGET_TICKS_PER_SECOND and whole,
               f"the slowest of {FANOUT_SUBSCRIBERS} outside subscribers (each its own process); fewest "
               f"received {three_count:,} of {ticks:,}; baseline: one subscriber ({one_count:,} received)"),
        Result("spine_fanout_p99_three_subscribers", three_p99, "ms", f"<= {FANOUT_P99_MS:g}", one_p99,
               three_p99 <= FANOUT_P99_MS and three_paced == len(paced) and one_paced == len(paced),
               f"publish() -> an outside subscriber, the worst p99 of {FANOUT_SUBSCRIBERS}, at "
               f"{FANOUT_RATE:,.0f} ticks/s for {latency_seconds:g} s (no scan running); fewest received "
               f"{three_paced:,} of {len(paced):,}; baseline: one subscriber"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.spine", description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=50_000, help="ticks per measurement (50,000)")
    parser.add_argument("--fanout", action="store_true", help="measure the fan-out to three subscribers")
    parser.add_argument("--json", type=Path, help="write the result here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="observer-bench-spine-") as scratch:
        results = (fanout(Path(scratch), ticks=args.ticks) if args.fanout
                   else throughput(Path(scratch), ticks=args.ticks))
    print(table(results))
    for result in results:
        print(f"{result.name}: {result.detail}")
    if args.json is not None:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
