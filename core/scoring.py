"""Priority score and candidate ranking (symbol_selection_architecture.md, "Priority score").

score = weight(kind) x (1 + strength) + market_cap_weight x log10(market cap)

A missing, non-finite or sub-1 market cap contributes 0 (the seed's edge case: rank by trigger strength
alone, with a warning). Ranking is a total order: score descending, then market cap descending (the
seed's "trigger fairness"), then code ascending.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import NamedTuple

from config.settings import TriggerSettings
from core.models import Candidate, Trigger, TriggerKind


class Ranking(NamedTuple):
    candidates: tuple[Candidate, ...]
    warnings: tuple[str, ...]


def weight(kind: TriggerKind, settings: TriggerSettings) -> float:
    if kind is TriggerKind.VOLUME_SURGE:
        return settings.volume_surge.weight
    if kind is TriggerKind.TRADE_VELOCITY:
        return settings.trade_velocity.weight
    if kind is TriggerKind.VOLATILITY_SPIKE:
        return settings.volatility_spike.weight
    if kind is TriggerKind.MANUAL:
        return settings.manual.weight
    return settings.realtime.weight


def usable_market_cap(market_cap: float | None) -> float:
    """The market cap as scored: unknown, non-finite or below 1 counts as 0."""
    if market_cap is None or not math.isfinite(market_cap) or market_cap < 1.0:
        return 0.0
    return float(market_cap)


def score(trigger: Trigger, market_cap: float | None, settings: TriggerSettings) -> float:
    cap = usable_market_cap(market_cap)
    cap_term = settings.market_cap_weight * math.log10(cap) if cap > 0 else 0.0
    return weight(trigger.kind, settings) * (1.0 + trigger.strength) + cap_term


def _strongest(triggers: list[Trigger], settings: TriggerSettings) -> Trigger:
    """The seed's choice: highest strength; ties by weight, kind name, then the earliest detection."""
    return max(
        triggers,
        key=lambda t: (t.strength, weight(t.kind, settings), t.kind.value, -t.detected_at.timestamp()),
    )


def rank_candidates(
    triggers: Iterable[Trigger],
    market_caps: Mapping[str, float | None],
    now: datetime,
    settings: TriggerSettings,
) -> Ranking:
    """One candidate per symbol with a trigger alive at `now`, from its strongest trigger; best first."""
    by_symbol: dict[str, list[Trigger]] = {}
    for trigger in triggers:
        if trigger.alive_at(now):
            by_symbol.setdefault(trigger.symbol, []).append(trigger)
    candidates: list[Candidate] = []
    missing: list[str] = []
    for symbol, held in by_symbol.items():
        best = _strongest(held, settings)
        raw_cap = market_caps.get(symbol)
        cap = usable_market_cap(raw_cap)
        if cap == 0.0:
            missing.append(symbol)
        candidates.append(
            Candidate(
                symbol=symbol,
                score=score(best, cap, settings),
                market_cap=cap,
                trigger=best.kind,
                strength=best.strength,
                detected_at=best.detected_at,
            )
        )
    candidates.sort(key=lambda c: (-c.score, -c.market_cap, c.symbol))
    warnings: tuple[str, ...] = ()
    if missing:
        missing.sort()
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        warnings = (f"market cap missing for {len(missing)} candidates (scored as 0): {shown}",)
    return Ranking(candidates=tuple(candidates), warnings=warnings)
