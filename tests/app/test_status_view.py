"""The status view shows what the actors put in the shared metrics."""

from rich.console import Console

from app.status_view import render
from runtime.metrics import Metrics


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
    metrics.push_recent("recent_alerts", "09:31:02 005930:volume_surge")
    console = Console(record=True, width=120)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 812.0))
    screen = console.export_text()
    assert "full_operation" in screen and "ticks/s 812" in screen
    assert "acct1" in screen and "connected" in screen and "40" in screen
    assert "12,345" in screen
    assert "09:31:02 005930 volume_surge" in screen and "09:31:02 005930:volume_surge" in screen


def test_the_screen_names_the_dashboard_when_there_is_one():
    metrics = Metrics()
    console = Console(record=True, width=160)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 0.0))
    assert "dashboard" not in console.export_text()
    metrics.set("dashboard_url", "http://127.0.0.1:8600/")
    console = Console(record=True, width=160)
    console.print(render(metrics.snapshot(), "2026-09-14 09:31:05 KST", 0.0))
    assert "dashboard http://127.0.0.1:8600/" in console.export_text()
