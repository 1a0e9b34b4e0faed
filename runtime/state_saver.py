"""Saving state documents off an actor's thread, so its mailbox never waits for the disk.

A `StateStore.save` fsyncs the file and its folder: 5-20 ms on a VM disk, during which an actor on the
tick path would hold every frame queued behind it. A `StateSaver` takes the document and saves it on
its own thread; of several documents submitted under one name before the thread gets to them, only the
newest is written (each is a whole snapshot, so the older ones add nothing).

The owner submits documents nobody mutates afterwards (build a fresh dict each time), and calls
`close()` when it ends (stop or failure): that waits until every submitted document is on disk, so a
restarted owner loads what its previous incarnation last saved.

    saver = StateSaver(StateStore(paths.state_dir), thread_name="triggers-saver", log=self.log)
    saver.save("triggers", {"live": [...]})
    saver.close(timeout=5.0)
"""

from __future__ import annotations

import threading
from typing import Any

from loguru import logger

from runtime.state_store import StateStore


class StateSaver:
    """One background thread saving the newest submitted document per name into `store`."""

    def __init__(self, store: StateStore, *, thread_name: str, log: Any = logger) -> None:
        self._store = store
        self._log = log
        self._pending: dict[str, dict[str, Any]] = {}
        self._saving = False
        self._closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    def save(self, name: str, document: dict[str, Any]) -> None:
        """Queue `document` as the next version of `name` (replacing one still waiting). Never blocks on
        the disk; a save that fails is logged (one line) by the saving thread."""
        with self._changed:
            if self._closed:
                raise RuntimeError(f"state saver closed: cannot save {name!r}")
            self._pending[name] = document
            self._changed.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every document submitted so far is saved (or failed); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._pending and not self._saving, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Save what is waiting, then end the thread; False if that took longer than `timeout`."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._pending or self._closed)
                if not self._pending:
                    return
                name = next(iter(self._pending))
                document = self._pending.pop(name)
                self._saving = True
            try:
                self._store.save(name, document)
            except (OSError, TypeError, ValueError) as error:
                self._log.error("could not save state {}: {}", name, error)
            finally:
                with self._changed:
                    self._saving = False
                    self._changed.notify_all()
