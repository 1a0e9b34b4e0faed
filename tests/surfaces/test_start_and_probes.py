"""Starting the HTTP surface: a non-loopback address without a token stops the start with one line and exit 2;
`/readyz` is 503 with its reasons until the WebSocket connects, then 200; `/healthz` is 200 while the tree
lives; the first lines name the dashboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from surfaces.server import BindRefused, access_for, parse_bind
from tests.surfaces.support import REPO, call, observer_env, start_observer, wait_until


@pytest.mark.parametrize("bind", ["0.0.0.0:0", "192.0.2.10:8600", "[::]:8600", "example.org:8600"])
def test_a_public_address_without_a_token_is_one_line_and_exit_2(tmp_path: Path, bind: str) -> None:
    command = [sys.executable, str(REPO / "run.py"), "--sim", "--http", bind, "--data-dir", str(tmp_path)]
    done = subprocess.run(
        command, cwd=REPO, env=observer_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "OBSERVER_HTTP_TOKEN" in lines[0] and "not loopback" in lines[0]
    assert not (tmp_path / "observer").exists(), "nothing started"


def test_the_bind_rules() -> None:
    assert parse_bind("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_bind("[::1]:8600") == ("::1", 8600)
    for bad in ("8600", "host:port", "127.0.0.1:70000"):
        with pytest.raises(BindRefused):
            parse_bind(bad)
    assert access_for("127.0.0.1", {}).token is None
    assert access_for("::1", {}).token is None
    assert access_for("0.0.0.0", {"OBSERVER_HTTP_TOKEN": "t"}).token == "t"
    with pytest.raises(BindRefused):
        access_for("0.0.0.0", {"OBSERVER_HTTP_TOKEN": ""})


def test_readyz_waits_for_the_websocket_and_healthz_follows_the_tree(tmp_path: Path) -> None:
    """07:59 on a trading day: nothing is subscribed before the 08:00 warmup, so the WebSocket is not
    connected and `/readyz` says so; after 08:00 the execution-notice session connects and it is ready."""
    observer = start_observer(tmp_path, start="07:59", speed=10.0, duration=120)
    try:
        head = observer.output.read_text().splitlines()[:4]
        assert any(line.startswith("DASHBOARD http://127.0.0.1:") for line in head)
        status, answer, _ = call(observer.url, "/readyz")
        assert status == 503 and answer["ok"] is False
        assert any("WebSocket" in reason for reason in answer["reasons"])
        wait_until(lambda: call(observer.url, "/readyz")[0] == 200, 90, "/readyz 200 after the connect")
        assert call(observer.url, "/readyz")[1] == {"ok": True, "reasons": []}
        assert call(observer.url, "/api/status")[1]["accounts"][0]["connection"] == "connected"
        status, answer, _ = call(observer.url, "/healthz")
        assert status == 200 and answer == {"ok": True, "reasons": []}
    finally:
        assert observer.stop() == 0
