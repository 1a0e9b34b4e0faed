"""The audit file of control commands: who (token name or "local"), what, when, and the answer."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path
from typing import Any


class AuditLog:
    """Appends one JSON line per command to `<data-dir>/observer/system/audit.jsonl` (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, who: str, what: str, body: Any, *, ok: bool, answer: str, at: datetime) -> None:
        line = {"at": at.isoformat(), "who": who, "what": what, "request": body, "ok": ok, "answer": answer}
        text = json.dumps(line, ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as file:
                file.write(text)
