"""A standby control, as a user runs one: a stream process and two `run.py --role control` processes (each
with its own data dir, as on two hosts) against one nats-server and the simulator over real sockets. The
active one is SIGKILLed; the standby takes the lease within 15 s, resumes the slots the active one held (from
the spine's key-value store, not from its disk), no credential is in that store, and the stream's WebSocket
session is neither reopened nor doubled: the simulator saw one session per app key all along."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from spine.kv import lease_bucket, state_bucket
from spine.server import NatsServer
from tests.spine.conftest import nats_server  # noqa: F401
from tools.kis_sim.cli import clock_line
from tools.kis_sim.server import KisSimulator, SimConfig
from tools.roles import Role, wait_for

REPO = Path(__file__).resolve().parents[2]
TAKEOVER_LIMIT_SECONDS = 15.0
FEEDS = ("H0STCNT0", "H0NXCNT0", "H0UNCNT0")
"""KRX, Nextrade and unified trades: whichever the configured feed subscribes."""


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """Real time (speed 1), so the slots barely move while the controls hand over."""
    return dataclasses.replace(kis_sim_config, speed=1.0)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def probe(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def metric(url: str, name: str) -> float | None:
    """The first sample of `name` on `url`'s /metrics (None when it has none)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return next((float(line.split()[-1]) for line in text.splitlines()
                 if line.startswith((f"{name} ", f"{name}{{"))), None)


def streamed(kis_sim: KisSimulator) -> set[tuple[str, str]]:
    """Every (TR id, symbol) some session has registered for trades."""
    return {(tr_id, symbol) for tr_id in FEEDS for symbol in kis_sim.ws.registered(tr_id)}


def held(slots: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """Each account's slotted symbols and since when they hold their slot, from `/api/slots`."""
    return {account["account"]: {(row["symbol"], row["since"]) for row in account["slots"]}
            for account in slots["accounts"]}


async def bucket_contents(url: str) -> dict[str, str]:
    """Every key and value in the control's key-value buckets."""
    nc = await nats.connect(url)
    contents = {}
    try:
        for bucket in (lease_bucket("main"), state_bucket("main")):
            kv = await nc.jetstream().key_value(bucket)
            for key in await kv.keys():
                contents[key] = ((await kv.get(key)).value or b"").decode()
    finally:
        await nc.close()
    return contents


@pytest.fixture
def roles() -> Iterator[list[Role]]:
    started: list[Role] = []
    yield started
    for role in sorted(started, key=lambda role: "--role stream" not in " ".join(role.process.args)):
        role.stop()  # the stream first, while a control still takes what its connections say as they close


@pytest.mark.timeout(180)
def test_the_standby_takes_over_within_15_s_with_the_slots_and_no_second_session(
    tmp_path: Path, nats_server: NatsServer, kis_sim: KisSimulator, roles: list[Role]  # noqa: F811
) -> None:
    clock = clock_line(kis_sim.clock).split()
    common = [sys.executable, str(REPO / "run.py"), "--sim", "--nats", nats_server.url, "--kis-rest",
              kis_sim.rest_url, "--kis-ws", kis_sim.ws_url, "--sim-clock", f"{clock[1]}@{clock[2]}"]

    def start(role: str, name: str, data: Path, *extra: str) -> Role:
        argv = [*common, "--role", role, "--data-dir", str(data), "--log-dir", str(tmp_path / f"logs-{name}"),
                *extra]
        started = Role(argv, tmp_path / f"{name}.out")
        roles.append(started)
        return started

    # Control A shares its host (its data dir, the token cache) with the stream; control B is elsewhere.
    host_a, host_b = tmp_path / "host-a", tmp_path / "host-b"
    active = start("control", "control-a", host_a, "--http", "127.0.0.1:0")
    wait_for(lambda: active.said("observer: control active"), 60, "control A holding the lease")
    # The token cache is the one directory the two hosts share (a network mount): the new active control
    # reads the valid tokens there instead of asking KIS again within the minute it allows one per key.
    (host_b / "sim").mkdir(parents=True)
    (host_b / "sim" / "tokens").symlink_to(host_a / "sim" / "tokens", target_is_directory=True)
    standby = start("control", "control-b", host_b, "--http", "127.0.0.1:0")
    wait_for(lambda: active.said("observer: control ready"), 90, "control A ready")
    stream = start("stream", "stream", host_a, "--http", "off")
    wait_for(lambda: standby.said("DASHBOARD"), 60, "control B's dashboard")
    a_url, b_url = active.value("DASHBOARD").rstrip("/"), standby.value("DASHBOARD").rstrip("/")

    assert get_json(f"{b_url}/api/status")["control"] == "standby"
    assert metric(b_url, "observer_control_active") == 0
    assert metric(b_url, "observer_up") == 1
    assert metric(b_url, "observer_slots_in_use") is None  # no slot or token figures to alert on
    assert probe(f"{b_url}/healthz") == 200 and probe(f"{b_url}/readyz") == 503  # alive, not the one to use
    assert get_json(f"{a_url}/api/status")["control"] == "active"
    assert metric(a_url, "observer_control_active") == 1

    registered = wait_for(lambda: streamed(kis_sim), 90, "slots streamed")
    time.sleep(1.0)  # the first allocation settles
    slots_before = get_json(f"{a_url}/api/slots")
    registered = streamed(kis_sim)
    assert kis_sim.ws.sessions_per_key() and set(kis_sim.ws.sessions_per_key().values()) == {1}

    os.kill(active.process.pid, signal.SIGKILL)
    killed = time.monotonic()
    became_active = wait_for(lambda: standby.said("observer: control ready"), 30, "control B active")
    takeover = became_active - killed
    print(f"\ncontrol takeover after SIGKILL of the active one: {takeover:.2f} s")
    assert takeover < TAKEOVER_LIMIT_SECONDS

    slots_after = get_json(f"{b_url}/api/slots")
    assert held(slots_after) == held(slots_before) and held(slots_before)  # the same symbols, held since then
    assert get_json(f"{b_url}/api/status")["control"] == "active"
    assert metric(b_url, "observer_control_active") == 1

    secrets = {"SIM-APPKEY-0001-observer", "SIM-SECRET-0001-observer"}
    for cache in (host_a / "sim" / "tokens").glob("*.json"):
        cached = json.loads(cache.read_text(encoding="utf-8"))
        secrets |= {cached["access_token"], cached["approval_key"]}
    on_the_spine = asyncio.run(bucket_contents(nats_server.url))
    assert any(key.startswith("universe.") for key in on_the_spine) and "state.slots" in on_the_spine
    assert not [key for key, value in on_the_spine.items() if any(secret in value for secret in secrets)]

    time.sleep(3.0)  # the new control's slot targets have reached the stream
    assert streamed(kis_sim) == registered
    assert set(kis_sim.ws.sessions_per_key().values()) == {1}, kis_sim.ws.sessions_per_key()
    assert kis_sim.ws.session_count() == 1
    assert stream.process.poll() is None
