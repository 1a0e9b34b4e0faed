"""TokenActor: keeps every account's access token and approval key alive through the day.

The credentials themselves live in the process-wide vault (`kis.token_vault.TokenVault`), which the REST
clients read directly and which does the emergency refresh on a rejected token. This actor drives the
planned part of the lifecycle (seed "Token Refresh Policy Matrix"):

- start: make sure each account holds a valid token and approval key (from the disk cache if it can);
- `DayEventFired(TOKEN_REFRESH)` (08:30, pre-market): renew both, then tell `ws.<account>`
  `CredentialsRenewed` so its connection restarts with the new approval key, slots preserved;
- `DayEventFired(TOKEN_CHECK)` (23:00) and its own periodic `ClockTick`: renew a token or approval key
  older than `TokenSettings.proactive_refresh_hours` (the WebSocket keeps running; the new approval key is
  used at its next connect).

A failed renewal is logged and alerted (`SystemAlert` to the notifier) but never crashes the actor: the
old token stays usable until it expires, and the next check tries again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any, Protocol, cast

from actors.base import ObserverActor
from actors.context import CredentialVault, ObserverContext
from actors.directory import Directory
from core.schedule import DayEvent
from kis.errors import KisError
from kis.models import AccessToken, ApprovalKey
from kis.token_vault import VaultClosed
from messages.alerts import SystemAlert
from messages.schedule import ClockTick, DayEventFired
from messages.streaming import CredentialsRenewed
from runtime.ticker import Ticker

DEFAULT_CHECK_INTERVAL_SECONDS = 600.0
"""Simulated seconds between proactive checks (the seed checks every minute; 10 is plenty for a 23 h rule)."""
MIN_TICK_SECONDS = 1.0


class RenewableVault(CredentialVault, Protocol):
    """What the TokenActor needs of the vault beyond what the other actors read (TokenVault has it)."""

    def ensure(self, account: str) -> None: ...

    def renew(self, account: str, reason: str) -> None: ...

    def renew_token(self, account: str, reason: str) -> AccessToken: ...

    def renew_approval_key(self, account: str) -> ApprovalKey: ...

    def token_age(self, account: str) -> timedelta | None: ...

    def approval_age(self, account: str) -> timedelta | None: ...


class TokenActor(ObserverActor):
    """Child id `tokens`. Handles DayEventFired (TOKEN_REFRESH, TOKEN_CHECK) and ClockTick (its own check)."""

    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        check_interval_seconds: float = DEFAULT_CHECK_INTERVAL_SECONDS,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self.vault = cast(RenewableVault, context.vault)
        self.check_interval_seconds = check_interval_seconds
        self.max_age = timedelta(hours=context.settings.tokens.proactive_refresh_hours)
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        for account in self._accounts():
            self._attempt(account, "start", lambda a: self.vault.ensure(a))
            self._report_age(account)
        speed = self.context.clock.speed
        if speed > 0:
            interval = max(MIN_TICK_SECONDS, self.check_interval_seconds / speed)
            tick = lambda: ClockTick(at=self.context.clock.now())  # noqa: E731
            self._ticker = Ticker(self.actor_ref, tick, interval, name=f"{self.name}-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def on_receive(self, message: Any) -> Any:
        if isinstance(message, DayEventFired):
            if message.event == DayEvent.TOKEN_REFRESH:
                return self._pre_market_refresh()
            if message.event == DayEvent.TOKEN_CHECK:
                return self._proactive_check()
        elif isinstance(message, ClockTick):
            return self._proactive_check()
        return None

    def _pre_market_refresh(self) -> tuple[str, ...]:
        """Renew every account's token and approval key; each renewed account's connection restarts."""
        renewed = []
        for account in self._accounts():
            if self._attempt(account, "pre-market refresh", lambda a: self.vault.renew(a, "pre-market")):
                renewed.append(account)
                self.context.metrics.inc("token_renewals")
                renewal = CredentialsRenewed(at=self.context.clock.now(), account=account)
                self.directory.tell(f"ws.{account}", renewal)
            self._report_age(account)
        self.log.info("pre-market refresh renewed {} of {} accounts", len(renewed), len(self._accounts()))
        return tuple(renewed)

    def _proactive_check(self) -> tuple[str, ...]:
        """Renew what has reached the proactive age (or is missing); the WebSocket keeps its session."""
        renewed = []
        for account in self._accounts():
            age = self.vault.token_age(account)
            if age is None or age >= self.max_age:
                why = "none held" if age is None else f"{age.total_seconds() / 3600:.1f} h old"
                renew = partial(self.vault.renew_token, reason=why)
                if self._attempt(account, "proactive refresh", renew):
                    renewed.append(account)
                    self.context.metrics.inc("token_renewals")
            approval_age = self.vault.approval_age(account)
            if approval_age is None or approval_age >= self.max_age:
                self._attempt(account, "approval key renewal", lambda a: self.vault.renew_approval_key(a))
            self._report_age(account)
        return tuple(renewed)

    def _attempt(self, account: str, what: str, action: Callable[[str], object]) -> bool:
        try:
            action(account)
        except (KisError, VaultClosed) as error:
            self.log.error("{}: {} failed: {}", account, what, error)
            alert = SystemAlert(
                at=self.context.clock.now(),
                key=f"tokens.{account}",
                text=f"{account}: token {what} failed ({error}); the current token is kept until it expires",
            )
            self.directory.tell("notifier", alert)
            return False
        return True

    def _report_age(self, account: str) -> None:
        age = self.vault.token_age(account)
        if age is not None:
            self.context.metrics.set(f"token_age_hours.{account}", round(age.total_seconds() / 3600, 2))

    def _accounts(self) -> tuple[str, ...]:
        return tuple(account.name for account in self.context.accounts)
