"""Value types shared across the decision core: what a trigger is and what a ranked candidate is."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class TriggerKind(StrEnum):
    VOLUME_SURGE = "volume_surge"
    TRADE_VELOCITY = "trade_velocity"
    VOLATILITY_SPIKE = "volatility_spike"
    MANUAL = "manual"
    REALTIME_VOLUME = "realtime_volume"
    REALTIME_PRICE_MOVE = "realtime_price_move"
    NEAR_SIGNAL = "near_signal"  # the hybrid Top-N: near a signal threshold (core.closeness), no trigger


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Trigger(Frozen):
    """A condition that held for `symbol` at `detected_at`; alive until `expires_at` (None: never)."""

    symbol: str
    kind: TriggerKind
    strength: float = Field(ge=0.0, le=1.0)
    value: float
    threshold: float
    detected_at: AwareDatetime
    expires_at: AwareDatetime | None

    def alive_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


class Candidate(Frozen):
    """One symbol competing for a WebSocket slot, scored from its strongest live trigger."""

    symbol: str
    score: float
    market_cap: float = 0.0
    trigger: TriggerKind
    strength: float = Field(ge=0.0, le=1.0)
    detected_at: AwareDatetime
