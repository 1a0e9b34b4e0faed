"""Validated settings, one frozen model per subsystem, with the defaults of DESIGN.md section 6.

Decision-core functions take the section they need (e.g. `SlotSettings`) as an argument, so the same
numbers drive the actors, the tests and the benchmarks.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UniverseSettings(Section):
    generation_time: str = "05:00"
    min_close_price: PositiveInt = 4000
    exclude_suspended: bool = True
    exclude_managed: bool = False
    min_symbol_count: PositiveInt = 100
    cache_days: PositiveInt = 10
    markets: tuple[Literal["KOSPI", "KOSDAQ"], ...] = ("KOSPI", "KOSDAQ")


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


class AlertSettings(Section):
    cooldown_seconds: float = Field(default=600.0, ge=0)
    rate_per_minute: PositiveInt = 20
    max_retries: int = Field(default=3, ge=0)


class WebSocketSettings(Section):
    reconnect_backoff_seconds: tuple[PositiveFloat, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
    backoff_jitter: float = Field(default=0.1, ge=0, le=1)
    silence_timeout_seconds: PositiveFloat = 30.0
    suspend_track_b_after_seconds: PositiveFloat = 60.0


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
    universe_time: str = "05:00"
    wakeup_time: str = "08:00"
    token_refresh_time: str = "08:30"
    track_a_start: str = "09:00"
    track_b_start: str = "09:30"
    track_b_stop: str = "15:00"
    track_a_stop: str = "15:30"
    backup_time: str = "21:00"
    token_check_time: str = "23:00"
