"""JSONL log of every trade record the WebSocket server sent, so a test can prove what an observer lost.

One line per record and per receiving session. Lines are buffered and written whole (one write per
flush), flushed at least every `flush_interval` seconds by the writer's own timer and on `close`, so
a reader never sees half a line from us. App keys never reach the file: sessions are named by a label
or a short hash of the key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path

from tools.kis_sim.market import Trade


def app_key_hash(app_key: str) -> str:
    """A stable, non-reversible name for an app key (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(app_key.encode()).hexdigest()[:16]


class SentLog:
    """Appends sent records to `path`; thread-safe; `close` flushes and stops the flush timer."""

    def __init__(self, path: Path, flush_interval: float = 0.5) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._pending: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._flush_interval = flush_interval
        self._thread = threading.Thread(target=self._flush_loop, name="kis-sim-sent-log", daemon=True)
        self._thread.start()

    def add(
        self, trades: list[Trade], key_hash: str, account: str | None = None, fault: str | None = None
    ) -> None:
        """Record that `trades` went to the session of the app key hashed `key_hash` (see `app_key_hash`).

        `fault` names the fault that mangled the frame carrying them ("malformed", "truncated").
        """
        tail = f',"app_key_hash":"{key_hash}"'
        if account is not None:
            tail += f',"account":{json.dumps(account)}'
        if fault is not None:
            tail += f',"fault":"{fault}"'
        tail += "}\n"
        lines = [
            f'{{"symbol":"{t.code}","exchange_time":"{t.time.isoformat()}","price":{t.price},'
            f'"volume":{t.volume},"cum_volume":{t.cum_volume}{tail}'
            for t in trades
        ]
        with self._lock:
            self._pending.extend(lines)

    def flush(self) -> None:
        with self._lock:
            if not self._pending or self._file.closed:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._file.write(text)
            self._file.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            self._file.close()

    def _flush_loop(self) -> None:
        while not self._stop.wait(self._flush_interval):
            self.flush()
