"""FetchWorker: REST calls made and their rows parsed in a child process at the lowest CPU priority.

Why: a Track A pass makes about 34 calls, each 3-4 ms of CPU in requests, JSON and row parsing. Made in the
observer's process, that CPU holds the interpreter lock that every hop of the tick path needs, and on a
two-core VM it takes a core at the same priority as the tick path: frames arriving during a pass waited
several times longer (DESIGN.md section 8 wants the tick p99 during a scan within 20 % of idle). A child
process has its own interpreter lock, and at `SCHED_IDLE` (nice 19 where Linux's policy is missing) it
gives its core to any other thread at once.

The child is a transport and a parser, nothing more: the rate limiter, the token, retries and the error
mapping stay with the client in the parent. A request is a `FetchRequest` (the headers carry the key,
secret and token over a pipe to our own child; neither side logs them). The answer is `Parsed` rows when
the call succeeded (HTTP 200, a JSON object without a KIS error, every row readable), else the `Raw`
answer for the parent to read exactly as it reads its own calls (so an error is raised the same way),
else `Failed` for a transport failure.

A call the worker cannot answer (the child died, or gave no answer within the request's timeout plus
`ANSWER_GRACE_SECONDS`) returns None and the client makes it itself; the child is ended, and `start()`
starts a new one only `REST_AFTER_FAILURE_SECONDS` later. A machine whose cores are both saturated by
other work leaves a `SCHED_IDLE` child almost no CPU: the calls then run in the main process, and the
worker costs one late call every ten minutes (a pass of 34 calls took 22 s instead of 3 s with two CPU
burners on two cores, before it fell back).
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loguru import logger

ANSWER_GRACE_SECONDS = 5.0
"""Beyond the request's own timeout (the child's start included, about half a second)."""
REST_AFTER_FAILURE_SECONDS = 600.0
STOP_JOIN_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """One HTTP call for the child, and the `kis.rest.ROW_PARSERS` entry that reads its rows."""

    method: str
    url: str
    params: Mapping[str, str] | str | None
    headers: Mapping[str, str]
    timeout: float
    parser: str


@dataclass(frozen=True, slots=True)
class Parsed:
    rows: list[Any]
    tr_cont: str


@dataclass(frozen=True, slots=True)
class Raw:
    """The answer as it came, for the parent to read: anything but a clean success."""

    status: int
    content: bytes
    content_type: str
    tr_cont: str
    retry_after: str


@dataclass(frozen=True, slots=True)
class Failed:
    """No answer: the transport failed (timeout, refused connection), described without the request."""

    description: str


Answer = Parsed | Raw | Failed


class FetchWorker:
    """The parent side: `channels` calls in flight at most, one pipe each to a thread of the child."""

    def __init__(self, channels: int = 2, *, name: str = "observer-fetch",
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if channels < 1:
            raise ValueError(f"a fetch worker needs at least one channel, got {channels}")
        self._channels = channels
        self._name = name
        self._monotonic = monotonic
        self._resting_until = -math.inf
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._free: queue.Queue[Connection] = queue.Queue()
        self._generation = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the child unless it runs, or rests after a failure (a no-op then); it imports for about
        half a second meanwhile.

        `python -m kis.fetch_worker FD...`, not multiprocessing's spawn, which would import the parent's
        main module (the whole observer) again in the child."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            if self._monotonic() < self._resting_until:
                return
            self._end_child()
            pairs = [multiprocessing.Pipe() for _ in range(self._channels)]
            fds = [child.fileno() for _, child in pairs]
            paths = os.pathsep.join(path for path in sys.path if path)
            process = subprocess.Popen(
                [sys.executable, "-m", "kis.fetch_worker", *map(str, fds)], pass_fds=fds,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": paths},
            )
            lower_priority(process.pid)  # from its first instruction on; the child sets it again itself
            for _, child in pairs:
                child.close()
            self._process = process
            self._generation += 1
            self._free = queue.Queue()
            for parent, _ in pairs:
                self._free.put(parent)

    def fetch(self, request: FetchRequest) -> Answer | None:
        """The child's answer, or None when it gave none (the caller makes the call itself)."""
        with self._lock:
            if self._process is None:
                return None
            free, generation = self._free, self._generation
        wait = request.timeout + ANSWER_GRACE_SECONDS
        try:
            channel = free.get(timeout=wait)
        except queue.Empty:
            return None  # more callers than channels, and none came free: the caller goes alone
        try:
            channel.send(request)
            if channel.poll(wait):
                answer: Answer = channel.recv()
                free.put(channel)
                return answer
            reason = "no answer in time"
        except (OSError, EOFError, ValueError) as error:
            reason = type(error).__name__
        channel.close()
        with self._lock:
            current = generation == self._generation  # not closed or restarted meanwhile
            if current:
                self._end_child()
                self._resting_until = self._monotonic() + REST_AFTER_FAILURE_SECONDS
        if current:
            logger.warning("{}: {}; calls are made in process, the worker starts again in {:.0f} s at the "
                           "earliest", self._name, reason, REST_AFTER_FAILURE_SECONDS)
        return None

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._end_child()

    def _end_child(self) -> None:
        """Close every pipe (the child's threads end at EOF), then make sure the child is gone."""
        process, self._process = self._process, None
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                break
        if process is None:
            return
        try:
            process.wait(STOP_JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_JOIN_SECONDS)

    def __enter__(self) -> FetchWorker:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def serve(channels: list[Connection]) -> None:
    """The child: lowest CPU priority, then one thread per channel until its pipe closes."""
    logger.remove()  # nothing the child does is logged: its requests carry secrets
    lower_priority()
    threads = [threading.Thread(target=_serve_channel, args=(channel,), daemon=True) for channel in channels]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def lower_priority(pid: int = 0) -> None:
    """SCHED_IDLE for process `pid`'s main thread (0: the calling thread) and the threads it starts later;
    nice 19 where the policy does not exist."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


def _serve_channel(channel: Connection) -> None:
    from kis.rest import answer_request  # the child's import: kis.rest uses this module's types

    sessions: dict[str, Any] = {}
    while True:
        try:
            request = channel.recv()
        except (EOFError, OSError):
            return
        try:
            answer = answer_request(request, sessions)
        except Exception as error:  # the thread must answer, or its caller waits out the timeout
            answer = Failed(f"fetch worker error ({type(error).__name__})")
        try:
            channel.send(answer)
        except (OSError, ValueError):
            return


if __name__ == "__main__":
    serve([Connection(int(fd)) for fd in sys.argv[1:]])
