"""Control commands as NATS request/reply on `observer.<instance>.control.<command>` (docs/spine.md).

`ControlResponder` runs in the control process: it answers every request on `observer.<instance>.control.*`
with what its `answer` callable makes of it (in a queue group, so one control process answers each). The
HTTP surface sends with `ControlClient` (one connection on a thread of its own, `send` from any thread);
`run.py ctl --nats URL` with `request_once`. Nobody answering is `NoControl`, one sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import nats
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from spine.server import quiet_nats_errors, server_urls
from spine.subjects import Subjects
from spine.wire import ControlReply

QUEUE_GROUP = "observer-control"
REPLY_TIMEOUT_SECONDS = 10.0
"""How long a sender waits for the control process (which waits up to a few seconds for its actors)."""
CONNECT_WAIT_SECONDS = 10.0
RECONNECT_WAIT_SECONDS = 0.5
NO_RESPONDER_GRACE_SECONDS = 2.0
NO_RESPONDER_RETRY_SECONDS = 0.2


class NoControl(RuntimeError):
    """No control process answered: the one sentence for the caller."""


def control_subject(instance: str, command: str) -> str:
    """Where requests for `command` go (the command as one safe token)."""
    return Subjects(instance).of("control.{command}", command=command)


def command_of(subject: str) -> str:
    """The command a request subject names (its last token)."""
    return subject.rsplit(".", 1)[-1]


async def ask(
    nc: Client, instance: str, command: str, request: dict[str, Any], timeout: float
) -> ControlReply:
    """Send one control request and wait for the reply; NoControl when nobody answers in time. A request
    nobody listens to is sent again for NO_RESPONDER_GRACE_SECONDS (a responder reconnecting, a control
    restarting) before the answer is that none listens."""
    subject = control_subject(instance, command)
    data = json.dumps(request).encode()
    deadline = time.monotonic() + min(timeout, NO_RESPONDER_GRACE_SECONDS)
    while True:
        try:
            msg = await nc.request(subject, data, timeout=timeout)
            break
        except NoRespondersError:
            if time.monotonic() >= deadline:
                nobody = f"no control process is listening on {subject}: nothing was changed"
                raise NoControl(nobody) from None
            await asyncio.sleep(NO_RESPONDER_RETRY_SECONDS)
        except NatsTimeout:
            raise NoControl(f"no control process answered on {subject} within {timeout:g} s") from None
    try:
        return ControlReply.model_validate_json(msg.data)
    except ValueError:
        raise NoControl(f"the answer on {subject} is not a control reply") from None


def request_once(
    url: str, instance: str, command: str, request: dict[str, Any], timeout: float = REPLY_TIMEOUT_SECONDS
) -> ControlReply:
    """Connect, send one control request, close (for a command-line client)."""

    async def once() -> ControlReply:
        try:
            nc = await nats.connect(server_urls(url), connect_timeout=2, max_reconnect_attempts=0,
                                    allow_reconnect=False, error_cb=quiet_nats_errors)
        except (NatsError, OSError, TimeoutError) as error:
            raise NoControl(f"cannot reach NATS: {type(error).__name__}") from None
        try:
            return await ask(nc, instance, command, request, timeout)
        finally:
            with contextlib.suppress(NatsError, OSError, TimeoutError):
                await nc.close()

    return asyncio.run(once())


class _Connection:
    """A nats-py connection on an event loop of its own thread; coroutines run on it from any thread."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._nc: Client | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        """Connect, waiting up to CONNECT_WAIT_SECONDS (nats-py keeps trying after that)."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._connect(), self._loop)
        try:
            future.result(CONNECT_WAIT_SECONDS)
        except FutureTimeout:
            logger.warning("{}: NATS not reached yet; still trying", self.name)

    def call(self, coroutine: Any, timeout: float) -> Any:
        """The result of `coroutine` run on the connection's loop (waiting at most `timeout`)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    @property
    def client(self) -> Client | None:
        nc = self._nc
        return nc if nc is not None and nc.is_connected else None

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(FutureTimeout, NatsError, OSError, TimeoutError):
            self.call(self._close(), 5.0)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)

    async def _connect(self) -> None:
        self._nc = await nats.connect(
            server_urls(self.url),
            name=self.name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_SECONDS,
            connect_timeout=2,
            error_cb=self._on_error,
        )
        await self.connected(self._nc)

    async def connected(self, nc: Client) -> None:
        """What to do once connected (a subclass subscribes here)."""

    async def _close(self) -> None:
        nc = self._nc
        if nc is not None and not nc.is_closed:
            await nc.drain()

    async def _on_error(self, error: Exception) -> None:
        logger.debug("{}: {}", self.name, type(error).__name__)


class ControlResponder(_Connection):
    """Answers control requests of `instance`: `answer(command, request bytes)` runs on a worker thread
    (it may wait for actors); its `ControlReply` goes back to the sender."""

    def __init__(self, url: str, instance: str, answer: Callable[[str, bytes], ControlReply]) -> None:
        super().__init__(url, "control-responder")
        self.subject = f"{Subjects(instance).prefix}.control.*"
        self._answer = answer

    async def connected(self, nc: Client) -> None:
        await nc.subscribe(self.subject, queue=QUEUE_GROUP, cb=self._on_request)
        await nc.flush()
        logger.info("control: answering requests on {}", self.subject)

    async def _on_request(self, msg: Msg) -> None:
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, self._answer, command_of(msg.subject), msg.data)
        if msg.reply:
            with contextlib.suppress(NatsError):
                await msg.respond(reply.model_dump_json().encode())


class ControlClient(_Connection):
    """Sends control requests of `instance` from any thread over one connection."""

    def __init__(self, url: str, instance: str, timeout: float = REPLY_TIMEOUT_SECONDS) -> None:
        super().__init__(url, "control-client")
        self.instance = instance
        self.timeout = timeout

    def send(self, command: str, request: dict[str, Any]) -> ControlReply:
        """The control process's reply to `request` for `command`; NoControl when none comes."""
        nc = self.client
        if nc is None:
            raise NoControl("the spine (NATS) is not connected: nothing was sent")
        try:
            return self.call(ask(nc, self.instance, command, request, self.timeout), self.timeout + 2.0)
        except FutureTimeout:
            raise NoControl(f"no control process answered within {self.timeout:g} s") from None
