"""Validated settings, one frozen model per subsystem, with the defaults of DESIGN.md section 6.

Decision-core functions take the section they need (e.g. `SlotSettings`) as an argument, so the same
numbers drive the actors, the tests and the benchmarks.
"""

from __future__ import annotations

from datetime import time
from itertools import pairwise
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    field_validator,
    model_validator,
)

from config.accounts import Account


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UniverseSettings(Section):
    min_close_price: PositiveInt = 4000
    exclude_suspended: bool = True
    exclude_managed: bool = False
    min_symbol_count: PositiveInt = 100
    cache_days: PositiveInt = 10
    markets: tuple[Literal["KOSPI", "KOSDAQ"], ...] = ("KOSPI", "KOSDAQ")
    master_base_url: str | None = None
    """Where `kospi_code.mst.zip` / `kosdaq_code.mst.zip` are downloaded from. None: KIS's official
    download host (`kis.master.MASTER_URLS`), or `{rest_url}/master` when running against the simulator."""


class ScanSettings(Section):
    """Track A: the REST batch scan of the whole universe."""

    interval_seconds: PositiveFloat = 600.0
    batch_size: int = Field(default=30, ge=1, le=30)
    safe_mode_interval_seconds: PositiveFloat = 1200.0
    safe_mode_after_failures: PositiveInt = 3


class RateLimitSettings(Section):
    real_per_second: PositiveFloat = 20.0
    paper_per_second: PositiveFloat = 2.0
    retry_backoff_seconds: tuple[PositiveFloat, ...] = (0.5, 1.0, 2.0, 4.0)
    max_retries: int = Field(default=5, ge=0)


class TriggerRule(Section):
    """One trigger kind. `ttl_seconds` None means no expiry (manual override)."""

    enabled: bool = True
    threshold: float = 0.0
    ttl_seconds: PositiveFloat | None = 300.0
    weight: PositiveFloat = 1.0


class VolumeSurgeRule(TriggerRule):
    threshold: float = 3.0
    mild: float = 2.0
    severe: float = 5.0
    ttl_seconds: PositiveFloat | None = 300.0
    weight: PositiveFloat = 10.0


class TradeVelocityRule(TriggerRule):
    threshold: float = 10.0
    window_seconds: PositiveFloat = 10.0
    ttl_seconds: PositiveFloat | None = 180.0
    weight: PositiveFloat = 8.0


class VolatilitySpikeRule(TriggerRule):
    threshold: float = 2.0
    atr_days: PositiveInt = 14
    ttl_seconds: PositiveFloat | None = 300.0
    weight: PositiveFloat = 6.0


class ManualRule(TriggerRule):
    ttl_seconds: PositiveFloat | None = None
    weight: PositiveFloat = 5.0
    symbols: tuple[str, ...] = ()
    picks_time: time = time(7, 20)
    """KST time at which day's picks loaded with `"when": "scheduled"` replace the previous ones."""


class RealtimeDetectorRule(Section):
    """track_b_independent_scanner.md: 5x one-minute volume, 5 % move within a 60 s window."""

    enabled: bool = False
    volume_ratio: PositiveFloat = 5.0
    price_move_pct: PositiveFloat = 5.0
    window_seconds: PositiveFloat = 60.0
    ttl_seconds: PositiveFloat = 300.0
    weight: PositiveFloat = 9.0


class TriggerSettings(Section):
    volume_surge: VolumeSurgeRule = VolumeSurgeRule()
    trade_velocity: TradeVelocityRule = TradeVelocityRule()
    volatility_spike: VolatilitySpikeRule = VolatilitySpikeRule()
    manual: ManualRule = ManualRule()
    realtime: RealtimeDetectorRule = RealtimeDetectorRule()
    market_cap_weight: float = 0.1


class SlotSettings(Section):
    max_slots: int = Field(default=41, ge=1, le=41)
    replacement_threshold: float = Field(default=1.2, ge=1.0)
    min_dwell_seconds: float = Field(default=120.0, ge=0)
    resubscribe_cooldown_seconds: float = Field(default=180.0, ge=0)
    rebalance_interval_seconds: PositiveFloat = 30.0
    watchlist: tuple[str, ...] = ()


class OverflowSettings(Section):
    alert_levels: tuple[float, ...] = (0.05, 0.10, 0.20)
    window_seconds: PositiveFloat = 3600.0


class SignalSettings(Section):
    """The hybrid design's signals (websocket_monitor_hybrid.md section 4)."""

    enabled: bool = False
    disparity_threshold: float = -0.08
    disparity_ma_days: PositiveInt = 20
    return_minutes: PositiveInt = 5
    return_threshold_pct: float = -3.0
    turnover_surge_ratio: PositiveFloat = 3.0
    rank_by_closeness: bool = False
    """The hybrid Top-N: slots go to the scanned symbols nearest to a signal threshold
    (`core.closeness`) instead of to the trigger ranking; picks and manual triggers still come first."""
    closeness_horizon: PositiveFloat | None = 0.05
    """Only symbols this near to a threshold (distance units of `core.closeness`: 0.05 = 5 points) compete
    for a slot; None: every scanned symbol. Symbols further off are no candidates, so neither the overflow
    ledger nor the overflow-rate alerts fill with the whole quiet universe."""
    closeness_weight: float = Field(default=1.0, ge=0)
    """w1 of section 3.5: weight of 1 / (distance to the nearest threshold + epsilon)."""
    closeness_epsilon: PositiveFloat = 0.005
    """eps of section 3.5, in the distance's units (0.005 = half a percentage point)."""
    volatility_weight: float = Field(default=1.0, ge=0)
    """w2: weight of the intraday range (high - low) / previous close, in percent."""
    turnover_weight: float = Field(default=0.5, ge=0)
    """w3: weight of log10 of the day's turnover (KRW)."""
    breakout_enabled: bool = False
    """Mode B (section 7): a breakout signal beside the drop signals."""
    breakout_minutes: PositiveInt = 20
    """The breakout's reference: the highest trade of this many minutes before the trade."""
    breakout_pct: float = Field(default=0.5, ge=0)
    """How far (%) above that high a trade must be to count as a breakout."""


class AlertSettings(Section):
    """Alert delivery: cooldown per (symbol, signal), the notifier's own rate limit and its retries."""

    cooldown_seconds: float = Field(default=600.0, ge=0)
    rate_per_minute: PositiveInt = 20
    max_retries: int = Field(default=3, ge=0)
    retry_backoff_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0)
    send_timeout_seconds: PositiveFloat = 10.0


class WebSocketSettings(Section):
    reconnect_backoff_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    backoff_jitter: float = Field(default=0.1, ge=0, le=1)
    silence_timeout_seconds: PositiveFloat = 30.0
    suspend_track_b_after_seconds: PositiveFloat = 60.0
    max_queue_messages: PositiveInt = 2000
    """The receive queue's bound: trade messages waiting for the connection actor. Past it new trades are
    dropped (each symbol's dropped stretch becomes a gap) until the backlog falls below it."""
    backpressure_lag_seconds: PositiveFloat = 2.0
    """Processing is behind when a trade message waits this long, or the queue holds a quarter of its
    bound: the lowest scored subscriptions are shed (`backpressure_shed_fraction` of the slots a step)."""
    backpressure_shed_fraction: float = Field(default=0.25, gt=0, le=1)
    backpressure_step_seconds: PositiveFloat = 10.0
    """While still behind, another step is shed at most this often."""
    backpressure_recover_seconds: PositiveFloat = 30.0
    """Caught up (lag below half the threshold) this long: every shed slot is taken back."""


class RecorderSettings(Section):
    max_buffered_mb: PositiveInt = 128
    """Lines the recorder may hold in memory while the disk refuses writes (MiB, about 100 s of ticks at
    5,000 a second); past it new ticks are dropped and each symbol's dropped stretch becomes a gap marker."""


class GapSettings(Section):
    expected_interval_ms: PositiveInt = 500
    tolerance_ms: int = Field(default=200, ge=0)
    quiet_symbol_factor: PositiveFloat = 10.0


class RecoverySettings(Section):
    immediate_below_seconds: PositiveFloat = 5.0
    queued_up_to_seconds: PositiveFloat = 60.0


class TokenSettings(Section):
    proactive_refresh_hours: PositiveFloat = 23.0
    min_issue_interval_seconds: PositiveFloat = 60.0
    cache_dir: str = "~/.cache/observer"


class ScheduleSettings(Section):
    """KST times of the trading day (core/schedule.py turns them into phases and events).

    Phases: IDLE until `wakeup_time`, WARMUP, TRACK_A_ONLY from `track_a_start`, FULL_OPERATION from
    `track_b_start`, TRACK_A_CLOSING from `track_b_stop`, SHUTDOWN from `track_a_stop`, IDLE again from
    `idle_time`. The phase times must be in that order within one day.
    """

    universe_time: time = time(5, 0)
    wakeup_time: time = time(8, 0)
    token_refresh_time: time = time(8, 30)
    track_a_start: time = time(9, 0)
    track_b_start: time = time(9, 30)
    track_b_stop: time = time(15, 0)
    track_a_stop: time = time(15, 30)
    backup_time: time = time(21, 0)
    token_check_time: time = time(23, 0)
    idle_time: time = time(21, 0)

    @field_validator("*")
    @classmethod
    def _naive_time(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("give a plain HH:MM time; every schedule time is KST")
        return value

    @model_validator(mode="after")
    def _phases_in_order(self) -> ScheduleSettings:
        order = ("wakeup_time", "track_a_start", "track_b_start", "track_b_stop", "track_a_stop", "idle_time")
        times = [getattr(self, name) for name in order]
        if any(earlier >= later for earlier, later in pairwise(times)):
            raise ValueError("phase times must increase: " + " < ".join(order))
        return self


class NotifierSettings(Section):
    """Where alerts go. Either channel may be absent; with neither, alerts only reach the log."""

    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_base: str = "https://api.telegram.org"
    discord_webhook_url: SecretStr | None = None

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and bool(self.telegram_chat_id)

    @property
    def discord_enabled(self) -> bool:
        return self.discord_webhook_url is not None


LogLevel = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]


class Settings(Section):
    """Everything the process needs. Build it with `config.loader.load_settings`, which applies the profile.

    `Settings()` alone equals the `main` profile's defaults with no accounts (simulator mode).
    """

    profile: Literal["main", "hybrid", "hybrid_b"] = "main"
    data_dir: Path = Path("./data")
    log_dir: Path = Path("./logs")
    log_retention_days: PositiveInt = 14
    log_level: LogLevel = "INFO"
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
    recovery: RecoverySettings = RecoverySettings()
    tokens: TokenSettings = TokenSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    notifier: NotifierSettings = NotifierSettings()
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

    @property
    def simulated(self) -> bool:
        """No accounts configured: run against the embedded KIS simulator."""
        return not self.accounts
