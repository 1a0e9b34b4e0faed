"""The free-space floor under the data dir: when free space counts as below it, and when as recovered.

Below the floor the observer sheds its lower-priority writer (the spine's copy of ticks and scan snapshots)
so the journal keeps the disk for longest. Recovery needs `RECOVERY_MARGIN` above the floor, so free space
wavering around the floor does not raise an alert at every dip.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

RECOVERY_MARGIN = 0.1
"""Free space counts as recovered at the floor plus this fraction of it (2 GiB floor: 2.2 GiB)."""


class FloorChange(Enum):
    FELL = "fell"
    RECOVERED = "recovered"


@dataclass
class DiskFloor:
    """`update(free)` with each reading of free bytes; `below` says where it stands. A floor of 0 is off."""

    floor_bytes: int
    below: bool = False

    def update(self, free_bytes: int) -> FloorChange | None:
        """The change this reading makes (None: none): FELL once when free space drops under the floor,
        RECOVERED once it is back above the floor plus the margin."""
        if not self.below and free_bytes < self.floor_bytes:
            self.below = True
            return FloorChange.FELL
        if self.below and free_bytes >= self.floor_bytes * (1 + RECOVERY_MARGIN):
            self.below = False
            return FloorChange.RECOVERED
        return None
