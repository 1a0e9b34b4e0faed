"""One plain KIS WebSocket connection: send registrations, decode every message on a receive thread.

No reconnect policy lives here (the connection actor owns it): the session reports each decoded value and,
once, how it ended. It answers PINGPONG itself, because KIS drops a session that does not echo it.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

import websocket
from loguru import logger
from pydantic import SecretStr

from kis.protocol import WS_PATH
from kis.ticks import Ack, Decoded, NoticeKeys, PingPong
from kis.ws_codec import decode, subscribe_message, unsubscribe_message


class KisWebSocketError(ConnectionError):
    """The session could not connect or send; the message names no secret."""


@dataclass(frozen=True, slots=True)
class SessionClosed:
    """How the receive loop ended; `requested` is True when `close()` asked for it."""

    reason: str
    requested: bool


class KisWebSocketSession:
    """Connect with `connect()`, then `subscribe`/`unsubscribe` from any thread; `close()` from any thread.

    `on_message` gets one decoded value per received message (FrameError values included) on the receive
    thread; `on_drained`, when given, is called after a message when the socket holds no more bytes (a
    burst ends: a caller may hand the burst on in one piece); `on_closed` gets one SessionClosed when the
    loop ends. A callback that raises is logged and the loop goes on. Frames are read with websocket-client's
    `recv_data`, which joins fragments and answers pings.
    """

    def __init__(
        self,
        ws_url: str,
        approval_key: SecretStr,
        on_message: Callable[[Decoded], None],
        on_closed: Callable[[SessionClosed], None] | None = None,
        on_drained: Callable[[], None] | None = None,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float | None = None,
        name: str = "kis-ws",
    ) -> None:
        self.url = ws_url.rstrip("/") + WS_PATH
        self._approval_key = approval_key
        self._on_message = on_message
        self._on_closed = on_closed
        self._on_drained = on_drained
        self._connect_timeout = connect_timeout
        self._idle_timeout = idle_timeout
        self._name = name
        self._ws: websocket.WebSocket | None = None
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._ended = threading.Event()
        self._notice_keys: dict[str, NoticeKeys] = {}

    @property
    def is_open(self) -> bool:
        return self._ws is not None and not self._ended.is_set()

    def connect(self) -> None:
        if self._ws is not None:
            raise KisWebSocketError("this session was already connected once; make a new one")
        try:
            ws = websocket.create_connection(
                self.url, timeout=self._connect_timeout, skip_utf8_validation=True, enable_multithread=True,
            )
        except (OSError, websocket.WebSocketException) as exc:
            raise KisWebSocketError(f"cannot open {self.url}: {type(exc).__name__}: {exc}") from None
        ws.settimeout(self._idle_timeout)
        self._ws = ws
        self._thread = threading.Thread(target=self._receive_loop, name=self._name, daemon=True)
        self._thread.start()

    def subscribe(self, tr_id: str, tr_key: str) -> None:
        self._send(subscribe_message(self._approval_key, tr_id, tr_key), f"subscribe {tr_id} {tr_key}")

    def unsubscribe(self, tr_id: str, tr_key: str) -> None:
        self._send(unsubscribe_message(self._approval_key, tr_id, tr_key), f"unsubscribe {tr_id} {tr_key}")

    def close(self, timeout: float = 2.0) -> None:
        """Send a close frame and wait for the receive loop to end; cut the socket if the server is slow."""
        ws, thread = self._ws, self._thread
        if ws is None or thread is None or self._closing.is_set():
            return
        self._closing.set()
        with contextlib.suppress(OSError, websocket.WebSocketException):  # already broken: cut below
            ws.send_close()
        if thread is threading.current_thread():
            return  # called from a callback: the loop ends on the server's close answer
        if not self._ended.wait(timeout):
            self._cut(ws)
            self._ended.wait(timeout)

    def _send(self, text: str, what: str) -> None:
        ws = self._ws
        if ws is None or self._ended.is_set() or self._closing.is_set():
            raise KisWebSocketError(f"cannot {what}: the session is not open")
        try:
            ws.send(text)
        except (OSError, websocket.WebSocketException) as exc:
            raise KisWebSocketError(f"cannot {what}: {type(exc).__name__}: {exc}") from None

    def _receive_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        reason = "connection ended"
        try:
            while True:
                try:
                    opcode, data = ws.recv_data()
                except websocket.WebSocketTimeoutException:
                    reason = f"no message for {self._idle_timeout} s"
                    break
                except (OSError, websocket.WebSocketException) as exc:
                    reason = "connection closed" if self._closing.is_set() else f"{type(exc).__name__}: {exc}"
                    break
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    reason = "closed on request" if self._closing.is_set() else _close_reason(data)
                    break
                self._handle(data)
                if self._on_drained is not None and not _bytes_waiting(ws):
                    self._report_drained()
        finally:
            self._cut(ws)
            ws.shutdown()
            self._ended.set()
            self._report_closed(SessionClosed(reason, self._closing.is_set()))

    def _handle(self, data: bytes) -> None:
        value = decode(data, self._keys_for(data) if data[:2] == b"1|" else None)
        if isinstance(value, PingPong) and not self._closing.is_set():
            try:
                self._send(value.raw, "echo PINGPONG")
            except KisWebSocketError as exc:
                logger.warning("{}: {}", self._name, exc)
        elif isinstance(value, Ack) and value.ok and value.keys is not None:
            self._notice_keys[value.tr_id] = value.keys
        try:
            self._on_message(value)
        except Exception:
            logger.exception("{}: on_message callback failed; the receive loop goes on", self._name)

    def _keys_for(self, data: bytes) -> NoticeKeys | None:
        """The key/iv of the encrypted frame's TR, from that TR's subscribe ack."""
        parts = data.split(b"|", 2)
        return self._notice_keys.get(parts[1].decode("ascii", "replace")) if len(parts) == 3 else None

    def _report_drained(self) -> None:
        if self._on_drained is None:
            return
        try:
            self._on_drained()
        except Exception:
            logger.exception("{}: on_drained callback failed; the receive loop goes on", self._name)

    def _report_closed(self, closed: SessionClosed) -> None:
        if self._on_closed is None:
            return
        try:
            self._on_closed(closed)
        except Exception:
            logger.exception("{}: on_closed callback failed", self._name)

    @staticmethod
    def _cut(ws: websocket.WebSocket) -> None:
        """Wake a blocked recv at once (websocket-client's `abort` skips sockets already marked closing)."""
        sock = ws.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _bytes_waiting(ws: websocket.WebSocket) -> bool:
    """Whether the connection holds received bytes not read yet (websocket-client reads each frame exactly,
    so what is left sits in the socket, or in TLS's buffer)."""
    sock = ws.sock
    if sock is None:
        return False
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return bool(readable)


def _close_reason(data: bytes) -> str:
    if len(data) >= 2:
        code = struct.unpack("!H", data[:2])[0]
        text = data[2:].decode("utf-8", "replace")
        return f"closed by server (code {code}{': ' + text if text else ''})"
    return "closed by server"
