"""A local chat server that speaks the Telegram Bot API `sendMessage` and a Discord webhook.

It records every message it accepts, so tests and demos can see exactly which alerts went out:

    sink = ChatSink().start()
    settings = NotifierSettings(telegram_bot_token=SecretStr("123:abc"), telegram_chat_id="42",
                                telegram_api_base=sink.telegram_base,
                                discord_webhook_url=SecretStr(sink.discord_url))
    ...
    sink.wait_for(2, timeout=5)
    sink.messages  # (ChatMessage(channel="telegram", ...), ChatMessage(channel="discord", ...))
    sink.fail_next(2, status=429, retry_after=1)  # the next two requests answer 429
    sink.stop()

Standalone: `python -m tools.chat_sink --port 8081` prints each received message (never the bot token).
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

TELEGRAM_PATH = re.compile(r"^/bot(?P<token>[^/]+)/sendMessage/?$")
DISCORD_PATH = re.compile(r"^/api/webhooks/(?P<id>[^/]+)/(?P<token>[^/?]+)/?(?:\?.*)?$")
DISCORD_WEBHOOK_ID = "1000000000000000001"
DISCORD_WEBHOOK_TOKEN = "chat-sink-webhook-token"
MAX_BODY_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One accepted message. `token` is the bot token or webhook token it was sent with (kept out of repr)."""

    channel: str  # "telegram" or "discord"
    chat_id: str | None
    text: str
    received_mono: float
    token: str = ""

    def __repr__(self) -> str:
        return f"ChatMessage({self.channel}, chat_id={self.chat_id!r}, text={self.text!r})"


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    retry_after: float


class ChatSink:
    """The server: loopback only, a port picked by the OS unless given, one thread per request."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 on_message: Callable[[ChatMessage], None] | None = None) -> None:
        self._host = host
        self._port = port
        self._on_message = on_message
        self._changed = threading.Condition()
        self._messages: list[ChatMessage] = []
        self._failures: list[_Failure] = []
        self._requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life -------------------------------------------------------------------------------------

    def start(self) -> ChatSink:
        if self._server is not None:
            raise RuntimeError("ChatSink already started")
        server = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="chat-sink", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ChatSink:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    # --- addresses ----------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("ChatSink is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def telegram_base(self) -> str:
        """What `TELEGRAM_API_BASE` should be: requests go to `{base}/bot{token}/sendMessage`."""
        return self.base_url

    @property
    def discord_url(self) -> str:
        """A Discord webhook URL served by this sink."""
        return f"{self.base_url}/api/webhooks/{DISCORD_WEBHOOK_ID}/{DISCORD_WEBHOOK_TOKEN}"

    # --- what arrived -------------------------------------------------------------------------------

    @property
    def messages(self) -> tuple[ChatMessage, ...]:
        with self._changed:
            return tuple(self._messages)

    @property
    def request_count(self) -> int:
        """Every request received, answered with success or with an injected failure."""
        with self._changed:
            return self._requests

    def texts(self, channel: str | None = None) -> list[str]:
        return [m.text for m in self.messages if channel is None or m.channel == channel]

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until at least `count` messages were accepted (True) or `timeout` seconds pass (False)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self._messages) >= count, timeout=timeout)

    def wait_for_requests(self, count: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._requests >= count, timeout=timeout)

    # --- fault injection ----------------------------------------------------------------------------

    def fail_next(self, count: int, status: int = 429, retry_after: float = 1.0) -> None:
        """Answer the next `count` requests with `status`; a 429 carries `retry_after` as each API does."""
        if count < 0 or status < 400:
            raise ValueError("fail_next needs count >= 0 and an error status (>= 400)")
        with self._changed:
            self._failures.extend(_Failure(status, retry_after) for _ in range(count))

    # --- server side --------------------------------------------------------------------------------

    def _take_failure(self) -> _Failure | None:
        with self._changed:
            self._requests += 1
            self._changed.notify_all()
            return self._failures.pop(0) if self._failures else None

    def _record(self, message: ChatMessage) -> int:
        with self._changed:
            self._messages.append(message)
            number = len(self._messages)
            self._changed.notify_all()
        if self._on_message is not None:
            self._on_message(message)
        return number


def _handler_for(sink: ChatSink) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ChatSink/1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the request line holds the bot token."""

        def do_POST(self) -> None:
            telegram = TELEGRAM_PATH.match(self.path)
            discord = DISCORD_PATH.match(self.path)
            if telegram is None and discord is None:
                self._reply(HTTPStatus.NOT_FOUND, {"ok": False, "error_code": 404,
                                                   "description": "Not Found"})
                return
            body = self._body()
            failure = sink._take_failure()
            if telegram is not None:
                self._telegram(telegram["token"], body, failure)
            else:
                assert discord is not None
                self._discord(discord["token"], body, failure)

        def _body(self) -> dict[str, Any]:
            length = min(int(self.headers.get("Content-Length") or 0), MAX_BODY_BYTES)
            raw = self.rfile.read(length) if length else b""
            kind = self.headers.get("Content-Type", "")
            try:
                if "application/json" in kind:
                    data = json.loads(raw or b"{}")
                    return data if isinstance(data, dict) else {}
                return {key: values[-1] for key, values in parse_qs(raw.decode("utf-8")).items()}
            except (ValueError, UnicodeDecodeError):
                return {}

        def _telegram(self, token: str, body: dict[str, Any], failure: _Failure | None) -> None:
            if failure is not None:
                answer: dict[str, Any] = {"ok": False, "error_code": failure.status}
                if failure.status == HTTPStatus.TOO_MANY_REQUESTS:
                    seconds = max(0, round(failure.retry_after))
                    answer["description"] = f"Too Many Requests: retry after {seconds}"
                    answer["parameters"] = {"retry_after": seconds}
                else:
                    answer["description"] = "Internal Server Error"
                self._reply(failure.status, answer)
                return
            text = body.get("text")
            chat_id = body.get("chat_id")
            if not isinstance(text, str) or not text or chat_id in (None, ""):
                self._reply(HTTPStatus.BAD_REQUEST, {"ok": False, "error_code": 400,
                                                     "description": "Bad Request: chat_id and text required"})
                return
            number = sink._record(ChatMessage("telegram", str(chat_id), text, time.monotonic(), token))
            self._reply(HTTPStatus.OK, {"ok": True, "result": {
                "message_id": number, "chat": {"id": chat_id}, "date": int(time.time()), "text": text}})

        def _discord(self, token: str, body: dict[str, Any], failure: _Failure | None) -> None:
            if failure is not None:
                if failure.status == HTTPStatus.TOO_MANY_REQUESTS:
                    self._reply(failure.status, {"message": "You are being rate limited.",
                                                 "retry_after": failure.retry_after, "global": False},
                                {"Retry-After": f"{failure.retry_after:g}"})
                else:
                    self._reply(failure.status, {"message": "Internal Server Error", "code": 0})
                return
            text = body.get("content")
            if not isinstance(text, str) or not text:
                self._reply(HTTPStatus.BAD_REQUEST, {"message": "Cannot send an empty message",
                                                     "code": 50006})
                return
            sink._record(ChatMessage("discord", None, text, time.monotonic(), token))
            self.send_response(HTTPStatus.NO_CONTENT)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _reply(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chat_sink",
        description="Local Telegram Bot API (sendMessage) and Discord webhook server; prints what it gets.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port (default 8081; 0 picks a free one)")
    args = parser.parse_args(argv)

    def show(message: ChatMessage) -> None:
        where = f"telegram chat {message.chat_id}" if message.channel == "telegram" else "discord"
        print(f"{where}: {message.text}", flush=True)

    sink = ChatSink(args.host, args.port, on_message=show).start()
    print(f"chat sink listening: TELEGRAM_API_BASE={sink.telegram_base} "
          f"DISCORD_WEBHOOK_URL={sink.discord_url}", flush=True)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        stopping.wait()
    except KeyboardInterrupt:
        pass
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
