"""Timers for actors: pykka has none, so a daemon thread sends a message every interval.

The interval is in REAL seconds. A caller on a simulated clock converts a simulated interval first
(`SimulatedClock.real_seconds`). The ticker ends by itself when its target actor is dead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeAlias

import pykka
from loguru import logger

TickTarget: TypeAlias = pykka.ActorRef[Any] | Callable[[Any], None]


class Ticker:
    """Send `make_message()` to `target` every `interval_seconds` until stopped or the target dies.

    `target` is an `ActorRef` (told) or a callable such as `functools.partial(directory.tell, "x")`;
    a callable that raises `pykka.ActorDeadError` ends the ticker the same way.
    """

    def __init__(
        self,
        target: TickTarget,
        make_message: Callable[[], Any],
        interval_seconds: float,
        *,
        name: str = "ticker",
        first_delay_seconds: float | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"ticker interval must be > 0 seconds, got {interval_seconds}")
        self._send: Callable[[Any], None] = target.tell if isinstance(target, pykka.ActorRef) else target
        self._make_message = make_message
        self._interval = float(interval_seconds)
        self._first_delay = self._interval if first_delay_seconds is None else max(0.0, first_delay_seconds)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.name = name

    def start(self) -> Ticker:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 1.0) -> None:
        """Ask the thread to end and wait for it (unless called from the ticker thread itself)."""
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def is_running(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        delay = self._first_delay
        while not self._stopping.wait(delay):
            delay = self._interval
            try:
                self._send(self._make_message())
            except pykka.ActorDeadError:
                logger.debug("ticker {} stops: its target is dead", self.name)
                return
            except Exception:
                logger.exception("ticker {} could not send its message; it keeps ticking", self.name)
