"""UniverseActor (id `universe`): the day's frozen universe and each symbol's daily baselines.

At `DayEventFired(UNIVERSE_BUILD)` (05:00), or at start on a trading day, a worker thread (so the mailbox
stays free for queries and a stop) makes the day's universe:

1. today's snapshot from `UniverseStore` if it exists (a day's universe never changes once made);
   otherwise the KOSPI/KOSDAQ master files (`UniverseSettings.master_base_url`; default KIS's download
   host, or `{rest_url}/master` on the simulator) parsed by `kis.master`, stocks only (group code ST),
   filtered and sorted by `core.universe.build_universe`;
2. if that fails: the latest earlier snapshot (`fallback=True`) and a `SystemAlert`;
3. the baselines (`core.baselines`) from each symbol's daily bars, fetched with one thread per account
   (each inside its own key's rate limit) and cached on disk for the day
   (`{state_dir}/baselines/YYYYMMDD.jsonl`, appended as they come), so a restart fetches only what is
   missing; progress on a `rich` bar when stdout is a terminal, log lines every 10 % otherwise;
4. a newly built snapshot is stored with each symbol's `avg_volume_20d` (seed format), older ones pruned
   to `UniverseSettings.cache_days`: one file per market, which this actor reads back, and the whole day's
   universe as `{YYYYMMDD}_kr_stocks.json` (`metadata.market = "kr_stocks"`, the seed's snapshot; written
   too when the day's market files exist without it, never for a fallback day);
5. `UniverseReady` (profiles best market cap first) to scanner, triggers, slots, gaps and recorder.

Baselines whose daily bars failed (transient REST errors) are fetched again in the background, on their
own thread through the same clients (so inside each key's rate limit, shared with the scan), after
`BASELINE_RETRY_SECONDS` (real time: the failures are the network's and the gateway's), until every
symbol has one, the next day's build starts or the actor stops. Each round that completes some sends
`UniverseReady` again, the same universe with those profiles completed; the day's snapshot file is not
rewritten (its `avg_volume_20d` stays as first built; the day's cache has the completed baselines).

| message | effect |
|---|---|
| DayEventFired(UNIVERSE_BUILD) | build the event's day (skipped if that day is already current) |
| CurrentUniverse (ask) | the current `UniverseReady`, None while the first build runs |
| (retry thread) baselines completed | profiles completed; `UniverseReady` again to every recipient |

Metrics: gauges `universe_symbols`, `universe_day`, `universe_fallback`, `baselines_missing`; counter
`baselines_fetched`.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from itertools import chain
from pathlib import Path
from typing import Any

import pykka
from pydantic import ValidationError
from rich.errors import LiveError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from core.baselines import EMPTY, DailyBaseline, baseline_from_record, daily_baseline, lookback_start
from core.calendar import is_trading_day, previous_trading_day
from core.schedule import DayEvent
from core.universe import (
    UniverseBuildError,
    UniverseEntry,
    UniverseSnapshot,
    build_universe,
    days_to_prune,
    format_day,
    parse_day,
)
from kis.errors import KisError
from kis.master import MASTER_FILE_NAMES, MASTER_URLS, Market, MasterFileError, fetch_master
from kis.models import MasterRecord
from messages.alerts import SystemAlert
from messages.market import SymbolProfile, UniverseReady
from messages.schedule import DayEventFired
from messages.universe import CurrentUniverse
from runtime.jsonl import JsonlWriter, read_jsonl
from runtime.universe_store import KR_STOCKS, UniverseFileError, UniverseStore, combine_markets

RECIPIENTS = ("scanner", "triggers", "slots", "gaps", "recorder")
STOCK_GROUP = "ST"
BASELINE_FLUSH_EVERY = 50
STOP_JOIN_SECONDS = 2.0
BASELINE_RETRY_SECONDS = (30.0, 60.0, 120.0, 300.0, 600.0)
"""Real seconds before each retry round of the missing baselines; the last repeats until none is missing."""


class BuildStopped(Exception):
    """The actor is stopping; the build thread gives up without announcing anything."""


@dataclass(frozen=True, slots=True)
class _BuildFinished:
    """Internal: the build thread's result (None: no universe at all for `day`)."""

    day: date
    ready: UniverseReady | None
    missing: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _BaselinesRetried:
    """Internal: baselines a retry round fetched for `day`."""

    day: date
    baselines: dict[str, DailyBaseline]


class UniverseActor(ObserverActor):
    def __init__(
        self, name: str, directory: Directory, context: ObserverContext, *, progress: bool | None = None,
        baseline_retry_seconds: tuple[float, ...] = BASELINE_RETRY_SECONDS,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self.progress = sys.stdout.isatty() if progress is None else progress
        self.baseline_retry_seconds = baseline_retry_seconds
        self._current: UniverseReady | None = None
        self._worker: threading.Thread | None = None
        self._building: date | None = None
        self._pending: date | None = None
        self._stopping = threading.Event()
        self._retry: _BaselineRetry | None = None

    def on_start(self) -> None:
        today = self.context.clock.now().date()
        if is_trading_day(today):
            self._build(today, "start")
        else:
            self.log.info("{} is not a trading day; the universe waits for the next 05:00 build", today)

    def on_stop(self) -> None:
        self._stopping.set()
        retry = self._end_retry()
        if self._worker is not None:
            self._worker.join(STOP_JOIN_SECONDS)
        if retry is not None:
            retry.join(STOP_JOIN_SECONDS)

    def on_failure(self, *_exc_info: object) -> None:
        self._stopping.set()
        self._end_retry()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, CurrentUniverse):
            return self._current
        if isinstance(message, DayEventFired) and message.event == DayEvent.UNIVERSE_BUILD:
            self._build(message.at.date(), "scheduled")
        elif isinstance(message, _BuildFinished):
            self._finish(message)
        elif isinstance(message, _BaselinesRetried):
            self._complete_baselines(message)
        return None

    def _build(self, day: date, reason: str) -> None:
        current = self._current
        if current is not None and current.day == day and not current.fallback:
            self.log.info("universe of {} is already current; {} build skipped", day, reason)
            return
        if self._building is not None:
            if self._building != day:
                self._pending = day
            return
        self._building = day
        self.log.info("building the universe of {} ({})", day, reason)
        retry = self._end_retry()
        self._worker = threading.Thread(target=self._run, args=(day, retry), name=f"{self.name}-build",
                                        daemon=True)
        self._worker.start()

    def _run(self, day: date, retry: _BaselineRetry | None) -> None:
        """The build thread: everything slow happens here; the result goes back as a message. A retry of
        the baselines still ending (within one call) finishes before the build writes the cache."""
        if retry is not None:
            retry.join()
        builder = UniverseBuilder(self.context, self._stopping, self.progress, self._alert, self.log)
        try:
            ready = builder.build(day)
        except BuildStopped:
            return
        except Exception as error:
            self.log.exception("universe build of {} failed", day)
            self._alert(f"universe.{format_day(day)}", f"universe of {day}: build failed ({error})")
            ready = None
        with contextlib.suppress(pykka.ActorDeadError):
            self.actor_ref.tell(_BuildFinished(day=day, ready=ready, missing=builder.missing))

    def _finish(self, result: _BuildFinished) -> None:
        self._building = None
        ready = result.ready
        if ready is not None:
            self._current = ready
            metrics = self.context.metrics
            metrics.set("universe_symbols", len(ready.profiles))
            metrics.set("universe_day", ready.day.isoformat())
            metrics.set("universe_fallback", ready.fallback)
            metrics.set("universe_built_at", self.context.clock.now())
            for peer in RECIPIENTS:
                self.directory.tell(peer, ready)
            self.log.info(
                "universe of {} ready: {} symbols{}", ready.day, len(ready.profiles),
                " (fallback)" if ready.fallback else "",
            )
        pending, self._pending = self._pending, None
        if pending is not None:
            self._build(pending, "queued")
        elif ready is not None and result.missing:
            self._retry = _BaselineRetry(self.context, self.actor_ref, result.day, result.missing,
                                         self.baseline_retry_seconds, self.log)
            self._retry.start()

    def _complete_baselines(self, result: _BaselinesRetried) -> None:
        current = self._current
        if current is None or current.day != result.day:
            return
        now = self.context.clock.now()
        profiles = tuple(_with_baseline(profile, result.baselines.get(profile.symbol), now)
                         for profile in current.profiles)
        self._current = ready = current.model_copy(update={"at": now, "profiles": profiles})
        for peer in RECIPIENTS:
            self.directory.tell(peer, ready)
        self.log.info("universe of {}: {} more baselines, told again", ready.day, len(result.baselines))

    def _end_retry(self) -> _BaselineRetry | None:
        """Ask the baselines' retry to end (within one call); returns it, to be joined off this thread."""
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
        return retry

    def _alert(self, key: str, text: str) -> None:
        self.log.warning(text)
        self.directory.tell("notifier", SystemAlert(at=self.context.clock.now(), key=key, text=text))


class UniverseBuilder:
    """The slow part, run on the build thread: snapshot (load, build or fall back), baselines, profiles."""

    def __init__(
        self,
        context: ObserverContext,
        stopping: threading.Event,
        progress: bool,
        alert: Callable[[str, str], None],
        log: Any,
    ) -> None:
        self.context = context
        self.settings = context.settings.universe
        self.store = UniverseStore(
            context.paths.universe_dir, cache_days=self.settings.cache_days, replica=context.state_replica
        )
        self.stopping = stopping
        self.progress = progress
        self.alert = alert
        self.log = log
        self.missing: tuple[str, ...] = ()
        """The symbols whose baselines could not be fetched (after `build`)."""

    def build(self, day: date) -> UniverseReady | None:
        snapshots, fresh, fallback = self._snapshots(day)
        if not snapshots:
            return None
        symbols = [symbol.code for symbol in chain.from_iterable(s.symbols for s in snapshots)]
        baselines = self._baselines(day, symbols)
        self.context.metrics.set("baselines_missing", len(self.missing))
        if fresh:
            snapshots = [self.store.save(_with_average_volume(s, baselines)) for s in snapshots]
            for market in (*self.settings.markets, KR_STOCKS):
                self.store.prune(market)
        if not fallback:
            self.store.save(combine_markets(snapshots))
        now = self.context.clock.now()
        profiles = _profiles(snapshots, baselines, now)
        return UniverseReady(at=now, day=day, profiles=profiles, fallback=fallback)

    # --- the snapshot ---------------------------------------------------------------------------------

    def _snapshots(self, day: date) -> tuple[list[UniverseSnapshot], bool, bool]:
        """(snapshots, newly built, fallback)."""
        markets = self.settings.markets
        with contextlib.suppress(UniverseFileError):
            return [self.store.load(day, market) for market in markets], False, False
        try:
            entries = list(chain.from_iterable(self._entries(market) for market in markets))
            built = build_universe(entries, day, self.settings, self.context.clock.now())
        except (MasterFileError, UniverseBuildError) as error:
            return self._fallback(day, str(error))
        for warning in built.warnings:
            self.log.warning(warning)
        self.log.info("universe of {}: {} symbols from the master files", day, built.symbol_count)
        return list(built.snapshots), True, False

    def _entries(self, market: Market) -> list[UniverseEntry]:
        self._check_stop()
        master = fetch_master(market, url=self._master_url(market))
        if master.rejected:
            rejected = master.rejected
            self.log.warning("{} master: {} lines rejected, first: {}", market, len(rejected), rejected[0])
        entries = []
        for record in master.records:
            if record.group_code != STOCK_GROUP:
                continue
            entry = _entry(record)
            if entry is not None:
                entries.append(entry)
        return entries

    def _master_url(self, market: Market) -> str:
        base = self.settings.master_base_url
        if base is None and self.context.rest_url is not None:
            base = f"{self.context.rest_url.rstrip('/')}/master"
        return f"{base.rstrip('/')}/{MASTER_FILE_NAMES[market]}.zip" if base else MASTER_URLS[market]

    def _fallback(self, day: date, why: str) -> tuple[list[UniverseSnapshot], bool, bool]:
        found = [self.store.fallback(day, market) for market in self.settings.markets]
        snapshots = [fallback.snapshot for fallback in found if fallback is not None]
        key = f"universe.{format_day(day)}"
        if not snapshots:
            self.alert(key, f"universe of {day} could not be built ({why}) and no earlier snapshot exists")
            return [], False, False
        used = ", ".join(sorted({s.metadata.date for s in snapshots}))
        self.alert(key, f"universe of {day} could not be built ({why}); using the snapshot of {used}")
        return snapshots, False, True

    # --- the baselines --------------------------------------------------------------------------------

    def _baselines(self, day: date, symbols: Sequence[str]) -> dict[str, DailyBaseline]:
        path = baseline_cache(self.context, day)
        baselines = _read_baselines(path, set(symbols))
        missing = [symbol for symbol in symbols if symbol not in baselines]
        self._prune_baselines(path.parent, day)
        if not missing:
            self.log.info("baselines of {} symbols from the day's cache", len(baselines))
            return baselines
        self.log.info("fetching daily bars for {} symbols ({} cached)", len(missing), len(baselines))
        fetch = _BaselineFetch(self.context, day, missing, path, self.stopping, self.log)
        with _FetchProgress(len(missing), self.progress, self.log) as progress:
            baselines |= fetch.run(progress.advance)
        self._check_stop()
        self.missing = tuple(symbol for symbol in missing if symbol not in baselines)
        if self.missing:
            self.log.warning("{} symbols lack baselines; retried in the background", len(self.missing))
        return baselines

    def _prune_baselines(self, directory: Path, day: date) -> None:
        if not directory.is_dir():
            return
        files = {}
        for path in directory.glob("*.jsonl"):
            with contextlib.suppress(ValueError):
                files[parse_day(path.stem)] = path
        for old in days_to_prune(files, self.settings.cache_days):
            if old != day:
                files[old].unlink(missing_ok=True)

    def _check_stop(self) -> None:
        if self.stopping.is_set():
            raise BuildStopped()


class _BaselineFetch:
    """Daily bars for `symbols`, one thread per account; each result is appended to the day's cache."""

    def __init__(
        self, context: ObserverContext, day: date, symbols: Sequence[str], path: Path,
        stopping: threading.Event, log: Any,
    ) -> None:
        self.context = context
        self.day = day
        self.end = previous_trading_day(day)
        self.start = lookback_start(day)
        self.path = path
        self.stopping = stopping
        self.log = log
        self._queue = list(reversed(symbols))
        self._lock = threading.Lock()
        self._results: dict[str, DailyBaseline] = {}
        self.failed = 0

    def run(self, advance: Callable[[], None]) -> dict[str, DailyBaseline]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with JsonlWriter(self.path) as writer:
            workers = [
                threading.Thread(target=self._work, args=(account.name, writer, advance), daemon=True,
                                 name=f"baselines-{account.name}")
                for account in self.context.accounts
            ]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()
        return self._results

    def _next(self) -> str | None:
        with self._lock:
            return self._queue.pop() if self._queue and not self.stopping.is_set() else None

    def _work(self, account: str, writer: JsonlWriter, advance: Callable[[], None]) -> None:
        with self.context.rest_client(account) as client:
            while (symbol := self._next()) is not None:
                try:
                    bars = client.daily_bars(symbol, self.start, self.end)
                except KisError as error:
                    with self._lock:
                        self.failed += 1
                        if self.failed <= 3:
                            self.log.warning("daily bars of {}: {}", symbol, error)
                    advance()
                    continue
                baseline = daily_baseline(bars, before=self.day)
                with self._lock:
                    self._results[symbol] = baseline
                    writer.write(baseline.to_record(symbol))
                    if len(self._results) % BASELINE_FLUSH_EVERY == 0:
                        writer.flush()
                self.context.metrics.inc("baselines_fetched")
                advance()


class _BaselineRetry:
    """The background retry of the baselines a build missed: rounds after `delays` (real seconds, the last
    repeated) until none is missing or `cancel`; each round's results go to the actor as a message."""

    def __init__(
        self, context: ObserverContext, actor: pykka.ActorRef[Any], day: date, missing: Sequence[str],
        delays: tuple[float, ...], log: Any,
    ) -> None:
        self.context = context
        self.actor = actor
        self.day = day
        self.missing = list(missing)
        self.delays = delays or BASELINE_RETRY_SECONDS
        self.log = log
        self._cancelled = threading.Event()
        self._thread = threading.Thread(target=self._run, name="baselines-retry", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._cancelled.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        rounds = 0
        while self.missing:
            delay = self.delays[min(rounds, len(self.delays) - 1)]
            if self._cancelled.wait(delay):
                return
            rounds += 1
            path = baseline_cache(self.context, self.day)
            fetch = _BaselineFetch(self.context, self.day, self.missing, path, self._cancelled, self.log)
            fetched = fetch.run(lambda: None)
            if self._cancelled.is_set():
                return
            self.missing = [symbol for symbol in self.missing if symbol not in fetched]
            self.context.metrics.set("baselines_missing", len(self.missing))
            self.log.info("baselines retry {}: {} fetched, {} still missing{}", rounds, len(fetched),
                          len(self.missing), "" if self.missing else "; the day's baselines are complete")
            if fetched:
                with contextlib.suppress(pykka.ActorDeadError):
                    self.actor.tell(_BaselinesRetried(self.day, fetched))


class _FetchProgress:
    """A `rich` progress bar on a terminal, else a log line at every 10 % (thread-safe `advance`)."""

    def __init__(self, total: int, use_rich: bool, log: Any) -> None:
        self.total = total
        self.log = log
        self._done = 0
        self._next_report = 10
        self._lock = threading.Lock()
        self._bar: Progress | None = None
        if use_rich:
            bar = Progress(
                TextColumn("daily bars"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                transient=True,
            )
            try:
                bar.start()
            except LiveError:  # another live display (the status view) owns the terminal
                return
            self._bar = bar
            self._task = bar.add_task("daily bars", total=total)

    def __enter__(self) -> _FetchProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
        self.log.info("daily bars: {} of {} symbols done", self._done, self.total)

    def advance(self) -> None:
        with self._lock:
            self._done += 1
            percent = self._done * 100 // max(self.total, 1)
            report = self._bar is None and percent >= self._next_report and self._done < self.total
            if report:
                self._next_report = percent // 10 * 10 + 10
        if self._bar is not None:
            self._bar.advance(self._task)
        elif report:
            self.log.info("daily bars: {} of {} symbols ({} %)", self._done, self.total, percent)


def _entry(record: MasterRecord) -> UniverseEntry | None:
    try:
        return UniverseEntry(
            code=record.code, name=record.name, market=record.market, prev_close=record.base_price,
            market_cap=record.market_cap or None, halted=record.halted, managed=record.managed,
        )
    except ValidationError:
        return None


def baseline_cache(context: ObserverContext, day: date) -> Path:
    """The day's baselines, one JSON line per symbol, appended as they are fetched."""
    return context.paths.state_dir / "baselines" / f"{format_day(day)}.jsonl"


def _with_baseline(profile: SymbolProfile, baseline: DailyBaseline | None, at: datetime) -> SymbolProfile:
    if baseline is None:
        return profile.model_copy(update={"at": at})
    return profile.model_copy(update={
        "at": at, "avg_volume_20d": baseline.avg_volume_20d or profile.avg_volume_20d,
        "avg_turnover_20d": baseline.avg_turnover_20d, "atr_14d": baseline.atr_14d, "ma_20d": baseline.ma_20d,
    })


def _read_baselines(path: Path, wanted: set[str]) -> dict[str, DailyBaseline]:
    if not path.exists():
        return {}
    baselines = {}
    for record in read_jsonl(path).records:
        try:
            symbol, baseline = baseline_from_record(record)
        except ValueError:
            continue
        if symbol in wanted:
            baselines[symbol] = baseline
    return baselines


def _with_average_volume(snapshot: UniverseSnapshot, baselines: dict[str, DailyBaseline]) -> UniverseSnapshot:
    symbols = tuple(
        symbol.model_copy(update={"avg_volume_20d": round(baselines.get(symbol.code, EMPTY).avg_volume_20d)})
        for symbol in snapshot.symbols
    )
    return snapshot.model_copy(update={"symbols": symbols})


def _profiles(
    snapshots: Sequence[UniverseSnapshot], baselines: dict[str, DailyBaseline], at: datetime
) -> tuple[SymbolProfile, ...]:
    """Every symbol of every market, best market cap first (ties by code)."""
    rows = sorted(
        ((snapshot.market, symbol) for snapshot in snapshots for symbol in snapshot.symbols),
        key=lambda row: (-row[1].market_cap, row[1].code),
    )
    profiles = []
    for market, symbol in rows:
        baseline = baselines.get(symbol.code, EMPTY)
        profiles.append(
            SymbolProfile(
                at=at, symbol=symbol.code, name=symbol.name, market=market,
                market_cap=symbol.market_cap or None, prev_close=symbol.prev_close,
                avg_volume_20d=baseline.avg_volume_20d or float(symbol.avg_volume_20d),
                avg_turnover_20d=baseline.avg_turnover_20d, atr_14d=baseline.atr_14d, ma_20d=baseline.ma_20d,
            )
        )
    return tuple(profiles)
