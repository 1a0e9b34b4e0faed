"""The observer's running system: shared services, the supervised actor tree, start and stop.

`run.py` drives it through `app.observer`; tests and `--chaos` drive it directly.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from loguru import logger

from actors.context import ObserverContext
from actors.directory import Directory
from actors.supervisor import Supervisor
from actors.system import all_child_ids, child_specs, ws_actor_id
from app.downtime import downtime_found
from app.summary import build_summary
from config.settings import Settings
from core.workers import Roster, RosterChange
from kis.token_vault import TokenCache, TokenVault
from messages.streaming import AccountsServed
from runtime.clock import Clock
from runtime.metrics import COUNTERS, Metrics
from runtime.paths import DataPaths
from runtime.state_store import StateReplica
from spine.health import Heartbeat
from spine.link import Link
from spine.publisher import NoSpine, Publisher
from spine.wire import Health, WorkerHeartbeat
from spine.workers import HELD, Holder, SessionLeases, WorkerWatch

CONNECTIONS_CLOSED = "observer: stream connections closed"
REMOTE_FRESH_SECONDS = 5.0
"""Another process's word on its children counts this long (it repeats it every second)."""


@dataclass(frozen=True, slots=True)
class Heard:
    """The latest figures one other process (a stream worker) shared, and when they arrived."""

    figures: dict[str, Any]
    at: float


def merged_figures(shared: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Several processes' figures (`ObserverSystem._figures`, oldest word first) as one process's: counters
    and tick counts add up, gauges, lists and last prices are the latest word on each name."""
    counts: Counter[str] = Counter()
    gauges: dict[str, Any] = {}
    sets: dict[str, list[str]] = {}
    prices: dict[str, int] = {}
    ticks: Counter[str] = Counter()
    accounts: Counter[str] = Counter()
    for figures in shared:
        metrics, quotes = figures.get("metrics", {}), figures.get("quotes", {})
        counts.update({name: int(count) for name, count in metrics.get("counts", {}).items()})
        gauges.update(metrics.get("gauges", {}))
        for name, items in metrics.get("sets", {}).items():
            merged = sets.setdefault(name, [])
            merged += [item for item in items if item not in merged]
        prices.update(quotes.get("prices", {}))
        ticks.update({symbol: int(count) for symbol, count in quotes.get("ticks", {}).items()})
        accounts.update({account: int(count) for account, count in quotes.get("accounts", {}).items()})
    return {
        "metrics": {"counts": dict(counts), "gauges": gauges, "sets": sets},
        "quotes": {"prices": prices, "ticks": dict(ticks), "accounts": dict(accounts)},
    }


def credentials_for(
    role: str, settings: Settings, clock: Clock, rest_url: str | None, *, own_approval: bool = False
) -> TokenVault | TokenCache:
    """The control process (and "all") owns the credentials: it issues, refreshes and writes the token
    cache. The stream process reads that file at each connect, so it presents the approval key renewed at
    08:30 from its next connect on, and no secret travels over NATS. `own_approval` (a worker for named
    accounts, maybe on another machine): an account without an approval key in that file gets one issued
    by the worker itself (`TokenCache`)."""
    if role == "stream":
        return TokenCache(settings.accounts, clock, settings.tokens, rest_url=rest_url,
                          own_approval=own_approval)
    return TokenVault(
        settings.accounts, clock, settings.tokens, rest_url=rest_url, rate_limits=settings.rate_limit
    )


class ObserverSystem:
    """Build with settings, a clock and the KIS endpoints (None: the real ones); `start()`, then `stop()`.

    `restart_limit` is the supervisor's `(max_restarts, period_seconds)` (see `Supervisor.restart_limit`);
    None keeps the supervisor's defaults, which production uses. Tests that crash every actor raise it.
    `publisher` (None: no spine), started by the caller, is handed to the actors and gets a `health`
    message every `spine.health_interval_seconds`; `stop()` stops it after the actors, so every fact they
    made is sent before the summary is taken.

    `role` "control" or "stream" runs that process's part of the tree (`actors.system.role_of`) and
    reaches the other part over `link`, a `spine.link.Link` to the same NATS (started here, stopped at
    `stop()`); "all" runs the whole tree in this process. A stream process is a stream worker: it holds
    its accounts' session leases (`hold_sessions`, before `start`) and publishes a `worker` heartbeat;
    `named_accounts` (`--accounts a,b`) lets it issue its own approval keys. The control process follows
    the workers' heartbeats (`spine.workers.WorkerWatch`) and tells `slots` which accounts are served;
    `state_replica` (the control role's) gets a copy of every state document and universe file the actors
    save.
    """

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        rest_url: str | None = None,
        ws_url: str | None = None,
        *,
        restart_limit: tuple[int, float] | None = None,
        publisher: Publisher | None = None,
        role: str = "all",
        link: Link | None = None,
        named_accounts: bool = False,
        state_replica: StateReplica | None = None,
    ) -> None:
        if role != "all" and link is None:
            raise ValueError(f"role {role!r} needs a link to the other processes")
        self.role = role
        self.link = link
        self.metrics = Metrics()
        self.publisher = publisher
        self._started = time.monotonic()
        self._named_accounts = named_accounts
        self.vault = credentials_for(role, settings, clock, rest_url, own_approval=named_accounts)
        self.context = ObserverContext(
            settings=settings,
            clock=clock,
            metrics=self.metrics,
            paths=DataPaths(Path(settings.data_dir)),
            vault=self.vault,
            rest_url=rest_url,
            ws_url=ws_url,
            spine=publisher if publisher is not None else NoSpine(),
            state_replica=state_replica,
        )
        if link is not None and role == "stream":
            link.share(self._figures)
        elif link is not None:
            link.follow(self._absorb)
        self._heartbeat = Heartbeat(self.context.spine, self.health, settings.spine.health_interval_seconds)
        names = tuple(account.name for account in settings.accounts)
        self.holder = Holder(f"{socket.gethostname()}-{'+'.join(names)}", socket.gethostname(), os.getpid())
        self.leases: SessionLeases | None = None
        self.lease_lost: str | None = None
        workers = settings.workers
        self._worker_beat = Heartbeat(self.context.spine, self.worker_heartbeat, workers.heartbeat_seconds)
        self.watch: WorkerWatch | None = None
        if link is not None and role == "control":
            self.watch = WorkerWatch(link.url, settings.spine.instance, names, workers.timeout_seconds,
                                     workers.start_grace_seconds, self._workers_changed)
        self.specs = child_specs(self.context, role)
        if link is not None and role == "stream":  # the last gap markers come from control as it stops
            self.specs = [replace(spec, before_stop=self._connections_closed) if spec.id == "recorder"
                          else spec for spec in self.specs]
        self.child_ids = tuple(spec.id for spec in self.specs)
        self.all_child_ids = all_child_ids(self.context)
        self.remote_ids = tuple(child for child in self.all_child_ids if child not in self.child_ids)
        self._heard: dict[str, Heard] = {}
        """Each other process's latest figures, by process (replaced whole: readers need no lock)."""
        self.supervisor_name = "supervisor" if role == "all" else f"supervisor.{role}"
        if restart_limit is None:
            self.supervisor = Supervisor(self.specs, clock=clock, name=self.supervisor_name)
        else:
            max_restarts, period_seconds = restart_limit
            self.supervisor = Supervisor(
                self.specs, clock=clock, max_restarts=max_restarts, period_seconds=period_seconds,
                name=self.supervisor_name,
            )
        self._alive_at_stop: tuple[str, ...] | None = None

    @property
    def directory(self) -> Directory:
        return self.supervisor.directory

    def start(self) -> ObserverSystem:
        """Start the tree; then tell each connection actor what the tick files say was streamed before this
        start (read first, so no tick recorded by this run counts as streamed before it)."""
        accounts = tuple(account.name for account in self.context.accounts)
        streams = self.role in ("all", "stream")
        downtime = downtime_found(self.context.paths, accounts, self.context.clock.now()) if streams else []
        if self.link is not None:
            self.directory.route_remote(self.link, self.remote_ids)
            self.link.start(self.directory)
        self.supervisor.start()
        if self.link is not None:
            self.link.serve(self.child_ids)
        if self.watch is not None:
            self.watch.start()
        for message in downtime:
            self.directory.tell(ws_actor_id(message.account), message)
        if self.publisher is not None:
            self._heartbeat.start()
        return self

    def stop(self) -> int:
        """Stop the tree in reverse start order (unless the supervisor already gave up); the exit code."""
        self._alive_at_stop = self.supervisor.directory.child_ids()
        if self.leases is not None:  # a stream worker: its last heartbeat says it stops cleanly
            self._worker_beat.stop()
            self.context.spine.publish(self.worker_heartbeat(stopping=True))
        code = self.supervisor.exit_code if self.supervisor.stopped.is_set() else self.supervisor.stop()
        self._heartbeat.stop()
        self._worker_beat.stop()
        if self.watch is not None:
            self.watch.stop()
        if self.leases is not None:
            self.leases.release()
        if self.link is not None:
            self.link.stop()
        if self.publisher is not None:
            self.publisher.stop()
        if isinstance(self.vault, TokenVault):
            self.vault.close()
        return code

    def summary(self) -> dict[str, Any]:
        alive = self._alive_at_stop if self._alive_at_stop is not None else self.directory.child_ids()
        summary = build_summary(self.metrics, self.supervisor, self.child_ids, alive)
        summary["spine_shed"] = self.metrics.count("spine_shed")
        if self.publisher is not None:
            summary.update(self.publisher.figures())
        return summary

    def hold_sessions(self, stop: threading.Event) -> bool:
        """A stream worker, before `start`: heartbeats from now on, then wait until this worker holds the
        session lease of every account it streams (`spine.workers.SessionLeases`); False when `stop` was set
        first. A lease taken away later stops the process (SIGTERM to itself, exit code 1)."""
        assert self.role == "stream" and self.link is not None
        settings = self.context.settings
        self.leases = SessionLeases(self.link.url, settings.spine, self.holder,
                                    tuple(account.name for account in settings.accounts),
                                    settings.workers.session_lease_seconds, self._lease_lost)
        self.leases.open()
        self._worker_beat.start()  # its first word already says which accounts are held and which wait
        return self.leases.acquire(stop)

    def abandon(self) -> None:
        """A stream worker stopped before it held its leases: end the heartbeats and the leases' connection
        (the tree never started)."""
        self._worker_beat.stop()
        if self.leases is not None:
            self.leases.release()
        if self.publisher is not None:
            self.publisher.stop()

    def _lease_lost(self, account: str) -> None:
        if self.lease_lost is None:
            self.lease_lost = account
            os.kill(os.getpid(), signal.SIGTERM)

    def worker_heartbeat(self, *, stopping: bool = False) -> WorkerHeartbeat:
        """This stream worker's `worker` message: each account's lease or, once held, its session state."""
        leases = self.leases.states() if self.leases is not None else {}
        snapshot = self.metrics.snapshot()
        sessions = {}
        for account in self.context.accounts:
            lease = leases.get(account.name, HELD)
            state = snapshot.get(f"ws_state.{account.name}", "starting")
            sessions[account.name] = str(state) if lease == HELD else lease
        return WorkerHeartbeat(at=self.context.clock.now(), worker=self.holder.worker, host=self.holder.host,
                               pid=self.holder.pid, sessions=sessions,
                               interval_seconds=self.context.settings.workers.heartbeat_seconds,
                               stopping=stopping)

    def _workers_changed(self, change: RosterChange, roster: Roster) -> None:
        """The control process: tell `slots` the accounts a live worker streams (the watch's thread)."""
        timeout = self.context.settings.workers.timeout_seconds
        for dead in change.dead:
            how = "stopped" if dead.stopping else "dead"
            logger.warning("stream worker {} on {} (pid {}) not heard for {:g} s: {} ({})", dead.worker,
                           dead.host, dead.pid, timeout, how, ", ".join(sorted(dead.sessions)))
        if change.unknown:
            logger.warning("stream workers stream accounts this control does not know: {}",
                           ", ".join(change.unknown))
        served = tuple(sorted(roster.served))
        stopped = tuple(sorted({name for dead in change.dead if dead.stopping for name in dead.sessions}))
        self.directory.tell("slots", AccountsServed(at=self.context.clock.now(), served=served,
                                                    dead=tuple(dead.worker for dead in change.dead),
                                                    stopped=stopped))

    def _connections_closed(self) -> None:
        """Stream process, stopping, between its connection actors and its recorder: once the control
        process has what the connections said as they closed, say so (`run.py` then stops control, whose
        gap actor marks the last gaps, as in one process) and wait until its markers are in: until its link
        says it stopped (or SETTLE_LIMIT_SECONDS, when control is not running). A worker of named accounts
        stops alone (the control goes on), so it waits only for the answers to its last messages."""
        assert self.link is not None
        self.link.flush()
        print(CONNECTIONS_CLOSED, flush=True)
        self.link.settle(None if self._named_accounts else "control")

    def _figures(self) -> dict[str, Any]:
        """What the stream process shares with the control process's dashboard and summary (`process`: which
        worker process says it, so several workers' figures add up instead of replacing each other)."""
        return {
            "process": f"{self.holder.worker}/{self.holder.pid}",
            "metrics": self.metrics.shareable(),
            "quotes": self.context.quotes.shareable(),
            "running": list(self.directory.child_ids()),
            "restarts": self.supervisor.restart_counts(),
        }

    def _absorb(self, figures: dict[str, Any]) -> None:
        """Another process's figures (the link's thread): kept by process, the metrics and the quote board
        get the sum of every process heard since the start (a dead worker's ticks were recorded too)."""
        heard = {**self._heard, str(figures.get("process", "")): Heard(figures, time.monotonic())}
        self._heard = heard
        merged = merged_figures(entry.figures for entry in sorted(heard.values(), key=lambda e: e.at))
        self.metrics.absorb(merged["metrics"])
        self.context.quotes.absorb(merged["quotes"])

    def running_ids(self) -> tuple[str, ...]:
        """Children running now: this process's, and each other process's as it said within
        REMOTE_FRESH_SECONDS."""
        now = time.monotonic()
        running = dict.fromkeys(self.directory.child_ids())
        for entry in self._heard.values():
            if now - entry.at < REMOTE_FRESH_SECONDS:
                running.update(dict.fromkeys(entry.figures.get("running", ())))
        return tuple(running)

    def restart_counts(self) -> dict[str, int]:
        """Restarts of every child, this process's and the others' (as last said; a child each worker runs,
        the recorder, adds up)."""
        remote: Counter[str] = Counter()
        for entry in self._heard.values():
            remote.update({child: int(count) for child, count in entry.figures.get("restarts", {}).items()})
        return {**remote, **self.supervisor.restart_counts()}

    def health(self) -> Health:
        """The `health` message of this moment."""
        snapshot = self.metrics.snapshot()
        alive = self.directory.child_ids()
        published = self.publisher.figures() if self.publisher is not None else {}
        return Health(
            at=self.context.clock.now(),
            uptime_seconds=round(time.monotonic() - self._started, 3),
            phase=str(snapshot["phase"]) if "phase" in snapshot else None,
            actors_alive=sum(1 for child in self.child_ids if child in alive),
            actors_total=len(self.child_ids),
            actors_down=tuple(child for child in self.child_ids if child not in alive),
            restarts=self.supervisor.restart_counts(),
            counters={name: self.metrics.count(name) for name in COUNTERS},
            published=published.get("spine_published", 0),
            dropped=published.get("spine_dropped", 0),
        )
