"""The one source of time: every component receives a `Clock` and never reads the time by itself."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from core.calendar import KST


class Clock(Protocol):
    """Aware KST time. `speed` is simulated seconds per real second (1 for the wall clock)."""

    speed: float

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock in Asia/Seoul. freezegun controls it in tests."""

    speed: float = 1.0

    def now(self) -> datetime:
        return datetime.now(KST)


class SimulatedClock:
    """A clock that starts at `start` and runs `speed` times faster than real time.

    `speed=0` gives a manual clock that moves only through `advance` and `set`, which is what
    deterministic tests of the actors want.
    """

    def __init__(
        self,
        start: datetime,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if start.tzinfo is None:
            raise ValueError("SimulatedClock needs an aware start time")
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = float(speed)
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._origin = start.astimezone(KST)
        self._real_origin = monotonic()

    @classmethod
    def in_step(cls, simulated: datetime, wall: float, speed: float) -> SimulatedClock:
        """A clock that read `simulated` at wall-clock time `wall` (epoch seconds) and runs at `speed`: the
        same time as another process's clock that printed both (`tools.kis_sim` CLOCK line)."""
        return cls(simulated + timedelta(seconds=(time.time() - wall) * speed), speed)

    def now(self) -> datetime:
        with self._lock:
            elapsed = (self._monotonic() - self._real_origin) * self.speed
            return self._origin + timedelta(seconds=elapsed)

    def advance(self, seconds: float) -> datetime:
        """Move simulated time forward (or back, with a negative value) at once."""
        with self._lock:
            self._origin += timedelta(seconds=seconds)
        return self.now()

    def set(self, moment: datetime) -> None:
        """Jump to `moment` and keep running from there at the same speed."""
        if moment.tzinfo is None:
            raise ValueError("SimulatedClock.set needs an aware datetime")
        with self._lock:
            self._origin = moment.astimezone(KST)
            self._real_origin = self._monotonic()

    def real_seconds(self, simulated_seconds: float) -> float:
        """How long a wait of `simulated_seconds` lasts in real time (0 on a manual clock)."""
        return simulated_seconds / self.speed if self.speed else 0.0
