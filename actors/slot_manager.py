"""SlotManagerActor (id `slots`): which symbol streams on which account's WebSocket (Track B).

A thin shell over `core.slots`: it owns the `SlotState`, turns messages into `allocate_slots`,
`release_account`, `restore_account` and `shrink_capacity`, and sends the results on:

- each account's full target set as `SetSubscriptions` to `ws.<account>`, only when it changed (and again
  whenever that connection reports CONNECTED, so a restarted or reconnected session gets it): the slotted
  symbols, and those of them that also stream their order book and program trading;
- overflow ledger lines as `OverflowRecorded` to `recorder`: one line when a symbol starts overflowing
  (or overflows for a new reason), not again at every rebalance while it stays out;
- overflow-rate levels crossed (`core.overflow.OverflowMonitor`) as `SystemAlert` to `notifier` (a
  failover is alerted by the connection actor that suspends, so it is only logged here).

Track B runs only in FULL_OPERATION and after ContextSynced of the same day; leaving FULL_OPERATION
(TRACK_A_CLOSING at 15:00) empties every account's target set and clears the slots.

Intraday removal (symbol_selection_architecture.md "Symbol Removal", websocket_manager_design.md's stale
slot): each Track A scan says which symbols are halted or at their upper / lower price limit; with
`slots.remove_halted` (on) and `slots.remove_at_price_limit` (on) they leave their slots at once and stay
out (overflow reasons `halted`, `price_limit`) until a later scan shows them trading inside the limits
again. At each allocation a slotted symbol without a trade for more than `slots.stale_after_seconds`
(30 min; counted from its slot's start, or this actor's start after a restart) is released with the
re-subscribe cooldown (reason `stale`). A halt the venue announced is never judged stale: with
`remove_halted` off such a symbol keeps its slot, is logged as halted and counted in `slots_halted`.
Pinned symbols are never removed. Rapid Symbol Churn: `core.slots.ChurnGuard` raises the replacement
threshold from 1.2 to 1.5 while more than `slots.churn_replacements_per_hour` replacements happened in the
last hour, and lowers it at `slots.calm_replacements_per_hour`; each change is logged.

Registrations, not symbols (`core.streams`): a key's 41 (40 with an execution-notice registration, fewer
with the account's `max_slots`) pay for trades, order books and program trading alike; `slots.max_slots`
caps the trade slots alone. Held positions and each key's best scored slots also stream
their book (`websocket.order_book_held`, `order_book_top`) and program trading (`program_trading_held`,
`program_trading_top`); the trades get the most slots that leave room for the extras they want (at most
`websocket.extra_registrations_max`), so a symbol with both costs 3 and a full key never passes 41.

Pins (never evicted): held positions (the balance inquiry at start, then execution notices: a buy fill
pins at once, a sale of the whole position unpins, after which the symbol's slot goes to the next
candidate that needs one), manual overrides (`triggers.manual.symbols` and `ManualOverride`) and the
hybrid watchlist (`slots.watchlist`, applied by `allocate_slots`).

State (slots with dwell times, re-subscribe cooldowns, held positions, overrides, the day's context
sync) is saved to the StateStore (`slots`) after every change and loaded in `on_start`, so a restart
keeps them. A start in FULL_OPERATION without today's sync in that state (the file lost or unreadable)
asks the scanner whether it has synced today (`ContextSyncDay`): the ContextSynced it waits for may have
passed, and the scanner does not sync twice a day. A ContextSynced on a day already synced (a scanner that
lost its own state syncs again) starts Track B if needed but brings no movers: Track B's first allocation
is over. The balance inquiry runs in this actor's thread right after start (a self-told message), is
retried at the next phase change if it failed, and is skipped for accounts without an account number.

| message | effect |
|---|---|
| CandidatesRanked | keep as the current candidates; allocate when Track B runs |
| ContextSynced | (passed on by triggers after its ranking) Track B may start today; its first allocation |
|  | takes the movers (+ current candidates) |
| PhaseChanged | FULL_OPERATION: allocate; leaving it: empty targets for every account, slots cleared |
| HoldingsLoaded | the account's held positions become pins |
| ExecutionsReceived | buy fill: pin now; full sale: unpin |
| ManualOverride | pin / unpin a symbol |
| TrackBPaused | (asked) pause: empty target sets until resumed (saved, so a restart keeps it); replies |
| SubscriptionRefused | `shrink_capacity` to the accepted count; the refused symbol overflows |
| ConnectionChanged | SUSPENDED, or RECONNECTING >= `suspend_track_b_after_seconds`: failover; |
|  | CONNECTED: restore, and send the account its target set again |
| AccountsServed | (the control's worker watch) an account no live stream worker streams fails over at once |
|  | and its symbols get `worker_lost` gaps (TicksMissed to `gaps`); served again: restored |
| CurrentTargets (ask) | the account's target set (asked by a connection that lost its saved one) |
| BackPressure | level > 0: the account's capacity shrinks (`core.backpressure.shed_capacity`), its lowest |
|  | scored symbols are unsubscribed at once (ledger reason `backpressure`); 0: capacity back, allocate |
| TicksReceived | (from every connection) each symbol's last data time, for the stale check |
| ScanCompleted | halts and price limits from the rows; allocate at once when they change |

Metrics: `slot_changes` (subscribe + unsubscribe decisions), `overflows` (ledger lines), `slots_stale`
(stale releases), gauges `slots_in_use.<account>`, `slots_held_out` (symbols halted or at a limit),
`slots_halted` (slotted symbols kept while halted), `replacement_threshold`, `replacements_last_hour`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import date, datetime
from typing import Any

import pykka
from pykka.typing import proxy_method

from actors.base import ObserverActor, ObserverActorProxy
from actors.context import ObserverContext
from actors.directory import Directory
from config.accounts import Account
from core.backpressure import shed_capacity, shed_slots
from core.models import Candidate
from core.overflow import OverflowMonitor, OverflowReason, OverflowRecords
from core.schedule import Phase, phase_at
from core.slots import (
    Allocation,
    ChurnGuard,
    Exclusion,
    ProviderAccount,
    SlotState,
    allocate_slots,
    market_exclusion,
    release_account,
    release_accounts,
    restore_account,
    shrink_capacity,
    stale_symbols,
)
from core.streams import (
    ExtraStreams,
    StreamChoice,
    extra_streams,
    trade_capacity,
    wanted_extras,
)
from core.subscriptions import MAX_REGISTRATIONS_PER_KEY
from kis.models import Holding
from kis.ticks import ExecutionNotice
from messages.alerts import SystemAlert
from messages.control import TrackBPaused
from messages.gaps import TicksMissed
from messages.market import ExecutionsReceived, HoldingsLoaded, ScanCompleted, TicksReceived
from messages.recording import OverflowRecorded
from messages.schedule import PhaseChanged
from messages.selection import CandidatesRanked, ContextSyncDay, ContextSynced, ManualOverride
from messages.streaming import (
    AccountsServed,
    BackPressure,
    ConnectionChanged,
    ConnectionState,
    CurrentTargets,
    SetSubscriptions,
    SubscriptionRefused,
)
from spine.convert import slot_changed

STATE_NAME = "slots"
SCANNER_ASK_SECONDS = 5.0
_NO_ANSWER = object()
SIDE_SELL = "01"
SIDE_BUY = "02"
"""SELN_BYOV_CLS of an H0STCNI0 execution notice."""


@dataclass(frozen=True, slots=True)
class _FetchHoldings:
    """Self-told after start: run the balance inquiry of the accounts still without holdings."""


def tick_capacity(account: Account, max_slots: int) -> int:
    """Slots for ticks before books and program trading take their share: the execution-notice registration
    (with an HTS id) counts against the key's 41."""
    return min(max_slots, registration_budget(account))


def registration_budget(account: Account) -> int:
    """Registrations the key's market data (ticks, books, program trading) may use: its `max_slots`, less the
    execution-notice registration (with an HTS id), within KIS's 41."""
    notice_registrations = 1 if account.hts_id else 0
    return min(account.max_slots, MAX_REGISTRATIONS_PER_KEY - notice_registrations)


class SlotManagerActor(ObserverActor):
    """See the module docstring for the message table."""

    def __init__(self, name: str, directory: Directory, context: ObserverContext) -> None:
        super().__init__(name, directory)
        self.context = context
        settings = context.settings
        self._slot_settings = settings.slots
        websocket = settings.websocket
        self._book_choice = StreamChoice(websocket.order_book_held, websocket.order_book_top)
        self._program_choice = StreamChoice(websocket.program_trading_held, websocket.program_trading_top)
        self._max_extra = websocket.extra_registrations_max
        self._providers = tuple(
            ProviderAccount(account.name, tick_capacity(account, settings.slots.max_slots))
            for account in context.accounts
        )
        self._registrations = {account.name: registration_budget(account) for account in context.accounts}
        self._store = context.state_store()
        self._state = SlotState.initial(self._providers, settings.slots)
        self._held: dict[str, dict[str, int]] = {}
        self._overrides: dict[str, bool] = {}
        self._candidates: tuple[Candidate, ...] = ()
        self._movers: tuple[Candidate, ...] = ()
        self._synced_on: date | None = None
        self._phase = Phase.IDLE
        self._monitor = OverflowMonitor(settings.overflow)
        self._sent: dict[str, tuple[tuple[str, ...], ExtraStreams]] = {}
        self._overflowing: dict[str, str] = {}
        self._holdings_pending: set[str] = set()
        self._sync_unknown = False
        self._paused = False
        self._shed_levels: dict[str, int] = {}
        self._churn = ChurnGuard(settings.slots)
        self._last_data: dict[str, datetime] = {}
        self._watched_since = context.clock.now()
        self._holds: dict[str, Exclusion] = {}
        self._halted: set[str] = set()
        self._marked: set[str] = set()
        self._unserved: set[str] = set()
        """Accounts no live stream worker streams (failed over until one does)."""

    # --- life -----------------------------------------------------------------------------------------

    def on_start(self) -> None:
        now = self.context.clock.now()
        self._watched_since = now
        self._phase = phase_at(now, self.context.settings.schedule)
        self._load(now.date())
        self._sync_unknown = self._phase is Phase.FULL_OPERATION and self._synced_on != now.date()
        self._ask_sync_day()
        if not self._providers:
            self.log.warning("no accounts configured: Track B has no WebSocket slots")
        self._holdings_pending = {account.name for account in self.context.accounts}
        self._update_gauges()
        self.actor_ref.tell(_FetchHoldings())
        self.log.info(
            "slots ready: phase {}, {} accounts, {} symbols slotted, context synced today: {}",
            self._phase.value,
            len(self._providers),
            len(self._state.placement()),
            self._synced_on == now.date(),
        )

    def on_receive(self, message: Any) -> Any:
        match message:
            case CandidatesRanked():
                self._candidates = message.candidates
                self._ask_sync_day()
                if self._track_b_active():
                    self._allocate()
            case ContextSynced():
                self._on_context_synced(message)
            case PhaseChanged():
                self._on_phase(message.phase)
            case HoldingsLoaded():
                self._on_holdings(message.account, message.holdings)
            case ExecutionsReceived():
                self._on_executions(message.account, message.notices)
            case ManualOverride():
                self._on_manual(message.symbol, message.active)
            case TrackBPaused():
                return self._on_pause(message.paused)
            case SubscriptionRefused():
                self._on_refused(message)
            case ConnectionChanged():
                self._on_connection(message)
            case AccountsServed():
                self._on_served(message)
            case _FetchHoldings():
                self._fetch_holdings()
            case CurrentTargets():
                return self.targets().get(message.account, ())
            case BackPressure():
                self._on_backpressure(message)
            case TicksReceived():
                self._on_ticks(message)
            case ScanCompleted():
                self._on_scan(message)
        return None

    # --- queries (proxy calls: status view, tests) -------------------------------------------------------

    def snapshot(self) -> SlotState:
        return self._state

    def targets(self) -> dict[str, tuple[str, ...]]:
        """Each account's current target set (empty while Track B is not running)."""
        active = self._track_b_active()
        return {account.name: account.symbols if active else () for account in self._state.accounts}

    def streams(self) -> dict[str, ExtraStreams]:
        """Each account's slotted symbols that also stream their order book and program trading, within the
        registrations its trades leave (`core.streams`)."""
        registrations = self._registrations
        active = self._track_b_active()
        held = self._held_symbols()
        streams = {}
        for account in self._state.accounts:
            if not active or not account.available:
                streams[account.name] = ExtraStreams()
                continue
            wanted = wanted_extras(account.slots, held, self._book_choice, self._program_choice)
            streams[account.name] = extra_streams(
                wanted, registrations.get(account.name, 0), len(account.slots), self._max_extra
            )
        return streams

    def pinned(self) -> frozenset[str]:
        return frozenset(self._pins()) | frozenset(self._slot_settings.watchlist)

    def overflowing(self) -> dict[str, str]:
        """Symbols left out of the slots now, with the overflow reason code."""
        return dict(self._overflowing)

    def paused(self) -> bool:
        return self._paused
    def held_out(self) -> dict[str, str]:
        """Symbols kept out of the slots by the last scans (halted, at a price limit): symbol -> why."""
        return {symbol: f"{code.value}: {reason}" for symbol, (code, reason) in sorted(self._holds.items())}

    def halted_in_slots(self) -> frozenset[str]:
        """Slotted symbols the venue halted and that keep their slot (`remove_halted` off, or pinned)."""
        return frozenset(self._halted & self._state.placement().keys())

    def replacement_threshold(self) -> float:
        return self._churn.threshold

    # --- handlers ---------------------------------------------------------------------------------------

    def _on_context_synced(self, message: ContextSynced) -> None:
        today = self.context.clock.now().date()
        self._sync_unknown = False
        if self._synced_on == today:
            self.log.info("context synced again today: its {} movers are ignored (Track B started with the "
                          "first sync)", len(message.movers))
        else:
            self._synced_on = today
            # Kept apart until Track B's first allocation: a ranking arriving before 09:30 must not drop them.
            self._movers = message.movers
            self.log.info("context synced: {} opening movers", len(message.movers))
            self._save()
        if self._track_b_active():
            self._allocate()

    def _ask_sync_day(self) -> None:
        """While today's sync is unknown (a start in FULL_OPERATION without it in the saved state), ask the
        scanner; asked again at the next ranking while it is not running or does not answer. The allocation
        waits for that ranking: slots restored empty must not empty the connections' targets before it."""
        if not self._sync_unknown or self.directory.ref("scanner") is None:
            return
        try:
            synced = self.directory.ask("scanner", ContextSyncDay(at=self.context.clock.now()),
                                        timeout=SCANNER_ASK_SECONDS, default=_NO_ANSWER)
        except pykka.Timeout:
            synced = _NO_ANSWER
        if synced is _NO_ANSWER:
            self.log.warning("scanner did not say whether the context is synced today; asked again at the "
                             "next ranking")
            return
        self._sync_unknown = False
        today = self.context.clock.now().date()
        if synced == today and self._synced_on != today:
            self._synced_on = today
            self.log.info("the scanner synced the context today already: Track B runs from the next ranking")
            self._save()

    def _on_phase(self, phase: Phase) -> None:
        was_active = self._track_b_active()
        self._phase = phase
        if self._holdings_pending:
            self._fetch_holdings()
        if self._track_b_active():
            if not was_active:
                self.log.info(
                    "Track B starts: allocating {} candidates and {} opening movers",
                    len(self._candidates),
                    len(self._movers),
                )
            self._allocate()
        elif was_active or self._state.placement():
            self._stop_track_b()

    def _stop_track_b(self) -> None:
        self.log.info("Track B stops ({}): every account's target set is now empty", self._phase.value)
        slotted = len(self._state.placement())
        # Slots and cooldowns go; what was learnt about each account (capacity, health) stays.
        self._state = SlotState(tuple(replace(account, slots=()) for account in self._state.accounts))
        self._overflowing = {}
        self._movers = ()
        self._last_data = {}
        self._holds = {}
        self._halted = set()
        self._marked = set()
        self.context.metrics.inc("slot_changes", slotted)
        self._save()
        self._publish(force=self._account_names())
        self._update_gauges()

    def _on_ticks(self, message: TicksReceived) -> None:
        last = self._last_data
        at = message.at
        for tick in message.ticks:
            last[tick.symbol] = at

    def _on_scan(self, message: ScanCompleted) -> None:
        """Halts and price limits from the scan rows; symbols missing from the rows keep what they had."""
        settings = self._slot_settings
        changed = False
        for row in message.rows:
            symbol = row.symbol
            if row.halted:
                self._halted.add(symbol)
            else:
                self._halted.discard(symbol)
            hold = market_exclusion(row, settings)
            before = self._holds.get(symbol)
            if hold == before:
                continue
            changed = True
            if hold is None:
                del self._holds[symbol]
                again = "trades again" if before.code is OverflowReason.HALTED else "left its price limit"
                self.log.info("{} {}: it may take a slot again", symbol, again)
            else:
                self._holds[symbol] = hold
                self.log.info("{} {}: kept out of the slots", symbol, hold.reason)
        self.context.metrics.set("slots_held_out", len(self._holds))
        if changed and self._track_b_active():
            self._allocate()  # marks the halted symbols that keep their slots
        else:
            self._mark_halted()

    def _mark_halted(self) -> None:
        """Log each slotted symbol that is halted but keeps its slot, once per halt."""
        halted = self._halted & self._state.placement().keys()
        for symbol in sorted(halted - self._marked):
            self.log.warning("{} is halted by the venue: it keeps its slot and is not judged stale", symbol)
        self._marked = halted
        self.context.metrics.set("slots_halted", len(halted))

    def _on_holdings(self, account: str, holdings: Iterable[Holding]) -> None:
        self._holdings_pending.discard(account)
        held = {holding.symbol: holding.quantity for holding in holdings if holding.quantity > 0}
        self._held[account] = held
        self.log.info(
            "{}: {} held positions pinned{}",
            account,
            len(held),
            f" ({', '.join(sorted(held))})" if held else "",
        )
        self._pins_changed()

    def _on_executions(self, account: str, notices: Iterable[ExecutionNotice]) -> None:
        held = self._held.setdefault(account, {})
        before = set(held)
        for notice in notices:
            if not notice.is_fill or notice.rejected or notice.filled_qty <= 0:
                continue
            if notice.side == SIDE_BUY:
                held[notice.symbol] = held.get(notice.symbol, 0) + notice.filled_qty
            elif notice.side == SIDE_SELL:
                remaining = held.get(notice.symbol, 0) - notice.filled_qty
                if remaining > 0:
                    held[notice.symbol] = remaining
                else:
                    held.pop(notice.symbol, None)
        if set(held) == before:
            if held:
                self._save()  # quantities changed, pins did not
            return
        for symbol in sorted(set(held) - before):
            self.log.info("{}: bought {}: pinned", account, symbol)
        for symbol in sorted(before - set(held)):
            self.log.info(
                "{}: sold all of {}: unpinned, its slot is free for the next candidate", account, symbol
            )
        self._pins_changed()

    def _on_manual(self, symbol: str, active: bool) -> None:
        if self._overrides.get(symbol) is active:
            return
        self._overrides[symbol] = active
        self.log.info("manual override: {} {}", symbol, "pinned" if active else "released")
        self._pins_changed()

    def _on_pause(self, paused: bool) -> str:
        if paused == self._paused:
            return f"Track B was already {'paused' if paused else 'running'}: nothing changed"
        was_active = self._track_b_active()
        self._paused = paused
        self.log.warning("Track B {} by hand", "paused" if paused else "resumed")
        if paused and was_active:
            self._stop_track_b()
        else:
            self._save()
            if self._track_b_active():
                self._allocate()
        if paused:
            return "Track B paused: every account's target set is empty until it is resumed"
        waiting = "" if self._track_b_active() else " (it runs in FULL_OPERATION after the context sync)"
        return f"Track B resumed{waiting}"

    def _pins_changed(self) -> None:
        self._save()
        if self._track_b_active():
            self._allocate()

    def _on_refused(self, message: SubscriptionRefused) -> None:
        if message.account not in self._account_names():
            self.log.warning("refusal from unknown account {}; ignored", message.account)
            return
        held_now = len(self._state.account(message.account).slots)
        capacity = message.accepted_count if message.accepted_count > 0 else max(held_now - 1, 0)
        self.log.warning(
            "{} refused {} ({}): capacity now {} slots",
            message.account,
            message.symbol,
            message.msg_cd,
            capacity,
        )
        now = self.context.clock.now()
        self._apply(
            shrink_capacity(self._state, message.account, capacity, now, (message.symbol,)), now, full=False
        )

    def _on_connection(self, message: ConnectionChanged) -> None:
        account = message.account
        if account not in self._account_names():
            return
        available = self._state.account(account).available
        now = self.context.clock.now()
        limit = self.context.settings.websocket.suspend_track_b_after_seconds
        down = message.state is ConnectionState.SUSPENDED or (
            message.state is ConnectionState.RECONNECTING and message.since_seconds >= limit
        )
        if down and available:
            moved = len(self._state.account(account).slots)
            self.log.warning(
                "{} is {} for {:.0f} s: failover of its {} symbols",
                account,
                message.state.value,
                message.since_seconds,
                moved,
            )
            self._apply(release_account(self._state, account, now), now, full=False)
        elif message.state is ConnectionState.CONNECTED:
            if not available and account not in self._unserved:
                self.log.info("{} is connected again: it takes its symbols back", account)
                self._apply(restore_account(self._state, account, now), now, full=False)
            self._publish(force=(account,))

    def _on_served(self, message: AccountsServed) -> None:
        """A dead worker's accounts fail over now and their symbols' gaps are recorded; an account a worker
        streams again takes its symbols back and gets its target set."""
        now = self.context.clock.now()
        served = set(message.served)
        lost = [account for account in self._account_names()
                if account not in served and account not in self._unserved]
        for account in lost:  # all first: no symbol of a lost account moves to another lost one
            self._unserved.add(account)
            symbols = self._state.account(account).symbols
            dead = f" (dead: {', '.join(message.dead)})" if message.dead else ""
            self.log.warning("{}: no live stream worker streams it{}: failover of its {} symbols",
                             account, dead, len(symbols))
            if symbols and account not in message.stopped:
                self.directory.tell("gaps", TicksMissed(at=now, account=account, symbols=symbols,
                                                        reason="worker_lost", until_next_tick=True))
        if lost:
            self._apply(release_accounts(self._state, lost, now), now, full=False)
            self._save()
        for account in self._account_names():
            if account in served and account in self._unserved:
                self._unserved.discard(account)
                self.log.info("{}: a stream worker streams it again: it takes its symbols back", account)
                self._apply(restore_account(self._state, account, now), now, full=False)
                self._save()
                if self._track_b_active():
                    self._allocate()
                self._publish(force=(account,))

    def _on_backpressure(self, message: BackPressure) -> None:
        """Shed the account's lowest scored symbols now; at level 0 its full capacity is allocated again."""
        account = message.account
        if account not in self._account_names():
            return
        now = self.context.clock.now()
        if message.level <= 0:
            if self._shed_levels.pop(account, None) is not None:
                self.log.info("{} caught up: its shed slots are allocated again", account)
                if self._track_b_active():
                    self._allocate()
                self._update_gauges()
            return
        self._shed_levels[account] = message.level
        budgeted = {provider.name: provider.capacity for provider in self._budgeted(self._state)}
        capacity = budgeted[account]
        self.log.warning("{} behind by {:.1f} s ({} messages waiting): shed level {}, {} slots", account,
                         message.lag_seconds, message.backlog, message.level, capacity)
        self._apply(shed_slots(self._state, account, capacity, now), now, full=False)

    def _budgeted(self, state: SlotState) -> tuple[ProviderAccount, ...]:
        """The pool with each account's trade slots: at most `slots.max_slots`, and few enough to leave room
        for the books and program trading they want, counting the held positions its slots in `state` hold
        (`core.streams`), with its shed level applied."""
        slots = {account.name: account.slots for account in state.accounts}
        held = self._held_symbols()
        budgeted = []
        for provider in self._providers:
            held_here = sum(1 for slot in slots.get(provider.name, ()) if slot.symbol in held)
            budget = trade_capacity(self._registrations[provider.name], held_here, self._book_choice,
                                    self._program_choice, self._max_extra)
            capacity = min(provider.capacity, budget)
            if provider.name in self._shed_levels:
                capacity = min(capacity, self._shed_capacity(provider.name, capacity))
            budgeted.append(replace(provider, capacity=capacity))
        return tuple(budgeted)

    def _shed_capacity(self, account: str, full: int) -> int:
        """The account's slots at its shed level (of `full`, its trade slots unshed); never fewer than the
        pinned symbols it holds."""
        fraction = self.context.settings.websocket.backpressure_shed_fraction
        pinned = sum(1 for slot in self._state.account(account).slots if slot.pinned)
        return max(shed_capacity(full, self._shed_levels.get(account, 0), fraction), pinned)

    def _fetch_holdings(self) -> None:
        for name in sorted(self._holdings_pending):
            account = self.context.account(name)
            if not account.account_no:
                self.log.info(
                    "{}: no account number, so no balance inquiry: held positions are not pinned", name
                )
                self._holdings_pending.discard(name)
                continue
            try:
                client = self.context.rest_client(name)
                try:
                    holdings = client.holdings()
                finally:
                    client.close()
            except Exception as error:  # a REST failure must not stop the slots: retried at the next phase
                self.log.warning(
                    "{}: balance inquiry failed ({}); retried at the next phase change",
                    name,
                    type(error).__name__,
                )
                continue
            self._on_holdings(name, holdings)

    # --- allocation -------------------------------------------------------------------------------------

    def _allocate(self) -> None:
        now = self.context.clock.now()
        candidates = (*self._movers, *self._candidates)
        self._movers = ()  # the first allocation of Track B takes them; later rankings decide alone
        placed = self._state.placement()
        self._last_data = {s: t for s, t in self._last_data.items() if s in placed}
        stale = stale_symbols(self._state, self._last_data, now, self._slot_settings,
                              watched_since=self._watched_since, exempt=self._halted)
        self._observe_churn(now, 0)  # the hour slides: the threshold may come down before this allocation
        pins, excluded = self._pins(), stale | self._holds
        providers = self._budgeted(self._state)
        allocation = allocate_slots(self._state, candidates, pins, now, self._slot_settings, providers,
                                    excluded=excluded, threshold=self._churn.threshold)
        again = self._budgeted(allocation.state)
        if again != providers:  # the new slots want another share of books and program trading
            allocation = allocate_slots(self._state, candidates, pins, now, self._slot_settings, again,
                                        excluded=excluded, threshold=self._churn.threshold)
        released = {symbol for symbol in stale if symbol not in allocation.state.placement()}
        if released:
            self.context.metrics.inc("slots_stale", len(released))
        self._apply(allocation, now, full=True)
        self._observe_churn(now, allocation.replacements)
        self._mark_halted()

    def _observe_churn(self, now: datetime, replacements: int) -> None:
        """Rapid Symbol Churn: count the replacements and log when the threshold moves."""
        before = self._churn
        self._churn = after = before.observe(now, replacements)
        if after.raised and not before.raised:
            self.log.warning(
                "rapid symbol churn: {} replacements in the last hour (more than {}): replacement threshold "
                "{} -> {}", after.replacements_last_hour, self._slot_settings.churn_replacements_per_hour,
                before.threshold, after.threshold)
        elif before.raised and not after.raised:
            self.log.info(
                "symbol churn calmed: {} replacements in the last hour (at most {}): replacement threshold "
                "{} -> {}", after.replacements_last_hour, self._slot_settings.calm_replacements_per_hour,
                before.threshold, after.threshold)
        if replacements or after != before:
            self._save()
        self.context.metrics.set("replacement_threshold", after.threshold)
        self.context.metrics.set("replacements_last_hour", after.replacements_last_hour)

    def _apply(self, allocation: Allocation, now: datetime, *, full: bool) -> None:
        """Adopt the allocation: log, count, record overflow, alert on levels, save, publish."""
        changed = allocation.state != self._state
        self._state = allocation.state
        for change in allocation.reasons:
            self.log.info("{} {} on {}: {}", change.action, change.symbol, change.account, change.reason)
            self.context.spine.publish(slot_changed(change, now))
        self.context.metrics.inc("slot_changes", len(allocation.reasons))
        self._record_overflow(allocation.overflow, now, full=full)
        self._observe_overflow(now, allocation.evaluated, len(allocation.overflow))
        if changed:
            self._save()
        self._publish()
        self._update_gauges()

    def _record_overflow(self, overflow: OverflowRecords, now: datetime, *, full: bool) -> None:
        current: dict[str, str] = {}
        lines: dict[str, list[dict[str, Any]]] = {}
        default = self._providers[0].name if self._providers else None
        for record in overflow:
            code = record.code.value
            current[record.symbol] = code
            if self._overflowing.get(record.symbol) == code:
                continue
            account = record.account or default
            if account is not None:
                lines.setdefault(account, []).append(record.to_ledger())
        if full:
            self._overflowing = current
        else:
            self._overflowing.update(current)
        for account, records in lines.items():
            self.directory.tell("recorder", OverflowRecorded(at=now, account=account, lines=tuple(records)))
            self.context.metrics.inc("overflows", len(records))
            self.log.info("{} candidates overflowed (ledger of {})", len(records), account)

    def _observe_overflow(self, now: datetime, evaluated: int, overflowed: int) -> None:
        if evaluated <= 0:
            return
        self._monitor, crossed = self._monitor.observe(now, evaluated, min(overflowed, evaluated))
        for level in crossed:
            self._alert(
                f"overflow_rate.{level:g}",
                f"overflow rate {self._monitor.rate:.1%} over the last hour is above {level:.0%}: "
                f"more candidates than WebSocket slots",
            )

    def _publish(self, force: Iterable[str] = ()) -> None:
        """Tell each connection its target set (symbols, books, program trading) when it differs from the last
        one it got (or is forced)."""
        forced = set(force)
        now = self.context.clock.now()
        streams = self.streams()
        for name, symbols in self.targets().items():
            extras = streams.get(name, ExtraStreams())
            if name in self._unserved:  # no worker streams it: told again once one does
                self._sent.pop(name, None)
                continue
            if name not in forced and self._sent.get(name, ((), ExtraStreams())) == (symbols, extras):
                continue
            message = SetSubscriptions(at=now, account=name, symbols=symbols, order_books=extras.order_books,
                                       program_trading=extras.program_trading)
            delivered = self.directory.tell(f"ws.{name}", message)
            self.context.spine.publish(message)
            if delivered:
                self._sent[name] = (symbols, extras)
            else:
                self._sent.pop(name, None)

    def _alert(self, key: str, text: str) -> None:
        self.directory.tell("notifier", SystemAlert(at=self.context.clock.now(), key=key, text=text))

    # --- helpers ----------------------------------------------------------------------------------------

    def _track_b_active(self) -> bool:
        return (
            self._phase is Phase.FULL_OPERATION
            and not self._paused
            and self._synced_on is not None
            and self._synced_on == self.context.clock.now().date()
        )

    def _pins(self) -> set[str]:
        manual = set(self.context.settings.triggers.manual.symbols)
        manual |= {symbol for symbol, active in self._overrides.items() if active}
        manual -= {symbol for symbol, active in self._overrides.items() if not active}
        return manual.union(*(held.keys() for held in self._held.values()))

    def _held_symbols(self) -> frozenset[str]:
        """Every account's held positions (they get books and program trading first)."""
        return frozenset().union(*(held.keys() for held in self._held.values()))

    def _account_names(self) -> tuple[str, ...]:
        return tuple(provider.name for provider in self._providers)

    def _update_gauges(self) -> None:
        for account in self._state.accounts:
            self.context.metrics.set(f"slots_in_use.{account.name}", len(account.slots))
            self.context.metrics.set(f"slots_capacity.{account.name}", account.capacity)

    # --- persistence ------------------------------------------------------------------------------------

    def _save(self) -> None:
        document = {
            "day": self.context.clock.now().date().isoformat(),
            "state": self._state.to_dict(),
            "held": self._held,
            "overrides": self._overrides,
            "synced_on": self._synced_on.isoformat() if self._synced_on else None,
            "paused": self._paused,
            "unserved": sorted(self._unserved),
            "churn": {"replaced_at": [moment.isoformat() for moment in self._churn.replaced_at],
                      "raised": self._churn.raised},
        }
        try:
            self._store.save(STATE_NAME, document)
        except (OSError, TypeError) as error:
            self.log.error("could not save the slot state: {}", error)

    def _load(self, today: date) -> None:
        document = self._store.load(STATE_NAME)
        if document is None:
            return
        self._held = _held_from(document.get("held"))
        overrides = document.get("overrides")
        if isinstance(overrides, dict):
            self._overrides = {str(k): v for k, v in overrides.items() if isinstance(v, bool)}
        self._paused = document.get("paused") is True
        unserved = document.get("unserved")
        if isinstance(unserved, list):
            self._unserved = {str(account) for account in unserved} & set(self._account_names())
        if document.get("day") != today.isoformat():
            self.log.info("saved slot state is from {}; the day starts with empty slots", document.get("day"))
            return
        synced = document.get("synced_on")
        self._synced_on = today if synced == today.isoformat() else None
        self._churn = _churn_from(document.get("churn"), self._churn)
        try:
            self._state = SlotState.from_dict(document.get("state"))
        except ValueError as error:
            self.log.warning("saved slot state ignored: {}", error)
            return
        self.log.info(
            "slot state restored: {} symbols slotted, {} in re-subscribe cooldown",
            len(self._state.placement()),
            len(self._state.released_at),
        )


def _held_from(data: Any) -> dict[str, dict[str, int]]:
    if not isinstance(data, dict):
        return {}
    return {
        str(account): {str(symbol): qty for symbol, qty in symbols.items() if _positive_int(qty)}
        for account, symbols in data.items()
        if isinstance(symbols, dict)
    }


def _churn_from(data: Any, fresh: ChurnGuard) -> ChurnGuard:
    """The saved churn guard; `fresh` when the saved one is missing or malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("raised"), bool):
        return fresh
    try:
        times = tuple(datetime.fromisoformat(text) for text in data.get("replaced_at", ()))
    except (TypeError, ValueError):
        return fresh
    if any(moment.tzinfo is None for moment in times):
        return fresh
    return replace(fresh, replaced_at=times, raised=data["raised"])


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class SlotManagerProxy(ObserverActorProxy):
    """Typed proxy: `directory.proxy("slots", SlotManagerProxy).targets().get(timeout=5)`."""

    snapshot = proxy_method(SlotManagerActor.snapshot)
    targets = proxy_method(SlotManagerActor.targets)
    pinned = proxy_method(SlotManagerActor.pinned)
    overflowing = proxy_method(SlotManagerActor.overflowing)
    paused = proxy_method(SlotManagerActor.paused)
    held_out = proxy_method(SlotManagerActor.held_out)
    halted_in_slots = proxy_method(SlotManagerActor.halted_in_slots)
    replacement_threshold = proxy_method(SlotManagerActor.replacement_threshold)
    streams = proxy_method(SlotManagerActor.streams)
