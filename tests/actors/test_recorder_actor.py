"""RecorderActor: real files in tmp_path, fed by real actors (and by the simulator through the connection)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import os
import subprocess
import tarfile
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pykka
import pytest

from actors import recorder as recorder_module
from actors.directory import Directory
from actors.notifier import NotifierActor
from actors.recorder import RecorderActor, tick_line
from actors.supervisor import ChildSpec, Supervisor
from config.settings import RecorderSettings, Settings, StorageSettings
from core.alerts import make_alert
from core.bars import MinuteBar
from core.gaps import Gap
from core.recovery import build_recovery_records, gap_marker
from core.schedule import DayEvent
from kis.models import MultiQuote
from kis.ticks import TradeFrame, TradeTick
from kis.ws_codec import decode
from messages.alerts import AlertRaised, SystemAlert
from messages.market import ScanCompleted, SymbolProfile, TicksReceived, UniverseReady
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from messages.schedule import DayEventFired
from messages.streaming import SetSubscriptions
from messages.system import ChildFailed, Crash, Ping
from runtime.clock import KST, SimulatedClock
from runtime.jsonl import read_jsonl
from tests.actors.control_plane_support import Journal, RecordingActor, make_context, sim_account
from tests.actors.data_plane_support import WAIT, DataPlane, wait_until
from tools.kis_sim.sent_log import app_key_hash

DAY = datetime(2024, 3, 4, 10, 15, tzinfo=KST)
LIVE_RECORD = (
    "005930^112616^62700^2^400^0.64^62700.41^62700^63000^62300^62700^62600^125^9694968^607878273600^25807^"
    "15918^-9889^93.01^4614191^4291558^1^0.45^63.03^090013^3^0^090646^5^-300^100741^2^400^20230324^20^N^"
    "71292^244009^2795345^2044512^0.16^5367918^180.61^0^^62700"
)
LIVE_FIELDS = LIVE_RECORD.split("^")


def ticks(symbol: str, at: datetime, count: int, first_cum: int = 1000) -> tuple[TradeTick, ...]:
    """Real H0STCNT0 records (the live sample with other values), decoded by the real codec."""
    records = []
    for n in range(count):
        fields = list(LIVE_FIELDS)
        moment = at + timedelta(seconds=n)
        fields[0], fields[1], fields[33] = symbol, f"{moment:%H%M%S}", f"{moment:%Y%m%d}"
        fields[12], fields[13] = "10", str(first_cum + 10 * n)
        records.append("^".join(fields))
    frame = decode(f"0|H0STCNT0|{count:03d}|{'^'.join(records)}")
    assert isinstance(frame, TradeFrame)
    return frame.ticks


class Recorder:
    """A started RecorderActor on a manual simulated clock, without the simulator; `context_changes` replace
    fields of its context (a spine, the free-disk reading)."""

    def __init__(self, tmp_path: Path, settings: Settings | None = None, **context_changes: object) -> None:
        self.clock = SimulatedClock(DAY, speed=0)
        context = make_context(tmp_path, self.clock, rest_url=None, accounts=(sim_account("acct1"),),
                               settings=settings)
        self.context = dataclasses.replace(context, **context_changes)
        self.directory = Directory(self.clock)
        self.ref = RecorderActor.start("recorder", self.directory, self.context)
        self.directory.register("recorder", self.ref)
        self.observer = self.context.paths.observer

    def tell(self, message: object) -> None:
        self.ref.tell(message)

    def barrier(self) -> None:
        assert self.ref.ask(Ping(at=self.clock.now()), timeout=WAIT) == "recorder"

    def frame(self, symbol: str, count: int, at: datetime = DAY, first_cum: int = 1000) -> None:
        self.tell(TicksReceived(at=at, account="acct1", ticks=ticks(symbol, at, count, first_cum),
                                received_mono=time.monotonic()))

    def tick_file(self, symbol: str, market: str = "KRX", at: datetime = DAY) -> Path:
        return self.context.paths.scalp_dir("acct1", market, at.date()) / f"ticks_{symbol}.jsonl"


def test_tick_lines_are_json_with_the_required_columns(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.frame("005930", 3)
    recorder.ref.stop()
    contents = read_jsonl(recorder.tick_file("005930"))
    assert contents.skipped == 0 and len(contents.records) == 3
    first = contents.records[0]
    assert first["symbol"] == "005930" and first["source"] == "ws"
    assert datetime.fromisoformat(first["exchange_time"]) == DAY
    assert datetime.fromisoformat(first["received_at"]) == DAY
    assert (first["price"], first["volume"], first["cum_volume"]) == (62700, 10, 1000)
    assert [r["cum_volume"] for r in contents.records] == [1000, 1010, 1020]
    assert recorder.context.metrics.count("ticks_recorded") == 3


def test_odd_text_and_non_finite_numbers_still_give_valid_json() -> None:
    tick = ticks("005930", DAY, 1)[0]
    odd = TradeTick(**{**{name: getattr(tick, name) for name in tick._fields}, "side": 'a"b\\',
                       "strength": float("nan"), "change_rate": float("inf")})
    record = json.loads(tick_line(odd, DAY.isoformat(), DAY.isoformat()))
    assert record["side"] == 'a"b\\' and record["strength"] is None and record["change_rate"] is None


def test_lines_reach_the_disk_within_about_a_second_without_a_stop(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.frame("000660", 5)
    recorder.barrier()
    path = recorder.tick_file("000660")
    assert wait_until(lambda: path.exists() and len(read_jsonl(path).records) == 5, 3.0)


def test_a_tick_flushes_its_own_file_once_its_oldest_line_is_old_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder_module, "FLUSH_CHECK_SECONDS", 60.0)  # the ticker does not look meanwhile
    monkeypatch.setattr(recorder_module, "TICK_FLUSH_AGE_SECONDS", 0.2)
    recorder = Recorder(tmp_path)
    recorder.frame("005930", 1)
    recorder.frame("000660", 1)
    recorder.barrier()
    time.sleep(0.3)
    recorder.frame("005930", 1, first_cum=2000)
    recorder.barrier()
    assert [r["cum_volume"] for r in read_jsonl(recorder.tick_file("005930")).records] == [1000, 2000]
    assert read_jsonl(recorder.tick_file("000660")).records == []  # no tick of its own came: it waits
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("000660")).records) == 1


def test_a_crash_keeps_every_line_received_before_it(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    journal = Journal()
    recorder.directory.attach_supervisor(RecordingActor.start("supervisor", recorder.directory, journal))
    recorder.frame("005380", 4)
    recorder.tell(Crash(at=recorder.clock.now()))
    assert wait_until(lambda: journal.received(ChildFailed) != [], WAIT)
    assert len(read_jsonl(recorder.tick_file("005380")).records) == 4


def test_markets_come_from_the_universe_and_bad_symbols_are_skipped(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    profile = SymbolProfile(
        at=DAY, symbol="035720", name="Kakao", market="KOSPI", market_cap=1, prev_close=5000
    )
    recorder.tell(UniverseReady(at=DAY, day=DAY.date(), profiles=(profile,)))
    recorder.frame("035720", 2)
    recorder.frame("../evil", 1)
    recorder.frame("123456", 1)
    recorder.barrier()
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("035720", "KOSPI")).records) == 2
    assert len(read_jsonl(recorder.tick_file("123456", "KRX")).records) == 1
    assert not any("evil" in path.name for path in recorder.observer.rglob("*"))
    assert recorder.context.metrics.count("ticks_recorded") == 3


def test_an_unwritable_record_is_one_error_not_a_crash(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    recorder.tell(OverflowRecorded(at=DAY, account="acct1", lines=({"bad": object()},)))
    recorder.frame("005930", 1)
    recorder.barrier()
    assert recorder.ref.is_alive()
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("005930")).records) == 1


def _minute_bar(symbol: str, at: datetime) -> MinuteBar:
    return MinuteBar(symbol=symbol, time=at, open=100, high=110, low=90, close=105, volume=1234, value=99)


def _quote(symbol: str) -> MultiQuote:
    return MultiQuote(
        symbol=symbol, name="n", price=1, change=0, sign="3", change_rate=0.0, volume=1, value=1, open=1,
        high=1, low=1, upper_limit=2, lower_limit=1, prev_close=1, base_price=1, ask=1, bid=1,
    )


def test_every_kind_of_record_lands_in_its_file(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    paths = recorder.context.paths
    gap = Gap(symbol="005930", start=DAY, end=DAY + timedelta(seconds=20), expected=True,
              reason="websocket_reconnect")
    records = build_recovery_records(gap, [_minute_bar("005930", DAY.replace(second=0))], recovered_at=DAY)
    marker = gap_marker(gap, "test marker", at=DAY)
    recorder.tell(RecoveryRecorded(at=DAY, account="acct1", gap=gap, records=records))
    recorder.tell(GapMarked(at=DAY, account="acct1", marker=marker))
    recorder.tell(OverflowRecorded(at=DAY, account="acct1", lines=({"symbol": "000660", "score": 1.5},)))
    recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=3, rows=(_quote("000660"),), calls=1,
                                duration_seconds=0.1))
    recorder.barrier()
    recorder.ref.stop()
    recovery = read_jsonl(paths.recovery_file("acct1", "KRX", DAY, "005930")).records
    assert recovery == [record.to_json_dict() for record in records]
    tick_rows = read_jsonl(recorder.tick_file("005930")).records
    assert [(r["source"], r["price"], r["volume"], r["cum_volume"]) for r in tick_rows] == [
        ("recovery", 105.0, 1234, None)
    ]
    assert read_jsonl(paths.gap_markers("acct1", DAY.date())).records == [marker.to_json_dict()]
    ledger = read_jsonl(paths.overflow_ledger("acct1", DAY.date())).records
    assert ledger == [{"symbol": "000660", "score": 1.5}]
    scans = read_jsonl(paths.swing_dir("acct1", "KRX", DAY.date()) / "snapshots.jsonl").records
    assert [(r["scan_no"], r["symbol"]) for r in scans] == [(3, "000660")]


def test_a_snapshot_line_is_the_scans_head_and_the_rows_fields(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    odd = _quote("005930").model_copy(update={"name": '삼성 "전자"\\', "sign": "5", "change": -1200,
                                              "change_rate": -1.69, "value": 987_654_321_000})
    recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=2, rows=(odd,), calls=1,
                                duration_seconds=0.1))
    recorder.barrier()
    recorder.ref.stop()
    path = recorder.context.paths.swing_dir("acct1", "KRX", DAY.date()) / "snapshots.jsonl"
    assert read_jsonl(path).records == [{"scan_no": 2, "scanned_at": DAY.isoformat(), **odd.model_dump()}]


def test_the_closing_pass_lines_are_marked_as_such(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    for scan_no, closing in ((7, False), (8, True)):
        recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=scan_no, rows=(_quote("005930"),),
                                    calls=1, duration_seconds=0.1, closing=closing))
    recorder.barrier()
    recorder.ref.stop()
    path = recorder.context.paths.swing_dir("acct1", "KRX", DAY.date()) / "snapshots.jsonl"
    regular, closing_line = read_jsonl(path).records
    assert "closing_pass" not in regular
    assert closing_line == {"scan_no": 8, "scanned_at": DAY.isoformat(), "closing_pass": True,
                            **_quote("005930").model_dump()}


def test_scan_rows_go_to_the_snapshot_file_of_their_market_in_order(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    markets = {"005930": "KOSPI", "035720": "KOSDAQ", "000660": "KOSPI"}
    profiles = tuple(SymbolProfile(at=DAY, symbol=symbol, name="n", market=market, market_cap=1, prev_close=1)
                     for symbol, market in markets.items())
    recorder.tell(UniverseReady(at=DAY, day=DAY.date(), profiles=profiles))
    rows = tuple(_quote(symbol) for symbol in (*markets, "123456"))
    recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=5, rows=rows, calls=1, duration_seconds=0.1))
    recorder.barrier()
    recorder.ref.stop()
    swing = recorder.context.paths.swing_dir
    written = {market: read_jsonl(swing("acct1", market, DAY.date()) / "snapshots.jsonl").records
               for market in ("KOSPI", "KOSDAQ", "KRX")}
    assert {market: [r["symbol"] for r in records] for market, records in written.items()} == {
        "KOSPI": ["005930", "000660"], "KOSDAQ": ["035720"], "KRX": ["123456"]}
    assert written["KOSPI"][1] == {"scan_no": 5, "scanned_at": DAY.isoformat(), **rows[2].model_dump()}


def test_a_long_scan_over_two_markets_keeps_each_markets_rows_in_order(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    symbols = [f"{n:06d}" for n in range(450)]
    profiles = tuple(SymbolProfile(at=DAY, symbol=symbol, name="n", market=("KOSPI", "KOSDAQ")[n % 2],
                                   market_cap=1, prev_close=1) for n, symbol in enumerate(symbols))
    recorder.tell(UniverseReady(at=DAY, day=DAY.date(), profiles=profiles))
    rows = tuple(map(_quote, symbols))
    for scan_no in (1, 2):
        recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=scan_no, rows=rows, calls=15,
                                    duration_seconds=0.5))
    recorder.barrier()
    recorder.ref.stop()
    swing = recorder.context.paths.swing_dir
    for parity, market in enumerate(("KOSPI", "KOSDAQ")):
        records = read_jsonl(swing("acct1", market, DAY.date()) / "snapshots.jsonl").records
        assert [(r["scan_no"], r["symbol"]) for r in records] == [
            (scan_no, symbol) for scan_no in (1, 2) for symbol in symbols[parity::2]]


def _long_scan(scan_no: int) -> ScanCompleted:
    rows = tuple(_quote(f"{n:06d}") for n in range(1_000))
    return ScanCompleted(at=DAY, account="acct1", scan_no=scan_no, rows=rows, calls=11, duration_seconds=0.6)


def _snapshots(paths_root: Path) -> list[tuple[int, str]]:
    path = paths_root / "swing" / "acct1" / "KRX" / "20240304" / "snapshots.jsonl"
    return [(r["scan_no"], r["symbol"]) for r in read_jsonl(path).records]


def test_a_backup_right_after_a_long_scan_packs_all_of_its_rows(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    scan = _long_scan(4)
    recorder.tell(scan)
    backup_at = DAY.replace(hour=21, minute=0)
    result = recorder.ref.ask(DayEventFired(at=backup_at, event=DayEvent.DAILY_BACKUP), timeout=WAIT)
    with tarfile.open(result.archive, "r:gz") as tar:
        packed = tar.extractfile("observer/swing/acct1/KRX/20240304/snapshots.jsonl")
        assert packed is not None
        lines = [json.loads(line) for line in packed.read().splitlines()]
    assert [(r["scan_no"], r["symbol"]) for r in lines] == [(4, row.symbol) for row in scan.rows]
    assert lines[-1] == {"scan_no": 4, "scanned_at": DAY.isoformat(), **scan.rows[-1].model_dump()}


def test_scans_in_a_row_then_a_crash_lose_and_repeat_no_row(tmp_path: Path) -> None:
    """Two scans of a full universe, then a crash: every row once, the second scan after the first."""
    clock = SimulatedClock(DAY, speed=0)
    context = make_context(tmp_path, clock, rest_url=None, accounts=(sim_account("acct1"),))
    spec = ChildSpec(id="recorder", actor_class=RecorderActor, kwargs={"context": context})
    supervisor = Supervisor([spec], clock=clock)
    supervisor.start()
    try:
        first, second = _long_scan(1), _long_scan(2)
        for message in (first, second, Crash(at=DAY)):
            assert supervisor.directory.tell("recorder", message)
        assert supervisor.status.wait_until(lambda s: s.restarts("recorder") == 1, timeout=WAIT)
        supervisor.directory.ask("recorder", Ping(at=DAY), timeout=WAIT)
    finally:
        supervisor.stop()
    expected = [(scan.scan_no, row.symbol) for scan in (first, second) for row in scan.rows]
    assert sorted(_snapshots(context.paths.observer)) == sorted(expected)
    written = _snapshots(context.paths.observer)
    assert [entry for entry in written if entry[0] == 1] == expected[: len(first.rows)]
    assert [entry for entry in written if entry[0] == 2] == expected[len(first.rows):]


def test_daily_backup_packs_the_day_with_a_correct_manifest(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    other_day = DAY - timedelta(days=1)
    recorder.frame("005930", 3)
    recorder.frame("000660", 2)
    recorder.frame("005930", 2, at=other_day)
    gap = Gap(symbol="005930", start=DAY, end=DAY + timedelta(seconds=90), expected=False,
              reason="unexpected_gap")
    recorder.tell(GapMarked(at=DAY, account="acct1", marker=gap_marker(gap, "too long", at=DAY)))
    recorder.tell(OverflowRecorded(at=DAY, account="acct1", lines=({"symbol": "000660"},)))
    backup_at = DAY.replace(hour=21, minute=0)
    result = recorder.ref.ask(DayEventFired(at=backup_at, event=DayEvent.DAILY_BACKUP), timeout=WAIT)
    root = recorder.context.paths.root
    expected = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ("20240304" in p.as_posix() or "state" in p.parts) and "backup" not in p.parts
    }
    parquet = "observer/parquet/ticks/date=20240304/day.parquet"
    assert parquet in expected and len(expected) == result.files == 5
    assert pq.read_table(root / parquet).num_rows == 5  # the day's ticks, rebuilt from the journal
    with tarfile.open(result.archive, "r:gz") as tar:
        names = tar.getnames()
        assert names[0] == "manifest.json"
        manifest = json.loads(tar.extractfile("manifest.json").read())
        assert {entry["path"] for entry in manifest["files"]} == expected == set(names[1:])
        for entry in manifest["files"]:
            data = tar.extractfile(entry["path"]).read()
            on_disk = (root / entry["path"]).read_bytes()
            assert data == on_disk and entry["size"] == len(data)
            assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert json.loads(result.manifest.read_text()) == manifest
    assert manifest["day"] == "2024-03-04"
    # Files reopen after the backup: recording goes on.
    recorder.frame("005930", 1, at=DAY.replace(hour=21, minute=1), first_cum=5000)
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("005930")).records) == 4


def test_the_daily_job_removes_what_retention_no_longer_keeps(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    old_day = DAY - timedelta(days=40)
    recorder.frame("005930", 2, at=old_day)
    recorder.frame("005930", 2)
    backup_at = DAY.replace(hour=21, minute=0)
    recorder.ref.ask(DayEventFired(at=backup_at, event=DayEvent.DAILY_BACKUP), timeout=WAIT)
    scalp = recorder.observer / "scalp" / "acct1" / "KRX"
    assert sorted(path.name for path in scalp.iterdir()) == ["20240304"]  # journal_days 30 by default


def test_the_backup_packs_the_days_alerts_ledger(tmp_path: Path) -> None:
    recorder = Recorder(tmp_path)
    notifier = NotifierActor.start("notifier", recorder.directory, recorder.context)
    notifier.tell(AlertRaised(at=DAY, alert=make_alert("005930", "삼성전자", "volume_surge", 3.0, 3.4, DAY)))
    notifier.tell(SystemAlert(at=DAY, key="overflow.0.05", text="overflow rate above 5 %"))
    notifier.tell(SystemAlert(at=DAY - timedelta(days=1), key="ws.down", text="yesterday"))
    notifier.ask(Ping(at=DAY), timeout=WAIT)
    recorder.frame("005930", 1)
    ledger = recorder.context.paths.alerts_ledger(DAY.date())
    assert len(read_jsonl(ledger).records) == 2

    backup_at = DAY.replace(hour=21, minute=0)
    result = recorder.ref.ask(DayEventFired(at=backup_at, event=DayEvent.DAILY_BACKUP), timeout=WAIT)

    ledger_name = ledger.relative_to(recorder.context.paths.root).as_posix()
    assert ledger_name == "observer/system/alerts/20240304_alerts.jsonl"
    with tarfile.open(result.archive, "r:gz") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())
        entries = {entry["path"]: entry for entry in manifest["files"]}
        packed = tar.extractfile(ledger_name).read()
    assert packed == ledger.read_bytes()
    assert entries[ledger_name]["sha256"] == hashlib.sha256(packed).hexdigest()
    assert entries[ledger_name]["size"] == len(packed)
    assert set(entries) == {
        ledger_name,
        "observer/scalp/acct1/KRX/20240304/ticks_005930.jsonl",
        "observer/parquet/ticks/date=20240304/day.parquet",
        "observer/state/alert_cooldowns.json",
    }
    assert result.files == len(entries)


def test_every_tick_the_simulator_sent_is_recorded(tmp_path: Path, kis_sim) -> None:
    """End to end over loopback: simulator -> session -> connection actor -> recorder -> files."""
    plane = DataPlane(tmp_path, kis_sim)
    plane.peers("triggers", "gaps", "slots", "notifier")
    plane.start_recorder()
    plane.start_ws()
    symbols = plane.symbols(4)
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=symbols))
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: plane.metrics.count("ticks_recorded") >= 100, WAIT)
    # Unsubscribed and answered: every frame sent before the answers has reached the connection actor.
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=()))
    assert wait_until(lambda: plane.status().confirmed == () and plane.status().pending == (), WAIT)
    plane.barrier("ws.acct1")
    plane.barrier("recorder")
    day = kis_sim.clock.now().date()
    recorded: Counter[tuple[str, str, int]] = Counter()  # (symbol, exchange second, cum_volume)
    for symbol in symbols:
        path = plane.context.paths.scalp_dir("acct1", "KRX", day) / f"ticks_{symbol}.jsonl"
        assert wait_until(lambda p=path: p.exists(), 3.0)
    pykka.ActorRegistry.stop_all()
    kis_sim.stop()
    for symbol in symbols:
        path = plane.context.paths.scalp_dir("acct1", "KRX", day) / f"ticks_{symbol}.jsonl"
        contents = read_jsonl(path)
        assert contents.skipped == 0
        for r in contents.records:
            assert set(r) >= {"symbol", "exchange_time", "received_at", "price", "volume", "cum_volume"}
            assert r["source"] == "ws"
            recorded[(r["symbol"], r["exchange_time"], r["cum_volume"])] += 1
    key = app_key_hash(plane.accounts[0].app_key.get_secret_value())
    sent: Counter[tuple[str, str, int]] = Counter(
        (r["symbol"], datetime.fromisoformat(r["exchange_time"]).replace(microsecond=0).isoformat(),
         r["cum_volume"])
        for r in read_jsonl(kis_sim.config.sent_log).records
        if r["app_key_hash"] == key
    )
    assert sum(recorded.values()) == plane.metrics.count("ticks_recorded") >= 100
    assert recorded == sent


# --- a disk that refuses writes ------------------------------------------------------------------------

ONE_MIB = Settings(recorder=RecorderSettings(max_buffered_mb=1),
                   storage=StorageSettings(min_free_megabytes=0))
"""A 1 MiB buffer, and no free-space floor: these tests fill a tiny disk on purpose."""
FRAME = 999  # ticks per frame (the codec's count has three digits); about 270 KB of tick lines


def _frames(recorder: Recorder, symbol: str, count: int) -> list[datetime]:
    """`count` frames of `FRAME` ticks, one a second, each frame after the last; every tick's time."""
    times = []
    for n in range(count):
        at = DAY + timedelta(seconds=FRAME * n)
        recorder.frame(symbol, FRAME, at=at, first_cum=1000 + 10 * FRAME * n)
        times += [at + timedelta(seconds=i) for i in range(FRAME)]
    return times


def _alert_keys(journal: Journal) -> list[str]:
    return [alert.key for alert in journal.received(SystemAlert)]


def _markers(recorder: Recorder) -> list[dict[str, object]]:
    return read_jsonl(recorder.context.paths.gap_markers("acct1", DAY.date())).records


def _covered(markers: list[dict[str, object]], symbol: str, moment: datetime) -> bool:
    """As the reconciliation reads a marker: the whole seconds from its start's to its end's."""
    return any(
        marker["symbol"] == symbol
        and datetime.fromisoformat(str(marker["start_time"])).replace(microsecond=0)
        <= moment.replace(microsecond=0)
        <= datetime.fromisoformat(str(marker["end_time"])).replace(microsecond=0)
        for marker in markers
    )


def test_dev_full_alerts_once_counts_only_lines_on_disk_and_marks_the_dropped_ticks(tmp_path: Path) -> None:
    """/dev/full as the target of one tick file: every write to it fails with ENOSPC, as on a full disk."""
    recorder = Recorder(tmp_path, ONE_MIB)
    journal = Journal()
    recorder.directory.register("notifier", RecordingActor.start("notifier", recorder.directory, journal))
    full = recorder.tick_file("005930")
    full.parent.mkdir(parents=True)
    full.symlink_to("/dev/full")
    recorder.frame("000660", 3)
    times = _frames(recorder, "005930", 6)
    recorder.barrier()
    metrics = recorder.context.metrics
    assert wait_until(lambda: metrics.snapshot().get("recorder_write_failing_since") is not None, WAIT)
    assert wait_until(lambda: metrics.count("ticks_recorded") == 3, WAIT)  # 000660's; none of 005930's
    dropped = metrics.count("ticks_dropped")
    assert 0 < dropped < len(times)  # about 1 MiB of lines is kept in memory, the rest is dropped
    assert 0 < int(metrics.snapshot()["recorder_buffered_bytes"]) <= 1024 * 1024 + 64 * 1024
    time.sleep(1.0)  # several flush passes fail meanwhile
    assert _alert_keys(journal) == ["recorder.write_failed"]
    recorder.ref.stop()
    assert metrics.count("ticks_recorded") == 3
    markers = _markers(recorder)
    assert [(m["symbol"], m["reason"]) for m in markers] == [("005930", "recorder_buffer_full")]
    assert f"{dropped} ticks dropped" in str(markers[0]["detail"])
    assert all(_covered(markers, "005930", moment) for moment in times[-dropped:])
    assert not _covered(markers, "005930", times[-dropped - 1])


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    try:
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                                capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def _fill(filesystem: Path) -> Path:
    """A file that takes every free byte of `filesystem`."""
    filler = filesystem / "filler"
    with filler.open("wb", buffering=0) as file:
        block = b"\0" * 65536
        with contextlib.suppress(OSError):
            while True:
                file.write(block)
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0")
    return filler


@pytest.fixture
def tiny_filesystem(tmp_path: Path) -> object:
    """A 4 MiB tmpfs at tmp_path/data (where the test context keeps its data); root only."""
    data = tmp_path / "data"
    if os.geteuid() != 0 or not _mount_tmpfs(data, "4m"):
        pytest.skip("mounting a tmpfs needs root (the /dev/full test covers the failure without it)")
    yield data
    pykka.ActorRegistry.stop_all(timeout=5)
    subprocess.run(["umount", "-l", str(data)], check=False, timeout=10)


def test_a_full_filesystem_then_room_again_alerts_twice_and_loses_no_tick_unmarked(
    tmp_path: Path, tiny_filesystem: Path,
) -> None:
    recorder = Recorder(tmp_path, ONE_MIB)
    journal = Journal()
    recorder.directory.register("notifier", RecordingActor.start("notifier", recorder.directory, journal))
    recorder.frame("005930", 2)  # the files exist before the disk fills up
    recorder.tell(GapMarked(at=DAY, account="acct1", marker=gap_marker(
        Gap(symbol="000660", start=DAY, end=DAY, expected=False, reason="unexpected_gap"), "test", at=DAY)))
    metrics = recorder.context.metrics
    assert wait_until(lambda: metrics.count("ticks_recorded") == 2, WAIT)
    filler = _fill(tiny_filesystem)
    with pytest.raises(OSError) as refused:
        (tiny_filesystem / "probe").write_bytes(b"x" * 8192)
    assert refused.value.errno == errno.ENOSPC
    times = _frames(recorder, "005930", 6)
    recorder.barrier()
    assert wait_until(lambda: _alert_keys(journal) == ["recorder.write_failed"], WAIT)
    recorder.barrier()
    on_disk_lines = recorder.tick_file("005930").read_bytes().count(b"\n")  # what fitted in the last page
    assert metrics.count("ticks_recorded") == on_disk_lines < 100
    assert metrics.count("ticks_dropped") > 0
    filler.unlink()
    assert wait_until(lambda: _alert_keys(journal) == ["recorder.write_failed", "recorder.write_recovered"],
                      WAIT)
    assert metrics.snapshot()["recorder_write_failing_since"] is None
    dropped = metrics.count("ticks_dropped")
    assert wait_until(lambda: metrics.count("ticks_recorded") == 2 + len(times) - dropped, WAIT)
    assert wait_until(lambda: len(_markers(recorder)) == 2, WAIT)  # written once ticks are kept again
    recorder.frame("005930", 1, at=times[-1] + timedelta(seconds=1), first_cum=10**7)
    recorder.ref.stop()
    rows = read_jsonl(recorder.tick_file("005930")).records
    assert len(rows) == metrics.count("ticks_recorded") == 3 + len(times) - dropped
    on_disk = {datetime.fromisoformat(row["exchange_time"]) for row in rows}
    markers = _markers(recorder)
    assert all(moment in on_disk or _covered(markers, "005930", moment) for moment in times)


MIB = 1024 * 1024
FLOOR_100_MIB = Settings(storage=StorageSettings(min_free_megabytes=100))


class KeptSpine:
    """A spine that keeps what the recorder hands it (the publisher itself is tested in tests/spine)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[object] = []

    def publish(self, item: object) -> bool:
        with self._lock:
            self._items.append(item)
        return True

    def ticks(self) -> int:
        with self._lock:
            return sum(len(item.ticks) for item in self._items if isinstance(item, TicksReceived))

    def kinds(self) -> list[str]:
        with self._lock:
            return [type(item).__name__ for item in self._items]


class FreeDisk:
    """The free-disk reading handed to the recorder, set by the test; `reads` counts the readings."""

    def __init__(self, free: int) -> None:
        self.free = free
        self.reads = 0

    def __call__(self, _path: Path) -> int:
        self.reads += 1
        return self.free

    def set(self, free: int) -> None:
        """Set the reading and wait until the recorder has read it twice (a whole check after the change)."""
        self.free = free
        seen = self.reads
        assert wait_until(lambda: self.reads >= seen + 2, WAIT)


def test_below_the_free_space_floor_ticks_stay_off_the_spine_but_reach_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(recorder_module, "DISK_CHECK_SECONDS", 0.0)  # read at every flush pass
    spine, disk = KeptSpine(), FreeDisk(500 * MIB)
    recorder = Recorder(tmp_path, FLOOR_100_MIB, spine=spine, free_bytes=disk)
    journal = Journal()
    recorder.directory.register("notifier", RecordingActor.start("notifier", recorder.directory, journal))
    metrics = recorder.context.metrics
    recorder.frame("005930", 2)
    recorder.barrier()
    assert spine.ticks() == 2

    disk.set(50 * MIB)
    assert wait_until(lambda: _alert_keys(journal) == ["disk_floor"], WAIT)
    assert "below the floor of 100 MiB" in journal.received(SystemAlert)[0].text
    recorder.frame("005930", 3, first_cum=2000)
    recorder.tell(ScanCompleted(at=DAY, account="acct1", scan_no=1, rows=(_quote("005930"),), calls=1,
                                duration_seconds=0.1))
    recorder.tell(GapMarked(at=DAY, account="acct1", marker=gap_marker(
        Gap(symbol="000660", start=DAY, end=DAY, expected=False, reason="unexpected_gap"), "test", at=DAY)))
    recorder.barrier()
    assert spine.ticks() == 2 and "ScanCompleted" not in spine.kinds() and "GapMarked" in spine.kinds()
    assert metrics.count("spine_shed") == 3 + 1 and metrics.snapshot()["disk_below_floor"] is True

    disk.set(105 * MIB)  # above the floor, not yet by the margin: still below, no second alert
    recorder.frame("005930", 1, first_cum=3000)
    recorder.barrier()
    assert spine.ticks() == 2 and _alert_keys(journal) == ["disk_floor"]

    disk.set(200 * MIB)
    assert wait_until(lambda: metrics.snapshot()["disk_below_floor"] is False, WAIT)
    recorder.frame("005930", 1, first_cum=4000)
    recorder.barrier()
    assert spine.ticks() == 3 and _alert_keys(journal) == ["disk_floor"]

    disk.set(10 * MIB)  # fell again: alerted again
    assert wait_until(lambda: _alert_keys(journal) == ["disk_floor", "disk_floor"], WAIT)
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("005930")).records) == 2 + 3 + 1 + 1  # the journal kept them all


def test_a_real_small_filesystem_below_the_floor_sheds_the_spine_first(
    tmp_path: Path, tiny_filesystem: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 4 MiB tmpfs with a 2 MiB floor, read by the OS: a 3 MiB file takes it below, its removal back."""
    monkeypatch.setattr(recorder_module, "DISK_CHECK_SECONDS", 0.0)
    spine = KeptSpine()
    recorder = Recorder(tmp_path, Settings(storage=StorageSettings(min_free_megabytes=2)), spine=spine)
    journal = Journal()
    recorder.directory.register("notifier", RecordingActor.start("notifier", recorder.directory, journal))
    metrics = recorder.context.metrics
    recorder.frame("005930", 2)
    recorder.barrier()
    assert spine.ticks() == 2
    filler = tiny_filesystem / "filler"
    filler.write_bytes(b"\0" * 3 * MIB)
    assert wait_until(lambda: _alert_keys(journal) == ["disk_floor"], WAIT)
    recorder.frame("005930", 3, first_cum=2000)
    recorder.barrier()
    assert spine.ticks() == 2
    assert wait_until(lambda: metrics.count("ticks_recorded") == 5, WAIT)  # the journal is still written
    filler.unlink()
    assert wait_until(lambda: metrics.snapshot()["disk_below_floor"] is False, WAIT)
    recorder.frame("005930", 1, first_cum=3000)
    recorder.barrier()
    assert spine.ticks() == 3
    recorder.ref.stop()
    assert len(read_jsonl(recorder.tick_file("005930")).records) == 6
