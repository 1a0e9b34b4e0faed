"""The link between processes: actor messages for children of another process go over NATS.

A process's `Directory` hands a message for a remote child to `Link.tell` (published on the child's
internal subject, `spine.internal`) or `Link.ask` (a NATS request with a timeout). The link subscribes to
the subjects of the process's own children (`serve`, once they have started) and tells or asks them
through the local Directory, so actor code never knows where a peer runs. Where several processes serve a
child (each stream worker's `recorder`), one of them takes each message, but for the kinds every one of
them must get (`spine.internal.EVERY_PROCESS`).

A tell never makes the caller wait. Trade ticks are published and forgotten (at most once: the journal,
written in the stream process before anything is told, is their record). Every other message is sent as a
request that the other process acknowledges once its Directory has it, in order, and sent again while
nobody answers (the other process restarting, NATS restarting) for up to `RELIABLE_GIVE_UP_SECONDS`: a
recovery record or a subscription change survives a kill on either side. Each child has a lane of its own
(in order within it), so a child nobody answers (a dead stream worker's connection) holds up no message for
another. Ticks told while this link has
no NATS connection (up to `HELD_TICKS_LIMIT` messages) take that acknowledged path too, and so do the
ticks after them until those are through (once a child has acknowledged one, the rest for it are
published without waiting): the tick triggers and the gap detector of the other process get the outage's
ticks, in order, once NATS and the other side are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, NamedTuple, Protocol

import nats
import pykka
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from messages.market import TicksReceived
from spine.internal import (
    INTERNAL_ROOT,
    QUEUE_GROUP,
    NotCrossable,
    RemoteFailure,
    decode,
    encode,
    encode_failure,
    every_process_subject,
    internal_subject,
    subject_for,
)
from spine.server import server_urls
from spine.subjects import token

PENDING_BYTES = 16 * 1024 * 1024
"""nats-py's buffer for what is told while it reconnects."""
RECONNECT_WAIT_SECONDS = 0.5
CONNECT_WAIT_SECONDS = 10.0
RELIABLE_GIVE_UP_SECONDS = 60.0
RELIABLE_ACK_SECONDS = 2.0
RELIABLE_RETRY_SECONDS = 0.25
FAST_QUEUE_LIMIT = 200_000
"""Ticks waiting for NATS; past this they are dropped (counted)."""
HELD_TICKS_LIMIT = 20_000
"""Tick messages held for acknowledged delivery while NATS is away (minutes of a busy day at one message
per socket read); past this the newest are dropped (counted)."""
TELL_HEADER = "Observer-Tell"
NOT_RUNNING = b"not running"
"""The answer to a tell whose child is not running in that process (stopping): the sender sends it again
(a queue group may hand it to another process serving the child)."""
SETTLE_QUIET_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 15.0
SHARE_INTERVAL_SECONDS = 1.0
"""How often a process shares its figures (counters, the quote board) with the others."""
STOP_FLUSH_SECONDS = 2.0


class LocalDirectory(Protocol):
    """What the link needs of the process's own Directory."""

    def tell(self, child_id: str, message: Any) -> bool: ...

    def ask(
        self, child_id: str, message: Any, *, timeout: float | None = 5.0, default: Any = None
    ) -> Any: ...


class Outgoing(NamedTuple):
    """A message for acknowledged delivery: its child's lane (the child's subject: one order per child,
    whichever subject the message goes on), its subject, its JSON, and whether it is a held tick message."""

    lane: str
    subject: str
    data: bytes
    held_tick: bool


class RemoteError(RuntimeError):
    """The remote child's handler raised; the message names the error."""


class Link:
    """`start(directory)`, `serve(local_ids)` once they run, `tell`/`ask` from any thread, `stop()`."""

    def __init__(self, url: str, instance: str, *, name: str) -> None:
        self.url = url
        self.instance = instance
        self.name = name
        self.sent = 0
        self.dropped = 0
        self.received = 0
        self._received_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes] | None] | None = None
        self._reliable: asyncio.Queue[Outgoing | None] | None = None
        """Acknowledged messages, in the order told."""
        self._held_ticks = 0
        """Tick messages in `_reliable` (counted on the link's loop only)."""
        self._answering: set[str] = set()
        """Subjects whose child acknowledged a held tick since NATS came back (on the link's loop only)."""
        self._unsent = 0
        """Acknowledged messages queued or on their way (on the link's loop only)."""
        self._last_encoded: tuple[Any, bytes] | None = None
        """The last message told and its JSON: a tick batch told to several remote actors is encoded once."""
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._peers_stopped: set[str] = set()
        """Names of the other processes' links that said they stopped (after their last acknowledged send)."""
        self._directory: LocalDirectory | None = None
        self._local: tuple[str, ...] = ()
        self._share: Callable[[], dict[str, Any]] | None = None
        self._follow: Callable[[dict[str, Any]], None] | None = None
        self._thread = threading.Thread(target=self._run, name=f"link-{name}", daemon=True)

    # --- the process's side --------------------------------------------------------------------

    def share(self, figures: Callable[[], dict[str, Any]]) -> None:
        """Publish `figures()` every SHARE_INTERVAL_SECONDS (and once at the stop), for `follow` in the
        other processes. Call before `start`."""
        self._share = figures

    def follow(self, absorb: Callable[[dict[str, Any]], None]) -> None:
        """Hand the figures other processes `share` to `absorb`. Call before `start`."""
        self._follow = absorb

    @property
    def figures_subject(self) -> str:
        return f"{INTERNAL_ROOT}.{token(self.instance)}._figures"

    @property
    def stopped_subject(self) -> str:
        """Where a link says, as it stops, that everything its process told was acknowledged (or given up)."""
        return f"{INTERNAL_ROOT}.{token(self.instance)}._stopped"

    def start(self, directory: LocalDirectory) -> Link:
        """Connect (waiting up to CONNECT_WAIT_SECONDS; nats-py keeps trying after that); messages that
        arrive for this process's children go to `directory`."""
        self._directory = directory
        self._thread.start()
        if not self._ready.wait(CONNECT_WAIT_SECONDS):
            logger.warning("link {}: NATS at {} not reached yet; still trying", self.name, self.url)
        return self

    def serve(self, local_ids: Iterable[str]) -> None:
        """Take messages for `local_ids` from now on (until then senders keep retrying)."""
        self._local = tuple(local_ids)
        loop = self._loop
        if loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._subscribe(), loop)
        with contextlib.suppress(FutureTimeout):
            future.result(CONNECT_WAIT_SECONDS)

    def tell(self, child_id: str, message: Any) -> bool:
        """Send `message` to the remote child; False when it cannot be sent (no link, no JSON form)."""
        loop = self._loop
        if loop is None or self._outbox is None or self._reliable is None or self._stopped.is_set():
            self.dropped += 1
            return False
        last = self._last_encoded
        try:
            if last is not None and last[0] is message:
                data = last[1]
            else:
                data = encode(message)
                self._last_encoded = (message, data)
        except NotCrossable as error:
            logger.error("link {}: {} for {!r} not sent: {}", self.name, type(message).__name__, child_id,
                         error)
            self.dropped += 1
            return False
        lane = internal_subject(self.instance, child_id)
        try:
            if isinstance(message, TicksReceived):
                loop.call_soon_threadsafe(self._enqueue_ticks, lane, data)
            else:
                outgoing = Outgoing(lane, subject_for(self.instance, child_id, message), data, False)
                loop.call_soon_threadsafe(self._enqueue_reliable, outgoing)
        except RuntimeError:  # the loop has closed
            self.dropped += 1
            return False
        return True

    def _enqueue_reliable(self, outgoing: Outgoing) -> None:
        assert self._reliable is not None
        self._reliable.put_nowait(outgoing)

    def _enqueue_ticks(self, subject: str, data: bytes) -> None:
        """Ticks go out fast while NATS is here and none are held; else into the acknowledged queue after
        those held (on the link's loop, so the order of tells is kept)."""
        nc, outbox, reliable = self._nc, self._outbox, self._reliable
        assert outbox is not None and reliable is not None
        if nc is not None and nc.is_connected and not self._held_ticks:
            try:
                outbox.put_nowait((subject, data))
            except asyncio.QueueFull:
                self.dropped += 1
        elif self._held_ticks >= HELD_TICKS_LIMIT:
            self.dropped += 1
        else:
            self._held_ticks += 1
            reliable.put_nowait(Outgoing(subject, subject, data, True))

    def ask(self, child_id: str, message: Any, *, timeout: float | None = 5.0, default: Any = None) -> Any:
        """The remote child's reply; `default` when nobody serves it; `pykka.Timeout` when it is too slow."""
        loop, nc = self._loop, self._nc
        if loop is None or nc is None or not nc.is_connected:
            return default
        wait = 5.0 if timeout is None else timeout
        request = nc.request(internal_subject(self.instance, child_id), encode(message), timeout=wait)
        future: Future[Msg] = asyncio.run_coroutine_threadsafe(request, loop)
        try:
            reply = future.result(wait + 1.0)
        except NoRespondersError:
            return default
        except (NatsTimeout, FutureTimeout) as error:
            future.cancel()
            raise pykka.Timeout(f"no answer from {child_id!r} within {wait:g} s") from error
        except NatsError as error:
            logger.warning("link {}: ask {!r} failed: {}", self.name, child_id, error)
            return default
        answer = decode(reply.data)
        if isinstance(answer, RemoteFailure):
            raise RemoteError(answer.error)
        return default if answer is None else answer

    def stop(self) -> None:
        """Send what is queued (briefly), then close."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        loop = self._loop
        for queue in (self._outbox, self._reliable):
            if loop is not None and queue is not None:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(queue.put_nowait, None)
        if self._thread.is_alive():
            self._thread.join(STOP_FLUSH_SECONDS + 3.0)

    def flush(self) -> None:
        """Wait (up to SETTLE_LIMIT_SECONDS) until everything told so far is acknowledged."""
        deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
        reliable = self._reliable
        while reliable is not None and (reliable.qsize() or self._unsent) and time.monotonic() < deadline:
            time.sleep(0.05)

    def settle(self, peer: str | None = None) -> None:
        """Wait (up to SETTLE_LIMIT_SECONDS) until nothing has arrived for SETTLE_QUIET_SECONDS and, with
        `peer`, until the link of that name said it stopped: the answers to this process's last messages
        are in, however long the other process takes to send them (a stopping control process marks its
        last gaps only after its other actors stopped)."""
        since = time.monotonic()
        deadline = since + SETTLE_LIMIT_SECONDS
        while time.monotonic() < deadline:
            quiet = time.monotonic() - max(since, self._received_at) >= SETTLE_QUIET_SECONDS
            if quiet and (peer is None or peer in self._peers_stopped):
                return
            time.sleep(0.05)

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    # --- the link's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception as error:  # the link's end is logged, never raised
            logger.error("link {} ended: {}", self.name, error)
        finally:
            self._ready.set()
            loop.close()

    async def _main(self) -> None:
        self._outbox = asyncio.Queue(FAST_QUEUE_LIMIT)
        self._reliable = asyncio.Queue()
        nc = await nats.connect(
            server_urls(self.url),
            name=f"observer-{self.name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_SECONDS,
            pending_size=PENDING_BYTES,
            allow_reconnect=True,
            connect_timeout=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self._nc = nc
        if self._follow is not None:
            await nc.subscribe(self.figures_subject, cb=self._on_figures)
        await nc.subscribe(self.stopped_subject, cb=self._on_peer_stopped)
        sharing = asyncio.create_task(self._share_figures()) if self._share is not None else None
        reliable = asyncio.create_task(self._send_reliably(nc, self._reliable))
        await nc.flush()
        self._ready.set()
        while (item := await self._outbox.get()) is not None:
            subject, data = item
            try:
                await nc.publish(subject, data)
                self.sent += 1
            except NatsError as error:
                self.dropped += 1
                logger.debug("link {}: dropped a message for {}: {}", self.name, subject, error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reliable, STOP_FLUSH_SECONDS)
        with contextlib.suppress(NatsError):
            await nc.publish(self.stopped_subject, self.name.encode())
        if sharing is not None:
            sharing.cancel()
            await self._publish_figures()
        with contextlib.suppress(NatsError, TimeoutError):
            await asyncio.wait_for(nc.drain(), STOP_FLUSH_SECONDS)
        if not nc.is_closed:
            await nc.close()

    async def _subscribe(self) -> None:
        nc = self._nc
        if nc is None:
            return
        for child_id in self._local:
            await nc.subscribe(internal_subject(self.instance, child_id), queue=QUEUE_GROUP,
                               cb=self._inbound(child_id, every=False))
            await nc.subscribe(every_process_subject(self.instance, child_id), cb=self._inbound(child_id,
                                                                                                every=True))
        await nc.flush()
        logger.info("link {}: serving {} over {}", self.name, ", ".join(self._local), self.url)

    async def _send_reliably(self, nc: Client, queue: asyncio.Queue[Outgoing | None]) -> None:
        """Hand each message to its child's lane (started at the child's first message); at the end, let
        every lane finish."""
        lanes: dict[str, asyncio.Queue[Outgoing | None]] = {}
        senders: list[asyncio.Task[None]] = []
        while (item := await queue.get()) is not None:
            lane = lanes.get(item.lane)
            if lane is None:
                lane = lanes[item.lane] = asyncio.Queue()
                senders.append(asyncio.create_task(self._send_lane(nc, lane)))
            self._unsent += 1
            lane.put_nowait(item)
        for lane in lanes.values():
            lane.put_nowait(None)
        await asyncio.gather(*senders)

    async def _send_lane(self, nc: Client, lane: asyncio.Queue[Outgoing | None]) -> None:
        """One child's messages in order, each until the other process acknowledges it or
        RELIABLE_GIVE_UP_SECONDS. A held tick for a child that has acknowledged one since the connection
        came back is published without waiting (ticks stay at most once; the wait was only for the other
        side to be there)."""
        while (item := await lane.get()) is not None:
            _, subject, data, held_tick = item
            if held_tick and subject in self._answering:
                try:
                    await nc.publish(subject, data)
                    self.sent += 1
                except NatsError:
                    self.dropped += 1
            else:
                await self._request_until_acknowledged(nc, subject, data, held_tick)
            if held_tick:
                self._held_ticks -= 1
            self._unsent -= 1

    async def _request_until_acknowledged(
        self, nc: Client, subject: str, data: bytes, held_tick: bool
    ) -> None:
        deadline = asyncio.get_running_loop().time() + RELIABLE_GIVE_UP_SECONDS
        while True:
            try:
                reply = await nc.request(subject, data, timeout=RELIABLE_ACK_SECONDS,
                                         headers={TELL_HEADER: "1"})
            except NatsError as error:
                why = type(error).__name__
            else:
                if reply.data != NOT_RUNNING:
                    self.sent += 1
                    if held_tick:
                        self._answering.add(subject)
                    return
                why = "its child is not running"
            if asyncio.get_running_loop().time() >= deadline or self._stopped.is_set():
                self.dropped += 1
                logger.warning("link {}: gave up a message for {}: {}", self.name, subject, why)
                return
            await asyncio.sleep(RELIABLE_RETRY_SECONDS)

    async def _share_figures(self) -> None:
        while True:
            await asyncio.sleep(SHARE_INTERVAL_SECONDS)
            await self._publish_figures()

    async def _publish_figures(self) -> None:
        nc, share = self._nc, self._share
        if nc is None or share is None or not nc.is_connected:
            return
        with contextlib.suppress(NatsError):
            await nc.publish(self.figures_subject, json.dumps(share(), default=str).encode())

    async def _on_peer_stopped(self, msg: Msg) -> None:
        name = msg.data.decode(errors="replace")
        if name != self.name:
            self._peers_stopped.add(name)

    async def _on_figures(self, msg: Msg) -> None:
        if self._follow is None:
            return
        try:
            figures = json.loads(msg.data)
        except ValueError:
            return
        self._follow(figures)

    def _inbound(self, child_id: str, *, every: bool) -> Any:
        """The handler of one of `child_id`'s subjects; `every`: the broadcast one, where a process whose
        child is not running stays silent (another's acknowledgement must be the answer)."""

        async def on_message(msg: Msg) -> None:
            directory = self._directory
            if directory is None:
                return
            try:
                message = decode(msg.data)
            except (NotCrossable, ValueError) as error:
                logger.error("link {}: unreadable message for {!r}: {}", self.name, child_id, error)
                return
            self.received += 1
            self._received_at = time.monotonic()
            if not msg.reply or (msg.headers or {}).get(TELL_HEADER):
                delivered = directory.tell(child_id, message)
                if msg.reply and (delivered or not every):
                    with contextlib.suppress(NatsError):
                        await msg.respond(b"" if delivered else NOT_RUNNING)
                return
            loop = asyncio.get_running_loop()
            try:
                answer = await loop.run_in_executor(None, lambda: directory.ask(child_id, message))
                data = encode(answer)
            except Exception as error:  # the asker gets the error
                data = encode_failure(f"{type(error).__name__}: {error}")
            with contextlib.suppress(NatsError):
                await msg.respond(data)

        return on_message

    async def _on_error(self, error: Exception) -> None:
        logger.debug("link {}: {}", self.name, error)

    async def _on_disconnected(self) -> None:
        self._answering.clear()
        if not self._stopped.is_set():
            logger.warning("link {}: NATS connection lost; reconnecting", self.name)

    async def _on_reconnected(self) -> None:
        logger.info("link {}: NATS connection back", self.name)

