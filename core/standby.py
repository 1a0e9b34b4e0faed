"""Which control process is active, and which copy of a saved state document a new active one keeps.

Two control processes share one observer instance through a lease in the spine's key-value store; these are
the decisions each makes from what it reads there (the reading, the writing and the time to live are the
shell's, in `spine.kv`).
"""

from __future__ import annotations

from enum import StrEnum


class LeaseStep(StrEnum):
    """What a control process does after reading the lease."""

    TAKE = "take"
    """Nobody holds it (never taken, released, or expired): create it."""
    RENEW = "renew"
    """This process holds it (or its previous incarnation on the same host and data dir did): renew it."""
    WAIT = "wait"
    """Another holds it and this one is standby: keep waiting."""
    STEP_DOWN = "step_down"
    """Another holds it while this one believed it active: stop acting at once."""


def lease_step(me: str, holder: str | None, active: bool) -> LeaseStep:
    """The step for control `me` that reads `holder` (None: nobody) in the lease; `active`: it acts now."""
    if holder is None:
        return LeaseStep.TAKE
    if holder == me:
        return LeaseStep.RENEW
    return LeaseStep.STEP_DOWN if active else LeaseStep.WAIT


class Copy(StrEnum):
    DISK = "disk"
    SPINE = "spine"


def newest_copy(disk_saved_at: float | None, spine_saved_at: float | None) -> Copy | None:
    """Which copy of a document to keep at a takeover (None when neither exists): the one saved last; the
    disk's on a tie, since nothing then needs writing."""
    if disk_saved_at is None and spine_saved_at is None:
        return None
    if spine_saved_at is None:
        return Copy.DISK
    if disk_saved_at is None or spine_saved_at > disk_saved_at:
        return Copy.SPINE
    return Copy.DISK
