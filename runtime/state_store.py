"""Small named JSON documents that let a restarted actor or a restarted process pick up where it was.

A save is atomic (temporary file, fsync, rename, fsync of the folder), so a file is either the old
version or the new one. A file that is nevertheless unreadable (edited by hand, disk trouble) is moved
aside as `<name>.json.corrupt-<n>` with one warning: never deleted, never a crash.

With a `replica` (the control process's copy in the spine's key-value store, `spine.kv.StateReplica`) every
save is also handed to it, stamped with the file's modification time, so a standby control on another host
starts from the same documents.
"""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Protocol

from loguru import logger

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_TEMP_MARK = ".tmp-"


class StateReplica(Protocol):
    """A second home for saved documents; `put` must not wait for the network."""

    def put(self, key: str, text: str, saved_at: float) -> None: ...


STATE_KEY_PREFIX = "state."
"""A state document's key in a replica: `state.<name>`."""


class StateStore:
    """JSON objects stored as `<root>/<name>.json`. Safe to share between actors (one name per owner)."""

    def __init__(self, root: Path | str, replica: StateReplica | None = None) -> None:
        self.root = Path(root)
        self.replica = replica
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._remove_abandoned_temporaries()

    def path_for(self, name: str) -> Path:
        if not _NAME.fullmatch(name) or name.endswith(".json"):
            raise ValueError(f"state name {name!r}: use letters, digits, '.', '_', '-' (no path, no .json)")
        return self.root / f"{name}.json"

    def save(self, name: str, data: dict[str, Any]) -> None:
        """Replace the document `name` atomically. TypeError (old file intact) if `data` is not JSON."""
        path = self.path_for(name)
        if not isinstance(data, dict):
            raise TypeError(f"state {name!r} must be a dict, got {type(data).__name__}")
        try:
            text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as error:
            raise TypeError(f"state {name!r} cannot be saved as JSON: {error}") from None
        write_atomically(path, text.encode("utf-8"))
        if self.replica is not None:
            self.replica.put(f"{STATE_KEY_PREFIX}{name}", text, path.stat().st_mtime)

    def load(self, name: str) -> dict[str, Any] | None:
        """The saved document, or None when there is none or it was unreadable (then moved aside)."""
        path = self.path_for(name)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning("state {}: cannot read {}: {}; starting without it", name, path, error.strerror)
            return None
        try:
            data = json.loads(raw.decode("utf-8"))  # saves write UTF-8; json.loads(bytes) would guess
        except (ValueError, RecursionError) as error:
            reason = str(error).splitlines()[0] if raw else "empty file"
            self._move_aside(name, path, reason)
            return None
        if not isinstance(data, dict):
            self._move_aside(name, path, f"a JSON {type(data).__name__}, not an object")
            return None
        return data

    def delete(self, name: str) -> None:
        self.path_for(name).unlink(missing_ok=True)

    def _move_aside(self, name: str, path: Path, reason: str) -> None:
        with self._lock:
            number = 1
            while (aside := path.with_name(f"{path.name}.corrupt-{number}")).exists():
                number += 1
            try:
                os.replace(path, aside)
            except OSError as error:
                logger.warning("state {}: {} is invalid ({}) and could not be moved aside: {}; ignoring it",
                               name, path, reason, error.strerror)
                return
        logger.warning("state {}: {} is invalid ({}); moved to {}, starting without it", name, path, reason,
                       aside.name)

    def _remove_abandoned_temporaries(self) -> None:
        """A save cut off before its rename leaves a temporary behind; the real file is intact.

        Temporaries of this process are another actor's save in flight, not leftovers.
        """
        own = f"{_TEMP_MARK}{os.getpid()}-"
        for leftover in self.root.glob(f"*.json{_TEMP_MARK}*"):
            if own not in leftover.name:
                leftover.unlink(missing_ok=True)
                logger.debug("state: removed unfinished save {}", leftover.name)


def write_atomically(path: Path, data: bytes, modified_at: float | None = None) -> None:
    """Replace `path` with `data` (temporary file, fsync, rename, fsync of the folder); `modified_at` sets its
    modification time (a copy keeps its original's)."""
    temporary = path.with_name(f"{path.name}{_TEMP_MARK}{os.getpid()}-{threading.get_ident()}")
    try:
        with temporary.open("wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        if modified_at is not None:
            os.utime(temporary, (modified_at, modified_at))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make a rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
