"""The per-key limiter: slot spacing, bursts, timeouts, thread safety, and one limiter per key."""

from __future__ import annotations

import threading

import pytest
from pydantic import SecretStr

from config.settings import RateLimitSettings
from kis.ratelimit import RateLimiter, RateLimiterRegistry, RateLimitTimeout, rate_for


class FakeTime:
    """A monotonic clock that moves only when someone sleeps on it (thread-safe)."""

    def __init__(self, start: float = 1000.0, advance_on_sleep: bool = True) -> None:
        self.now = start
        self.advance_on_sleep = advance_on_sleep
        self.sleeps: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            if self.advance_on_sleep:
                self.now += seconds


def limiter(rate: float, fake: FakeTime, burst: int = 1, guard: float = 0.0) -> RateLimiter:
    return RateLimiter(rate, burst, guard=guard, monotonic=fake.monotonic, sleep=fake.sleep)


def test_back_to_back_callers_are_spaced_one_interval_apart() -> None:
    fake = FakeTime()
    paced = limiter(20.0, fake)
    waits = [paced.acquire() for _ in range(5)]
    assert waits[0] == 0.0
    assert waits[1:] == pytest.approx([0.05] * 4)
    assert fake.now == pytest.approx(1000.2)


def test_the_guard_stretches_every_window_of_rate_plus_one_sends() -> None:
    fake = FakeTime()
    paced = limiter(20.0, fake, guard=0.05)
    sends = []
    for _ in range(60):
        paced.acquire()
        sends.append(fake.monotonic())
    spans = [later - earlier for earlier, later in zip(sends, sends[20:], strict=False)]
    assert min(spans) == pytest.approx(1.05)
    assert paced.rate == pytest.approx(20.0)


def test_idle_time_is_not_banked_beyond_the_burst() -> None:
    fake = FakeTime()
    paced = limiter(2.0, fake, burst=3)
    fake.now += 60.0
    waits = [paced.acquire() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3:] == pytest.approx([0.5, 0.5])


def test_timeout_refuses_without_reserving_a_slot() -> None:
    fake = FakeTime()
    paced = limiter(1.0, fake)
    paced.acquire()
    with pytest.raises(RateLimitTimeout, match="no request slot within"):
        paced.acquire(timeout=0.5)
    assert paced.acquire(timeout=1.0) == pytest.approx(1.0)


def test_concurrent_callers_never_share_a_slot() -> None:
    fake = FakeTime(advance_on_sleep=False)
    paced = limiter(100.0, fake)
    waits: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            wait = paced.acquire()
            with lock:
                waits.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    slots = sorted(round(wait / 0.01) for wait in waits)
    assert slots == list(range(200))


def test_invalid_rates_are_refused() -> None:
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateLimiter(0)
    with pytest.raises(ValueError, match="burst must be >= 1"):
        RateLimiter(1.0, burst=0)
    with pytest.raises(ValueError, match="guard must be >= 0"):
        RateLimiter(1.0, guard=-0.1)


def test_registry_hands_one_limiter_per_key() -> None:
    registry = RateLimiterRegistry()
    first = registry.limiter_for(SecretStr("key-A"), 20.0)
    again = registry.limiter_for(SecretStr("key-A"), 20.0)
    other = registry.limiter_for(SecretStr("key-B"), 2.0)
    assert first is again
    assert other is not first
    assert len(registry) == 2
    assert (first.rate, other.rate) == (20.0, 2.0)


def test_registry_keeps_the_stricter_rate_and_no_secret() -> None:
    registry = RateLimiterRegistry()
    shared = registry.limiter_for(SecretStr("secret-app-key-123"), 20.0)
    registry.limiter_for(SecretStr("secret-app-key-123"), 5.0)
    registry.limiter_for(SecretStr("secret-app-key-123"), 50.0)
    assert shared.rate == pytest.approx(5.0)
    assert "secret-app-key-123" not in repr(vars(registry))


def test_registry_is_safe_under_concurrent_first_use() -> None:
    registry = RateLimiterRegistry()
    found: list[RateLimiter] = []
    barrier = threading.Barrier(16)

    def worker() -> None:
        barrier.wait(timeout=5)
        found.append(registry.limiter_for(SecretStr("same-key"), 20.0))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    assert len(found) == 16
    assert len({id(limiter) for limiter in found}) == 1


def test_rate_comes_from_settings_by_account_kind() -> None:
    settings = RateLimitSettings(real_per_second=15.0, paper_per_second=1.5)
    assert rate_for(settings, paper=False) == 15.0
    assert rate_for(settings, paper=True) == 1.5
    assert rate_for(RateLimitSettings(), paper=True) == 2.0
