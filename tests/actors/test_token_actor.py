"""TokenActor against the simulator: start, the 08:30 refresh via the scheduler, 23 h proactive renewal."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from actors.directory import Directory
from actors.scheduler import SchedulerActor
from actors.tokens import TokenActor
from actors.ws_connection import WSConnectionActor
from config.settings import RateLimitSettings, Settings
from core.schedule import DayEvent
from kis.token_vault import TokenVault
from messages.alerts import SystemAlert
from messages.schedule import ClockTick, DayEventFired
from messages.streaming import CredentialsRenewed
from messages.system import Ping
from runtime.clock import KST
from tests.actors.control_plane_support import make_context, start_recorders, wait_until
from tools.kis_sim.server import SimConfig


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """The suite's simulator on a manual clock at 08:20 on its Monday, before the 08:30 token refresh."""
    return dataclasses.replace(kis_sim_config, seed=5, start=dt.time(8, 20), speed=0, n_symbols=40)


def start_tokens(tmp_path, sim, accounts, settings: Settings | None = None):
    """The tokens actor on the KRX feed's day (token refresh at 08:30) unless `settings` say otherwise."""
    settings = settings or Settings(websocket={"feed": "krx"})
    context = make_context(tmp_path, sim.clock, rest_url=sim.rest_url, accounts=accounts, settings=settings)
    directory = Directory(sim.clock)
    journals = start_recorders(directory, "notifier", "ws.acct1", "ws.acct2")
    directory.register("tokens", TokenActor.start("tokens", directory, context))
    settle(directory, sim, "tokens")
    return context, directory, journals


def settle(directory: Directory, sim, *names: str) -> None:
    for name in names:
        directory.ask(name, Ping(at=sim.clock.now()), timeout=15)


def vault_of(context) -> TokenVault:
    assert isinstance(context.vault, TokenVault)
    return context.vault


def test_start_gives_every_account_a_token_and_approval_key_cached_on_disk(tmp_path, kis_sim, accounts):
    context, directory, journals = start_tokens(tmp_path, kis_sim, accounts)
    vault = vault_of(context)
    for account in accounts:
        assert vault.issued_count(account.name) == 1
        assert vault.cache_path(account.name).exists()
        assert kis_sim.accounts.app_key_for_approval(vault.approval_key(account.name).get_secret_value()) == (
            account.app_key.get_secret_value()
        )
    assert journals["notifier"].received() == []

    directory.ref("tokens").stop()
    restarted, directory, _ = start_tokens(tmp_path, kis_sim, accounts)
    for account in accounts:
        assert vault_of(restarted).issued_count(account.name) == 0
        assert (
            vault_of(restarted).access_token(account.name).token.get_secret_value()
            == vault.access_token(account.name).token.get_secret_value()
        )


def test_pre_market_refresh_via_the_scheduler_renews_and_restarts_each_connection(
    tmp_path, kis_sim, accounts
):
    context, directory, journals = start_tokens(tmp_path, kis_sim, accounts)
    vault = vault_of(context)
    before = {a.name: vault.approval_key(a.name).get_secret_value() for a in accounts}
    directory.register("scheduler", SchedulerActor.start("scheduler", directory, context))

    kis_sim.clock.advance(15 * 60)  # 08:35: past the 08:30 TOKEN_REFRESH
    directory.ask("scheduler", ClockTick(at=kis_sim.clock.now()))
    settle(directory, kis_sim, "tokens", "ws.acct1", "ws.acct2")

    for account in accounts:
        renewed = journals[f"ws.{account.name}"].received(CredentialsRenewed)
        assert [message.account for message in renewed] == [account.name]
        assert vault.issued_count(account.name) == 2
        after = vault.approval_key(account.name).get_secret_value()
        assert after != before[account.name]
        assert kis_sim.accounts.app_key_for_approval(after) == account.app_key.get_secret_value()
    assert context.metrics.count("token_renewals") == 2


def test_token_check_renews_only_tokens_of_23_hours(tmp_path, kis_sim, accounts):
    context, directory, journals = start_tokens(tmp_path, kis_sim, accounts)
    vault = vault_of(context)
    first = vault.access_token("acct1").token.get_secret_value()

    kis_sim.clock.advance(22 * 3600)
    directory.ask("tokens", DayEventFired(at=kis_sim.clock.now(), event=DayEvent.TOKEN_CHECK))
    assert [vault.issued_count(a.name) for a in accounts] == [1, 1]

    kis_sim.clock.advance(3600 + 1)
    renewed = directory.ask("tokens", ClockTick(at=kis_sim.clock.now()))

    assert renewed == ("acct1", "acct2")
    assert [vault.issued_count(a.name) for a in accounts] == [2, 2]
    assert vault.access_token("acct1").token.get_secret_value() != first
    assert vault.token_age("acct1") < dt.timedelta(minutes=1)
    assert journals["ws.acct1"].received(CredentialsRenewed) == []  # the session keeps running
    assert context.metrics.snapshot()["token_age_hours.acct1"] == 0.0


def test_a_failed_refresh_is_alerted_once_and_the_old_token_kept(tmp_path, kis_sim, accounts):
    settings = Settings(rate_limit=RateLimitSettings(max_retries=0), websocket={"feed": "krx"})
    context, directory, journals = start_tokens(tmp_path, kis_sim, accounts, settings)
    vault = vault_of(context)
    held = vault.access_token("acct1").token.get_secret_value()
    kis_sim.clock.advance(15 * 60)
    kis_sim.faults.rate_limit_burst(30)

    renewed = directory.ask("tokens", DayEventFired(at=kis_sim.clock.now(), event=DayEvent.TOKEN_REFRESH))
    settle(directory, kis_sim, "notifier")

    assert renewed == ()
    alerts = [a for a in journals["notifier"].received(SystemAlert) if a.key == "wakeup.token_refresh"]
    assert len(alerts) == 1
    assert "acct1, acct2" in alerts[0].text and "tried again up to 3 times" in alerts[0].text
    assert journals["ws.acct1"].received(CredentialsRenewed) == []
    assert vault.access_token("acct1").token.get_secret_value() == held
    assert directory.ref("tokens") is not None


def test_a_token_call_refused_once_is_alerted_once_retried_and_followed_by_a_health_check(
    tmp_path, kis_sim, accounts
):
    """The wake-up sequence on the simulator's KRX day at 08:20: each connection pre-connects at its start
    (past 08:03), the 08:30 refresh meets a refused token call, alerts once, succeeds at its retry a minute
    later, and the health check after it finds tokens, REST and both WebSockets well."""
    settings = Settings(rate_limit=RateLimitSettings(max_retries=0), websocket={"feed": "krx"})
    context = make_context(tmp_path, kis_sim.clock, rest_url=kis_sim.rest_url, accounts=accounts,
                           settings=settings)
    context = dataclasses.replace(context, ws_url=kis_sim.ws_url)
    directory = Directory(kis_sim.clock)
    journals = start_recorders(directory, "notifier")
    directory.register("tokens", TokenActor.start("tokens", directory, context))
    for account in accounts:
        name = f"ws.{account.name}"
        directory.register(name, WSConnectionActor.start(name, directory, context, account.name))
    settle(directory, kis_sim, "tokens")

    def connected() -> bool:
        shown = context.metrics.snapshot()
        return all(shown.get(f"ws_state.{a.name}") == "connected" for a in accounts)

    assert wait_until(connected)  # pre-connected, with nothing to subscribe yet
    assert kis_sim.ws.session_count() == len(accounts)

    kis_sim.clock.set(dt.datetime.combine(kis_sim.clock.now().date(), dt.time(8, 30), tzinfo=KST))
    kis_sim.faults.rate_limit_burst(0.3)
    directory.ask("tokens", DayEventFired(at=kis_sim.clock.now(), event=DayEvent.TOKEN_REFRESH))
    assert wait_until(lambda: not kis_sim.faults.rest_rate_limited())
    assert step_of(context, "token_refresh")["state"] == "retrying"

    kis_sim.clock.advance(60)
    directory.ask("tokens", ClockTick(at=kis_sim.clock.now()))
    assert step_of(context, "token_refresh")["state"] == "done"
    assert step_of(context, "token_refresh")["attempts"] == 2
    assert all(vault_of(context).issued_count(a.name) == 2 for a in accounts)
    assert wait_until(connected)  # each session restarted with its new approval key
    directory.ask("tokens", ClockTick(at=kis_sim.clock.now()))
    health = step_of(context, "health_after_refresh")
    assert health["state"] == "done", health
    settle(directory, kis_sim, "notifier")
    alerts = journals["notifier"].received(SystemAlert)
    assert [a.key for a in alerts].count("wakeup.token_refresh") == 1

    # At 08:50 only the warm-up has not succeeded (no universe actor runs here): the ready step checks
    # again what failed and names what is still wrong, not the steps that merely failed earlier.
    kis_sim.clock.set(dt.datetime.combine(kis_sim.clock.now().date(), dt.time(8, 50), tzinfo=KST))
    directory.ask("tokens", DayEventFired(at=kis_sim.clock.now(), event=DayEvent.READY))
    ready = step_of(context, "ready")
    assert ready["state"] == "retrying" and ready["detail"] == "not ready: today's universe is not built yet"


def step_of(context, step: str) -> dict:
    return next(row for row in context.metrics.snapshot()["wakeup"] if row["step"] == step)
