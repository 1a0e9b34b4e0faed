"""The status view shows what the actors put in the shared metrics."""

from datetime import date, datetime

from rich.console import Console

from app.status_view import render, status_line, wakeup_text
from runtime.clock import KST
from runtime.metrics import Metrics

AT = datetime(2026, 9, 14, 9, 40, 55, 123456, tzinfo=KST)


def screen_of(metrics: Metrics) -> str:
    console = Console(record=True, width=160)
    console.print(render(metrics.snapshot(), "2026-09-14 09:41:00 KST", 812.0))
    return console.export_text()


def test_recent_items_keep_only_the_newest():
    metrics = Metrics()
    for i in range(8):
        metrics.push_recent("recent_alerts", f"alert {i}", keep=5)
    assert metrics.snapshot()["recent_alerts"] == [f"alert {i}" for i in range(3, 8)]


def test_the_screen_shows_accounts_counts_and_recent_items():
    metrics = Metrics()
    metrics.set("slots_in_use.acct1", 40)
    metrics.set("ws_state.acct1", "connected")
    metrics.set("phase", "full_operation")
    metrics.inc("ticks_recorded", 12345)
    metrics.push_recent("recent_triggers", "09:31:02 005930 volume_surge")
    metrics.push_recent("recent_alerts", "09:31:02 volume surge 005930 삼성전자")
    console = Console(record=True, width=120)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 812.0))
    screen = console.export_text()
    assert "full_operation" in screen and "ticks/s 812" in screen
    assert "acct1" in screen and "connected" in screen and "40 / ?" in screen
    assert "12,345" in screen
    assert "09:31:02 005930 volume_surge" in screen and "09:31:02 volume surge 005930 삼성전자" in screen


def test_slots_show_as_used_over_capacity_per_account() -> None:
    metrics = Metrics()
    metrics.set("slots_in_use.acct1", 38)
    metrics.set("slots_capacity.acct1", 41)
    metrics.set("slots_in_use.acct2", 0)
    metrics.set("slots_capacity.acct2", 40)
    metrics.set("ws_state.acct2", "connected")
    screen = screen_of(metrics)
    assert "slots used / capacity" in screen
    assert "38 / 41" in screen and "0 / 40" in screen
    line = status_line(metrics.snapshot(), "2026-09-14 09:41:00 KST", 812.0)
    assert "slots acct1=38/41 acct2=0/40" in line


def test_registrations_show_split_into_trades_books_and_program() -> None:
    metrics = Metrics()
    for kind, count in (("trades", 34), ("books", 3), ("program", 2), ("notice", 1)):
        metrics.set(f"registrations_{kind}.acct1", count)
    metrics.set("ws_state.acct1", "connected")
    screen = screen_of(metrics)
    assert "registrations trades / books / program" in screen and "34 / 3 / 2" in screen
    line = status_line(metrics.snapshot(), "2026-09-14 09:41:00 KST", 812.0)
    assert "registrations(trades/books/program) acct1=34/3/2" in line


def test_times_are_clock_times_not_iso_text() -> None:
    metrics = Metrics()
    metrics.set("last_scan_at", AT.isoformat())
    screen = screen_of(metrics)
    assert "last scan 09:40:55" in screen
    assert "2026-09-14T" not in screen and "123456" not in screen
    assert "last_scan=09:40:55" in status_line(metrics.snapshot(), "now", 0.0)


def test_the_universe_build_and_the_context_sync_are_shown() -> None:
    metrics = Metrics()
    assert "universe not built yet" in screen_of(metrics) and "context not synced yet" in screen_of(metrics)
    metrics.set("universe_symbols", 2345)
    metrics.set("universe_day", date(2026, 9, 14).isoformat())
    metrics.set("universe_fallback", False)
    metrics.set("universe_built_at", AT.replace(hour=5, minute=0, second=12))
    metrics.set("context_synced_at", AT.replace(minute=30, second=0))
    metrics.set("context_snapshots", 12)
    metrics.set("context_movers", 40)
    screen = screen_of(metrics)
    assert "universe 2,345 symbols for 2026-09-14, built 05:00:12" in screen
    assert "context synced 09:30:00 from 12 snapshots, 40 movers" in screen


def test_the_disk_line_says_what_waits_since_when_writes_fail_and_what_was_dropped() -> None:
    metrics = Metrics()
    assert "disk ok, 0.0 MiB waiting (0 lines)" in screen_of(metrics)
    metrics.set("recorder_write_failing_since", AT)
    metrics.set("recorder_buffered_bytes", 12 * 1024 * 1024)
    metrics.set("recorder_buffered_lines", 45000)
    metrics.inc("ticks_dropped", 1234)
    expected = ("disk writes FAILING since 09:40:55, 12.0 MiB waiting (45,000 lines), "
                "1,234 ticks dropped (marked as gaps)")
    assert expected in screen_of(metrics)
    assert expected in status_line(metrics.snapshot(), "now", 0.0)


def test_the_screen_names_the_dashboard_when_there_is_one():
    metrics = Metrics()
    console = Console(record=True, width=160)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 0.0))
    assert "dashboard" not in console.export_text()
    metrics.set("dashboard_url", "http://127.0.0.1:8600/")
    console = Console(record=True, width=160)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 0.0))
    assert "dashboard http://127.0.0.1:8600/" in console.export_text()


def test_the_wake_up_steps_done_and_the_next_one_are_shown() -> None:
    metrics = Metrics()
    assert "wake-up: no sequence today" in screen_of(metrics)
    rows = [
        {"step": "wake", "due_at": AT.replace(hour=7, minute=0).isoformat(), "state": "done", "attempts": 1,
         "detail": "", "retry_at": None},
        {"step": "ws_preconnect", "due_at": AT.replace(hour=7, minute=3).isoformat(), "state": "retrying",
         "attempts": 1, "detail": "acct1: WebSocket reconnecting",
         "retry_at": AT.replace(hour=7, minute=4, second=0).isoformat()},
        {"step": "health_check", "due_at": AT.replace(hour=7, minute=10).isoformat(), "state": "pending",
         "attempts": 0, "detail": "", "retry_at": None},
    ]
    metrics.set("wakeup", rows)
    text = wakeup_text(metrics.snapshot())
    assert text == "wake-up: wake ok ws_preconnect RETRYING health_check -; next ws_preconnect at 07:04:00"
    assert text in screen_of(metrics) and text in status_line(metrics.snapshot(), "now", 0.0)


def test_a_degraded_context_sync_says_so() -> None:
    metrics = Metrics()
    metrics.set("context_synced_at", AT.replace(minute=30, second=0))
    metrics.set("context_snapshots", 1)
    metrics.set("context_degraded", "1 of the 2 Track A snapshots needed: Track B started without context "
                                    "(degraded mode)")
    assert "context DEGRADED at 09:30:00: 1 of the 2 Track A snapshots needed" in screen_of(metrics)
