"""What the journal gets and what the spine gets say the same: each recorded message becomes public
messages with the same values (ledger lines, gap markers, recovered bars, scan rows)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from actors.recorder import recovery_lines
from core.bars import MinuteBar
from core.gaps import Gap
from core.models import Candidate, TriggerKind
from core.overflow import OverflowReason, OverflowRecord
from core.recovery import build_recovery_records, gap_marker
from core.sessions import venue_of
from core.settings import SessionSettings
from kis.models import MultiQuote
from kis.ticks import TradeTick
from messages.market import ScanCompleted, TicksReceived
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from runtime.clock import KST
from spine import wire
from spine.convert import facts_of, tick_messages

AT = datetime(2024, 3, 4, 10, 0, tzinfo=KST)
SESSIONS = SessionSettings()
GAP = Gap(symbol="005930", start=AT, end=AT + timedelta(minutes=2, seconds=30), expected=True,
          reason="websocket_reconnect")


def test_recovered_bars_go_out_as_recovery_ticks_like_the_tick_file_rows() -> None:
    bars = [MinuteBar(symbol="005930", time=AT + timedelta(minutes=m), open=71000, high=71500, low=70800,
                      close=71200 + m, volume=1000 + m, value=0) for m in range(3)]
    records = build_recovery_records(GAP, bars, recovered_at=AT + timedelta(minutes=3))
    recorded = RecoveryRecorded(at=AT + timedelta(minutes=3), account="sim1", gap=GAP, records=records)
    facts = list(facts_of(recorded, SESSIONS))
    summary, *ticks = facts
    assert isinstance(summary, wire.GapRecovered) and summary.bars == 3
    rows = [row for record in records for row in recovery_lines(record)]
    assert [(t.source, t.price, t.volume, t.cum_volume) for t in ticks] == [
        ("recovery", row["price"], row["volume"], None) for row in rows
    ]
    assert [t.exchange_time for t in ticks] == [row["exchange_time"] for row in rows]


def test_a_gap_marker_goes_out_with_its_account() -> None:
    marker = gap_marker(GAP, "longer than 60 s: not back-filled", at=AT)
    (fact,) = facts_of(GapMarked(at=AT, account="sim1", marker=marker), SESSIONS)
    assert isinstance(fact, wire.GapMarked)
    assert fact.model_dump(exclude={"type", "version", "account"}) == marker.model_dump(exclude={"gap_type"})
    assert fact.account == "sim1"


def test_overflow_ledger_lines_go_out_one_message_each() -> None:
    candidate = Candidate(symbol="000660", score=9.2, market_cap=5e11, trigger=TriggerKind.TRADE_VELOCITY,
                          strength=0.85, detected_at=AT)
    line = OverflowRecord(AT, candidate, OverflowReason.SLOTS_FULL, "slots full", 10.5, "sim1").to_ledger()
    (fact,) = facts_of(OverflowRecorded(at=AT, account="sim1", lines=(line,)), SESSIONS)
    assert isinstance(fact, wire.Overflowed)
    assert fact.symbol == "000660" and fact.metadata == line["metadata"] and fact.reason == "slots full"


def test_a_scan_goes_out_as_one_snapshot_per_row_then_its_summary() -> None:
    rows = tuple(MultiQuote(symbol=f"00{i}930", name="name", price=70000, change=100, sign="2",
                            change_rate=0.14, volume=1000, value=70_000_000, open=69_900, high=70_100,
                            low=69_800, upper_limit=91_000, lower_limit=49_000, prev_close=69_900,
                            base_price=69_900, ask=70_100, bid=70_000) for i in range(3))
    scan = ScanCompleted(at=AT, account="sim1", scan_no=4, rows=rows, calls=1, duration_seconds=0.4)
    *snapshots, done = facts_of(scan, SESSIONS)
    assert [s.symbol for s in snapshots] == [row.symbol for row in rows]
    assert all(isinstance(s, wire.Snapshot) and s.scan_no == 4 for s in snapshots)
    assert isinstance(done, wire.ScanDone) and done.rows == 3


def test_a_unified_tick_names_the_venue_in_session_as_the_tick_file_does() -> None:
    """Nextrade's after-market is NXT's alone; during both main sessions the unified feed cannot tell."""
    def unified_tick(at: datetime) -> TradeTick:
        return TradeTick("005930", at, 70000, 0, "3", 0.0, 1, 10, 700000, 70000, 70000, 70000, 70100, 70000,
                         "1", 100.0, "0", (), "H0UNCNT0")
    after, main = AT.replace(hour=16), AT
    message = TicksReceived(at=after, account="sim1", ticks=(unified_tick(after), unified_tick(main)),
                            received_mono=0.0)
    venues = [fact.venue for fact in facts_of(message, SESSIONS)]
    assert venues == ["NXT", "UN"]
    assert venues == [venue_of("unified", tick.exchange_time, SESSIONS) for tick in message.ticks]


def test_streamed_ticks_go_out_as_the_json_of_their_models() -> None:
    """The publisher writes a streamed tick's JSON without a model: it says what `wire.Tick` says."""
    def tick(symbol: str, at: datetime, rate: float, side: str, strength: float, tr_id: str) -> TradeTick:
        return TradeTick(symbol, at, 70000, -100, "5", rate, 7, 1_000, 70_000_000, 70100, 70200, 69900, 70100,
                         70000, side, strength, "0", ("raw",), tr_id)

    at = AT.replace(microsecond=250_000)
    account = '계좌 "1"'
    message = TicksReceived(at=AT + timedelta(microseconds=1), account=account, received_mono=0.0, ticks=(
        tick("005930", at, -0.14, "1", 101.5, "H0UNCNT0"),
        tick("000660", AT.replace(hour=16), 1e-05, "", float("nan"), "H0UNCNT0"),
        tick("Q530\\1", AT, 0.0, "매수", float("inf"), "H0STCNT0"),
    ))
    written = list(tick_messages(message, SESSIONS))
    modelled = [fact.model_dump_json() for fact in facts_of(message, SESSIONS)]
    assert [symbol for symbol, _ in written] == [json.loads(text)["symbol"] for text in modelled]
    assert [wire.parse(data) for _, data in written] == [wire.parse(text) for text in modelled]
    assert [json.loads(data) for _, data in written] == [json.loads(text) for text in modelled]
    assert [list(json.loads(data))[:2] for _, data in written] == [["type", "version"]] * 3
