"""Spine messages as table rows: each kept type finds its table and day, others none, a bad one is refused."""

from __future__ import annotations

import json
from datetime import date, datetime

import pytest

from runtime.clock import KST
from spine import wire
from store.facts import day_of, row_of
from store.tables import HEALTH, OVERFLOW, PHASE_CHANGES, to_table


def test_an_overflow_line_keeps_its_metadata_as_json_text_and_its_day() -> None:
    late = datetime(2026, 9, 14, 23, 59, tzinfo=KST)
    line = wire.Overflowed(account="sim1", timestamp=late, symbol="005930", trigger_type=None,
                           trigger_strength=None, priority_score=0.4, reason="slots_full",
                           current_slot_min_score=None, metadata={"rank": 3})  # fmt: skip
    table, row = row_of(json.loads(line.model_dump_json()))
    assert table == "overflow" and day_of(table, row) == date(2026, 9, 14)  # the KST day, not UTC's
    typed = to_table(OVERFLOW, [row]).to_pylist()[0]
    assert typed["metadata"] == '{"rank": 3}' and typed["symbol"] == "005930"


def test_phase_changes_and_health_have_tables_of_their_own() -> None:
    at = datetime(2026, 9, 14, 15, 40, tzinfo=KST)
    phase = wire.PhaseChange(at=at, phase="shutdown", previous="idle")
    table, row = row_of(json.loads(phase.model_dump_json()))
    assert table == "phase_changes" and day_of(table, row) == date(2026, 9, 14)
    assert to_table(PHASE_CHANGES, [row]).to_pylist() == [{"at": at, "phase": "shutdown", "previous": "idle"}]
    health = wire.Health(at=at, uptime_seconds=12.5, phase="full_operation", actors_alive=3, actors_total=4,
                         actors_down=("scanner",), restarts={"scanner": 2, "gaps": 0}, counters={"scans": 7},
                         published=10, dropped=1)  # fmt: skip
    table, row = row_of(json.loads(health.model_dump_json()))
    typed = to_table(HEALTH, [row]).to_pylist()[0]
    assert table == "health" and typed["uptime_seconds"] == 12.5 and typed["actors_total"] == 4
    assert json.loads(typed["actors_down"]) == ["scanner"] and json.loads(typed["counters"]) == {"scans": 7}
    assert typed["restarts"] == '{"gaps": 0, "scanner": 2}'


def test_messages_no_table_keeps_map_to_none_and_a_bad_one_is_refused() -> None:
    due = wire.DayEventDue(at=datetime(2026, 9, 14, 21, 0, tzinfo=KST), event="daily_backup")
    assert row_of(json.loads(due.model_dump_json())) is None
    with pytest.raises(ValueError):
        row_of({"type": "tick", "version": 1, "symbol": "005930", "price": "seventy"})
