"""The heartbeat: a `health` message (or a stream worker's `worker` message) on the spine every few seconds,
from a thread of its own."""

from __future__ import annotations

import threading
from collections.abc import Callable

from loguru import logger

from spine.publisher import Spine
from spine.wire import Fact


class Heartbeat:
    """`start()`: publish `build()` now and every `interval_seconds`; `stop()` ends it."""

    def __init__(self, spine: Spine, build: Callable[[], Fact], interval_seconds: float) -> None:
        self._spine = spine
        self._build = build
        self._interval = interval_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spine-heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _run(self) -> None:
        while True:
            try:
                self._spine.publish(self._build())
            except Exception as error:  # a pulse that cannot be built must not end the pulse
                logger.error("spine: heartbeat message not built: {}", error)
            if self._stopped.wait(self._interval):
                return
