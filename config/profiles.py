"""Named sets of defaults, chosen with the `profile` key; explicit file and environment values override them.

- `main`: symbol_selection_architecture.md, the primary design: a 10-minute Track A over the whole
  universe, 41 WebSocket slots per key, the four triggers (volume surge, trade velocity, volatility spike,
  manual) and no disparity signal. These are also the models' own defaults.
- `hybrid`: websocket_monitor_hybrid.md, Mode A: a 60 s REST scan (120 s in safe mode), 20 WebSocket
  subscriptions rebalanced every 60 s going to the symbols nearest to a signal threshold
  (`signals.rank_by_closeness`, core/closeness.py), a 180 s re-subscribe cooldown, the disparity / return /
  turnover signals on, and a 600 s alert cooldown.
- `hybrid_b`: the same document's Mode B (section 7): a 30 s scan (60 s in safe mode), 40 subscriptions,
  and the breakout signal beside the drop signals.
- `realtime`: track_b_independent_scanner.md alone: Track B's slots go to the tick detectors only (volume
  5x the one-minute average, a 5 % move within 60 s), weighted by the document's priorities (0.9 volume
  surge, 0.95 volatility spike) with no market-cap term (market cap still breaks ties); the Track A
  triggers are off (the scan still runs for the context sync and the record), manual overrides stay.
  Run it with `"profile": "realtime"` in the config file or `OBSERVER_PROFILE=realtime`.

Every profile streams the unified feed (`websocket.feed`: KRX and Nextrade trades in one registration), so
its day runs from Nextrade's pre-market to its after-market; the sessions themselves are `sessions` settings.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

PROFILES: MappingProxyType[str, dict[str, Any]] = MappingProxyType(
    {
        "main": {
            "scan": {"interval_seconds": 600.0, "safe_mode_interval_seconds": 1200.0},
            "slots": {
                "max_slots": 41,
                "resubscribe_cooldown_seconds": 180.0,
                "rebalance_interval_seconds": 30.0,
            },
            "triggers": {
                "volume_surge": {"enabled": True},
                "trade_velocity": {"enabled": True},
                "volatility_spike": {"enabled": True},
                "manual": {"enabled": True},
            },
            "signals": {"enabled": False},
            "alerts": {"cooldown_seconds": 600.0},
            "websocket": {"feed": "unified"},
        },
        "hybrid": {
            "scan": {"interval_seconds": 60.0, "safe_mode_interval_seconds": 120.0},
            "slots": {
                "max_slots": 20,
                "resubscribe_cooldown_seconds": 180.0,
                "rebalance_interval_seconds": 60.0,
            },
            "signals": {"enabled": True, "rank_by_closeness": True},
            "alerts": {"cooldown_seconds": 600.0},
            "websocket": {"feed": "unified"},
        },
        "hybrid_b": {
            "scan": {"interval_seconds": 30.0, "safe_mode_interval_seconds": 60.0},
            "slots": {
                "max_slots": 40,
                "resubscribe_cooldown_seconds": 180.0,
                "rebalance_interval_seconds": 60.0,
            },
            "signals": {"enabled": True, "rank_by_closeness": True, "breakout_enabled": True},
            "alerts": {"cooldown_seconds": 600.0},
            "websocket": {"feed": "unified"},
        },
        "realtime": {
            "scan": {"interval_seconds": 600.0, "safe_mode_interval_seconds": 1200.0},
            "slots": {
                "max_slots": 41,
                "min_dwell_seconds": 120.0,
                "resubscribe_cooldown_seconds": 180.0,
                "rebalance_interval_seconds": 30.0,
            },
            "triggers": {
                "volume_surge": {"enabled": False},
                "trade_velocity": {"enabled": False},
                "volatility_spike": {"enabled": False},
                "manual": {"enabled": True},
                "realtime": {"enabled": True, "volume_weight": 0.9, "price_move_weight": 0.95},
                "market_cap_weight": 0.0,
            },
            "signals": {"enabled": False},
            "alerts": {"cooldown_seconds": 600.0},
        },
    }
)
"""Profile name -> nested defaults in the shape of the config file."""

DEFAULT_PROFILE = "main"
