"""NotifierActor (id `notifier`): every alert to the log, and to Telegram and/or Discord when configured.

- Cooldown: one alert per (symbol, signal) and per SystemAlert key every `AlertSettings.cooldown_seconds`
  (simulated time, the message's `at`), kept by `core.alerts.AlertCooldown` and saved to the StateStore
  (`alert_cooldowns`) as soon as an alert passes, before it goes out, so a restart (even after SIGKILL)
  does not repeat alerts.
- Sending happens on a worker thread (`AlertDispatcher`), so a slow or failing chat server never blocks
  the actor: the actor only checks the cooldown, logs, and queues. The worker keeps its own rate limit
  (`rate_per_minute`, real time), retries `max_retries` times on 429/5xx/transport errors with the
  `retry_backoff_seconds` steps, and respects the `retry_after` of a 429 (Telegram's
  `parameters.retry_after`, Discord's `retry_after` or the Retry-After header).
- With no channel configured it runs log-only (one line says so at start).
- Ledger: every alert that passes the cooldown is also one line of `DataPaths.alerts_ledger(day)`
  (`at`, `key`, `cooldown_seconds`, `text`), written through at once, so a duplicate inside a cooldown
  (after a crash, a restart) can be proven absent (`tools.reconcile`).
- The bot token and webhook URL are secrets: they are only ever put into request URLs, never logged
  (errors are reported by exception type and HTTP status only) and are registered for log redaction.

Metrics: `alerts_sent` (passed the cooldown and reached at least one channel, or the log in log-only
mode), `alerts_suppressed` (cooldown), `alerts_failed` (no channel took it), `alerts_dropped` (queue full).

| message | effect |
|---|---|
| AlertRaised | cooldown key (symbol, signal); passes -> logged, queued for the channels, state saved |
| SystemAlert | cooldown key ("system", key); same path, text prefixed `[<the key's label>]` |

The status view's recent alerts show the time and a readable label (`core.alerts`), never the raw key.
| anything else (PhaseChanged, DayEventFired, ...) | ignored |
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Any

import requests

from actors.base import ObserverActor
from actors.context import ObserverContext
from actors.directory import Directory
from config.settings import AlertSettings, NotifierSettings
from core.alerts import AlertCooldown, market_alert_label, system_alert_label
from messages.alerts import AlertRaised, SystemAlert
from runtime.jsonl import JsonlWriter
from runtime.logs import register_secret
from runtime.metrics import Metrics
from spine.wire import AlertSent

if TYPE_CHECKING:
    from loguru import Logger

STATE_NAME = "alert_cooldowns"
QUEUE_LIMIT = 1000
MAX_RETRY_AFTER_SECONDS = 120.0
STOP_DRAIN_SECONDS = 2.0
TELEGRAM_TEXT_LIMIT = 4096
DISCORD_TEXT_LIMIT = 2000


class Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one POST achieved; `detail` is safe to log (status and error type, never a URL)."""

    outcome: Outcome
    detail: str = ""
    retry_after: float | None = None


class Channel:
    """One chat destination. Subclasses build the request and read the answer."""

    name = "channel"

    def post(self, session: requests.Session, text: str, timeout: float) -> Attempt:
        try:
            response = self._send(session, text, timeout)
        except requests.RequestException as error:
            return Attempt(Outcome.RETRY, type(error).__name__)
        status = response.status_code
        if status == 429:
            return Attempt(Outcome.RETRY, "HTTP 429", self._retry_after(response))
        if status >= 500:
            return Attempt(Outcome.RETRY, f"HTTP {status}")
        if status >= 400:
            return Attempt(Outcome.FAILED, f"HTTP {status}{self._describe(response)}")
        return self._accepted(response)

    def _send(self, session: requests.Session, text: str, timeout: float) -> requests.Response:
        raise NotImplementedError

    def _accepted(self, response: requests.Response) -> Attempt:
        return Attempt(Outcome.DELIVERED)

    def _retry_after(self, response: requests.Response) -> float | None:
        body = _json(response)
        value: Any = None
        if isinstance(body, dict):
            parameters = body.get("parameters")
            value = parameters.get("retry_after") if isinstance(parameters, dict) else body.get("retry_after")
        if value is None:
            value = response.headers.get("Retry-After")
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            return None
        return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)

    def _describe(self, response: requests.Response) -> str:
        return ""


class TelegramChannel(Channel):
    """Bot API `sendMessage`: POST {api_base}/bot{token}/sendMessage with chat_id and text."""

    name = "telegram"

    def __init__(self, api_base: str, token: str, chat_id: str) -> None:
        self._url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id

    def __repr__(self) -> str:
        return "TelegramChannel(***)"

    def _send(self, session: requests.Session, text: str, timeout: float) -> requests.Response:
        payload = {"chat_id": self._chat_id, "text": text[:TELEGRAM_TEXT_LIMIT]}
        return session.post(self._url, json=payload, timeout=timeout)

    def _accepted(self, response: requests.Response) -> Attempt:
        body = _json(response)
        if isinstance(body, dict) and body.get("ok") is True:
            return Attempt(Outcome.DELIVERED)
        return Attempt(Outcome.FAILED, f"HTTP {response.status_code} without ok=true")

    def _describe(self, response: requests.Response) -> str:
        body = _json(response)
        description = body.get("description") if isinstance(body, dict) else None
        return f" ({str(description)[:120]})" if description else ""


class DiscordChannel(Channel):
    """Discord webhook: POST the webhook URL with JSON {"content": text}."""

    name = "discord"

    def __init__(self, webhook_url: str) -> None:
        self._url = webhook_url

    def __repr__(self) -> str:
        return "DiscordChannel(***)"

    def _send(self, session: requests.Session, text: str, timeout: float) -> requests.Response:
        return session.post(self._url, json={"content": text[:DISCORD_TEXT_LIMIT]}, timeout=timeout)


def channels_from(settings: NotifierSettings, log: Logger) -> tuple[Channel, ...]:
    """The configured channels; a half-configured Telegram (token without chat id) is reported and skipped."""
    channels: list[Channel] = []
    token = settings.telegram_bot_token
    if token is not None and token.get_secret_value():
        register_secret(token)
        if settings.telegram_chat_id:
            channels.append(TelegramChannel(settings.telegram_api_base, token.get_secret_value(),
                                            settings.telegram_chat_id))
        else:
            log.warning("TELEGRAM_BOT_TOKEN is set but TELEGRAM_CHAT_ID is not: Telegram alerts are off")
    elif settings.telegram_chat_id:
        log.warning("TELEGRAM_CHAT_ID is set but TELEGRAM_BOT_TOKEN is not: Telegram alerts are off")
    webhook = settings.discord_webhook_url
    if webhook is not None and webhook.get_secret_value():
        register_secret(webhook)
        channels.append(DiscordChannel(webhook.get_secret_value()))
    return tuple(channels)


class AlertDispatcher:
    """The send worker: a bounded queue of texts, delivered in order to every channel.

    Rate limit: at most `rate_per_minute` alerts start within any 60 real seconds; the rest wait in the
    queue. `stop` gives the queue `drain_seconds` to empty, then abandons waits and remaining alerts.
    """

    def __init__(
        self,
        channels: Sequence[Channel],
        settings: AlertSettings,
        metrics: Metrics,
        log: Logger,
        *,
        session: requests.Session | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "notifier-send",
    ) -> None:
        self._channels = tuple(channels)
        self._settings = settings
        self._metrics = metrics
        self._log = log
        self._session = session or requests.Session()
        self._monotonic = monotonic
        self._queue: queue.Queue[str] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._started: deque[float] = deque()
        self._unsent = 0  # queued or in hand, guarded by _lock
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> AlertDispatcher:
        self._thread.start()
        return self

    def submit(self, text: str) -> bool:
        """Queue one alert; False (counted in `alerts_dropped`) when the queue is full."""
        try:
            self._queue.put_nowait(text)
        except queue.Full:
            self._metrics.inc("alerts_dropped")
            return False
        with self._lock:
            self._unsent += 1
        return True

    def stop(self, drain_seconds: float = STOP_DRAIN_SECONDS) -> None:
        self._stopping.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(drain_seconds)
            self._abort.set()
            self._thread.join(1.0)
        with self._lock:
            left = self._unsent
        if left:
            self._log.warning("notifier stopped with {} alerts not sent (they are in this log)", left)
        self._session.close()

    def _run(self) -> None:
        while not self._abort.is_set():
            try:
                text = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stopping.is_set():
                    return
                continue
            self._wait_for_rate()
            if self._abort.is_set():
                return
            try:
                delivered = sum(self._deliver(channel, text) for channel in self._channels)
            except Exception as error:  # the worker must outlive any surprise; no details: URLs hold secrets
                self._log.error("alert delivery failed unexpectedly: {}", type(error).__name__)
                delivered = 0
            with self._lock:
                self._unsent -= 1
            self._metrics.inc("alerts_sent" if delivered else "alerts_failed")

    def _wait_for_rate(self) -> None:
        window = 60.0
        limit = self._settings.rate_per_minute
        started = self._started
        while True:
            now = self._monotonic()
            while started and now - started[0] >= window:
                started.popleft()
            if len(started) < limit:
                started.append(now)
                return
            delay = window - (now - started[0])
            self._log.debug("alert rate limit ({} per minute): next alert in {:.1f} s", limit, delay)
            if self._abort.wait(delay):
                return

    def _deliver(self, channel: Channel, text: str) -> bool:
        settings = self._settings
        steps = settings.retry_backoff_seconds
        for attempt in range(settings.max_retries + 1):
            result = channel.post(self._session, text, settings.send_timeout_seconds)
            if result.outcome is Outcome.DELIVERED:
                return True
            if result.outcome is Outcome.FAILED:
                self._log.error("{}: alert refused ({}); not retried", channel.name, result.detail)
                return False
            if attempt == settings.max_retries:
                break
            delay = result.retry_after
            if delay is None:
                delay = steps[min(attempt, len(steps) - 1)]
            self._log.warning("{}: {}; retry {}/{} in {:.1f} s", channel.name, result.detail, attempt + 1,
                              settings.max_retries, delay)
            if self._abort.wait(delay):
                return False
        self._log.error("{}: alert not delivered after {} attempts", channel.name, settings.max_retries + 1)
        return False


class NotifierActor(ObserverActor):
    """The only way out for alerts; see the module docstring for the message table."""

    def __init__(
        self,
        name: str,
        directory: Directory,
        context: ObserverContext,
        *,
        session: requests.Session | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.context = context
        self._session = session
        self._store = context.state_store()
        self._cooldown = AlertCooldown(context.settings.alerts.cooldown_seconds)
        self._dispatcher: AlertDispatcher | None = None
        self._log_only = True
        self._ledger: JsonlWriter | None = None

    def on_start(self) -> None:
        self._cooldown = AlertCooldown(self.context.settings.alerts.cooldown_seconds, self._load_cooldowns())
        channels = channels_from(self.context.settings.notifier, self.log)
        self._log_only = not channels
        if self._log_only:
            self.log.info("no TELEGRAM_BOT_TOKEN+TELEGRAM_CHAT_ID or DISCORD_WEBHOOK_URL: "
                          "alerts go to the log only")
            return
        self.log.info("alerts go to the log and {}", " and ".join(channel.name for channel in channels))
        self._dispatcher = AlertDispatcher(
            channels, self.context.settings.alerts, self.context.metrics, self.log,
            session=self._session, name=f"{self.name}-send",
        ).start()

    def on_stop(self) -> None:
        self._stop_dispatcher()
        self._close_ledger()

    def on_failure(self, *_exc_info: object) -> None:
        self._stop_dispatcher()
        self._close_ledger()

    def on_receive(self, message: Any) -> Any:
        match message:
            case AlertRaised(alert=alert):
                key = f"{alert.symbol}:{alert.signal}"
                self._notify(key, market_alert_label(alert), alert.text, message.at)
            case SystemAlert(key=key, text=text):
                label = system_alert_label(key)
                self._notify(f"system:{key}", label, f"[{label}] {text}", message.at)
        return None

    def _notify(self, key: str, label: str, text: str, at: datetime) -> None:
        metrics = self.context.metrics
        if not self._cooldown.should_send(key, at):
            metrics.inc("alerts_suppressed")
            self.log.debug("alert suppressed (cooldown {}): {}", key, text)
            return
        # Saved before it goes out: a process killed in between loses this alert rather than repeating it
        # inside its cooldown after the restart.
        self._save_cooldowns(at)
        self._write_ledger(key, text, at)
        self.context.spine.publish(AlertSent(at=at, key=key, text=text))
        self.log.info("ALERT {}", text)
        metrics.push_recent("recent_alerts", f"{at:%H:%M:%S} {label}")
        if self._dispatcher is None:
            metrics.inc("alerts_sent")
        elif not self._dispatcher.submit(text):
            self.log.warning("alert queue full ({}); dropped: {}", QUEUE_LIMIT, text)

    def _write_ledger(self, key: str, text: str, at: datetime) -> None:
        path = self.context.paths.alerts_ledger(at.date())
        try:
            if self._ledger is None or self._ledger.path != path:
                self._close_ledger()
                self._ledger = JsonlWriter(path)
            cooldown = self.context.settings.alerts.cooldown_seconds
            self._ledger.write({"at": at, "key": key, "cooldown_seconds": cooldown, "text": text})
            self._ledger.flush()
        except (OSError, ValueError) as error:
            self.log.error("could not write the alert ledger: {}", error)

    def _close_ledger(self) -> None:
        ledger, self._ledger = self._ledger, None
        if ledger is not None:
            try:
                ledger.close()
            except OSError as error:
                self.log.error("could not close the alert ledger: {}", error)

    def _stop_dispatcher(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.stop()

    def _load_cooldowns(self) -> dict[str, datetime]:
        document = self._store.load(STATE_NAME) or {}
        saved = document.get("last_sent", {})
        if not isinstance(saved, dict):
            self.log.warning("state {}: 'last_sent' is not an object; starting without cooldowns", STATE_NAME)
            return {}
        restored: dict[str, datetime] = {}
        for key, text in saved.items():
            try:
                moment = datetime.fromisoformat(text)
            except (TypeError, ValueError):
                self.log.warning("state {}: bad time for {!r}; ignored", STATE_NAME, key)
                continue
            if moment.tzinfo is None:
                self.log.warning("state {}: naive time for {!r}; ignored", STATE_NAME, key)
                continue
            restored[key] = moment
        return restored

    def _save_cooldowns(self, now: datetime) -> None:
        self._cooldown.prune(now)
        last_sent = {str(key): moment.isoformat() for key, moment in self._cooldown.last_sent().items()}
        try:
            self._store.save(STATE_NAME, {"last_sent": last_sent})
        except OSError as error:
            self.log.error("could not save alert cooldowns: {}", error)


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
