"""Real-time CPU priority for the tick path's threads (Linux `SCHED_FIFO`).

A woken thread of normal priority whose core is running another task waits until the scheduler lets that
task go: the end of its slice, checked at the next scheduler tick (every 4 ms at HZ=250). Every hand-off
on the tick path (socket to receive thread, to the connection actor, to the recorder, triggers and gap
actors) is such a wake-up, so on a small VM a Track A scan's bursts of CPU on the other core (the fetch
worker parsing a batch, at `SCHED_IDLE` though it is) stretched the actors' tick p99 1.3-2.6x, and a
do-nothing two-hop consumer's 3-5x. A `SCHED_FIFO` thread preempts any normal or idle task at once.

Threads started by a real-time thread run at normal priority (`SCHED_RESET_ON_FORK`): the timers and
workers the tick actors start must not inherit it. Unprivileged processes may use it up to their
`RLIMIT_RTPRIO` (systemd: `LimitRTPRIO=1`); where it is refused the thread stays as it was and the first
refusal in a process is logged as one warning.
"""

from __future__ import annotations

import functools
import os

from loguru import logger


def enter_realtime(priority: int) -> bool:
    """Put the calling thread at `SCHED_FIFO` `priority` (0: leave it as it is); whether it now is."""
    if priority <= 0:
        return False
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(priority))
    except (AttributeError, OSError) as error:  # AttributeError: not Linux
        _warn_refused(priority, f"{type(error).__name__}: {error}")
        return False
    return True


def is_realtime(native_id: int = 0) -> bool:
    """Whether the thread `native_id` (0: the calling one) is scheduled `SCHED_FIFO`."""
    try:
        return os.sched_getscheduler(native_id) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
    except (AttributeError, OSError):
        return False


@functools.cache
def _warn_refused(priority: int, reason: str) -> None:
    logger.warning(
        "the tick path stays at normal CPU priority: SCHED_FIFO {} was refused ({}); allow it with "
        "LimitRTPRIO={} in the systemd unit, or set websocket.tick_path_priority to 0 to silence this",
        priority, reason, priority,
    )
