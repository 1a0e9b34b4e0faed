"""Reconnect and restart delays: a stepped schedule with jitter so that many clients do not retry in step."""

from __future__ import annotations

import random
from dataclasses import dataclass

DEFAULT_STEPS: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delay before retry number `attempt` (0 for the first retry): `steps[attempt]`, the last step
    repeated once the schedule runs out, scaled by a random factor in [1 - jitter, 1 + jitter].

    `reset_after` is how long (seconds) a connection or child must stay healthy before its attempt
    count goes back to 0; the owner of the count applies it (`is_stable`).
    """

    steps: tuple[float, ...] = DEFAULT_STEPS
    jitter: float = 0.1
    reset_after: float = 60.0

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("Backoff needs at least one step")
        if any(step < 0 for step in self.steps):
            raise ValueError(f"Backoff steps must be >= 0, got {self.steps}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Backoff jitter must be in [0, 1], got {self.jitter}")
        if self.reset_after < 0:
            raise ValueError(f"Backoff reset_after must be >= 0, got {self.reset_after}")

    def base_delay(self, attempt: int) -> float:
        """The step for `attempt` without jitter."""
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        return self.steps[min(attempt, len(self.steps) - 1)]

    def delay(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait before retry `attempt`, jittered with `rng` (inject a seeded one in tests)."""
        base = self.base_delay(attempt)
        return base * (1.0 + rng.uniform(-self.jitter, self.jitter))

    def is_stable(self, healthy_seconds: float) -> bool:
        """Whether a run that stayed healthy this long earns a fresh schedule (attempt 0)."""
        return healthy_seconds >= self.reset_after
