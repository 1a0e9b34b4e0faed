"""Logging: one loguru file per actor, a console sink, stdlib/pykka records routed in, secrets redacted.

Which file a record lands in is decided once per record by a patcher that fills `extra["actor"]`:
1. the `actor` bound on the logger (`actor_logger(name)`, `logger.bind(actor=...)`, `contextualize`);
2. otherwise the thread's name with pykka's "-N" suffix removed. `bind_thread_to_actor(name)`, called in
   an actor's `on_start`, renames its thread to `name`, so everything logged on that thread lands in the
   actor's file without binding, including the crash traceback pykka logs when a told message raises.
Records of no listed actor go to `observer.log`, so nothing is lost.

pykka's own DEBUG lines (every actor's start and stop) are kept out unless the console level is DEBUG;
its errors (a crash's traceback) always come through. `clock_time` is how times are shown to people.

Files rotate at 00:00 KST and are kept `retention_days` days. `diagnose=False` everywhere: loguru's
variable dump could print secrets. As a second line of defence, any text given to `register_secret`
is replaced with `***` in messages (and in tracebacks that contain it).
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import traceback
from collections.abc import Iterable
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loguru import logger
from pydantic import SecretStr

if TYPE_CHECKING:
    from loguru import Logger, Record

PROCESS_LOG = "observer"
"""The file (`observer.log`) for records that belong to no listed actor; not usable as an actor name."""

REDACTED = "***"
MIN_SECRET_LENGTH = 4
"""Shorter values are not registered: redacting "1" or "ab" would mangle every line."""

FILE_FORMAT = (
    "{time:YYYY-MM-DD HH:mm:ss.SSS ZZ} | {level: <8} | {thread.name} | {name}:{function}:{line} | {message}"
)
CONSOLE_FORMAT = "{time:HH:mm:ss.SSS} | {level: <8} | {extra[actor]: <16} | {message}"

LOG_TIMEZONE = timezone(timedelta(hours=9), "KST")
"""Korea has no daylight saving time; a fixed offset is what loguru's `ZZ` token can print."""

_PYKKA_THREAD = re.compile(r"^(?P<name>.+)-\d+$")
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def setup_logging(
    log_dir: Path,
    actors: Iterable[str],
    retention_days: int,
    console_level: str = "INFO",
    file_level: str = "DEBUG",
) -> None:
    """Replace every loguru sink with one file per actor, `observer.log` and a console sink.

    Safe to call again (e.g. in tests): previous sinks are removed first.
    """
    names = tuple(dict.fromkeys(actors))
    if PROCESS_LOG in names:
        raise ValueError(f"{PROCESS_LOG!r} is the process log's name, not an actor name")
    log_dir.mkdir(parents=True, exist_ok=True)
    logger.remove()
    logger.configure(patcher=_patch)
    file_options: dict[str, Any] = {
        "level": file_level,
        "format": FILE_FORMAT,
        "rotation": time(0, 0, tzinfo=LOG_TIMEZONE),
        "retention": timedelta(days=retention_days),
        "encoding": "utf-8",
        "diagnose": False,
        "backtrace": False,
    }
    for name in names:
        logger.add(log_dir / f"{name}.log", filter=_for_actor(name), **file_options)
    listed = frozenset(names)
    logger.add(
        log_dir / f"{PROCESS_LOG}.log",
        filter=lambda record: record["extra"]["actor"] not in listed,
        **file_options,
    )
    logger.add(sys.stderr, level=console_level, format=CONSOLE_FORMAT, diagnose=False, backtrace=False)
    _route_standard_logging(library_debug=console_level in ("TRACE", "DEBUG"))


def reset_logging() -> None:
    """Undo `setup_logging`: close the files, unhook stdlib logging, log to stderr again."""
    logger.remove()
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if isinstance(handler, InterceptHandler)]:
        root.removeHandler(handler)
    logger.add(sys.stderr, diagnose=False)


def clock_time(value: object) -> str:
    """A moment as people read it on the status view and in log lines: `09:40:55` (KST), from an aware
    datetime or its ISO text; `-` for nothing, anything else as it is."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        moment = value.astimezone(LOG_TIMEZONE) if value.tzinfo is not None else value
        return f"{moment:%H:%M:%S}"
    return "-" if value is None else str(value)


def actor_logger(name: str) -> Logger:
    """A logger whose records land in `{log_dir}/{name}.log` from whichever thread logs them."""
    return logger.bind(actor=name)


def bind_thread_to_actor(name: str) -> None:
    """Name the calling thread after the actor, so its untagged records and crash tracebacks go to its file.

    Call it first thing in a pykka actor's `on_start` (which runs in the actor's own thread).
    """
    threading.current_thread().name = name


def register_secret(value: str | SecretStr | None) -> None:
    """Redact `value` from every later log message (None, empty and very short values are ignored)."""
    global _secrets
    text = value.get_secret_value() if isinstance(value, SecretStr) else value
    if not text or len(text) < MIN_SECRET_LENGTH:
        return
    with _secrets_lock:
        if text not in _secrets:
            _secrets = tuple(sorted((*_secrets, text), key=len, reverse=True))


def redact(text: str) -> str:
    """`text` with every registered secret replaced by `***`."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class InterceptHandler(logging.Handler):
    """Hands standard-library records (pykka's among them) to loguru, keeping level, caller and traceback."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        frame, depth = logging.currentframe(), 0
        while frame is not None and (depth == 0 or frame.f_code.co_filename == logging.__file__):
            frame = frame.f_back
            depth += 1
        logger.opt(depth=depth, exception=record.exc_info).log(level, record.getMessage())


def _route_standard_logging(*, library_debug: bool) -> None:
    """stdlib records into loguru at INFO and above; pykka's DEBUG lines (an actor's start and stop, an
    exception handed back to an asker) only when the console asks for DEBUG."""
    root = logging.getLogger()
    if not any(isinstance(handler, InterceptHandler) for handler in root.handlers):
        root.addHandler(InterceptHandler())
    root.setLevel(logging.INFO)
    logging.getLogger("pykka").setLevel(logging.DEBUG if library_debug else logging.INFO)


def _for_actor(name: str) -> Any:
    def belongs(record: Record) -> bool:
        return record["extra"]["actor"] == name

    return belongs


def _patch(record: Record) -> None:
    """Runs once per record before any sink: picks the actor, shows KST time, redacts secrets."""
    extra = record["extra"]
    if "actor" not in extra:
        thread_name = record["thread"].name
        match = _PYKKA_THREAD.match(thread_name)
        extra["actor"] = match["name"] if match else thread_name
    record["time"] = record["time"].astimezone(LOG_TIMEZONE)
    if not _secrets:
        return
    record["message"] = redact(record["message"])
    caught = record["exception"]
    if caught is not None:
        text = "".join(traceback.format_exception(caught.type, caught.value, caught.traceback))
        cleaned = redact(text)
        if cleaned != text:
            record["message"] += "\n" + cleaned.rstrip("\n")
            record["exception"] = None
