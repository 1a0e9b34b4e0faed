"""Credentials never reach a log file, an exception message, a repr or a data file (DESIGN section 6).

Each test makes fresh fake credentials (an app key, a KIS-like app secret with '+', '/' and '='), lets
the KIS simulator issue a real access token and approval key for them over loopback, drives one part of
the system through its normal and failing paths with real per-actor log files in `tmp_path`, and then
searches every exception, repr and file under `tmp_path` with `tests.secrets_check`.

Only the token vault registers secrets for log redaction (`runtime.logs.register_secret`); the REST
client and the WebSocket session tests do not, so they show that those modules keep credentials out of
their own messages rather than relying on the redacting log patcher.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import socket
import stat
import threading
import traceback
import uuid
from collections.abc import Callable, Iterator
from datetime import date, time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pykka
import pytest
from loguru import logger
from pydantic import SecretStr

from config.accounts import Account
from config.loader import ConfigError, load_settings
from config.settings import RateLimitSettings, TokenSettings
from core.subscriptions import AckCode
from kis import protocol
from kis.errors import KisError, KisTransportError
from kis.protocol import TrId
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from kis.ticks import Ack, Decoded, FrameError, PingPong, TradeFrame
from kis.token_vault import TokenVault
from kis.ws_session import KisWebSocketError, KisWebSocketSession, SessionClosed
from runtime.logs import bind_thread_to_actor, register_secret, reset_logging, setup_logging
from tests.secrets_check import (
    assert_no_secrets_in_text,
    assert_no_secrets_in_tree,
    find_secrets_in_tree,
)
from tests.stub_kis import Answer, StubKis
from tools.kis_sim.server import KisSimulator, SimConfig

WAIT = 10.0
ACTORS = ("scanner", "ws.acct1", "token")
FAST_RETRIES = RateLimitSettings(retry_backoff_seconds=(0.3,), max_retries=2)


@dataclasses.dataclass(frozen=True)
class Credentials:
    app_key: str
    app_secret: str

    @classmethod
    def fresh(cls) -> Credentials:
        secret = base64.b64encode(os.urandom(134)).decode()  # 180 characters, like KIS's, with + / =
        return cls(app_key=f"PS{uuid.uuid4().hex}{uuid.uuid4().hex[:2]}", app_secret=secret)

    def account(self, name: str = "acct1") -> Account:
        return Account(name=name, app_key=SecretStr(self.app_key), app_secret=SecretStr(self.app_secret))


@pytest.fixture
def creds() -> Credentials:
    return Credentials.fresh()


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "logs"
    setup_logging(directory, ACTORS, retention_days=1, console_level="CRITICAL")
    yield directory
    reset_logging()


def close_logs(log_dir: Path) -> str:
    """Close the sinks (flushing them) and return all log text, so a test can see that lines were written."""
    reset_logging()
    return "".join(path.read_text(encoding="utf-8") for path in sorted(log_dir.glob("*.log")))


def assert_clean(value: object, secrets: dict[str, str], what: str) -> None:
    """The value's str and repr, and for an exception its args and formatted traceback, hold no secret."""
    texts = {"str": str(value), "repr": repr(value)}
    if isinstance(value, BaseException):
        texts["args"] = repr(value.args)
        texts["traceback"] = "".join(traceback.format_exception(value))
        texts["attributes"] = repr(vars(value))
    for kind, text in texts.items():
        assert_no_secrets_in_text(text, secrets, f"{what} ({kind})")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for(condition: Callable[[], bool], what: str) -> None:
    pause = threading.Event()
    for _ in range(int(WAIT / 0.02)):
        if condition():
            return
        pause.wait(0.02)
    raise AssertionError(f"timed out after {WAIT} s waiting for {what}")


# ---- a server that echoes credentials back, as a broken gateway might -----------------------------------

STUB_TOKEN = "stub-issued-access-token-" + uuid.uuid4().hex


def echoing_kis(status: int, html: bool) -> StubKis:
    """Issues `STUB_TOKEN`; every other answer is an error whose text repeats the request's credentials."""

    def answer(_method: str, path: str, _query: dict[str, str], headers: dict[str, str], body: str) -> Answer:
        echo = " ".join([body, headers.get("appkey", ""), headers.get("appsecret", ""),
                         headers.get("authorization", "")])
        if path.startswith(protocol.TOKEN_PATH) and "appsecret" in body and status == 200:
            issued = {"access_token": STUB_TOKEN, "access_token_token_expired": "2099-01-01 00:00:00"}
            return 200, "application/json", json.dumps(issued).encode(), {}
        if html:
            return status, "text/html", f"<html><body>{echo}</body></html>".encode(), {}
        refusal = {"rt_cd": "1", "msg_cd": "EGW00205", "msg1": f"bad credentials {echo}",
                   "error_description": echo}
        return status, "application/json", json.dumps(refusal).encode(), {}

    return StubKis(answer)


# ---- the REST client ---------------------------------------------------------------------------------------


def test_rest_client_keeps_credentials_out_of_errors_reprs_and_logs(
    kis_sim: KisSimulator, creds: Credentials, log_dir: Path, tmp_path: Path
) -> None:
    account = creds.account()
    client = KisRestClient(
        account, base_url=kis_sim.rest_url, clock=kis_sim.clock, rate_limits=FAST_RETRIES,
        limiters=RateLimiterRegistry(),
    )  # fmt: skip
    token = client.tokens.current()
    approval = client.issue_approval_key()
    secrets = {
        "app key": creds.app_key,
        "app secret": creds.app_secret,
        "access token": token.get_secret_value(),
        "approval key": approval.key.get_secret_value(),
        "stub token": STUB_TOKEN,
    }
    symbols = sorted(kis_sim.market.listings)[:3]
    made: list[object] = [client.quote(symbols[0]), *client.multi_quote_batch(symbols), client.tokens]
    made += client.minute_bars(symbols[0])[:3]

    errors: list[KisError] = []

    def failing(call: Callable[[], object]) -> None:
        with pytest.raises(KisError) as caught:
            call()
        errors.append(caught.value)
        logger.opt(exception=caught.value).error("call failed: {}", caught.value)  # as an actor would log it

    failing(client.issue_token)  # a second token inside the minute: EGW00133
    kis_sim.faults.rate_limit_burst(0.2)
    made.append(client.quote(symbols[0]))  # retried after a logged EGW00201
    kis_sim.faults.expire_tokens()
    try:  # emergency refresh: refused as too soon, or a new token if the simulated minute has passed
        made.append(client.quote(symbols[0]))
    except KisError as error:
        errors.append(error)
    secrets["latest token"] = client.tokens.current().get_secret_value()
    wrong = KisRestClient(
        creds.account().model_copy(update={"app_secret": SecretStr(creds.app_secret[::-1])}),
        base_url=kis_sim.rest_url, clock=kis_sim.clock, limiters=RateLimiterRegistry(),
    )  # fmt: skip
    failing(wrong.issue_approval_key)  # EGW00105 in the auth shape
    secrets["reversed secret"] = creds.app_secret[::-1]
    dead = KisRestClient(
        account, base_url=f"http://127.0.0.1:{free_port()}", rate_limits=RateLimitSettings(max_retries=0),
        limiters=RateLimiterRegistry(),
    )  # fmt: skip
    failing(dead.issue_token)
    for status, html in ((500, False), (403, False), (502, True), (200, False)):
        echo = echoing_kis(status, html)
        try:
            echoed = KisRestClient(
                account, base_url=echo.url, rate_limits=RateLimitSettings(max_retries=0),
                limiters=RateLimiterRegistry(),
            )  # fmt: skip
            failing(echoed.issue_approval_key)
            if status == 200:
                failing(lambda client=echoed: client.quote(symbols[0]))
        finally:
            echo.close()

    assert any(isinstance(error, KisTransportError) for error in errors)
    assert {"EGW00133", "EGW00105", "EGW00205"} <= {getattr(error, "msg_cd", "") for error in errors}
    for error in errors:
        assert_clean(error, secrets, f"{type(error).__name__} {error.path}")
    for value in [client, account, approval, *made]:
        assert_clean(value, secrets, type(value).__name__)
    assert_no_secrets_in_text(account.model_dump_json(), secrets, "Account JSON")
    assert_no_secrets_in_text(approval.model_dump_json(), secrets, "ApprovalKey JSON")

    text = close_logs(log_dir)
    assert "EGW00201" in text and "token rejected" in text and "EGW00205" in text
    assert assert_no_secrets_in_tree(tmp_path, secrets) >= 2


# ---- the WebSocket session ---------------------------------------------------------------------------------


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, pingpong_interval=0.2)


class Inbox:
    def __init__(self, fail_first: bool = False) -> None:
        self.values: list[Decoded] = []
        self.closed: list[SessionClosed] = []
        self._fail = fail_first

    def on_message(self, value: Decoded) -> None:
        self.values.append(value)
        if self._fail:
            self._fail = False
            raise RuntimeError("the consumer failed on its first message")

    def count(self, kind: type) -> int:
        return sum(isinstance(value, kind) for value in self.values)


def test_websocket_session_keeps_the_approval_key_out_of_values_errors_and_logs(
    kis_sim: KisSimulator, kis_sim_config: SimConfig, creds: Credentials, log_dir: Path, tmp_path: Path
) -> None:
    client = KisRestClient(
        creds.account(), base_url=kis_sim.rest_url, clock=kis_sim.clock, limiters=RateLimiterRegistry()
    )
    approval = client.issue_approval_key().key
    wrong_approval = str(uuid.uuid4())
    secrets = {
        "app key": creds.app_key,
        "app secret": creds.app_secret,
        "approval key": approval.get_secret_value(),
        "refused approval key": wrong_approval,
    }
    symbol = sorted(kis_sim.market.listings)[0]

    inbox = Inbox(fail_first=True)
    session = KisWebSocketSession(
        kis_sim.ws_url, approval, inbox.on_message, inbox.closed.append, name="ws.acct1"
    )
    session.connect()
    session.subscribe(TrId.TRADE, symbol)
    wait_for(lambda: inbox.count(TradeFrame) >= 2 and inbox.count(PingPong) >= 1, "ticks and a heartbeat")
    kis_sim.faults.malformed_frames(2)
    wait_for(lambda: inbox.count(FrameError) >= 2, "two garbled frames")

    refused = Inbox()
    impostor = KisWebSocketSession(
        kis_sim.ws_url, SecretStr(wrong_approval), refused.on_message, refused.closed.append, name="ws.acct1"
    )
    impostor.connect()
    impostor.subscribe(TrId.TRADE, symbol)
    wait_for(lambda: any(isinstance(value, Ack) for value in refused.values), "the refusal")
    refusal = next(value for value in refused.values if isinstance(value, Ack))
    assert refusal.code is AckCode.INVALID_APPROVAL and not refusal.ok

    with pytest.raises(KisWebSocketError) as cannot_connect:
        KisWebSocketSession(f"ws://127.0.0.1:{free_port()}", approval, inbox.on_message).connect()
    session.close()
    impostor.close()
    with pytest.raises(KisWebSocketError) as cannot_send:
        session.subscribe(TrId.TRADE, symbol)

    for error in (cannot_connect.value, cannot_send.value):
        assert_clean(error, secrets, type(error).__name__)
    for value in [session, impostor, *inbox.values, *refused.values, *inbox.closed, *refused.closed]:
        assert_clean(value, secrets, type(value).__name__)

    text = close_logs(log_dir)
    assert "on_message callback failed" in text and "the consumer failed" in text
    # The simulator's sent log is KIS's own record (it repeats a refused key, as KIS does); not our file.
    assert assert_no_secrets_in_tree(tmp_path, secrets, exclude=[kis_sim_config.sent_log]) >= 1


# ---- configuration errors ----------------------------------------------------------------------------------


def config_cases(key: str, secret: str) -> list[tuple[str, Any, dict[str, str]]]:
    """(what, config file document or None, environment): credentials typed into the wrong places."""
    good = {"app_key": key, "app_secret": secret}
    return [
        ("secret as a setting value", {"scan": {"interval_seconds": secret}}, {}),
        ("secret as the account name", {"accounts": [{**good, "name": secret}]}, {}),
        ("key as max_slots", {"accounts": [{**good, "max_slots": key}]}, {}),
        ("secret as the paper flag", {"accounts": [{**good, "paper": secret}]}, {}),
        ("secret as the account number", {"accounts": [{**good, "account_no": secret}]}, {}),
        ("secret as a key name", {"accounts": [{**good, secret: key}]}, {}),
        ("key mapped to secret", {key: secret}, {}),
        ("key mapped to secret in a section", {"scan": {key: secret}}, {}),
        ("accounts not a list", {"accounts": good}, {}),
        ("key inside an array", {"accounts": [{"app_key": [key], "app_secret": secret}]}, {}),
        ("secret as a duplicated key", f'{{"{secret}": 1, "{secret}": 2}}', {}),
        ("broken JSON around the secret",
         f'{{"accounts": [{{"app_key": "{key}", "app_secret": "{secret}" }}', {}),
        ("secret as a batch size", None, {"OBSERVER_SCAN__BATCH_SIZE": secret}),
        ("key without its secret", None, {"KIS_APP_KEY": key}),
        ("secret as KIS_PAPER", None, {"KIS_APP_KEY": key, "KIS_APP_SECRET": secret, "KIS_PAPER": secret}),
        ("secret as KIS_ACCOUNT_NO", None,
         {"KIS_APP_KEY": key, "KIS_APP_SECRET": secret, "KIS_ACCOUNT_NO": secret}),
        ("secret as KIS_HTS_ID and a bad flag", None,
         {"KIS_APP_KEY": key, "KIS_APP_SECRET": secret, "KIS_HTS_ID": secret, "KIS_PAPER": "maybe"}),
    ]  # fmt: skip


def test_config_errors_never_quote_a_credential(creds: Credentials, tmp_path: Path) -> None:
    secrets = {"app key": creds.app_key, "app secret": creds.app_secret}
    for number, (what, document, env) in enumerate(config_cases(creds.app_key, creds.app_secret)):
        config_file = None
        if document is not None:
            config_file = tmp_path / f"case{number}.json"
            text = document if isinstance(document, str) else json.dumps(document)
            config_file.write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(config_file, env=env)
        assert_clean(caught.value, secrets, what)

    accounts_files = [
        ("accounts file: key mapped to secret", {creds.app_key: creds.app_secret}),
        ("accounts file: secret as a key name", [{"app_key": creds.app_key, creds.app_secret: 1}]),
        ("accounts file: secret as the name",
         [{"app_key": creds.app_key, "app_secret": "x" * 9, "name": creds.app_secret}]),
    ]  # fmt: skip
    for number, (what, document) in enumerate(accounts_files):
        path = tmp_path / "outside-the-repo" / f"accounts{number}.json"
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(document), encoding="utf-8")
        with pytest.raises(ConfigError) as caught:
            load_settings(env={"KIS_ACCOUNTS_FILE": str(path)})
        assert_clean(caught.value, secrets, what)


def test_loaded_settings_show_no_credential(creds: Credentials, tmp_path: Path) -> None:
    secrets = {"app key": creds.app_key, "app secret": creds.app_secret}
    settings = load_settings(env={"KIS_APP_KEY": creds.app_key, "KIS_APP_SECRET": creds.app_secret})
    assert settings.accounts[0].app_secret.get_secret_value() == creds.app_secret
    dumped = tmp_path / "data" / "settings.json"
    dumped.parent.mkdir()
    dumped.write_text(settings.model_dump_json(indent=2), encoding="utf-8")
    for text, what in (
        (repr(settings), "repr"),
        (str(settings), "str"),
        (json.dumps(settings.model_dump(mode="json")), "model_dump"),
    ):
        assert_no_secrets_in_text(text, secrets, f"Settings {what}")
    assert assert_no_secrets_in_tree(tmp_path, secrets) == 1


# ---- the logging setup -------------------------------------------------------------------------------------


class CrashingActor(pykka.ThreadingActor):
    def __init__(self, secret: str) -> None:
        super().__init__()
        self._secret = secret

    def on_start(self) -> None:
        bind_thread_to_actor("scanner")

    def on_receive(self, message: Any) -> Any:
        raise ValueError(f"refused with approval key {self._secret}")


def test_logging_redacts_registered_secrets_in_every_path_into_the_files(
    creds: Credentials, log_dir: Path, tmp_path: Path
) -> None:
    token, approval = "tok-" + uuid.uuid4().hex * 3, str(uuid.uuid4())
    secrets = {"app key": creds.app_key, "app secret": creds.app_secret, "token": token, "approval": approval}
    for value in (creds.app_key, SecretStr(creds.app_secret), token, approval):
        register_secret(value)

    logger.bind(actor="token").info("issued {} for {}", token, creds.app_key)
    logger.bind(actor="ws.acct1").warning("subscribe with {} refused", approval)
    logging.getLogger("websocket").warning("handshake header appsecret: %s", creds.app_secret)
    try:
        raise RuntimeError(f"gateway echoed {creds.app_secret}")
    except RuntimeError:
        logger.bind(actor="token").exception("call failed")
    actor = CrashingActor.start(approval)
    actor.tell("go")
    wait_for(lambda: not actor.is_alive(), "the actor to crash")

    text = close_logs(log_dir)
    assert text.count("***") >= 5 and "refused with approval key" in text and "gateway echoed" in text
    assert {path.name for path in log_dir.glob("*.log")} >= {"token.log", "ws.acct1.log", "scanner.log"}
    assert assert_no_secrets_in_tree(tmp_path, secrets) >= 3


def test_the_tree_check_finds_a_secret_in_every_form_it_leaks_in(creds: Credentials, tmp_path: Path) -> None:
    """The checker itself: a leak as is, JSON-escaped, URL-encoded, cut short or in a file name is found."""
    secret = creds.app_secret
    leaks = {
        "plain.log": f"x {secret} y",
        "record.jsonl": json.dumps({"echo": f'"{secret}"'}) + "\n",
        "url.log": "GET /x?key=" + quote(secret, safe=""),
        "cut.log": "appsecret=" + secret[:40] + "...",
        f"cache-{creds.app_key}.json": "{}",
    }
    for name, text in leaks.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "clean.log").write_text("nothing to see\n", encoding="utf-8")
    checked, found = find_secrets_in_tree(tmp_path, {"app secret": secret, "app key": creds.app_key})
    assert checked == 6
    assert {Path(leak.where).name for leak in found} == set(leaks) - {f"cache-{creds.app_key}.json"} | {
        "cache-<app key>.json"
    }
    assert all(secret not in str(leak) and creds.app_key not in str(leak) for leak in found)


# ---- the token vault ---------------------------------------------------------------------------------------


@pytest.fixture
def manual_sim() -> Iterator[KisSimulator]:
    """A manual-clock simulator: the one-token-a-minute rule passes only when the test advances it."""
    config = SimConfig(seed=3, date=date(2024, 3, 4), start=time(8, 0), speed=0, n_symbols=40)
    with KisSimulator(config) as simulator:
        yield simulator


def test_token_vault_keeps_tokens_in_its_private_cache_only(
    manual_sim: KisSimulator, creds: Credentials, log_dir: Path, tmp_path: Path
) -> None:
    account = creds.account()
    cache = tmp_path / "tokens"
    settings = TokenSettings(min_issue_interval_seconds=0.05, cache_dir=str(cache))
    vault = TokenVault([account], manual_sim.clock, settings, rest_url=manual_sim.rest_url,
                       limiters=RateLimiterRegistry())  # fmt: skip
    vault.ensure(account.name)
    first_token = vault.access_token(account.name)
    first_approval = vault.approval_key(account.name)
    client = KisRestClient(account, base_url=manual_sim.rest_url, tokens=vault.token_source(account.name),
                           clock=manual_sim.clock, limiters=RateLimiterRegistry())  # fmt: skip
    symbol = sorted(manual_sim.market.listings)[0]
    client.quote(symbol)
    manual_sim.clock.advance(61)
    manual_sim.faults.expire_tokens()
    client.quote(symbol)  # emergency refresh, then the call again
    manual_sim.clock.advance(61)
    vault.renew(account.name, "pre-market refresh")
    latest_token = vault.access_token(account.name)
    latest_approval = vault.approval_key(account.name)
    assert latest_token.token.get_secret_value() != first_token.token.get_secret_value()
    secrets = {
        "app key": creds.app_key,
        "app secret": creds.app_secret,
        "first token": first_token.token.get_secret_value(),
        "latest token": latest_token.token.get_secret_value(),
        "first approval": first_approval.get_secret_value(),
        "latest approval": latest_approval.get_secret_value(),
    }
    vault.close()

    cache_file = vault.cache_path(account.name)
    cache_file.write_text(cache_file.read_text(encoding="utf-8")[:60], encoding="utf-8")  # torn mid-token
    manual_sim.clock.advance(61)
    restarted = TokenVault([account], manual_sim.clock, settings, rest_url=manual_sim.rest_url,
                           limiters=RateLimiterRegistry())  # fmt: skip
    secrets["restart token"] = restarted.access_token(account.name).token.get_secret_value()  # torn: reissued
    restarted.close()

    for value in (vault, restarted, vault.token_source(account.name), latest_token, first_approval):
        assert_clean(value, secrets, type(value).__name__)

    text = close_logs(log_dir)
    assert "emergency refresh" in text and "is not valid" in text
    files = list(cache.iterdir())
    assert files == [cache_file] and stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert assert_no_secrets_in_tree(cache, {"app key": creds.app_key, "app secret": creds.app_secret}) == 1
    assert assert_no_secrets_in_tree(tmp_path, secrets, exclude=[cache]) >= 1
