"""Stream workers on several machines, on the spine's own engine (no lease protocol of our own).

- `SessionLeases` (a stream worker): one JetStream key-value entry per account in the bucket
  `OBSERVER_<INSTANCE>_SESSIONS`, whose entries live `ttl` seconds unless renewed. The worker creates the
  entry before it opens the account's WebSocket session (KIS allows one per key) and renews it; a second
  worker for the same key waits until the entry is free. The entry names the holder (worker id, host, pid):
  a worker restarted on the same host takes over what its dead predecessor (same id, pid gone) left.
- `WorkerWatch` (the control process): follows the `worker` heartbeats (`spine.wire.WorkerHeartbeat`) into a
  `core.workers.Roster` and hands each change (a worker dead, accounts lost or served again) to a callback.

Each runs an asyncio loop with its own nats-py connection on a thread of its own. Nothing here carries a
credential: an entry holds a worker's id, host and pid only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from loguru import logger
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from config.settings import SpineSettings
from core.workers import WAITING, Roster, RosterChange, WorkerBeat
from spine.server import server_urls
from spine.stream import ensure_bucket
from spine.subjects import Subjects, token
from spine.wire import WorkerHeartbeat

RECONNECT_WAIT_SECONDS = 0.5
CONNECT_WAIT_SECONDS = 10.0
JUDGE_SECONDS = 0.5
"""How often the watch judges the roster (a death is found within the timeout plus this)."""
HELD = "held"


def bucket_name(instance: str) -> str:
    return f"OBSERVER_{token(instance).upper()}_SESSIONS"


@dataclass(frozen=True, slots=True)
class Holder:
    """What a lease entry says about the worker holding the key's session."""

    worker: str
    host: str
    pid: int

    def encode(self) -> bytes:
        return json.dumps({"worker": self.worker, "host": self.host, "pid": self.pid}).encode()

    @classmethod
    def decode(cls, data: bytes | None) -> Holder | None:
        try:
            document = json.loads(data or b"")
            return cls(str(document["worker"]), str(document["host"]), int(document["pid"]))
        except (ValueError, KeyError, TypeError):
            return None

    def left_by_me(self, me: Holder) -> bool:
        """The entry of a predecessor of `me`: the same worker on this host, whose process is gone."""
        same = self.worker == me.worker and self.host == me.host
        return same and self.pid != me.pid and not _alive(self.pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _LoopThread:
    """An asyncio loop with one nats-py connection, on a daemon thread; `call` runs a coroutine there."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self.loop = asyncio.new_event_loop()
        self.nc: Client | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self.call(self._connect(), CONNECT_WAIT_SECONDS + 5.0)

    def call(self, coroutine: Coroutine[Any, Any, Any], timeout: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def spawn(self, coroutine: Coroutine[Any, Any, Any]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _connect(self) -> None:
        self.nc = await nats.connect(
            server_urls(self.url), name=f"observer-{self.name}", max_reconnect_attempts=-1,
            reconnect_time_wait=RECONNECT_WAIT_SECONDS, allow_reconnect=True, connect_timeout=2,
            error_cb=self._on_error,
        )

    async def _on_error(self, error: Exception) -> None:
        logger.debug("{}: {}", self.name, error)

    def close(self) -> None:
        if self._thread.ident is None:
            return
        nc = self.nc
        if nc is not None:
            with contextlib.suppress(Exception):
                self.call(nc.close(), 5.0)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5.0)


class NatsUnreachable(RuntimeError):
    """The spine could not be reached to take the session leases; the message says so in one line."""


class SessionLeases:
    """A stream worker's leases on its accounts' sessions: `open()` then `acquire()` before any session
    opens, renewed
    on the loop's thread until `release()`. `on_lost(account)` is called (from that thread) when another
    worker took an account's entry meanwhile: the caller must stop streaming it at once."""

    def __init__(self, url: str, spine: SpineSettings, holder: Holder, accounts: Sequence[str],
                 ttl_seconds: float, on_lost: Callable[[str], None]) -> None:
        self.holder = holder
        self.accounts = tuple(accounts)
        self.ttl = ttl_seconds
        self.spine = spine
        self.bucket = bucket_name(spine.instance)
        self._on_lost = on_lost
        self._thread = _LoopThread(url, f"sessions-{holder.worker}")
        self._kv: KeyValue | None = None
        self._revisions: dict[str, int] = {}
        self._told: set[str] = set()
        self._stopped = threading.Event()

    def states(self) -> dict[str, str]:
        """Each account: "held" (this worker streams it) or "waiting"."""
        return {account: HELD if account in self._revisions else WAITING for account in self.accounts}

    def open(self) -> bool:
        """Connect, and take every account's entry that is free now; True when all are this worker's.
        NatsUnreachable when NATS does not answer (a worker must not stream without its leases)."""
        try:
            self._thread.start()
            self._kv = self._thread.call(self._bucket(), CONNECT_WAIT_SECONDS)
        except (TimeoutError, NatsError, OSError) as error:
            raise NatsUnreachable(f"NATS at {self._thread.url} does not answer ({type(error).__name__}): "
                                  "no session lease, so no session opened") from None
        return self._take_free()

    def acquire(self, stop: threading.Event) -> bool:
        """After `open`: wait until every account's entry is this worker's (one log line per account held by
        another), then renew them; False when `stop` was set first."""
        while not self._take_free():
            if stop.wait(min(1.0, self.ttl / 4)):
                return False
        self._thread.spawn(self._renew())
        return True

    def _take_free(self) -> bool:
        for account in self.accounts:
            if account in self._revisions:
                continue
            other = self._thread.call(self._take(account), CONNECT_WAIT_SECONDS)
            if other is not None and account not in self._told:
                self._told.add(account)
                logger.warning("{}: its session is held by worker {} on {} (pid {}): waiting until it is "
                               "free (at most {:g} s after that worker ends)", account, other.worker,
                               other.host, other.pid, self.ttl)
        return len(self._revisions) == len(self.accounts)

    def release(self) -> None:
        """Delete this worker's entries (the next worker need not wait for them to expire) and close."""
        self._stopped.set()
        if self._kv is not None and self._revisions:
            with contextlib.suppress(Exception):
                self._thread.call(self._delete_all(), 5.0)
        self._thread.close()

    async def _bucket(self) -> KeyValue:
        assert self._thread.nc is not None
        return await ensure_bucket(self._thread.nc.jetstream(), self.spine, self.bucket, ttl=self.ttl)

    async def _take(self, account: str) -> Holder | None:
        """Create the account's entry; None when it is now this worker's, else who holds it."""
        kv = self._kv
        assert kv is not None
        key = token(account)
        try:
            self._revisions[account] = await kv.create(key, self.holder.encode())
            return None
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:  # expired between the two calls: the next round creates it
            return Holder("?", "?", 0)
        other = Holder.decode(entry.value)
        if other is not None and other.left_by_me(self.holder):
            try:
                self._revisions[account] = await kv.update(key, self.holder.encode(), last=entry.revision)
                logger.info("{}: took over the session lease left by this worker's previous process (pid {})",
                            account, other.pid)
                return None
            except KeyWrongLastSequenceError:
                pass
        return other or Holder("?", "?", 0)

    async def _renew(self) -> None:
        kv = self._kv
        assert kv is not None
        while not self._stopped.is_set():
            await asyncio.sleep(self.ttl / 3)
            for account, revision in list(self._revisions.items()):
                try:
                    self._revisions[account] = await kv.update(token(account), self.holder.encode(),
                                                               last=revision)
                except KeyWrongLastSequenceError:  # expired (NATS away longer than the lease) or taken
                    del self._revisions[account]
                    other = await self._take(account)
                    if other is not None:
                        logger.error("{}: its session lease was taken by worker {} on {}", account,
                                     other.worker, other.host)
                        self._on_lost(account)
                except (NatsError, TimeoutError) as error:  # NATS away: renewed at the next round
                    logger.warning("{}: session lease not renewed ({}); trying again", account,
                                   type(error).__name__)

    async def _delete_all(self) -> None:
        kv = self._kv
        assert kv is not None
        for account, revision in list(self._revisions.items()):
            with contextlib.suppress(NatsError):
                await kv.delete(token(account), last=revision)
        self._revisions.clear()


class WorkerWatch:
    """The control's view of the stream workers: `start()`, then `on_change(change, roster)` (from the watch's
    thread) whenever a judgement finds a change; `stop()`."""

    def __init__(self, url: str, instance: str, accounts: Sequence[str], timeout_seconds: float,
                 grace_seconds: float, on_change: Callable[[RosterChange, Roster], None],
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout_seconds
        self._subject = Subjects(instance).of("worker.*")
        self._monotonic = monotonic
        self._on_change = on_change
        self._lock = threading.Lock()
        self._roster = Roster.starting(accounts, monotonic(), grace_seconds)
        self._thread = _LoopThread(url, "worker-watch")
        self._stopped = threading.Event()

    @property
    def roster(self) -> Roster:
        with self._lock:
            return self._roster

    def start(self) -> WorkerWatch:
        self._thread.start()
        self._thread.call(self._subscribe(), CONNECT_WAIT_SECONDS)
        self._thread.spawn(self._judge_forever())
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.close()

    async def _subscribe(self) -> None:
        assert self._thread.nc is not None
        await self._thread.nc.subscribe(self._subject, cb=self._on_heartbeat)
        await self._thread.nc.flush()

    async def _on_heartbeat(self, msg: Msg) -> None:
        try:
            heartbeat = WorkerHeartbeat.model_validate_json(msg.data)
        except ValueError as error:
            logger.warning("worker watch: unreadable heartbeat on {}: {}", msg.subject,
                           str(error).splitlines()[0])
            return
        beat = WorkerBeat(heartbeat.worker, heartbeat.host, dict(heartbeat.sessions), self._monotonic(),
                          heartbeat.stopping, heartbeat.pid)
        with self._lock:
            known = beat.process in self._roster.beats
            self._roster = self._roster.heard(beat)
        if not known:
            logger.info("stream worker {} on {} (pid {}) heard: {}", beat.worker, beat.host, heartbeat.pid,
                        ", ".join(f"{account} {state}" for account, state in sorted(beat.sessions.items())))
        self._judge()

    async def _judge_forever(self) -> None:
        while not self._stopped.is_set():
            await asyncio.sleep(JUDGE_SECONDS)
            self._judge()

    def _judge(self) -> None:
        with self._lock:
            self._roster, change = self._roster.judge(self._monotonic(), self.timeout)
            roster = self._roster
        if change:
            try:
                self._on_change(change, roster)
            except Exception as error:  # the watch must outlive a failing receiver
                logger.error("worker watch: change not handled: {}", error)
