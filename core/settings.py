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
    """A group of settings: immutable, unknown keys rejected, each field documented by the string under it."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)


Feed = Literal["krx", "nxt", "unified"]
"""The realtime trade feeds KIS serves: KRX only, Nextrade (NXT) only, or both venues unified."""


DEFAULT_FEED: Feed = "unified"
"""Both venues' trades in one registration: no trade of either venue is missed."""

FEED_VENUES: dict[str, tuple[str, ...]] = {"krx": ("KRX",), "nxt": ("NXT",), "unified": ("KRX", "NXT")}
"""The venues whose trades each feed carries."""


class UniverseSettings(Section):
    """The day's universe: which listed stocks are scanned and may get a slot."""

    min_close_price: PositiveInt = 4000
    """Symbols whose previous close is below this price (KRW) are left out of the universe."""
    exclude_suspended: bool = True
    """Leave out symbols halted from trading."""
    exclude_managed: bool = False
    """Leave out managed issues (관리종목)."""
    min_symbol_count: PositiveInt = 100
    """A universe with fewer symbols than this is kept but warned about."""
    cache_days: PositiveInt = 10
    """Days of universe snapshots kept in `config/universe/` (a fallback when the build fails)."""
    markets: tuple[Literal["KOSPI", "KOSDAQ"], ...] = ("KOSPI", "KOSDAQ")
    """The markets whose stocks make up the universe."""
    master_base_url: str | None = None
    """Where `kospi_code.mst.zip` / `kosdaq_code.mst.zip` are downloaded from. None: KIS's official
    download host (`kis.master.MASTER_URLS`), or `{rest_url}/master` when running against the simulator."""


class TriggerRule(Section):
    """One trigger kind. `ttl_seconds` None means no expiry (manual override)."""

    enabled: bool = True
    """Whether this trigger is detected at all."""
    threshold: float = 0.0
    """The level at which the trigger fires (its unit depends on the kind; unused for manual overrides)."""
    ttl_seconds: PositiveFloat | None = 300.0
    """Seconds a trigger lives without firing again; None: until released."""
    weight: PositiveFloat = 1.0
    """How much this kind counts in a candidate's score (weight x (1 + strength))."""


class VolumeSurgeRule(TriggerRule):
    """Volume surge, checked on every Track A scan row against the 20-day average volume."""

    threshold: float = 3.0
    """Fires when today's volume is this many times the 20-day average, scaled to the session so far."""
    mild: float = 2.0
    """Volume ratio the seed calls a mild surge (a severity label only: nothing fires below `threshold`)."""
    severe: float = 5.0
    """Volume ratio rated severe; strength is the ratio divided by this (capped at 1)."""
    ttl_seconds: PositiveFloat | None = 300.0
    """Seconds a volume surge lives without firing again."""
    weight: PositiveFloat = 10.0
    """Score weight of a volume surge."""


class TradeVelocityRule(TriggerRule):
    """Trade velocity, counted on the tick path for slotted symbols."""

    threshold: float = 10.0
    """Fires at this many trades per second over the window."""
    window_seconds: PositiveFloat = 10.0
    """Seconds of the sliding window the trade rate is counted over."""
    ttl_seconds: PositiveFloat | None = 180.0
    """Seconds a trade-velocity trigger lives without firing again."""
    weight: PositiveFloat = 8.0
    """Score weight of a trade-velocity trigger."""


class VolatilitySpikeRule(TriggerRule):
    """Volatility spike, checked on every Track A scan row against the ATR."""

    threshold: float = 2.0
    """Fires when today's true range is this many times the ATR."""
    atr_days: PositiveInt = 14
    """Trading days of the average true range (ATR) the range is compared with."""
    ttl_seconds: PositiveFloat | None = 300.0
    """Seconds a volatility spike lives without firing again."""
    weight: PositiveFloat = 6.0
    """Score weight of a volatility spike."""


class ManualRule(TriggerRule):
    """Manual overrides: symbols a trader wants watched whatever the triggers say."""

    ttl_seconds: PositiveFloat | None = None
    """Seconds a manual override lives; None: until released."""
    weight: PositiveFloat = 5.0
    """Score weight of a manual override (overrides are pinned first anyway)."""
    symbols: tuple[str, ...] = ()
    """Symbols (6-digit codes) always watched, as manual overrides from the start."""
    picks_time: time = time(7, 20)
    """KST time at which day's picks loaded with `"when": "scheduled"` replace the previous ones, and the
    picks file or URL is read (at start instead, when the process starts later on a trading day)."""
    picks_file: str | None = None
    """A JSON file of the day's picks, read at `picks_time`: a list of symbols or `{"symbol", "score"}`
    objects, or `{"picks": [...]}`; they replace the whole picks tier. None: no file."""
    picks_url: str | None = None
    """An http(s) URL answering the same JSON as `picks_file`, fetched at `picks_time` (after the file when
    both are set, the first that answers wins). None: no URL."""


class RealtimeDetectorRule(Section):
    """track_b_independent_scanner.md: 5x one-minute volume, 5 % move within a 60 s window.

    Its priorities, 0.9 for a volume surge and 0.95 for a volatility spike, are the weights: on the main
    profile's scale (volume surge 10) they are 9.0 and 9.5; the `realtime` profile uses 0.9 and 0.95 as
    written. Only their ratio matters to the ranking and the replacement threshold.
    """

    enabled: bool = False
    """Run the tick-path detectors (the `realtime` profile turns them on)."""
    volume_ratio: PositiveFloat = 5.0
    """Fires when the window's volume is this many times the average volume for that span."""
    price_move_pct: PositiveFloat = 5.0
    """Fires when the price moves this many percent, up or down, within the window."""
    window_seconds: PositiveFloat = 60.0
    """Seconds of the sliding window both detectors look at."""
    ttl_seconds: PositiveFloat = 300.0
    """Seconds a detector's trigger lives without firing again."""
    volume_weight: PositiveFloat = 9.0
    """Score weight of a volume trigger."""
    price_move_weight: PositiveFloat = 9.5
    """Score weight of a price-move trigger."""


class TriggerSettings(Section):
    """The triggers that make a symbol a candidate for a slot, and how candidates are scored."""

    volume_surge: VolumeSurgeRule = VolumeSurgeRule()
    trade_velocity: TradeVelocityRule = TradeVelocityRule()
    volatility_spike: VolatilitySpikeRule = VolatilitySpikeRule()
    manual: ManualRule = ManualRule()
    realtime: RealtimeDetectorRule = RealtimeDetectorRule()
    market_cap_weight: float = 0.1
    """Weight of log10(market cap in KRW) added to a candidate's score; a missing cap counts 0."""


class SlotSettings(Section):
    """Track B: who gets the WebSocket slots, and how often they change hands."""

    max_slots: int = Field(default=41, ge=1, le=41)
    """WebSocket tick slots (symbols whose trades stream) per app key; with the order books and program
    trading (`websocket.order_book_*`, `program_trading_*`) they share the key's 41 registrations."""
    replacement_threshold: float = Field(default=1.2, ge=1.0)
    """A candidate replaces the weakest slotted symbol only when its score beats that symbol's times this."""
    min_dwell_seconds: float = Field(default=120.0, ge=0)
    """Seconds a symbol stays slotted before a better candidate may replace it."""
    resubscribe_cooldown_seconds: float = Field(default=180.0, ge=0)
    """Seconds after a symbol's release before it may be subscribed again."""
    rebalance_interval_seconds: PositiveFloat = 30.0
    """Seconds between two allocations of the slots from the latest ranking."""
    watchlist: tuple[str, ...] = ()
    """Symbols (6-digit codes) always slotted and never evicted, like held positions."""
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
    """Overflow: competing symbols left without a slot, and when their share raises an alert."""

    alert_levels: tuple[float, ...] = (0.05, 0.10, 0.20)
    """Overflow rates (share of competing symbols left without a slot) that raise an alert when crossed."""
    window_seconds: PositiveFloat = 3600.0
    """Seconds over which the overflow rate is measured."""


class SignalSettings(Section):
    """The hybrid design's signals (websocket_monitor_hybrid.md section 4)."""

    enabled: bool = False
    """Evaluate the drop signals (disparity, return, turnover) and alert on them (on in hybrid profiles)."""
    disparity_threshold: float = -0.08
    """Alerts when price / the 20-day average close (the universe's baselines) - 1 is at or below this
    (-0.08 = 8 % under the average)."""
    return_minutes: PositiveInt = 5
    """Minutes of the return measured for the return-drop signal."""
    return_threshold_pct: float = -3.0
    """Alerts when that return (%) is at or below this."""
    turnover_surge_ratio: PositiveFloat = 3.0
    """Alerts when today's turnover runs at this many times a normal day's pace while the price is below the
    previous close."""
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
    """When a silence in a symbol's trades counts as a gap."""

    expected_interval_ms: PositiveInt = 500
    """Milliseconds expected between two trades of a busy symbol."""
    tolerance_ms: int = Field(default=200, ge=0)
    """Milliseconds of silence allowed on top of that before a gap is recorded."""
    quiet_symbol_factor: PositiveFloat = 10.0
    """A quieter symbol's gap threshold: this many times the median of its recent intervals between trades."""


class RecoverySettings(Section):
    """How a gap is filled, by its length."""

    immediate_below_seconds: PositiveFloat = 5.0
    """Gaps shorter than this (seconds) are back-filled from REST at once."""
    queued_up_to_seconds: PositiveFloat = 60.0
    """Gaps up to this long (seconds) are back-filled from the recovery queue; longer ones get a marker."""


def _naive(value: time | None) -> time | None:
    if value is not None and value.tzinfo is not None:
        raise ValueError("give a plain HH:MM time; every schedule and session time is KST")
    return value


class WakeupSettings(Section):
    """The pre-market wake-up sequence (`core.wakeup`): how a failed step is tried again."""

    max_retries: int = Field(default=3, ge=0)
    """Times a failed wake-up step (the pre-market token refresh included) is tried again before it has
    failed for the day."""
    retry_seconds: PositiveFloat = 60.0
    """Seconds (clock time) from a failed attempt of a step to the next."""
    preconnect_wait_seconds: PositiveFloat = 30.0
    """Seconds the pre-connect and the health checks wait for every key's WebSocket to be open before they
    count as failed."""


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
    """KRX's trading sessions (KST), each `{"name", "start", "end"}`."""
    nxt: tuple[TradingSession, ...] = (
        TradingSession(name="pre", start=time(8, 0), end=time(8, 50)),
        TradingSession(name="main", start=time(9, 0), end=time(15, 20)),
        TradingSession(name="after", start=time(15, 30), end=time(20, 0)),
    )
    """Nextrade's trading sessions (KST), each `{"name", "start", "end"}`."""

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

    def krx_close(self) -> time | None:
        """The end of KRX's last session (its closing auction ends then), or None without KRX sessions."""
        return max((session.end for session in self.krx), default=None)

    def span(self, feed: Feed) -> tuple[time, time]:
        """(first open, last close) over the venues `feed` carries."""
        sessions = [session for venue in FEED_VENUES[feed] for session in self.of(venue)]
        if not sessions:
            raise ValueError(f"no trading session configured for the {feed} feed")
        return min(session.start for session in sessions), max(session.end for session in sessions)


WAKEUP_BEFORE_OPEN = timedelta(hours=1)
"""symbol_selection_architecture.md "Wake-up Schedule", relative to KRX's 09:00 open: wake-up 08:00,
WebSocket pre-connect 08:03, system warm-up 08:05, health check 08:10, pre-market token refresh 08:30, ready
08:50. A feed that opens at another time (the unified feed at 08:00) keeps the same distances."""
PRECONNECT_BEFORE_OPEN = timedelta(minutes=57)
SYSTEM_WARMUP_BEFORE_OPEN = timedelta(minutes=55)
HEALTH_CHECK_BEFORE_OPEN = timedelta(minutes=50)
TOKEN_REFRESH_BEFORE_OPEN = timedelta(minutes=30)
READY_BEFORE_OPEN = timedelta(minutes=10)


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
    close; the wake-up sequence keeps the seed's distances to the open (wake-up 60 minutes before it,
    WebSocket pre-connect 57, system warm-up 55, health check 50, token refresh 30, ready 10), and the closing
    pass follows KRX's last close.
    """

    universe_time: time = time(5, 0)
    """When the day's universe is built (KST)."""
    wakeup_time: time | None = None
    """WARMUP starts (KST); unset: an hour before the first open."""
    token_refresh_time: time | None = None
    """Tokens and approval keys are renewed before the open (KST); unset: half an hour before it."""
    preconnect_time: time | None = None
    """Every key's WebSocket is opened, without registrations (KST); unset: 57 minutes before the open."""
    system_warmup_time: time | None = None
    """The warm-up checks the credentials and the day's universe (KST); unset: 55 minutes before the open."""
    health_check_time: time | None = None
    """The health check (token, REST, every WebSocket) runs (KST); unset: 50 minutes before the first open."""
    ready_time: time | None = None
    """The ready signal: every wake-up step done, or an alert naming those that are not (KST); unset: 10
    minutes before the first open."""
    track_a_start: time | None = None
    """Track A's scans start (KST); unset: the first open of the feed's venues."""
    track_b_start: time | None = None
    """Track B's realtime slots start (KST); unset: 30 minutes after the first open."""
    track_b_stop: time | None = None
    """Track B stops (KST); unset: 30 minutes before the last close."""
    track_a_stop: time | None = None
    """Track A stops and SHUTDOWN begins (KST); unset: the last close."""
    closing_pass_time: time | None = None
    """A last Track A pass captures the closing auction's prices (KST); unset: KRX's last close (15:30), none
    without KRX sessions."""
    backup_time: time = time(21, 0)
    """The daily job packs the day's archive and removes expired files (KST)."""
    token_check_time: time = time(23, 0)
    """The nightly check renews tokens older than `tokens.proactive_refresh_hours` (KST)."""
    idle_time: time = time(21, 0)
    """IDLE starts until the next wakeup (KST)."""

    _naive_times = field_validator("*")(_naive)

    @property
    def resolved(self) -> bool:
        return None not in (
            self.wakeup_time, self.preconnect_time, self.system_warmup_time, self.health_check_time,
            self.token_refresh_time, self.ready_time, self.track_a_start, self.track_b_start,
            self.track_b_stop, self.track_a_stop,
        )

    def following(self, opens: time, closes: time, krx_close: time | None = None) -> ScheduleSettings:
        """This schedule with every unset time derived from a trading day of `opens` to `closes` (the closing
        pass from `krx_close`)."""
        derived = {
            "wakeup_time": _shifted(opens, -WAKEUP_BEFORE_OPEN),
            "preconnect_time": _shifted(opens, -PRECONNECT_BEFORE_OPEN),
            "system_warmup_time": _shifted(opens, -SYSTEM_WARMUP_BEFORE_OPEN),
            "health_check_time": _shifted(opens, -HEALTH_CHECK_BEFORE_OPEN),
            "token_refresh_time": _shifted(opens, -TOKEN_REFRESH_BEFORE_OPEN),
            "ready_time": _shifted(opens, -READY_BEFORE_OPEN),
            "closing_pass_time": krx_close,
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
