"""What the benchmark groups share: the server child processes, a real actor context, timed actor stages.

Timing without touching the actors: `timed(ActorClass, stage, latency)` subclasses a real actor so that,
after its own `on_receive` has handled a `TicksReceived`, the frame's arrival-to-here latency is observed
(the recorder has written the lines, the trigger actor has run its detectors). Everything else is the
actor's own code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pykka
from pydantic import SecretStr

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from config.accounts import Account
from config.settings import Settings, TokenSettings
from kis.ratelimit import RateLimiterRegistry
from kis.token_vault import TokenVault
from messages.market import SymbolProfile, TicksReceived, UniverseReady
from runtime.clock import KST, Clock, SimulatedClock
from runtime.latency import LatencyRecorder
from runtime.metrics import Metrics
from runtime.paths import DataPaths

ACCOUNT = "bench"
WARM_UP_START = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
READY_TIMEOUT = 60.0


class BenchError(RuntimeError):
    """A benchmark could not run (not: a figure missed its target)."""


class BenchServer:
    """The simulator and the frame blaster, each a `python -m tools.bench.server` child process; `info`
    merges their READY lines, and each command goes to the part that knows it."""

    def __init__(self, *args: str) -> None:
        self._sim = ServerPart("--part", "sim", *args)
        try:
            self._blaster = ServerPart("--part", "blaster", *args)
        except BaseException:
            self._sim.close()
            raise
        self.info: dict[str, Any] = self._sim.info | self._blaster.info

    @property
    def rest_url(self) -> str:
        return str(self.info["rest_url"])

    @property
    def ws_url(self) -> str:
        return str(self.info["ws_url"])

    @property
    def blaster_url(self) -> str:
        return str(self.info["blaster_url"])

    @property
    def universe(self) -> list[str]:
        """The simulator's 1,000 largest symbols, largest first."""
        return [facts["symbol"] for facts in self.info["universe"]]

    def cpu_seconds(self) -> float:
        """CPU time (user + system) both parts have used so far; NaN where /proc cannot tell."""
        return self._sim.cpu_seconds() + self._blaster.cpu_seconds()

    def command(self, **command: Any) -> dict[str, Any]:
        part = self._sim if command.get("cmd") == "drop" else self._blaster
        return part.command(**command)

    def close(self) -> None:
        self._blaster.close()
        self._sim.close()

    def __enter__(self) -> BenchServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


class ServerPart:
    """One part as a child process, driven by JSON lines over its stdin/stdout."""

    def __init__(self, *args: str, ready_timeout: float = READY_TIMEOUT) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.server", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        self._lock = threading.Lock()
        try:
            line = self._read_line(ready_timeout)
        except BenchError:
            reason = self._start_failure(args, ready_timeout)
            self._process.kill()  # it reads no command before it is ready
            self._process.wait(5.0)
            self._close_pipes()
            raise BenchError(reason) from None
        if not line.startswith("READY "):
            self.close()
            raise BenchError(f"bench server did not start: {line.strip()[:200]!r}")
        self.info: dict[str, Any] = json.loads(line[len("READY "):])

    def _start_failure(self, args: tuple[str, ...], waited: float) -> str:
        """Why no READY line came: the child ended (its stderr is above), or it is still starting."""
        part = " ".join(args)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1.0)  # an end of its output may come just before its exit status
        code = self._process.returncode
        if code is not None:
            return f"bench server ({part}) exited with status {code} before it was ready (stderr above)"
        return (f"bench server ({part}) was not ready within {waited:g} s: it starts in "
                f"a few seconds on a quiet machine; are the cores busy with other work?")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self._process.pid)

    def command(self, **command: Any) -> dict[str, Any]:
        with self._lock:
            stdin = self._process.stdin
            assert stdin is not None
            stdin.write(json.dumps(command) + "\n")
            stdin.flush()
            answer: dict[str, Any] = json.loads(self._read_line(30.0))
        if "error" in answer:
            raise BenchError(f"bench server: {answer['error']}")
        return answer

    def close(self) -> None:
        if self._process.poll() is None:
            with contextlib.suppress(OSError, ValueError, BenchError):
                self.command(cmd="quit")
            try:
                self._process.wait(15.0)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5.0)
        self._close_pipes()

    def _close_pipes(self) -> None:
        for pipe in (self._process.stdin, self._process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def _read_line(self, timeout: float) -> str:
        stdout = self._process.stdout
        assert stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            raise BenchError("bench server did not answer (it may have crashed; see its stderr above)")
        return result[0]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), from /proc; NaN where there is none."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of process `pid` and of every process below it (the bench servers)."""
    total = process_cpu_seconds(pid)
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return total
    for task in tasks:
        with contextlib.suppress(OSError, ValueError):
            for child in (task / "children").read_text().split():
                total += process_tree_cpu_seconds(int(child))
    return total


def bench_account() -> Account:
    """Fresh credentials: the simulator opens an account for any key."""
    return Account(name=ACCOUNT, app_key=SecretStr(f"PSBENCH{uuid.uuid4().hex}"),
                   app_secret=SecretStr(uuid.uuid4().hex * 4))


def bench_context(root: Path, clock: Clock, *, rest_url: str, ws_url: str | None,
                  settings: Settings | None = None) -> ObserverContext:
    """A real context with one account against the bench server; data, state and tokens under `root`."""
    base = settings or Settings()
    tokens = TokenSettings(min_issue_interval_seconds=0.05, cache_dir=str(root / "tokens"))
    settings = base.model_copy(update={"accounts": (bench_account(),), "tokens": tokens})
    vault = TokenVault(settings.accounts, clock, tokens, rest_url=rest_url, rate_limits=settings.rate_limit,
                       limiters=RateLimiterRegistry())
    return ObserverContext(settings=settings, clock=clock, metrics=Metrics(), paths=DataPaths(root / "data"),
                           vault=vault, rest_url=rest_url, ws_url=ws_url)


def timed(actor_class: type[ObserverActor], stage: str, latency: LatencyRecorder) -> type[ObserverActor]:
    """`actor_class`, observing each TicksReceived's latency to `stage` once its handler has run."""
    observe = latency.observe

    def on_receive(self: Any, message: Any) -> Any:
        result = actor_class.on_receive(self, message)
        if type(message) is TicksReceived:
            observe(stage, message.received_mono, len(message.ticks))
        return result

    return type(f"Timed{actor_class.__name__}", (actor_class,), {"on_receive": on_receive})


def universe_message(clock: Clock, facts: list[dict[str, Any]]) -> UniverseReady:
    """The day's universe for the trigger and recorder actors, from the bench server's symbol facts."""
    profiles = tuple(
        SymbolProfile(at=clock.now(), symbol=f["symbol"], name=f["name"], market=f["market"],
                      market_cap=f["market_cap"], prev_close=f["prev_close"],
                      avg_volume_20d=float(f["avg_volume_20d"]), atr_14d=float(f["atr_14d"]))
        for f in facts
    )
    return UniverseReady(at=clock.now(), day=clock.now().date(), profiles=profiles)


class Sink(ObserverActor):
    """A peer outside the measured path: takes what it is told and drops it."""

    def on_receive(self, message: Any) -> Any:
        return None


def warm_up(server: BenchServer, root: Path) -> None:
    """One untimed pass so the simulator has every symbol's day computed."""
    clock = SimulatedClock(WARM_UP_START, speed=1.0)
    context = bench_context(root, clock, rest_url=server.rest_url, ws_url=None)
    with context.rest_client(ACCOUNT) as client:
        client.multi_quotes(server.universe)


@dataclass
class Started:
    """Actors started for one benchmark, stopped in reverse order."""

    directory: Directory
    refs: list[tuple[str, pykka.ActorRef[Any]]] = field(default_factory=list)

    def start(self, name: str, actor_class: type[ObserverActor], *args: Any, **kwargs: Any) -> None:
        ref = actor_class.start(name, self.directory, *args, **kwargs)
        self.directory.register(name, ref)
        self.refs.append((name, ref))

    def stop(self) -> None:
        for name, ref in reversed(self.refs):
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                ref.stop(timeout=10.0)
            self.directory.unregister(name)
        self.refs.clear()

    def stop_one(self, name: str) -> None:
        for entry in [entry for entry in self.refs if entry[0] == name]:
            with contextlib.suppress(pykka.ActorDeadError, pykka.Timeout):
                entry[1].stop(timeout=10.0)
            self.directory.unregister(name)
            self.refs.remove(entry)

    def mailbox_depth(self) -> int:
        return sum(ref.actor_inbox.qsize() for _, ref in self.refs)


def wait_for(condition: Callable[[], bool], timeout: float, what: str, pause: float = 0.002) -> float:
    """Poll until `condition()`; return the monotonic time it first held. Raises BenchError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(pause)
