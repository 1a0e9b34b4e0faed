"""Checking control requests (`surfaces.commands`): the message each one becomes, and one sentence for each
bad one."""

from __future__ import annotations

from datetime import datetime, time

import pytest

from messages.control import ManualTrigger, PicksLoaded, ScanNow, TrackBPaused
from messages.selection import ManualOverride
from runtime.clock import KST
from surfaces.commands import CommandError, parse_command

NOW = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


def test_each_command_becomes_its_message() -> None:
    pin = parse_command("pin", {"symbol": " 005930 "}, NOW)
    assert (pin.actor, pin.message, pin.symbols) == (
        "triggers",
        ManualOverride(at=NOW, symbol="005930", active=True),
        ("005930",),
    )
    assert parse_command("unpin", {"symbol": "0088m0"}, NOW).message.active is False
    trigger = parse_command("trigger", {"symbol": "000660", "ttl_seconds": 90}, NOW).message
    assert trigger == ManualTrigger(at=NOW, symbol="000660", ttl_seconds=90)
    picks = parse_command("picks", {"picks": ["005930", {"symbol": "000660", "score": 0.4}, "005930"]}, NOW)
    assert isinstance(picks.message, PicksLoaded)
    assert [(p.symbol, p.score) for p in picks.message.picks] == [("005930", 1.0), ("000660", 0.4)]
    assert picks.symbols == ("005930", "000660")
    scan = parse_command("scan", {}, NOW)
    assert (scan.actor, scan.message) == ("scanner", ScanNow(at=NOW))
    pause = parse_command("trackb", {"paused": True}, NOW)
    assert (pause.actor, pause.message) == ("slots", TrackBPaused(at=NOW, paused=True))


@pytest.mark.parametrize(
    ("name", "body", "status", "words"),
    [
        ("pin", [], 400, "JSON object"),
        ("pin", {"symbol": 5930}, 400, "symbol is missing"),
        ("pin", {"symbol": "5930"}, 400, "unknown symbol"),
        ("pin", {"symbol": "005930", "ttl_seconds": 5}, 400, "unexpected field"),
        ("trigger", {"symbol": "005930"}, 400, "must be a number"),
        ("trigger", {"symbol": "005930", "ttl_seconds": True}, 400, "must be a number"),
        ("trigger", {"symbol": "005930", "ttl_seconds": -1}, 400, "out of range"),
        ("trigger", {"symbol": "005930", "ttl_seconds": 86400}, 400, "out of range"),
        ("picks", {"picks": "005930"}, 400, "non-empty list"),
        ("picks", {"picks": [["005930"]]}, 400, "symbol or a"),
        ("picks", {"picks": ["005930"] * 201}, 400, "at most 200"),
        ("picks", {"picks": [{"symbol": "005930", "score": -0.1}]}, 400, "from 0 to 1"),
        ("scan", {"now": True}, 400, "unexpected field"),
        ("trackb", {}, 400, "paused must be true"),
        ("halt", {}, 404, "unknown command"),
    ],
)
def test_a_bad_request_is_one_sentence(name: str, body: object, status: int, words: str) -> None:
    with pytest.raises(CommandError) as refused:
        parse_command(name, body, NOW)
    assert refused.value.status == status
    assert words in refused.value.sentence and "\n" not in refused.value.sentence


def test_scheduled_picks_wait_for_the_next_picks_time_of_a_trading_day() -> None:
    def apply_at(now: datetime) -> datetime | None:
        body = {"picks": ["005930"], "when": "scheduled"}
        return parse_command("picks", body, now, time(7, 20)).message.apply_at

    assert apply_at(NOW.replace(hour=6)) == NOW.replace(hour=7, minute=20)
    assert apply_at(NOW) == datetime(2024, 3, 5, 7, 20, tzinfo=KST)
    assert apply_at(datetime(2024, 3, 9, 12, 0, tzinfo=KST)) == datetime(2024, 3, 11, 7, 20, tzinfo=KST)
    assert parse_command("picks", {"picks": ["005930"]}, NOW).message.apply_at is None
    with pytest.raises(CommandError, match="scheduled"):
        parse_command("picks", {"picks": ["005930"], "when": "tomorrow"}, NOW)
