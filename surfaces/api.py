"""What the HTTP surface reads and commands, behind one interface (`ObserverSurface`).

`InProcessSurface` reads from inside the control process: the shared `Metrics`, the quote board, the
data files, and the actors asked through the supervisor's `Directory`. Its commands go over the spine as
requests (`spine.control`) and the control process's responder (`surfaces.control`) carries them out.

A sampler thread looks once a second at the tick counts and prices, for the ticks/s, sparklines and the
last hour's charts, and builds the live update the event stream sends (`stream_state`).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Protocol

import pykka
from loguru import logger

from actors.slot_manager import tick_capacity
from actors.system import ws_actor_id
from core.calendar import is_trading_day
from core.schedule import day_boundaries, next_boundary, phase_at
from kis.ratelimit import PROCESS_LIMITERS
from runtime.metrics import COUNTERS
from spine.control import ControlClient, NoControl
from surfaces.commands import CommandError
from surfaces.control import UniverseNames

ASK_SECONDS = 3.0
SAMPLE_SECONDS = 1.0
HISTORY_POINTS = 360
"""Points of the last hour's charts (one every 10 s)."""
HISTORY_EVERY = 10
SPARK_POINTS = 60
RECENT_LINES = 50


class ObserverSurface(Protocol):
    """The read and command side the HTTP server needs; every answer is plain JSON-ready data."""

    def status(self) -> dict[str, Any]: ...
    def slots(self) -> dict[str, Any]: ...
    def candidates(self) -> dict[str, Any]: ...
    def overflow(self) -> dict[str, Any]: ...
    def alerts(self) -> dict[str, Any]: ...
    def gaps(self) -> dict[str, Any]: ...
    def health(self) -> dict[str, Any]: ...
    def liveness(self) -> tuple[bool, list[str]]: ...
    def readiness(self) -> tuple[bool, list[str]]: ...
    def figures(self) -> dict[str, Any]: ...
    def command(self, name: str, body: Any, who: str) -> dict[str, Any]: ...
    def stream_state(self) -> tuple[int, str]: ...


class InProcessSurface:
    """`system` is the running `app.system.ObserverSystem`; `start()` the sampler, `stop()` it."""

    def __init__(self, system: Any, control: ControlClient) -> None:
        self._system = system
        self._context = system.context
        self._settings = system.context.settings
        self._clock = system.context.clock
        self._metrics = system.metrics
        self._directory = system.directory
        self._control = control
        self._names = UniverseNames(self._directory, self._clock)
        self.dashboard_url = ""
        self._lock = threading.Lock()
        self._prices: dict[str, deque[int]] = {}
        self._rates: dict[str, float] = {}
        self._last_counts: dict[str, int] = {}
        self._tick_history: deque[tuple[str, float]] = deque(maxlen=HISTORY_POINTS)
        self._rest_history: deque[tuple[str, float]] = deque(maxlen=HISTORY_POINTS)
        self._stream: tuple[int, str] = (0, "{}")
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, name="http-sampler", daemon=True)

    def start(self) -> InProcessSurface:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # never started when the address was taken
            self._thread.join(timeout=2.0)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    # --- the read side ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        now = self._clock.now()
        snapshot = self._metrics.snapshot()
        schedule = self._settings.schedule
        upcoming = next_boundary(now, schedule)
        return {
            "now": now.isoformat(),
            "control": self.control_state(),
            "phase": phase_at(now, schedule).value,
            "trading_day": is_trading_day(now.date()),
            "schedule": [_boundary(b) for b in day_boundaries(now.date(), schedule)],
            "next": _boundary(upcoming),
            "accounts": self._accounts(snapshot),
            "counters": {name: int(snapshot.get(name, 0)) for name in COUNTERS},
            "universe": {
                "day": snapshot.get("universe_day"),
                "symbols": int(snapshot.get("universe_symbols", 0)),
                "fallback": bool(snapshot.get("universe_fallback", False)),
            },
            "last_scan_at": snapshot.get("last_scan_at"),
            "last_closing_pass_at": snapshot.get("last_closing_pass_at"),
            "wakeup": _wakeup(snapshot.get("wakeup")),
            "context": {
                "synced_at": _iso(snapshot.get("context_synced_at")),
                "snapshots": snapshot.get("context_snapshots"),
                "movers": snapshot.get("context_movers"),
                "degraded": snapshot.get("context_degraded"),
                "baseline": snapshot.get("context_baseline"),
            },
            "picks_source": snapshot.get("picks_source"),
            "scanner_safe_mode": bool(snapshot.get("scanner_safe_mode", False)),
            "track_b_paused": bool(self._ask_proxy("slots", "paused", default=False)),
            "ticks_per_second": round(sum(self._rates.values()), 1),
            "uptime_seconds": round(time.monotonic() - self._started),
            "dashboard": self.dashboard_url,
        }

    def slots(self) -> dict[str, Any]:
        state = self._ask_proxy("slots", "snapshot")
        pinned = self._ask_proxy("slots", "pinned", default=frozenset())
        names = self._names()
        board = self._context.quotes.symbols()
        accounts = []
        for account in state.accounts if state is not None else ():
            rows = []
            for slot in account.slots:
                price, ticks = board.get(slot.symbol, (None, 0))
                profile = names.get(slot.symbol)
                rows.append(
                    {
                        "symbol": slot.symbol,
                        "name": profile[0] if profile else "",
                        "venue": profile[1] if profile else "",
                        "score": round(slot.score, 3),
                        "trigger": slot.trigger.value if slot.trigger else None,
                        "pinned": slot.pinned or slot.symbol in pinned,
                        "since": slot.since.isoformat(),
                        "ticks": ticks,
                        "ticks_per_second": round(self._rates.get(slot.symbol, 0.0), 2),
                        "last_price": price,
                        "sparkline": list(self._prices.get(slot.symbol, ())),
                    }
                )
            accounts.append(
                {
                    "account": account.name,
                    "capacity": account.capacity,
                    "available": account.available,
                    "slots": rows,
                }
            )
        return {"accounts": accounts, "pinned": sorted(pinned)}

    def candidates(self) -> dict[str, Any]:
        ranked = self._ask_proxy("triggers", "candidates", default=()) or ()
        names = self._names()
        return {
            "candidates": [
                {
                    "symbol": c.symbol,
                    "name": names.get(c.symbol, ("", ""))[0],
                    "score": round(c.score, 3),
                    "trigger": c.trigger.value,
                    "strength": round(c.strength, 3),
                    "detected_at": c.detected_at.isoformat(),
                }
                for c in ranked
            ]
        }

    def overflow(self) -> dict[str, Any]:
        now = self._clock.now()
        current = self._ask_proxy("slots", "overflowing", default={}) or {}
        names = self._names()
        ledger = []
        for account in self._context.accounts:
            ledger += _tail(self._context.paths.overflow_ledger(account.name, now.date()))
        return {
            "now": [
                {"symbol": s, "name": names.get(s, ("", ""))[0], "reason": r}
                for s, r in sorted(current.items())
            ],
            "ledger": ledger[-RECENT_LINES:],
            "total": self._metrics.count("overflows"),
        }

    def alerts(self) -> dict[str, Any]:
        now = self._clock.now()
        snapshot = self._metrics.snapshot()
        return {
            "recent": _tail(self._context.paths.alerts_ledger(now.date())),
            "sent": int(snapshot.get("alerts_sent", 0)),
            "suppressed": int(snapshot.get("alerts_suppressed", 0)),
            "failed": int(snapshot.get("alerts_failed", 0)),
            "recent_triggers": list(snapshot.get("recent_triggers", [])),
        }

    def gaps(self) -> dict[str, Any]:
        now = self._clock.now()
        snapshot = self._metrics.snapshot()
        markers = []
        open_gaps: dict[str, list[str]] = {}
        for account in self._context.accounts:
            markers += _tail(self._context.paths.gap_markers(account.name, now.date()))
            status = self._ask_proxy(ws_actor_id(account.name), "status")
            open_gaps[account.name] = list(status.open_gaps) if status is not None else []
        detected = int(snapshot.get("gaps_detected", 0))
        marked = int(snapshot.get("gaps_marked", 0))
        return {
            "detected": detected,
            "recovered": int(snapshot.get("gaps_recovered", 0)),
            "marked": marked,
            "rate": round(marked / detected, 4) if detected else 0.0,
            "queue_depth": int(snapshot.get("gap_queue_depth", 0)),
            "open": open_gaps,
            "markers": markers[-RECENT_LINES:],
        }

    def health(self) -> dict[str, Any]:
        alive, why_not_alive = self.liveness()
        ready, why_not_ready = self.readiness()
        running = set(self._system.running_ids())
        restarts = self._system.restart_counts()
        return {
            "alive": alive,
            "ready": ready,
            "reasons": why_not_alive + why_not_ready,
            "spine": self.spine_state(),
            "actors": [
                {"id": child, "running": child in running, "restarts": int(restarts.get(child, 0))}
                for child in self._system.all_child_ids
            ],
            "tokens": self._tokens(),
            "dead_letters": self._directory.dead_letter_count,
        }

    def spine_state(self) -> str:
        """"connected" or "disconnected" (the publisher's NATS connection), "none" without a spine."""
        publisher = getattr(self._system, "publisher", None)
        if publisher is None:
            return "none"
        return "connected" if publisher.connected else "disconnected"

    def control_state(self) -> str:
        """"active", or "standby" while another control process holds the control lease (`spine.kv`)."""
        return str(self._metrics.snapshot().get("control", "active"))

    def liveness(self) -> tuple[bool, list[str]]:
        """The actor tree is alive (the supervisor runs, every child runs) and the spine is connected; a
        standby control, which runs no actor, is alive."""
        if self.control_state() == "standby":
            return True, []
        if self._system.supervisor.stopped.is_set():
            return False, ["the supervisor has stopped"]
        running = set(self._system.running_ids())
        down = [child for child in self._system.all_child_ids if child not in running]
        reasons = [f"actor {child} is not running" for child in down]
        if self.spine_state() == "disconnected":
            reasons.append("the spine (NATS) is not connected")
        return (not reasons, reasons)

    def readiness(self) -> tuple[bool, list[str]]:
        """On a trading day: every token valid, every WebSocket connected, today's universe loaded. A standby
        control is never ready (a load balancer sends users to the active one)."""
        if self.control_state() == "standby":
            return False, ["standby control: another control process is active"]
        now = self._clock.now()
        if not is_trading_day(now.date()):
            return True, []
        snapshot = self._metrics.snapshot()
        reasons = []
        for account, expires in self._tokens().items():
            if expires is None or expires <= 0:
                reasons.append(f"{account}: no valid access token")
        for account in self._context.accounts:
            state = snapshot.get(f"ws_state.{account.name}")
            if state != "connected":
                reasons.append(f"{account.name}: WebSocket is {state or 'not connected yet'}")
        if snapshot.get("universe_day") != now.date().isoformat() or not snapshot.get("universe_symbols"):
            reasons.append("today's universe is not loaded")
        return not reasons, reasons

    def figures(self) -> dict[str, Any]:
        """Everything `/metrics` exports, read now."""
        snapshot = self._metrics.snapshot()
        state = self._ask_proxy("slots", "snapshot")
        slots = {a.name: (len(a.slots), a.capacity) for a in state.accounts} if state is not None else {}
        capacity = self._settings.slots.max_slots
        for account in self._context.accounts:
            slots.setdefault(account.name, (0, tick_capacity(account, capacity)))
        rest = {a.name: PROCESS_LIMITERS.calls_of(a.app_key) for a in self._context.accounts}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        try:
            free = shutil.disk_usage(self._context.paths.root).free
        except OSError:
            free = 0
        restarts = self._system.restart_counts()
        gaps = self.gaps()
        return {
            "snapshot": snapshot,
            "slots": slots,
            "account_ticks": self._context.quotes.account_ticks(),
            "rest": rest,
            "tokens": self._tokens(),
            "restarts": {child: int(restarts.get(child, 0)) for child in self._system.all_child_ids},
            "gap_rate": gaps["rate"],
            "rss_bytes": _rss_bytes(),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "disk_free_bytes": free,
            "alive": self.liveness()[0],
            "control_active": self.control_state() == "active",
            "spine_connected": self.spine_state() != "disconnected",
            "phase": phase_at(self._clock.now(), self._settings.schedule).value,
        }

    # --- the command side -------------------------------------------------------------------------------

    def command(self, name: str, body: Any, who: str) -> dict[str, Any]:
        """Send the command over the spine as `who` and hand back the control process's reply."""
        if not isinstance(body, dict):
            raise CommandError(400, "the request body must be a JSON object")
        try:
            reply = self._control.send(name, {**body, "who": who})
        except NoControl as error:
            raise CommandError(503, str(error)) from None
        if not reply.ok:
            raise CommandError(reply.status, reply.error or f"{name} was refused")
        return {"ok": True, "command": name, "done": reply.done, "at": reply.at.isoformat()}

    # --- the live stream --------------------------------------------------------------------------------

    def stream_state(self) -> tuple[int, str]:
        """(version, JSON of the latest update); the version grows once a second."""
        with self._lock:
            return self._stream

    def _sample_loop(self) -> None:
        count = 0
        last = time.monotonic()
        last_ticks = last_rest = None
        while not self._stop.wait(SAMPLE_SECONDS):
            try:
                now_mono = time.monotonic()
                elapsed = max(now_mono - last, 1e-6)
                last = now_mono
                self._sample_symbols(elapsed)
                count += 1
                if count % HISTORY_EVERY == 1:
                    ticks = int(self._metrics.count("ticks_recorded"))
                    rest = sum(PROCESS_LIMITERS.calls_of(a.app_key)[0] for a in self._context.accounts)
                    stamp = self._clock.now().strftime("%H:%M:%S")
                    if last_ticks is not None:
                        span = HISTORY_EVERY * SAMPLE_SECONDS
                        self._tick_history.append((stamp, round((ticks - last_ticks) / span, 1)))
                        self._rest_history.append((stamp, round((rest - (last_rest or 0)) / span, 2)))
                    last_ticks, last_rest = ticks, rest
                update = {
                    "status": self.status(),
                    "slots": self.slots(),
                    "candidates": self.candidates()["candidates"][:30],
                    "overflow": self.overflow()["now"][:30],
                    "alerts": self.alerts(),
                    "gaps": {k: v for k, v in self.gaps().items() if k != "markers"},
                    "health": self.health(),
                    "charts": {"ticks": list(self._tick_history), "rest": list(self._rest_history)},
                }
                text = json.dumps(update, default=str)
                with self._lock:
                    self._stream = (self._stream[0] + 1, text)
            except Exception as error:  # the sampler must outlive any one bad read
                logger.warning("dashboard sampler: {}: {}", type(error).__name__, error)

    def _sample_symbols(self, elapsed: float) -> None:
        board = self._context.quotes.symbols()
        rates = {}
        for symbol, (price, ticks) in board.items():
            before = self._last_counts.get(symbol)
            if before is not None and ticks != before:
                rates[symbol] = (ticks - before) / elapsed
            self._last_counts[symbol] = ticks
            history = self._prices.setdefault(symbol, deque(maxlen=SPARK_POINTS))
            if not history or history[-1] != price or before != ticks:
                history.append(price)
        self._rates = rates

    # --- helpers ----------------------------------------------------------------------------------------

    def _accounts(self, snapshot: dict[str, Any]) -> list[dict[str, Any]]:
        capacity = self._settings.slots.max_slots
        ticks = self._context.quotes.account_ticks()
        return [
            {
                "account": account.name,
                "connection": snapshot.get(f"ws_state.{account.name}", "not connected"),
                "slots_used": int(snapshot.get(f"slots_in_use.{account.name}", 0)),
                "capacity": tick_capacity(account, capacity),
                "registrations": {
                    kind: int(snapshot.get(f"registrations_{kind}.{account.name}", 0))
                    for kind in ("trades", "books", "program", "notice")
                },
                "ticks": ticks.get(account.name, 0),
            }
            for account in self._context.accounts
        ]

    def _tokens(self) -> dict[str, float | None]:
        """Seconds until each account's token expires (None: no token held)."""
        vault = self._system.vault
        now = self._clock.now()
        found: dict[str, float | None] = {}
        for account in self._context.accounts:
            expires = vault.token_expires_at(account.name)
            found[account.name] = None if expires is None else round((expires - now).total_seconds())
        return found

    def _ask_proxy(self, child: str, method: str, default: Any = None) -> Any:
        """A query of a running actor; `default` when it is not running or too slow."""
        if self._directory.ref(child) is None:
            return default
        try:
            answer = getattr(self._directory.proxy(child), method)().get(timeout=ASK_SECONDS)
        except pykka.Timeout:
            return default
        return default if answer is None else answer


def _boundary(boundary: Any) -> dict[str, Any]:
    what = boundary.phase.value if boundary.phase is not None else boundary.event.value
    return {"at": boundary.at.isoformat(), "what": what, "phase": boundary.is_phase_change}


def _iso(value: Any) -> Any:
    """A datetime gauge as ISO text (a gauge shared by another process is text already)."""
    return value.isoformat() if hasattr(value, "isoformat") else value


def _wakeup(steps: Any) -> dict[str, Any]:
    """The day's wake-up steps (`core.wakeup`) and the next one to run, for the status."""
    rows = steps if isinstance(steps, list) else []
    upcoming = next((row for row in rows if row.get("state") in ("pending", "retrying")), None)
    return {"steps": rows, "next": upcoming["step"] if upcoming else None,
            "done": [row["step"] for row in rows if row.get("state") == "done"]}


def _tail(path: Path, lines: int = RECENT_LINES) -> list[dict[str, Any]]:
    """The last `lines` JSON lines of a ledger file (none when it does not exist yet)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            size = file.tell()
            file.seek(max(0, size - 64 * 1024))
            data = file.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    found = []
    for line in data[-lines:]:
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
