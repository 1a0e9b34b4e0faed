"""Priority score and candidate ranking (symbol_selection_architecture.md, "Priority score").

score = weight(kind) x (1 + strength) + market_cap_weight x log10(market cap)

A missing, non-finite or sub-1 market cap contributes 0 (the seed's edge case: rank by trigger strength
alone, with a warning). Ranking is a total order: score descending, then market cap descending (the
seed's "trigger fairness"), then code ascending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from core.models import Candidate, Trigger, TriggerKind
from core.settings import TriggerSettings


class Ranking(NamedTuple):
    candidates: tuple[Candidate, ...]
    warnings: tuple[str, ...]


def weight(kind: TriggerKind, settings: TriggerSettings) -> float:
    """The kind's configured weight (`NEAR_SIGNAL` candidates are scored by `core.closeness`, never here)."""
    if kind is TriggerKind.VOLUME_SURGE:
        return settings.volume_surge.weight
    if kind is TriggerKind.TRADE_VELOCITY:
        return settings.trade_velocity.weight
    if kind is TriggerKind.VOLATILITY_SPIKE:
        return settings.volatility_spike.weight
    if kind is TriggerKind.MANUAL:
        return settings.manual.weight
    if kind is TriggerKind.REALTIME_VOLUME:
        return settings.realtime.volume_weight
    return settings.realtime.price_move_weight


def usable_market_cap(market_cap: float | None) -> float:
    """The market cap as scored: unknown, non-finite or below 1 counts as 0."""
    if market_cap is None or not math.isfinite(market_cap) or market_cap < 1.0:
        return 0.0
    return float(market_cap)


def score(trigger: Trigger, market_cap: float | None, settings: TriggerSettings) -> float:
    cap = usable_market_cap(market_cap)
    cap_term = settings.market_cap_weight * math.log10(cap) if cap > 0 else 0.0
    return weight(trigger.kind, settings) * (1.0 + trigger.strength) + cap_term


def _stronger(trigger: Trigger, held: Trigger, weights: Mapping[TriggerKind, float]) -> bool:
    """The seed's choice between two triggers of a symbol: higher strength; ties by weight, kind name (a
    `StrEnum` compares as its value), then the earlier detection."""
    new = (trigger.strength, weights[trigger.kind], trigger.kind)
    old = (held.strength, weights[held.kind], held.kind)
    return new > old or (new == old and trigger.detected_at < held.detected_at)


class Scored(NamedTuple):
    """A symbol's place in the ranking before it becomes a `Candidate` (a model costs more to build than
    all the rest of the ranking: only a ranking that is sent needs them)."""

    score: float
    market_cap: float
    symbol: str
    trigger: Trigger


def score_symbols(
    triggers: Iterable[Trigger],
    market_caps: Mapping[str, float | None],
    now: datetime,
    settings: TriggerSettings,
) -> list[Scored]:
    """Each symbol with a trigger alive at `now`, scored from its strongest trigger; best first.

    Runs on the tick path whenever a trigger is added, over every live trigger: one pass keeps each
    symbol's strongest, and the weights are looked up once."""
    weights = {kind: weight(kind, settings) for kind in TriggerKind}
    strongest: dict[str, Trigger] = {}
    for trigger in triggers:
        if trigger.alive_at(now):
            held = strongest.get(trigger.symbol)
            if held is None or _stronger(trigger, held, weights):
                strongest[trigger.symbol] = trigger
    scored: list[Scored] = []
    for symbol, best in strongest.items():
        market_cap = market_caps.get(symbol)
        scored.append(Scored(score(best, market_cap, settings), usable_market_cap(market_cap), symbol, best))
    scored.sort(key=lambda entry: (-entry.score, -entry.market_cap, entry.symbol))
    return scored


def rank_candidates(
    triggers: Iterable[Trigger],
    market_caps: Mapping[str, float | None],
    now: datetime,
    settings: TriggerSettings,
) -> Ranking:
    """One candidate per symbol with a trigger alive at `now`, from its strongest trigger; best first."""
    return ranking_of(score_symbols(triggers, market_caps, now, settings))


def ranking_of(scored: Sequence[Scored]) -> Ranking:
    """The candidates of a `score_symbols` result, with a warning naming those without a market cap."""
    candidates = tuple(
        Candidate(symbol=entry.symbol, score=entry.score, market_cap=entry.market_cap,
                  trigger=entry.trigger.kind, strength=entry.trigger.strength,
                  detected_at=entry.trigger.detected_at)
        for entry in scored
    )
    missing = sorted(entry.symbol for entry in scored if entry.market_cap == 0.0)
    warnings: tuple[str, ...] = ()
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        warnings = (f"market cap missing for {len(missing)} candidates (scored as 0): {shown}",)
    return Ranking(candidates=candidates, warnings=warnings)
