"""What every actor is handed at start: settings, the clock, counters, paths, and access to KIS.

These objects outlive any actor incarnation, so a restarted actor finds the same clock, counters and
credentials its predecessor used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import SecretStr

from config.accounts import Account
from config.settings import Settings
from kis.rest import KisRestClient, TokenSource
from runtime.clock import Clock
from runtime.disk import free_bytes
from runtime.metrics import Metrics
from runtime.paths import DataPaths
from runtime.quotes import QuoteBoard
from runtime.state_store import StateReplica, StateStore
from spine.publisher import NoSpine, Spine


class CredentialVault(Protocol):
    """Tokens and approval keys per account, shared by every caller of that account in the process."""

    def token_source(self, account: str) -> TokenSource: ...

    def approval_key(self, account: str) -> SecretStr: ...


@dataclass(frozen=True)
class ObserverContext:
    """Shared, long-lived services. `rest_url`/`ws_url` None means the real KIS servers of each account;
    `spine` is where actors publish what they have made durable (nothing without NATS); `free_bytes` reads
    the free disk under a path from the OS (a test hands in its own reading)."""

    settings: Settings
    clock: Clock
    metrics: Metrics
    paths: DataPaths
    vault: CredentialVault
    rest_url: str | None = None
    ws_url: str | None = None
    quotes: QuoteBoard = field(default_factory=QuoteBoard)
    spine: Spine = field(default_factory=NoSpine)
    free_bytes: Callable[[Path], int] = free_bytes
    state_replica: StateReplica | None = None
    """The control process's copy of its saved state in the spine's key-value store (`spine.kv`)."""

    @property
    def accounts(self) -> tuple[Account, ...]:
        return self.settings.accounts

    def account(self, name: str) -> Account:
        for account in self.settings.accounts:
            if account.name == name:
                return account
        raise KeyError(f"no account named {name!r}")

    def state_store(self) -> StateStore:
        """The process's state documents (`observer/state/`), written through to `state_replica` if any."""
        return StateStore(self.paths.state_dir, replica=self.state_replica)

    def rest_client(self, account: str) -> KisRestClient:
        """A new client for `account`; the per-key rate limiter and the token source are shared."""
        return KisRestClient(
            self.account(account),
            base_url=self.rest_url,
            tokens=self.vault.token_source(account),
            clock=self.clock,
            rate_limits=self.settings.rate_limit,
        )
