"""app.summary: the exit code the process returns is the one its summary file says."""

import json
from pathlib import Path

from app.summary import conclude, write_summary


def summary(**changes: object) -> dict:
    return {"ticks_lost": 0, "ticks_lost_sample": [], "actors_alive": 10, "actors_total": 10,
            "actors_down": [], "duplicate_alerts": 0, "exit_code": 0, **changes}


def test_a_failed_chaos_day_exits_3_and_its_summary_says_so(tmp_path: Path) -> None:
    written = summary(ticks_lost=2, ticks_lost_sample=["sim1 005930 09:31:06 cum 120"])
    exit_code, failures = conclude(written, 0, chaos_steps=20)
    write_summary(tmp_path / "summary.json", written)
    on_disk = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert exit_code == 3 and len(failures) == 1
    assert (on_disk["exit_code"], on_disk["supervisor_exit_code"], on_disk["chaos_passed"]) == (3, 0, False)


def test_a_passed_chaos_day_and_an_escalation_keep_their_codes() -> None:
    passed = summary()
    assert conclude(passed, 0, chaos_steps=20) == (0, [])
    assert (passed["exit_code"], passed["chaos_passed"]) == (0, True)
    escalated = summary(exit_code=1)
    assert conclude(escalated, 1, chaos_steps=None) == (1, [])
    assert escalated["exit_code"] == 1 and "chaos_passed" not in escalated
