"""WebSocket subscriptions between the slot manager and the per-account connection actors."""

from __future__ import annotations

from enum import StrEnum

from messages.base import Message


class SetSubscriptions(Message):
    """The full target set of one account: the symbols whose trades stream, and those of them that also
    stream their order book and their program trading. Idempotent: the actor diffs and replays it."""

    account: str
    symbols: tuple[str, ...]
    order_books: tuple[str, ...] = ()
    program_trading: tuple[str, ...] = ()


class CurrentTargets(Message):
    """Ask `slots` for one account's target set (a tuple of symbols, empty while Track B does not run).

    A connection actor that starts without a readable saved target asks this instead of starting empty.
    """

    account: str


class SubscriptionRefused(Message):
    """The broker refused a registration (e.g. OPSP0008 MAX SUBSCRIBE OVER); never retried in a loop."""

    account: str
    symbol: str
    msg_cd: str
    accepted_count: int


class ConnectionState(StrEnum):
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    SUSPENDED = "suspended"
    STOPPED = "stopped"


class ConnectionChanged(Message):
    """Health of one account's WebSocket, for failover, Track B suspension and the status view."""

    account: str
    state: ConnectionState
    since_seconds: float = 0.0


class CredentialsRenewed(Message):
    """New token and approval key for an account: its connection restarts gracefully, slots preserved."""

    account: str


class BackPressure(Message):
    """Processing of `account`'s ticks fell behind (or caught up): its slots shrink to the shed `level`
    (0: every slot back). `lag_seconds` and `backlog` are what the connection measured."""

    account: str
    level: int
    lag_seconds: float
    backlog: int


class AccountsServed(Message):
    """The accounts some live stream worker streams now (the control's `spine.workers.WorkerWatch`, on every
    change): the slot manager allocates only to these; `dead` names the workers just found dead; `stopped`
    are accounts whose worker stopped cleanly (their connections recorded their gaps themselves)."""

    served: tuple[str, ...]
    dead: tuple[str, ...] = ()
    stopped: tuple[str, ...] = ()
