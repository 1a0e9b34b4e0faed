"""Starting the HTTP surface: a non-loopback address without a token stops the start with one line and exit 2;
`/readyz` is 503 with its reasons until the WebSocket connects, then 200; `/healthz` is 200 while the tree
lives; the first lines name the dashboard."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from starlette.requests import Request

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
    assert access_for("127.0.0.1", {}).tokens == ()
    assert access_for("::1", {}).tokens == ()
    assert access_for("0.0.0.0", {"OBSERVER_HTTP_TOKEN": "t"}).tokens == (("operator", "t"),)
    with pytest.raises(BindRefused):
        access_for("0.0.0.0", {"OBSERVER_HTTP_TOKEN": ""})


def request_with(header: str | None) -> Request:
    headers = [] if header is None else [(b"authorization", header.encode())]
    return Request({"type": "http", "method": "GET", "path": "/api/status", "headers": headers})


def test_several_named_tokens_each_let_its_holder_in_by_name() -> None:
    env = {"OBSERVER_HTTP_TOKENS": " alice:tok-a1 , bob:tok-b2,", "OBSERVER_HTTP_TOKEN": "tok-c3",
           "OBSERVER_HTTP_TOKEN_NAME": "desk"}
    access = access_for("0.0.0.0", env)
    assert [name for name, _ in access.tokens] == ["alice", "bob", "desk"]
    assert access.who(request_with("Bearer tok-a1")) == "alice"
    assert access.who(request_with("bearer tok-b2")) == "bob"
    assert access.who(request_with("Bearer tok-c3")) == "desk"
    wrong = ("Bearer", "Bearer tok-a", "Bearer tok-a1x", "Basic tok-a1", "tok-a1", "Bearer alice")
    for refused in (None, *wrong):
        assert access.who(request_with(refused)) is None, refused
    assert access_for("0.0.0.0", {"OBSERVER_HTTP_TOKENS": "ops:tok"}).who(request_with("Bearer tok")) == "ops"
    assert access_for("127.0.0.1", {}).who(request_with(None)) == "local"


@pytest.mark.parametrize(
    ("tokens", "words"),
    [
        ("alice", "entry 1 is not NAME:TOKEN"),
        ("alice:secret-one,:secret-two", "entry 2 is not NAME:TOKEN"),
        ("alice:secret one", "entry 1 is not NAME:TOKEN"),
        ("al ice:secret-one", "entry 1 is not NAME:TOKEN"),
        ("alice:secret-one,alice:secret-two", "'alice' is given twice"),
        ("alice:secret-one,bob:secret-one", "one token is given under two names"),
    ],
)
def test_a_malformed_token_list_is_one_line_without_the_token(tokens: str, words: str) -> None:
    with pytest.raises(BindRefused) as refused:
        access_for("0.0.0.0", {"OBSERVER_HTTP_TOKENS": tokens})
    assert words in str(refused.value) and "secret" not in str(refused.value)


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
