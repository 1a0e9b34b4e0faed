"""`python run.py --sim` on the spine, watched from outside: a plain nats-py subscriber counts every tick
against the JSONL files, a consumer started after the run replays them from the stream, and a NATS server
killed mid-run costs the journal nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.js.api import DeliverPolicy

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths
from spine.server import NatsServer
from tests.e2e.support import tick_files, wait_for

REPO = Path(__file__).resolve().parents[2]
DAY = date(2024, 3, 4)
ACCOUNT = "sim1"
INSTANCE = "e2e"


class Listener:
    """An outside subscriber on a thread of its own: every message under `observer.<instance>.`, counted
    by type; ticks also by whether their subject names their symbol. Reconnects by itself."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.types: Counter[str] = Counter()
        self.misfiled: list[str] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Listener:
        self._thread.start()
        assert self.ready.wait(15), "the outside subscriber could not connect"
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        nc = await nats.connect(self.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2)

        async def on_message(msg: Any) -> None:
            document = json.loads(msg.data)
            self.types[document["type"]] += 1
            if document["type"] == "tick" and msg.subject != f"observer.{INSTANCE}.tick.{document['symbol']}":
                self.misfiled.append(msg.subject)

        await nc.subscribe(f"observer.{INSTANCE}.>", cb=on_message, pending_msgs_limit=-1,
                           pending_bytes_limit=-1)
        await nc.flush()
        self.ready.set()
        while not self._stop.is_set():
            await asyncio.sleep(0.1)
        seen = -1
        for _ in range(200):  # until a second passes without a message: the last ones were in flight
            if seen == sum(self.types.values()):
                break
            seen = sum(self.types.values())
            await asyncio.sleep(1.0)
        await nc.close()


def command(tmp_path: Path, duration: float, *extra: str) -> list[str]:
    return [
        sys.executable, "run.py", "--sim", "--seed", "1", "--symbols", "120", "--speed", "10",
        "--start", "09:28", "--date", f"{DAY:%Y%m%d}", "--duration", f"{duration:g}",
        "--data-dir", str(tmp_path / "data"), "--log-dir", str(tmp_path / "logs"),
        "--summary-json", str(tmp_path / "summary.json"), *extra,
    ]  # fmt: skip


def environment() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("OBSERVER_", "KIS_", "TELEGRAM_", "DISCORD_"))}
    env.update(OBSERVER_SPINE__INSTANCE=INSTANCE, OBSERVER_SPINE__HEALTH_INTERVAL_SECONDS="1",
               PYTHONUNBUFFERED="1", OBSERVER_WEBSOCKET__FEED="krx")  # 09:30 starts Track B: a phase change
    return env


def journal_ticks(tmp_path: Path) -> Counter[str]:
    """Tick lines on disk by source ("ws", "recovery")."""
    counts: Counter[str] = Counter()
    for path in tick_files(DataPaths(tmp_path / "data"), ACCOUNT, DAY).values():
        counts.update(record["source"] for record in read_jsonl(path).records)
    return counts


def journal_lines(tmp_path: Path, pattern: str) -> int:
    """Lines of the account's day files named like `pattern` (order books, program trading)."""
    paths = DataPaths(tmp_path / "data")
    return sum(len(read_jsonl(path).records)
               for path in (paths.observer / "scalp" / ACCOUNT).glob(f"*/{DAY:%Y%m%d}/{pattern}"))


async def replay_ticks(url: str) -> int:
    """A consumer that starts after the run: every tick of the day from the stream."""
    nc = await nats.connect(url)
    sub = await nc.jetstream().subscribe(f"observer.{INSTANCE}.tick.>", ordered_consumer=True,
                                         deliver_policy=DeliverPolicy.ALL)
    count = 0
    while True:
        try:
            await sub.next_msg(timeout=3)
        except nats.errors.TimeoutError:
            break
        count += 1
    await nc.close()
    return count


@pytest.mark.timeout(180)
def test_every_tick_on_disk_reaches_an_outside_subscriber_and_the_stream(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    with Listener(nats_server.url) as listener:
        completed = subprocess.run(
            command(tmp_path, 25, "--nats", nats_server.url), cwd=REPO, env=environment(),
            capture_output=True, text=True, timeout=150,
        )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output[-3000:]
    assert f"NATS {nats_server.url}" in "\n".join(completed.stdout.splitlines()[:3])

    on_disk = journal_ticks(tmp_path)
    assert on_disk["ws"] > 100, on_disk
    assert listener.types["tick"] == sum(on_disk.values()), (listener.types, on_disk)
    assert not listener.misfiled[:5]
    for kind in ("snapshot", "scan", "trigger", "slot", "slot_targets", "alert", "phase", "health"):
        assert listener.types[kind] > 0, f"no {kind} message: {listener.types}"
    assert listener.types["book"] == journal_lines(tmp_path, "orderbook_*.jsonl") > 0, listener.types
    assert listener.types["program"] == journal_lines(tmp_path, "program_*.jsonl") > 0, listener.types
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["spine_dropped"] == 0
    assert summary["spine_published"] == sum(listener.types.values())

    assert asyncio.run(replay_ticks(nats_server.url)) == sum(on_disk.values())


def nats_child(parent: int) -> int | None:
    """The pid of the nats-server `parent` started."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split()
        except OSError:
            continue
        if fields[1] == "(nats-server)" and int(fields[3]) == parent:
            return int(fields[0])
    return None


@pytest.mark.timeout(180)
def test_the_embedded_server_killed_mid_run_costs_the_journal_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run.out"
    with out.open("wb") as output:
        process = subprocess.Popen(command(tmp_path, 40), cwd=REPO, env=environment(), stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: "NATS nats://" in out.read_text(), timeout=30), out.read_text()
            url = re.search(r"NATS (nats://\S+)", out.read_text())[1]
            assert (tmp_path / "data" / "observer" / "nats" / "jetstream").is_dir()
            assert wait_for(lambda: journal_ticks(tmp_path)["ws"] > 0, timeout=60), out.read_text()[-2000:]
            first = nats_child(process.pid)
            assert first is not None
            os.kill(first, signal.SIGKILL)
            assert wait_for(lambda: nats_child(process.pid) not in (None, first), timeout=20)
            second = nats_child(process.pid)
            with Listener(url) as listener:  # publishing resumes on the restarted server
                assert wait_for(lambda: listener.types["tick"] > 0, timeout=20), listener.types
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    log = out.read_text(encoding="utf-8", errors="replace")
    assert code == 0, log[-3000:]
    assert not Path(f"/proc/{second}").exists(), "the restarted nats-server outlived the observer"
    summary = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert summary["ticks_lost"] == 0, summary
    assert summary["ticks_recorded"] == journal_ticks(tmp_path)["ws"]
    observer_log = (tmp_path / "logs" / "observer.log").read_text()
    assert "nats-server exited with code -9; restarting it" in observer_log


@pytest.mark.timeout(90)
def test_the_embedded_server_ends_with_an_observer_killed_by_sigkill(tmp_path: Path) -> None:
    out = tmp_path / "run.out"
    with out.open("wb") as output:
        process = subprocess.Popen(command(tmp_path, 60), cwd=REPO, env=environment(), stdout=output,
                                   stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: nats_child(process.pid) is not None, timeout=30), out.read_text()
            server = nats_child(process.pid)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
    assert wait_for(lambda: not Path(f"/proc/{server}").exists(), timeout=10), "nats-server outlived it"
