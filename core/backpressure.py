"""Back-pressure (websocket_monitor_hybrid.md 5.3): when processing falls behind the stream, shed the
lowest scored subscriptions, and take them back once it has caught up.

`LagMonitor` judges, from what the connection actor measures where it handles the ticks (how long the
trade message it handles now waited, how many wait behind it), the shed level: 0 is normal, each level
sheds `shed_fraction` of an account's slots. Behind = a wait of `lag_limit` seconds or a backlog of
`backlog_limit` messages; while still behind, one more level at most every `step_seconds`; caught up
(both under half their limits) for `recover_seconds`: back to level 0 at once. It takes monotonic
seconds as arguments and reads no clock.

`shed_slots` is the slot manager's side: the account keeps its pinned symbols and its best scored ones up
to the new capacity; the rest are unsubscribed without a re-subscribe cooldown (they were not judged) and
overflow with reason `backpressure`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType

from core.overflow import OverflowReason, OverflowRecord, OverflowRecords
from core.slots import Allocation, SlotChange, SlotDiff, SlotState


@dataclass(slots=True)
class LagMonitor:
    """The shed level of one connection (owned by one actor; `observe` answers a new level or None)."""

    lag_limit: float
    backlog_limit: int
    step_seconds: float
    recover_seconds: float
    max_level: int
    level: int = 0
    last_step: float | None = None
    calm_since: float | None = None

    def observe(self, lag_seconds: float, backlog: int, now: float) -> int | None:
        """One measurement at monotonic `now`; the new level when it changes, else None."""
        if lag_seconds >= self.lag_limit or backlog >= self.backlog_limit:
            self.calm_since = None
            due = self.last_step is None or now - self.last_step >= self.step_seconds
            if self.level < self.max_level and (self.level == 0 or due):
                self.level += 1
                self.last_step = now
                return self.level
            return None
        if self.level == 0:
            return None
        if lag_seconds >= self.lag_limit / 2 or backlog >= self.backlog_limit / 2:
            self.calm_since = None
            return None
        if self.calm_since is None:
            self.calm_since = now
        if now - self.calm_since < self.recover_seconds:
            return None
        self.level, self.last_step, self.calm_since = 0, None, None
        return 0


def max_level(shed_fraction: float) -> int:
    """The level at which every slot is shed."""
    return math.ceil(1.0 / shed_fraction - 1e-9)


def shed_capacity(full: int, level: int, shed_fraction: float) -> int:
    """An account's slots at `level`: `full` less `shed_fraction` of it per level, never below 0."""
    return max(full - math.ceil(full * shed_fraction * level - 1e-9), 0)


def shed_slots(state: SlotState, account: str, capacity: int, now: datetime) -> Allocation:
    """`account` keeps its pinned symbols and its best scored others up to `capacity` (more if it has more
    pinned symbols); the lowest scored go first, overflowing with reason `backpressure`."""
    held = state.account(account)
    pinned = [slot for slot in held.slots if slot.pinned]
    others = sorted((slot for slot in held.slots if not slot.pinned), key=lambda s: (-s.score, s.symbol))
    room = max(capacity - len(pinned), 0)
    kept_symbols = {slot.symbol for slot in (*pinned, *others[:room])}
    shed = others[room:]
    kept = tuple(slot for slot in held.slots if slot.symbol in kept_symbols)
    accounts = tuple(
        replace(item, capacity=max(capacity, len(pinned)), slots=kept) if item.name == account else item
        for item in state.accounts
    )
    next_state = SlotState(accounts, state.released_at, state.cursor)
    reason = f"processing behind the stream: account {account} cut to {capacity} slots"
    floor = min((slot.score for item in accounts for slot in item.slots), default=None)
    code = OverflowReason.BACKPRESSURE
    records = [OverflowRecord(now, slot, code, reason, floor, account) for slot in shed]
    changes = tuple(SlotChange(account, slot.symbol, "unsubscribe", reason) for slot in shed)
    diffs = MappingProxyType({item.name: SlotDiff(unsubscribe=tuple(s.symbol for s in shed))
                              if item.name == account else SlotDiff() for item in state.accounts})
    return Allocation(next_state, diffs, OverflowRecords(records, at=now), changes, len(shed))
