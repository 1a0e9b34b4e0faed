"""The hybrid Top-N (websocket_monitor_hybrid.md section 3.5): the scanned symbols nearest to a signal.

Each signal condition of `core.signals` gives a distance, 0 when the condition holds:

* disparity: how far the disparity still is above `disparity_threshold` (a fraction: 0.01 = 1 point);
* return drop: how far the n-minute return still is above `return_threshold_pct`, in the same units
  (percentage points / 100);
* turnover surge with a fall: the share of `turnover_surge_ratio` still missing plus how far the price is
  above the previous close (both must hold).

A symbol's score is the seed's `w1 / (nearest distance + eps) + w2 x intraday volatility + w3 x
log10(turnover)`, with the intraday volatility the day's range (high - low) over the previous close in
percent. A condition whose inputs are unknown has no distance; a symbol with none scores on volatility
and turnover alone. Only symbols within `closeness_horizon` of a threshold become candidates (the seed's
"조건 근접 종목"): a quiet symbol is not watched closely, and is not counted as overflow either.

In the hybrid ranking the manual tier comes first: the day's picks, manual triggers and pins (as
candidates from the trigger book) score above every near-signal symbol by `PRIORITY_MARGIN` (more than any
replacement threshold), so a pick takes a slot from a near-signal symbol and never loses one to it; held
positions and pins are pinned by the slot manager whatever their score.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from core.models import Candidate, TriggerKind
from core.scoring import usable_market_cap
from core.settings import SignalSettings
from core.signals import SignalInputs, SignalKind, disparity, turnover_ratio
from core.triggers import DEFAULT_MIN_SESSION_FRACTION

PRIORITY_MARGIN = 2.0
"""The manual tier's lowest score over the best near-signal score: above the 1.2-1.5 replacement threshold."""


class Near(NamedTuple):
    """One scanned symbol's place in the hybrid Top-N; `nearest` is None when no condition could be judged."""

    symbol: str
    score: float
    nearest: SignalKind | None
    distance: float | None
    strength: float
    inputs: SignalInputs


def distances(
    inputs: SignalInputs, settings: SignalSettings, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION
) -> dict[SignalKind, float]:
    """Each judged condition's distance from its threshold (0 when it holds)."""
    found: dict[SignalKind, float] = {}
    ma = inputs.moving_average
    if ma is not None and ma > 0:
        found[SignalKind.DISPARITY] = max(disparity(inputs.price, ma) - settings.disparity_threshold, 0.0)
    if inputs.return_pct is not None:
        found[SignalKind.RETURN_DROP] = max(inputs.return_pct - settings.return_threshold_pct, 0.0) / 100.0
    ratio = turnover_ratio(inputs, min_fraction)
    if ratio is not None and inputs.prev_close > 0:
        missing = max(1.0 - ratio / settings.turnover_surge_ratio, 0.0)
        above = max(inputs.price / inputs.prev_close - 1.0, 0.0)
        found[SignalKind.TURNOVER_SURGE_FALL] = missing + above
    return found


def intraday_volatility_pct(inputs: SignalInputs) -> float:
    """The day's range so far over the previous close, in percent (0 when unknown)."""
    if inputs.prev_close <= 0 or inputs.high <= 0 or inputs.low <= 0 or inputs.high < inputs.low:
        return 0.0
    return (inputs.high - inputs.low) / inputs.prev_close * 100.0


def closeness(
    inputs: SignalInputs, settings: SignalSettings, min_fraction: float = DEFAULT_MIN_SESSION_FRACTION
) -> Near:
    """One symbol's score: nearness to its closest threshold, volatility and log turnover."""
    judged = distances(inputs, settings, min_fraction)
    nearest: SignalKind | None = None
    distance: float | None = None
    near_term = 0.0
    strength = 0.0
    if judged:
        nearest = min(judged, key=lambda kind: (judged[kind], kind))
        distance = judged[nearest]
        eps = settings.closeness_epsilon
        near_term = settings.closeness_weight / (distance + eps)
        strength = eps / (distance + eps)
    turnover = inputs.turnover or 0.0
    turnover_term = settings.turnover_weight * math.log10(turnover) if turnover >= 1.0 else 0.0
    score = near_term + settings.volatility_weight * intraday_volatility_pct(inputs) + turnover_term
    return Near(inputs.symbol, score, nearest, distance, strength, inputs)


def rank_by_closeness(
    snapshots: Iterable[SignalInputs],
    settings: SignalSettings,
    min_fraction: float = DEFAULT_MIN_SESSION_FRACTION,
) -> list[Near]:
    """Every snapshot scored, best first (ties by code)."""
    ranked = [closeness(inputs, settings, min_fraction) for inputs in snapshots]
    ranked.sort(key=lambda near: (-near.score, near.symbol))
    return ranked


def hybrid_ranking(
    first: Sequence[Candidate],
    near: Sequence[Near],
    market_caps: Mapping[str, float | None],
    horizon: float | None = None,
) -> tuple[Candidate, ...]:
    """The manual tier (`first`, best first) lifted above the near-signal symbols, then those symbols within
    `horizon` of a threshold (all of them when None).

    A symbol of the manual tier is not listed again among the near-signal ones.
    """
    if horizon is not None:
        near = [entry for entry in near if entry.distance is not None and entry.distance <= horizon]
    best_near = near[0].score if near else 0.0
    floor = max(best_near, 1.0) * PRIORITY_MARGIN
    lifted = tuple(
        candidate.model_copy(update={"score": floor + candidate.score}) for candidate in first
    )
    taken = {candidate.symbol for candidate in first}
    rest = tuple(
        Candidate(symbol=entry.symbol, score=entry.score,
                  market_cap=usable_market_cap(market_caps.get(entry.symbol)),
                  trigger=TriggerKind.NEAR_SIGNAL, strength=entry.strength, detected_at=entry.inputs.at)
        for entry in near
        if entry.symbol not in taken
    )
    return (*lifted, *rest)
