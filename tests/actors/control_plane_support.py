"""Shared pieces of the control-plane actor tests: simulator accounts, a real context, a recording actor."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from config.accounts import Account
from config.settings import Settings, TokenSettings
from kis.ratelimit import RateLimiterRegistry
from kis.token_vault import TokenVault
from runtime.clock import Clock
from runtime.metrics import Metrics
from runtime.paths import DataPaths

WAIT = 10.0


def sim_account(name: str = "acct1", *, paper: bool = False) -> Account:
    """An account with fresh random credentials (the simulator opens an account for any key)."""
    return Account(
        name=name,
        app_key=SecretStr(f"PS{uuid.uuid4().hex}{uuid.uuid4().hex[:2]}"),
        app_secret=SecretStr(uuid.uuid4().hex * 5),
        paper=paper,
    )


def make_context(
    tmp_path: Path,
    clock: Clock,
    *,
    rest_url: str | None,
    accounts: tuple[Account, ...] = (),
    settings: Settings | None = None,
    token_settings: TokenSettings | None = None,
) -> ObserverContext:
    """A real context: settings with `accounts`, a vault caching in tmp_path, data under tmp_path/data."""
    base = settings or Settings()
    cache = str(tmp_path / "tokens")
    tokens = token_settings or TokenSettings(min_issue_interval_seconds=0.05, cache_dir=cache)
    settings = base.model_copy(update={"accounts": accounts or base.accounts, "tokens": tokens})
    vault = TokenVault(
        settings.accounts,
        clock,
        tokens,
        rest_url=rest_url,
        rate_limits=settings.rate_limit,
        limiters=RateLimiterRegistry(),
    )
    return ObserverContext(
        settings=settings,
        clock=clock,
        metrics=Metrics(),
        paths=DataPaths(tmp_path / "data"),
        vault=vault,
        rest_url=rest_url,
    )


def wait_until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll `condition` on real time (Event.wait is not frozen by freezegun) until true or `timeout`."""
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        pause.wait(0.01)
    return condition()


class Journal:
    """What a recording actor was told, in order, readable from the test thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[Any] = []

    def add(self, message: Any) -> None:
        with self._lock:
            self._messages.append(message)

    def received(self, kind: type | tuple[type, ...] = object) -> list[Any]:
        with self._lock:
            return [message for message in self._messages if isinstance(message, kind)]


class RecordingActor(ObserverActor):
    """A real peer that keeps every message it is told in its journal (and answers asks with None)."""

    def __init__(self, name: str, directory: Directory, journal: Journal) -> None:
        super().__init__(name, directory)
        self.journal = journal

    def on_receive(self, message: Any) -> Any:
        self.journal.add(message)
        return None


def start_recorders(directory: Directory, *names: str) -> dict[str, Journal]:
    """Start a RecordingActor per name, registered in `directory`; returns their journals by name."""
    journals: dict[str, Journal] = {}
    for name in names:
        journals[name] = Journal()
        directory.register(name, RecordingActor.start(name, directory, journals[name]))
    return journals
