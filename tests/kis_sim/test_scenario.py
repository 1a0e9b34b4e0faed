"""Scenario files: parsing, one-line validation errors, and the effects each event has on a minute."""

from __future__ import annotations

import json
from datetime import date, time
from pathlib import Path

import pytest

from tools.kis_sim.market import Market
from tools.kis_sim.scenario import EventKind, Scenario, ScenarioError


def _seconds(hh: int, mm: int, ss: int = 0) -> int:
    return hh * 3600 + mm * 60 + ss


def _surge(**fields: object) -> dict[str, object]:
    return {"at": "09:30", "symbol": "005930", "event": "volume_surge", **fields}


def test_load_reads_a_valid_file_with_defaults(tmp_path: Path) -> None:
    path = tmp_path / "day.json"
    path.write_text(
        json.dumps([
            {"at": "09:30", "symbol": "005930", "event": "volume_surge", "factor": 5.0, "minutes": 10},
            {"at": "10:15:30", "symbol": "000660", "event": "halt"},
            {"at": "09:05", "symbol": "005930", "event": "trade_burst", "factor": 3},
        ]),
        encoding="utf-8",
    )
    scenario = Scenario.load(path)
    assert [event.event for event in scenario.events] == [
        EventKind.TRADE_BURST, EventKind.VOLUME_SURGE, EventKind.HALT
    ]
    burst, surge, halt = scenario.events
    assert surge.at == time(9, 30) and surge.factor == 5.0 and surge.minutes == 10
    assert burst.minutes == 10.0 and burst.factor == 3.0
    assert halt.at == time(10, 15, 30) and halt.symbol == "000660"
    assert scenario.symbols == frozenset({"005930", "000660"})
    assert scenario.events_for("005930") == (burst, surge)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"at": "09:30"}, "expected a JSON list"),
        (["x"], "[0]: expected an object"),
        ([{"at": "09:30", "symbol": "005930", "event": "halt", "colour": 1}], "unknown key(s) colour"),
        ([{"symbol": "005930", "event": "halt"}], "missing required key 'at'"),
        ([{"at": "9:30", "symbol": "005930", "event": "halt"}], "'at' must be"),
        ([{"at": "25:00", "symbol": "005930", "event": "halt"}], "not a time of day"),
        ([{"at": 930, "symbol": "005930", "event": "halt"}], "'at' must be"),
        ([{"at": "09:30", "symbol": "5930", "event": "halt"}], "symbol must be a 6-character code"),
        ([{"at": "09:30", "symbol": "005930", "event": "meteor"}], "event must be one of"),
        ([{"at": "09:30", "symbol": "005930", "event": "volume_surge"}], "needs a 'factor'"),
        ([_surge(factor=0)], "'factor' must be a positive"),
        ([_surge(factor=-2)], "'factor' must be a positive"),
        ([_surge(factor=True)], "'factor' must be a positive"),
        ([_surge(factor="5")], "'factor' must be a positive"),
        ([_surge(factor=float("nan"))], "'factor' must be a positive"),
        ([_surge(factor=2, minutes=0)], "'minutes' must be a positive"),
    ],
)
def test_invalid_entries_give_one_clear_line(data: object, fragment: str) -> None:
    with pytest.raises(ScenarioError) as error:
        Scenario.from_list(data, "day.json")
    message = str(error.value)
    assert fragment in message
    assert message.startswith("day.json")
    assert "\n" not in message


def test_broken_json_and_missing_file_are_one_line_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('[{"at": "09:30",', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"broken.json: not valid JSON \(line 1") as error:
        Scenario.load(broken)
    assert "\n" not in str(error.value)
    with pytest.raises(ScenarioError, match="cannot read scenario file"):
        Scenario.load(tmp_path / "absent.json")


def test_effects_cover_every_minute_that_overlaps_the_window() -> None:
    scenario = Scenario.from_list([
        {"at": "10:00:30", "symbol": "005930", "event": "volume_surge", "factor": 4, "minutes": 2},
        {"at": "10:01", "symbol": "005930", "event": "volume_surge", "factor": 2, "minutes": 1},
        {"at": "10:01", "symbol": "005930", "event": "volatility_spike", "factor": 3, "minutes": 1},
        {"at": "10:05", "symbol": "005930", "event": "halt", "minutes": 1},
    ])
    minute = lambda hh, mm: scenario.effects("005930", _seconds(hh, mm), _seconds(hh, mm + 1))  # noqa: E731
    assert minute(9, 59).volume == 1.0
    assert minute(10, 0).volume == 4.0  # the event starts inside this minute
    assert minute(10, 1).volume == 8.0 and minute(10, 1).volatility == 3.0
    assert minute(10, 2).volume == 4.0  # 10:00:30 + 2 min = 10:02:30
    assert minute(10, 3).volume == 1.0
    assert minute(10, 5).halted and not minute(10, 6).halted
    assert scenario.effects("000660", _seconds(10, 0), _seconds(10, 1)).volume == 1.0


def test_market_refuses_events_for_unknown_symbols() -> None:
    scenario = Scenario.from_list([{"at": "09:30", "symbol": "999990", "event": "halt"}])
    with pytest.raises(ScenarioError, match="unknown symbol '999990'"):
        Market(trading_date=date(2026, 3, 10), n_symbols=40, scenario=scenario)
