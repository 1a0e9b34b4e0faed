"""The publisher: facts from any thread onto the spine, without ever making the caller wait.

`publish()` appends to a bounded in-memory queue and returns; a thread of its own runs an asyncio loop
with nats-py that turns each queued item into public messages (`spine.convert`) and sends them. When
NATS is slow or gone the queue fills and new facts are dropped (counted in `dropped`, logged once per
outage), so the tick path and the journal never notice. nats-py reconnects by itself and keeps what
was sent during a short outage in its own buffer (`PENDING_BYTES`); the stream (`spine.stream`) is set
up again after every reconnect.

On a cluster (`spine.replicas` above 1) each fact goes out with a message id and a reply subject, and the
stream acknowledges it once stored. One not acknowledged within `ACK_WAIT_SECONDS` (its server died, the
stream was electing a leader) is sent again with the same id, which the stream stores once (its duplicate
window is two minutes); after `RESEND_FOR_SECONDS` it is given up and counted as dropped. So a cluster
losing a server loses no fact, and a live subscriber may, around such a loss, see a fact twice. At most
`MAX_IN_FLIGHT` facts wait for their acknowledgement; beyond that the publisher waits and its queue fills
as for a slow server. On one server facts are published plainly (acknowledgements cost about 10 us of CPU
per fact): that server's death stops the spine whatever the publisher does, and the journal is the record.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import nats
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from config.settings import SpineSettings
from core.settings import SessionSettings
from messages.market import TicksReceived
from spine import wire
from spine.convert import Publishable, facts_of, tick_messages
from spine.server import server_urls
from spine.stream import ensure_stream
from spine.subjects import Subjects

PENDING_BYTES = 16 * 1024 * 1024
"""nats-py's buffer for messages published while it reconnects (a few seconds of a busy day)."""
RECONNECT_WAIT_SECONDS = 0.5
STOP_FLUSH_SECONDS = 3.0
ITEMS_PER_TURN = 500
"""Items sent before the loop lets nats-py's own tasks (flusher, reader, pings) run."""
ACK_WAIT_SECONDS = 3.0
"""A fact the stream has not acknowledged this long after it was sent is sent again (same message id)."""
RESEND_FOR_SECONDS = 60.0
"""How long a fact is sent again before it is given up (well inside the stream's duplicate window)."""
MAX_IN_FLIGHT = 10_000
"""Facts sent and not yet acknowledged; at this many the publisher waits for acknowledgements."""
RESEND_CHECK_SECONDS = 0.5
MSG_ID_HEADER = "Nats-Msg-Id"


@dataclass(slots=True)
class _InFlight:
    """A fact sent to the stream and not acknowledged yet."""

    subject: str
    data: bytes
    first_sent: float
    sent: float


class Publisher:
    """`start()`, then `publish(item)` from any thread, `stop()` at the end (sends what is queued first)."""

    def __init__(
        self,
        url: str,
        settings: SpineSettings,
        *,
        name: str = "observer",
        sessions: SessionSettings | None = None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.sessions = sessions if sessions is not None else SessionSettings()
        """The trading sessions that name a unified-feed tick's venue."""
        self.subjects = Subjects(settings.instance)
        self.name = name
        self.published = 0
        self.dropped = 0
        self._queue: deque[Publishable] = deque()
        self._lock = threading.Lock()
        self._sleeping = False
        self._stopping = False
        self._dropping = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._nc: Client | None = None
        self._connected = threading.Event()
        self._setup_task: asyncio.Task[None] | None = None
        self._unpublishable: set[str] = set()
        self._tick_subjects: dict[str, str] = {}
        """Each symbol's tick subject, made once."""
        self._warned_unreachable = False
        self._origin = f"{settings.instance}-{name}-{uuid.uuid4().hex[:12]}"
        """The message ids' prefix: one per publisher, so no two publishers' ids meet in the stream."""
        self._acknowledged = False
        """Facts are published for the stream's acknowledgement: on a cluster, once the stream is set up."""
        self._sequence = 0
        self._in_flight: dict[int, _InFlight] = {}
        self._ack_prefix = ""
        self._room: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=f"spine-{name}", daemon=True)

    # --- any thread ---------------------------------------------------------------------------------

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def publish(self, item: Publishable) -> bool:
        """Queue `item` (a domain message the spine knows, or a `spine.wire.Fact`); False when dropped."""
        with self._lock:
            full = self._stopping or len(self._queue) >= self.settings.publish_queue_limit
            if not full:
                self._queue.append(item)
                wake, self._sleeping = self._sleeping, False
        if full:
            self._count_drop(f"{self.settings.publish_queue_limit} facts waiting")
            return False
        if wake:
            self._wake()
        return True

    def stop(self, timeout: float = ACK_WAIT_SECONDS + STOP_FLUSH_SECONDS + 2.0) -> None:
        """Send what is queued (NATS willing, within `timeout`; on a cluster until the stream acknowledged
        it, sent again if need be), then close the connection."""
        with self._lock:
            self._stopping = True
        self._wake()
        if self._thread.is_alive():
            self._thread.join(timeout)
        with self._lock:
            left = len(self._queue)
        if left or self._thread.is_alive():
            logger.warning("spine: stopped with {} facts not published", left)

    @property
    def connected(self) -> bool:
        nc = self._nc
        return nc is not None and nc.is_connected

    def wait_connected(self, timeout: float) -> bool:
        """Until the first connection and stream setup are done (for tests and the startup line)."""
        return self._connected.wait(timeout)

    @property
    def unacknowledged(self) -> int:
        """Facts sent on a cluster that the stream has not acknowledged yet (they are sent again)."""
        return len(self._in_flight)

    def figures(self) -> dict[str, int]:
        return {"spine_published": self.published, "spine_dropped": self.dropped}

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is not None and wakeup is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nothing left to wake
                loop.call_soon_threadsafe(wakeup.set)

    # --- the publisher's thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except Exception as error:  # the spine must never take the observer down
            logger.exception("spine: publisher stopped by an unexpected error: {}", error)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        nc = await self._connect()
        if nc is None:
            return
        self._nc = nc
        resending = asyncio.create_task(self._resend_loop(nc))
        try:
            await self._send_loop(nc)
            await self._wait_acknowledged(ACK_WAIT_SECONDS + STOP_FLUSH_SECONDS)
        finally:
            resending.cancel()
            await self._close(nc)

    async def _connect(self) -> Client | None:
        """Connect (retrying for as long as it takes); None when a stop comes first."""
        assert self._wakeup is not None
        connecting = asyncio.create_task(nats.connect(
            server_urls(self.url),
            name=f"observer-{self.settings.instance}-{self.name}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_SECONDS,
            connect_timeout=2,
            pending_size=PENDING_BYTES,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        ))
        while not connecting.done():
            with self._lock:
                stopping = self._stopping
            if stopping:
                connecting.cancel()
                logger.warning("spine: stopped before NATS at {} answered", self.url)
                return None
            stop = asyncio.create_task(self._wakeup.wait())
            await asyncio.wait({connecting, stop}, return_when=asyncio.FIRST_COMPLETED)
            stop.cancel()
            self._wakeup.clear()
        nc = connecting.result()
        logger.info("spine: connected to {}", self.url)
        self._ack_prefix = nc.new_inbox()
        await nc.subscribe(f"{self._ack_prefix}.*", cb=self._on_ack)
        await self._setup_stream(nc)
        self._connected.set()
        return nc

    async def _setup_stream(self, nc: Client) -> None:
        try:
            await ensure_stream(nc.jetstream(timeout=5.0), self.settings)
            self._acknowledged = self.settings.replicas > 1
        except (TimeoutError, NatsError) as error:  # acknowledged or not, as after the last setup
            logger.warning("spine: the JetStream stream {} could not be set up ({}); live subscribers get "
                           "every fact, replay waits for the next connection", self.subjects.stream_name,
                           type(error).__name__)

    async def _send_loop(self, nc: Client) -> None:
        assert self._wakeup is not None
        while True:
            with self._lock:
                batch, self._queue = self._queue, deque()
                if not batch:
                    if self._stopping:
                        return
                    self._sleeping = True
            if not batch:
                await self._wakeup.wait()
                self._wakeup.clear()
                continue
            for count, item in enumerate(batch, start=1):
                await self._send(nc, item)
                if count % ITEMS_PER_TURN == 0:
                    await asyncio.sleep(0)

    async def _send(self, nc: Client, item: Publishable) -> None:
        subjects = self.subjects
        try:
            if isinstance(item, TicksReceived):  # the bulk of the traffic: no model per tick
                messages: list[tuple[str, bytes]] = []
                for symbol, data in tick_messages(item, self.sessions):
                    subject = self._tick_subjects.get(symbol)
                    if subject is None:
                        subject = self._tick_subjects[symbol] = subjects.of(wire.Tick.subject_pattern,
                                                                            symbol=symbol)
                    messages.append((subject, data))
            else:
                facts = facts_of(item, self.sessions)
                messages = [(subjects.of(f.subject_pattern, **f.subject_keys()), f.model_dump_json().encode())
                            for f in facts]
            for subject, data in messages:
                if self._acknowledged:
                    await self._send_stored(nc, subject, data)
                else:
                    await nc.publish(subject, data)
                self.published += 1
        except (NatsError, OSError) as error:
            self._count_drop(type(error).__name__)
            return
        except (TypeError, ValueError) as error:  # a fact that does not fit its model: ours to fix
            self.dropped += 1
            kind = type(item).__name__
            if kind not in self._unpublishable:
                self._unpublishable.add(kind)
                logger.error("spine: cannot publish a {} (said once per kind): {}", kind,
                             str(error).splitlines()[0])
            return
        if self._dropping:
            with self._lock:
                self._dropping = False
            logger.info("spine: publishing again ({} facts dropped so far)", self.dropped)

    async def _send_stored(self, nc: Client, subject: str, data: bytes) -> None:
        """Publish for the stream's acknowledgement, once fewer than `MAX_IN_FLIGHT` wait for theirs."""
        assert self._room is not None
        while len(self._in_flight) >= MAX_IN_FLIGHT:
            self._room.clear()
            await self._room.wait()
        self._sequence += 1
        now = time.monotonic()
        entry = _InFlight(subject, data, first_sent=now, sent=now)
        self._in_flight[self._sequence] = entry
        await self._publish_stored(nc, self._sequence, entry)

    async def _publish_stored(self, nc: Client, number: int, entry: _InFlight) -> None:
        await nc.publish(entry.subject, entry.data, reply=f"{self._ack_prefix}.{number}",
                         headers={MSG_ID_HEADER: f"{self._origin}-{number}"})

    async def _on_ack(self, msg: Msg) -> None:
        """The stream's answer to one fact: stored (forgotten here), or an error (sent again later)."""
        if msg.headers and msg.headers.get("Status"):  # no responders: no stream there right now
            return
        if b'"error"' in msg.data:
            return
        number = msg.subject.rpartition(".")[2]
        acknowledged = number.isdigit() and self._in_flight.pop(int(number), None) is not None
        if acknowledged and self._room is not None and len(self._in_flight) < MAX_IN_FLIGHT:
            self._room.set()

    async def _resend_loop(self, nc: Client) -> None:
        """Send again what waited `ACK_WAIT_SECONDS` for its acknowledgement; give up after
        `RESEND_FOR_SECONDS` (counted as dropped)."""
        while True:
            await asyncio.sleep(RESEND_CHECK_SECONDS)
            now = time.monotonic()
            due = []
            for number, entry in self._in_flight.items():  # in order of sending: the oldest first
                if now - entry.sent < ACK_WAIT_SECONDS:
                    break
                due.append(number)
            for number in due:
                entry = self._in_flight.pop(number)
                if now - entry.first_sent >= RESEND_FOR_SECONDS:
                    self.published -= 1
                    self._count_drop(f"not stored within {RESEND_FOR_SECONDS:.0f} s")
                    continue
                if not nc.is_connected:  # nats-py resends its buffer itself once connected again
                    entry.sent = now
                    self._in_flight[number] = entry
                    continue
                entry.sent = now
                self._in_flight[number] = entry  # to the end: the dict stays in order of sending
                try:
                    await self._publish_stored(nc, number, entry)
                except (NatsError, OSError):
                    continue
            if self._room is not None and len(self._in_flight) < MAX_IN_FLIGHT:
                self._room.set()

    async def _wait_acknowledged(self, timeout: float) -> None:
        """At stop: until every fact sent is acknowledged (or `timeout`), resends included."""
        deadline = time.monotonic() + timeout
        while self._in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self._in_flight:
            logger.warning("spine: {} facts sent but not acknowledged by the stream at stop",
                           len(self._in_flight))

    def _count_drop(self, why: str) -> None:
        with self._lock:
            self.dropped += 1
            first = not self._dropping
            self._dropping = True
        if first:
            logger.warning("spine: NATS at {} is not taking facts ({}): new ones are dropped (counted) "
                           "until it does; the journal on disk is complete", self.url, why)

    async def _close(self, nc: Client) -> None:
        try:
            if nc.is_connected:
                await nc.flush(timeout=STOP_FLUSH_SECONDS)
        except (TimeoutError, NatsError, OSError) as error:
            logger.warning("spine: last facts may not have reached NATS ({})", type(error).__name__)
        with contextlib.suppress(NatsError, asyncio.TimeoutError, OSError):
            await asyncio.wait_for(nc.close(), STOP_FLUSH_SECONDS)

    # --- nats-py callbacks ---------------------------------------------------------------------------

    async def _on_error(self, error: Exception) -> None:
        if self._nc is None and not self._warned_unreachable:  # the first connection is still to come
            self._warned_unreachable = True
            logger.warning("spine: NATS at {} does not answer ({}); still trying, facts wait in memory "
                           "up to {}", self.url, type(error).__name__, self.settings.publish_queue_limit)
        else:
            logger.debug("spine: NATS client: {}", type(error).__name__)

    async def _on_disconnected(self) -> None:
        with self._lock:
            stopping = self._stopping
        if not stopping:
            logger.warning("spine: disconnected from {}; reconnecting (facts buffered meanwhile)", self.url)

    async def _on_reconnected(self) -> None:
        logger.info("spine: reconnected to {}", self.url)
        nc = self._nc
        if nc is not None:  # not awaited here: the stream request needs the client's reader running
            self._setup_task = asyncio.get_running_loop().create_task(self._setup_stream(nc))


class Spine(Protocol):
    """What actors are handed: `publish` one fact they have just made durable (see `Publisher.publish`)."""

    def publish(self, item: Publishable) -> bool: ...


class NoSpine:
    """The spine of actors run without NATS (unit tests, tools): publishes nothing."""

    def publish(self, item: Publishable) -> bool:
        return False
