"""Control commands as NATS request/reply, against a real nats-server: an outside nats-py client is answered
by the control process's responder with one sentence and an audit line, and with no control process
listening the client, the HTTP API and `run.py ctl --nats` each say so in one line (503)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nats
import pytest

from app.observer import sim_accounts
from app.system import ObserverSystem
from config.loader import load_settings
from runtime.clock import SystemClock
from spine.control import ControlClient, NoControl
from spine.server import NatsServer
from surfaces.api import InProcessSurface
from surfaces.launch import control_responder
from surfaces.server import Access, HttpServer, build_app
from tests.surfaces.support import REPO, call, observer_env


@pytest.fixture
def system(tmp_path: Path) -> ObserverSystem:
    """A control process's system, its actors not started: every command is checked and refused."""
    settings = load_settings(env={}, overrides={
        "accounts": sim_accounts(1),
        "data_dir": str(tmp_path / "data"),
        "log_dir": str(tmp_path / "logs"),
        "tokens": {"cache_dir": str(tmp_path / "tokens")},
    })  # fmt: skip
    return ObserverSystem(settings, SystemClock())


async def outside_requests(url: str, requests: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
    """What a plain nats-py client gets back for each (subject, payload)."""
    nc = await nats.connect(url)
    try:
        return [json.loads((await nc.request(subject, data, timeout=10)).data) for subject, data in requests]
    finally:
        await nc.close()


def test_an_outside_client_gets_one_sentence_and_an_audit_line(
    nats_server: NatsServer, system: ObserverSystem, tmp_path: Path
) -> None:
    responder = control_responder(system, nats_server.url)
    responder.start()
    try:
        replies = asyncio.run(outside_requests(nats_server.url, [
            ("observer.main.control.pin", b'{"symbol": '),
            ("observer.main.control.pin", json.dumps({"symbol": "005930", "who": "alice"}).encode()),
            ("observer.main.control.trigger", json.dumps({"symbol": "005930", "ttl_seconds": 0}).encode()),
            ("observer.main.control.reboot", b"{}"),
            ("observer.main.control.scan", json.dumps({"who": "bob"}).encode()),
            ("observer.main.control.pin", json.dumps({"symbol": "005930", "who": 7}).encode()),
        ]))  # fmt: skip
    finally:
        responder.stop()
    assert [(r["type"], r["ok"], r["status"]) for r in replies] == [
        ("control_reply", False, 400), ("control_reply", False, 409), ("control_reply", False, 400),
        ("control_reply", False, 404), ("control_reply", False, 503), ("control_reply", False, 400),
    ]  # fmt: skip
    sentences = [r["error"] for r in replies]
    for sentence, words in zip(sentences, ["not valid JSON", "universe is not loaded", "out of range",
                                           "unknown command", "scanner actor is not running", "who must be"],
                               strict=True):
        assert words in sentence and "\n" not in sentence
    audit = tmp_path / "data" / "observer" / "system" / "audit.jsonl"
    lines = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert [(line["who"], line["what"], line["ok"]) for line in lines] == [
        ("nats", "pin", False), ("alice", "pin", False), ("nats", "trigger", False),
        ("nats", "reboot", False), ("bob", "scan", False), ("nats", "pin", False),
    ]  # fmt: skip
    assert lines[1]["request"] == {"symbol": "005930"} and all(line["at"] for line in lines)


def test_without_a_control_process_each_sender_says_so_in_one_line(
    nats_server: NatsServer, system: ObserverSystem
) -> None:
    client = ControlClient(nats_server.url, "main", timeout=3.0)
    client.start()
    server = HttpServer(build_app(InProcessSurface(system, client), Access()), "127.0.0.1", 0).start()
    try:
        listening = r"no control process is listening on observer\.main\.control\.pin"
        with pytest.raises(NoControl, match=listening):
            client.send("pin", {"symbol": "005930"})
        status, answer, _ = call(server.url, "/api/control/pin", body={"symbol": "005930"})
        assert status == 503 and "no control process" in answer["error"] and "\n" not in answer["error"]
    finally:
        server.stop()
        client.stop()
    done = subprocess.run(
        [sys.executable, str(REPO / "run.py"), "ctl", "pin", "005930", "--nats", nats_server.url],
        cwd=REPO, env=observer_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "ctl: 503: no control process is listening on observer.main.control.pin: nothing was changed"
    ]
