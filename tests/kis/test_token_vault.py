"""TokenVault against the KIS simulator over loopback: disk cache, issuance limit, emergency refresh."""

from __future__ import annotations

import datetime as dt
import json
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from config.settings import TokenSettings
from kis.errors import KisTokenTooSoon
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from kis.token_vault import CredentialsUnavailable, TokenCache, TokenVault
from tests.actors.control_plane_support import sim_account
from tools.kis_sim.server import KisSimulator, SimConfig

DAY = dt.date(2024, 3, 4)


@pytest.fixture
def sim() -> Iterator[KisSimulator]:
    """A manual-clock simulator: tokens age only when the test advances its clock."""
    with KisSimulator(SimConfig(seed=3, date=DAY, start=dt.time(8, 0), speed=0, n_symbols=40)) as simulator:
        yield simulator


def make_vault(sim: KisSimulator, account, cache: Path, interval: float = 0.05) -> TokenVault:
    settings = TokenSettings(min_issue_interval_seconds=interval, cache_dir=str(cache))
    return TokenVault([account], sim.clock, settings, rest_url=sim.rest_url, limiters=RateLimiterRegistry())


def client_for(sim: KisSimulator, account, vault: TokenVault) -> KisRestClient:
    return KisRestClient(
        account, base_url=sim.rest_url, tokens=vault.token_source(account.name), clock=sim.clock,
        limiters=RateLimiterRegistry(),
    )


def some_symbols(sim: KisSimulator, n: int = 3) -> list[str]:
    return sorted(sim.market.listings)[:n]


def test_cached_token_is_reused_by_a_new_vault_without_issuing(sim, tmp_path):
    account = sim_account()
    first = make_vault(sim, account, tmp_path / "tokens")
    token = first.access_token(account.name)
    approval = first.approval_key(account.name)
    issued_at = sim.accounts.known(account.app_key.get_secret_value()).last_issue
    first.close()

    sim.clock.advance(3600)
    restarted = make_vault(sim, account, tmp_path / "tokens")
    again = restarted.access_token(account.name)

    assert again.token.get_secret_value() == token.token.get_secret_value()
    assert restarted.approval_key(account.name).get_secret_value() == approval.get_secret_value()
    assert restarted.issued_count(account.name) == 0
    assert sim.accounts.known(account.app_key.get_secret_value()).last_issue == issued_at
    rows = client_for(sim, account, restarted).multi_quote_batch(some_symbols(sim))
    assert len(rows) == 3


def test_cache_file_is_private_and_named_without_the_key(sim, tmp_path):
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens")
    vault.ensure(account.name)

    files = list((tmp_path / "tokens").iterdir())
    assert files == [vault.cache_path(account.name)]
    path = files[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    key, secret = account.app_key.get_secret_value(), account.app_secret.get_secret_value()
    assert key not in path.name
    text = path.read_text()
    assert key not in text and secret not in text
    assert json.loads(text)["access_token"] == vault.access_token(account.name).token.get_secret_value()
    assert key not in repr(vault) and "access_token" not in repr(vault)


def test_expired_cached_token_is_replaced(sim, tmp_path):
    account = sim_account()
    old = make_vault(sim, account, tmp_path / "tokens").access_token(account.name)
    sim.clock.advance(24 * 3600)

    vault = make_vault(sim, account, tmp_path / "tokens")
    new = vault.access_token(account.name)

    assert new.token.get_secret_value() != old.token.get_secret_value()
    assert vault.issued_count(account.name) == 1
    assert new.is_valid_at(sim.clock.now())


def test_corrupt_or_loose_cache_file_is_replaced_with_a_private_one(sim, tmp_path):
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens")
    path = vault.cache_path(account.name)
    path.parent.mkdir(parents=True)
    path.write_text('{"version": 1, "access_token": ')
    path.chmod(0o644)
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        token = vault.access_token(account.name)
    finally:
        logger.remove(sink)

    assert vault.issued_count(account.name) == 1
    assert any("not valid" in line and "ignoring it" in line for line in lines)
    assert any("tightened to 600" in line for line in lines)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["access_token"] == token.token.get_secret_value()


def test_too_soon_is_waited_out_once_then_issued(tmp_path):
    """Someone else issued a token a moment ago: the vault gets EGW00133, waits, and issues once."""
    config = SimConfig(seed=3, date=DAY, start=dt.time(8, 0), speed=300, n_symbols=40)
    with KisSimulator(config) as sim:
        account = sim_account()
        limiters = RateLimiterRegistry()
        KisRestClient(account, base_url=sim.rest_url, clock=sim.clock, limiters=limiters).issue_token()
        vault = make_vault(sim, account, tmp_path / "tokens", interval=0.5)

        token = vault.access_token(account.name)

        assert vault.too_soon_count(account.name) == 1
        assert vault.issued_count(account.name) == 1
        assert token.is_valid_at(sim.clock.now())
        assert len(client_for(sim, account, vault).multi_quote_batch(some_symbols(sim))) == 3


def test_too_soon_twice_gives_up_instead_of_looping(sim, tmp_path):
    """On a frozen simulator clock the minute never passes: one wait, one more try, then the error."""
    account = sim_account()
    outsider = KisRestClient(account, base_url=sim.rest_url, clock=sim.clock, limiters=RateLimiterRegistry())
    outsider.issue_token()
    vault = make_vault(sim, account, tmp_path / "tokens", interval=0.05)

    with pytest.raises(KisTokenTooSoon):
        vault.access_token(account.name)
    assert vault.too_soon_count(account.name) == 1
    assert vault.issued_count(account.name) == 0


def test_emergency_refresh_after_tokens_expire_retries_the_call(sim, tmp_path):
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens")
    client = client_for(sim, account, vault)
    client.multi_quote_batch(some_symbols(sim))
    old = vault.access_token(account.name).token.get_secret_value()

    sim.clock.advance(61)
    sim.faults.expire_tokens()
    rows = client.multi_quote_batch(some_symbols(sim))

    assert len(rows) == 3
    new = vault.access_token(account.name).token.get_secret_value()
    assert new != old
    assert vault.issued_count(account.name) == 2
    assert json.loads(vault.cache_path(account.name).read_text())["access_token"] == new


def test_concurrent_rejections_issue_a_single_new_token(sim, tmp_path):
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens")
    rejected = vault.access_token(account.name).token
    sim.clock.advance(61)
    sim.faults.expire_tokens()
    source = vault.token_source(account.name)
    results: list[str] = []
    lock = threading.Lock()

    def refresh() -> None:
        value = source.refresh(rejected).get_secret_value()
        with lock:
            results.append(value)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(results) == 8 and len(set(results)) == 1
    assert results[0] != rejected.get_secret_value()
    assert vault.issued_count(account.name) == 2


def test_rejecting_a_token_kis_handed_back_again_does_not_issue_again(sim, tmp_path):
    """KIS reissues the same token within 6 h; a second rejection of it is not refreshed again (no loop)."""
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens")
    token = vault.access_token(account.name).token
    sim.clock.advance(61)
    source = vault.token_source(account.name)

    first = source.refresh(token)
    second = source.refresh(token)

    assert first.get_secret_value() == second.get_secret_value() == token.get_secret_value()
    assert vault.issued_count(account.name) == 2


def test_issuances_are_spaced_by_the_minimum_interval(sim, tmp_path):
    """Two forced renewals in a row: the second waits for the slot instead of drawing EGW00133."""
    account = sim_account()
    vault = make_vault(sim, account, tmp_path / "tokens", interval=0.3)
    vault.access_token(account.name)
    sim.clock.advance(61)  # the simulator's minute has passed; the vault's own spacing still applies

    vault.renew_token(account.name, "test")

    assert vault.issued_count(account.name) == 2
    assert vault.too_soon_count(account.name) == 0


def test_secrets_never_reach_the_log(sim, tmp_path):
    account = sim_account()
    lines: list[str] = []
    sink = logger.add(lines.append, level="DEBUG", format="{message} {extra}")
    try:
        vault = make_vault(sim, account, tmp_path / "tokens")
        client = client_for(sim, account, vault)
        client.multi_quote_batch(some_symbols(sim))
        sim.clock.advance(61)
        sim.faults.expire_tokens()
        client.multi_quote_batch(some_symbols(sim))
        sim.clock.advance(61)
        vault.renew(account.name, "test")
        secrets = [
            account.app_key.get_secret_value(),
            account.app_secret.get_secret_value(),
            vault.access_token(account.name).token.get_secret_value(),
            vault.approval_key(account.name).get_secret_value(),
        ]
    finally:
        logger.remove(sink)
    text = "\n".join(lines)
    assert "emergency refresh" in text
    assert not [secret for secret in secrets if secret in text]


def test_the_token_cache_reads_what_the_vault_writes_and_never_writes_itself(sim, tmp_path):
    account = sim_account()
    cache = TokenCache([account], sim.clock, TokenSettings(cache_dir=str(tmp_path / "tokens")),
                       rest_url=sim.rest_url)
    with pytest.raises(CredentialsUnavailable, match="no valid approval key"):
        cache.approval_key(account.name)
    assert not (tmp_path / "tokens").exists()

    vault = make_vault(sim, account, tmp_path / "tokens")
    vault.ensure(account.name)
    assert cache.approval_key(account.name) == vault.approval_key(account.name)
    assert cache.token_source(account.name).current() == vault.access_token(account.name).token
    sim.clock.advance(61)
    vault.renew(account.name, "pre-market")
    assert cache.approval_key(account.name) == vault.approval_key(account.name)  # read again at each use

    path = vault.cache_path(account.name)
    path.write_text('{"version": 1, "approval_key": ')
    lines: list[str] = []
    sink = logger.add(lines.append, level="WARNING", format="{message}")
    try:
        with pytest.raises(CredentialsUnavailable) as raised:
            cache.approval_key(account.name)
    finally:
        logger.remove(sink)
    assert str(path) in str(raised.value)
    assert [line for line in lines if "not valid" in line] and '"version"' not in "".join(lines)
    assert path.read_text() == '{"version": 1, "approval_key": '
