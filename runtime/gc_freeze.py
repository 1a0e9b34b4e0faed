"""The startup objects taken out of the cyclic garbage collector's way, for a process on the tick path.

A full collection (generation 2) walks every container object the process tracks while it holds the
interpreter lock: about 70,000 once the actors have started (modules, pydantic schemas, settings), which
took 33-48 ms on the 2-vCPU VM, a stall for every frame in flight; one came once or twice a minute in some
runs with Track A scans back to back. Those objects live as long as the process, so once the system has
started they go to the permanent generation that collections skip (`gc.freeze`); what is allocated
afterwards is collected as usual. A reference cycle among frozen objects that later becomes garbage is never
freed: startup objects rarely do, and a few leaked kilobytes cost less than the stalls.
"""

from __future__ import annotations

import gc


def freeze_startup_objects() -> int:
    """Collect the garbage there is now, then freeze every object still tracked; how many are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
