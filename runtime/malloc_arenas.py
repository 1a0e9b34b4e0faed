"""glibc malloc arenas capped for a long-running process of many threads.

Each thread that allocates while another holds the main arena gets an arena of its own, up to eight per
core, and memory freed into one arena is not handed to another, so after a day of bursts (a backlog in a
mailbox, a scan's thousand rows) the resident size stays at the sum of every arena's high-water mark. The
actors allocate under the interpreter lock anyway, so two arenas cost no speed; the memory benchmark's
growth over a simulated day fell from 11-28 MB to 5-14 MB with them (README, Benchmarks).
"""

from __future__ import annotations

import ctypes

M_ARENA_MAX = -8
"""mallopt's parameter number for the arena limit (glibc malloc.h)."""
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """Cap this process's malloc arenas (call before the threads start); True when glibc took it. Other C
    libraries have no such knob and are left as they are."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_ARENA_MAX, arenas) == 1
