"""Validated settings, one frozen model per subsystem, with the defaults of DESIGN.md section 6.

Decision-core functions take the section they need (e.g. `SlotSettings`) as an argument, so the same
numbers drive the actors, the tests and the benchmarks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from config.accounts import Account
from core.settings import (
    DEFAULT_FEED,
    Feed,
    GapSettings,
    OverflowSettings,
    RecoverySettings,
    ScheduleSettings,
    Section,
    SessionSettings,
    SignalSettings,
    SlotSettings,
    TriggerSettings,
    UniverseSettings,
    WakeupSettings,
)


class ScanSettings(Section):
    """Track A: the REST batch scan of the whole universe."""

    interval_seconds: PositiveFloat = 600.0
    """Seconds from the start of one Track A scan of the whole universe to the next."""
    batch_size: int = Field(default=30, ge=1, le=30)
    """Symbols asked per REST multi-quote call (KIS answers at most 30)."""
    safe_mode_interval_seconds: PositiveFloat = 1200.0
    """Seconds between scans in safe mode, which ends with the first scan without a failed call."""
    safe_mode_after_failures: PositiveInt = 3
    """Failed REST calls in a row (after their retries) that abort a scan and start safe mode (alerted)."""
    context_min_snapshots: PositiveInt = 1
    """Track A snapshots of the opening window the context sync needs (the seed reads 3 at its 10-minute
    interval; a late start has 1); with fewer, Track B starts without context (the seed's degraded mode:
    no baseline, no opening movers), and the status says so."""


class RateLimitSettings(Section):
    """REST calls to KIS: each app key's pace, and the retries of a call that failed transiently."""

    real_per_second: PositiveFloat = 20.0
    """REST calls per second per app key of a real account (KIS allows 20)."""
    paper_per_second: PositiveFloat = 2.0
    """REST calls per second per app key of a paper-trading (mock) account."""
    retry_backoff_seconds: tuple[PositiveFloat, ...] = (0.5, 1.0, 2.0, 4.0)
    """Seconds before each retry of a call that failed transiently (429, 5xx, network); the last repeats."""
    max_retries: int = Field(default=5, ge=0)
    """Retries of such a call before its error is given up."""


class AlertSettings(Section):
    """Alert delivery: cooldown per (symbol, signal), the notifier's own rate limit and its retries."""

    cooldown_seconds: float = Field(default=600.0, ge=0)
    """Seconds after an alert before the same symbol and signal may alert again."""
    rate_per_minute: PositiveInt = 20
    """Alerts sent at most within any 60 seconds; the rest wait in a queue."""
    max_retries: int = Field(default=3, ge=0)
    """Retries of a delivery that failed (429, 5xx, network) before it is logged as not delivered."""
    retry_backoff_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0)
    """Seconds before each retry of a delivery; a 429's `retry_after` wins."""
    send_timeout_seconds: PositiveFloat = 10.0
    """Seconds one post to Telegram or Discord may take before it counts as failed."""


class WebSocketSettings(Section):
    """The realtime connection of each app key: reconnects, the feed, shedding load when behind, and which
    slots stream their order book and program trading too."""

    reconnect_backoff_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    """Seconds before each reconnect attempt after a drop; the last step repeats."""
    backoff_jitter: float = Field(default=0.1, ge=0, le=1)
    """Random spread of each reconnect wait as a fraction (0.1 = +-10 %), so keys do not reconnect in step."""
    silence_timeout_seconds: PositiveFloat = 30.0
    """Seconds without any message (no trade, no PINGPONG) after which the connection counts as dropped."""
    suspend_track_b_after_seconds: PositiveFloat = 60.0
    """Seconds without a connection after which the account is suspended and its slots move to other keys."""
    feed: Feed = DEFAULT_FEED
    """Which trades a tick slot streams: `krx` (H0STCNT0, KRX only), `nxt` (H0NXCNT0, Nextrade only) or
    `unified` (H0UNCNT0, both venues in one registration, so no trade of either venue is missed)."""
    max_queue_messages: PositiveInt = 2000
    """The receive queue's bound: trade messages waiting for the connection actor. Past it new trades are
    dropped (each symbol's dropped stretch becomes a gap) until the backlog falls below it."""
    backpressure_lag_seconds: PositiveFloat = 2.0
    """Processing is behind when a trade message waits this long, or the queue holds a quarter of its
    bound: the lowest scored subscriptions are shed (`backpressure_shed_fraction` of the slots a step)."""
    backpressure_shed_fraction: float = Field(default=0.25, gt=0, le=1)
    """Fraction of an account's slots shed per step while processing is behind (0.25 = a quarter)."""
    backpressure_step_seconds: PositiveFloat = 10.0
    """While still behind, another step is shed at most this often."""
    backpressure_recover_seconds: PositiveFloat = 30.0
    """Caught up (lag below half the threshold) this long: every shed slot is taken back."""
    order_book_held: bool = True
    """Held positions also stream their 10-level order book (H0UNASP0, H0STASP0 or H0NXASP0 as `feed`
    says), recorded beside their ticks; each book is one of the key's 41 registrations."""
    order_book_top: int = Field(default=3, ge=0, le=40)
    """So do the N best scored other slots of each key (0: only held positions)."""
    program_trading_held: bool = True
    """Held positions also stream their program trading (H0UNPGM0, H0STPGM0 or H0NXPGM0 as `feed` says);
    one registration each."""
    program_trading_top: int = Field(default=3, ge=0, le=40)
    """So do the N best scored other slots of each key (0: only held positions)."""
    extra_registrations_max: int = Field(default=12, ge=0, le=40)
    """At most this many of a key's registrations go to order books and program trading (held positions
    first); the trades keep the rest, so a full key gives up its weakest tick slots for them."""


class RecorderSettings(Section):
    """The tick recorder."""

    max_buffered_mb: PositiveInt = 128
    """Lines the recorder may hold in memory while the disk refuses writes (MiB, about 100 s of ticks at
    5,000 a second); past it new ticks are dropped and each symbol's dropped stretch becomes a gap marker."""


class StorageSettings(Section):
    """What the 21:00 job keeps, in days (today counts as one), a second place for the day's archive (a
    mounted disk), and the free-space floor; logs keep `log_retention_days`."""

    journal_days: PositiveInt = 30
    """Days of tick journals (`scalp/`) and scan records (`swing/`) kept."""
    parquet_days: PositiveInt = 730
    """Days of the daily Parquet files kept."""
    backup_days: PositiveInt = 30
    """Days of daily archives (`backup/*.tar.gz`) kept."""
    ledger_days: PositiveInt = 365
    """Days of the gap, overflow and alert ledgers (`system/`) kept."""
    backup_copy_dir: Path | None = None
    """A second directory (e.g. a mounted disk) each day's archive is copied to; None: no copy."""
    min_free_megabytes: int = Field(default=2048, ge=0)
    """The free-space floor under the data dir (MiB). Below it one system alert goes out (again only once
    free space was back above the floor plus 10 % and fell again) and ticks and scan snapshots stop going
    onto the spine, so its JetStream stream and the Parquet store it feeds stop growing while the journal
    is still written; the 21:00 job rebuilds the day's Parquet ticks from the journal. 0: no floor."""


class TokenSettings(Section):
    """KIS access tokens and WebSocket approval keys."""

    proactive_refresh_hours: PositiveFloat = 23.0
    """Age in hours at which the next token check renews a token or approval key (KIS tokens live 24 h)."""
    min_issue_interval_seconds: PositiveFloat = 60.0
    """Seconds between two token issuances for one app key (KIS issues one a minute, with a KakaoTalk message
    each time)."""
    cache_dir: str = "~/.cache/observer"
    """Directory of the cached tokens (mode 0600, named by a hash of the key), reused across restarts; the
    control process writes it, the stream process reads its approval keys from it."""


class NotifierSettings(Section):
    """Where alerts go. Either channel may be absent; with neither, alerts only reach the log."""

    telegram_bot_token: SecretStr | None = None
    """The Telegram bot's token (`TELEGRAM_BOT_TOKEN`); never printed or logged."""
    telegram_chat_id: str | None = None
    """The chat the bot posts alerts to (`TELEGRAM_CHAT_ID`); Telegram is used when both are set."""
    telegram_api_base: str = "https://api.telegram.org"
    """The Telegram Bot API's address (`TELEGRAM_API_BASE`; another one for a test sink or a proxy)."""
    discord_webhook_url: SecretStr | None = None
    """A Discord webhook alerts are posted to (`DISCORD_WEBHOOK_URL`); never printed or logged."""

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and bool(self.telegram_chat_id)

    @property
    def discord_enabled(self) -> bool:
        return self.discord_webhook_url is not None


class SpineSettings(Section):
    """The NATS spine (`spine`): subjects under `observer.<instance>.`, a JetStream stream keeping the day."""

    instance: str = Field(default="main", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    """The second token of every subject; observers sharing one NATS server need different instances."""
    stream_max_age_hours: PositiveFloat = 24.0
    """How long the stream keeps a message: a day, so a consumer starting at 11:00 replays from 09:00."""
    stream_max_megabytes: PositiveInt | None = None
    """A size cap on the stream (oldest messages go first); None: only the age limits it."""
    publish_queue_limit: PositiveInt = 20_000
    """Facts (a tick burst, a scan, an alert...) waiting for the publisher's thread; beyond it new ones are
    dropped (counted), so neither the tick path nor memory waits for a slow spine."""
    health_interval_seconds: PositiveFloat = 5.0
    """Seconds between two health messages (actors, restarts, counters) on the spine."""
    replicas: int = Field(default=1, ge=1, le=5)
    """JetStream copies of the stream and the key-value buckets: 1 on one server, 3 on a three-server cluster
    (a server may then die without losing a message); applied whenever they are created or set up again."""
    control_lease_seconds: float = Field(default=6.0, ge=2.0, le=60.0)
    """The control lease's time to live: a standby control takes over at most this long (plus its start)
    after the active one died; the active one renews it every quarter of it."""


class WorkerSettings(Section):
    """Stream workers on several machines (`workers`): their heartbeats, the lease on each key's session."""

    heartbeat_seconds: PositiveFloat = 2.0
    """Seconds between two heartbeats of a stream worker (`observer.<instance>.worker.<id>`)."""
    timeout_seconds: PositiveFloat = 6.0
    """A worker not heard for this many seconds is dead: the control moves its accounts' symbols to the
    other accounts' free slots and records their gaps."""
    start_grace_seconds: PositiveFloat = 30.0
    """For this long after the control starts, an account no worker has streamed yet counts as served: the
    workers start after it (or a restarted control has not heard them yet)."""
    session_lease_seconds: PositiveFloat = 10.0
    """Life of a key's session lease (a JetStream key-value entry the streaming worker renews); a second
    worker for the same key waits until it is free."""

    @model_validator(mode="after")
    def _timeout_outlives_heartbeats(self) -> WorkerSettings:
        if self.timeout_seconds <= self.heartbeat_seconds:
            raise ValueError("workers.timeout_seconds must be longer than workers.heartbeat_seconds")
        return self


class PipelineSettings(Section):
    """The earlier pipeline's minute jobs (`actors.minute_jobs`). A job left None is off, except in simulator
    mode, which turns it on (`simulator_defaults`) so a newcomer sees candles and a matrix."""

    stock_candles: bool | None = None
    """`stocks_1m` for the streamed symbols and the watch list, reconciled with KIS's minute bars."""
    derivatives: bool | None = None
    """KOSPI200 futures bars, the option board and its matrix each minute of the futures session."""
    candle_check: bool | None = None
    """After the futures close: each table's day against the session's expected candles, refilled."""
    futures_trades: bool | None = None
    """The front-month KOSPI200 future's realtime trades (H0IFCNT0) on the first account's WebSocket while it
    is open and has a registration no stock needs; recorded in `futures_trades_101` and published."""
    watchlist: tuple[str, ...] = ()
    """Symbols whose minute bars are fetched each minute whether or not they are streamed."""
    signal_alerts: Literal["off", "monitor", "trade"] = "trade"
    """dolpha1 signals at this level or above raise an alert (with the notifier's cooldown)."""
    flush_minutes: PositiveInt = 5
    """Parquet part files are written at least this often (minutes of the observer's clock) and at stop."""
    postgres_retry_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    """Waits between attempts to reach PostgreSQL while it is down (real seconds, the last repeated)."""

    def simulator_defaults(self) -> dict[str, bool]:
        """The jobs simulator mode turns on: those the configuration left unset."""
        jobs = ("stock_candles", "derivatives", "candle_check", "futures_trades")
        return {name: True for name in jobs if getattr(self, name) is None}


LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


class Settings(Section):
    """Everything the process needs. Build it with `config.loader.load_settings`, which applies the profile.

    `Settings()` alone equals the `main` profile's defaults with no accounts (simulator mode).
    """

    profile: Literal["main", "hybrid", "hybrid_b", "realtime"] = "main"
    """Which design's defaults apply before the file: `main`, `hybrid`, `hybrid_b` or `realtime`
    (config/profiles.py)."""
    data_dir: Path = Path("./data")
    """Root of everything written: ticks, scans, ledgers, Parquet, archives, state (`--data-dir`)."""
    log_dir: Path = Path("./logs")
    """Directory of the log files: one per actor and `observer.log`, rotated at midnight."""
    log_retention_days: PositiveInt = 14
    """Days log files are kept."""
    log_level: LogLevel = "INFO"
    """Lowest level on the console when it is not a terminal (a terminal shows WARNING and above; the files
    keep DEBUG)."""
    universe: UniverseSettings = UniverseSettings()
    scan: ScanSettings = ScanSettings()
    rate_limit: RateLimitSettings = RateLimitSettings()
    triggers: TriggerSettings = TriggerSettings()
    slots: SlotSettings = SlotSettings()
    overflow: OverflowSettings = OverflowSettings()
    signals: SignalSettings = SignalSettings()
    alerts: AlertSettings = AlertSettings()
    websocket: WebSocketSettings = WebSocketSettings()
    gaps: GapSettings = GapSettings()
    recorder: RecorderSettings = RecorderSettings()
    storage: StorageSettings = StorageSettings()
    recovery: RecoverySettings = RecoverySettings()
    tokens: TokenSettings = TokenSettings()
    sessions: SessionSettings = SessionSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    wakeup: WakeupSettings = WakeupSettings()
    notifier: NotifierSettings = NotifierSettings()
    spine: SpineSettings = SpineSettings()
    workers: WorkerSettings = WorkerSettings()
    nats_url: str | None = None
    """An existing NATS server or cluster (`--nats`, `OBSERVER_NATS_URL`; a cluster's URLs comma-separated);
    None: `run.py` starts its own."""
    pipeline: PipelineSettings = PipelineSettings()
    postgres_url: SecretStr | None = None
    """PostgreSQL for the pipeline's tables besides Parquet (`--postgres`, `OBSERVER_POSTGRES_URL`)."""
    accounts: tuple[Account, ...] = ()

    @field_validator("accounts")
    @classmethod
    def _name_and_check_accounts(cls, accounts: tuple[Account, ...]) -> tuple[Account, ...]:
        """Unnamed accounts become acct1, acct2... by position; names and app keys must be unique."""
        named = tuple(
            account if "name" in account.model_fields_set else account.model_copy(update={"name": f"acct{i}"})
            for i, account in enumerate(accounts, start=1)
        )
        first_with: dict[str, int] = {}
        first_key: dict[str, int] = {}
        for i, account in enumerate(named):
            if account.name in first_with:
                raise ValueError(f"accounts[{first_with[account.name]}] and accounts[{i}] have the same name")
            key = account.app_key.get_secret_value()
            if key in first_key:
                raise ValueError(f"accounts[{first_key[key]}] and accounts[{i}] have the same app key")
            first_with[account.name] = i
            first_key[key] = i
        return named

    @model_validator(mode="after")
    def _schedule_follows_sessions(self) -> Settings:
        """Fill the unset phase times from the sessions of the venues the feed streams (the closing pass from
        KRX's)."""
        if not self.schedule.resolved or self.schedule.closing_pass_time is None:
            try:
                opens, closes = self.sessions.span(self.websocket.feed)
                schedule = self.schedule.following(opens, closes, self.sessions.krx_close())
            except ValidationError as exc:
                raise ValueError(
                    f"schedule: the times derived from the {self.websocket.feed} feed's sessions do not fit "
                    f"the ones given: {exc.errors()[0]['msg']}"
                ) from None
            object.__setattr__(self, "schedule", schedule)  # frozen: set once, while validating
        return self

    @property
    def simulated(self) -> bool:
        """No accounts configured: run against the embedded KIS simulator."""
        return not self.accounts
