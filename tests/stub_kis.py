"""A KIS-shaped loopback HTTP server for the answers the simulator does not produce (tests only)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

Answer = tuple[int, str, bytes, dict[str, str]]
"""(HTTP status, content type, body, extra headers)"""
StubHandler = Callable[[str, str, dict[str, str], dict[str, str], str], Answer]
"""(method, path, query, headers, body) -> Answer"""


class StubKis:
    """A loopback HTTP server answering every request through `handler`; keeps what it was sent."""

    def __init__(self, handler: StubHandler) -> None:
        self.requests: list[tuple[str, str, dict[str, str], dict[str, str], str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                sent = self.rfile.read(int(headers.get("content-length") or 0)).decode("utf-8", "replace")
                stub.requests.append((self.command, parts.path, query, headers, sent))
                status, ctype, body, extra = handler(self.command, parts.path, query, headers, sent)
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                for name, value in extra.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
