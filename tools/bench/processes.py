"""The observer as its processes run it: CPU seconds per million ticks of the stream process, and the memory
of each process, over one simulated run of `python run.py --sim`.

    python -m tools.bench.processes [--speed 10] [--window 60] [--json FILE]

The run is the README's first command (simulated from 10:00, one account), stopped with SIGTERM once ticks
have flowed for `--window` seconds: the simulator's ticks go through the stream process onto the spine and
into the journal, the control process, the store and the embedded NATS server run beside it. Every
`SAMPLE_SECONDS` the pid files under `<data-dir>/observer/run/` give each process, and /proc its CPU time
and RSS. CPU per million ticks is the stream process's CPU time between a point
`WARM_SECONDS` after the first tick reached the journal and the run's last second, over the journal lines
written in between, scaled to a million (a short run extrapolates); the baseline is the simulator's CPU
per million ticks it sent over the same stretch. Memory: each process's growth from that point to the end
against DESIGN.md's 20 MB, with its peak; the sum of their peaks against 400 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from tools.bench.harness import BenchError, process_cpu_seconds
from tools.bench.report import Result, table, write_json

REPO = Path(__file__).resolve().parents[2]
SAMPLE_SECONDS = 0.25
WARM_SECONDS = 2.0
"""Seconds after the first tick reaches the journal that the figures start: what comes before is the
processes' start (imports, tokens, universe, the first scan, the first registrations)."""
START_LIMIT_SECONDS = 180.0
STOP_LIMIT_SECONDS = 120.0
CPU_GOAL_SECONDS = 40.0
"""DESIGN.md section 8: CPU seconds per million ticks of the stream process (goal)."""
GROWTH_LIMIT_MB = 20.0
TOTAL_LIMIT_MB = 400.0
PROCESSES = ("parent", "nats", "control", "stream", "store")
"""The observer's processes (the simulator is reported beside them: it is KIS's stand-in, not ours)."""


@dataclass
class Track:
    """One process's samples: RSS in MB (start of the measured stretch, peak, last) and the pid seen."""

    pid: int | None = None
    pids: set[int] = field(default_factory=set)
    peak_mb: float = 0.0
    warm_mb: float = math.nan
    last_mb: float = math.nan

    def sample(self, pid: int, warm: bool) -> None:
        rss = rss_mb(pid)
        if math.isnan(rss):
            return
        self.pid = pid
        self.pids.add(pid)
        self.peak_mb = max(self.peak_mb, rss)
        self.last_mb = rss
        if warm and math.isnan(self.warm_mb):
            self.warm_mb = rss


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MB; NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return math.nan


def lines_in(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        try:
            with path.open("rb") as handle:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            continue
    return total


class Run:
    """`python run.py --sim` in `root`, sampled until `window` seconds of ticks were measured."""

    def __init__(self, root: Path, *, speed: float, window: float, symbols: int, start: str) -> None:
        self.root = root
        self.window = window
        self.data = root / "data"
        self.run_dir = self.data / "observer" / "run"
        self.tracks = {name: Track() for name in (*PROCESSES, "simulator")}
        self.command = [sys.executable, str(REPO / "run.py"), "--sim", "--speed", f"{speed:g}",
                        "--symbols", str(symbols), "--start", start,
                        "--http", "off", "--data-dir", str(self.data), "--log-dir", str(root / "logs"),
                        "--summary-json", str(root / "summary.json")]
        self.stream_cpu: list[float] = []
        self.sim_cpu: list[float] = []
        self.ticks: list[int] = []
        self.sent: list[int] = []
        self.first_tick_after = math.nan
        self.marked_at: list[float] = []

    def execute(self) -> dict[str, object]:
        """Start the run, sample it until `window` seconds after the measured stretch began, stop it with
        SIGTERM (as systemd would) and return its summary."""
        process = subprocess.Popen(self.command, cwd=REPO, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        try:
            began = time.monotonic()
            deadline = began + START_LIMIT_SECONDS
            warm_at: float | None = None
            while process.poll() is None:
                now = time.monotonic()
                if warm_at is None and self._tick_files():
                    warm_at = now + WARM_SECONDS
                    self.first_tick_after = now - began
                elif warm_at is None and now > deadline:
                    raise BenchError(f"no tick reached the journal within {START_LIMIT_SECONDS:g} s")
                warm = warm_at is not None and now >= warm_at
                self._sample(process.pid, warm)
                if (warm and not self.ticks) or (self.marked_at and now >= self.marked_at[0] + self.window):
                    self._mark()
                    if len(self.ticks) == 2:
                        break
                time.sleep(SAMPLE_SECONDS)
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_LIMIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.returncode != 0 or len(self.ticks) < 2:
            raise BenchError(f"run.py --sim ended with {process.returncode} ({len(self.ticks)} of 2 points "
                             f"measured); its last errors: {' | '.join(self._errors())}")
        return dict(json.loads((self.root / "summary.json").read_text(encoding="utf-8")))

    def _errors(self) -> list[str]:
        lines = []
        for log in sorted((self.root / "logs").glob("*.log")):
            with contextlib.suppress(OSError):
                lines += [f"{log.name}: {line.strip()[:300]}" for line in log.read_text().splitlines()
                          if "ERROR" in line]
        return lines[-5:]

    def _tick_files(self) -> list[Path]:
        return sorted((self.data / "observer" / "scalp").glob("*/*/*/ticks_*.jsonl"))

    def _pids(self, parent: int) -> dict[str, int]:
        found = {"parent": parent}
        for name in ("nats", "control", "stream", "store", "simulator"):
            try:
                found[name] = int((self.run_dir / f"{name}.pid").read_text().strip())
            except (OSError, ValueError):
                continue
        return found

    def _sample(self, parent: int, warm: bool) -> None:
        for name, pid in self._pids(parent).items():
            self.tracks[name].sample(pid, warm)

    def _mark(self) -> None:
        """CPU of the stream process and the simulator, journal lines and sent ticks, at this moment."""
        stream, simulator = self.tracks["stream"].pid, self.tracks["simulator"].pid
        self.marked_at.append(time.monotonic())
        self.stream_cpu.append(math.nan if stream is None else process_cpu_seconds(stream))
        self.sim_cpu.append(math.nan if simulator is None else process_cpu_seconds(simulator))
        self.ticks.append(lines_in(self._tick_files()))
        self.sent.append(lines_in(sorted((self.data / "sim").glob("*_sent.jsonl"))))


def measure(root: Path, *, speed: float, window: float, symbols: int = 300, start: str = "10:00"
            ) -> list[Result]:
    """Start `python run.py --sim`, measure `window` seconds once ticks flow, stop it: the results."""
    run = Run(root, speed=speed, window=window, symbols=symbols, start=start)
    summary = run.execute()
    ticks, sent = run.ticks[1] - run.ticks[0], run.sent[1] - run.sent[0]
    stretch = run.marked_at[1] - run.marked_at[0]
    cpu = (run.stream_cpu[1] - run.stream_cpu[0]) / max(ticks, 1) * 1e6
    sim_cpu = (run.sim_cpu[1] - run.sim_cpu[0]) / max(sent, 1) * 1e6
    restarted = [name for name, track in run.tracks.items() if len(track.pids) > 1]
    if len(run.tracks["stream"].pids) > 1:
        cpu = math.nan
    used = run.stream_cpu[1] - run.stream_cpu[0]
    results = [Result(
        "stream_cpu_per_million_ticks", cpu, "CPU s", f"<= {CPU_GOAL_SECONDS:g}", sim_cpu,
        cpu <= CPU_GOAL_SECONDS,
        f"stream process: {used:.2f} CPU s for {ticks:,} ticks journaled and "
        f"published in {stretch:.1f} s ({ticks / stretch:,.0f}/s) of `run.py --sim --speed {speed:g}`, "
        f"scaled to a million (the first tick {run.first_tick_after:.1f} s after the start); "
        f"baseline: the simulator's CPU per million ticks it sent ({sent:,}); "
        f"ticks_lost {summary.get('ticks_lost', '?')}",
    )]
    for name in PROCESSES:
        track = run.tracks[name]
        growth = track.last_mb - track.warm_mb
        results.append(Result(
            f"memory_{name}_process", growth, "MB", f"< {GROWTH_LIMIT_MB:g} growth", track.warm_mb,
            growth < GROWTH_LIMIT_MB,
            f"RSS {track.warm_mb:.1f} MB after the start -> {track.last_mb:.1f} MB at the end, peak "
            f"{track.peak_mb:.1f} MB, over {window:g} s of ticks at {speed:g}x; "
            f"baseline: RSS after the start",
        ))
    total = sum(run.tracks[name].peak_mb for name in PROCESSES)
    at_start = sum(run.tracks[name].warm_mb for name in PROCESSES)
    simulator = run.tracks["simulator"]
    peaks = ", ".join(f"{name} {run.tracks[name].peak_mb:.0f}" for name in PROCESSES)
    results.append(Result(
        "memory_all_processes_peak", total, "MB", f"< {TOTAL_LIMIT_MB:g}", at_start, total < TOTAL_LIMIT_MB,
        f"sum of each process's peak RSS ({peaks}; "
        f"one account); baseline: their sum after the start; the simulator beside them: peak "
        f"{simulator.peak_mb:.0f} MB" + (f"; restarted during the run: {', '.join(restarted)}" if restarted
                                          else ""),
    ))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.processes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speed", type=float, default=10.0, help="simulated seconds per second (10)")
    parser.add_argument("--window", type=float, default=60.0,
                        help="real seconds measured once ticks flow (60)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="observer-bench-processes-") as scratch:
        results = measure(Path(scratch), speed=args.speed, window=args.window)
    print(table(results))
    for result in results:
        print(f"{result.name}: {result.detail}")
    if args.json is not None:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
