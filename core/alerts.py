"""Alerts: the per-(symbol, signal) cooldown that stops spam, the alert text users read, and a readable
label for every kind of alert (the status view and the chat messages show it, the ledger keeps the key).

Text (websocket_monitor_hybrid.md 4.3): code and name, the condition with its threshold and the current
value, and the observation time in KST, e.g.
`[volume_surge] 005930 삼성전자 | volume 3.40x a normal day's pace >= 3.00x | 2026-01-20 10:15:03 KST`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from datetime import datetime, timedelta

from pydantic import AwareDatetime, BaseModel, ConfigDict

from core.calendar import KST
from core.models import Trigger
from core.signals import SignalHit

AlertKey = tuple[str, str]


class Alert(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str
    name: str
    signal: str
    threshold: float
    value: float
    at: AwareDatetime
    text: str


class AlertCooldown:
    """At most one alert per key (symbol, signal) per `cooldown_seconds`.

    `should_send` both checks and claims: when it answers True the send time is recorded. At exactly
    `last + cooldown` the cooldown is over and the alert goes. Not thread-safe: owned by one actor.
    """

    def __init__(self, cooldown_seconds: float, last_sent: Mapping[Hashable, datetime] | None = None) -> None:
        if cooldown_seconds < 0:
            raise ValueError("cooldown_seconds must be >= 0")
        self._cooldown = timedelta(seconds=cooldown_seconds)
        self._last: dict[Hashable, datetime] = dict(last_sent or {})

    def should_send(self, key: Hashable, now: datetime) -> bool:
        last = self._last.get(key)
        if last is not None and now - last < self._cooldown:
            return False
        self._last[key] = now
        return True

    def last_sent(self) -> dict[Hashable, datetime]:
        """Send times by key, for the state store (restore by passing it back to the constructor)."""
        return dict(self._last)

    def prune(self, now: datetime) -> int:
        """Forget keys whose cooldown is over (they would send anyway); return how many went."""
        over = [k for k, t in self._last.items() if now - t >= self._cooldown]
        for key in over:
            del self._last[key]
        return len(over)


def _ratio(label: str) -> Callable[[float, float], str]:
    return lambda v, th: f"{label} {v:.2f}x >= {th:.2f}x"


_CONDITIONS: dict[str, Callable[[float, float], str]] = {
    "volume_surge": _ratio("volume vs a normal day's pace"),
    "trade_velocity": lambda v, th: f"trade velocity {v:.1f}/s >= {th:.1f}/s",
    "volatility_spike": _ratio("true range vs 14-day ATR"),
    "manual": lambda v, th: "manual override",
    "realtime_volume": _ratio("one-minute volume vs average"),
    "realtime_price_move": lambda v, th: f"price move {v:+.2f} % within the window, beyond ±{th:.2f} %",
    "disparity": lambda v, th: f"disparity {v * 100:+.2f} % <= {th * 100:+.2f} %",
    "return_drop": lambda v, th: f"return {v:+.2f} % <= {th:+.2f} %",
    "turnover_surge_fall": lambda v, th: (
        f"turnover vs a normal day's pace {v:.2f}x >= {th:.2f}x while falling"
    ),
    "breakout": lambda v, th: f"price {v:+.2f} % above the prior high, >= {th:.2f} %",
    **{
        f"dolpha1_{level}_{side}": (
            lambda v, th, where=where: f"close {v:.2f} ATR {where} VWAP, beyond {th:.2f} ATR"
        )
        for level in ("monitor", "trade")
        for side, where in (("long", "below"), ("short", "above"))
    },
}


_SIGNAL_LABELS: dict[str, str] = {
    "volume_surge": "volume surge",
    "trade_velocity": "trade velocity",
    "volatility_spike": "volatility spike",
    "manual": "manual watch",
    "realtime_volume": "one-minute volume",
    "realtime_price_move": "price move",
    "disparity": "disparity",
    "return_drop": "return drop",
    "turnover_surge_fall": "turnover surge while falling",
    "breakout": "breakout",
    "near_signal": "near a signal threshold",
    "dolpha1_monitor_long": "dolpha1 watch (long)",
    "dolpha1_monitor_short": "dolpha1 watch (short)",
    "dolpha1_trade_long": "dolpha1 trade (long)",
    "dolpha1_trade_short": "dolpha1 trade (short)",
}

_SYSTEM_LABELS: dict[str, str] = {
    "scanner.safe_mode": "scanner in safe mode",
    "scanner.safe_mode.ended": "scanner out of safe mode",
    "recorder.write_failed": "data files cannot be written",
    "recorder.write_recovered": "data files written again",
    "postgres": "PostgreSQL unreachable",
    "disk_floor": "free disk below the floor",
}


def _overflow_label(level: str) -> str:
    try:
        return f"overflow rate above {float(level):.0%}"
    except ValueError:
        return f"overflow rate above {level}"


def _universe_label(day: str) -> str:
    shown = f"{day[:4]}-{day[4:6]}-{day[6:]}" if len(day) == 8 and day.isdigit() else day
    return f"universe build failed ({shown})"


_SYSTEM_KINDS: dict[str, Callable[[str], str]] = {
    "overflow_rate": _overflow_label,
    "universe": _universe_label,
    "tokens": lambda account: f"token refresh failed ({account})",
    "gaps_open": lambda account: f"symbols without ticks, Track B suspended ({account})",
    "ws_suspended": lambda account: f"WebSocket down ({account})",
    "ws_resumed": lambda account: f"WebSocket back ({account})",
    "backpressure": lambda account: f"processing behind, subscriptions shed ({account})",
}


def signal_label(signal: str) -> str:
    """A signal's name in words (`volume_surge` -> `volume surge`)."""
    return _SIGNAL_LABELS.get(signal, signal.replace("_", " "))


def system_alert_label(key: str) -> str:
    """A SystemAlert key in words: `overflow_rate.0.1` -> `overflow rate above 10%`, `ws_suspended.acct1`
    -> `WebSocket down (acct1)`; an unknown key is shown with spaces for its separators."""
    label = _SYSTEM_LABELS.get(key)
    if label is not None:
        return label
    kind, _, rest = key.partition(".")
    describe = _SYSTEM_KINDS.get(kind)
    if describe is not None and rest:
        return describe(rest)
    return key.replace("_", " ").replace(".", " ")


def market_alert_label(alert: Alert) -> str:
    """A market alert in words: `volume surge 005930 삼성전자`."""
    return f"{signal_label(alert.signal)} {alert.symbol} {alert.name}".strip()


def describe_condition(signal: str, threshold: float, value: float) -> str:
    condition = _CONDITIONS.get(signal)
    if condition is None:
        return f"{signal} value {value:g} (threshold {threshold:g})"
    return condition(value, threshold)


def format_alert(symbol: str, name: str, signal: str, threshold: float, value: float, at: datetime) -> str:
    """One line: signal, code and name, condition with threshold and current value, KST time."""
    stamp = at.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S")
    who = f"{symbol} {name}".strip()
    return f"[{signal}] {who} | {describe_condition(signal, threshold, value)} | {stamp} KST"


def make_alert(symbol: str, name: str, signal: str, threshold: float, value: float, at: datetime) -> Alert:
    return Alert(
        symbol=symbol,
        name=name,
        signal=signal,
        threshold=threshold,
        value=value,
        at=at,
        text=format_alert(symbol, name, signal, threshold, value, at),
    )


def alert_for_trigger(trigger: Trigger, name: str, at: datetime | None = None) -> Alert:
    """Alert for a trigger; `at` (default: its detection) is when it was observed, e.g. a renewal."""
    observed = trigger.detected_at if at is None else at
    return make_alert(trigger.symbol, name, trigger.kind.value, trigger.threshold, trigger.value, observed)


def alert_for_signal(hit: SignalHit, name: str) -> Alert:
    return make_alert(hit.symbol, name, hit.signal.value, hit.threshold, hit.value, hit.at)
