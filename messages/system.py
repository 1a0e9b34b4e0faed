"""Messages of the runtime itself: liveness, injected crashes, and children reporting to their supervisor."""

from __future__ import annotations

from messages.base import Message


class Ping(Message):
    """Every ObserverActor answers an `ask(Ping)` with its child id once `on_start` is done (a barrier)."""


class Crash(Message):
    """Every ObserverActor raises `InjectedCrash` on this. Use `tell`: an ask only fails the asker."""

    reason: str = "injected crash"


class ChildFailed(Message):
    """An incarnation of a child ended by an exception (in on_start, a handler, on_failure or on_stop)."""

    child_id: str
    actor_urn: str
    error: str


class ChildExited(Message):
    """An incarnation of a child stopped normally (it stopped itself or someone stopped it)."""

    child_id: str
    actor_urn: str


class StartChildren(Message):
    """Supervisor: start every child in order; the reply comes once all have started."""


class StopChildren(Message):
    """Supervisor: stop every child in reverse order, then the supervisor itself."""

    reason: str = "requested"


class RestartDue(Message):
    """Supervisor: the backoff delay for `child_id` has passed. `generation` drops stale timers."""

    child_id: str
    generation: int
