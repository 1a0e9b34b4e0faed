"""`run.py --role all`: the observer as processes by latency class, supervised from this one.

This process runs the embedded NATS server (unless `--nats` names one), the simulator in simulator mode
(`python -m tools.kis_sim`, whose CLOCK line gives every process the same simulated time), then the stream
process (WebSocket sessions and the tick journal) and the control process (everything else, with the HTTP
surface), each `run.py --role ...` against the same NATS; the store process (`python -m store`) starts
before them, so it stops after them and writes their last facts. At the end it stops them in reverse order,
merges their summaries, compares the day's Parquet ticks with the journal's (`store.journal.compare_ticks`)
and, in simulator mode, reconciles the simulator's sent log with the journal. A chaos day (`--chaos`,
`app.chaos`) runs its plan over these processes: this one kills and arms simulator faults, each role crashes
its own actors.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

from loguru import logger

from actors.supervisor import MAX_RESTARTS, PERIOD_SECONDS
from actors.system import child_ids_for
from app.chaos import (
    CHAOS_DEFAULT_DURATION,
    CHAOS_PINGPONG_INTERVAL_SECONDS,
    ChaosRunner,
    chaos_plan,
)
from app.processes import ChildStartFailed, ProcessSpec, ProcessSupervisor
from app.summary import conclude, summary_lines, write_summary
from app.system import CONNECTIONS_CLOSED
from config.settings import Settings
from runtime.clock import Clock, SimulatedClock, SystemClock
from runtime.logs import setup_logging
from runtime.paths import DataPaths
from spine.server import NatsServer, free_port
from tools.kis_sim.starter import app_key_hash, arm_faults, simulator_argv

EXIT_OK, EXIT_CONFIG = 0, 2
REPO = Path(__file__).resolve().parents[1]
ROLES_IN_ORDER = ("control", "stream")
"""Start order (stop is the reverse), as in one process: the stream starts once the control actors run (its
ticks reach triggers and gaps from the first), and stops first, so what its connections say as they close
(the last gaps) still reaches the control process, whose answers (gap markers) reach the recorder."""
CONTROL_READY_SECONDS = 180.0
"""The control process's first start issues tokens (up to a minute apart at KIS) and builds the universe."""


class SimulatorLines:
    """What the simulator child printed: its URLs (READY) and its clock (CLOCK); `ready` once both came."""

    def __init__(self) -> None:
        self.rest_url = ""
        self.ws_url = ""
        self.clock_anchor: tuple[datetime, float] | None = None
        self.ready = threading.Event()

    def on_line(self, line: str) -> None:
        words = line.split()
        if words[:1] == ["READY"]:
            fields = dict(word.split("=", 1) for word in words[1:] if "=" in word)
            self.rest_url, self.ws_url = fields.get("rest", ""), fields.get("ws", "")
        elif words[:1] == ["CLOCK"] and len(words) == 3:
            self.clock_anchor = (datetime.fromisoformat(words[1]), float(words[2]))
            self.ready.set()
        else:
            print(f"simulator: {line}", file=sys.stderr, flush=True)

    @property
    def sim_clock(self) -> str:
        assert self.clock_anchor is not None
        at, wall = self.clock_anchor
        return f"{at.isoformat()}@{wall:.6f}"


@dataclass(frozen=True)
class SimDay:
    """The simulated day of a run: its date, the simulated start (later when the day resumes), the scenario
    file and the simulator's sent log."""

    day: date
    start: time_of_day
    scenario: Path
    sent_log: Path


def run_processes(
    args: Any,
    settings: Settings,
    sim_day: SimDay | None,
    nats_url: str,
    nats_server: NatsServer | None = None,
) -> int:
    """Run the child processes until a signal, `--duration` or the supervisor giving up; the exit code.
    `sim_day` None: live mode (no simulator). `nats_server`: the embedded NATS server (None: `--nats`), whose
    restarts the summary counts and which a chaos day kills."""
    simulated = sim_day is not None
    chaos = bool(args.chaos) and simulated
    duration = CHAOS_DEFAULT_DURATION if chaos and args.duration is None else args.duration
    paths = DataPaths(Path(settings.data_dir))
    run_dir = paths.observer / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging(Path(settings.log_dir), ["processes"], settings.log_retention_days,
                  console_level="WARNING" if sys.stdout.isatty() else settings.log_level)
    python = sys.executable
    specs: list[ProcessSpec] = []
    sim = SimulatorLines()
    clock: Clock = SystemClock()
    sent_log: Path | None = None
    if sim_day is not None:
        sent_log = sim_day.sent_log
        rest_port, ws_port = free_port(), free_port()
        sim_clock: list[Clock] = []

        def sim_argv() -> list[str]:
            # A restarted simulator goes on from the shared clock's time, not from the day's start.
            start = sim_clock[0].now().time() if sim_clock else sim_day.start
            pingpong = CHAOS_PINGPONG_INTERVAL_SECONDS if chaos else None
            return simulator_argv(
                python, seed=args.seed, day=sim_day.day, start=start, speed=args.speed,
                n_symbols=args.symbols, rest_port=rest_port, ws_port=ws_port, scenario=sim_day.scenario,
                sent_log=sim_day.sent_log, pingpong_interval=pingpong)

        specs.append(ProcessSpec("simulator", sim_argv, on_line=sim.on_line, ready=sim.ready,
                                 pid_file=run_dir / "simulator.pid"))
    else:
        sim_clock = []

    def role_argv(role: str) -> list[str]:
        argv = [python, str(REPO / "run.py"), "--sim" if simulated else "--live", "--role", role,
                "--nats", nats_url, "--data-dir", str(settings.data_dir), "--log-dir", str(settings.log_dir),
                "--summary-json", str(run_dir / f"{role}.summary.json"),
                "--http", args.http if role == "control" else "off"]
        if args.config is not None:
            argv += ["--config", str(args.config)]
        if simulated:
            argv += ["--speed", f"{args.speed:g}", "--accounts", str(args.accounts),
                     "--kis-rest", sim.rest_url, "--kis-ws", sim.ws_url, "--sim-clock", sim.sim_clock]
        if runner is not None:
            runner.write_plan(role)  # what is left of its crashes (none written before the start)
            argv += ["--chaos-plan", str(chaos_file(role))]
        return argv

    def forward(line: str) -> None:
        if line.startswith("DASHBOARD "):
            print(line, flush=True)

    control_ready, stream_ready = threading.Event(), threading.Event()

    def control_lines(line: str) -> None:
        if line == "observer: control ready":
            control_ready.set()
        if runner is not None:
            runner.on_line(line)
        forward(line)

    for role in ROLES_IN_ORDER:
        (run_dir / f"{role}.summary.json").unlink(missing_ok=True)
    store_env = dict(os.environ)
    if settings.postgres_url is not None:  # by the environment: a password in argv would show in `ps`
        store_env["OBSERVER_POSTGRES_URL"] = settings.postgres_url
    stores = (REPO / "store" / "__main__.py").exists() and importlib.util.find_spec("store") is not None
    if stores:  # started before the processes that publish, stopped after them
        specs.append(ProcessSpec("store", lambda: [
            python, "-m", "store", "--nats", nats_url, "--data-dir", str(settings.data_dir),
            "--instance", settings.spine.instance, "--log-dir", str(settings.log_dir),
        ], on_line=forward, pid_file=run_dir / "store.pid", env=store_env))
    specs.append(ProcessSpec("control", lambda: role_argv("control"), on_line=control_lines,
                             ready=control_ready, ready_timeout=CONTROL_READY_SECONDS))
    def stream_lines(line: str) -> None:
        if line == CONNECTIONS_CLOSED:  # its connections are closed: control may stop as in one process
            supervisor.stop_early("control")
        elif line == "observer: stream ready":
            stream_ready.set()
        if runner is not None:
            runner.on_line(line)
        forward(line)

    specs.append(ProcessSpec("stream", lambda: role_argv("stream"), on_line=stream_lines))

    supervisor = ProcessSupervisor(specs)

    def chaos_file(role: str) -> Path:
        return run_dir / f"{role}.chaos.json"

    def kill(name: str) -> bool:
        if name == "nats":
            pid = nats_server.pid if nats_server is not None else None
        else:
            pid = supervisor.pid(name)
        if pid is None:
            return False
        {"control": control_ready, "stream": stream_ready}.get(name, threading.Event()).clear()
        os.kill(pid, signal.SIGKILL)
        return True

    def every_process_up() -> bool:
        nats_up = nats_server is None or nats_server.pid is not None
        return control_ready.is_set() and stream_ready.is_set() and nats_up

    runner: ChaosRunner | None = None
    if chaos:
        assert duration is not None
        kills = ("control", "stream", "nats") if nats_server is not None else ("control", "stream")
        plan = chaos_plan(duration, child_ids_for([account.name for account in settings.accounts]),
                          max_restarts=MAX_RESTARTS, period_seconds=PERIOD_SECONDS, kills=kills)
        runner = ChaosRunner(plan, kill=kill, arm=lambda spec: arm_faults(sim.rest_url, spec),
                             ready=every_process_up, plan_file=chaos_file)
        for role in ROLES_IN_ORDER:
            chaos_file(role).unlink(missing_ok=True)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("signal {} received: stopping", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            supervisor.start()
        except ChildStartFailed as error:
            if error.code != EXIT_CONFIG:  # a child that exits 2 has said why in one line already
                print(f"observer: {error}", file=sys.stderr)
            return EXIT_CONFIG
        if simulated and sim.clock_anchor is not None:
            at, wall = sim.clock_anchor
            clock = SimulatedClock.in_step(at, wall, args.speed)
            sim_clock.append(clock)
            print(f"observer: simulated {clock.now():%Y-%m-%d %H:%M} KST at {args.speed:g}x; "
                  f"READY rest={sim.rest_url} ws={sim.ws_url}", flush=True)
        if runner is not None:
            runner.start(stop_requested)  # the chaos day's duration counts from every process up
        _wait(stop_requested, supervisor, duration)
        if runner is not None:
            runner.stop()
        exit_code = supervisor.stop()
    finally:
        if runner is not None:
            runner.stop()
        supervisor.stop()
        for role in ROLES_IN_ORDER if runner is not None else ():
            chaos_file(role).unlink(missing_ok=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = merge_summaries([_read_summary(run_dir / f"{role}.summary.json") for role in ROLES_IN_ORDER])
    summary["process_restarts"] = supervisor.restart_counts()
    if nats_server is not None:
        summary["process_restarts"]["nats"] = nats_server.restarts
    if supervisor.exit_code:
        summary["exit_code"] = exit_code = supervisor.exit_code
    elif summary.get("exit_code"):
        exit_code = int(summary["exit_code"])
    if stores:
        summary.update(_tick_check(paths, sim_day.day if sim_day is not None else clock.now().date()))
    if sent_log is not None:
        from tools.reconcile import reconcile_run  # pyarrow, as in `_tick_check`

        accounts = {app_key_hash(a.app_key.get_secret_value()): a.name for a in settings.accounts}
        summary.update(reconcile_run(paths, sent_log, accounts).figures())
    if runner is not None:
        summary["chaos_done"] = [step.describe() for step in runner.done()]
        summary["chaos_missed"] = [step.describe() for step in runner.missed()]
        exit_code, failures = conclude(summary, exit_code, len(runner.done()))
        for failure in failures:
            logger.error("chaos day failed: {}", failure)
    if args.summary_json is not None:
        write_summary(args.summary_json, summary)
    logger.info("stopped with exit code {}: {}", exit_code, summary)
    for line in summary_lines(summary):
        print(f"observer: {line}", flush=True)
    return exit_code


def merge_summaries(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary of the processes': counters from whichever process counted them (the control process
    mirrors the stream's, so the larger is the newest), actors and restarts added up."""
    merged: dict[str, Any] = {"restarts": {}, "actors_alive": 0, "actors_total": 0, "actors_down": [],
                              "phases_seen": [], "exit_code": 0}
    for part in parts:
        for name, value in part.items():
            match name:
                case "restarts":
                    merged["restarts"].update(value)
                case "actors_alive" | "actors_total":
                    merged[name] += value
                case "actors_down":
                    merged[name] += value
                case "phases_seen":
                    merged[name] += [phase for phase in value if phase not in merged[name]]
                case "exit_code":
                    merged[name] = max(merged[name], value or 0)
                case "spine_published" | "spine_dropped":
                    merged[name] = merged.get(name, 0) + value
                case _ if isinstance(value, int | float):
                    merged[name] = max(merged.get(name, 0), value)
                case _:
                    merged.setdefault(name, value)
    missing = [role for role, part in zip(ROLES_IN_ORDER, parts, strict=True) if not part]
    if missing:
        merged["processes_without_summary"] = missing
    return merged


def _tick_check(paths: DataPaths, day: date) -> dict[str, Any]:
    """The summary's verdict on the day's Parquet ticks against the journal's (False when unreadable).
    pyarrow is imported here, once the children have stopped: no process carries it while the day runs
    unless it writes Parquet."""
    from pyarrow import ArrowException

    from store.journal import compare_ticks

    started = time.monotonic()
    try:
        figures = compare_ticks(paths, day).figures()
    except (OSError, ValueError, ArrowException) as error:
        logger.error("the Parquet ticks of {:%Y-%m-%d} could not be compared with the journal: {}", day,
                     str(error).splitlines()[0] if str(error) else type(error).__name__)
        return {"parquet_ticks_equal_journal": False}
    logger.info("Parquet ticks of {:%Y-%m-%d} against the journal in {:.1f} s: {}", day,
                time.monotonic() - started, figures)
    return figures


def _read_summary(path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _wait(stop_requested: threading.Event, supervisor: ProcessSupervisor, duration: float | None) -> None:
    deadline = None if duration is None else time.monotonic() + duration
    while not stop_requested.is_set() and not supervisor.stopped.is_set():
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            return
        stop_requested.wait(remaining)
