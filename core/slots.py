"""WebSocket slot allocation across the provider pool: which symbol streams on which app key.

Rules (symbol_selection_architecture.md "Slot Management" and "Provider Pool", track_b_independent_scanner.md,
websocket_manager_design.md, websocket_monitor_hybrid.md):

- Each account (app key) has `capacity` tick registrations (41 per key, configurable per account, never more
  than `SlotSettings.max_slots`). The account's execution-notice registration (H0STCNI0) takes no slot, so
  capacity counts H0STCNT0 symbols only.
- Pinned symbols (manual overrides, held positions, the hybrid design's watchlist) are placed first and are
  never evicted. A pinned symbol without a free slot evicts the weakest unpinned symbol at once, dwell or not:
  a held position must be watched now. Pinned symbols ignore the re-subscribe cooldown.
- Candidates (best first) take free slots first, round-robin over the available accounts.
- With no free slot, a candidate replaces the weakest evictable symbol only if its score is strictly above
  that symbol's score times `replacement_threshold` (1.2, the seed's `new_score > min_score * 1.2`).
  Evictable: not pinned and slotted for at least `min_dwell_seconds` (120 s; exactly 120 s is enough).
- A released symbol is not subscribed again until `resubscribe_cooldown_seconds` (180 s) have passed since its
  release (exactly 180 s is enough). Symbols dropped by failover or a capacity shrink get no cooldown: they
  were not judged, they lost their connection.
- Scores refresh on every allocation: a slotted symbol that is still a candidate takes its new score; one
  that is no longer a candidate (its trigger expired, the seed's "Expired Trigger" replacement condition)
  scores 0, so once its dwell is over any positive candidate replaces it first. It is not unsubscribed while
  nobody needs its slot: keeping it costs nothing and avoids churn.
- Every competing symbol (candidate or pinned) that ends without a slot gets exactly one overflow record.
- Exclusions (a halted symbol, one at its price limit, one stale for `stale_after_seconds`) take an unpinned
  symbol out of its slot and keep an excluded candidate out, each with its own overflow reason. A stale
  symbol gets the re-subscribe cooldown (a fresh subscription may stream again); a halted or limit-locked
  one does not: it is held out only while its exclusion lasts.
- Rapid Symbol Churn: while more than `churn_replacements_per_hour` replacements happened in the last hour,
  the threshold is `churn_replacement_threshold` (1.5); it is back at 1.2 once the hour's count is at or
  below `calm_replacements_per_hour` (`ChurnGuard`).
- Ties go to the earlier candidate (the ranking's own order, e.g. market cap); eviction ties to the symbol
  slotted longest, then by code, so the same inputs always give the same outputs.

All functions are pure: they take a frozen `SlotState` and return an `Allocation` with the next state and the
exact subscribe / unsubscribe diff per account.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import filterfalse
from operator import attrgetter, itemgetter
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol

from pydantic import TypeAdapter, ValidationError

from core.models import Candidate, TriggerKind
from core.overflow import DeferredSources, OverflowReason, OverflowRecord, OverflowRecords, OverflowSource
from core.settings import SlotSettings

_SLOT_SYMBOL = itemgetter(0)  # Slot.symbol
_SINCE_ZONE = attrgetter("since.tzinfo")
_ZONE = attrgetter("tzinfo")
_NO_EXCLUSIONS: Mapping[str, Exclusion] = MappingProxyType({})
CHURN_WINDOW = timedelta(hours=1)
SIGN_UPPER_LIMIT = "1"
SIGN_LOWER_LIMIT = "4"
"""prdy_vrss_sign of a quote at the day's upper / lower price limit (docs/kis_api_facts.md section 7)."""


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """One app key of the pool as configured: its name and how many symbols it may stream."""

    name: str
    capacity: int = 41

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("provider account needs a name")
        if self.capacity < 0:
            raise ValueError(f"account {self.name}: capacity must be >= 0, got {self.capacity}")


class Slot(NamedTuple):
    """A symbol holding a slot: since when, its current score, and the trigger it last had.

    `home` is the account it belongs to while it is lent to another account during a failover.
    A NamedTuple, like `SlotChange`: every allocation rebuilds the slots whose score changed, and a frozen
    dataclass costs several times more to construct.
    """

    symbol: str
    since: datetime
    score: float
    pinned: bool = False
    trigger: TriggerKind | None = None
    strength: float | None = None
    home: str | None = None


@dataclass(frozen=True, slots=True)
class AccountSlots:
    """One account's slots. `reported_capacity` is what KIS told us with MAX SUBSCRIBE OVER."""

    name: str
    capacity: int
    slots: tuple[Slot, ...] = ()
    available: bool = True
    reported_capacity: int | None = None

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(slot.symbol for slot in self.slots)


@dataclass(frozen=True, slots=True)
class SlotState:
    """Which symbol holds a slot on which account, when each released symbol was let go, the RR cursor.

    Invariants (checked on construction): account names are unique, no account holds more than its
    capacity, no symbol is on two accounts.
    """

    accounts: tuple[AccountSlots, ...] = ()
    released_at: Mapping[str, datetime] = field(default_factory=dict)
    cursor: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "accounts", tuple(self.accounts))
        object.__setattr__(self, "released_at", MappingProxyType(dict(self.released_at)))
        # Every allocation builds a state: check it in a few C-level passes, and walk it one slot at a
        # time only to name the first problem.
        accounts = self.accounts
        slots = [slot for account in accounts for slot in account.slots]
        if (len({account.name for account in accounts}) == len(accounts)
                and all(len(account.slots) <= account.capacity for account in accounts)
                and len(set(map(_SLOT_SYMBOL, slots))) == len(slots)
                and None not in set(map(_SINCE_ZONE, slots))
                and None not in set(map(_ZONE, self.released_at.values()))):
            return
        self._refuse()

    def _refuse(self) -> None:
        """Raise the one-line error for the first broken invariant."""
        names: set[str] = set()
        seen: dict[str, str] = {}
        for account in self.accounts:
            if account.name in names:
                raise ValueError(f"slot state: account {account.name} appears twice")
            names.add(account.name)
            if len(account.slots) > account.capacity:
                raise ValueError(
                    f"slot state: account {account.name} holds {len(account.slots)} symbols "
                    f"but has {account.capacity} slots"
                )
            for slot in account.slots:
                if slot.symbol in seen:
                    raise ValueError(
                        f"slot state: {slot.symbol} is on both {seen[slot.symbol]} and {account.name}"
                    )
                seen[slot.symbol] = account.name
                if slot.since.tzinfo is None:
                    raise ValueError(f"slot state: {slot.symbol} has a naive 'since' time")
        if any(moment.tzinfo is None for moment in self.released_at.values()):
            raise ValueError("slot state: released_at holds a naive time")

    @classmethod
    def initial(cls, accounts: Sequence[ProviderAccount], settings: SlotSettings) -> SlotState:
        return cls(tuple(AccountSlots(a.name, min(a.capacity, settings.max_slots)) for a in accounts))

    def account(self, name: str) -> AccountSlots:
        for account in self.accounts:
            if account.name == name:
                return account
        raise ValueError(f"unknown account {name!r}")

    def placement(self) -> dict[str, str]:
        """symbol -> account name, for every slotted symbol."""
        return {slot.symbol: account.name for account in self.accounts for slot in account.slots}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the state store; `from_dict` reads it back."""
        return {
            "accounts": [
                {
                    "name": account.name,
                    "capacity": account.capacity,
                    "available": account.available,
                    "reported_capacity": account.reported_capacity,
                    "slots": [
                        {**slot._asdict(), "since": slot.since.isoformat(),
                         "trigger": slot.trigger.value if slot.trigger is not None else None}
                        for slot in account.slots
                    ],
                }
                for account in self.accounts
            ],
            "released_at": {symbol: moment.isoformat() for symbol, moment in self.released_at.items()},
            "cursor": self.cursor,
        }

    @classmethod
    def from_dict(cls, data: Any) -> SlotState:
        try:
            return _STATE_ADAPTER.validate_python(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ValueError(f"bad slot state at {where or 'top'}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class SlotDiff:
    """What one account's connection must send: subscribe these, unsubscribe those."""

    subscribe: tuple[str, ...] = ()
    unsubscribe: tuple[str, ...] = ()


class SlotChange(NamedTuple):
    """One subscribe or unsubscribe decision and why, for the log."""

    account: str
    symbol: str
    action: Literal["subscribe", "unsubscribe"]
    reason: str


@dataclass(frozen=True, slots=True)
class Allocation:
    """The next state, the per-account diff, who overflowed, and why each change was made.

    `evaluated` counts the symbols that competed (candidates and pinned), for `OverflowMonitor.observe`;
    `replacements` the symbols a stronger candidate replaced (by the threshold), for `ChurnGuard.observe`.
    """

    state: SlotState
    diffs: Mapping[str, SlotDiff]
    overflow: OverflowRecords
    reasons: tuple[SlotChange, ...]
    evaluated: int
    replacements: int = 0


class Exclusion(NamedTuple):
    """Why a symbol may not hold a slot now: the overflow reason code and the text for the ledger."""

    code: OverflowReason
    reason: str


class QuoteRow(Protocol):
    """What a Track A scan row (`kis.models.MultiQuote`) says about a symbol's trading state."""

    @property
    def symbol(self) -> str: ...
    @property
    def price(self) -> int: ...
    @property
    def sign(self) -> str: ...
    @property
    def upper_limit(self) -> int: ...
    @property
    def lower_limit(self) -> int: ...
    @property
    def halted(self) -> bool: ...


def market_exclusion(row: QuoteRow, settings: SlotSettings) -> Exclusion | None:
    """Whether a scan row keeps its symbol out of the slots: halted (`remove_halted`), or at the upper or
    lower price limit (`remove_at_price_limit`; the sign code, or the price at the limit, says so)."""
    if row.halted:
        return Exclusion(OverflowReason.HALTED, "trading halted") if settings.remove_halted else None
    if not settings.remove_at_price_limit:
        return None
    if row.sign == SIGN_UPPER_LIMIT or (row.upper_limit > 0 and row.price >= row.upper_limit):
        return Exclusion(OverflowReason.PRICE_LIMIT, f"at the upper price limit {row.upper_limit}")
    if row.sign == SIGN_LOWER_LIMIT or (row.lower_limit > 0 and 0 < row.price <= row.lower_limit):
        return Exclusion(OverflowReason.PRICE_LIMIT, f"at the lower price limit {row.lower_limit}")
    return None


def stale_symbols(
    state: SlotState,
    last_data: Mapping[str, datetime],
    now: datetime,
    settings: SlotSettings,
    *,
    watched_since: datetime,
    exempt: Collection[str] = (),
) -> dict[str, Exclusion]:
    """Unpinned slotted symbols that streamed nothing for more than `stale_after_seconds`.

    Quiet time counts from the latest of the symbol's last data, its slot's `since` and `watched_since`
    (when the caller started watching the streams: a restart does not know the ticks before it). `exempt`
    symbols (halts the venue announced) are never stale: they are marked by the caller instead.
    """
    after = settings.stale_after_seconds
    if after is None:
        return {}
    stale: dict[str, Exclusion] = {}
    for account in state.accounts:
        for slot in account.slots:
            if slot.pinned or slot.symbol in exempt:
                continue
            seen = max(slot.since, watched_since, last_data.get(slot.symbol, slot.since))
            quiet = (now - seen).total_seconds()
            if quiet > after:
                text = f"no data for {quiet / 60:.0f} min (stale after {after / 60:g} min)"
                stale[slot.symbol] = Exclusion(OverflowReason.STALE, text)
    return stale


def churn_raised(replacements_last_hour: int, raised: bool, settings: SlotSettings) -> bool:
    """Whether the churn threshold applies: raised above `churn_replacements_per_hour`, lowered again
    at or below `calm_replacements_per_hour` (between the two it stays as it was)."""
    if raised:
        return replacements_last_hour > settings.calm_replacements_per_hour
    return replacements_last_hour > settings.churn_replacements_per_hour


@dataclass(frozen=True, slots=True)
class ChurnGuard:
    """The replacements of the last hour and whether they raised the replacement threshold. Immutable:
    `observe` returns the next guard."""

    settings: SlotSettings
    replaced_at: tuple[datetime, ...] = ()
    raised: bool = False

    @property
    def threshold(self) -> float:
        settings = self.settings
        if self.raised:
            return max(settings.churn_replacement_threshold, settings.replacement_threshold)
        return settings.replacement_threshold

    @property
    def replacements_last_hour(self) -> int:
        return len(self.replaced_at)

    def observe(self, now: datetime, replacements: int = 0) -> ChurnGuard:
        """Add `replacements` made at `now` (0: just let the hour slide) and re-judge the threshold."""
        if replacements < 0:
            raise ValueError(f"replacements must be >= 0, got {replacements}")
        horizon = now - CHURN_WINDOW
        times = (*(moment for moment in self.replaced_at if moment > horizon), *(now,) * replacements)
        return ChurnGuard(self.settings, times, churn_raised(len(times), self.raised, self.settings))


def allocate_slots(
    state: SlotState,
    candidates: Sequence[Candidate],
    pinned: Collection[str],
    now: datetime,
    settings: SlotSettings,
    accounts: Sequence[ProviderAccount],
    *,
    excluded: Mapping[str, Exclusion] = _NO_EXCLUSIONS,
    threshold: float | None = None,
) -> Allocation:
    """One rebalance: refresh scores, apply exclusions, place pinned symbols, then fill and replace from
    the candidates.

    `accounts` is the pool as configured, in round-robin order; accounts new to `state` are added, accounts
    gone from it are emptied, and symbols beyond an account's capacity are dropped; all of these compete
    again in this allocation. A candidate listed twice counts once, with its best score. `excluded` symbols
    leave their slots and stay out unless pinned; `threshold` replaces `settings.replacement_threshold`
    (the churn guard's).
    """
    pool = _Pool(state, now)
    pool.reconcile(accounts, settings)
    pool.forget_cooldowns_before(settings.resubscribe_cooldown_seconds)

    ranked = sorted(candidates, key=_SCORE, reverse=True)
    # Keyed in the input's order: the candidates are read in the order they sit in memory, which is much
    # cheaper for 2,500 of them than in ranked order. Without a repeated symbol it is the same mapping.
    best = dict(zip(map(_SYMBOL, candidates), candidates, strict=True))
    if len(best) != len(ranked):
        best = {}
        for candidate in ranked:
            best.setdefault(candidate.symbol, candidate)
        ranked = list(best.values())
    pinned_set = set(pinned).union(settings.watchlist)
    pool.candidates = best
    pool.competing = len(best) + len(pinned_set.difference(best))
    pool.refresh(best, pinned_set)
    for account in pool.accounts:
        pool.trim(account, record=False)
    pool.exclude(excluded, best, pinned_set)

    for symbol in sorted(pinned_set - pool.where.keys(), key=lambda s: (-_score_of(best.get(s)), s)):
        pool.place_pinned(symbol, best.get(symbol))

    pool.fill_and_replace(ranked, best, pinned_set, settings,
                          settings.replacement_threshold if threshold is None else threshold)
    return pool.finish()


def release_account(state: SlotState, account: str, now: datetime) -> Allocation:
    """Failover: `account` is down; its symbols go to the other accounts (`release_accounts`)."""
    return release_accounts(state, (account,), now)


def release_accounts(state: SlotState, accounts: Sequence[str], now: datetime) -> Allocation:
    """Failover: `accounts` are down together (a dead worker's keys); hand their symbols to the other
    accounts' free slots, never to one of them.

    Pinned symbols move first (evicting the weakest unpinned symbol if no slot is free), then by score.
    Moved symbols remember their home account so `restore_account` can take them back. Symbols that find no
    slot overflow. The accounts get no new symbols until they are restored.
    """
    pool = _Pool(state, now)
    failed = [pool.get(account) for account in accounts]
    failed = [account for account in failed if account.available]
    if not failed:
        return pool.finish()
    for account in failed:
        account.available = False
    moving = sorted(((slot, account.name) for account in failed for slot in account.slots.values()),
                    key=lambda item: _move_order(item[0]))
    for slot, name in moving:
        pool.remove(slot.symbol, f"account {name} failed", cooldown=False)
        pool.competitors.add(slot.symbol)
    for slot, name in moving:
        home = slot.home or name
        target = pool.free_account()
        if target is None and slot.pinned:
            target = pool.evict_for_pinned(slot.symbol)
        if target is None:
            pool.overflow_slot(slot, OverflowReason.ACCOUNT_UNAVAILABLE,
                               f"account {name} failed and no other account has a free slot", name)
            continue
        pool.place(target, _moved(slot, home, target.name), f"moved from failed account {name}")
    return pool.finish()


def restore_account(state: SlotState, account: str, now: datetime) -> Allocation:
    """`account` is healthy again: it takes back the symbols lent out at failover, as many as fit.

    Its remaining free slots are filled by the next `allocate_slots`.
    """
    pool = _Pool(state, now)
    restored = pool.get(account)
    restored.available = True
    lent = sorted(
        (slot for other in pool.accounts if other is not restored for slot in other.slots.values()
         if slot.home == account),
        key=_move_order,
    )
    for slot in lent[: max(restored.capacity - len(restored.slots), 0)]:
        host = pool.where[slot.symbol]
        pool.remove(slot.symbol, f"returns to restored account {account}", cooldown=False)
        pool.competitors.add(slot.symbol)
        pool.place(restored, _moved(slot, None, account), f"back from {host.name} after recovery")
    return pool.finish()


def shrink_capacity(
    state: SlotState, account: str, capacity: int, now: datetime, refused: Iterable[str] = ()
) -> Allocation:
    """MAX SUBSCRIBE OVER: `account` really has only `capacity` slots.

    `refused` are the symbols KIS refused: they are dropped from the state but not unsubscribed (they never
    were subscribed), so for them the new state is the old one minus the diff minus `refused`. If the account
    still holds too many, its weakest unpinned symbols are unsubscribed. Everything dropped overflows,
    without a cooldown, so the next allocation may place it on another account.
    """
    if capacity < 0:
        raise ValueError(f"account {account}: capacity must be >= 0, got {capacity}")
    pool = _Pool(state, now)
    shrunk = pool.get(account)
    reported = shrunk.reported_capacity
    shrunk.reported_capacity = capacity if reported is None else min(reported, capacity)
    shrunk.capacity = min(shrunk.capacity, capacity)
    refused_here = [symbol for symbol in dict.fromkeys(refused) if symbol in shrunk.slots]
    for symbol in refused_here:
        slot = pool.remove(symbol, f"refused by {account} (MAX SUBSCRIBE OVER)", cooldown=False, log=False)
        pool.competitors.add(symbol)
        pool.overflow_slot(slot, OverflowReason.CAPACITY_SHRUNK,
                           f"account {account} refused it: MAX SUBSCRIBE OVER at {capacity} slots", account)
    pool.trim(shrunk, record=True)
    allocation = pool.finish()
    if not refused_here:
        return allocation
    diff = allocation.diffs[account]
    kept = tuple(symbol for symbol in diff.unsubscribe if symbol not in refused_here)
    diffs = dict(allocation.diffs)
    diffs[account] = SlotDiff(diff.subscribe, kept)
    return Allocation(allocation.state, MappingProxyType(diffs), allocation.overflow, allocation.reasons,
                      allocation.evaluated)


_SCORE = attrgetter("score")
_SYMBOL = attrgetter("symbol")
# Builds a NamedTuple from all its fields in order at half the cost of its generated `__new__` (a Python
# function): the hot paths of an allocation build a few hundred slots, changes and overflow records.
_new = tuple.__new__


def _seconds_before(moment: datetime, seconds: float) -> datetime | None:
    """`seconds` before `moment`; None when that is before any datetime (a dwell or cooldown of inf)."""
    try:
        return moment - timedelta(seconds=seconds)
    except OverflowError:
        return None


def _score_of(candidate: Candidate | None) -> float:
    return candidate.score if candidate is not None else 0.0


def _move_order(slot: Slot) -> tuple[bool, float, str]:
    return (not slot.pinned, -slot.score, slot.symbol)


def _moved(slot: Slot, home: str | None, target: str) -> Slot:
    return Slot(slot.symbol, slot.since, slot.score, slot.pinned, slot.trigger, slot.strength,
                None if home == target else home)


class _Account:
    """Mutable working copy of one account during a single pure call."""

    __slots__ = ("available", "capacity", "name", "old", "reported_capacity", "slots")

    def __init__(self, source: AccountSlots) -> None:
        self.name = source.name
        self.capacity = source.capacity
        self.available = source.available
        self.reported_capacity = source.reported_capacity
        self.slots: dict[str, Slot] = dict(zip(map(_SLOT_SYMBOL, source.slots), source.slots, strict=True))
        self.old = tuple(self.slots)

    def frozen(self) -> AccountSlots:
        return AccountSlots(self.name, self.capacity, tuple(self.slots.values()), self.available,
                            self.reported_capacity)


class _Pool:
    """The working copy every public function edits and then freezes into an `Allocation`."""

    def __init__(self, state: SlotState, now: datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("slot allocation needs an aware 'now'")
        self.now = now
        self.accounts = [_Account(account) for account in state.accounts]
        self.gone: list[_Account] = []
        self.where: dict[str, _Account] = {}
        for account in self.accounts:
            self.where.update(dict.fromkeys(account.slots, account))
        released = state.released_at  # a read-only view of a dict: its copy() is a fast dict copy
        self.released: dict[str, datetime] = (
            released.copy() if isinstance(released, MappingProxyType) else dict(released))
        self.cursor = state.cursor
        self.changes: list[SlotChange] = []
        self.overflowed: list[tuple[OverflowSource, OverflowReason, str, str | None]] = []
        self.competitors: set[str] = set()
        self.competing = 0  # an allocation's candidates and pinned symbols, counted without a set
        self.evicted: set[str] = set()
        self.excluded: set[str] = set()
        self.replacements = 0
        # Candidates that overflowed for one shared reason after allocation stopped: (sources, code, reason).
        self.blocked_rest: tuple[Sequence[Candidate], OverflowReason, str] = (
            (), OverflowReason.SLOTS_FULL, "")
        # The candidates of an allocation; None outside one, where every displaced symbol competed.
        self.candidates: Mapping[str, Candidate] | None = None

    def get(self, name: str) -> _Account:
        for account in self.accounts:
            if account.name == name:
                return account
        raise ValueError(f"unknown account {name!r}")

    # --- set-up -------------------------------------------------------------------------------------

    def reconcile(self, configured: Sequence[ProviderAccount], settings: SlotSettings) -> None:
        names = [account.name for account in configured]
        if len(set(names)) != len(names):
            raise ValueError(f"provider accounts must have unique names, got {names}")
        existing = {account.name: account for account in self.accounts}
        ordered: list[_Account] = []
        for config in configured:
            limit = min(config.capacity, settings.max_slots)
            account = existing.pop(config.name, None)
            if account is None:
                account = _Account(AccountSlots(config.name, limit))
            else:
                reported = account.reported_capacity
                account.capacity = limit if reported is None else min(limit, reported)
            ordered.append(account)
        self.accounts = ordered
        for leaving in existing.values():
            self.gone.append(leaving)
            for symbol in list(leaving.slots):
                self.remove(symbol, f"account {leaving.name} left the pool", cooldown=False)
        if self.accounts:
            self.cursor %= len(self.accounts)

    def forget_cooldowns_before(self, cooldown_seconds: float) -> None:
        """Aware datetimes compare without a `timestamp()` call each (free when they share a tzinfo)."""
        horizon = _seconds_before(self.now, cooldown_seconds)
        if horizon is not None:
            self.released = {symbol: moment for symbol, moment in self.released.items() if moment > horizon}

    def refresh(self, best: Mapping[str, Candidate], pinned: set[str]) -> None:
        for account in self.accounts:
            for symbol, slot in account.slots.items():
                candidate = best.get(symbol)
                is_pinned = symbol in pinned
                if candidate is not None:
                    refreshed = _new(Slot, (symbol, slot.since, candidate.score, is_pinned, candidate.trigger,
                                            candidate.strength, slot.home))
                elif slot.score != 0.0 or slot.pinned != is_pinned:
                    refreshed = _new(Slot, (symbol, slot.since, 0.0, is_pinned, slot.trigger, slot.strength,
                                            slot.home))
                else:
                    continue
                account.slots[symbol] = refreshed

    # --- moves --------------------------------------------------------------------------------------

    def free_account(self) -> _Account | None:
        """The next available account with a free slot, round-robin from the cursor."""
        count = len(self.accounts)
        for step in range(count):
            index = (self.cursor + step) % count
            account = self.accounts[index]
            if account.available and len(account.slots) < account.capacity:
                self.cursor = (index + 1) % count
                return account
        return None

    def place(self, account: _Account, slot: Slot, reason: str) -> None:
        account.slots[slot.symbol] = slot
        self.where[slot.symbol] = account
        self.changes.append(SlotChange(account.name, slot.symbol, "subscribe", reason))

    def remove(self, symbol: str, reason: str, *, cooldown: bool, log: bool = True) -> Slot:
        account = self.where.pop(symbol)
        slot = account.slots.pop(symbol)
        if cooldown:
            self.released[symbol] = self.now
        if log:
            self.changes.append(SlotChange(account.name, symbol, "unsubscribe", reason))
        return slot

    def overflow_slot(self, slot: Slot, code: OverflowReason, reason: str, account: str | None) -> None:
        self.overflowed.append((slot, code, reason, account))

    def overflow_candidate(self, candidate: Candidate, code: OverflowReason, reason: str) -> None:
        self.overflowed.append((candidate, code, reason, None))

    def trim(self, account: _Account, *, record: bool) -> None:
        """Drop the weakest symbols (unpinned first) until the account fits its capacity.

        Inside an allocation (`record` False) the dropped symbols simply compete again like any other.
        """
        excess = len(account.slots) - account.capacity
        if excess <= 0:
            return
        weakest = sorted(account.slots.values(), key=lambda s: (s.pinned, s.score, -s.since.timestamp(),
                                                                s.symbol))
        for slot in weakest[:excess]:
            self.remove(slot.symbol, f"account {account.name} has only {account.capacity} slots",
                        cooldown=False)
            if not record:
                continue
            self.competitors.add(slot.symbol)
            self.overflow_slot(slot, OverflowReason.CAPACITY_SHRUNK,
                               f"account {account.name} has only {account.capacity} slots", account.name)

    def exclude(self, excluded: Mapping[str, Exclusion], best: Mapping[str, Candidate],
                pinned: set[str]) -> None:
        """Take excluded unpinned symbols out of their slots and keep excluded candidates out, each with
        one overflow record; only a stale symbol gets the re-subscribe cooldown."""
        for symbol, (code, reason) in sorted(excluded.items()):
            if symbol in pinned:
                continue
            candidate = best.get(symbol)
            account = self.where.get(symbol)
            if account is not None:
                slot = self.remove(symbol, f"{code.value}: {reason}", cooldown=code is OverflowReason.STALE)
                if candidate is None:
                    self.competitors.add(symbol)
                    self.overflow_slot(slot, code, reason, account.name)
            if candidate is not None:
                self.excluded.add(symbol)
                self.overflow_candidate(candidate, code, reason)

    def evict_for_pinned(self, symbol: str) -> _Account | None:
        """Free a slot for pinned `symbol` by evicting the weakest unpinned symbol, dwell or not."""
        victims = [slot for account in self.accounts if account.available
                   for slot in account.slots.values() if not slot.pinned]
        if not victims:
            return None
        victim = min(victims, key=lambda s: (s.score, s.since, s.symbol))
        account = self.where[victim.symbol]
        self.remove(victim.symbol, f"evicted for pinned {symbol}", cooldown=True)
        self.evicted.add(victim.symbol)
        self._overflow_evicted(victim, f"evicted for pinned symbol {symbol}", account.name)
        return account

    def _overflow_evicted(self, victim: Slot, reason: str, account: str) -> None:
        """An evicted symbol overflows if it competed: always outside an allocation, as a candidate inside."""
        if self.candidates is None:
            self.competitors.add(victim.symbol)
            self.overflow_slot(victim, OverflowReason.REPLACED, reason, account)
            return
        candidate = self.candidates.get(victim.symbol)
        if candidate is not None:
            self.overflow_candidate(candidate, OverflowReason.REPLACED, reason)

    def place_pinned(self, symbol: str, candidate: Candidate | None) -> None:
        slot = Slot(symbol, self.now, _score_of(candidate), True,
                    candidate.trigger if candidate else None, candidate.strength if candidate else None)
        if not any(account.available for account in self.accounts):
            self._overflow_pinned(slot, candidate, OverflowReason.NO_ACCOUNT, "no provider account available")
            return
        target = self.free_account() or self.evict_for_pinned(symbol)
        if target is None:
            self._overflow_pinned(slot, candidate, OverflowReason.PINNED_OVER_CAPACITY,
                                  "every slot already holds a pinned symbol")
            return
        self.place(target, slot, "pinned")

    def _overflow_pinned(self, slot: Slot, candidate: Candidate | None, code: OverflowReason,
                         reason: str) -> None:
        if candidate is not None:
            self.overflow_candidate(candidate, code, reason)
        else:
            self.overflow_slot(slot, code, reason, None)

    def fill_and_replace(self, ranked: Sequence[Candidate], best: Mapping[str, Candidate], pinned: set[str],
                         settings: SlotSettings, threshold: float) -> None:
        """Candidates best first: free slot, else replace the weakest evictable if beaten by the threshold.

        `ranked` holds each symbol once, best first; `best` maps a symbol to its candidate. Candidates come
        in descending score and the evictable symbols only change through replacements, so after the first
        candidate that cannot get in (the blocker) no later one can. Every candidate the loop passed before
        the blocker ends slotted, pinned, evicted or cooling, so the rest of the overflow is the ranking
        minus those and the blocker: counted here, listed only when the ledger reads it. This, and the
        inlined moves below, keep 2,500 candidates well inside the 5 ms budget.
        """
        dwell = settings.min_dwell_seconds
        now = self.now
        where = self.where
        released = self.released
        evicted = self.evicted | self.excluded  # handled already: out of this loop's reach
        changes = self.changes
        overflowed = self.overflowed
        cooling: set[str] = set()
        cooldown_text = f"{settings.resubscribe_cooldown_seconds:.0f}"
        blocker: str | None = None
        available = [account for account in self.accounts if account.available]
        if not available:
            blocked = (OverflowReason.NO_ACCOUNT, "no provider account available")
        else:
            latest_since = _seconds_before(now, dwell)
            heap = [
                (slot.score, slot.since, slot.symbol)
                for account in available for slot in account.slots.values()
                if not slot.pinned and latest_since is not None and slot.since <= latest_since
            ]
            heapq.heapify(heap)
            free = sum(max(account.capacity - len(account.slots), 0) for account in available)
            threshold_text = f"{threshold}"
            for candidate in ranked:
                symbol = candidate.symbol
                if symbol in where or symbol in pinned or symbol in evicted:
                    continue
                if symbol in released:
                    cooling.add(symbol)
                    ago = (now - released[symbol]).total_seconds()
                    overflowed.append((candidate, OverflowReason.COOLDOWN,
                                       f"released {ago:.0f}s ago, re-subscribe cooldown {cooldown_text}s",
                                       None))
                    continue
                score = candidate.score
                if free and (target := self.free_account()) is not None:
                    free -= 1
                    target.slots[symbol] = _new(Slot, (symbol, now, score, False, candidate.trigger,
                                                       candidate.strength, None))
                    where[symbol] = target
                    changes.append(_new(SlotChange, (target.name, symbol, "subscribe",
                                                     f"free slot, score {score:.2f}")))
                    continue
                while heap and heap[0][2] not in where:
                    heapq.heappop(heap)
                if heap and score > heap[0][0] * threshold:
                    weakest_score, _, weakest = heapq.heappop(heap)
                    account = where.pop(weakest)
                    del account.slots[weakest]
                    released[weakest] = now
                    score_text = f"{score:.2f}"
                    changes.append(_new(SlotChange, (
                        account.name, weakest, "unsubscribe",
                        f"replaced by {symbol}: {score_text} > {weakest_score:.2f} x {threshold_text}")))
                    evicted.add(weakest)
                    self.replacements += 1
                    displaced = best.get(weakest)
                    if displaced is not None:
                        overflowed.append((displaced, OverflowReason.REPLACED,
                                           f"replaced by {symbol} (score {score_text})", None))
                    account.slots[symbol] = _new(Slot, (symbol, now, score, False, candidate.trigger,
                                                        candidate.strength, None))
                    where[symbol] = account
                    changes.append(_new(SlotChange, (account.name, symbol, "subscribe",
                                                     f"replaces {weakest}")))
                    if dwell <= 0:
                        heapq.heappush(heap, (score, now, symbol))
                    continue
                total = sum(account.capacity for account in available)
                if heap:
                    blocked = (OverflowReason.SLOTS_FULL, f"All {total} slots occupied by higher priority")
                else:
                    blocked = (OverflowReason.DWELL,
                               f"All {total} slots pinned or inside their {dwell:.0f}s minimum dwell")
                overflowed.append((candidate, *blocked, None))
                blocker = symbol
                break
            else:
                return
        skip = where.keys() | pinned | evicted
        for symbol in sorted(released.keys() - skip - cooling):
            candidate = best.get(symbol)
            if candidate is not None:
                ago = (now - released[symbol]).total_seconds()
                overflowed.append((candidate, OverflowReason.COOLDOWN,
                                   f"released {ago:.0f}s ago, re-subscribe cooldown {cooldown_text}s", None))
        skip |= released.keys()
        if blocker is not None:
            skip.add(blocker)
        count = len(best) - len(best.keys() & skip)  # walks the smaller set
        rest = DeferredSources(count, lambda: [c for c in ranked if c.symbol not in skip])
        self.blocked_rest = (rest, *blocked)

    # --- result -------------------------------------------------------------------------------------

    def finish(self) -> Allocation:
        accounts = tuple(account.frozen() for account in self.accounts)
        state = SlotState(accounts, self.released, self.cursor)
        diffs: dict[str, SlotDiff] = {}
        for account in (*self.accounts, *self.gone):
            now_held = account.slots
            diffs[account.name] = SlotDiff(
                tuple(filterfalse(set(account.old).__contains__, now_held)),
                tuple(filterfalse(now_held.__contains__, account.old)),
            )
        floor = min((slot.score for account in accounts for slot in account.slots), default=None)
        now = self.now
        tail, code, reason = self.blocked_rest
        overflow = OverflowRecords(
            [_new(OverflowRecord, (now, source, code, reason, floor, account))
             for source, code, reason, account in self.overflowed],
            at=now, tail=tail, code=code, reason=reason, current_slot_min_score=floor,
        )
        return Allocation(state, MappingProxyType(diffs), overflow, tuple(self.changes),
                          self.competing + len(self.competitors), self.replacements)


_STATE_ADAPTER = TypeAdapter(SlotState)
