"""What the operating system says of the disk: free bytes under a path."""

from __future__ import annotations

import shutil
from pathlib import Path


def free_bytes(path: Path) -> int:
    """Free bytes (for an unprivileged writer) on the filesystem holding `path`, read at its nearest existing
    folder (the data dir may not exist yet). OSError when the OS cannot say."""
    for candidate in (path, *path.absolute().parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return shutil.disk_usage(path.absolute().anchor).free
