"""One observer process: pick the mode, start the simulator when needed, run the actor tree, stop cleanly."""

from __future__ import annotations

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
from app.cli import build_parser
from app.demo import write_demo_scenario
from app.status_view import StatusView
from app.summary import write_summary
from app.system import ObserverSystem
from config.loader import ConfigError, load_settings
from config.settings import Settings
from core.calendar import is_trading_day, previous_trading_day
from runtime.clock import Clock, SystemClock
from runtime.logs import register_secret, setup_logging
from tools.kis_sim.server import KisSimulator, SimConfig

EXIT_OK, EXIT_CONFIG = 0, 2


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.log_dir is not None:
        overrides["log_dir"] = args.log_dir
    try:
        settings = load_settings(args.config, overrides=overrides)
        mode = choose_mode(settings, args.sim, args.live)
        if mode.simulated:
            sim_overrides = {
                "accounts": sim_accounts(args.accounts),
                "tokens": {"cache_dir": str(Path(settings.data_dir) / "sim" / "tokens")},
            }
            settings = load_settings(args.config, overrides={**overrides, **sim_overrides})
    except ConfigError as error:
        print(f"observer: {error}", file=sys.stderr)
        return EXIT_CONFIG
    for account in settings.accounts:
        register_secret(account.app_key)
        register_secret(account.app_secret)
    print(f"observer: {mode.reason}", flush=True)
    with ExitStack() as stack:
        clock: Clock = SystemClock()
        rest_url = ws_url = None
        simulator: KisSimulator | None = None
        if mode.simulated:
            simulator = stack.enter_context(_start_simulator(args, settings))
            clock, rest_url, ws_url = simulator.clock, simulator.rest_url, simulator.ws_url
            started = f"{clock.now():%Y-%m-%d %H:%M} KST at {args.speed:g}x"
            print(f"observer: simulated {started}; {simulator.ready_line()}", flush=True)
        return run(settings, clock, rest_url, ws_url, args.duration, args.summary_json, simulator, args.chaos)
    return EXIT_OK


def _start_simulator(args: Any, settings: Settings) -> KisSimulator:
    day = args.date or default_sim_day(SystemClock().now().date())
    data_root = Path(settings.data_dir)
    scenario = args.scenario or write_demo_scenario(
        data_root / "sim" / "demo_scenario.json",
        seed=args.seed,
        day=day,
        n_symbols=args.symbols,
        start=args.start,
        min_close=settings.universe.min_close_price,
    )
    config = SimConfig(
        seed=args.seed,
        date=day,
        start=args.start,
        speed=args.speed,
        scenario=scenario,
        sent_log=data_root / "sim" / f"{day:%Y%m%d}_sent.jsonl",
        n_symbols=args.symbols,
    )
    return KisSimulator(config)


def run(
    settings: Settings,
    clock: Clock,
    rest_url: str | None,
    ws_url: str | None,
    duration: float | None,
    summary_path: Path | None,
    simulator: KisSimulator | None = None,
    chaos: bool = False,
) -> int:
    """Run the actor tree until a signal, `duration` or an escalation; then stop it and write the summary."""
    system = ObserverSystem(settings, clock, rest_url, ws_url)
    on_terminal = sys.stdout.isatty()
    setup_logging(
        Path(settings.log_dir),
        [*system.child_ids, "supervisor"],
        settings.log_retention_days,
        console_level="WARNING" if on_terminal else settings.log_level,
    )
    status = StatusView(system.metrics, clock)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        logger.info("signal {} received: stopping", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        system.start()
        status.start()
        _wait(stop_requested, system.supervisor, duration)
        exit_code = system.stop()
    finally:
        status.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    summary = system.summary()
    if summary_path is not None:
        write_summary(summary_path, summary)
    logger.info("stopped with exit code {}: {}", exit_code, summary)
    return exit_code


def _wait(stop_requested: threading.Event, supervisor: Supervisor, duration: float | None) -> None:
    """Until a signal, the end of `duration` (real seconds) or the supervisor giving up."""
    deadline = None if duration is None else time.monotonic() + duration
    while not stop_requested.is_set() and not supervisor.stopped.is_set():
        remaining = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
        if remaining <= 0:
            return
        stop_requested.wait(remaining)
