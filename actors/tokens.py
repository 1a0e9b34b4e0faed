"""TokenActor: keeps every account's access token and approval key alive through the day, and runs the
pre-market wake-up sequence.

The credentials themselves live in the process-wide vault (`kis.token_vault.TokenVault`), which the REST
clients read directly and which does the emergency refresh on a rejected token. This actor drives the
planned part of the lifecycle (seed "Token Refresh Policy Matrix"):

- start: make sure each account holds a valid token and approval key (from the disk cache if it can);
- `DayEventFired(TOKEN_CHECK)` (23:00) and every `DEFAULT_CHECK_INTERVAL_SECONDS` of clock time: renew a
  token or approval key older than `TokenSettings.proactive_refresh_hours` (the WebSocket keeps running;
  the new approval key is used at its next connect).

The wake-up sequence (seed "System Wake-up and Pre-Market Preparation", `core.wakeup` keeps the record),
one step per day event of the scheduler:

| event | step |
|---|---|
| WAKEUP | the sequence starts (logged) |
| WS_PRECONNECT | (the connection actors open their sessions) done once every key's session is open, |
|  | failed after `wakeup.preconnect_wait_seconds`; a retry tells the event again to those still closed |
| SYSTEM_WARMUP | every account's credentials held (cache or issued) and today's universe announced |
| HEALTH_CHECK | per account: a token, one REST quote answered, the WebSocket open (waited for as above) |
| TOKEN_REFRESH | renew token and approval key of every account not yet renewed today, each renewed |
|  | connection restarted (`CredentialsRenewed`); then the health check again (`health_after_refresh`) |
| READY | done when every step before is, or when what they check (sessions, tokens, REST, |
|  | universe) is well now; else failed, naming what is not |

A failed step is alerted once (`SystemAlert` key `wakeup.<step>`) and tried again every
`wakeup.retry_seconds` of clock time, at most `wakeup.max_retries` times. The record is saved (state
`wakeup`) and shown as the gauge `wakeup` (the status page and the terminal view); a start during the
sequence runs the steps it missed `wakeup.retry_seconds` later (a token issued after the refresh time
counts as refreshed). A
failed renewal never crashes the actor: the old token stays usable until it expires.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, cast

from pydantic import ValidationError

from actors.base import ObserverActor
from actors.context import CredentialVault, ObserverContext
from actors.directory import Directory
from actors.scheduler import tick_interval_seconds
from core.calendar import is_trading_day
from core.schedule import DayEvent
from core.wakeup import WakeupDay, WakeupStep, missed_at_start, passed_before_start, plan_day
from kis.errors import KisError
from kis.models import AccessToken, ApprovalKey
from kis.token_vault import VaultClosed
from messages.alerts import SystemAlert
from messages.market import UniverseReady
from messages.schedule import ClockTick, DayEventFired
from messages.streaming import ConnectionState, CredentialsRenewed
from messages.universe import CurrentUniverse
from runtime.ticker import Ticker

DEFAULT_CHECK_INTERVAL_SECONDS = 600.0
"""Simulated seconds between proactive checks (the seed checks every minute; 10 is plenty for a 23 h rule)."""
STATE_NAME = "wakeup"
PROBE_SYMBOL = "005930"
"""The REST health check's quote when no universe is known yet (Samsung Electronics, always listed)."""
STEP_EVENTS = {
    DayEvent.WAKEUP: WakeupStep.WAKE,
    DayEvent.WS_PRECONNECT: WakeupStep.WS_PRECONNECT,
    DayEvent.SYSTEM_WARMUP: WakeupStep.SYSTEM_WARMUP,
    DayEvent.HEALTH_CHECK: WakeupStep.HEALTH_CHECK,
    DayEvent.TOKEN_REFRESH: WakeupStep.TOKEN_REFRESH,
    DayEvent.READY: WakeupStep.READY,
}
WAITS_FOR_SESSIONS = frozenset({WakeupStep.WS_PRECONNECT, WakeupStep.HEALTH_CHECK,
                                WakeupStep.HEALTH_AFTER_REFRESH})


class RenewableVault(CredentialVault, Protocol):
    """What the TokenActor needs of the vault beyond what the other actors read (TokenVault has it)."""

    def ensure(self, account: str) -> None: ...

    def renew(self, account: str, reason: str) -> None: ...

    def renew_token(self, account: str, reason: str) -> AccessToken: ...

    def renew_approval_key(self, account: str) -> ApprovalKey: ...

    def token_age(self, account: str) -> timedelta | None: ...

    def approval_age(self, account: str) -> timedelta | None: ...


class TokenActor(ObserverActor):
    """Child id `tokens`. Handles DayEventFired (the wake-up steps, TOKEN_CHECK) and ClockTick (retries,
    waits and the proactive check)."""

    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        check_interval_seconds: float = DEFAULT_CHECK_INTERVAL_SECONDS,
        tick_seconds: float | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self.vault = cast(RenewableVault, context.vault)
        self.check_interval = timedelta(seconds=check_interval_seconds)
        self.max_age = timedelta(hours=context.settings.tokens.proactive_refresh_hours)
        self.tick_seconds = tick_seconds or tick_interval_seconds(context.clock.speed)
        self._settings = context.settings.wakeup
        self._store = context.state_store()
        self._last_check: datetime | None = None
        self._day: WakeupDay | None = None
        self._waiting: dict[WakeupStep, datetime] = {}
        self._refreshed: set[str] = set()
        self._probe = PROBE_SYMBOL
        self._ticker: Ticker | None = None

    def on_start(self) -> None:
        for account in self._accounts():
            self._attempt(account, "start", lambda a: self.vault.ensure(a))
            self._report_age(account)
        now = self.context.clock.now()
        self._last_check = now
        self._load_day(now)
        self._run_missed(now)
        if self.context.clock.speed > 0:
            tick = lambda: ClockTick(at=self.context.clock.now())  # noqa: E731
            self._ticker = Ticker(self.actor_ref, tick, self.tick_seconds, name=f"{self.name}-ticker").start()

    def on_stop(self) -> None:
        if self._ticker is not None:
            self._ticker.stop()

    def on_receive(self, message: Any) -> Any:
        match message:
            case DayEventFired(event=DayEvent.TOKEN_CHECK):
                return self._proactive_check(self.context.clock.now())
            case DayEventFired(event=event) if event in STEP_EVENTS:
                return self._on_step_event(STEP_EVENTS[event])
            case ClockTick():
                now = self.context.clock.now()
                self._follow_up(now)
                if self._last_check is None or now - self._last_check >= self.check_interval:
                    return self._proactive_check(now)
        return None

    # --- the wake-up sequence ----------------------------------------------------------------------

    def _on_step_event(self, step: WakeupStep) -> tuple[str, ...] | None:
        """Run `step` if today's record still has it pending (a replayed event finds it done)."""
        now = self.context.clock.now()
        day = self._today(now)
        if day is None or day.record(step).attempts > 0:
            return None
        return self._run(step, now)

    def _run(self, step: WakeupStep, now: datetime) -> tuple[str, ...] | None:
        self.log.info("wake-up step {} (attempt {})", step.value, self._record_attempts(step) + 1)
        match step:
            case WakeupStep.WAKE:
                self._finish(step, now, True, f"the pre-market sequence starts; open at "
                             f"{self.context.settings.schedule.track_a_start:%H:%M}")
            case WakeupStep.WS_PRECONNECT:
                self._wait_for_sessions(step, now)
            case WakeupStep.SYSTEM_WARMUP:
                self._warm_up(now)
            case WakeupStep.HEALTH_CHECK | WakeupStep.HEALTH_AFTER_REFRESH:
                self._wait_for_sessions(step, now)
            case WakeupStep.TOKEN_REFRESH:
                return self._pre_market_refresh(now)
            case WakeupStep.READY:
                self._ready(now)
        return None

    def _ready(self, now: datetime) -> None:
        """Every step done: ready. Otherwise what they check is checked once more, so a step that failed
        early (a slow start) but whose cause has gone does not keep the system from being ready."""
        assert self._day is not None
        missing = ", ".join(step.value for step in self._day.unfinished())
        if not missing:
            self._finish(WakeupStep.READY, now, True, "ready for the open")
            return
        problems = [f"{account}: WebSocket {state}" for account, state in self._closed_sessions()]
        problems += self._health_problems()
        if (universe := self._universe_problem(now)) is not None:
            problems.append(universe)
        detail = (f"not ready: {'; '.join(problems)}" if problems
                  else f"ready for the open (failed earlier, well now: {missing})")
        self._finish(WakeupStep.READY, now, not problems, detail)

    def _wait_for_sessions(self, step: WakeupStep, now: datetime) -> None:
        """Pre-connect and health checks wait up to `preconnect_wait_seconds` for every session to open."""
        self._waiting[step] = now + timedelta(seconds=self._settings.preconnect_wait_seconds)
        self._check_waiting(step, now)

    def _check_waiting(self, step: WakeupStep, now: datetime) -> None:
        closed = self._closed_sessions()
        problems = [f"{account}: WebSocket {state}" for account, state in closed]
        if step is not WakeupStep.WS_PRECONNECT and (not closed or now >= self._waiting[step]):
            problems = self._health_problems() + problems
        elif closed and now < self._waiting[step]:
            return
        del self._waiting[step]
        if step is WakeupStep.WS_PRECONNECT:
            detail = "every session open" if not problems else "; ".join(problems)
        else:
            detail = "healthy: tokens, REST and every WebSocket" if not problems else "; ".join(problems)
        self._finish(step, now, not problems, detail)

    def _closed_sessions(self) -> list[tuple[str, str]]:
        snapshot = self.context.metrics.snapshot()
        states = {account: str(snapshot.get(f"ws_state.{account}", "not started"))
                  for account in self._accounts()}
        return [(account, state) for account, state in states.items() if state != ConnectionState.CONNECTED]

    def _health_problems(self) -> list[str]:
        """The seed's checks per account: a valid token, the REST API answering one quote."""
        problems = []
        for account in self._accounts():
            age = self.vault.token_age(account)
            if age is None or age >= timedelta(hours=24):
                problems.append(f"{account}: no valid token")
                continue
            try:
                with self.context.rest_client(account) as client:
                    client.quote(self._probe)
            except (KisError, VaultClosed) as error:
                problems.append(f"{account}: REST quote failed ({error})")
        return problems

    def _warm_up(self, now: datetime) -> None:
        """Credentials held for every account (issued only when missing) and today's universe announced."""
        problems = [f"{account}: credentials missing" for account in self._accounts()
                    if not self._attempt(account, "warm-up", lambda a: self.vault.ensure(a), alert=False)]
        if (universe := self._universe_problem(now)) is not None:
            problems.append(universe)
        self._finish(WakeupStep.SYSTEM_WARMUP, now, not problems,
                     "; ".join(problems) or "credentials held, universe loaded")

    def _universe_problem(self, now: datetime) -> str | None:
        """None when today's universe is announced (its first symbol becomes the REST probe)."""
        ready = self.directory.ask("universe", CurrentUniverse(at=now), timeout=2.0)
        if isinstance(ready, UniverseReady) and ready.day == now.date() and ready.profiles:
            self._probe = ready.profiles[0].symbol
            return None
        return "today's universe is not built yet"

    def _pre_market_refresh(self, now: datetime) -> tuple[str, ...]:
        """Renew the token and approval key of every account not renewed yet today; each renewed account's
        connection restarts. The health check follows once all are renewed."""
        renewed = []
        for account in self._accounts():
            if account in self._refreshed:
                continue
            if self._attempt(account, "pre-market refresh", lambda a: self.vault.renew(a, "pre-market"),
                             alert=False):
                renewed.append(account)
                self._refreshed.add(account)
                self.context.metrics.inc("token_renewals")
                renewal = CredentialsRenewed(at=self.context.clock.now(), account=account)
                self.directory.tell(f"ws.{account}", renewal)
            self._report_age(account)
        failed = [account for account in self._accounts() if account not in self._refreshed]
        self.log.info("pre-market refresh renewed {} of {} accounts", len(renewed), len(self._accounts()))
        detail = (f"renewal failed for {', '.join(failed)}" if failed
                  else "every token and approval key renewed")
        self._finish(WakeupStep.TOKEN_REFRESH, now, not failed, detail)
        if not failed:
            self._run(WakeupStep.HEALTH_AFTER_REFRESH, now)
        return tuple(renewed)

    def _finish(self, step: WakeupStep, now: datetime, ok: bool, detail: str) -> None:
        if self._day is None:
            return
        self._day, outcome = self._day.with_result(step, now, ok, detail, self._settings)
        attempts = self._day.record(step).attempts
        if ok:
            self.log.info("wake-up step {} done: {}", step.value, detail)
        elif outcome.gave_up:
            self.log.error("wake-up step {} failed after {} attempts: {}", step.value, attempts, detail)
        else:
            assert outcome.retry_at is not None
            self.log.warning("wake-up step {} failed: {}; trying again at {:%H:%M:%S}", step.value, detail,
                             outcome.retry_at)
        if outcome.alert:
            tries = "given up" if outcome.gave_up else f"tried again up to {self._settings.max_retries} times"
            text = f"wake-up step {step.value} failed: {detail} ({tries})"
            self.directory.tell("notifier", SystemAlert(at=now, key=f"wakeup.{step.value}", text=text))
        self._publish()

    def _follow_up(self, now: datetime) -> None:
        """Sessions waited for, and the retries that are due."""
        for step in list(self._waiting):
            self._check_waiting(step, now)
        day = self._today(now)
        if day is None:
            return
        for step in day.retries_due(now):
            if step in self._waiting:
                continue
            if step is WakeupStep.WS_PRECONNECT:
                for account, _ in self._closed_sessions():
                    self.directory.tell(f"ws.{account}", DayEventFired(at=now, event=DayEvent.WS_PRECONNECT))
            if step is WakeupStep.TOKEN_REFRESH and day.record(step).attempts == 0:
                self._refreshed.update(self._issued_since(day.record(step).due_at, now))
            self._run(step, now)

    def _issued_since(self, moment: datetime, now: datetime) -> list[str]:
        """Accounts whose token was issued at or after `moment` (a start after the refresh time)."""
        return [account for account in self._accounts()
                if (age := self.vault.token_age(account)) is not None and now - age >= moment]

    def _run_missed(self, now: datetime) -> None:
        """A start during the sequence: the steps already due run `retry_seconds` later, once the other
        actors are up (a token issued since the refresh time then counts as refreshed)."""
        day = self._today(now)
        if day is None:
            return
        passed = passed_before_start(day, now)
        missed = missed_at_start(day, now)
        if passed:
            self._day = day.skipped(passed, f"not run: started at {now:%H:%M}, after the wake-up sequence")
        elif missed:
            later = now + timedelta(seconds=self._settings.retry_seconds)
            self._day = day.deferred(missed, later)
            self.log.info("started during the wake-up sequence: {} at {:%H:%M:%S}",
                          ", ".join(step.value for step in missed), later)
        self._publish()

    def _today(self, now: datetime, *, publish: bool = True) -> WakeupDay | None:
        """Today's record (a new one on a new trading day); None on a day without a market."""
        if not is_trading_day(now.date()):
            return None
        if self._day is None or self._day.day != now.date():
            self._day = plan_day(now.date(), self.context.settings.schedule)
            self._waiting.clear()
            self._refreshed.clear()
            if publish:
                self._publish()
        return self._day

    def _record_attempts(self, step: WakeupStep) -> int:
        return self._day.record(step).attempts if self._day is not None else 0

    def _publish(self) -> None:
        if self._day is None:
            return
        self.context.metrics.set("wakeup", self._day.status())
        try:
            state = self._day.model_dump(mode="json")
            state["refreshed"] = sorted(self._refreshed)
            self._store.save(STATE_NAME, state)
        except OSError as error:
            self.log.error("could not save state {}: {}", STATE_NAME, error)

    def _load_day(self, now: datetime) -> None:
        saved = self._store.load(STATE_NAME)
        if not saved or saved.get("day") != now.date().isoformat():
            self._today(now, publish=False)  # published once the start has looked at what it missed
            return
        refreshed = saved.pop("refreshed", [])
        try:
            self._day = WakeupDay.model_validate(saved)
        except ValidationError:
            self.log.warning("state {} is not a wake-up record; starting today's afresh", STATE_NAME)
            self._day = None
            self._today(now, publish=False)
            return
        self._refreshed = {str(account) for account in refreshed}

    # --- tokens ---------------------------------------------------------------------------------------

    def _proactive_check(self, now: datetime) -> tuple[str, ...]:
        """Renew what has reached the proactive age (or is missing); the WebSocket keeps its session."""
        self._last_check = now
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

    def _attempt(
        self, account: str, what: str, action: Callable[[str], object], *, alert: bool = True
    ) -> bool:
        """Run `action`; a failure is logged and, unless the wake-up sequence alerts for it, alerted."""
        try:
            action(account)
        except (KisError, VaultClosed) as error:
            self.log.error("{}: {} failed: {}", account, what, error)
            if alert:
                self.directory.tell("notifier", SystemAlert(
                    at=self.context.clock.now(), key=f"tokens.{account}",
                    text=f"{account}: token {what} failed ({error}); the current token is kept until it "
                         "expires",
                ))
            return False
        return True

    def _report_age(self, account: str) -> None:
        age = self.vault.token_age(account)
        if age is not None:
            self.context.metrics.set(f"token_age_hours.{account}", round(age.total_seconds() / 3600, 2))

    def _accounts(self) -> tuple[str, ...]:
        return tuple(account.name for account in self.context.accounts)
