"""A running observer for the surface tests: `run.py --sim --http 127.0.0.1:0` in a subprocess, its URL, and
plain HTTP calls to it (urllib: the tests talk to the real server over a real socket)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DAY = "20240304"
FAKE_APP_KEY = "PSsurfaceFAKEappKEYthatMustNeverBeShownAnywhere01"
FAKE_APP_SECRET = "surfaceFAKEappSECRETthatMustNeverBeShownAnywhere+/0123456789abcdef="
WEBHOOK = "https://discord.example.invalid/api/webhooks/1234/surfaceFAKEwebhookSECRET"


def observer_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("OBSERVER_", "KIS_", "TELEGRAM_", "DISCORD_"))
    }
    env.update(KIS_APP_KEY=FAKE_APP_KEY, KIS_APP_SECRET=FAKE_APP_SECRET, PYTHONUNBUFFERED="1", **extra)
    return env


@dataclass
class RunningObserver:
    process: subprocess.Popen[bytes]
    url: str
    output: Path
    data_dir: Path
    summary: Path

    def stop(self, timeout: float = 120.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


def start_observer(
    tmp_path: Path,
    *,
    start: str = "09:29",
    duration: float = 600.0,
    speed: float = 10.0,
    env: dict[str, str] | None = None,
    http: str = "127.0.0.1:0",
) -> RunningObserver:
    """Start a simulated run and wait for its `DASHBOARD <url>` line."""
    output = tmp_path / "observer.out"
    data_dir = tmp_path / "data"
    summary = tmp_path / "summary.json"
    command = [
        sys.executable,
        str(REPO / "run.py"),
        "--sim",
        "--symbols",
        "200",
        "--date",
        DAY,
        "--start",
        start,
        "--speed",
        f"{speed:g}",
        "--duration",
        f"{duration:g}",
        "--data-dir",
        str(data_dir),
        "--log-dir",
        str(tmp_path / "logs"),
        "--summary-json",
        str(summary),
        "--http",
        http,
    ]
    with output.open("wb") as sink:
        process = subprocess.Popen(
            command, cwd=REPO, env=env or observer_env(), stdout=sink, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for line in output.read_text(errors="replace").splitlines():
            if line.startswith("DASHBOARD "):
                return RunningObserver(process, line.split()[1], output, data_dir, summary)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"no DASHBOARD line:\n{output.read_text(errors='replace')[-3000:]}")


def call(
    url: str,
    path: str,
    *,
    body: Any = None,
    token: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    method: str | None = None,
) -> tuple[int, Any, dict[str, str]]:
    """(status, JSON answer or text, headers) of one request."""
    sent = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url.rstrip("/") + path,
        data=data,
        headers=sent,
        method=method or ("POST" if data is not None else "GET"),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text, answered = response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        status, text, answered = error.code, error.read(), dict(error.headers)
    try:
        return status, json.loads(text), answered
    except ValueError:
        return status, text.decode(errors="replace"), answered


def wait_until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"not within {timeout:g} s: {what}")
