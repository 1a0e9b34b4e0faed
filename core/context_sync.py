"""Track B context synchronisation: the opening half hour from Track A, for the first allocation at 09:30.

Follows symbol_selection_architecture.md "Track B Context Synchronization" step by step:

1. Opening data: every Track A snapshot captured in [09:00, target] (the seed reads its "last 3", which at
   its 10-minute scan interval is the whole window; `max_snapshots` reproduces that limit). Per symbol, over
   its snapshots in capture order: open = first close, high = max close, low = min close, close = last close,
   volume = sum of the snapshots' volumes (as the seed does; with cumulative volumes this weights later
   snapshots, and the ratio to the average below stays comparable across symbols).
2. Baseline: avg_volume = mean volume over symbols; avg_volatility = mean of (high - low) / open over
   symbols with open > 0; thresholds = 1.5 x each average.
3. Ranking: volume_ratio = volume / avg_volume, volatility_ratio = ((high - low) / open) / avg_volatility,
   price_change = |close - open| / open (each 0 when its divisor is 0), and
   score = 0.4 x volume_ratio + 0.3 x volatility_ratio + 0.3 x price_change x 100, best first.
4. Candidates: VOLUME_SURGE with strength min(volume_ratio / 3, 1) and the score above, detected at the
   target time; the first `limit` (41 by default) go to the initial allocation.
Ties in score keep symbol order, so the result does not depend on snapshot order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter, ValidationError

from core.models import Candidate, TriggerKind

VOLUME_WEIGHT = 0.4
VOLATILITY_WEIGHT = 0.3
PRICE_CHANGE_WEIGHT = 0.3
THRESHOLD_FACTOR = 1.5
FULL_STRENGTH_VOLUME_RATIO = 3.0


@dataclass(frozen=True, slots=True)
class SnapshotQuote:
    """One symbol in one Track A snapshot: its price at capture time and the volume the snapshot holds."""

    symbol: str
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class TrackASnapshot:
    captured_at: datetime
    quotes: tuple[SnapshotQuote, ...]


class BaselineMetrics(BaseModel):
    """The opening half hour's market-wide baseline, handed to the trigger engine."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    avg_volume: float
    avg_volatility: float
    volume_threshold: float
    volatility_threshold: float
    sample_count: int


@dataclass(frozen=True, slots=True)
class OpeningBar:
    """One symbol's opening half hour, rebuilt from the snapshot closes."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def volatility(self) -> float:
        return (self.high - self.low) / self.open if self.open > 0 else 0.0


@dataclass(frozen=True, slots=True)
class OpeningMover:
    """One symbol's opening activity and its rank score."""

    symbol: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    volume_ratio: float
    volatility_ratio: float
    price_change: float
    score: float


@dataclass(frozen=True, slots=True)
class ContextSync:
    """Baseline, all movers best first, and the candidates for the 09:30 allocation."""

    baseline: BaselineMetrics
    movers: tuple[OpeningMover, ...]
    candidates: tuple[Candidate, ...]
    snapshot_count: int


def synchronize_context(
    snapshots: Iterable[TrackASnapshot],
    window_start: datetime,
    target: datetime,
    *,
    limit: int = 41,
    max_snapshots: int | None = None,
) -> ContextSync:
    """Baseline and ranked opening movers from the snapshots captured in [window_start, target]."""
    if window_start.tzinfo is None or target.tzinfo is None:
        raise ValueError("context sync needs aware window times")
    if target < window_start:
        raise ValueError(f"context sync window ends ({target}) before it starts ({window_start})")
    inside = sorted((s for s in snapshots if window_start <= s.captured_at <= target),
                    key=lambda s: s.captured_at)
    if max_snapshots is not None:
        inside = inside[-max_snapshots:] if max_snapshots > 0 else []
    opening = _opening_bars(inside)
    baseline = baseline_metrics(opening.values())
    movers = rank_opening_movers(opening.values(), baseline)
    return ContextSync(baseline, movers, opening_candidates(movers[:limit], target), len(inside))


def _opening_bars(snapshots: Sequence[TrackASnapshot]) -> dict[str, OpeningBar]:
    closes: dict[str, list[float]] = {}
    volumes: dict[str, float] = {}
    for snapshot in snapshots:
        for quote in snapshot.quotes:
            series = closes.get(quote.symbol)
            if series is None:
                closes[quote.symbol] = [quote.close]
                volumes[quote.symbol] = quote.volume
            else:
                series.append(quote.close)
                volumes[quote.symbol] += quote.volume
    return {
        symbol: OpeningBar(symbol, series[0], max(series), min(series), series[-1], volumes[symbol])
        for symbol, series in closes.items()
    }


def baseline_metrics(bars: Iterable[OpeningBar]) -> BaselineMetrics:
    bars = list(bars)
    if not bars:
        return BaselineMetrics(avg_volume=0.0, avg_volatility=0.0, volume_threshold=0.0,
                               volatility_threshold=0.0, sample_count=0)
    avg_volume = sum(bar.volume for bar in bars) / len(bars)
    volatilities = [bar.volatility for bar in bars if bar.open > 0]
    avg_volatility = sum(volatilities) / len(volatilities) if volatilities else 0.0
    return BaselineMetrics(
        avg_volume=avg_volume,
        avg_volatility=avg_volatility,
        volume_threshold=avg_volume * THRESHOLD_FACTOR,
        volatility_threshold=avg_volatility * THRESHOLD_FACTOR,
        sample_count=len(bars),
    )


def rank_opening_movers(bars: Iterable[OpeningBar], baseline: BaselineMetrics) -> tuple[OpeningMover, ...]:
    movers = []
    for bar in bars:
        volume_ratio = bar.volume / baseline.avg_volume if baseline.avg_volume > 0 else 0.0
        volatility_ratio = bar.volatility / baseline.avg_volatility if baseline.avg_volatility > 0 else 0.0
        price_change = abs(bar.close - bar.open) / bar.open if bar.open > 0 else 0.0
        score = (VOLUME_WEIGHT * volume_ratio + VOLATILITY_WEIGHT * volatility_ratio
                 + PRICE_CHANGE_WEIGHT * price_change * 100)
        movers.append(OpeningMover(bar.symbol, bar.open, bar.high, bar.low, bar.close, bar.volume,
                                   volume_ratio, volatility_ratio, price_change, score))
    movers.sort(key=lambda mover: (-mover.score, mover.symbol))
    return tuple(movers)


def opening_candidates(movers: Iterable[OpeningMover], detected_at: datetime) -> tuple[Candidate, ...]:
    """The seed's context-sync candidates: VOLUME_SURGE, strength from the volume ratio, score as ranked."""
    return tuple(
        Candidate(symbol=mover.symbol, score=mover.score, trigger=TriggerKind.VOLUME_SURGE,
                  strength=min(mover.volume_ratio / FULL_STRENGTH_VOLUME_RATIO, 1.0), detected_at=detected_at)
        for mover in movers
    )


def degraded_reason(snapshot_count: int, needed: int) -> str | None:
    """Why a sync from `snapshot_count` snapshots is the seed's degraded mode (Track B starts without
    context: no baseline, no opening movers), or None when there are enough."""
    if snapshot_count >= needed:
        return None
    return (f"{snapshot_count} of the {needed} Track A snapshots needed: Track B started without context "
            "(degraded mode)")


class _StoredQuote(BaseModel):
    model_config = ConfigDict(extra="ignore")

    symbol: str
    price: Mapping[str, float]
    volume: float


class _StoredSnapshot(BaseModel):
    model_config = ConfigDict(extra="ignore")

    meta: Mapping[str, Any]
    instruments: tuple[_StoredQuote, ...]


_CAPTURED_AT = TypeAdapter(AwareDatetime)


def snapshot_from_record(record: Any) -> TrackASnapshot:
    """Read one Track A snapshot line in the seed's shape:
    `{"meta": {"captured_at": ...}, "instruments": [{"symbol", "price": {"close", ...}, "volume"}, ...]}`.

    Raises ValueError with a one-line message on anything else.
    """
    try:
        stored = _StoredSnapshot.model_validate(record)
        captured_at = _CAPTURED_AT.validate_python(stored.meta.get("captured_at"))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "meta.captured_at"
        raise ValueError(f"bad Track A snapshot at {where}: {first['msg']}") from None
    quotes = []
    for position, quote in enumerate(stored.instruments):
        if "close" not in quote.price:
            raise ValueError(f"bad Track A snapshot at instruments.{position}.price: no close price")
        quotes.append(SnapshotQuote(quote.symbol, quote.price["close"], quote.volume))
    return TrackASnapshot(captured_at, tuple(quotes))
