"""The embedded nats-server: loopback, JetStream on, store where asked, restarted after SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import nats

from spine.server import NatsServer, server_binary
from tests.e2e.support import wait_for


def test_the_binary_comes_from_the_installed_wheel() -> None:
    binary = server_binary()
    assert binary.name == "nats-server" and os.access(binary, os.X_OK)


def test_server_serves_jetstream_on_loopback_with_its_store_under_the_given_folder(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    assert nats_server.url.startswith("nats://127.0.0.1:")

    async def account_info() -> int:
        nc = await nats.connect(nats_server.url)
        info = await nc.jetstream().account_info()
        await nc.close()
        return info.streams

    assert asyncio.run(account_info()) == 0
    assert (tmp_path / "nats" / "jetstream").is_dir()


def test_server_killed_is_restarted_on_the_same_url_and_says_its_pid(tmp_path: Path) -> None:
    pid_file = tmp_path / "run" / "nats.pid"
    nats_server = NatsServer(tmp_path / "nats", pid_file=pid_file).start()
    try:
        first = nats_server.pid
        assert first is not None and pid_file.read_text().strip() == str(first)
        os.kill(first, signal.SIGKILL)
        assert wait_for(lambda: nats_server.pid not in (None, first), timeout=15)
        assert nats_server.restarts == 1
        assert wait_for(lambda: pid_file.read_text().strip() == str(nats_server.pid), timeout=5)
        assert asyncio.run(round_trip(nats_server.url)) == b"pong"
    finally:
        nats_server.stop()
    assert not pid_file.exists()


async def round_trip(url: str) -> bytes:
    nc = await nats.connect(url)
    sub = await nc.subscribe("ping")
    await nc.publish("ping", b"pong")
    msg = await sub.next_msg(timeout=5)
    await nc.close()
    return msg.data


def test_stop_ends_the_server_for_good(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    pid = server.pid
    server.stop()
    assert server.pid is None
    assert pid is not None
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
