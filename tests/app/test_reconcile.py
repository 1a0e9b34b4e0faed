"""tools.reconcile on small hand-made run folders: the recorder's and notifier's file layout, real formats."""

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.bars import MinuteBar
from core.gaps import Gap
from core.recovery import build_recovery_records, gap_marker
from runtime.clock import KST
from runtime.paths import DataPaths
from tools.reconcile import GapCover, SentRecord, classify, duplicate_alerts, reconcile_run

DAY = datetime(2026, 11, 20, tzinfo=KST).date()
KEY, OTHER_KEY = "k" * 16, "o" * 16
ACCOUNTS = {KEY: "sim1"}


def at(hhmmss: str, micro: int = 0) -> datetime:
    hour, minute, second = (int(part) for part in hhmmss.split(":"))
    return datetime(2026, 11, 20, hour, minute, second, micro, tzinfo=KST)


class Run:
    """A run folder written the way the simulator, recorder, gap actor and notifier write it."""

    def __init__(self, root: Path) -> None:
        self.paths = DataPaths(root)
        self.sent_log = root / "sim" / "sent.jsonl"
        self.sent_log.parent.mkdir(parents=True)
        self.sent_log.touch()

    def sent(self, symbol: str, moment: datetime, cum_volume: int, key: str = KEY, fault: str = "") -> None:
        row = {"symbol": symbol, "exchange_time": moment.isoformat(), "price": 1000, "volume": 1,
               "cum_volume": cum_volume, "app_key_hash": key}
        if fault:
            row["fault"] = fault
        append(self.sent_log, json.dumps(row) + "\n")

    def recorded(self, symbol: str, moment: datetime, cum_volume: int) -> None:
        row = {"symbol": symbol, "exchange_time": moment.replace(microsecond=0).isoformat(),
               "received_at": moment.isoformat(), "price": 1000, "volume": 1, "cum_volume": cum_volume,
               "source": "ws"}
        append(self.tick_file(symbol), json.dumps(row) + "\n")

    def tick_file(self, symbol: str) -> Path:
        return self.paths.scalp_dir("sim1", "KOSPI", DAY) / f"ticks_{symbol}.jsonl"

    def marked(self, symbol: str, start: datetime, end: datetime) -> None:
        gap = Gap(symbol=symbol, start=start, end=end, expected=True, reason="websocket_reconnect")
        marker = gap_marker(gap, "longer than 60 s: not back-filled", at=end)
        append(self.paths.gap_markers("sim1", DAY), json.dumps(marker.to_json_dict()) + "\n")

    def recovered(self, symbol: str, start: datetime, end: datetime) -> None:
        gap = Gap(symbol=symbol, start=start, end=end, expected=True, reason="websocket_reconnect")
        minute = start.replace(second=0, microsecond=0)
        bar = MinuteBar(symbol=symbol, time=minute, open=1, high=2, low=1, close=2, volume=10, value=20)
        for record in build_recovery_records(gap, [bar], recovered_at=end):
            path = self.paths.recovery_file("sim1", "KOSPI", start, symbol)
            append(path, json.dumps(record.to_json_dict()) + "\n")

    def alert(self, key: str, moment: datetime, cooldown: float = 600.0) -> None:
        row = {"at": moment.isoformat(), "key": key, "cooldown_seconds": cooldown, "text": key}
        append(self.paths.alerts_ledger(DAY), json.dumps(row) + "\n")

    def reconcile(self):
        return reconcile_run(self.paths, self.sent_log, ACCOUNTS)


def append(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as file:
        file.write(text)


def test_a_sent_record_recorded_in_its_second_matches(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.sent("005930", at("09:31:05", 420_000), 100)
    run.recorded("005930", at("09:31:05", 420_000), 100)
    result = run.reconcile()
    assert (result.sim_ticks_sent, result.ticks_recorded, result.ticks_lost) == (1, 1, 0)


def test_a_record_outside_any_gap_and_not_recorded_is_lost(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.sent("005930", at("09:31:05"), 100)
    run.sent("005930", at("09:31:06", 500_000), 120)
    run.recorded("005930", at("09:31:05"), 100)
    run.recorded("005930", at("09:31:06"), 119)  # same second, another trade: not this record
    run.marked("005930", at("09:31:07"), at("09:32:30"))  # a gap that starts after it
    run.marked("000660", at("09:31:00"), at("09:32:30"))  # another symbol's gap
    result = run.reconcile()
    assert (result.ticks_recorded, result.ticks_in_marked_gaps, result.ticks_lost) == (1, 0, 1)
    assert result.lost_sample == ("sim1 005930 09:31:06 cum 120",)
    assert result.figures()["ticks_lost"] == 1


def test_records_inside_gaps_count_as_marked_or_recovered_by_whole_second(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.marked("005930", at("09:31:10", 700_000), at("09:32:30", 100_000))
    run.recovered("000660", at("09:31:10", 700_000), at("09:31:13", 300_000))
    run.sent("005930", at("09:31:10", 100_000), 1)  # the gap's first second, before its microseconds
    run.sent("005930", at("09:32:30", 900_000), 2)  # its last second
    run.sent("005930", at("09:32:31"), 3)  # after it
    run.sent("000660", at("09:31:13", 999_999), 4)
    result = run.reconcile()
    assert (result.ticks_in_marked_gaps, result.ticks_in_recovered_gaps, result.ticks_lost) == (2, 1, 1)


def test_the_data_dirs_of_several_hosts_reconcile_together(tmp_path: Path) -> None:
    """A stream worker journals under its data dir, the control that marked a gap under another: each
    alone loses ticks, the two together none."""
    worker, control = Run(tmp_path / "worker"), Run(tmp_path / "control")
    worker.sent("005930", at("09:31:05"), 100)
    worker.sent("005930", at("09:31:20"), 120)
    worker.recorded("005930", at("09:31:05"), 100)
    control.marked("005930", at("09:31:10"), at("09:31:30"))
    assert reconcile_run(worker.paths, worker.sent_log, ACCOUNTS).ticks_lost == 1
    together = reconcile_run([worker.paths, control.paths], worker.sent_log, ACCOUNTS)
    assert (together.ticks_recorded, together.ticks_in_marked_gaps, together.ticks_lost) == (1, 1, 0)


def test_a_recovered_gap_wins_over_a_marker_for_the_same_record() -> None:
    cover = GapCover()
    cover.add_marked("sim1", "005930", at("09:31:00"), at("09:33:00"))
    cover.add_recovered("sim1", "005930", at("09:31:10"), at("09:31:12"))
    sent = [SentRecord("sim1", "005930", at("09:31:11"), 5), SentRecord("sim1", "005930", at("09:31:20"), 6)]
    assert classify(sent, set(), cover)[:4] == (2, 0, 1, 1)


def test_other_app_keys_are_not_ours(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.sent("005930", at("09:31:05"), 100, key=OTHER_KEY)
    assert run.reconcile().sim_ticks_sent == 0


def test_faulty_frames_are_counted_and_still_need_a_gap(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.sent("005930", at("09:31:05"), 100, fault="malformed")
    run.sent("000660", at("09:31:05"), 200, fault="truncated")
    run.marked("000660", at("09:31:04"), at("09:31:05"))
    result = run.reconcile()
    assert (result.ticks_in_faulty_frames, result.ticks_in_marked_gaps, result.ticks_lost) == (2, 1, 1)


def test_a_torn_last_line_is_skipped_with_a_warning(tmp_path: Path, warnings: list[str]) -> None:
    run = Run(tmp_path)
    run.sent("005930", at("09:31:05"), 100)
    append(run.sent_log, '{"symbol":"005930","exchange_time":"2026-11-20T09:31:0')
    run.recorded("005930", at("09:31:05"), 100)
    append(run.tick_file("005930"), '{"symbol":"005930","exchange_ti')
    append(run.paths.gap_markers("sim1", DAY), '{"timestamp":')
    result = run.reconcile()
    assert (result.sim_ticks_sent, result.ticks_recorded, result.ticks_lost) == (1, 1, 0)
    torn = [line for line in warnings if "torn last line" in line]
    assert len(torn) == 3
    assert any(str(run.sent_log) in line for line in torn)


def test_an_alert_inside_its_cooldown_is_a_duplicate(tmp_path: Path) -> None:
    run = Run(tmp_path)
    run.alert("005930:volume_surge", at("09:31:00"))
    run.alert("005930:volume_surge", at("09:40:59"))  # 599 s later: inside the 600 s cooldown
    run.alert("005930:volume_surge", at("09:51:00"))  # 601 s after that: fine
    run.alert("000660:volume_surge", at("09:31:01"))  # another key
    run.alert("system:ws_suspended.sim1", at("09:31:00"), cooldown=60)
    run.alert("system:ws_suspended.sim1", at("09:32:00"), cooldown=60)  # exactly the cooldown: fine
    assert run.reconcile().duplicate_alerts == 1


def test_duplicate_alerts_skip_unusable_rows(warnings: list[str]) -> None:
    rows = [{"at": at("09:31:00").isoformat(), "key": "a", "cooldown_seconds": 600},
            {"at": "not a time", "key": "a", "cooldown_seconds": 600},
            {"at": (at("09:31:00") + timedelta(seconds=1)).isoformat(), "key": "a", "cooldown_seconds": 600}]
    assert duplicate_alerts(rows) == 1
    assert any("unusable row" in line for line in warnings)


BIG_DAY_TICKS = 1_000_000
BIG_DAY_SYMBOLS = 40
MEASURE = """
import json, sys, time, tracemalloc
from pathlib import Path
import pyarrow as pa
from tools.reconcile import reconcile_run
from runtime.paths import DataPaths
root, warm = Path(sys.argv[1]), Path(sys.argv[2])
reconcile_run(DataPaths(warm), warm / "sim" / "sent.jsonl", {"k" * 16: "sim1"})
tracemalloc.start()
started = time.perf_counter()
result = reconcile_run(DataPaths(root), root / "sim" / "sent.jsonl", {"k" * 16: "sim1"})
print(json.dumps({**result.figures(), "seconds": time.perf_counter() - started,
                  "python_peak": tracemalloc.get_traced_memory()[1],
                  "arrow_peak": pa.default_memory_pool().max_memory()}))
"""


def write_big_day(root: Path) -> None:
    """A day of `BIG_DAY_TICKS` sent ticks over `BIG_DAY_SYMBOLS` symbols, every one recorded except the
    last tick of each symbol, which falls in a marked gap."""
    run = Run(root)
    start = at("09:00:00")
    seconds = [(start + timedelta(seconds=n)).isoformat() for n in range(BIG_DAY_TICKS // 50 + 1)]
    files = {}
    with run.sent_log.open("w", encoding="utf-8") as sent:
        for n in range(BIG_DAY_TICKS):
            symbol, second = f"{100000 + n % BIG_DAY_SYMBOLS:06d}", seconds[n // 50]
            cum = n // BIG_DAY_SYMBOLS + 1
            sent.write(f'{{"symbol":"{symbol}","exchange_time":"{second[:19]}.{n % 50:06d}{second[19:]}",'
                       f'"price":1000,"volume":1,"cum_volume":{cum},"app_key_hash":"{KEY}"}}\n')
            if n >= BIG_DAY_TICKS - BIG_DAY_SYMBOLS:
                run.marked(symbol, start + timedelta(seconds=n // 50), start + timedelta(seconds=n // 50 + 1))
                continue
            if symbol not in files:
                run.tick_file(symbol).parent.mkdir(parents=True, exist_ok=True)
                files[symbol] = run.tick_file(symbol).open("w", encoding="utf-8")
            files[symbol].write(
                f'{{"symbol":"{symbol}","exchange_time":"{second}","received_at":"{second}","price":1000,'
                f'"volume":1,"cum_volume":{cum},"cum_value":1000,"change_rate":0.1,"ask1":1000,'
                f'"bid1":990,"side":"1","strength":100.0,"source":"ws"}}\n')
    for file in files.values():
        file.close()


@pytest.mark.timeout(600)
def test_a_million_tick_day_reconciles_in_bounded_memory(tmp_path: Path) -> None:
    write_big_day(tmp_path / "big")
    warm = Run(tmp_path / "warm")
    warm.sent("005930", at("09:31:05"), 100)
    warm.recorded("005930", at("09:31:05"), 100)
    done = subprocess.run([sys.executable, "-c", MEASURE, str(tmp_path / "big"), str(tmp_path / "warm")],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, check=True)
    figures = json.loads(done.stdout.splitlines()[-1])
    print(f"reconciled {BIG_DAY_TICKS} sent ticks in {figures['seconds']:.2f} s, peak "
          f"{figures['python_peak'] / 1e6:.1f} MB Python + {figures['arrow_peak'] / 1e6:.1f} MB pyarrow")
    assert figures["sim_ticks_sent"] == BIG_DAY_TICKS
    assert figures["ticks_recorded_matched"] == BIG_DAY_TICKS - BIG_DAY_SYMBOLS
    assert (figures["ticks_in_marked_gaps"], figures["ticks_lost"]) == (BIG_DAY_SYMBOLS, 0)
    assert figures["python_peak"] < 50e6
    assert figures["arrow_peak"] < 50e6
