"""Which stream workers are alive and which accounts they serve, judged from their heartbeats.

A stream worker (`run.py --role stream [--accounts a,b]`) announces itself every few seconds with the
accounts it serves and each one's session state. The control process keeps a `Roster` of what it heard:
a worker not heard for `timeout` seconds is dead, and the accounts no live worker serves leave the slot
pool (their symbols fail over to the others) until a worker serves them again. An account a worker names
but cannot stream yet (its session is held by another worker, state `waiting`) is not served by it.

Times are plain seconds of a monotonic clock the caller reads: liveness is a matter of real seconds, not
of the (possibly simulated) market clock. A worker that stops cleanly says so in its last heartbeat and is
then judged like a dead one, after the same timeout (a control stopping with it moves nothing), but its
accounts need no gaps of their own. Right after the control starts, an account no worker has streamed yet
counts as served for a grace period (`grace_until`): the workers start after the control, and a restarted
control has not heard them yet; taking their accounts away would move every slot for nothing. An account a
worker has streamed follows that worker from then on, grace or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

WAITING = "waiting"
"""The session state of an account whose worker waits for another worker to let go of its session."""


@dataclass(frozen=True, slots=True)
class WorkerBeat:
    """One heartbeat as the control heard it: the worker, its host and process, each account's session
    state, when; `stopping`: its last word before a clean stop (its connections recorded their own gaps as
    they closed)."""

    worker: str
    host: str
    sessions: Mapping[str, str]
    heard_at: float
    stopping: bool = False
    pid: int = 0

    @property
    def process(self) -> tuple[str, int]:
        """One worker process: a restarted worker, or a second one started by mistake with the same id (its
        session lease keeps it waiting), is another process of the same worker."""
        return (self.worker, self.pid)

    @property
    def streaming(self) -> frozenset[str]:
        """The accounts this worker streams (every named one but those waiting for their session)."""
        return frozenset(account for account, state in self.sessions.items() if state != WAITING)


@dataclass(frozen=True, slots=True)
class RosterChange:
    """What one judgement found: workers that died, accounts no longer served, accounts served again,
    and accounts a live worker names that the control's pool does not know."""

    dead: tuple[WorkerBeat, ...] = ()
    lost: tuple[str, ...] = ()
    back: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.dead or self.lost or self.back)


@dataclass(frozen=True, slots=True)
class Roster:
    """The live workers, the accounts they served at the last `judge`, and the accounts any worker has
    streamed since the start (`streamed`). Immutable: `heard` and `judge` return the next roster."""

    accounts: tuple[str, ...]
    grace_until: float
    beats: Mapping[tuple[str, int], WorkerBeat] = field(default_factory=dict)
    served: frozenset[str] = frozenset()
    streamed: frozenset[str] = frozenset()

    @classmethod
    def starting(cls, accounts: Iterable[str], now: float, grace: float) -> Roster:
        """A fresh roster: every account counts as served until `now + grace` unless a worker streams it."""
        pool = tuple(accounts)
        return cls(pool, now + grace, MappingProxyType({}), frozenset(pool))

    def heard(self, beat: WorkerBeat) -> Roster:
        """The roster with `beat` as its worker's latest word."""
        beats = {**self.beats, beat.process: beat}
        return Roster(self.accounts, self.grace_until, MappingProxyType(beats), self.served,
                      self.streamed | beat.streaming)

    def judge(self, now: float, timeout: float) -> tuple[Roster, RosterChange]:
        """Drop the workers not heard for more than `timeout` seconds and say which accounts changed."""
        live = {name: beat for name, beat in self.beats.items() if now - beat.heard_at <= timeout}
        dead = tuple(beat for name, beat in sorted(self.beats.items()) if name not in live)
        pool = frozenset(self.accounts)
        streaming = frozenset().union(*(beat.streaming for beat in live.values()))
        unheard = pool - self.streamed if now < self.grace_until else frozenset()
        served = (streaming & pool) | unheard
        change = RosterChange(
            dead=dead,
            lost=tuple(account for account in self.accounts if account in self.served - served),
            back=tuple(account for account in self.accounts if account in served - self.served),
            unknown=tuple(sorted(streaming - pool)),
        )
        return Roster(self.accounts, self.grace_until, MappingProxyType(live), served, self.streamed), change

