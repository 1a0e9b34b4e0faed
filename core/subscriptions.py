"""Explicit per-registration WebSocket subscription state, replayed after every reconnect.

KIS forgets a session's registrations when the session ends, so the connection actor keeps the TARGET
(what should be registered) apart from what the server has confirmed. Each registration the actor has
spoken about is PENDING_SUBSCRIBE (sent, no answer yet), CONFIRMED, or PENDING_UNSUBSCRIBE; a
registration with no entry is not registered. After every event (a new target, an ack, a (re)connect)
`SubscriptionBook` returns the commands that move the server towards the target, and never sends a
second command for a registration whose answer is still outstanding.

Answers: ALREADY IN SUBSCRIBE counts as success and UNSUBSCRIBE ERROR (not found) as done. A refused
subscribe (MAX SUBSCRIBE OVER and other errors) is remembered and not sent again in the same session,
so a full key is reported once instead of being retried in a loop; a reconnect (fresh capacity) or the
registration leaving the target and coming back clears the refusal.

Capacity (41 registrations per app key, every TR counted): unsubscribes go out before subscribes, and a
subscribe waits while the book already holds `capacity` registrations of which some are on their way
out, so a swap of symbols on a full key never trips MAX SUBSCRIBE OVER; a target larger than the
capacity is still sent, and the server's refusal is what reports it.

Pure: no I/O, no clock; the connection actor owns one book per account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class SubState(StrEnum):
    PENDING_SUBSCRIBE = "pending_subscribe"
    CONFIRMED = "confirmed"
    PENDING_UNSUBSCRIBE = "pending_unsubscribe"


class Action(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


@dataclass(frozen=True, slots=True, order=True)
class Registration:
    """One KIS registration: a TR (e.g. H0STCNT0) and its key (a symbol, or the HTS id for notices)."""

    tr_id: str
    tr_key: str


@dataclass(frozen=True, slots=True)
class Command:
    """A message to send on the session."""

    action: Action
    registration: Registration


@dataclass(frozen=True, slots=True)
class Refusal:
    """The server refused a subscribe; `confirmed_count` registrations were live at that moment."""

    registration: Registration
    msg_cd: str
    msg1: str
    confirmed_count: int


@dataclass(frozen=True, slots=True)
class AckResult:
    """What one ack changed: the follow-up commands, a refusal to report, and whether it matched anything."""

    commands: tuple[Command, ...] = ()
    refusal: Refusal | None = None
    matched: bool = True


MAX_REGISTRATIONS_PER_KEY = 41
"""KIS's realtime registrations per app key (docs/kis_api_facts.md)."""


class AckCode(StrEnum):
    SUBSCRIBE_SUCCESS = "OPSP0000"
    UNSUBSCRIBE_SUCCESS = "OPSP0001"
    ALREADY_SUBSCRIBED = "OPSP0002"
    UNSUBSCRIBE_NOT_FOUND = "OPSP0003"
    INTERNAL_ERROR = "OPSP0007"
    MAX_SUBSCRIBE_OVER = "OPSP0008"
    INVALID_APPROVAL = "OPSP0011"
    APPKEY_IN_USE = "OPSP8996"


_SUBSCRIBED = frozenset({AckCode.SUBSCRIBE_SUCCESS.value, AckCode.ALREADY_SUBSCRIBED.value})
_UNSUBSCRIBED = frozenset({AckCode.UNSUBSCRIBE_SUCCESS.value, AckCode.UNSUBSCRIBE_NOT_FOUND.value})
_SESSION_REFUSALS = frozenset({AckCode.INVALID_APPROVAL.value, AckCode.APPKEY_IN_USE.value})


def is_session_refusal(msg_cd: str) -> bool:
    """Whether an answer refuses the whole session (bad approval key, app key in use elsewhere)."""
    return msg_cd in _SESSION_REFUSALS


class SubscriptionBook:
    """Target set, per-registration state and refusals of one account's session."""

    def __init__(self, capacity: int = MAX_REGISTRATIONS_PER_KEY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._target: dict[Registration, None] = {}  # ordered: replayed in target order
        self._states: dict[Registration, SubState] = {}
        self._refused: set[Registration] = set()
        self._connected = False

    # --- queries ---------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def target(self) -> tuple[Registration, ...]:
        return tuple(self._target)

    def state(self, registration: Registration) -> SubState | None:
        return self._states.get(registration)

    def confirmed(self) -> tuple[Registration, ...]:
        return tuple(reg for reg, state in self._states.items() if state is SubState.CONFIRMED)

    def pending(self) -> tuple[Registration, ...]:
        return tuple(reg for reg, state in self._states.items() if state is not SubState.CONFIRMED)

    def refused(self) -> tuple[Registration, ...]:
        return tuple(sorted(self._refused))

    def settled(self) -> bool:
        """Nothing outstanding: every target registration confirmed or refused, nothing else registered."""
        if self.pending():
            return False
        live = set(self.confirmed())
        covered = all(reg in live or reg in self._refused for reg in self._target)
        return covered and live <= self._target.keys()

    # --- events ----------------------------------------------------------------------------------

    def set_target(self, registrations: Iterable[Registration]) -> tuple[Command, ...]:
        """Replace the target set (order kept, repeats dropped); the commands that move towards it."""
        target = dict.fromkeys(registrations)
        self._refused &= target.keys()
        self._target = target
        return self._diff()

    def on_connected(self) -> tuple[Command, ...]:
        """A new session is open: it has no registrations, so every target is sent again."""
        self._connected = True
        self._states.clear()
        self._refused.clear()
        return self._diff()

    def on_disconnected(self) -> tuple[Registration, ...]:
        """The session ended; the server forgot everything. Returns what it may have been streaming: the
        confirmed registrations, and those with a request in flight (a subscribe the server may have begun
        serving, an unsubscribe it had not processed), whose frames in flight are lost with the session."""
        was_streaming = tuple(self._states)
        self._connected = False
        self._states.clear()
        return was_streaming

    def on_ack(self, tr_id: str, tr_key: str, msg_cd: str, msg1: str = "") -> AckResult:
        """Apply the server's answer for (tr_id, tr_key). Unknown registrations are reported unmatched."""
        registration = Registration(tr_id, tr_key)
        state = self._states.get(registration)
        if msg_cd in _SUBSCRIBED:
            if state is SubState.PENDING_UNSUBSCRIBE:
                return AckResult(matched=True)  # a late answer to the subscribe before our unsubscribe
            self._states[registration] = SubState.CONFIRMED
            return AckResult(self._diff(), matched=state is not None)
        if msg_cd in _UNSUBSCRIBED:
            if state is SubState.PENDING_UNSUBSCRIBE:
                del self._states[registration]
                return AckResult(self._diff())
            return AckResult(matched=False)
        if state is SubState.PENDING_SUBSCRIBE:
            del self._states[registration]
            if registration not in self._target:
                return AckResult(self._diff())  # no longer wanted: nothing to report
            self._refused.add(registration)
            refusal = Refusal(registration, msg_cd, msg1, len(self.confirmed()))
            return AckResult(self._diff(), refusal=refusal)
        if state is SubState.PENDING_UNSUBSCRIBE:
            del self._states[registration]  # the server cannot stop what it does not have
            return AckResult(self._diff())
        return AckResult(matched=False)

    def _diff(self) -> tuple[Command, ...]:
        if not self._connected:
            return ()
        commands: list[Command] = []
        leaving = False
        for registration, state in list(self._states.items()):
            if registration in self._target:
                continue
            leaving = True
            if state is SubState.CONFIRMED:
                self._states[registration] = SubState.PENDING_UNSUBSCRIBE
                commands.append(Command(Action.UNSUBSCRIBE, registration))
        for registration in self._target:
            if registration in self._states or registration in self._refused:
                continue
            if leaving and len(self._states) >= self.capacity:
                break  # room is on its way: the next answer runs this diff again
            self._states[registration] = SubState.PENDING_SUBSCRIBE
            commands.append(Command(Action.SUBSCRIBE, registration))
        return tuple(commands)
