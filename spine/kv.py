"""The control process's use of the spine's key-value store: a lease making one control process active, and a
copy of its saved state that a standby control takes over with.

- The lease is the key `control` in bucket `OBSERVER_<INSTANCE>_LEASE`, whose time to live
  (`spine.control_lease_seconds`) is the bucket's: created by whoever finds it empty, updated with the
  revision read by its holder every quarter of the TTL, deleted by the holder at a clean stop (so a standby
  takes over at once), gone by itself once its holder stopped renewing.
  The decisions are `core.standby.lease_step`.
- The state copy is bucket `OBSERVER_<INSTANCE>_STATE`: each state document (`state.<name>`) and universe file
  (`universe.<file name>`) the active control saves, written through after the disk (`runtime.state_store`),
  as `{"saved_at": <the file's mtime>, "data": <the document>}`. A control that takes over writes to its disk
  every copy newer than its own file (`core.standby.newest_copy`) before its actors start and load them.

Secrets never go here: the token cache stays on disk (`tokens.cache_dir`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import nats
from loguru import logger
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError, NoKeysError
from nats.js.kv import KeyValue

from config.settings import SpineSettings
from core.standby import Copy, LeaseStep, lease_step, newest_copy
from runtime.paths import DataPaths
from runtime.state_store import STATE_KEY_PREFIX, write_atomically
from runtime.universe_store import UNIVERSE_KEY_PREFIX
from spine.server import quiet_nats_errors, server_urls
from spine.stream import ensure_bucket
from spine.subjects import token

LEASE_KEY = "control"
STANDBY_POLL_SECONDS = 0.5
"""How often a standby reads the lease."""
CONNECT_WAIT_SECONDS = 10.0
RECONNECT_WAIT_SECONDS = 0.5
UNIVERSE_TTL_SECONDS = 3 * 24 * 3600.0
"""A universe file's copy is needed for its day only; it leaves the bucket after this."""


def lease_bucket(instance: str) -> str:
    return f"OBSERVER_{token(instance).upper()}_LEASE"


def state_bucket(instance: str) -> str:
    return f"OBSERVER_{token(instance).upper()}_STATE"


def control_id(data_dir: Path | str) -> str:
    """This control process's name in the lease: its host and data dir, so a restart on the same host (the
    same disk) takes its own lease back at once, and a control elsewhere waits for it to expire."""
    return f"{socket.gethostname()}:{Path(data_dir).resolve()}"


class _NatsThread:
    """A thread running an asyncio loop with one NATS connection; `main(nc)` is the thread's work."""

    def __init__(self, url: str, name: str) -> None:
        self.url = url
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._nc: Client | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(CONNECT_WAIT_SECONDS):
            logger.warning("{}: NATS at {} not reached yet; still trying", self.name, self.url)

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self.wake()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def wake(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)

    def call(self, work: Callable[[], Awaitable[Any]], timeout: float) -> Any:
        """Run `work()` on the loop and wait for its result (TimeoutError when it takes too long)."""
        loop = self._loop
        if loop is None:
            raise TimeoutError(f"{self.name}: not connected")
        return asyncio.run_coroutine_threadsafe(work(), loop).result(timeout)

    async def _sleep(self, seconds: float) -> None:
        """Until `seconds` pass or `wake()` is called."""
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._connect_and_work())
        except Exception as error:  # the thread's end is logged, never raised
            logger.error("{} ended: {}", self.name, error)
        finally:
            self._ready.set()
            loop.close()

    async def _connect_and_work(self) -> None:
        self._wake = asyncio.Event()
        nc = await self._connect()
        if nc is None:
            return
        self._nc = nc
        self._ready.set()
        try:
            await self.main(nc)
        finally:
            with contextlib.suppress(NatsError, TimeoutError):
                await asyncio.wait_for(nc.drain(), 2.0)
            if not nc.is_closed:
                await nc.close()

    async def _connect(self) -> Client | None:
        """A connection, tried again every second until it is made (None: stopped first)."""
        complained = False
        while not self.stopping:
            try:
                return await nats.connect(server_urls(self.url), name=f"observer-{self.name}",
                                          max_reconnect_attempts=-1,
                                          reconnect_time_wait=RECONNECT_WAIT_SECONDS, connect_timeout=2,
                                          error_cb=quiet_nats_errors)
            except (NatsError, OSError, TimeoutError) as error:
                if not complained:
                    logger.warning("{}: NATS at {} not reached ({}); trying again", self.name, self.url,
                                   type(error).__name__)
                    complained = True
                await self._sleep(1.0)
        return None

    async def main(self, nc: Client) -> None:
        raise NotImplementedError

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()


class ControlLease(_NatsThread):
    """`start()`, then `held` is set while this control holds the lease and `lost` once another took it from
    it; `release()` gives it up (a clean stop); `stop()` ends the thread."""

    def __init__(self, url: str, spine: SpineSettings, me: str, ttl_seconds: float) -> None:
        super().__init__(url, "control-lease")
        self.spine = spine
        self.bucket = lease_bucket(spine.instance)
        self.me = me
        self.ttl = ttl_seconds
        self.held = threading.Event()
        self.lost = threading.Event()
        self.holder: str | None = None
        """Who held the lease at the last reading (None: nobody)."""
        self._revision = 0
        self._release = threading.Event()

    def wait(self, stop: threading.Event, deadline: float | None = None) -> bool:
        """Block until this control holds the lease (True), or `stop` is set or the monotonic `deadline`
        passes (False)."""
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            if self.held.wait(0.2):
                return True
        return False

    def release(self) -> None:
        """Delete the lease (if still ours) so a standby takes over at once; then end the thread."""
        self._release.set()
        self.stop()

    async def main(self, nc: Client) -> None:
        kv: KeyValue | None = None
        complained = False
        while not self.stopping:
            try:
                kv = kv or await ensure_bucket(nc.jetstream(), self.spine, self.bucket, ttl=self.ttl)
                await self._step(kv)
                complained = False
            except (NatsError, TimeoutError) as error:
                if not complained:
                    logger.warning("control lease: cannot read or renew it yet: {}", type(error).__name__)
                    complained = True
            await self._sleep(self.ttl / 4 if self.held.is_set() else STANDBY_POLL_SECONDS)
        if self._release.is_set() and self.held.is_set() and kv is not None:
            with contextlib.suppress(NatsError, TimeoutError):
                await asyncio.wait_for(kv.delete(LEASE_KEY, last=self._revision), 2.0)
                logger.info("control lease released")
        self.held.clear()

    async def _step(self, kv: KeyValue) -> None:
        try:
            entry = await kv.get(LEASE_KEY)
        except KeyNotFoundError:
            holder, revision = None, 0
        else:
            holder, revision = _holder(entry.value), entry.revision
        self.holder = holder
        step = lease_step(self.me, holder, self.held.is_set())
        try:
            match step:
                case LeaseStep.TAKE:
                    self._revision = await kv.create(LEASE_KEY, self._value())
                case LeaseStep.RENEW:
                    self._revision = await kv.update(LEASE_KEY, self._value(), last=revision)
                case LeaseStep.WAIT:
                    return
                case LeaseStep.STEP_DOWN:
                    logger.error("control lease: now held by {}; this control steps down", holder)
                    self.held.clear()
                    self.lost.set()
                    return
        except KeyWrongLastSequenceError:
            return  # another control wrote it meanwhile: the next reading says who
        if not self.held.is_set():
            logger.info("control lease taken by {}", self.me)
        self.holder = self.me
        self.held.set()

    def _value(self) -> bytes:
        return json.dumps({"holder": self.me, "pid": os.getpid(), "at": time.time()}).encode()


def _holder(value: bytes | None) -> str | None:
    """The holder named in a lease value (an unreadable value names an unknown holder, who must expire)."""
    if not value:
        return None
    try:
        holder = json.loads(value).get("holder")
    except (ValueError, AttributeError):
        return "?"
    return str(holder) if holder else "?"


class StateReplica(_NatsThread):
    """The active control's saved documents in the spine's key-value store. `put` (any thread) never waits;
    `restore(paths)` (before the actors start) brings the disk up to the newest copies; `flush`, `stop`."""

    def __init__(self, url: str, spine: SpineSettings) -> None:
        super().__init__(url, "state-replica")
        self.spine = spine
        self.bucket = state_bucket(spine.instance)
        self._pending: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._silenced = False
        self._kv: KeyValue | None = None

    def put(self, key: str, text: str, saved_at: float) -> None:
        with self._lock:
            if self._silenced:
                return
            self._pending[key] = (text, saved_at)
            self._idle.clear()
        self.wake()

    def silence(self) -> None:
        """Drop what is waiting and every later `put`: this control no longer holds the lease."""
        with self._lock:
            self._silenced = True
            self._pending.clear()
            self._idle.set()

    def flush(self, timeout: float) -> bool:
        """Wait until every document put so far is in the bucket (or failed); False on timeout."""
        return self._idle.wait(timeout)

    def restore(self, paths: DataPaths, timeout: float = 10.0) -> list[str] | None:
        """Write to disk every copy in the bucket that is newer than the disk's file, and put in the bucket
        every state document whose file is newer than its copy; the keys restored from the bucket (None,
        after one warning, when the bucket could not be read: the actors start from the disk)."""
        try:
            return self.call(lambda: self._restore(paths), timeout)
        except (NatsError, TimeoutError, RuntimeError, OSError) as error:
            logger.warning("state replica: {} not read ({}); starting from the disk", self.bucket,
                           type(error).__name__)
            return None

    async def main(self, nc: Client) -> None:
        complained = False
        while not self.stopping or self._pending:
            with self._lock:
                batch, self._pending = self._pending, {}
            try:
                kv = await self._bucket(nc)
                for key, (text, saved_at) in batch.items():
                    await self._put(kv, key, text, saved_at)
                complained = False
            except (NatsError, TimeoutError) as error:
                with self._lock:  # kept for the next try, unless a newer version came meanwhile
                    self._pending = {**batch, **self._pending} if not self._silenced else {}
                if not complained:
                    logger.warning("state replica: cannot write to {}: {}", self.bucket, type(error).__name__)
                    complained = True
                if self.stopping:
                    return
                await self._sleep(1.0)
                continue
            with self._lock:
                if not self._pending:
                    self._idle.set()
            if not self.stopping:
                await self._sleep(60.0)

    async def _bucket(self, nc: Client) -> KeyValue:
        if self._kv is None:
            self._kv = await ensure_bucket(nc.jetstream(), self.spine, self.bucket)
        return self._kv

    async def _put(self, kv: KeyValue, key: str, text: str, saved_at: float) -> None:
        value = f'{{"saved_at":{saved_at!r},"data":{text}}}'.encode()
        if key.startswith(UNIVERSE_KEY_PREFIX):  # written once a day: kept for a few days only
            with contextlib.suppress(KeyWrongLastSequenceError):
                await kv.create(key, value, msg_ttl=UNIVERSE_TTL_SECONDS)
            return
        await kv.put(key, value)

    async def _restore(self, paths: DataPaths) -> list[str]:
        loop = self._loop
        assert loop is not None
        assert self._nc is not None
        kv = await self._bucket(self._nc)
        try:
            keys = await kv.keys()
        except NoKeysError:
            keys = []
        restored = []
        for key in keys:
            path = _path_for(paths, key)
            if path is None:
                continue
            try:
                entry = await kv.get(key)
                copy = json.loads(entry.value or b"")
                spine_saved_at, data = float(copy["saved_at"]), copy["data"]
            except (KeyNotFoundError, ValueError, KeyError, TypeError):
                logger.warning("state replica: {} in {} is not a saved copy; ignored", key, self.bucket)
                continue
            disk_saved_at = _modified_at(path)
            match newest_copy(disk_saved_at, spine_saved_at):
                case Copy.SPINE:
                    indent = 2 if key.startswith(UNIVERSE_KEY_PREFIX) else None
                    text = json.dumps(data, ensure_ascii=False, indent=indent, separators=_separators(indent))
                    path.parent.mkdir(parents=True, exist_ok=True)
                    await loop.run_in_executor(None, write_atomically, path, text.encode(), spine_saved_at)
                    restored.append(key)
                case Copy.DISK if disk_saved_at is not None and key.startswith(STATE_KEY_PREFIX):
                    await self._put_file(kv, key, path, disk_saved_at)
        for path in paths.state_dir.glob("*.json") if paths.state_dir.is_dir() else ():
            key = f"{STATE_KEY_PREFIX}{path.stem}"
            if key not in keys and (saved_at := _modified_at(path)) is not None:
                await self._put_file(kv, key, path, saved_at)
        return restored

    async def _put_file(self, kv: KeyValue, key: str, path: Path, saved_at: float) -> None:
        """Put a state file newer than its copy (an unreadable one stays out: its actor will say so)."""
        try:
            text = path.read_text(encoding="utf-8")
            json.loads(text)
        except (OSError, ValueError):
            return
        await self._put(kv, key, text, saved_at)


def _path_for(paths: DataPaths, key: str) -> Path | None:
    if key.startswith(STATE_KEY_PREFIX):
        return paths.state_dir / f"{key.removeprefix(STATE_KEY_PREFIX)}.json"
    if key.startswith(UNIVERSE_KEY_PREFIX):
        return paths.universe_dir / f"{key.removeprefix(UNIVERSE_KEY_PREFIX)}.json"
    return None


def _modified_at(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _separators(indent: int | None) -> tuple[str, str]:
    return (",", ": ") if indent else (",", ":")

