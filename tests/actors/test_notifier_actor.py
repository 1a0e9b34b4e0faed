"""NotifierActor against a real chat server on loopback (tools.chat_sink): delivery, cooldown, retries,
log-only mode, state across a restart, and no secret in any log line."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pykka
import pytest
from loguru import logger
from pydantic import SecretStr

from actors.context import ObserverContext
from actors.directory import Directory
from actors.notifier import AlertDispatcher, NotifierActor, TelegramChannel
from config.settings import AlertSettings, NotifierSettings, Settings
from core.alerts import make_alert
from kis.rest import TokenSource
from messages.alerts import AlertRaised, SystemAlert
from messages.system import Ping
from runtime.clock import KST, SimulatedClock
from runtime.jsonl import read_jsonl
from runtime.metrics import Metrics
from runtime.paths import DataPaths
from tools.chat_sink import ChatSink

START = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
BOT_TOKEN = "123456:SECRET-bot-token-value"
CHAT_ID = "-100777"
FAST_RETRIES = AlertSettings(retry_backoff_seconds=(0.05,), max_retries=3, send_timeout_seconds=2.0)


class NoCredentials:
    """The notifier never talks to KIS; any use of credentials is a bug."""

    def token_source(self, account: str) -> TokenSource:
        raise AssertionError("the notifier must not need KIS credentials")

    def approval_key(self, account: str) -> SecretStr:
        raise AssertionError("the notifier must not need KIS credentials")


@pytest.fixture
def sink() -> Iterator[ChatSink]:
    with ChatSink() as server:
        yield server


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink_id = logger.add(lambda message: lines.append(str(message)), level="DEBUG", format="{message}")
    yield lines
    logger.remove(sink_id)


def make_context(tmp_path: Path, notifier: NotifierSettings, alerts: AlertSettings = FAST_RETRIES,
                 clock: SimulatedClock | None = None) -> ObserverContext:
    settings = Settings(notifier=notifier, alerts=alerts)
    return ObserverContext(settings=settings, clock=clock or SimulatedClock(START, speed=0),
                           metrics=Metrics(), paths=DataPaths(tmp_path), vault=NoCredentials())


def both_channels(sink: ChatSink) -> NotifierSettings:
    return NotifierSettings(telegram_bot_token=SecretStr(BOT_TOKEN), telegram_chat_id=CHAT_ID,
                            telegram_api_base=sink.telegram_base,
                            discord_webhook_url=SecretStr(sink.discord_url))


def start_notifier(context: ObserverContext) -> pykka.ActorRef[NotifierActor]:
    ref = NotifierActor.start("notifier", Directory(context.clock), context)
    ref.ask(Ping(at=START), timeout=5)
    return ref


def raised(symbol: str, signal: str, at: datetime, value: float = 3.4) -> AlertRaised:
    return AlertRaised(at=at, alert=make_alert(symbol, "삼성전자", signal, 3.0, value, at))


def test_each_alert_reaches_telegram_and_discord_once(tmp_path: Path, sink: ChatSink) -> None:
    context = make_context(tmp_path, both_channels(sink))
    notifier = start_notifier(context)

    notifier.tell(raised("005930", "volume_surge", START))
    notifier.tell(raised("000660", "volume_surge", START))
    notifier.tell(SystemAlert(at=START, key="overflow_rate.0.05", text="rate 6.0 % over an hour"))

    assert sink.wait_for(6, timeout=5)
    telegram, discord = sink.texts("telegram"), sink.texts("discord")
    assert telegram == discord
    assert len(telegram) == 3
    assert telegram[0].startswith("[volume_surge] 005930 삼성전자")
    assert telegram[2] == "[overflow rate above 5%] rate 6.0 % over an hour"
    assert {m.chat_id for m in sink.messages if m.channel == "telegram"} == {CHAT_ID}
    assert {m.token for m in sink.messages if m.channel == "telegram"} == {BOT_TOKEN}
    notifier.stop()
    assert context.metrics.count("alerts_sent") == 3


def test_cooldown_suppresses_duplicates_until_it_is_over(tmp_path: Path, sink: ChatSink) -> None:
    notifier_settings = NotifierSettings(telegram_bot_token=SecretStr(BOT_TOKEN), telegram_chat_id=CHAT_ID,
                                         telegram_api_base=sink.telegram_base)
    context = make_context(tmp_path, notifier_settings)
    notifier = start_notifier(context)

    notifier.tell(raised("005930", "volume_surge", START, value=3.4))
    notifier.tell(raised("005930", "volume_surge", START + timedelta(seconds=30), value=3.9))
    notifier.tell(raised("005930", "trade_velocity", START + timedelta(seconds=31), value=12.0))
    notifier.tell(SystemAlert(at=START, key="scanner.safe_mode", text="scanner in safe mode"))
    notifier.tell(SystemAlert(at=START + timedelta(seconds=599), key="scanner.safe_mode", text="still"))
    notifier.tell(raised("005930", "volume_surge", START + timedelta(seconds=600), value=4.1))
    notifier.ask(Ping(at=START), timeout=5)

    assert sink.wait_for(4, timeout=5)
    notifier.stop()  # drains the queue: nothing else is on its way
    texts = sink.texts()
    assert len(texts) == 4
    assert [t.split(" ")[0] for t in texts] == ["[volume_surge]", "[trade_velocity]", "[scanner",
                                                "[volume_surge]"]
    assert "4.10x" in texts[3]
    assert context.metrics.count("alerts_suppressed") == 2
    assert context.metrics.count("alerts_sent") == 4


def test_cooldowns_survive_a_restart(tmp_path: Path, sink: ChatSink) -> None:
    notifier_settings = NotifierSettings(discord_webhook_url=SecretStr(sink.discord_url))
    context = make_context(tmp_path, notifier_settings)
    first = start_notifier(context)
    first.tell(raised("005930", "disparity", START, value=-0.09))
    assert sink.wait_for(1, timeout=5)
    first.stop()

    second = start_notifier(context)
    second.tell(raised("005930", "disparity", START + timedelta(seconds=60), value=-0.1))
    second.tell(raised("035720", "disparity", START + timedelta(seconds=60), value=-0.1))
    assert sink.wait_for(2, timeout=5)
    second.stop()
    assert [t.split(" ")[1] for t in sink.texts()] == ["005930", "035720"]
    assert context.metrics.count("alerts_suppressed") == 1


def test_telegram_429_is_retried_after_retry_after(
    tmp_path: Path, sink: ChatSink, log_lines: list[str]
) -> None:
    notifier_settings = NotifierSettings(telegram_bot_token=SecretStr(BOT_TOKEN), telegram_chat_id=CHAT_ID,
                                         telegram_api_base=sink.telegram_base)
    context = make_context(tmp_path, notifier_settings)
    sink.fail_next(1, status=429, retry_after=1)
    notifier = start_notifier(context)

    notifier.tell(raised("005930", "volume_surge", START))
    assert sink.wait_for(1, timeout=10)
    notifier.stop()
    assert sink.request_count == 2
    assert len(sink.messages) == 1
    assert any("telegram: HTTP 429; retry 1/3 in 1.0 s" in line for line in log_lines)


def test_server_errors_are_retried_and_refusals_are_not(tmp_path: Path, sink: ChatSink) -> None:
    notifier_settings = NotifierSettings(discord_webhook_url=SecretStr(sink.discord_url))
    context = make_context(tmp_path, notifier_settings)
    sink.fail_next(2, status=500)
    notifier = start_notifier(context)
    notifier.tell(raised("005930", "volume_surge", START))
    assert sink.wait_for(1, timeout=10)
    assert sink.request_count == 3

    sink.fail_next(1, status=403)
    notifier.tell(raised("000660", "volume_surge", START))
    notifier.tell(raised("035720", "volume_surge", START))
    assert sink.wait_for(2, timeout=10)
    notifier.stop()
    assert sink.request_count == 5  # the 403 was not retried
    assert [t.split(" ")[1] for t in sink.texts()] == ["005930", "035720"]
    assert context.metrics.count("alerts_sent") == 2
    assert context.metrics.count("alerts_failed") == 1


def test_log_only_mode_logs_every_alert(tmp_path: Path, log_lines: list[str]) -> None:
    context = make_context(tmp_path, NotifierSettings())
    notifier = start_notifier(context)
    notifier.tell(raised("005930", "volume_surge", START))
    notifier.tell(raised("005930", "volume_surge", START + timedelta(seconds=1)))
    notifier.ask(Ping(at=START), timeout=5)
    notifier.stop()

    assert any("alerts go to the log only" in line for line in log_lines)
    alerts = [line for line in log_lines if line.startswith("ALERT [volume_surge] 005930")]
    assert len(alerts) == 1
    assert any(line.startswith("alert suppressed (cooldown 005930:volume_surge)") for line in log_lines)
    assert context.metrics.count("alerts_sent") == 1
    assert context.metrics.count("alerts_suppressed") == 1


def test_recent_alerts_show_the_time_and_a_readable_label_and_the_ledger_keeps_the_key(
    tmp_path: Path, log_lines: list[str],
) -> None:
    context = make_context(tmp_path, NotifierSettings())
    notifier = start_notifier(context)
    notifier.tell(raised("005930", "volume_surge", START))
    notifier.tell(SystemAlert(at=START + timedelta(seconds=55), key="overflow_rate.0.1", text="rate 12 %"))
    notifier.tell(SystemAlert(at=START + timedelta(seconds=56), key="ws_suspended.acct1", text="down 60 s"))
    notifier.ask(Ping(at=START), timeout=5)
    notifier.stop()

    assert context.metrics.snapshot()["recent_alerts"] == [
        "10:00:00 volume surge 005930 삼성전자",
        "10:00:55 overflow rate above 10%",
        "10:00:56 WebSocket down (acct1)",
    ]
    assert "ALERT [overflow rate above 10%] rate 12 %\n" in log_lines
    ledger = read_jsonl(context.paths.alerts_ledger(START.date())).records
    assert [row["key"] for row in ledger] == ["005930:volume_surge", "system:overflow_rate.0.1",
                                             "system:ws_suspended.acct1"]


def test_secrets_never_reach_the_log(tmp_path: Path, sink: ChatSink, log_lines: list[str]) -> None:
    closed = ChatSink().start()
    dead_base = closed.telegram_base
    closed.stop()  # nothing listens there any more: connection refused
    notifier_settings = NotifierSettings(telegram_bot_token=SecretStr(BOT_TOKEN), telegram_chat_id=CHAT_ID,
                                         telegram_api_base=dead_base,
                                         discord_webhook_url=SecretStr(sink.discord_url))
    alerts = AlertSettings(retry_backoff_seconds=(0.01,), max_retries=1, send_timeout_seconds=1.0)
    context = make_context(tmp_path, notifier_settings, alerts)
    sink.fail_next(1, status=500)
    sink.fail_next(2, status=401)
    notifier = start_notifier(context)
    notifier.tell(raised("005930", "volume_surge", START))
    notifier.tell(raised("000660", "volume_surge", START))
    assert sink.wait_for_requests(3, timeout=10)
    notifier.stop()
    assert repr(context.settings.notifier).count("**********") == 2

    text = "\n".join(log_lines)
    assert "telegram: ConnectionError" in text
    assert "discord: HTTP 500" in text
    assert "discord: alert refused (HTTP 401)" in text
    for secret in (BOT_TOKEN, sink.discord_url, "chat-sink-webhook-token", "SECRET-bot"):
        assert secret not in text
    state = (context.paths.state_dir / "alert_cooldowns.json").read_text()
    assert BOT_TOKEN not in state and "webhook" not in state


def test_the_rate_limit_holds_back_alerts_beyond_it(sink: ChatSink, log_lines: list[str]) -> None:
    metrics = Metrics()
    channel = TelegramChannel(sink.telegram_base, BOT_TOKEN, CHAT_ID)
    dispatcher = AlertDispatcher([channel], AlertSettings(rate_per_minute=2), metrics,
                                 logger.bind(actor="notifier")).start()
    for number in range(3):
        assert dispatcher.submit(f"alert {number}")
    assert sink.wait_for(2, timeout=5)
    dispatcher.stop(drain_seconds=0.2)  # the third may only go a minute after the first
    assert sink.texts() == ["alert 0", "alert 1"]
    assert any("1 alerts not sent" in line for line in log_lines)
    assert metrics.count("alerts_sent") == 2
