"""A live status view on a terminal (rich), plain periodic log lines otherwise."""

from __future__ import annotations

import threading
import time
from typing import Any

from loguru import logger
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from app.summary import COUNTERS
from runtime.clock import Clock
from runtime.metrics import Metrics


def render(snapshot: dict[str, Any], now: str, ticks_per_second: float) -> Group:
    """The status screen for one metrics snapshot."""
    head = Text.assemble(
        ("Observer ", "bold"),
        f"{now}  phase {snapshot.get('phase', '-')}  ",
        f"ticks/s {ticks_per_second:,.0f}  last scan {snapshot.get('last_scan_at', '-')}",
        f"  dashboard {snapshot['dashboard_url']}" if snapshot.get("dashboard_url") else "",
    )
    accounts = Table("account", "connection", "slots in use", box=None, header_style="bold")
    for key in sorted(k for k in snapshot if k.startswith("slots_in_use.")):
        account = key.removeprefix("slots_in_use.")
        accounts.add_row(account, str(snapshot.get(f"ws_state.{account}", "-")), str(snapshot[key]))
    counts = Table(box=None, show_header=False)
    for name in COUNTERS:
        counts.add_row(name, f"{int(snapshot.get(name, 0)):,}")
    recent = Table("recent triggers", "recent alerts", box=None, header_style="bold")
    triggers = list(snapshot.get("recent_triggers", []))
    alerts = list(snapshot.get("recent_alerts", []))
    for i in range(max(len(triggers), len(alerts))):
        recent.add_row(triggers[i] if i < len(triggers) else "", alerts[i] if i < len(alerts) else "")
    return Group(head, accounts, counts, recent)


class StatusView:
    """Refreshes once a second in its own daemon thread until `stop()`."""

    def __init__(self, metrics: Metrics, clock: Clock, console: Console | None = None) -> None:
        self._metrics = metrics
        self._clock = clock
        self._console = console or Console()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-view", daemon=True)

    def start(self) -> StatusView:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        last_ticks, last_time = 0, time.monotonic()
        interactive = self._console.is_terminal
        live = Live(console=self._console, auto_refresh=False) if interactive else None
        if live is not None:
            live.start()
        try:
            while not self._stop.wait(1.0 if interactive else 10.0):
                snapshot = self._metrics.snapshot()
                ticks, now = int(snapshot.get("ticks_recorded", 0)), time.monotonic()
                rate = (ticks - last_ticks) / max(now - last_time, 1e-9)
                last_ticks, last_time = ticks, now
                stamp = f"{self._clock.now():%Y-%m-%d %H:%M:%S} KST"
                if live is not None:
                    live.update(render(snapshot, stamp, rate), refresh=True)
                else:
                    logger.info(
                        "status {} phase={} ticks/s={:.0f} ticks={} scans={} triggers={} slot_changes={} "
                        "alerts={}",
                        stamp,
                        snapshot.get("phase", "-"),
                        rate,
                        ticks,
                        snapshot.get("scans", 0),
                        snapshot.get("triggers", 0),
                        snapshot.get("slot_changes", 0),
                        snapshot.get("alerts_sent", 0),
                    )
        finally:
            if live is not None:
                live.stop()
