"""A simulated stretch of a trading day on the larger layout, with one crash of each kind, then the checks of
issue 31: on loopback, a three-server NATS cluster (`spine.replicas` 3), two `run.py --role control`
processes (active and standby, each with its own data dir), two stream workers (sim1,sim2 and sim3,sim4, each
with its own data dir) and the store, against one KIS simulator of four keys run in this process.

    python -m tools.cluster_day --dir /tmp/cluster-day [--duration 120] [--speed 5]

Once every process is up the plan runs (times in real seconds from then, each step also waiting for the one
before to settle): SIGKILL of the active control (`KILL_CONTROL_AT`), of the second worker (`KILL_WORKER_AT`,
restarted at `RESTART_WORKER_AT`: it takes its keys' sessions again), of one NATS server (`KILL_NATS_AT`, left
dead: two of three carry on). The control is not restarted: the standby carries the rest of the day. Then
everything stops (workers first, the store last) and the checks run:

- ticks_lost: the simulator's sent records against the union of every data dir's tick journals, recovered and
  marked gaps (`tools.reconcile`); must be 0;
- one session per key: the simulator never refused a second session for a key (KIS allows one), and no key
  opened more sessions than its worker was started;
- one active control: never both controls' `/api/status` active at once, and the standby active only after the
  active one's kill;
- takeover and reassignment each within 15 s.

Prints one JSON summary; exit 0 when every check holds, 3 when one fails, 1 when the layout did not come up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import date
from datetime import time as time_of_day
from pathlib import Path
from typing import Any

from runtime.arguments import clock_time, positive_number, trading_date
from runtime.paths import DataPaths
from tools.demo import write_demo_scenario
from tools.kis_sim.cli import clock_line
from tools.kis_sim.sent_log import app_key_hash
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.nats_cluster import NatsCluster
from tools.reconcile import reconcile_run
from tools.roles import STOP_TIMEOUT_SECONDS, Role, wait_for

REPO = Path(__file__).resolve().parents[1]
EXIT_OK, EXIT_NOT_UP, EXIT_FAILED_CHECK = 0, 1, 3
WORKERS = {"worker-1": ("sim1", "sim2"), "worker-2": ("sim3", "sim4")}
KEYS = 4
MIN_CLOSE = 4000
"""`universe.min_close_price` by default: the demo scenario surges symbols the universe keeps."""
KILL_CONTROL_AT, KILL_WORKER_AT, RESTART_WORKER_AT, KILL_NATS_AT = 0.1, 0.35, 0.6, 0.75
"""The plan's steps, as fractions of `--duration`."""
SETTLE_SECONDS = 2.0
"""Least time between a step settling (takeover, reassignment) and the next step."""
LIMIT_SECONDS = 15.0
"""Takeover of the control, reassignment of a dead worker's symbols (issue 31)."""
UP_TIMEOUT_SECONDS = 180.0
"""The first control issues four keys' tokens and builds the universe before it says ready."""
CONNECTIONS_CLOSED = "observer: stream connections closed"
"""A stream worker's line as it stops, once what its connections said as they closed is on the spine."""


def app_key(number: int) -> str:
    """The simulated app key of `sim<number>` (as `run.py --sim` configures it)."""
    return f"SIM-APPKEY-{number:04d}-observer"


KEY_HASHES = {app_key_hash(app_key(number)): f"sim{number}" for number in range(1, KEYS + 1)}


def control_state(url: str) -> str:
    """"active", "standby" or "" (no answer) from a control's `/api/status`."""
    try:
        with urllib.request.urlopen(f"{url}/api/status", timeout=2) as answer:
            return str(json.loads(answer.read()).get("control", ""))
    except (OSError, ValueError, urllib.error.URLError):
        return ""


class Watch:
    """Polls, on a thread of its own, what the checks need while the day runs: the open sessions and their
    registrations at the simulator, and which control says it is active."""

    def __init__(self, sim: KisSimulator) -> None:
        self.sim = sim
        self.control_urls: list[str] = []
        self.both_active = 0
        self.max_open_per_key = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def registered(self) -> dict[str, set[str]]:
        """Account -> the symbols its open session has registered for trades."""
        return {KEY_HASHES[key]: symbols for key, symbols in self.sim.ws.registered_by_key().items()
                if key in KEY_HASHES}

    def _run(self) -> None:
        tick = 0
        while not self._stop.wait(0.05):
            self.max_open_per_key = max(self.max_open_per_key,
                                        *self.sim.ws.open_sessions_per_key().values(), 0)
            tick += 1
            if tick % 10 == 0 and len(self.control_urls) == 2:
                states = [control_state(url) for url in self.control_urls]
                if states.count("active") > 1:
                    self.both_active += 1


class ClusterDay:
    """The layout of the day, its plan and what was measured; `run()` returns the summary."""

    def __init__(self, root: Path, *, duration: float, speed: float, day: date, start: time_of_day,
                 symbols: int, seed: int, restart_worker: bool = True) -> None:
        self.root = root
        self.duration = duration
        self.speed = speed
        self.day = day
        self.start = start
        self.symbols = symbols
        self.seed = seed
        self.restart_worker = restart_worker
        self.events: dict[str, float] = {}
        self.figures: dict[str, Any] = {}
        self.failures: list[str] = []
        self.worker_starts = {name: 0 for name in WORKERS}

    # --- the processes -----------------------------------------------------------------------------------

    def role_argv(self, role: str, data: Path, *extra: str) -> list[str]:
        _, iso, wall = clock_line(self.sim.clock).split()
        return [sys.executable, str(REPO / "run.py"), "--sim", "--role", role, "--nats", self.cluster.urls,
                "--kis-rest", self.sim.rest_url, "--kis-ws", self.sim.ws_url, "--sim-clock", f"{iso}@{wall}",
                "--speed", f"{self.speed:g}", "--data-dir", str(data), "--log-dir", str(data / "logs"),
                *extra]

    def spawn(self, name: str, argv: list[str]) -> Role:
        process = Role(argv, self.root / f"{name}.out", name=name, env={"OBSERVER_SPINE__REPLICAS": "3"})
        self.processes.append(process)
        return process

    def control(self, name: str) -> Role:
        return self.spawn(name, self.role_argv("control", self.root / name, "--accounts", str(KEYS),
                                               "--http", "127.0.0.1:0"))

    def worker(self, name: str) -> Role:
        self.worker_starts[name] += 1
        accounts = ",".join(WORKERS[name])
        argv = self.role_argv("stream", self.root / name, "--accounts", accounts, "--http", "off")
        return self.spawn(name, argv)

    @contextmanager
    def layout(self) -> Iterator[None]:
        """The simulator, the cluster and (as they are started) the processes; everything stopped at the end:
        the workers first (a control still takes what their connections say as they close), the store last."""
        self.processes: list[Role] = []
        scenario = write_demo_scenario(self.root / "sim" / "scenario.json", seed=self.seed, day=self.day,
                                       n_symbols=self.symbols, start=self.start, min_close=MIN_CLOSE)
        self.sent_log = self.root / "sim" / "sent.jsonl"
        self.sim = KisSimulator(SimConfig(seed=self.seed, date=self.day, start=self.start, speed=self.speed,
                                          scenario=scenario, sent_log=self.sent_log, n_symbols=self.symbols))
        with ExitStack() as stack:
            self.sim.start()
            stack.callback(self.sim.stop)
            self.cluster = NatsCluster(self.root / "nats").start()
            stack.callback(self.cluster.stop)
            try:
                yield
            finally:
                self.stop_all()

    def stop_all(self) -> None:
        """As `run.py` stops its processes: the stream workers first; once each has said its connections
        are closed (or is gone) the controls, whose gap actors mark the last gaps while the workers' recorders
        still take them; the store last, so it writes the last facts."""
        by_kind: dict[str, list[Role]] = {"worker": [], "control": [], "store": []}
        for process in self.processes:
            by_kind[process.name.split("-")[0]].append(process)
        for process in by_kind["worker"]:
            if process.alive:
                process.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(AssertionError):
            wait_for(lambda: all(not p.alive or p.said(CONNECTIONS_CLOSED) for p in by_kind["worker"]),
                     STOP_TIMEOUT_SECONDS, "the workers' connections closed")
        for process in by_kind["control"]:
            if process.alive:
                process.process.send_signal(signal.SIGTERM)
        for process in [*by_kind["worker"], *by_kind["control"], *by_kind["store"]]:
            process.stop()

    def bring_up(self) -> None:
        """Control A, then standby B (sharing A's token cache, as a network mount would), the workers and the
        store; returns once A is ready and both workers stream."""
        self.control_a = self.control("control-a")
        wait_for(lambda: self.control_a.said("observer: control active"), UP_TIMEOUT_SECONDS,
                 "control A active")
        tokens = self.root / "control-b" / "sim" / "tokens"
        tokens.parent.mkdir(parents=True, exist_ok=True)
        tokens.symlink_to(self.root / "control-a" / "sim" / "tokens", target_is_directory=True)
        self.control_b = self.control("control-b")
        wait_for(lambda: self.control_a.said("observer: control ready"), UP_TIMEOUT_SECONDS,
                 "control A ready")
        self.store = self.spawn("store", [sys.executable, "-m", "store", "--nats", self.cluster.urls,
                                          "--data-dir", str(self.root / "store"), "--log-dir",
                                          str(self.root / "store" / "logs")])
        self.workers = {name: self.worker(name) for name in WORKERS}
        urls = [wait_for(lambda p=p: p.said("DASHBOARD") and p.value("DASHBOARD").rstrip("/"), 60,
                         f"{p.name}'s dashboard") for p in (self.control_a, self.control_b)]
        self.watch.control_urls = urls
        wait_for(lambda: all(self.watch.registered().get(a) for a in ("sim1", "sim2", "sim3", "sim4")),
                 UP_TIMEOUT_SECONDS, "every key streaming")

    def slotted(self) -> dict[str, set[str]]:
        """Account -> its slotted symbols, from the active control's `/api/slots` (empty when it does not
        answer)."""
        try:
            with urllib.request.urlopen(f"{self.watch.control_urls[1]}/api/slots", timeout=2) as answer:
                accounts = json.loads(answer.read())["accounts"]
        except (OSError, ValueError, KeyError, urllib.error.URLError):
            return {}
        return {account["account"]: {row["symbol"] for row in account["slots"]} for account in accounts}

    # --- the plan ----------------------------------------------------------------------------------------

    def at(self, fraction: float, not_before: float) -> None:
        """Wait until `fraction` of the duration from the plan's start, and `not_before` (monotonic)."""
        due = max(self.t0 + fraction * self.duration, not_before)
        time.sleep(max(0.0, due - time.monotonic()))

    def run_plan(self) -> None:
        self.t0 = time.monotonic()
        self.events["plan_start"] = self.t0
        self.at(KILL_CONTROL_AT, self.t0)
        self.control_a.kill()
        killed = self.events["control_killed"] = time.monotonic()
        ready = wait_for(lambda: self.control_b.said("observer: control ready"), 60, "control B taking over")
        self.figures["takeover_seconds"] = round(ready - killed, 2)

        self.at(KILL_WORKER_AT, ready + SETTLE_SECONDS)
        registered = self.watch.registered()
        moved = set().union(*(registered.get(account, set()) for account in WORKERS["worker-2"]))
        self.workers["worker-2"].kill()
        killed = self.events["worker_killed"] = time.monotonic()

        def reassigned() -> bool:
            """Every moved symbol the control still slots streams on the other worker's keys (what did not
            fit went to the overflow ledger), and at least one does."""
            slotted = self.slotted()
            on_dead = set().union(*(slotted.get(account, set()) for account in WORKERS["worker-2"]))
            placed = moved & set().union(*slotted.values())
            now = self.watch.registered()
            streaming = set().union(*(now.get(account, set()) for account in WORKERS["worker-1"]))
            return not on_dead and bool(placed) and placed <= streaming

        wait_for(reassigned, 60, "the dead worker's symbols on the other worker's keys")
        settled = time.monotonic()
        self.figures["reassignment_seconds"] = round(settled - killed, 2)
        self.figures["symbols_on_the_dead_worker"] = len(moved)
        self.figures["symbols_moved"] = len(moved & set().union(*self.slotted().values()))

        if self.restart_worker:
            self.at(RESTART_WORKER_AT, settled + SETTLE_SECONDS)
            self.workers["worker-2"] = self.worker("worker-2")
            wait_for(lambda: all(self.watch.registered().get(a) for a in WORKERS["worker-2"]), 60,
                     "the restarted worker streaming")
            self.figures["worker_back_seconds"] = round(time.monotonic() - self.events["worker_killed"], 2)

        self.at(KILL_NATS_AT, time.monotonic() + SETTLE_SECONDS)
        victim = self.cluster.servers[0]
        victim.kill()
        self.events["nats_killed"] = time.monotonic()
        self.figures["nats_server_killed"] = victim.name
        self.at(1.0, time.monotonic() + SETTLE_SECONDS)

    # --- the checks --------------------------------------------------------------------------------------

    def check(self, condition: bool, failure: str) -> None:
        if not condition:
            self.failures.append(failure)

    def conclude(self) -> dict[str, Any]:
        """The summary: what was measured, the reconciliation and the failed checks."""
        opened = self.sim.ws.sessions_per_key()
        refused = self.sim.ws.refused_in_use()
        sessions = {KEY_HASHES[key]: count for key, count in sorted(opened.items()) if key in KEY_HASHES}
        allowed = {account: self.worker_starts[name] for name, accounts in WORKERS.items()
                   for account in accounts}
        roots = sorted(path.parent for path in self.root.glob("*/observer"))
        reconciliation = reconcile_run([DataPaths(root) for root in roots], self.sent_log, KEY_HASHES)
        summary: dict[str, Any] = {
            **self.figures,
            "simulated_from": f"{self.start:%H:%M}", "speed": self.speed, "duration_seconds": self.duration,
            "kills_at_seconds": {name: round(at - self.t0, 1) for name, at in self.events.items()
                                 if name != "plan_start"},
            "sessions_per_key": sessions,
            "sessions_refused_key_in_use": {KEY_HASHES.get(k, k): n for k, n in refused.items()},
            "max_open_sessions_per_key": self.watch.max_open_per_key,
            "both_controls_active_seen": self.watch.both_active,
            **reconciliation.figures(),
        }
        self.check(reconciliation.ticks_lost == 0, f"{reconciliation.ticks_lost} ticks lost outside gaps")
        self.check(reconciliation.sim_ticks_sent > 0, "no tick sent")
        self.check(not refused,
                   f"a second session was tried for a key: {summary['sessions_refused_key_in_use']}")
        self.check(self.watch.max_open_per_key <= 1, "two sessions open for one key")
        self.check(all(count <= allowed[account] for account, count in sessions.items()),
                   f"a key reopened its session though its worker did not restart: {sessions}")
        self.check(self.watch.both_active == 0, "both controls said active at once")
        became_active = self.control_b.said("observer: control active")
        self.check(became_active is not None and became_active > self.events["control_killed"],
                   "the standby was active before the active control's kill")
        self.check(self.figures["takeover_seconds"] <= LIMIT_SECONDS,
                   f"takeover took {self.figures['takeover_seconds']} s")
        self.check(self.figures["reassignment_seconds"] <= LIMIT_SECONDS,
                   f"reassignment took {self.figures['reassignment_seconds']} s")
        summary["failed_checks"] = self.failures
        return summary

    def run(self) -> tuple[int, dict[str, Any]]:
        self.root.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        with self.layout():
            self.watch = Watch(self.sim).start()
            try:
                try:
                    self.bring_up()
                    self.figures["up_seconds"] = round(time.monotonic() - began, 1)
                except AssertionError as error:
                    return EXIT_NOT_UP, {"error": f"the layout did not come up: {error}"}
                try:
                    self.run_plan()
                except AssertionError as error:
                    self.failures.append(str(error))
                    self.figures.setdefault("takeover_seconds", None)
                    self.figures.setdefault("reassignment_seconds", None)
                last = (self.control_b, self.store, *self.workers.values())
                if not self.restart_worker:
                    last = (self.control_b, self.store, self.workers["worker-1"])
                ended_alive = [process.name for process in last if process.alive]
                self.figures["alive_at_end"] = ended_alive
            finally:
                self.watch.stop()
        for name in ("control-b", "store", *(WORKERS if self.restart_worker else ["worker-1"])):
            self.check(name in ended_alive, f"{name} died during the day")
        self.check(self.figures.get("takeover_seconds") is not None
                   and self.figures.get("reassignment_seconds") is not None, "the plan did not complete")
        if None in (self.figures.get("takeover_seconds"), self.figures.get("reassignment_seconds")):
            return EXIT_FAILED_CHECK, {**self.figures, "failed_checks": self.failures}
        stopped = time.monotonic()
        summary = self.conclude()
        summary["reconcile_seconds"] = round(time.monotonic() - stopped, 1)
        summary["total_seconds"] = round(time.monotonic() - began, 1)
        return (EXIT_OK if not self.failures else EXIT_FAILED_CHECK), summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.cluster_day", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, type=Path, help="every process's data, logs and output here")
    parser.add_argument("--duration", type=positive_number, default=120.0,
                        help="real seconds of the plan once every process is up (120)")
    parser.add_argument("--speed", type=positive_number, default=5.0,
                        help="simulated seconds per real second (5)")
    parser.add_argument("--date", type=trading_date, default=date(2024, 3, 4),
                        help="simulated day YYYYMMDD (20240304)")
    parser.add_argument("--start", type=clock_time, default=time_of_day(10, 0),
                        help="simulated start HH:MM (10:00)")
    parser.add_argument("--symbols", type=int, default=400, help="listed symbols (400)")
    parser.add_argument("--seed", type=int, default=1, help="market model seed (1)")
    parser.add_argument("--no-restart", action="store_true",
                        help="leave the killed worker dead (default: restarted, it takes its keys back)")
    args = parser.parse_args(argv)
    day = ClusterDay(args.dir, duration=args.duration, speed=args.speed, day=args.date, start=args.start,
                     symbols=args.symbols, seed=args.seed, restart_worker=not args.no_restart)
    code, summary = day.run()
    print(json.dumps(summary, indent=1, default=str), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
