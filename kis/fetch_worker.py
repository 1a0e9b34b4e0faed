"""FetchWorker: a Track A pass's REST calls made and their rows parsed in a child process at the lowest CPU
priority.

Why: a pass makes about 34 calls, each a few milliseconds of CPU in requests, JSON and row parsing. Made in
the observer's process, that CPU holds the interpreter lock that every hop of the tick path needs, and on a
two-core VM it takes a core at the same priority as the tick path: frames arriving during a pass waited
several times longer (DESIGN.md section 8 wants the tick p99 during a scan within 20 % of idle). A child
process has its own interpreter lock, and at `SCHED_IDLE` (nice 19 where Linux's policy is missing) it
gives its core to any other thread at once. Sending the child one call at a time still left about half a
millisecond per call here (a pickled request out, a pickled answer in, a poll, the client's own work), and
a permit asked per call added a wake-up and a reply each, so the child takes the whole pass as one
`FetchPlan` and asks for limiter slots `SLOTS_PER_ASK` at a time.

Protocol over one pipe, per plan: the parent sends the `FetchPlan`; the child asks for slots (`b"?"` and
a count) and the parent answers with that many rate-limiter slots (pickled `time.monotonic()` times, one
clock for every process on the machine), or none to end the plan (a stop); each call's `(index, answer)`
comes back pickled as soon as it is made; `b"."` ends the plan. Answers are not gathered into fewer
messages: reading one holds this process's interpreter lock 0.1-0.2 ms, and the tick path waits out such
a hold whole (five answers read at once held it half a millisecond, seven times a pass).
The child starts each call at or after its slot and only when one of its `in_flight` sessions is free, so
a slot passes unused rather than two calls bunching up; the first answer that is not `Parsed` ends its
calls. Gap recovery shares the key's limiter with the scan, so it waits at most `SLOTS_PER_ASK` slots more
than it would between calls made here. The rate limiter, the token, retries and the error mapping stay
with the client in the parent: the child's answer is `Parsed` rows for a clean success (HTTP 200, a JSON
object without a KIS error, every row readable) and `Failed` for anything else, described by its HTTP
status and KIS code only (the request carries the key, secret and token over a pipe to our own child;
neither side logs them).

A plan the worker cannot finish (the child died, or was silent for a request's timeout plus
`ANSWER_GRACE_SECONDS`) ends early; the caller makes the calls it has no answer for itself. The child is
ended, and `start()` starts a new one only `REST_AFTER_FAILURE_SECONDS` later: a machine whose cores are both
saturated by other work leaves a `SCHED_IDLE` child almost no CPU (a pass of 34 calls took 22 s instead of
3 s with two CPU burners on two cores), and the calls then run in the main process, the worker costing one
late call every ten minutes.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import pickle
import queue
import select
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from loguru import logger

ANSWER_GRACE_SECONDS = 5.0
"""Beyond the request's own timeout (the child's start included, about half a second)."""
REST_AFTER_FAILURE_SECONDS = 600.0
STOP_JOIN_SECONDS = 2.0
ASK, DONE = b"?", b"."
SLOTS_PER_ASK = 5
"""Limiter slots the child asks for at once: fewer wake-ups of the parent against a later turn for gap
recovery (5 slots at 20/s: a quarter of a second)."""


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
class FetchPlan:
    requests: tuple[FetchRequest, ...]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A clean success: the rows, and each row's `json_fields()` (the text the observer records) rendered
    and UTF-8 encoded here in the child: done in the observer, it would hold the interpreter lock the tick
    path needs (about 6 us a row)."""

    rows: list[Any]
    lines: tuple[bytes, ...]
    tr_cont: str


@dataclass(frozen=True, slots=True)
class Failed:
    """Not a clean success: an error answer or a transport failure, described without the request."""

    description: str


Answer = Parsed | Failed


class FetchWorker:
    """The parent side: one child, one plan at a time, `in_flight` of its calls at once."""

    def __init__(self, in_flight: int = 2, *, name: str = "observer-fetch",
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if in_flight < 1:
            raise ValueError(f"a fetch worker needs at least one call in flight, got {in_flight}")
        self._in_flight = in_flight
        self._name = name
        self._monotonic = monotonic
        self._resting_until = -math.inf
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: Connection | None = None
        self._busy = False  # a plan is reading the channel: only that plan may close it
        self._generation = 0

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> None:
        """Start the child unless it runs, or rests after a failure (a no-op then); it imports for about
        half a second meanwhile.

        `python -m kis.fetch_worker FD IN_FLIGHT`, not multiprocessing's spawn, which would import the
        parent's main module (the whole observer) again in the child."""
        with self._lock:
            if self._process is not None and self._process.poll() is None:
                return
            if self._monotonic() < self._resting_until:
                return
            self._end_child()
            parent, child = multiprocessing.Pipe()
            paths = os.pathsep.join(path for path in sys.path if path)
            process = subprocess.Popen(
                [sys.executable, "-m", "kis.fetch_worker", str(child.fileno()), str(self._in_flight)],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env={**os.environ, "PYTHONPATH": paths},
            )
            lower_priority(process.pid)  # from its first instruction on; the child sets it again itself
            child.close()
            self._process, self._channel = process, parent
            self._generation += 1

    def fetch_plan(self, requests: Sequence[FetchRequest], reserve: Callable[[int], Sequence[float]],
                   on_answer: Callable[[int, Answer], None]) -> bool:
        """Have the child make `requests`, each at or after a slot from `reserve(count)` (the `monotonic`
        times of the next `count` slots; none ends the plan: no call starts after it). `on_answer(index,
        answer)` is called here for each answer as it comes.

        True when the child ended the plan; False when it gave no end (no child, or it died or fell
        silent): the requests without an answer were not made, or their answers are lost."""
        with self._lock:
            channel, generation = self._channel, self._generation
            if channel is None or not requests:
                return not requests
            self._busy = True
        wait_ms = (max(request.timeout for request in requests) + ANSWER_GRACE_SECONDS) * 1000
        readable = select.poll()  # once: `Connection.poll` builds a selector on every call (90 us each)
        readable.register(channel.fileno(), select.POLLIN)
        try:
            channel.send(FetchPlan(tuple(requests)))
            while readable.poll(wait_ms):
                message = channel.recv_bytes()
                if message.startswith(ASK):
                    slots = tuple(reserve(int(message[len(ASK):])))
                    channel.send_bytes(pickle.dumps(slots, protocol=pickle.HIGHEST_PROTOCOL))
                elif message == DONE:
                    return True
                else:
                    on_answer(*pickle.loads(message))
            reason = "no answer in time"
        except (OSError, EOFError, ValueError, pickle.UnpicklingError) as error:
            reason = type(error).__name__
        finally:
            with self._lock:
                self._busy = False
                ended = channel is not self._channel
            if ended:
                channel.close()
        self._failed(generation, reason)
        return False

    def close(self) -> None:
        with self._lock:
            self._generation += 1
            self._end_child()

    def _failed(self, generation: int, reason: str) -> None:
        with self._lock:
            current = generation == self._generation  # not closed or restarted meanwhile
            if current:
                self._end_child()
                self._resting_until = self._monotonic() + REST_AFTER_FAILURE_SECONDS
        if current:
            logger.warning("{}: {}; calls are made in process, the worker starts again in {:.0f} s at the "
                           "earliest", self._name, reason, REST_AFTER_FAILURE_SECONDS)

    def _end_child(self) -> None:
        """Close the pipe (the child ends at EOF; a plan reading it is woken by a shutdown and closes it
        itself), then make sure the child is gone."""
        process, self._process = self._process, None
        channel, self._channel = self._channel, None
        if channel is not None and self._busy:
            with contextlib.suppress(OSError), socket.socket(fileno=os.dup(channel.fileno())) as end:
                end.shutdown(socket.SHUT_RDWR)
        elif channel is not None:
            channel.close()
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


def lower_priority(pid: int = 0) -> None:
    """SCHED_IDLE for process `pid`'s main thread (0: the calling thread) and the threads it starts later;
    nice 19 where the policy does not exist."""
    try:
        os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, pid, 19)


def serve(channel: Connection, in_flight: int) -> None:
    """The child: lowest CPU priority, then one plan after another until the pipe closes."""
    logger.remove()  # nothing the child does is logged: its requests carry secrets
    lower_priority()
    from kis.rest import answer_request  # before the first plan: importing it takes a few hundred ms

    sessions: list[dict[str, Any]] = [{} for _ in range(in_flight)]
    while True:
        try:
            plan = channel.recv()
        except (EOFError, OSError):
            return
        if not _run_plan(channel, plan, sessions, answer_request):
            return


def _run_plan(channel: Connection, plan: FetchPlan, sessions: list[dict[str, Any]],
              answer_request: Callable[[FetchRequest, dict[str, Any]], Answer]) -> bool:
    """The plan's calls, each on a thread of its own with a free session, at or after its slot; False when
    the pipe broke."""
    sending = threading.Lock()
    free: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
    for own in sessions:
        free.put(own)
    failed = threading.Event()

    def send(message: bytes) -> None:
        with sending:
            channel.send_bytes(message)

    def call(index: int, own: dict[str, Any]) -> None:
        try:
            answer: Answer = answer_request(plan.requests[index], own)
        except Exception as error:  # the parent must get an answer for a call it gave a slot
            answer = Failed(f"fetch worker error ({type(error).__name__})")
        if not isinstance(answer, Parsed):
            failed.set()
        with contextlib.suppress(OSError, ValueError):  # a broken pipe: the pacer meets it too
            send(pickle.dumps((index, answer), protocol=pickle.HIGHEST_PROTOCOL))
        free.put(own)

    calls: list[threading.Thread] = []
    slots: deque[float] = deque()
    try:
        for index in range(len(plan.requests)):
            own = free.get()
            if not slots:
                send(ASK + str(min(SLOTS_PER_ASK, len(plan.requests) - index)).encode())
                slots.extend(pickle.loads(channel.recv_bytes()))
            if failed.is_set() or not slots:
                break
            time.sleep(max(0.0, slots.popleft() - time.monotonic()))
            if failed.is_set():
                break
            calls.append(threading.Thread(target=call, args=(index, own), daemon=True))
            calls[-1].start()
        for thread in calls:
            thread.join()
        send(DONE)
    except (EOFError, OSError, ValueError, pickle.UnpicklingError):
        return False
    return True


if __name__ == "__main__":  # run from the module by its import name, so what it pickles names this module
    from kis.fetch_worker import serve as serve_imported

    serve_imported(Connection(int(sys.argv[1])), int(sys.argv[2]))
