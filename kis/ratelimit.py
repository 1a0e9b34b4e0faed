"""Per-app-key request pacing shared by every caller of that key in the process.

KIS counts requests per app key per second (20/s real, 2/s paper). Several components (the scanner, gap
recovery, the token actor) use the same key, so they must draw from one limiter: the registry hands out
one `RateLimiter` per key. Requests are spaced evenly rather than sent in bursts, because a burst at a
second boundary is exactly what the gateway rejects with EGW00201.

The gateway counts arrivals in a sliding second, and arrivals jitter: a request sent on time can land a
few milliseconds after the one sent 50 ms later. So `rate` requests are spread over one second plus
`guard` (so any `rate + 1` consecutive sends span at least `1 + guard` seconds); with the default 50 ms
guard a 20/s key runs at 19.05/s, and a 1,000-symbol scan stays within 5 % of the 20/s floor.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from pydantic import SecretStr

from config.settings import RateLimitSettings


class RateLimitTimeout(TimeoutError):
    """A slot was not free within the caller's timeout; nothing was reserved."""


WINDOW_GUARD_SECONDS = 0.05
"""Arrival jitter the spacing absorbs (see the module docstring)."""


class RateLimiter:
    """Evenly spaced slots, `rate` per (1 + `guard`) seconds; `acquire` blocks until the caller's slot comes.

    Thread-safe: the slot is reserved under a lock and the wait happens outside it, so concurrent callers
    queue in order without holding each other up longer than the pacing requires. `burst` slots may be
    taken back to back after an idle spell.
    """

    def __init__(
        self,
        rate: float,
        burst: int = 1,
        *,
        guard: float = WINDOW_GUARD_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        if guard < 0:
            raise ValueError(f"guard must be >= 0 seconds, got {guard}")
        self._window = 1.0 + guard
        self._interval = self._window / rate
        self._burst = burst
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next_free = monotonic()

    @property
    def rate(self) -> float:
        """Requests per `1 + guard` seconds (the configured per-second limit)."""
        return self._window / self._interval

    def slow_down_to(self, rate: float) -> None:
        """Lower the rate (never raise it): when two settings name one key, the stricter one wins."""
        if rate <= 0:
            raise ValueError(f"rate must be > 0 requests per second, got {rate}")
        with self._lock:
            self._interval = max(self._interval, self._window / rate)

    def acquire(self, timeout: float | None = None) -> float:
        """Wait for the next slot and return how long the caller waited (seconds).

        With `timeout`, raise `RateLimitTimeout` instead of waiting longer than that.
        """
        with self._lock:
            now = self._monotonic()
            slot = self._first_free(now)
            wait = slot - now
            if timeout is not None and wait > timeout:
                raise RateLimitTimeout(f"no request slot within {timeout:.3f} s (next in {wait:.3f} s)")
            self._next_free = slot + self._interval
        if wait > 0:
            self._sleep(wait)
        return max(wait, 0.0)

    def _first_free(self, now: float) -> float:
        return max(self._next_free, now - (self._burst - 1) * self._interval)


class RateLimiterRegistry:
    """One limiter per app key. Keys are held as digests so the registry never holds a secret."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._limiters: dict[str, RateLimiter] = {}

    def limiter_for(self, app_key: SecretStr, rate: float) -> RateLimiter:
        """The shared limiter of `app_key`, created at `rate` on first use; a lower `rate` slows it."""
        digest = hashlib.sha256(app_key.get_secret_value().encode()).hexdigest()
        with self._lock:
            limiter = self._limiters.get(digest)
            if limiter is None:
                limiter = self._limiters[digest] = RateLimiter(rate)
            else:
                limiter.slow_down_to(rate)
            return limiter

    def __len__(self) -> int:
        with self._lock:
            return len(self._limiters)


def rate_for(settings: RateLimitSettings, paper: bool) -> float:
    return settings.paper_per_second if paper else settings.real_per_second


PROCESS_LIMITERS = RateLimiterRegistry()
"""The registry every client uses unless given another (tests give their own)."""
