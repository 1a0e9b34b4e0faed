"""How actors reach each other: by child id, always the current incarnation, never a stale ref.

A restart creates a new actor with a new ref, so peers address children through the supervisor's
`Directory`. A message for a child that is not running (stopped, never started, not restarted) is a
dead letter: counted and logged, never an exception for the sender. Only a child that is not coming back
(released) is worth a warning; during an orderly stop, before a child's first start and while it waits
for its restart, dead letters are ordinary and logged at DEBUG.

A child that crashed keeps its mail: from the moment it fails (`hold`), messages told to it are held,
the messages it had not handled yet are put in front of them (`hand_over`), and the next incarnation
gets them all, in order, before anything newer (`register`). So a crash of the recorder loses no tick
and a crash of any actor loses no message it was told, only the one that crashed it. The supervisor
`release`s the held mail as dead letters when it does not restart the child. At most `HOLD_LIMIT`
messages are held per child; more are dead letters.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar, overload

import pykka
from loguru import logger

from messages.system import ChildExited, ChildFailed
from runtime.clock import Clock

DEAD_LETTER_LOG_INTERVAL_SECONDS = 1.0
HOLD_LIMIT = 100_000

P = TypeVar("P")


class RemoteLink(Protocol):
    """How messages reach children that run in another process (`spine.link.Link`)."""

    def tell(self, child_id: str, message: Any) -> bool: ...

    def ask(
        self, child_id: str, message: Any, *, timeout: float | None = 5.0, default: Any = None
    ) -> Any: ...


class Directory:
    """Child id -> current `ActorRef`. Written by the supervisor, read by everyone (thread-safe)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._refs: dict[str, pykka.ActorRef[Any]] = {}
        self._proxies: dict[str, pykka.ActorProxy[Any]] = {}
        self._supervisor: pykka.ActorRef[Any] | None = None
        self._dead_letters: Counter[str] = Counter()
        self._dead_letters_logged_at: dict[str, float] = {}
        self._dead_letters_unlogged: Counter[str] = Counter()
        self._held: dict[str, deque[Any]] = {}  # child id -> mail for its next incarnation
        self._released: set[str] = set()  # children the supervisor gave up on (not restarted)
        self._stopping = False
        self._remote: frozenset[str] = frozenset()
        self._link: RemoteLink | None = None

    # --- children in another process -----------------------------------------------------------

    def route_remote(self, link: RemoteLink, child_ids: Iterable[str]) -> None:
        """Messages for `child_ids` (children of another process) go through `link` from now on."""
        self._link = link
        self._remote = frozenset(child_ids)

    def remote_ids(self) -> frozenset[str]:
        """The children that run in another process."""
        return self._remote

    # --- senders -------------------------------------------------------------------------------

    def ref(self, child_id: str) -> pykka.ActorRef[Any] | None:
        """The running incarnation of `child_id`, or None."""
        ref = self._refs.get(child_id)
        return ref if ref is not None and ref.is_alive() else None

    def child_ids(self) -> tuple[str, ...]:
        """Ids of the children that are running now."""
        with self._lock:
            return tuple(child_id for child_id, ref in self._refs.items() if ref.is_alive())

    def tell(self, child_id: str, message: Any) -> bool:
        """Deliver `message` to the child (or hold it for the next incarnation of a crashed one); False
        (and a dead letter) when it is not running. A child of another process gets it over the link."""
        if child_id in self._remote and self._link is not None:
            if self._link.tell(child_id, message):
                return True
            self.dead_letter(child_id, message)
            return False
        ref = self._refs.get(child_id)
        if ref is not None:
            try:
                ref.tell(message)
            except pykka.ActorDeadError:
                pass
            else:
                return True
        if self._hold_letter(child_id, message):
            return True
        self.dead_letter(child_id, message)
        return False

    def _hold_letter(self, child_id: str, message: Any) -> bool:
        with self._lock:
            held = self._held.get(child_id)
            if held is None:
                return False
            ref = self._refs.get(child_id)
            if ref is not None and ref.is_alive():  # the next incarnation arrived meanwhile
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(message)
                    return True
            if len(held) >= HOLD_LIMIT:
                return False
            held.append(message)
            return True

    def ask(self, child_id: str, message: Any, *, timeout: float | None = 5.0, default: Any = None) -> Any:
        """The child's reply; `default` (and a dead letter) when it is not running or dies first.

        `pykka.Timeout` and exceptions raised by the child's handler reach the caller as usual; a child
        of another process is asked over the link.
        """
        if child_id in self._remote and self._link is not None:
            return self._link.ask(child_id, message, timeout=timeout, default=default)
        ref = self._refs.get(child_id)
        if ref is not None:
            try:
                return ref.ask(message, timeout=timeout)
            except pykka.ActorDeadError:
                pass
        self.dead_letter(child_id, message)
        return default

    @overload
    def proxy(self, child_id: str) -> pykka.ActorProxy[Any]: ...

    @overload
    def proxy(self, child_id: str, as_type: type[P]) -> P: ...

    def proxy(self, child_id: str, as_type: type[Any] | None = None) -> Any:
        """A proxy that resolves the current incarnation on every attribute access.

        Typed Mopidy style: `directory.proxy("scanner", ScannerProxy)` where `ScannerProxy` declares the
        actor's methods with `pykka.typing.proxy_method`. A call on a child that is not running is a dead
        letter and its future yields None.
        """
        return ChildProxy(self, child_id)

    # --- dead letters --------------------------------------------------------------------------

    @property
    def dead_letter_count(self) -> int:
        with self._lock:
            return sum(self._dead_letters.values())

    def dead_letters_by_child(self) -> dict[str, int]:
        with self._lock:
            return dict(self._dead_letters)

    def dead_letter(self, child_id: str, message: Any, *, what: str | None = None) -> None:
        """Count an undeliverable message; log its type (or `what`), at most one line per child per second:
        a warning for a child that is not coming back, a debug line when its absence is ordinary."""
        now = time.monotonic()
        with self._lock:
            self._dead_letters[child_id] += 1
            last = self._dead_letters_logged_at.get(child_id)
            if last is not None and now - last < DEAD_LETTER_LOG_INTERVAL_SECONDS:
                self._dead_letters_unlogged[child_id] += 1
                return
            self._dead_letters_logged_at[child_id] = now
            unlogged = self._dead_letters_unlogged.pop(child_id, 0)
            ordinary = self._ordinary_absence(child_id)
        more = f" (+{unlogged} more since the last line)" if unlogged else ""
        what = what or type(message).__name__
        if ordinary is None:
            logger.warning("dead letter: {} for {!r}, which is not running{}", what, child_id, more)
        else:
            logger.debug("dead letter: {} for {!r}, {}{}", what, child_id, ordinary, more)

    def _ordinary_absence(self, child_id: str) -> str | None:
        """Why a child's absence is ordinary (an orderly stop, not started yet, a restart due), or None when
        it is not coming back. Called with the lock held."""
        if self._stopping:
            return "stopping with the rest"
        if child_id in self._released:
            return None
        if child_id in self._refs or child_id in self._held:
            return "restarting"
        return "not started yet, or restarting"

    def stopping(self) -> None:
        """An orderly stop of every child has begun: messages for children already stopped are expected."""
        with self._lock:
            self._stopping = True

    @property
    def is_stopping(self) -> bool:
        """Whether an orderly stop of every child has begun."""
        with self._lock:
            return self._stopping

    # --- the supervisor's side -----------------------------------------------------------------

    def attach_supervisor(self, supervisor: pykka.ActorRef[Any]) -> None:
        self._supervisor = supervisor

    def register(self, child_id: str, ref: pykka.ActorRef[Any]) -> None:
        """`ref` is the child now; it gets the mail held for it first."""
        with self._lock:
            for message in self._held.pop(child_id, ()):
                with contextlib.suppress(pykka.ActorDeadError):
                    ref.tell(message)
            self._refs[child_id] = ref
            self._released.discard(child_id)
            self._proxies.pop(child_id, None)

    def unregister(self, child_id: str) -> None:
        with self._lock:
            self._refs.pop(child_id, None)
            self._proxies.pop(child_id, None)

    def hold(self, child_id: str, actor_urn: str) -> None:
        """The running incarnation `actor_urn` of the child failed: hold its mail from now on."""
        with self._lock:
            ref = self._refs.get(child_id)
            if ref is not None and ref.actor_urn == actor_urn:
                self._held.setdefault(child_id, deque())

    def hand_over(self, child_id: str, actor_urn: str, unhandled: Iterable[Any]) -> int:
        """Put the messages a failed incarnation did not handle in front of the held mail (they were
        told before it); how many were kept."""
        with self._lock:
            held = self._held.get(child_id)
            ref = self._refs.get(child_id)
            if held is None or ref is None or ref.actor_urn != actor_urn:
                return 0
            kept = list(unhandled)[: max(0, HOLD_LIMIT - len(held))]
            held.extendleft(reversed(kept))
            return len(kept)

    def release(self, child_id: str) -> None:
        """The child is not coming back: its held mail becomes dead letters."""
        with self._lock:
            held = self._held.pop(child_id, None)
            self._released.add(child_id)
            stopping = self._stopping
        if held and stopping:
            logger.debug("{} messages held for {!r} dropped at the stop", len(held), child_id)
        elif held:
            logger.warning("{} messages held for {!r} dropped: it is not restarted", len(held), child_id)
            for message in held:
                self.dead_letter(child_id, message)

    def report_failure(self, child_id: str, actor_urn: str, error: str) -> None:
        """Called by a child's thread as it ends after an exception."""
        self._report(ChildFailed(at=self.clock.now(), child_id=child_id, actor_urn=actor_urn, error=error))

    def report_exit(self, child_id: str, actor_urn: str) -> None:
        """Called by a child's thread as it ends normally."""
        self._report(ChildExited(at=self.clock.now(), child_id=child_id, actor_urn=actor_urn))

    def _report(self, message: ChildFailed | ChildExited) -> None:
        supervisor = self._supervisor
        if supervisor is None:
            return
        try:
            supervisor.tell(message)
        except pykka.ActorDeadError:
            logger.debug("{} ended after its supervisor", message.child_id)

    def _current_proxy(self, child_id: str) -> pykka.ActorProxy[Any] | None:
        """The cached proxy of the running incarnation (building a proxy introspects the actor)."""
        ref = self.ref(child_id)
        if ref is None:
            return None
        cached = self._proxies.get(child_id)
        if cached is not None and cached.actor_ref is ref:
            return cached
        try:
            proxy = ref.proxy()
        except pykka.ActorDeadError:
            return None
        with self._lock:
            if self._refs.get(child_id) is ref:
                self._proxies[child_id] = proxy
        return proxy


class ChildProxy:
    """Looks like the child's `ActorProxy`, but follows restarts and turns dead calls into dead letters."""

    def __init__(self, directory: Directory, child_id: str) -> None:
        self._directory = directory
        self._child_id = child_id

    def __repr__(self) -> str:
        return f"<ChildProxy for {self._child_id!r}>"

    def __getattr__(self, name: str) -> Any:
        proxy = self._directory._current_proxy(self._child_id)
        if proxy is None:
            return _DeadCall(self._directory, self._child_id, name)
        member = getattr(proxy, name)
        if isinstance(member, pykka.CallableProxy):
            return _GuardedCall(self._directory, self._child_id, name, member)
        return member


class _GuardedCall:
    """A method of the running incarnation; if it dies before answering, the call is a dead letter."""

    def __init__(
        self, directory: Directory, child_id: str, name: str, call: pykka.CallableProxy[Any]
    ) -> None:
        self._directory = directory
        self._child_id = child_id
        self._name = name
        self._call = call

    def __call__(self, *args: Any, **kwargs: Any) -> pykka.Future[Any]:
        answer = self._call(*args, **kwargs)
        guarded: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()

        def get(timeout: float | None) -> Any:
            try:
                return answer.get(timeout=timeout)
            except pykka.ActorDeadError:
                self._directory.dead_letter(self._child_id, None, what=f"call {self._name}()")
                return None

        guarded.set_get_hook(get)
        return guarded

    def defer(self, *args: Any, **kwargs: Any) -> None:
        try:
            self._call.defer(*args, **kwargs)
        except pykka.ActorDeadError:
            self._directory.dead_letter(self._child_id, None, what=f"call {self._name}()")


class _DeadCall:
    """What a method looks like on a child that is not running: every call is a dead letter."""

    def __init__(self, directory: Directory, child_id: str, name: str) -> None:
        self._directory = directory
        self._child_id = child_id
        self._name = name

    def __call__(self, *_args: Any, **_kwargs: Any) -> pykka.Future[Any]:
        self._directory.dead_letter(self._child_id, None, what=f"call {self._name}()")
        answer: pykka.ThreadingFuture[Any] = pykka.ThreadingFuture()
        answer.set(None)
        return answer

    def defer(self, *_args: Any, **_kwargs: Any) -> None:
        self._directory.dead_letter(self._child_id, None, what=f"call {self._name}()")

