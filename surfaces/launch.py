"""Start and stop the control responder and the HTTP surface around an observer run (the hooks `app.observer`
calls)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from spine.control import ControlClient, ControlResponder
from surfaces.api import InProcessSurface
from surfaces.audit import AuditLog
from surfaces.control import ControlDesk
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


def control_responder(system: Any, nats_url: str) -> ControlResponder:
    """The control process's responder to control requests (not started), auditing into
    `<data-dir>/observer/system/audit.jsonl`."""
    audit = AuditLog(system.context.paths.observer / "system" / "audit.jsonl")
    desk = ControlDesk(system, audit)
    return ControlResponder(nats_url, system.context.settings.spine.instance, desk.answer)


class HttpSurface:
    """The surface's sampler and server for one run: `start()` prints `DASHBOARD <url>`; `stop()`. Its
    control commands go to the control process over the spine at `nats_url`."""

    def __init__(self, system: Any, options: HttpOptions, nats_url: str) -> None:
        self._metrics = system.metrics
        self._control = ControlClient(nats_url, system.context.settings.spine.instance)
        self.surface = InProcessSurface(system, self._control)
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
        self._control.start()
        self.surface.start()
        print(f"DASHBOARD {self.url}", flush=True)
        return self

    def stop(self) -> None:
        self.surface.stop()
        if self._server is not None:
            self._server.stop()
        self._control.stop()
