"""MinuteJobsActor: the earlier pipeline's minute jobs on the observer's clock (`pipeline`).

Once a minute has closed (plus `GRACE` for the last frames in flight) the actor, on its own thread:

- takes the streamed symbols' candles, built from their trades as they came (`TicksReceived`, a one-line
  hook in the connection actor; `core.candles.CandleBuilder`), reconciles them with KIS's minute bars for
  those symbols and the configured watch list (`pipeline.stock_minute`: one call per symbol and minute)
  into `stocks_1m`, and dolpha1's features and signals into `dolpha1_signal`, each also published
  (`signal.dolpha1.<symbol>`); a signal that changed to the configured level raises an `AlertRaised`
  through the notifier, whose cooldown applies;
- in the derivatives session, the KOSPI200 futures bars, the option board and its matrix
  (`pipeline.derivatives_minute`: three calls);
- after the derivatives close, once a day, the expected-candle check of what it wrote today, refilling
  what KIS still has (`pipeline.candle_check`); what still cannot be had goes to `system_status` and the
  day's report (`observer/system/candles/YYYYMMDD_candles.json`), and the day's Parquet parts are merged.

The front-month future's streamed trades (`FuturesTradesReceived` from the first account's connection
actor, `pipeline.futures_trades`) go into `futures_trades_101` beside its candles and onto the spine
(`futures.trade.<code>`) as they come.

Calls go through the account's rate-limited client (the limiter is shared with the scanner), so they pace
with the scan instead of bursting past it; the tick path only pays a tell. Rows go to Parquet and, when
configured, PostgreSQL (`pipeline.store`); Parquet is flushed every `pipeline.flush_minutes` of the clock
and at stop. A job that fails (KIS error, transport) is logged as one line and the next minute runs.

Each job is switched by `pipeline.*` (unset: off, but `app.observer` turns it on in simulator mode).

| Message | Effect |
|---|---|
| TicksReceived | each trade into its running minute candle (only with `stock_candles`) |
| FuturesTradesReceived | rows of `futures_trades_101`, and published (only with `futures_trades`) |
| _MinuteDue (own ticker) | the jobs of every minute closed since the last run; flush and PostgreSQL retry |
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import date, datetime, timedelta
from typing import Any

import requests

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from actors.scheduler import tick_interval_seconds
from core.alerts import make_alert
from core.candles import (
    FUTURES_CLOSE,
    FUTURES_OPEN,
    KST,
    STOCK_CLOSE,
    STOCK_OPEN,
    Candle,
    CandleBuilder,
    CandleSource,
    in_session,
    kst_minute,
)
from core.derivatives import futures_pair
from core.dolpha1 import Level, Params
from kis.errors import KisError
from kis.rest import KisRestClient
from messages.alerts import AlertRaised, SystemAlert
from messages.base import Message
from messages.market import FuturesTradesReceived, TicksReceived
from pipeline.candle_check import (
    CandleCheck,
    check_minutes,
    day_report,
    refill_futures,
    refill_stock,
    write_day_report,
)
from pipeline.derivatives_minute import derivatives_minute
from pipeline.futures_trades import futures_trade_facts, futures_trade_row
from pipeline.stock_minute import signal_fact, signal_rows, stock_minute
from pipeline.store import PipelineStore
from runtime.backoff import Backoff
from runtime.ticker import Ticker
from store.tables import KOSPI200_FUTURES_TABLE, KOSPI200_FUTURES_TRADES_TABLE

GRACE = timedelta(seconds=5)
"""A minute's jobs run this long after it closed: the last trades of the minute reach us and KIS's bar."""
CHECK_AFTER = datetime.combine(date.min, FUTURES_CLOSE) + timedelta(minutes=1)
ALERT_LEVELS = {"monitor": (Level.MONITOR, Level.TRADE), "trade": (Level.TRADE,), "off": ()}
JOB_ERRORS = (KisError, requests.RequestException)


class _MinuteDue(Message):
    """The actor's ticker: look whether a minute closed."""


class MinuteJobsActor(ObserverActor):
    """Child id `minute_jobs`; see the module docstring."""

    def __init__(
        self, name: str, directory: Directory, context: ObserverContext, *, tick_seconds: float | None = None
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        settings = context.settings.pipeline
        self.stock_on = bool(settings.stock_candles)
        self.derivatives_on = bool(settings.derivatives)
        self.check_on = bool(settings.candle_check)
        self.futures_trades_on = bool(settings.futures_trades)
        self.tick_seconds = tick_seconds or tick_interval_seconds(context.clock.speed)
        self._params = Params()
        self._alert_levels = ALERT_LEVELS[settings.signal_alerts]
        self._builder = CandleBuilder()
        self._candles: dict[str, dict[datetime, Candle]] = defaultdict(dict)
        self._futures_day: date | None = None
        self._checked: date | None = None
        self._client: KisRestClient | None = None
        self._store: PipelineStore | None = None
        self._ticker: Ticker | None = None
        self._done = kst_minute(context.clock.now() - GRACE) - timedelta(minutes=1)
        self._flushed = context.clock.now()

    @property
    def enabled(self) -> bool:
        return self.stock_on or self.derivatives_on or self.check_on or self.futures_trades_on

    def on_start(self) -> None:
        if not self.enabled or not self.context.accounts:
            self.log.info("minute jobs off (pipeline.stock_candles / derivatives / candle_check)")
            return
        account = self.context.accounts[0].name
        if self.context.accounts[0].paper:
            if self.derivatives_on:
                self.log.warning("derivatives job off: KIS gives the option board to real accounts only")
            self.derivatives_on = False
            self.futures_trades_on = False  # nor H0IFCNT0: the connection actor does not register it
        self._client = self.context.rest_client(account)
        url = self.context.settings.postgres_url
        self._store = PipelineStore(
            self.context.paths.parquet_dir,
            None if url is None else url.get_secret_value(),
            retry=Backoff(steps=self.context.settings.pipeline.postgres_retry_seconds, jitter=0.1),
            on_outage=self._alert_outage,
            now=self.context.clock.now,
        )
        self._store.open()
        self._resume(self.context.clock.now().date())
        switches = (("stock candles", self.stock_on), ("derivatives", self.derivatives_on),
                    ("candle check", self.check_on), ("futures trades", self.futures_trades_on))
        jobs = [name for name, on in switches if on]
        where = "Parquet and PostgreSQL" if self._store.postgres else "Parquet"
        self.log.info("minute jobs: {} through {}, rows to {}", ", ".join(jobs), account, where)
        self._ticker = Ticker(self.actor_ref, lambda: _MinuteDue(at=self.context.clock.now()),
                              self.tick_seconds, name=f"{self.name}-ticker").start()

    def on_stop(self) -> None:
        self._close()

    def on_failure(self, *_exc_info: object) -> None:
        self._close()

    def on_receive(self, message: Any) -> Any:
        match message:
            case TicksReceived(ticks=ticks):
                if self.stock_on and self._store is not None:
                    add = self._builder.add
                    for tick in ticks:
                        add(tick.symbol, tick.exchange_time, tick.price, tick.volume)
            case FuturesTradesReceived():
                if self.futures_trades_on and self._store is not None:
                    self._futures_trades(message)
            case _MinuteDue():
                self._run_due()
        return None

    # --- the minute ------------------------------------------------------------------------------

    def _run_due(self) -> None:
        if self._store is None:
            return
        now = self.context.clock.now()
        closed = kst_minute(now - GRACE) - timedelta(minutes=1)
        if closed > self._done:
            started = time.perf_counter()
            if self.stock_on:
                self._stocks(self._done + timedelta(minutes=1), closed)
            if self.derivatives_on:
                self._derivatives(closed)
            self._done = closed
            self.context.metrics.set("minute_jobs_seconds", time.perf_counter() - started)
            self.context.metrics.inc("minute_job_runs")
        if self.check_on and self._checked != now.date() and now.time() >= CHECK_AFTER.time():
            self._checked = now.date()
            self._check_day(now.date())
        if now - self._flushed >= timedelta(minutes=self.context.settings.pipeline.flush_minutes):
            self._store.flush_parquet()
            self._flushed = now
        self._store.sync()

    def _stocks(self, first: datetime, last: datetime) -> None:
        """`stocks_1m` and `dolpha1_signal` rows of the minutes first..last (closed) for the symbols streamed
        in them and the watch list."""
        assert self._store is not None and self._client is not None
        built = [c for c in self._builder.take_before(last + timedelta(minutes=1)) if c.minute >= first]
        first = max(first, datetime.combine(last.date(), STOCK_OPEN, tzinfo=KST))
        last = min(last, datetime.combine(last.date(), STOCK_CLOSE, tzinfo=KST) - timedelta(minutes=1))
        if first > last:
            return
        streamed = self._builder.traded_since(first)
        symbols = sorted(streamed | {c.symbol for c in built} | set(self.context.settings.pipeline.watchlist))
        for symbol in symbols:
            try:
                minutes = stock_minute(
                    self._client, self.context.clock, symbol, built, since=first, until=last
                )
            except JOB_ERRORS as error:
                self._job_failed(f"stock candles {symbol}", error)
                continue
            rows = minutes.rows
            self.context.metrics.inc("stock_candles", self._store.write("stocks_1m", rows))
            if minutes.differences:
                self.context.metrics.inc("candle_differences", len(minutes.differences))
            self._signals(symbol, rows)

    def _signals(self, symbol: str, rows: list[dict[str, Any]]) -> None:
        """dolpha1 over the symbol's candles of the day so far; rows and alerts for the new minutes."""
        assert self._store is not None
        if not rows:
            return
        day = self._candles[symbol]
        for row in rows:
            day[row["timestamp"]] = Candle(symbol, row["timestamp"], row["open"], row["high"], row["low"],
                                           row["close"], row["volume"], CandleSource(row["source"]))
        session = [day[minute] for minute in sorted(day) if minute.date() == rows[-1]["timestamp"].date()]
        new = {row["timestamp"] for row in rows}
        fresh = [s for s in signal_rows(symbol, session, self._params) if s["timestamp"] in new]
        self._store.write("dolpha1_signal", fresh)
        for signal in fresh:
            self.context.spine.publish(signal_fact(signal))
            level = Level(signal["level"])
            if signal["changed"] and level in self._alert_levels:
                self._alert_signal(signal, level)

    def _alert_signal(self, signal: dict[str, Any], level: Level) -> None:
        threshold = self._params.trade_k if level is Level.TRADE else self._params.monitor_k
        distance = abs(signal["close"] - signal["vwap"]) / signal["atr"]
        at = signal["timestamp"] + timedelta(minutes=1)
        alert = make_alert(signal["symbol"], "", f"dolpha1_{level}_{signal['side']}", threshold, distance, at)
        self.directory.tell("notifier", AlertRaised(at=self.context.clock.now(), alert=alert))

    def _futures_trades(self, message: FuturesTradesReceived) -> None:
        assert self._store is not None
        rows = [futures_trade_row(message.day, trade) for trade in message.trades]
        self.context.metrics.inc(f"rows_{KOSPI200_FUTURES_TRADES_TABLE}",
                                 self._store.write(KOSPI200_FUTURES_TRADES_TABLE, rows))
        for fact in futures_trade_facts(message):
            self.context.spine.publish(fact)

    def _derivatives(self, minute: datetime) -> None:
        assert self._store is not None and self._client is not None
        if not in_session(minute, FUTURES_OPEN, FUTURES_CLOSE):
            return
        try:
            rows = derivatives_minute(self._client, self.context.clock, minute=minute)
        except JOB_ERRORS as error:
            self._job_failed("derivatives", error)
            return
        for table, batch in rows.tables.items():
            self.context.metrics.inc(f"rows_{table}", self._store.write(table, batch))
        self._futures_day = minute.date()

    # --- after the close -------------------------------------------------------------------------

    def _check_day(self, day: date) -> None:
        """Each symbol written today against the session's expected candles; refill, then report (the log,
        `system_status` and the day's report file)."""
        assert self._store is not None and self._client is not None
        self._store.flush_parquet()
        targets: list[tuple[str, str]] = [
            ("stocks_1m", symbol) for symbol, candles in sorted(self._candles.items())
            if any(minute.date() == day for minute in candles)
        ]
        if self._futures_day == day:
            targets += [(KOSPI200_FUTURES_TABLE, c.futures_code) for c in futures_pair(day)]
        checks: list[CandleCheck] = []
        for table, symbol in targets:
            check = self._check(table, symbol, day)
            if not check.complete:
                refill = refill_stock if table == "stocks_1m" else refill_futures
                try:
                    self._store.write(table, refill(self._client, check))
                except JOB_ERRORS as error:
                    self._job_failed(f"refill {table} {symbol}", error)
                self._store.flush_parquet()
                check = self._check(table, symbol, day)
            checks.append(check)
            self._store.report(check)
            self.log.info("candle check {} {} {:%Y-%m-%d}: {}", table, symbol, day, check.describe())
        self._store.compact(day)
        document = day_report(day, checks, checked_at=self.context.clock.now())
        path = self.context.paths.candle_report(day)
        try:
            write_day_report(path, document)
        except OSError as error:
            self.log.error("cannot write the day's candle report {}: {}", path, error.strerror or error)
        self.context.metrics.set("candle_checks", len(targets))
        self.context.metrics.set("candle_checks_incomplete", document["incomplete"])

    def _check(self, table: str, symbol: str, day: date) -> CandleCheck:
        assert self._store is not None
        session = (STOCK_OPEN, STOCK_CLOSE) if table == "stocks_1m" else (FUTURES_OPEN, FUTURES_CLOSE)
        return check_minutes(table, symbol, day, *session, self._store.minutes(table, symbol, day))

    # --- helpers ---------------------------------------------------------------------------------

    def _resume(self, day: date) -> None:
        """Today's candles already written (an earlier run or incarnation), so dolpha1's VWAP and ATR cover
        the whole session and the candle check knows every symbol of the day; and today's rows queued for
        PostgreSQL again, for those that run could not deliver."""
        assert self._store is not None
        for row in self._store.rows("stocks_1m", day):
            self._candles[row["symbol"]][row["timestamp"]] = Candle(
                row["symbol"], row["timestamp"], row["open"], row["high"], row["low"], row["close"],
                row["volume"], CandleSource(row["source"]))
        if self._store.has_day(KOSPI200_FUTURES_TABLE, day):
            self._futures_day = day
        if self._store.requeue_day(day):
            self._store.sync()

    def _job_failed(self, job: str, error: Exception) -> None:
        self.context.metrics.inc("minute_job_failures")
        self.log.warning("minute job {} failed: {}: {}", job, type(error).__name__, error)

    def _alert_outage(self, text: str) -> None:
        self.directory.tell("notifier", SystemAlert(at=self.context.clock.now(), key="postgres", text=text))

    def _close(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()
            self._ticker = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._client is not None:
            self._client.close()
            self._client = None
