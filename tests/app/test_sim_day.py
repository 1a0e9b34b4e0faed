"""app.sim_day on data folders written in the recorder's, gap actor's and simulator's formats."""

import json
from datetime import date, datetime, time
from pathlib import Path

import pytest

from app.sim_day import DayAlreadyRun, start_time
from config.settings import Settings
from runtime.clock import KST
from runtime.paths import DataPaths

DAY = date(2024, 11, 20)
KRX_CLOSE = time(15, 30)


def append(path: Path, row: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(row) + "\n")


def kst(hhmmss: str, micro: int = 0, day: date = DAY) -> str:
    hour, minute, second = (int(part) for part in hhmmss.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=KST).isoformat()


def folders(root: Path) -> list[Path]:
    return [root / "observer", root / "sim"]


def test_a_fresh_folder_starts_where_asked(tmp_path: Path) -> None:
    assert start_time(folders(tmp_path), DAY, time(9, 28), KRX_CLOSE) == (time(9, 28), None)


def test_a_day_with_data_resumes_after_its_latest_record_of_any_file(tmp_path: Path) -> None:
    paths = DataPaths(tmp_path)
    append(paths.tick_file("sim1", "KOSPI", DAY, "005930"),
           {"symbol": "005930", "exchange_time": kst("09:34:49"), "received_at": kst("09:34:49", 300_000),
            "cum_volume": 10, "source": "ws"})
    append(paths.gap_markers("sim1", DAY), {"timestamp": kst("09:34:50", 145_030), "symbol": "005930",
                                            "start_time": kst("09:34:49"), "end_time": kst("09:34:50")})
    append(tmp_path / "sim" / f"{DAY:%Y%m%d}_sent.jsonl", {"symbol": "005930",
                                                           "exchange_time": kst("09:34:49", 900_000)})
    append(paths.alerts_ledger(date(2024, 11, 21)), {"at": kst("10:00:00", day=date(2024, 11, 21))})
    start, latest = start_time(folders(tmp_path), DAY, time(9, 28), KRX_CLOSE)
    assert start == time(9, 34, 51)
    assert latest == datetime.fromisoformat(kst("09:34:50", 145_030))


def test_a_later_start_than_the_data_is_kept(tmp_path: Path) -> None:
    append(DataPaths(tmp_path).alerts_ledger(DAY), {"at": kst("09:31:00"), "key": "a"})
    assert start_time(folders(tmp_path), DAY, time(9, 40), KRX_CLOSE) == (time(9, 40), None)


def test_a_day_recorded_to_its_close_is_refused(tmp_path: Path) -> None:
    append(DataPaths(tmp_path).alerts_ledger(DAY), {"at": kst("15:29:59", 500_000), "key": "a"})
    with pytest.raises(DayAlreadyRun, match="up to 15:29:59, past the 15:30 close"):
        start_time(folders(tmp_path), DAY, time(9, 28), KRX_CLOSE)
    unified_close = Settings().sessions.span("unified")[1]  # Nextrade's after-market goes on to 20:00
    start, latest = start_time(folders(tmp_path), DAY, time(9, 28), unified_close)
    assert (start, latest) == (time(15, 30), datetime.fromisoformat(kst("15:29:59", 500_000)))
