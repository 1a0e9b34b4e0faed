"""Per-actor log files, stdlib and pykka records routed in, KST midnight rotation, secret redaction."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pykka
import pytest
from freezegun import freeze_time
from loguru import logger
from pydantic import SecretStr

from runtime.clock import KST, SystemClock
from runtime.logs import (
    actor_logger,
    bind_thread_to_actor,
    clock_time,
    register_secret,
    reset_logging,
    setup_logging,
)

ACTORS = ("scanner", "token", "Recorder")


@pytest.fixture
def log_dir(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "logs"
    setup_logging(directory, ACTORS, retention_days=14)
    yield directory
    reset_logging()


def finish_and_read(log_dir: Path) -> dict[str, str]:
    """Close the sinks (flushing them) and return each file's text by actor name."""
    reset_logging()
    return {path.stem: path.read_text(encoding="utf-8") for path in sorted(log_dir.glob("*.log"))}


def only_in(files: dict[str, str], text: str) -> list[str]:
    return [name for name, content in files.items() if text in content]


class ScannerActor(pykka.ThreadingActor):
    """Tags its thread in on_start, as every product actor is expected to do."""

    def on_start(self) -> None:
        bind_thread_to_actor("scanner")

    def on_receive(self, message: object) -> object:
        if message == "crash":
            raise RuntimeError("scanner-crash-marker")
        logger.info("scanner handled {}", message)
        return None


class Recorder(pykka.ThreadingActor):
    """Does not tag its thread: pykka's thread name `Recorder-N` is the fallback."""

    def on_receive(self, message: object) -> object:
        raise RuntimeError(f"recorder-crash-marker {message}")


def test_a_tagged_record_lands_in_its_actor_file_and_no_other(log_dir: Path) -> None:
    assert {path.stem for path in log_dir.glob("*.log")} == {*ACTORS, "observer"}
    actor_logger("scanner").info("tagged-for-scanner")
    worker = threading.Thread(target=lambda: actor_logger("token").warning("tagged-for-token"))
    worker.start()
    worker.join(timeout=5)
    with logger.contextualize(actor="token"):
        logger.info("contextualized-for-token")
    logger.info("untagged-from-main")
    files = finish_and_read(log_dir)
    assert only_in(files, "tagged-for-scanner") == ["scanner"]
    assert only_in(files, "tagged-for-token") == ["token"]
    assert only_in(files, "contextualized-for-token") == ["token"]
    assert only_in(files, "untagged-from-main") == ["observer"]


def test_a_pykka_actor_crash_traceback_lands_in_its_own_file(log_dir: Path) -> None:
    scanner = ScannerActor.start()
    scanner.ask("warm-up-message", timeout=5)
    scanner.tell("crash")
    assert scanner.actor_stopped.wait(timeout=5)
    files = finish_and_read(log_dir)
    assert only_in(files, "scanner handled warm-up-message") == ["scanner"]
    assert only_in(files, "RuntimeError: scanner-crash-marker") == ["scanner"]
    assert "Traceback (most recent call last)" in files["scanner"]
    assert "Unhandled exception in ScannerActor" in files["scanner"]


def test_an_untagged_pykka_thread_falls_back_to_its_class_name(log_dir: Path) -> None:
    recorder = Recorder.start()
    recorder.tell("boom")
    assert recorder.actor_stopped.wait(timeout=5)
    files = finish_and_read(log_dir)
    assert only_in(files, "RuntimeError: recorder-crash-marker boom") == ["Recorder"]


def test_standard_library_records_are_routed_into_loguru(log_dir: Path) -> None:
    logging.getLogger("some.library").warning("stdlib-warning %s", "formatted")

    def tagged_thread() -> None:
        bind_thread_to_actor("token")
        logging.getLogger("urllib3.connectionpool").error("stdlib-error-on-token-thread")

    worker = threading.Thread(target=tagged_thread)
    worker.start()
    worker.join(timeout=5)
    files = finish_and_read(log_dir)
    assert only_in(files, "stdlib-warning formatted") == ["observer"]
    assert only_in(files, "stdlib-error-on-token-thread") == ["token"]


def test_console_gets_info_and_above_files_get_debug(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_logging(tmp_path, ACTORS, retention_days=14, console_level="INFO")
    actor_logger("scanner").debug("debug-only-in-file")
    actor_logger("scanner").info("info-everywhere")
    files = finish_and_read(tmp_path)
    console = capsys.readouterr().err
    assert "info-everywhere" in console and "scanner" in console
    assert "debug-only-in-file" not in console
    assert "debug-only-in-file" in files["scanner"] and "info-everywhere" in files["scanner"]


def test_log_lines_carry_kst_time(log_dir: Path) -> None:
    with freeze_time(datetime(2026, 9, 14, 9, 30, 5, tzinfo=KST)):
        actor_logger("scanner").info("stamped")
    assert "2026-09-14 09:30:05.000 +0900" in finish_and_read(log_dir)["scanner"]


def test_files_rotate_at_kst_midnight_and_old_ones_expire(tmp_path: Path) -> None:
    expired = tmp_path / "scanner.2020-01-01_00-00-00_000000.log"
    expired.write_text("from long ago\n", encoding="utf-8")
    forty_days_ago = time.time() - 40 * 86400
    os.utime(expired, (forty_days_ago, forty_days_ago))
    setup_logging(tmp_path, ACTORS, retention_days=14)
    today = SystemClock().now().date()
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), tzinfo=KST)
    actor_logger("scanner").info("first-day")
    with freeze_time(midnight - timedelta(minutes=1)):
        actor_logger("scanner").info("still-first-day")
    assert sorted(path.name for path in tmp_path.glob("scanner*.log")) == [expired.name, "scanner.log"]
    with freeze_time(midnight + timedelta(minutes=1)):
        actor_logger("scanner").info("second-day")
    reset_logging()
    scanner_files = sorted(tmp_path.glob("scanner*.log"))
    assert expired not in scanner_files
    assert len(scanner_files) == 2
    current = (tmp_path / "scanner.log").read_text(encoding="utf-8")
    (rotated,) = [path for path in scanner_files if path.name != "scanner.log"]
    assert "second-day" in current and "first-day" not in current
    assert "first-day" in rotated.read_text(encoding="utf-8")
    assert "still-first-day" in rotated.read_text(encoding="utf-8")


def test_registered_secrets_are_redacted_everywhere(log_dir: Path) -> None:
    token = "tok-5a1d7e3c9b2f-REDACT-ME"
    app_secret = SecretStr("appsecret-0f9e8d7c6b5a-REDACT-ME")
    register_secret(token)
    register_secret(app_secret)
    register_secret(None)
    actor_logger("token").info("issued {} for {}", token, app_secret.get_secret_value())
    logging.getLogger("requests").warning("GET /quotes?token=%s", token)
    try:
        raise ValueError(f"rejected {token}")
    except ValueError:
        actor_logger("token").exception("refresh failed")
    files = finish_and_read(log_dir)
    everything = "".join(files.values())
    assert token not in everything and app_secret.get_secret_value() not in everything
    assert "issued *** for ***" in files["token"]
    assert "GET /quotes?token=***" in files["observer"]
    assert "ValueError: rejected ***" in files["token"] and "refresh failed" in files["token"]


def test_a_secret_in_an_actor_crash_is_redacted(log_dir: Path) -> None:
    payload = "crash-payload-3e7a9d1c"
    register_secret(payload)
    recorder = Recorder.start()
    recorder.tell(payload)
    assert recorder.actor_stopped.wait(timeout=5)
    files = finish_and_read(log_dir)
    assert "RuntimeError: recorder-crash-marker ***" in files["Recorder"]
    assert payload not in "".join(files.values())


def test_very_short_values_are_not_treated_as_secrets(log_dir: Path) -> None:
    register_secret("ab")
    actor_logger("scanner").info("abc stays readable")
    assert "abc stays readable" in finish_and_read(log_dir)["scanner"]


def test_the_process_log_name_is_reserved(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="observer"):
        setup_logging(tmp_path, ["scanner", "observer"], retention_days=14)


class Quiet(pykka.ThreadingActor):
    def on_start(self) -> None:
        bind_thread_to_actor("scanner")


def test_pykka_start_and_stop_lines_stay_out_of_the_files_at_the_default_level(log_dir: Path) -> None:
    Quiet.start().stop()
    files = finish_and_read(log_dir)
    assert not only_in(files, "Starting Quiet") and not only_in(files, "Stopped Quiet")


def test_pykka_start_and_stop_lines_come_back_when_the_console_asks_for_debug(tmp_path: Path) -> None:
    setup_logging(tmp_path, ACTORS, retention_days=14, console_level="DEBUG")
    Quiet.start().stop()
    files = finish_and_read(tmp_path)
    assert only_in(files, "Stopped Quiet") == ["scanner"]


def test_times_are_shown_as_kst_clock_times() -> None:
    moment = datetime(2026, 9, 14, 9, 40, 55, 123456, tzinfo=KST)
    assert clock_time(moment) == "09:40:55"
    assert clock_time(moment.isoformat()) == "09:40:55"
    assert clock_time(moment.astimezone(UTC)) == "09:40:55"
    assert clock_time(None) == "-"
    assert clock_time("not a time") == "not a time"
