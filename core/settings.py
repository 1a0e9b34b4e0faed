"""The settings the decision core takes, one frozen model per concern (`config.settings` composes them).

They live in `core` because its pure functions take them as arguments (e.g. `SlotSettings`), so the same
numbers drive the actors, the tests and the benchmarks, and `core` imports nothing outside itself.
"""

from __future__ import annotations

from datetime import time, timedelta
from itertools import pairwise
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


Feed = Literal["krx", "nxt", "unified"]
"""The realtime trade feeds KIS serves: KRX only, Nextrade (NXT) only, or both venues unified."""


DEFAULT_FEED: Feed = "unified"
"""Both venues' trades in one registration: no trade of either venue is missed."""

FEED_VENUES: dict[str, tuple[str, ...]] = {"krx": ("KRX",), "nxt": ("NXT",), "unified": ("KRX", "NXT")}
"""The venues whose trades each feed carries."""


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
    """track_b_independent_scanner.md: 5x one-minute volume, 5 % move within a 60 s window.

    Its priorities, 0.9 for a volume surge and 0.95 for a volatility spike, are the weights: on the main
    profile's scale (volume surge 10) they are 9.0 and 9.5; the `realtime` profile uses 0.9 and 0.95 as
    written. Only their ratio matters to the ranking and the replacement threshold.
    """

    enabled: bool = False
    volume_ratio: PositiveFloat = 5.0
    price_move_pct: PositiveFloat = 5.0
    window_seconds: PositiveFloat = 60.0
    ttl_seconds: PositiveFloat = 300.0
    volume_weight: PositiveFloat = 9.0
    price_move_weight: PositiveFloat = 9.5


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
    churn_replacement_threshold: float = Field(default=1.5, ge=1.0)
    """symbol_selection_architecture.md "Rapid Symbol Churn": the threshold while replacements run high
    (never below `replacement_threshold`)."""
    churn_replacements_per_hour: PositiveInt = 60
    """More replacements than this in the last hour raise the threshold to `churn_replacement_threshold`."""
    calm_replacements_per_hour: int = Field(default=30, ge=0)
    """At or below this many in the last hour the threshold is back at `replacement_threshold`."""
    stale_after_seconds: PositiveFloat | None = 1800.0
    """A slotted symbol without a trade for this long in FULL_OPERATION is released (None: never)."""
    remove_halted: bool = True
    """Release slotted symbols the Track A scan shows halted; they compete again once trading resumes."""
    remove_at_price_limit: bool = True
    """Release slotted symbols at the day's upper or lower price limit (the seed's "Symbol Removal")."""

    @model_validator(mode="after")
    def _churn_levels(self) -> SlotSettings:
        if self.calm_replacements_per_hour > self.churn_replacements_per_hour:
            raise ValueError("calm_replacements_per_hour must not exceed churn_replacements_per_hour")
        return self


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


class GapSettings(Section):
    expected_interval_ms: PositiveInt = 500
    tolerance_ms: int = Field(default=200, ge=0)
    quiet_symbol_factor: PositiveFloat = 10.0


class RecoverySettings(Section):
    immediate_below_seconds: PositiveFloat = 5.0
    queued_up_to_seconds: PositiveFloat = 60.0


def _naive(value: time | None) -> time | None:
    if value is not None and value.tzinfo is not None:
        raise ValueError("give a plain HH:MM time; every schedule and session time is KST")
    return value


class TradingSession(Section):
    """One continuous trading session of a venue, `start <= t < end` in KST (e.g. NXT's after-market)."""

    name: str = Field(min_length=1)
    start: time
    end: time

    _naive_times = field_validator("start", "end")(_naive)

    @model_validator(mode="after")
    def _ordered(self) -> TradingSession:
        if self.start >= self.end:
            raise ValueError(f"session {self.name!r} must start before it ends")
        return self

    def contains(self, moment: time) -> bool:
        return self.start <= moment < self.end


class SessionSettings(Section):
    """Each venue's trading sessions. Defaults: KRX's regular session, and Nextrade's pre-market, main and
    after-market sessions (since March 2025). KRX's own pre- and after-markets are added here as sessions."""

    krx: tuple[TradingSession, ...] = (TradingSession(name="regular", start=time(9, 0), end=time(15, 30)),)
    nxt: tuple[TradingSession, ...] = (
        TradingSession(name="pre", start=time(8, 0), end=time(8, 50)),
        TradingSession(name="main", start=time(9, 0), end=time(15, 20)),
        TradingSession(name="after", start=time(15, 30), end=time(20, 0)),
    )

    @model_validator(mode="after")
    def _apart(self) -> SessionSettings:
        for venue in ("krx", "nxt"):
            sessions = sorted(getattr(self, venue), key=lambda session: session.start)
            if any(earlier.end > later.start for earlier, later in pairwise(sessions)):
                raise ValueError(f"sessions.{venue}: sessions overlap")
        return self

    def of(self, venue: str) -> tuple[TradingSession, ...]:
        """The sessions of `venue` ("KRX" or "NXT")."""
        return self.krx if venue == "KRX" else self.nxt if venue == "NXT" else ()

    def span(self, feed: Feed) -> tuple[time, time]:
        """(first open, last close) over the venues `feed` carries."""
        sessions = [session for venue in FEED_VENUES[feed] for session in self.of(venue)]
        if not sessions:
            raise ValueError(f"no trading session configured for the {feed} feed")
        return min(session.start for session in sessions), max(session.end for session in sessions)


WAKEUP_BEFORE_OPEN = timedelta(hours=1)


TOKEN_REFRESH_BEFORE_OPEN = timedelta(minutes=30)


NOISE_MARGIN = timedelta(minutes=30)
"""Track B starts this long after the open and stops this long before the close (the design's noise filter:
09:00-09:30 and 15:00-15:30 on a KRX day)."""


def _shifted(moment: time, delta: timedelta) -> time:
    minutes = (moment.hour * 60 + moment.minute + int(delta.total_seconds()) // 60) % (24 * 60)
    return time(minutes // 60, minutes % 60, moment.second)


class ScheduleSettings(Section):
    """KST times of the trading day (core/schedule.py turns them into phases and events).

    Phases: IDLE until `wakeup_time`, WARMUP, TRACK_A_ONLY from `track_a_start`, FULL_OPERATION from
    `track_b_start`, TRACK_A_CLOSING from `track_b_stop`, SHUTDOWN from `track_a_stop`, IDLE again from
    `idle_time`. The phase times must be in that order within one day.

    A phase time left unset follows the trading sessions of the feed (`Settings` fills it in): Track A runs
    from the first open to the last close, Track B from 30 minutes after the open to 30 minutes before the
    close, the wakeup is an hour before the open and the token refresh half an hour before it.
    """

    universe_time: time = time(5, 0)
    wakeup_time: time | None = None
    token_refresh_time: time | None = None
    track_a_start: time | None = None
    track_b_start: time | None = None
    track_b_stop: time | None = None
    track_a_stop: time | None = None
    backup_time: time = time(21, 0)
    token_check_time: time = time(23, 0)
    idle_time: time = time(21, 0)

    _naive_times = field_validator("*")(_naive)

    @property
    def resolved(self) -> bool:
        return None not in (
            self.wakeup_time, self.token_refresh_time, self.track_a_start, self.track_b_start,
            self.track_b_stop, self.track_a_stop,
        )

    def following(self, opens: time, closes: time) -> ScheduleSettings:
        """This schedule with every unset phase time derived from a trading day of `opens` to `closes`."""
        derived = {
            "wakeup_time": _shifted(opens, -WAKEUP_BEFORE_OPEN),
            "token_refresh_time": _shifted(opens, -TOKEN_REFRESH_BEFORE_OPEN),
            "track_a_start": opens,
            "track_b_start": _shifted(opens, NOISE_MARGIN),
            "track_b_stop": _shifted(closes, -NOISE_MARGIN),
            "track_a_stop": closes,
        }
        values = self.model_dump()
        values.update({name: value for name, value in derived.items() if values[name] is None})
        return ScheduleSettings(**values)

    @model_validator(mode="after")
    def _phases_in_order(self) -> ScheduleSettings:
        if not self.resolved:
            return self
        order = ("wakeup_time", "track_a_start", "track_b_start", "track_b_stop", "track_a_stop", "idle_time")
        times = [getattr(self, name) for name in order]
        if any(earlier >= later for earlier, later in pairwise(times)):
            raise ValueError("phase times must increase: " + " < ".join(order))
        return self
