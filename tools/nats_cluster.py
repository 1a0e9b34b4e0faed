"""A NATS cluster with JetStream on loopback: three (or more) `nats-server` processes of the wheel, routed to
each other, each with its own store folder. For tests, and for trying the clustered layout on one machine:

    python -m tools.nats_cluster --dir /tmp/nats-cluster [--servers 3]

prints `NATS <url>,<url>,<url>` (what `--nats` takes) once JetStream answers on every server, and stops the
servers on Ctrl-C or SIGTERM. The command line of each server is what a real cluster runs on its own host
(`command_line`), with the other hosts' cluster addresses as routes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from spine.server import DIE_WITH_PARENT, server_binary, terminate

CLUSTER_NAME = "observer"
READY_TIMEOUT_SECONDS = 30.0
FIRST_CLIENT_PORT = 14222


@dataclass
class ClusterServer:
    """One server of the cluster: its name, ports, store folder and (while running) process."""

    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store_dir: Path
    routes: list[str]
    host: str = "127.0.0.1"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        process = self.process
        return process.pid if process is not None and process.poll() is None else None

    def command_line(self) -> list[str]:
        """The `nats-server` arguments: a named server of the cluster, JetStream on, its routes."""
        return [
            str(server_binary()), "--server_name", self.name, "--addr", self.host,
            "--port", str(self.client_port), "--http_port", str(self.monitor_port),
            "--cluster_name", CLUSTER_NAME, "--cluster", f"nats://{self.host}:{self.cluster_port}",
            "--routes", ",".join(self.routes), "--jetstream", "--store_dir", str(self.store_dir),
        ]  # fmt: skip

    def start(self, log: IO[bytes] | int) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(self.command_line(), stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, preexec_fn=DIE_WITH_PARENT,
                                        start_new_session=True)

    def kill(self) -> None:
        """SIGKILL, as a crashed host: no goodbye to the cluster."""
        if self.pid is not None:
            os.kill(self.pid, signal.SIGKILL)
            assert self.process is not None
            self.process.wait(5.0)

    def stop(self) -> None:
        if self.process is not None:
            terminate(self.process)

    def healthy(self) -> bool:
        """The server's `/healthz` (up, its JetStream a current member of the cluster) and a JetStream meta
        leader it knows (`/jsz`): before one is elected, creating a stream gets no answer."""
        try:
            with urllib.request.urlopen(f"{self.monitor_url}/healthz", timeout=1.0) as reply:
                if json.loads(reply.read()).get("status") != "ok":
                    return False
            with urllib.request.urlopen(f"{self.monitor_url}/jsz", timeout=1.0) as reply:
                return bool((json.loads(reply.read()).get("meta_cluster") or {}).get("leader"))
        except (OSError, ValueError, urllib.error.URLError):
            return False

    @property
    def monitor_url(self) -> str:
        return f"http://{self.host}:{self.monitor_port}"


class NatsCluster:
    """`start()` runs `size` servers and returns once every one is healthy; `stop()` ends them.

    Ports are consecutive from `first_port`: client ports, then cluster ports, then monitoring ports
    (`first_port + size`, `first_port + 2 * size`), so a cluster started again finds its own servers.
    """

    def __init__(self, root: Path, *, size: int = 3, first_port: int | None = None) -> None:
        if size < 1:
            raise ValueError(f"a cluster needs at least one server, got {size}")
        self.root = Path(root)
        base = first_port if first_port is not None else _free_block(3 * size)
        cluster_ports = [base + size + number for number in range(size)]
        routes = [f"nats://127.0.0.1:{port}" for port in cluster_ports]
        self.servers = [
            ClusterServer(
                name=f"n{number + 1}", client_port=base + number, cluster_port=cluster_ports[number],
                monitor_port=base + 2 * size + number, store_dir=self.root / f"n{number + 1}",
                routes=[route for route in routes if route != routes[number]],
            )
            for number in range(size)
        ]

    @property
    def urls(self) -> str:
        """The servers' client URLs, comma-separated: what `--nats` and `python -m store --nats` take."""
        return ",".join(server.url for server in self.servers)

    def start(self) -> NatsCluster:
        self.root.mkdir(parents=True, exist_ok=True)
        for server in self.servers:
            self.start_server(server)
        self.wait_healthy()
        return self

    def start_server(self, server: ClusterServer) -> None:
        """(Re)start one server, its output appended to `<root>/<name>.log`."""
        with (self.root / f"{server.name}.log").open("ab") as log:
            server.start(log)

    def wait_healthy(self, timeout: float = READY_TIMEOUT_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            running = [server for server in self.servers if server.process is not None]
            dead = [server.name for server in running if server.pid is None]
            if dead:
                raise RuntimeError(f"nats-server {', '.join(dead)} exited (see {self.root}/<name>.log)")
            if all(server.healthy() for server in running):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the NATS cluster under {self.root} was not healthy within {timeout:.0f} s")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _free_block(count: int) -> int:
    """The first of `count` consecutive loopback ports free now, searched upwards from a start that differs
    between processes (parallel test runs rarely meet)."""
    port = FIRST_CLIENT_PORT + os.getpid() % 1000 * 20
    while port + count < 65_000:
        if all(_is_free(candidate) for candidate in range(port, port + count)):
            return port
        port += count
    raise RuntimeError("no block of free loopback ports for the NATS cluster")


def _is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.nats_cluster", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, type=Path,
                        help="one store folder and log per server under DIR")
    parser.add_argument("--servers", type=int, default=3, help="how many servers (default 3)")
    parser.add_argument("--port", type=int, default=None,
                        help="the first client port (default: a free block); cluster and monitoring ports "
                             "follow")
    args = parser.parse_args(argv)
    if args.servers < 1:
        print("python -m tools.nats_cluster: --servers must be at least 1", file=sys.stderr)
        return 2
    cluster = NatsCluster(args.dir, size=args.servers, first_port=args.port)
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        cluster.start()
    except RuntimeError as error:
        print(f"python -m tools.nats_cluster: {error}", file=sys.stderr)
        return 1
    print(f"NATS {cluster.urls}", flush=True)
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        cluster.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
