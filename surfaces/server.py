"""The observer's HTTP server: dashboard, JSON API, event stream, control, `/metrics`, `/healthz`, `/readyz`.

Starlette on uvicorn, in a thread of the control process. Loopback by default; any other address needs a
token, and with tokens every API read and control call needs `Authorization: Bearer <token>`, compared in
constant time with each one. Tokens are named, and the name (never the token) is who the audit file records:
`OBSERVER_HTTP_TOKENS="alice:tok1,bob:tok2"` gives several, `OBSERVER_HTTP_TOKEN` one (named by
`OBSERVER_HTTP_TOKEN_NAME`, else "operator"); both may be set. Control calls take JSON only and refuse a
foreign `Origin`, so a cross-site form cannot post one (there is no cookie to ride on anyway).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import os
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from surfaces.api import ObserverSurface
from surfaces.commands import CommandError
from surfaces.prometheus import metrics_text

DEFAULT_BIND = "127.0.0.1:8600"
TOKEN_ENV = "OBSERVER_HTTP_TOKEN"
TOKEN_NAME_ENV = "OBSERVER_HTTP_TOKEN_NAME"
TOKENS_ENV = "OBSERVER_HTTP_TOKENS"
DEFAULT_TOKEN_NAME = "operator"
TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,32}$")
STATIC = Path(__file__).parent / "static"
STREAM_POLL_SECONDS = 0.25
STREAM_KEEPALIVE_SECONDS = 15.0
MAX_BODY_BYTES = 64 * 1024
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'"
    ),
}


class BindRefused(ValueError):
    """The address cannot be served as asked (one line for the user)."""


@dataclass(frozen=True)
class Access:
    """Who may call: with no `tokens` anyone who reaches the loopback address ("local"); else the holder
    of one of them, (name, token) pairs."""

    tokens: tuple[tuple[str, str], ...] = ()

    def who(self, request: Request) -> str | None:
        """The caller's token name, or None when the token is missing or wrong."""
        if not self.tokens:
            return "local"
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = given.strip().encode()
        found = None
        for name, token in self.tokens:  # every one compared, so the time says nothing about which
            if hmac.compare_digest(offered, token.encode()):
                found = name
        return found


def parse_bind(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 in brackets) -> (host, port); port 0 picks a free one."""
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host:
        raise BindRefused(f"--http {text!r}: give HOST:PORT, e.g. 127.0.0.1:8600")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise BindRefused(f"--http {text!r}: the port must be a number") from None
    if not 0 <= number <= 65535:
        raise BindRefused(f"--http {text!r}: the port must be from 0 to 65535")
    return host, number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def access_for(host: str, environ: dict[str, str] | None = None) -> Access:
    """The access rule for binding `host`: a non-loopback address without a token is refused."""
    env = os.environ if environ is None else environ
    tokens = named_tokens(env)
    if not tokens and not is_loopback(host):
        raise BindRefused(
            f"binding {host} (not loopback) needs a token: set {TOKEN_ENV} (or {TOKENS_ENV}=NAME:TOKEN,...) "
            "and send it as a Bearer token"
        )
    return Access(tokens=tokens)


def named_tokens(env: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """(name, token) of `OBSERVER_HTTP_TOKENS` and `OBSERVER_HTTP_TOKEN`; BindRefused (naming the entry,
    never a token) for a malformed list, a name used twice or one token under two names."""
    pairs: list[tuple[str, str]] = []
    for number, entry in enumerate((env.get(TOKENS_ENV) or "").split(","), start=1):
        if not entry.strip():
            continue
        name, sep, token = entry.strip().partition(":")
        if not sep or not TOKEN_NAME.match(name) or not token or any(c.isspace() for c in token):
            raise BindRefused(
                f"{TOKENS_ENV}: entry {number} is not NAME:TOKEN (a name of letters, digits, '_', '-', '.', "
                "'@', at most 32, and a token without spaces)"
            )
        pairs.append((name, token))
    single = env.get(TOKEN_ENV) or None
    if single is not None:
        pairs.append((env.get(TOKEN_NAME_ENV) or DEFAULT_TOKEN_NAME, single))
    names = [name for name, _ in pairs]
    for name in names:
        if names.count(name) > 1:
            raise BindRefused(f"the token name {name!r} is given twice ({TOKENS_ENV}, {TOKEN_ENV})")
    if len({token for _, token in pairs}) < len(pairs):
        raise BindRefused(f"one token is given under two names ({TOKENS_ENV}, {TOKEN_ENV})")
    return tuple(pairs)


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=SECURITY_HEADERS)


def _error(status: int, sentence: str) -> JSONResponse:
    return _json({"ok": False, "error": sentence}, status)


def build_app(
    surface: ObserverSurface, access: Access, *, allowed_origins: tuple[str, ...] = ()
) -> Starlette:
    """The ASGI app over `surface`; `allowed_origins`: origins besides the server's own that may control."""

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            who = access.who(request)
            if who is None:
                return _error(401, "a valid token is needed: send Authorization: Bearer <token>")
            return await handler(request, who)

        return endpoint

    def reader(method_name: str) -> Any:
        async def read(_request: Request, _who: str) -> Response:
            return _json(await run_in_threadpool(getattr(surface, method_name)))

        return guarded(read)

    async def control(request: Request, who: str) -> Response:
        origin = request.headers.get("origin")
        own = f"{request.url.scheme}://{request.url.netloc}"
        if origin is not None and origin != own and origin not in allowed_origins:
            return _error(403, f"control from another site ({origin[:80]}) is refused")
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            return _error(415, "control calls take a JSON body: send Content-Type: application/json")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return _error(413, f"the request body is over {MAX_BODY_BYTES // 1024} KiB")
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return _error(400, "the request body is not valid JSON")
        name = request.path_params["command"]
        try:
            answer = await run_in_threadpool(surface.command, name, body, who)
        except CommandError as error:
            return _error(error.status, error.sentence)
        return _json(answer)

    async def events(request: Request, _who: str) -> Response:
        async def stream() -> AsyncIterator[str]:
            seen = -1
            quiet_since = time.monotonic()
            yield "retry: 2000\n\n"
            while not getattr(surface, "stopped", False):
                if await request.is_disconnected():
                    return
                version, text = surface.stream_state()
                if version != seen and version > 0:
                    seen = version
                    quiet_since = time.monotonic()
                    yield f"event: update\nid: {version}\ndata: {text}\n\n"
                elif time.monotonic() - quiet_since > STREAM_KEEPALIVE_SECONDS:
                    quiet_since = time.monotonic()
                    yield ": keepalive\n\n"
                await asyncio.sleep(STREAM_POLL_SECONDS)

        headers = {**SECURITY_HEADERS, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    async def metrics(_request: Request, _who: str) -> Response:
        text = await run_in_threadpool(metrics_text, surface)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    def probe(method_name: str) -> Any:
        async def check(_request: Request) -> Response:
            ok, reasons = await run_in_threadpool(getattr(surface, method_name))
            return _json({"ok": ok, "reasons": reasons}, 200 if ok else 503)

        return check

    def static(name: str, media_type: str) -> Any:
        async def serve(_request: Request) -> Response:
            return FileResponse(STATIC / name, media_type=media_type, headers=SECURITY_HEADERS)

        return serve

    routes = [
        Route("/", static("index.html", "text/html; charset=utf-8")),
        Route("/static/app.js", static("app.js", "text/javascript; charset=utf-8")),
        Route("/static/style.css", static("style.css", "text/css; charset=utf-8")),
        Route("/healthz", probe("liveness")),
        Route("/readyz", probe("readiness")),
        Route("/metrics", guarded(metrics)),
        Route("/api/events", guarded(events)),
        Route("/api/control/{command}", guarded(control), methods=["POST"]),
    ]
    routes += [
        Route(f"/api/{name}", reader(name))
        for name in ("status", "slots", "candidates", "overflow", "alerts", "gaps", "health")
    ]
    return Starlette(routes=routes)


class HttpServer:
    """uvicorn serving `app` in a daemon thread; `start()` returns once it listens (with the real port)."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._host = host
        self._port = port
        self._thread = threading.Thread(target=self._server.run, name="http-server", daemon=True)

    def start(self, timeout: float = 10.0) -> HttpServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"cannot listen on {self._host}:{self._port} (in use, or not an address here)")
            time.sleep(0.02)
        return self

    @property
    def port(self) -> int:
        sockets = [s for server in self._server.servers for s in server.sockets]
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self.port}/"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5.0)
