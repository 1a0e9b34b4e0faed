"""More machines, measured: the standby control's takeover and a stream worker's reassignment after SIGKILLs,
the ticks lost outside recorded gaps over those kills, and how the spine and the slot allocation grow from 1
to 10 accounts.

    python -m tools.bench --only failover scaling [--quick]

`failover`: one nats-server, the KIS simulator in this process (real time, from 10:00), two
`run.py --role control --accounts 2` processes (each its own data dir, as on two hosts, sharing the token
cache as a network mount would) and two `run.py --role stream --accounts simN` workers.

Each control kill SIGKILLs the active control and times the kill -> the standby's `observer: control ready`;
the killed one is started again on its host as the next standby. The baseline is the lease's time to live
(`spine.control_lease_seconds`), the floor of a takeover: the dead control's lease must expire first. The
detail splits each takeover into the wait for the lease (kill -> `control active`) and the activation, and
gives the first control's cold start (its start -> `control ready`).

Each worker kill SIGKILLs the worker streaming the most symbols and times the kill -> the first tick of one
of its symbols on the other worker's key, seen by a subscriber to the public ticks on NATS; the killed worker
is started again, and the next kill waits until no symbol ticked on both keys for 5 s (none is moving back to
it). The baseline is a worker's cold start (its start -> its first tick on NATS).

At the end every process is stopped and the simulator's sent log is reconciled (`tools.reconcile`) with the
tick files of both workers and the gap files of both controls, merged into one data tree: ticks lost outside
recorded gaps must be 0. The simulator's open sessions per app key are sampled after every takeover,
reassignment and restart: never more than one.

`scaling`: for 1..10 accounts, ticks/s through the stream side's publisher onto NATS to a subscriber in
another process (`tools.bench.spine.publisher_rate`, ticks spread over the accounts' 41 symbols each), and the
p50 of one slot allocation of 2,500 candidates over the accounts' capacity; the baseline of each is its
1-account figure.
"""

from __future__ import annotations

import asyncio
import gc
import json
import random
import shutil
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

import nats

from config.settings import SpineSettings
from core.models import Candidate, TriggerKind
from core.settings import SlotSettings
from core.slots import ProviderAccount, SlotState, allocate_slots
from runtime.latency import percentile
from runtime.paths import DataPaths
from spine.server import NatsServer
from spine.subjects import Subjects
from tools.bench.harness import BenchError
from tools.bench.report import Result
from tools.bench.server import BENCH_START
from tools.bench.spine import TARGET_TICKS_PER_SECOND, publisher_rate, tick_messages
from tools.kis_sim.sent_log import app_key_hash
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.reconcile import Reconciliation, reconcile_run
from tools.roles import Role, role_argv, wait_for

LIMIT_SECONDS = 15.0
"""DESIGN.md section 8: control failover (standby) < 15 s; worker reassignment < 15 s."""
INSTANCE = "main"
ACCOUNTS = ("sim1", "sim2")
START_SECONDS = 180.0
"""A process's start on a loaded machine (imports, tokens, the first scan)."""
WAIT_SECONDS = 60.0
"""Longest wait for a takeover or a reassignment before the kill counts as failed."""
RECENT_SECONDS = 5.0
"""A worker's symbols are the ones that ticked on its key this recently."""
HEARD_SECONDS = 6.0
"""After a worker says it is ready, this long for the control to hear its heartbeats."""
SLOTS_PER_ACCOUNT = 41
ALLOCATION_CANDIDATES = 2_500
ALLOCATION_WARM_UP = 5


class TickWatch:
    """A subscriber to the public ticks on NATS, in a thread of its own: (monotonic, account, symbol)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seen: list[tuple[float, str, str]] = []
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="tick-watch",
                                        daemon=True)

    def start(self) -> TickWatch:
        self._thread.start()
        if not self._ready.wait(20):
            raise BenchError("the tick subscriber could not connect to NATS")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    async def _main(self) -> None:
        self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
        nc = await nats.connect(self.url)

        async def on_tick(message: nats.aio.msg.Msg) -> None:
            tick = json.loads(message.data)
            self.seen.append((time.monotonic(), tick["account"], tick["symbol"]))

        await nc.subscribe(Subjects(INSTANCE).ticks(), cb=on_tick, pending_msgs_limit=-1,
                           pending_bytes_limit=-1)
        await nc.flush()
        self._ready.set()
        await self._stop.wait()
        await nc.close()

    def symbols(self, account: str, since: float) -> set[str]:
        return {symbol for at, name, symbol in list(self.seen) if name == account and at >= since}

    def first(self, account: str, symbols: set[str], since: float) -> float | None:
        """When the first tick of one of `symbols` came on `account` after `since` (monotonic)."""
        return next((at for at, name, symbol in list(self.seen)
                     if at >= since and name == account and symbol in symbols), None)


@dataclass
class Cluster:
    """The processes of the failover run, each kept for the stop at the end."""

    root: Path
    sim: KisSimulator
    nats_url: str
    roles: list[Role] = field(default_factory=list)
    most_sessions: int = 0
    """The most WebSocket sessions seen open at once on one app key (KIS allows one)."""

    def sample_sessions(self) -> None:
        keys = [self.sim.accounts.app_key_for_approval(key) for key in self.sim.ws.session_approval_keys()]
        per_key = Counter(key for key in keys if key is not None)
        self.most_sessions = max(self.most_sessions, *per_key.values(), 0)

    def control(self, host: str) -> Role:
        argv = role_argv(self.sim, self.nats_url, "control", self.root / host, self.root / f"logs-{host}",
                         "--accounts", str(len(ACCOUNTS)), "--http", "off")
        return self._start(argv, host)

    def worker(self, account: str) -> Role:
        name = f"worker-{account}"
        argv = role_argv(self.sim, self.nats_url, "stream", self.root / name, self.root / f"logs-{name}",
                         "--accounts", account, "--http", "off")
        return self._start(argv, name)

    def _start(self, argv: list[str], name: str) -> Role:
        role = Role(argv, self.root / f"{name}-{len(self.roles)}.out")
        self.roles.append(role)
        return role

    def stop(self) -> None:
        """The workers first, while a control still records what their closing connections say."""
        for role in sorted(self.roles, key=lambda role: "--role stream" not in " ".join(role.process.args)):
            role.stop()


def failover(root: Path, *, control_kills: int, worker_kills: int) -> list[Result]:
    root.mkdir(parents=True, exist_ok=True)
    config = SimConfig(seed=7, date=date(2024, 3, 4), start=time_of_day(10, 0), speed=1.0, n_symbols=200,
                       pingpong_interval=0.5, sent_log=root / "sent.jsonl")
    server = NatsServer(root / "nats", log_file=root / "nats-server.log").start()
    sim = KisSimulator(config)
    sim.start()
    cluster = Cluster(root, sim, server.url)
    watch = TickWatch(server.url).start()
    try:
        takeovers, leases, control_cold = _control_kills(cluster, control_kills)
        reassignments, worker_cold, detail = _worker_kills(cluster, watch, worker_kills)
    finally:
        watch.stop()
        cluster.stop()
        sim.stop()
        server.stop()
    reconciliation = _reconcile(root, config)
    ttl = SpineSettings().control_lease_seconds
    split = (f"lease taken p50 {percentile(sorted(leases), 50):.1f} s after the kill, then ready p50 "
             f"{percentile(sorted(t - w for t, w in zip(takeovers, leases, strict=True)), 50):.1f} s later; "
             f"a control's cold start {control_cold:.1f} s; baseline: the lease's time to live")
    return [
        _percentile_result("control_failover", takeovers, 50, ttl, split),
        _percentile_result("control_failover", takeovers, 99, ttl, split),
        _percentile_result("worker_reassignment", reassignments, 50, worker_cold,
                           f"{detail}; baseline: a worker's cold start to its first tick"),
        _percentile_result("worker_reassignment", reassignments, 99, worker_cold,
                           f"{detail}; baseline: a worker's cold start to its first tick"),
        Result("failover_ticks_lost_outside_gaps", float(reconciliation.ticks_lost), "ticks", "0",
               float(reconciliation.sim_ticks_sent), reconciliation.ticks_lost == 0,
               f"over {control_kills} control and {worker_kills} worker kills; baseline: ticks the simulator "
               f"sent; {reconciliation.ticks_recorded:,} recorded, "
               f"{reconciliation.ticks_in_recovered_gaps:,} in recovered and "
               f"{reconciliation.ticks_in_marked_gaps:,} in marked gaps"
               + f"; at most {cluster.most_sessions} session(s) open on one app key at the samples"
               + (f"; lost e.g. {', '.join(reconciliation.lost_sample[:3])}" if reconciliation.lost_sample
                  else "")),
    ]


def _control_kills(cluster: Cluster, kills: int) -> tuple[list[float], list[float], float]:
    """Kill the active control `kills` times: the takeover times (kill -> ready) and lease waits (kill -> the
    lease taken) in s, and the first control's cold start."""
    started = time.monotonic()
    active = cluster.control("host-a")
    ready = active.wait_line("observer: control ready", START_SECONDS, "control A ready")
    cold = ready - started
    # The token cache is the one directory the hosts share: the new active control reads the valid tokens
    # there instead of asking KIS again within the minute it allows one per key.
    (cluster.root / "host-b" / "sim").mkdir(parents=True)
    (cluster.root / "host-b" / "sim" / "tokens").symlink_to(cluster.root / "host-a" / "sim" / "tokens",
                                                            target_is_directory=True)
    standby = cluster.control("host-b")
    for account in ACCOUNTS:
        worker = cluster.worker(account)
        worker.wait_line("observer: stream ready", START_SECONDS, f"{account} ready")
    standby.wait_line("observer: control standby", START_SECONDS, "control B standing by")
    hosts = {id(active): "host-a", id(standby): "host-b"}
    takeovers, leases = [], []
    for _ in range(kills):
        killed = active.kill()
        took = standby.wait_line("observer: control ready", WAIT_SECONDS, "the standby control active")
        takeovers.append(took - killed)
        cluster.sample_sessions()
        leases.append(standby.wait_line("observer: control active", 1, "the standby's lease") - killed)
        again = cluster.control(hosts[id(active)])
        hosts[id(again)] = hosts[id(active)]
        again.wait_line("observer: control standby", START_SECONDS, "the restarted control standing by")
        cluster.sample_sessions()
        active, standby = standby, again
    return takeovers, leases, cold


def _worker_kills(cluster: Cluster, watch: TickWatch, kills: int) -> tuple[list[float], float, str]:
    """Kill the worker streaming the most symbols `kills` times: kill -> the first tick of one of its symbols
    on the other worker's key, and a worker's cold start (start -> its first tick)."""
    workers = {account: next(role for role in cluster.roles if f"--accounts {account}" in
                             " ".join(role.process.args)) for account in ACCOUNTS}
    wait_for(lambda: all(watch.symbols(account, 0.0) for account in ACCOUNTS), START_SECONDS,
             "ticks on both workers' keys")
    cold = max(_first_tick(watch, account) - workers[account].started for account in ACCOUNTS)
    times, moved_counts = [], []
    for _ in range(kills):
        victim, other, moved = wait_for(lambda: _settled(watch), WAIT_SECONDS, "the symbols settled")
        killed = workers[victim].kill()
        moved_at = wait_for(lambda other=other, moved=moved, killed=killed: watch.first(other, moved, killed),
                            WAIT_SECONDS,
                            f"a symbol of {victim} ticking on {other}")
        times.append(moved_at - killed)
        cluster.sample_sessions()
        moved_counts.append(len(moved))
        restarted = cluster.worker(victim)
        workers[victim] = restarted
        restarted.wait_line("observer: stream ready", START_SECONDS, f"{victim} restarted")
        time.sleep(HEARD_SECONDS)
        cluster.sample_sessions()
    detail = f"symbols on the killed worker's key: {', '.join(str(count) for count in moved_counts)}"
    return times, cold, detail


def _settled(watch: TickWatch) -> tuple[str, str, set[str]] | None:
    """The worker streaming the most symbols, the other one and its symbols, once no symbol ticked on both
    keys within `RECENT_SECONDS` (none is moving between them); None before."""
    now = time.monotonic()
    held = {account: watch.symbols(account, now - RECENT_SECONDS) for account in ACCOUNTS}
    victim = max(ACCOUNTS, key=lambda account: len(held[account]))
    other = next(account for account in ACCOUNTS if account != victim)
    if not held[victim] or held[victim] & held[other]:
        return None
    return victim, other, held[victim]


def _first_tick(watch: TickWatch, account: str) -> float:
    return next(at for at, name, _ in list(watch.seen) if name == account)


def _percentile_result(name: str, samples: list[float], q: int, baseline: float, what: str) -> Result:
    ordered = sorted(samples)
    figure = percentile(ordered, q)
    return Result(f"{name}_p{q}", figure, "s", f"< {LIMIT_SECONDS:g}", baseline, figure < LIMIT_SECONDS,
                  f"over {len(samples)} SIGKILLs (each: {', '.join(f'{s:.1f}' for s in samples)} s); {what}")


def _reconcile(root: Path, config: SimConfig) -> Reconciliation:
    """The sent log against every data dir's tick and gap files, appended into one tree (JSONL lines)."""
    merged = root / "merged"
    for data in sorted(path for path in root.iterdir() if (path / "observer").is_dir()):
        for source in sorted((data / "observer").rglob("*.jsonl")):
            relative = source.relative_to(data)
            if relative.parts[1] not in ("scalp", "system"):
                continue
            target = merged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as reading, target.open("ab") as writing:
                shutil.copyfileobj(reading, writing)
    assert config.sent_log is not None
    accounts = {app_key_hash(f"SIM-APPKEY-{number:04d}-observer"): f"sim{number}"
                for number in range(1, len(ACCOUNTS) + 1)}
    return reconcile_run(DataPaths(merged), config.sent_log, accounts)


def scaling(root: Path, *, accounts: tuple[int, ...], ticks: int, allocation_runs: int) -> list[Result]:
    """Spine ticks/s and allocation p50 at each number of accounts, against the 1-account figures."""
    results: list[Result] = []
    rates: dict[int, float] = {}
    with NatsServer(root / "nats", log_file=root / "nats-server.log") as server:
        for count in accounts:
            rate, received, dropped = publisher_rate(server, tick_messages(ticks, accounts=count), 60.0)
            rates[count] = rate
            results.append(Result(
                f"spine_ticks_{count}_accounts", rate, "ticks/s", f">= {TARGET_TICKS_PER_SECOND:,}",
                rates[accounts[0]], rate >= TARGET_TICKS_PER_SECOND and received == ticks,
                f"{received:,} of {ticks:,} ticks over {count * SLOTS_PER_ACCOUNT} symbols of {count} "
                f"account(s) received by an outside subscriber ({dropped} dropped); baseline: "
                f"{accounts[0]} account(s)"))
    allocations = {count: _allocation_p50(count, allocation_runs) for count in accounts}
    for count, p50 in allocations.items():
        results.append(Result(
            f"allocation_{count}_accounts_p50", p50 * 1000, "ms", "< 50", allocations[accounts[0]] * 1000,
            p50 * 1000 < 50,
            f"{ALLOCATION_CANDIDATES:,} candidates over {count} x {SLOTS_PER_ACCOUNT} slots, p50 of "
            f"{allocation_runs} rebalances; baseline: {accounts[0]} account(s)"))
    return results


def _allocation_p50(accounts: int, runs: int) -> float:
    """p50 wall time (s) of one rebalance of fresh candidates over `accounts` accounts' slots."""
    settings = SlotSettings()
    providers = [ProviderAccount(f"sim{i}", SLOTS_PER_ACCOUNT) for i in range(1, accounts + 1)]
    rng = random.Random(5)
    names = [f"{100000 + i:06d}" for i in range(4000)]
    kinds = list(TriggerKind)
    now: datetime = BENCH_START
    state = SlotState.initial(providers, settings)
    timings = []
    for number in range(ALLOCATION_WARM_UP + runs):
        now += timedelta(seconds=settings.min_dwell_seconds)
        ranked = [Candidate(symbol=symbol, score=rng.uniform(1, 30), market_cap=rng.uniform(1e10, 1e13),
                            trigger=rng.choice(kinds), strength=rng.random(), detected_at=now)
                  for symbol in rng.sample(names, ALLOCATION_CANDIDATES)]
        gc.collect()
        started = time.perf_counter()
        state = allocate_slots(state, ranked, (), now, settings, providers).state
        if number >= ALLOCATION_WARM_UP:
            timings.append(time.perf_counter() - started)
    return percentile(sorted(timings), 50)
