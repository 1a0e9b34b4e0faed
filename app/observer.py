"""One observer process: pick the mode, start the simulator when needed, run the actor tree, stop cleanly."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from loguru import logger

from actors.supervisor import Supervisor
from app.chaos import CHAOS_SILENCE_TIMEOUT_SECONDS, CrashRunner
from app.cli import build_parser
from app.parent import SimDay, run_processes
from app.sim_day import DayAlreadyRun, start_time
from app.status_view import StatusView
from app.summary import conclude, summary_lines, write_summary
from app.system import ObserverSystem
from config.accounts import Account
from config.loader import ConfigError, load_settings
from config.settings import Settings
from core.calendar import is_trading_day, previous_trading_day
from runtime.clock import KST, Clock, SimulatedClock, SystemClock
from runtime.logs import register_secret, setup_logging
from runtime.paths import DataPaths
from spine.kv import ControlLease, StateReplica, control_id
from spine.link import Link
from spine.publisher import Publisher
from spine.server import NatsServer, ServerBinaryMissing
from spine.workers import NatsUnreachable
from store import restore_command
from surfaces import ctl
from surfaces.launch import HttpOptions, HttpSurface, control_responder, http_options
from surfaces.server import BindRefused
from tools.demo import write_demo_scenario
from tools.kis_sim.starter import ScenarioError, check_scenario

EXIT_CONFIG = 2
EXIT_LEASE_LOST = 4
"""Another control process took the control lease from this one (which had stopped renewing it)."""


@dataclass(frozen=True)
class Mode:
    simulated: bool
    reason: str


def choose_mode(settings: Settings, sim_flag: bool, live_flag: bool) -> Mode:
    if live_flag and settings.simulated:
        raise ConfigError("--live needs KIS credentials (KIS_APP_KEY/KIS_APP_SECRET or KIS_ACCOUNTS_FILE)")
    if sim_flag:
        return Mode(True, "simulator mode (--sim)")
    if settings.simulated:
        return Mode(
            True, "simulator mode: no KIS credentials found (set KIS_APP_KEY/KIS_APP_SECRET to go live)"
        )
    return Mode(False, f"live mode: {len(settings.accounts)} KIS account(s)")


def default_sim_day(today: date) -> date:
    """Today when it is a trading day, else the last one before it."""
    return today if is_trading_day(today) else previous_trading_day(today)


def sim_accounts(count: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"sim{i}",
            "app_key": f"SIM-APPKEY-{i:04d}-observer",
            "app_secret": f"SIM-SECRET-{i:04d}-observer",
            "account_no": f"{50000000 + i}",
            "hts_id": f"simuser{i}",
        }
        for i in range(1, count + 1)
    ]


def sim_pool(accounts: int | tuple[str, ...]) -> list[dict[str, Any]]:
    """The simulated keys: `count` of them, or those named (`sim2,sim3`) for a stream worker."""
    if isinstance(accounts, int):
        return sim_accounts(accounts)
    numbers = [int(name[3:]) if name.startswith("sim") and name[3:].isdigit() else 0 for name in accounts]
    wrong = [name for name, number in zip(accounts, numbers, strict=True) if number < 1]
    if wrong:
        raise ConfigError(f"--accounts: simulator mode names its keys sim1, sim2...; got {', '.join(wrong)}")
    return [account for account in sim_accounts(max(numbers)) if account["name"] in accounts]


def worker_accounts(settings: Settings, names: tuple[str, ...]) -> tuple[Account, ...]:
    """The configured accounts a stream worker started with `--accounts` streams, in the order named."""
    known = {account.name: account for account in settings.accounts}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ConfigError(f"--accounts: no configured account named {', '.join(unknown)} "
                          f"(configured: {', '.join(known) or 'none'})")
    return tuple(known[name] for name in names)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["ctl"]:
        return ctl.main(argv[1:])
    if argv[:1] == ["restore"]:
        return restore_command.main(argv[1:])
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.log_dir is not None:
        overrides["log_dir"] = args.log_dir
    if args.postgres is not None:
        overrides["postgres_url"] = args.postgres
    if args.nats is not None:
        overrides["nats_url"] = args.nats
    try:
        settings = load_settings(args.config, overrides=overrides)
        mode = choose_mode(settings, args.sim, args.live)
        if args.chaos and not mode.simulated:
            raise ConfigError("--chaos runs against the simulator only: use it with --sim")
        http = None if args.http == "off" else http_options(args.http)
        if isinstance(args.accounts, tuple) and args.role != "stream":
            raise ConfigError(f"--accounts {','.join(args.accounts)} names the accounts of a stream worker: "
                              "use it with --role stream (a number sets the simulator's pool size)")
        if mode.simulated:
            sim_overrides: dict[str, Any] = {
                "accounts": sim_pool(args.accounts),
                "tokens": {"cache_dir": str(Path(settings.data_dir) / "sim" / "tokens")},
                "pipeline": settings.pipeline.simulator_defaults(),
            }
            if args.chaos or args.chaos_plan is not None:
                sim_overrides["websocket"] = {"silence_timeout_seconds": CHAOS_SILENCE_TIMEOUT_SECONDS}
            settings = load_settings(args.config, overrides={**overrides, **sim_overrides})
        if isinstance(args.accounts, tuple):
            settings = settings.model_copy(update={"accounts": worker_accounts(settings, args.accounts)})
        sim_day = _sim_day(args, settings) if mode.simulated and args.role == "all" else None
    except (ConfigError, BindRefused, ScenarioError, DayAlreadyRun, OSError) as error:
        print(f"observer: {error}", file=sys.stderr)
        return EXIT_CONFIG
    for account in settings.accounts:
        register_secret(account.app_key)
        register_secret(account.app_secret)
    if settings.postgres_url is not None:
        register_secret(settings.postgres_url)
    print(f"observer: {mode.reason}", flush=True)
    if args.role != "all":
        return run_role(args, settings, mode, http)
    with ExitStack() as stack:
        nats_server = None
        try:
            if settings.nats_url is None:
                nats_server = stack.enter_context(embedded_nats(settings))
        except (ServerBinaryMissing, RuntimeError, OSError) as error:
            print(f"observer: {error}", file=sys.stderr)
            return EXIT_CONFIG
        nats_url = settings.nats_url or nats_server.url
        where = "" if settings.nats_url else f" (embedded, store {DataPaths(settings.data_dir).nats_dir})"
        print(f"observer: NATS {nats_url}{where}", flush=True)
        return run_processes(args, settings, sim_day, nats_url, nats_server)


def run_role(args: Any, settings: Settings, mode: Mode, http: HttpOptions | None) -> int:
    """One process of the observer (`--role control|stream`), joined to the others over `--nats`; in
    simulator mode against a simulator someone else runs (`--kis-rest`, `--kis-ws`, `--sim-clock`). Its pid
    is in `<data-dir>/observer/run/<role>.pid` while it runs."""
    role = args.role
    if settings.nats_url is None:
        print(f"observer: --role {role} joins the others over NATS: give --nats URL", file=sys.stderr)
        return EXIT_CONFIG
    if args.chaos:
        print("observer: --chaos runs with --role all only", file=sys.stderr)
        return EXIT_CONFIG
    clock: Clock = SystemClock()
    rest_url = ws_url = None
    if mode.simulated:
        if not (args.kis_rest and args.kis_ws and args.sim_clock):
            print(f"observer: --role {role} in simulator mode needs --kis-rest, --kis-ws and --sim-clock "
                  "(what `python -m tools.kis_sim` prints)", file=sys.stderr)
            return EXIT_CONFIG
        simulated, wall = args.sim_clock
        clock = SimulatedClock.in_step(simulated, wall, args.speed)
        rest_url, ws_url = args.kis_rest, args.kis_ws
    print(f"observer: role {role}; NATS {settings.nats_url}", flush=True)
    pid_file = DataPaths(settings.data_dir).observer / "run" / f"{role}.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    try:
        return run(settings, clock, rest_url, ws_url, args.duration, args.summary_json,
                   http=http if role == "control" else None, nats_url=settings.nats_url, role=role,
                   chaos_plan=args.chaos_plan, named_accounts=isinstance(args.accounts, tuple))
    finally:
        pid_file.unlink(missing_ok=True)


def embedded_nats(settings: Settings) -> NatsServer:
    """The observer's own NATS server: loopback, JetStream under `<data-dir>/observer/nats`, its pid in
    `<data-dir>/observer/run/nats.pid`."""
    paths = DataPaths(settings.data_dir)
    log_file = Path(settings.log_dir) / "nats-server.log"
    return NatsServer(paths.nats_dir, log_file=log_file, pid_file=paths.observer / "run" / "nats.pid")


def _sim_day(args: Any, settings: Settings) -> SimDay:
    """The simulated day of `args`: a day the data folder already holds resumes after its last record
    (`app.sim_day`); the scenario (the demo one unless given) is written to the data folder."""
    day = args.date or default_sim_day(SystemClock().now().date())
    data_root = Path(settings.data_dir)
    _, close = settings.sessions.span(settings.websocket.feed)
    start, resumed_after = start_time([data_root / "observer", data_root / "sim"], day, args.start, close)
    if resumed_after is not None:
        print(f"observer: {data_root} holds {day:%Y-%m-%d} up to {resumed_after.astimezone(KST):%H:%M:%S}: "
              f"the simulated day resumes at {start:%H:%M:%S}", flush=True)
    if args.scenario is not None:  # a bad one is one line here, before any process starts
        check_scenario(args.scenario, seed=args.seed, day=day, n_symbols=args.symbols)
    scenario = args.scenario or write_demo_scenario(
        data_root / "sim" / "demo_scenario.json",
        seed=args.seed,
        day=day,
        n_symbols=args.symbols,
        start=args.start,
        min_close=settings.universe.min_close_price,
    )
    sent_log = data_root / "sim" / f"{day:%Y%m%d}_sent.jsonl"
    return SimDay(day=day, start=start, scenario=scenario, sent_log=sent_log)


def run(
    settings: Settings,
    clock: Clock,
    rest_url: str | None,
    ws_url: str | None,
    duration: float | None,
    summary_path: Path | None,
    http: HttpOptions | None = None,
    *,
    nats_url: str | None = None,
    role: str = "all",
    chaos_plan: Path | None = None,
    named_accounts: bool = False,
) -> int:
    """Run the actor tree until a signal, `duration` or an escalation; then stop it and write the summary.

    With `nats_url` every fact goes onto the spine there (`spine.publisher`); the journal on disk never
    waits for it. `role` "control" or "stream" runs that part of the tree, linked to the rest over
    `nats_url`. Unless the role is "stream", a responder answers control commands on
    `observer.<instance>.control.*`; `http` (which needs `nats_url`) serves the dashboard, its commands sent
    over the spine. `chaos_plan`: the file of a chaos day's crashes of this process's actors (`app.chaos`).
    """
    publisher = None if nats_url is None else Publisher(
        nats_url, settings.spine, sessions=settings.sessions, name="observer" if role == "all" else role
    )
    link = None if role == "all" or nats_url is None else Link(nats_url, settings.spine.instance, name=role)
    lease = replica = None
    if role == "control" and nats_url is not None:
        lease = ControlLease(nats_url, settings.spine, control_id(settings.data_dir),
                             settings.spine.control_lease_seconds)
        replica = StateReplica(nats_url, settings.spine)
    system = ObserverSystem(settings, clock, rest_url, ws_url, publisher=publisher, role=role, link=link,
                            named_accounts=named_accounts, state_replica=replica)
    on_terminal = sys.stdout.isatty()
    setup_logging(
        Path(settings.log_dir),
        [*system.child_ids, system.supervisor_name],
        settings.log_retention_days,
        console_level="WARNING" if on_terminal or role != "all" else settings.log_level,  # roles: files
    )
    status = StatusView(system.metrics, clock)
    stop_requested = threading.Event()
    if http is not None and nats_url is None:
        raise ValueError("the HTTP surface sends its commands over the spine: run() needs nats_url with http")
    surface = HttpSurface(system, http, nats_url) if http is not None and nats_url is not None else None
    responder = control_responder(system, nats_url) if nats_url is not None and role != "stream" else None

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("signal {} received: stopping", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    runner: CrashRunner | None = None
    deadline = None if duration is None else time.monotonic() + duration
    try:
        if surface is not None:
            surface.start()  # its DASHBOARD line among the first ones printed
        status.start()
        if lease is not None and replica is not None and not _become_active(
            lease, replica, system, stop_requested, deadline
        ):
            print("observer: control standby stopped", flush=True)
            return 0
        if publisher is not None:
            publisher.start()
        if role == "stream":
            try:
                holding = system.hold_sessions(stop_requested)
            except NatsUnreachable as error:
                print(f"observer: {error}", file=sys.stderr, flush=True)
                system.abandon()
                return 1
            if not holding:
                system.abandon()
                return 0
        system.start()
        if responder is not None:
            responder.start()
        if role != "all":
            print(f"observer: {role} ready", flush=True)  # the parent starts the stream once control is
        if chaos_plan is not None:
            runner = CrashRunner(chaos_plan, system.directory, clock).start()
        if lease is None and duration is not None:  # a control's duration counts its time as standby too
            deadline = time.monotonic() + duration
        _wait(stop_requested, system.supervisor, deadline, lease)
        if runner is not None:
            runner.stop()
        if lease is not None and replica is not None and lease.lost.is_set():
            replica.silence()  # what this control saves as it stops is no longer the instance's state
        exit_code = system.stop()
        if system.lease_lost is not None:
            print(f"observer: {system.lease_lost}: another stream worker took its session lease: stopped",
                  file=sys.stderr, flush=True)
            exit_code = 1
    finally:
        if replica is not None:
            replica.flush(5.0)
            replica.stop()
        if lease is not None:
            lease.release()  # a standby takes over at once (a lost lease is not ours to release)
        if runner is not None:
            runner.stop()
        status.stop()
        if surface is not None:
            surface.stop()
        if responder is not None:
            responder.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if publisher is not None:
            publisher.stop()  # already stopped by the system's stop, unless the start failed
    summary = system.summary()
    exit_code, _ = conclude(summary, exit_code, None)
    if lease is not None and lease.lost.is_set():
        exit_code = EXIT_LEASE_LOST
    if summary_path is not None:
        write_summary(summary_path, summary)
    logger.info("stopped with exit code {}: {}", exit_code, summary)
    for line in summary_lines(summary):
        print(f"observer: {line}", flush=True)
    return exit_code


def _become_active(
    lease: ControlLease,
    replica: StateReplica,
    system: ObserverSystem,
    stop_requested: threading.Event,
    deadline: float | None,
) -> bool:
    """Wait as the standby control until this one holds the control lease (False: stopped first); then
    bring the disk up to the newest state the spine holds, for the actors to start from."""
    system.metrics.set("control", "standby")
    lease.start()
    if not lease.held.wait(2.0):
        holder = f"held by {lease.holder}" if lease.holder else "not read yet (NATS not reached)"
        print(f"observer: control standby: the control lease is {holder}", flush=True)
    if not lease.wait(stop_requested, deadline):
        return False
    taken = time.monotonic()
    replica.start()
    restored = replica.restore(system.context.paths) or []
    system.metrics.set("control", "active")
    logger.info("control lease held: {} state copies newer than the disk restored", len(restored))
    print(f"observer: control active ({len(restored)} state copies restored from the spine in "
          f"{time.monotonic() - taken:.2f} s)", flush=True)
    return True


def _wait(
    stop_requested: threading.Event, supervisor: Supervisor, deadline: float | None,
    lease: ControlLease | None = None,
) -> None:
    """Until a signal, the `deadline` (monotonic) or the supervisor giving up, or another control took the
    lease from this one."""
    while not stop_requested.is_set() and not supervisor.stopped.is_set():
        if lease is not None and lease.lost.is_set():
            return
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            return
        stop_requested.wait(remaining)
