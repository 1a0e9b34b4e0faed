"""SCHED_FIFO for the calling thread alone, never inherited by the threads it starts, and a refusal that
leaves the thread as it was with one warning per process."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from runtime.realtime import enter_realtime, is_realtime

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
REFUSED = """
import os, resource, sys
from loguru import logger
from runtime.realtime import enter_realtime, is_realtime
if os.geteuid() == 0:  # nobody has no CAP_SYS_NICE, so RLIMIT_RTPRIO decides
    os.setgid(65534)
    os.setuid(65534)
resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))
logger.remove()
logger.add(sys.stdout, format="{level} {message}")
print(enter_realtime(1), enter_realtime(1), is_realtime())
"""


def in_thread(work: Callable[[], T]) -> T:
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(work()))
    thread.start()
    thread.join(timeout=5)
    return results[0]


def test_priority_zero_leaves_the_thread_at_normal_scheduling() -> None:
    assert in_thread(lambda: (enter_realtime(0), is_realtime())) == (False, False)


def test_the_calling_thread_alone_becomes_realtime_and_the_threads_it_starts_do_not(
    realtime_permitted: bool,
) -> None:
    def work() -> tuple[bool, bool, bool]:
        entered = enter_realtime(1)
        return entered, is_realtime(), in_thread(is_realtime)

    entered, became, its_child = in_thread(work)
    assert (entered, became) == (realtime_permitted, realtime_permitted)
    assert its_child is False
    assert not is_realtime()  # the test's own thread is untouched


def test_another_threads_policy_is_read_by_its_native_id(realtime_permitted: bool) -> None:
    entered, leave = threading.Event(), threading.Event()

    def hold() -> None:
        enter_realtime(1)
        entered.set()
        leave.wait(5)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(5)
        assert thread.native_id is not None
        assert is_realtime(thread.native_id) is realtime_permitted
    finally:
        leave.set()
        thread.join()


def test_a_refusal_leaves_the_thread_as_it_was_and_warns_once_per_process() -> None:
    done = subprocess.run([sys.executable, "-c", REFUSED], cwd=REPO, capture_output=True, text=True,
                          timeout=60, check=True)
    lines = done.stdout.splitlines()
    assert lines[-1] == "False False False"
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 1
    assert "SCHED_FIFO 1 was refused (PermissionError" in warnings[0]
    assert "LimitRTPRIO=1" in warnings[0]
