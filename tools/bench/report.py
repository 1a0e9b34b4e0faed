"""Benchmark results: one `Result` per figure, printed as a table and written as JSON."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

JITTER_JOB_STEPS = 2_000


@dataclass(frozen=True, slots=True)
class Result:
    """A figure against its target, with a baseline measured in the same run (NaN when there is none)."""

    name: str
    figure: float
    unit: str
    target: str
    baseline: float
    met: bool
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        record = asdict(self)
        record["figure"] = _finite_or_none(self.figure)
        record["baseline"] = _finite_or_none(self.baseline)
        return record

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> Result:
        """The inverse of `to_json` (None back to NaN)."""
        numbers = {key: math.nan if record[key] is None else float(record[key])
                   for key in ("figure", "baseline")}
        return cls(**(record | numbers))


def _finite_or_none(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def _number(value: float) -> str:
    if not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 0.01 else f"{value:.3f}"


def table(results: Sequence[Result]) -> str:
    """A fixed-width table: name, figure, unit, target, baseline, met."""
    header = ("benchmark", "figure", "unit", "target", "baseline", "met")
    rows = [(r.name, _number(r.figure), r.unit, r.target, _number(r.baseline), "yes" if r.met else "NO")
            for r in results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {1, 4}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                         for i, (cell, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def steal_seconds() -> float:
    """CPU time the hypervisor has given to other guests while this VM's cores wanted it, summed over the
    cores, since boot (/proc/stat "steal"); NaN where there is no such figure. Sampled around a run, it says
    whether the host was busy enough to make the run's figures unlike a quiet machine's."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return math.nan


def host_jitter(seconds: float = 2.0) -> float:
    """How evenly the machine runs our code right now: p99 over median of the time one fixed pure-Python
    job (about 0.1 ms) takes, repeated for `seconds` on this thread. Close to 1 on a quiet core; a host
    whose other guests share the physical cores drives it up whether or not it reports steal, and a
    latency figure's p99 moves with it."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while (started := time.perf_counter()) < end:
        total = 0
        for number in range(JITTER_JOB_STEPS):
            total += number
        times.append(time.perf_counter() - started)
    times.sort()
    return times[int(len(times) * 0.99)] / times[len(times) // 2]


def machine() -> dict[str, str]:
    """The facts a figure needs next to it: cores, CPU model, Python."""
    model = "unknown"
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": platform.python_version()}


def write_json(path: Path, results: Sequence[Result]) -> None:
    """The list of result objects (`name`, `figure`, `unit`, `target`, `baseline`, `met`, `detail`)."""
    path.write_text(json.dumps([r.to_json() for r in results], indent=2) + "\n", encoding="utf-8")
