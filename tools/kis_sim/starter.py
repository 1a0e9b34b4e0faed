"""The simulator as the observer's `app` reaches it, and its only door into this package: the command line
that starts a simulator process, a fault armed over its REST port, the checks of a scenario file against
its market, the symbols a demo scenario may surge, and the app key hash its sent log carries."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from datetime import date, time
from pathlib import Path

from tools.kis_sim.faults import FAULTS_PATH
from tools.kis_sim.listings import build_universe
from tools.kis_sim.scenario import Scenario, ScenarioError
from tools.kis_sim.sent_log import app_key_hash

__all__ = ["ScenarioError", "app_key_hash", "arm_faults", "check_scenario", "simulator_argv",
           "tradable_symbols"]


def simulator_argv(
    python: str = sys.executable,
    *,
    seed: int,
    day: date,
    start: time,
    speed: float,
    n_symbols: int,
    rest_port: int,
    ws_port: int,
    scenario: Path,
    sent_log: Path,
    pingpong_interval: float | None = None,
) -> list[str]:
    """`python -m tools.kis_sim` serving `day` from `start` on these ports, printing its CLOCK line."""
    argv = [python, "-m", "tools.kis_sim", "--print-clock", "--seed", str(seed), "--date", f"{day:%Y%m%d}",
            "--start", start.strftime("%H:%M:%S"), "--speed", f"{speed:g}", "--n-symbols", str(n_symbols),
            "--rest-port", str(rest_port), "--ws-port", str(ws_port), "--scenario", str(scenario),
            "--sent-log", str(sent_log)]
    if pingpong_interval is not None:
        argv += ["--pingpong-interval", f"{pingpong_interval:g}"]
    return argv


def arm_faults(rest_url: str, spec: str, timeout: float = 5.0) -> None:
    """Arm `spec` (the `--faults` syntax) now on the simulator serving `rest_url`; raises ValueError with
    its reason when it refuses the spec, OSError when it cannot be reached."""
    request = urllib.request.Request(rest_url.rstrip("/") + FAULTS_PATH, data=spec.encode("utf-8"),
                                     method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return
    except urllib.error.HTTPError as error:
        try:
            reason = json.loads(error.read() or b"{}").get("error", f"HTTP {error.code}")
        except ValueError:
            reason = f"HTTP {error.code}"
        raise ValueError(f"the simulator refused faults {spec!r}: {reason}") from None


def check_scenario(path: Path, *, seed: int | None = None, day: date | None = None,
                   n_symbols: int | None = None) -> None:
    """Raise ScenarioError (one line) when `path` does not read or validate, or, given the market (`seed`,
    `day`, `n_symbols`), names a symbol that market does not list."""
    scenario = Scenario.load(path)
    if seed is not None and day is not None and n_symbols is not None:
        scenario.check_symbols(build_universe(seed, day, n_symbols).listings)


def tradable_symbols(seed: int, day: date, n_symbols: int, min_close: int) -> list[str]:
    """The codes of the simulated market that trade on `day` at a previous close of `min_close` or more,
    in code order."""
    listings = build_universe(seed, day, n_symbols).listings.values()
    return sorted(
        listing.code for listing in listings if not listing.halted and listing.prev_close >= min_close
    )
