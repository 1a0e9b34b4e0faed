"""A live status view on a terminal (rich), plain periodic log lines otherwise.

Everything comes from the shared metrics: the phase, the ticks on disk per second, each account's
connection, slots (`used / capacity`) and registrations (trades / order books / program trading), the day's
universe build and context sync (degraded or not), the wake-up steps with the next one, what waits for the
disk (and, when writes fail, since when and how many ticks were dropped), the counters and the recent
triggers and alerts. Times are clock times in KST
(`09:40:55`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from loguru import logger
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from runtime.clock import Clock
from runtime.logs import clock_time
from runtime.metrics import COUNTERS, Metrics

MIB = 1024 * 1024


def slots_text(snapshot: dict[str, Any], account: str) -> str:
    """`38 / 41`: the account's slots in use and its capacity (`?` until the slot manager says)."""
    used = snapshot.get(f"slots_in_use.{account}", 0)
    return f"{used} / {snapshot.get(f'slots_capacity.{account}', '?')}"


def registrations_text(snapshot: dict[str, Any], account: str) -> str:
    """`34 / 3 / 3`: the account's confirmed registrations of trades / order books / program trading."""
    counts = (snapshot.get(f"registrations_{kind}.{account}", 0) for kind in ("trades", "books", "program"))
    return " / ".join(str(count) for count in counts)


def accounts_of(snapshot: dict[str, Any]) -> list[str]:
    prefixes = ("slots_in_use.", "ws_state.", "slots_capacity.")
    return sorted({key.split(".", 1)[1] for key in snapshot if key.startswith(prefixes)})


def universe_text(snapshot: dict[str, Any]) -> str:
    symbols = snapshot.get("universe_symbols")
    if symbols is None:
        return "universe not built yet"
    fallback = " (an earlier day's snapshot)" if snapshot.get("universe_fallback") else ""
    return (f"universe {int(symbols):,} symbols for {snapshot.get('universe_day', '-')}, "
            f"built {clock_time(snapshot.get('universe_built_at'))}{fallback}")


def context_text(snapshot: dict[str, Any]) -> str:
    synced = snapshot.get("context_synced_at")
    if synced is None:
        return "context not synced yet"
    degraded = snapshot.get("context_degraded")
    if degraded:
        return f"context DEGRADED at {clock_time(synced)}: {degraded}"
    return (f"context synced {clock_time(synced)} from {snapshot.get('context_snapshots', 0)} snapshots, "
            f"{snapshot.get('context_movers', 0)} movers")


STEP_MARKS = {"done": "ok", "retrying": "RETRYING", "failed": "FAILED", "pending": "-", "skipped": "skipped"}


def wakeup_text(snapshot: dict[str, Any]) -> str:
    """The day's wake-up steps, each with its state, then the next one and its time."""
    steps = snapshot.get("wakeup")
    if not isinstance(steps, list) or not steps:
        return "wake-up: no sequence today"
    done = " ".join(f"{row['step']} {STEP_MARKS.get(row['state'], row['state'])}" for row in steps)
    upcoming = next((row for row in steps if row["state"] in ("pending", "retrying")), None)
    if upcoming is None:
        return f"wake-up: {done}"
    at = upcoming.get("retry_at") or upcoming["due_at"]
    return f"wake-up: {done}; next {upcoming['step']} at {clock_time(at)}"


def disk_text(snapshot: dict[str, Any]) -> str:
    """What waits for the disk; when writes fail, since when, and the ticks dropped (marked as gaps)."""
    waiting = int(snapshot.get("recorder_buffered_bytes", 0))
    lines = int(snapshot.get("recorder_buffered_lines", 0))
    failing = snapshot.get("recorder_write_failing_since")
    state = f"disk writes FAILING since {clock_time(failing)}" if failing is not None else "disk ok"
    text = f"{state}, {waiting / MIB:.1f} MiB waiting ({lines:,} lines)"
    dropped = int(snapshot.get("ticks_dropped", 0))
    if dropped:
        text += f", {dropped:,} ticks dropped (marked as gaps)"
    return text


def render(snapshot: dict[str, Any], now: str, ticks_per_second: float) -> Group:
    """The status screen for one metrics snapshot."""
    head = Text.assemble(
        ("Observer ", "bold"),
        f"{now}  phase {snapshot.get('phase', '-')}  ",
        f"ticks/s {ticks_per_second:,.0f}  last scan {clock_time(snapshot.get('last_scan_at'))}",
        f"  dashboard {snapshot['dashboard_url']}" if snapshot.get("dashboard_url") else "",
    )
    day = Text(f"{universe_text(snapshot)}  |  {context_text(snapshot)}")
    wakeup = Text(wakeup_text(snapshot))
    failing = snapshot.get("recorder_write_failing_since") is not None
    disk = Text(disk_text(snapshot), style="bold red" if failing else "")
    accounts = Table("account", "connection", "slots used / capacity",
                     "registrations trades / books / program", box=None, header_style="bold")
    for account in accounts_of(snapshot):
        connection = str(snapshot.get(f"ws_state.{account}", "-"))
        registrations = registrations_text(snapshot, account)
        accounts.add_row(account, connection, slots_text(snapshot, account), registrations)
    counts = Table(box=None, show_header=False)
    for name in COUNTERS:
        counts.add_row(name, f"{int(snapshot.get(name, 0)):,}")
    recent = Table("recent triggers", "recent alerts", box=None, header_style="bold")
    triggers = list(snapshot.get("recent_triggers", []))
    alerts = list(snapshot.get("recent_alerts", []))
    for i in range(max(len(triggers), len(alerts))):
        recent.add_row(triggers[i] if i < len(triggers) else "", alerts[i] if i < len(alerts) else "")
    return Group(head, day, wakeup, disk, accounts, counts, recent)


def status_line(snapshot: dict[str, Any], now: str, ticks_per_second: float) -> str:
    """The same as one log line, for when the output is not a terminal."""
    slots = " ".join(f"{account}={slots_text(snapshot, account).replace(' ', '')}"
                     for account in accounts_of(snapshot))
    registrations = " ".join(f"{account}={registrations_text(snapshot, account).replace(' ', '')}"
                             for account in accounts_of(snapshot))
    return (
        f"status {now} phase={snapshot.get('phase', '-')} ticks/s={ticks_per_second:.0f} "
        f"ticks={int(snapshot.get('ticks_recorded', 0))} scans={snapshot.get('scans', 0)} "
        f"last_scan={clock_time(snapshot.get('last_scan_at'))} triggers={snapshot.get('triggers', 0)} "
        f"slot_changes={snapshot.get('slot_changes', 0)} alerts={snapshot.get('alerts_sent', 0)} "
        f"slots {slots or '-'} registrations(trades/books/program) {registrations or '-'} | "
        f"{universe_text(snapshot)} | {context_text(snapshot)} | {wakeup_text(snapshot)} | "
        f"{disk_text(snapshot)}"
    )


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
        if self._thread.ident is not None:  # a stream worker stopped while it waited for its leases
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
                    logger.info(status_line(snapshot, stamp, rate))
        finally:
            if live is not None:
                live.stop()
