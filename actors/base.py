"""The base of every Observer actor: named, logged under its name, and reporting its end to the supervisor.

pykka has no public hook for three things supervision needs, so this class hooks pykka's actor loop (the
private `_actor_loop`, `_actor_loop_teardown`, `_handle_failure` and `_handle_receive`, stable across
pykka 4; the tests fail loudly if they change):

- an exception in `on_start` stops the actor without calling `on_failure`;
- a subclass may override `on_failure`/`on_stop`/`on_receive` without calling `super()`;
- the supervisor must learn how an incarnation ended, after it has fully ended (sockets closed), so
  the next incarnation never overlaps it.

Each incarnation therefore sends exactly one report when its thread ends: `ChildFailed` if any
exception escaped (on_start, a told message, on_failure, on_stop), else `ChildExited`.

A failed incarnation keeps its mail for the next one (see `actors.directory`): at the failure the
Directory starts holding messages for it, and the told `Message`s still in its inbox are handed over
instead of being dropped by pykka's teardown.

Subclasses take `name` and `directory` and pass them on:

    class ScannerActor(ObserverActor):
        def __init__(self, name: str, directory: Directory, client: RestClient) -> None:
            super().__init__(name, directory)

Typed proxies, Mopidy style:

    class ScannerProxy(ObserverActorProxy):
        scan_now = proxy_method(ScannerActor.scan_now)

    directory.proxy("scanner", ScannerProxy).scan_now().get(timeout=5)
"""

from __future__ import annotations

import queue
from types import TracebackType
from typing import Any, ClassVar

import pykka
from loguru import logger
from pykka.typing import ActorMemberMixin

from actors.directory import Directory
from messages.base import Message
from messages.system import Crash, Ping
from runtime.logs import actor_logger, bind_thread_to_actor


class InjectedCrash(RuntimeError):
    """Raised on purpose by an actor that received `Crash` (tests and `--chaos`)."""


class ObserverActor(pykka.ThreadingActor):
    """A supervised pykka actor. Its thread is named after it and everything logged on it (pykka's crash
    tracebacks included, see `runtime.logs`) carries `actor=name`; `self.log` does so from any thread.

    Daemon thread: a child that ignores a stop is abandoned by the supervisor and must not keep the
    process alive.
    """

    use_daemon_thread: ClassVar[bool] = True

    def __init__(self, name: str, directory: Directory | None = None) -> None:
        super().__init__()
        self.name = name
        self.directory = directory
        self.log = actor_logger(name)
        self._failure: str | None = None

    def __str__(self) -> str:
        return f"{self.name} ({self.__class__.__name__} {self.actor_urn[-8:]})"

    def _actor_loop(self) -> None:
        bind_thread_to_actor(self.name)
        with logger.contextualize(actor=self.name):
            try:
                super()._actor_loop()
            finally:
                self._report_end()

    def _handle_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.directory is not None:  # before pykka marks the ref dead: no tell falls between the two
            self.directory.hold(self.name, self.actor_urn)
        super()._handle_failure(exception_type, exception_value, traceback)
        self._failure = describe_exception(exception_value)

    def _actor_loop_teardown(self) -> None:
        self._hand_over_mail()
        super()._actor_loop_teardown()

    def _hand_over_mail(self) -> None:
        """After a failure: the told Messages still in the inbox go to the next incarnation; replies and
        pykka's own messages stay for pykka's teardown (which fails their askers)."""
        if self._failure is None or self.directory is None:
            return
        unhandled: list[Any] = []
        others: list[Any] = []
        while True:
            try:
                envelope = self.actor_inbox.get_nowait()
            except queue.Empty:
                break
            if envelope.reply_to is None and isinstance(envelope.message, Message):
                unhandled.append(envelope.message)
            else:
                others.append(envelope)
        for envelope in others:
            self.actor_inbox.put(envelope)
        if unhandled:
            self.directory.hand_over(self.name, self.actor_urn, unhandled)

    def _handle_receive(self, message: Any) -> Any:
        if isinstance(message, Ping):
            return self.name
        if isinstance(message, Crash):
            raise InjectedCrash(message.reason)
        return super()._handle_receive(message)

    def _report_end(self) -> None:
        if self.directory is None:
            return
        self._hand_over_mail()  # a tell that raced the failure may have landed after the teardown
        if self._failure is not None:
            self.directory.report_failure(self.name, self.actor_urn, self._failure)
        else:
            self.directory.report_exit(self.name, self.actor_urn)


class ObserverActorProxy(ActorMemberMixin, pykka.ActorProxy[ObserverActor]):
    """Base for typed proxies: subclass and declare methods with `pykka.typing.proxy_method`."""


def describe_exception(error: BaseException | None) -> str:
    """One line for logs and reports: the type and the first line of the message."""
    if error is None:
        return "unknown error"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
