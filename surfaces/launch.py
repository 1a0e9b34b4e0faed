"""Start and stop the HTTP surface around an observer run (the hook `app.observer` calls)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from surfaces.api import InProcessSurface
from surfaces.audit import AuditLog
from surfaces.server import Access, HttpServer, access_for, build_app, parse_bind


@dataclass(frozen=True)
class HttpOptions:
    host: str
    port: int
    access: Access


def http_options(bind: str) -> HttpOptions:
    """`--http HOST:PORT` checked before anything starts (`BindRefused` says why not, in one line)."""
    host, port = parse_bind(bind)
    return HttpOptions(host, port, access_for(host))


class HttpSurface:
    """The surface's sampler and server for one run: `start()` prints `DASHBOARD <url>`; `stop()`."""

    def __init__(self, system: Any, options: HttpOptions) -> None:
        self._metrics = system.metrics
        audit = AuditLog(system.context.paths.observer / "system" / "audit.jsonl")
        self.surface = InProcessSurface(system, audit)
        self._server: HttpServer | None = HttpServer(
            build_app(self.surface, options.access), options.host, options.port
        )
        self.url = ""

    def start(self) -> HttpSurface:
        """Listen, then print the URL; a port already taken is one line on stderr and the run goes on."""
        try:
            self._server.start()
        except OSError as error:
            print(f"observer: no dashboard: {error}", file=sys.stderr, flush=True)
            self._server = None
            return self
        self.url = self._server.url
        self.surface.dashboard_url = self.url
        self._metrics.set("dashboard_url", self.url)
        self.surface.start()
        print(f"DASHBOARD {self.url}", flush=True)
        return self

    def stop(self) -> None:
        self.surface.stop()
        if self._server is not None:
            self._server.stop()
