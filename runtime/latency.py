"""Latency samples per stage, cheap enough to take on the tick path, and their percentiles.

A stage is a point a frame reaches after it arrived ("record_written", "trigger_evaluated"); the caller
passes the `time.monotonic()` stamp taken on arrival (`TicksReceived.received_mono`). `observe` takes no
lock: each stage has its own bounded deque, whose `append` is atomic under the GIL, so several actor
threads may observe at once. Readers copy the samples (`summary`), which is also safe while writers go on.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DEFAULT_MAX_SAMPLES = 1_000_000


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Percentiles of one stage in seconds (NaN when there is no sample)."""

    count: int
    p50: float
    p99: float
    max: float


class _Stage:
    __slots__ = ("records", "samples")

    def __init__(self, max_samples: int) -> None:
        self.samples: deque[float] = deque(maxlen=max_samples)
        self.records = 0


class LatencyRecorder:
    """Arrival-to-stage latencies of frames; the newest `max_samples` per stage are kept."""

    def __init__(self, max_samples: int = DEFAULT_MAX_SAMPLES) -> None:
        self._max_samples = max_samples
        self._stages: dict[str, _Stage] = {}
        self._create = threading.Lock()

    def observe(self, stage: str, arrived_mono: float, records: int = 1) -> None:
        """One frame of `records` records reached `stage` now; it arrived at `arrived_mono`."""
        now = time.monotonic()
        entry = self._stages.get(stage) or self._stage(stage)
        entry.samples.append(now - arrived_mono)
        entry.records += records  # a lost increment under a race only blurs a progress count

    def records(self, stage: str) -> int:
        """Records that reached `stage` so far (a progress counter for throughput runs)."""
        entry = self._stages.get(stage)
        return entry.records if entry is not None else 0

    def samples(self, stage: str) -> list[float]:
        entry = self._stages.get(stage)
        return list(entry.samples) if entry is not None else []

    def summary(self, stage: str) -> LatencySummary:
        samples = sorted(self.samples(stage))
        return LatencySummary(
            count=len(samples),
            p50=percentile(samples, 50.0),
            p99=percentile(samples, 99.0),
            max=samples[-1] if samples else math.nan,
        )

    def reset(self, stages: Iterable[str] | None = None) -> None:
        """Forget the samples (of `stages`, or of every stage); the record counts keep counting."""
        for name in list(self._stages) if stages is None else stages:
            entry = self._stages.get(name)
            if entry is not None:
                entry.samples.clear()

    def _stage(self, stage: str) -> _Stage:
        with self._create:
            return self._stages.setdefault(stage, _Stage(self._max_samples))


def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100) of already sorted samples, by linear interpolation between the
    closest ranks (as `statistics.quantiles(method="inclusive")`); NaN for no sample."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    n = len(sorted_samples)
    if n == 0:
        return math.nan
    position = (n - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, n - 1)
    fraction = position - low
    return sorted_samples[low] + (sorted_samples[high] - sorted_samples[low]) * fraction
