"""Reconnect: from a dropped session to all 41 subscriptions confirmed again, over many drops.

Each drop hits a fresh, healthy `WSConnectionActor` session on the simulator (the simulator cuts the TCP
connection without a close frame, as a network failure looks), so every reconnect waits the first backoff
step (1 s +- jitter): the case the target is about. A fresh actor per drop is needed because the actor only
goes back to the first step after a session has lived `Backoff.reset_after` (60 s).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

from actors.directory import Directory
from actors.ws_connection import WSConnectionActor
from messages.streaming import SetSubscriptions
from runtime.clock import SimulatedClock
from runtime.latency import percentile
from tools.bench.harness import ACCOUNT, BenchServer, Sink, Started, bench_context, wait_for
from tools.bench.report import Result
from tools.bench.server import BENCH_START

SUBSCRIPTIONS = 41
SLACK_SECONDS = 0.5


class _Watch:
    """When the actor's book last lost and last regained all its subscriptions (monotonic seconds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.full_at = 0.0
        self.lost_at = 0.0
        self.full = False


def watched_connection(watch: _Watch) -> type[WSConnectionActor]:
    """WSConnectionActor noting, after each message it handled, whether all registrations are confirmed."""

    def on_receive(self: Any, message: Any) -> Any:
        result = WSConnectionActor.on_receive(self, message)
        full = len(self.book.confirmed()) >= SUBSCRIPTIONS
        if full != watch.full:
            with watch.lock:
                watch.full = full
                if full:
                    watch.full_at = time.monotonic()
                else:
                    watch.lost_at = time.monotonic()
        return result

    return type("WatchedWSConnectionActor", (WSConnectionActor,), {"on_receive": on_receive})


def reconnects(server: BenchServer, root: Path, *, drops: int) -> Result:
    clock = SimulatedClock(BENCH_START, speed=1.0)
    context = bench_context(root, clock, rest_url=server.rest_url, ws_url=server.ws_url)
    first_step = context.settings.websocket.reconnect_backoff_seconds[0]
    symbols = tuple(server.universe[:SUBSCRIPTIONS])
    context.vault.approval_key(ACCOUNT)  # issued once, outside the timing, as the token actor would
    samples: list[float] = []
    for _ in range(drops):
        watch = _Watch()
        actors = Started(Directory(clock))
        try:
            for peer in ("notifier", "slots", "gaps", "recorder", "triggers"):
                actors.start(peer, Sink)
            actors.start(f"ws.{ACCOUNT}", watched_connection(watch), context, ACCOUNT)
            actors.directory.tell(f"ws.{ACCOUNT}", SetSubscriptions(at=clock.now(), account=ACCOUNT,
                                                                   symbols=symbols))
            wait_for(lambda w=watch: w.full, 20.0, "the first 41 confirmations")
            time.sleep(0.2)
            dropped = time.monotonic()
            server.command(cmd="drop")
            wait_for(lambda w=watch, t=dropped: w.lost_at > t, 10.0, "the drop to be seen")
            back = wait_for(lambda w=watch: w.full, first_step * 10 + 10, "41 confirmations after the drop")
            samples.append(watch.full_at - dropped if watch.full_at > dropped else back - dropped)
        finally:
            actors.stop()
    samples.sort()
    p50, p99 = percentile(samples, 50.0), percentile(samples, 99.0)
    limit = first_step + SLACK_SECONDS
    return Result(
        name="reconnect_to_41_confirmed_p99", figure=p99, unit="s", target=f"<= {limit:g} (first step + 0.5)",
        baseline=first_step, met=p99 <= limit,
        detail=f"p50 {p50:.3f} s, min {samples[0]:.3f} s, max {samples[-1]:.3f} s over {drops} drops; "
               f"mean {statistics.fmean(samples):.3f} s; baseline: the first backoff step "
               f"(jitter +-{context.settings.websocket.backoff_jitter:.0%})",
    )
