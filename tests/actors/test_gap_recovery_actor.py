"""GapRecoveryActor against the KIS simulator: expected and unexpected gaps, back-fill from minute bars,
markers, and the end-to-end promise: every tick sent is recorded or inside a recorded gap."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pykka

from actors.gap_recovery import FEED_LAG_LIMIT_SECONDS, IN_FLIGHT_SECONDS, expected_gap_start
from config.settings import WebSocketSettings
from kis.ticks import TradeTick
from messages.alerts import SystemAlert
from messages.gaps import ExpectedGapEnded, ExpectedGapStarted, TicksMissed
from messages.market import TicksReceived
from messages.streaming import ConnectionChanged, ConnectionState, SetSubscriptions
from runtime.clock import KST
from runtime.jsonl import read_jsonl
from tests.actors.data_plane_support import FAST_WS, WAIT, DataPlane, wait_until
from tools.kis_sim.sent_log import app_key_hash


def gaps_plane(tmp_path: Path, kis_sim, websocket: WebSocketSettings = FAST_WS) -> DataPlane:
    plane = DataPlane(tmp_path, kis_sim, websocket=websocket)
    plane.peers("triggers", "slots", "notifier")
    plane.start_recorder()
    plane.start_gaps()
    return plane


def end_gap(plane: DataPlane, symbol: str, seconds: float) -> ExpectedGapEnded:
    now = plane.sim.clock.now()
    message = ExpectedGapEnded(at=now, account="acct1", symbols=(symbol,),
                               started_at=now - timedelta(seconds=seconds), reason="websocket_reconnect")
    plane.tell("gaps", message)
    return message


def scalp_files(plane: DataPlane, pattern: str) -> list[Path]:
    day = plane.sim.clock.now().date()
    return sorted(plane.context.paths.scalp_dir("acct1", "KRX", day).glob(pattern))


def the_recovered_gap(plane: DataPlane, symbol: str) -> dict:
    """Once the one gap is back-filled and everything stopped: the gap its recovery file names."""
    assert wait_until(lambda: plane.metrics.count("gaps_recovered") == 1, WAIT)
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    (recovery_file,) = scalp_files(plane, f"recovery_*_{symbol}.jsonl")
    return read_jsonl(recovery_file).records[0]["meta"]["original_gap"]


def markers(plane: DataPlane) -> list[dict]:
    return read_jsonl(plane.context.paths.gap_markers("acct1", plane.sim.clock.now().date())).records


def test_expected_gap_start_covers_ticks_in_flight_but_not_a_quiet_past() -> None:
    dropped = datetime(2024, 3, 4, 10, 0, 30, tzinfo=KST)
    assert expected_gap_start(dropped - timedelta(seconds=1), dropped) == dropped - timedelta(seconds=1)
    assert expected_gap_start(dropped - timedelta(minutes=5), dropped) == dropped - timedelta(
        seconds=IN_FLIGHT_SECONDS
    )
    assert expected_gap_start(None, dropped) == dropped - timedelta(seconds=IN_FLIGHT_SECONDS)
    assert expected_gap_start(dropped + timedelta(seconds=3), dropped) == dropped


def test_a_lagging_feed_moves_the_floor_back_with_it_but_not_without_limit() -> None:
    dropped = datetime(2024, 3, 4, 10, 0, 30, tzinfo=KST)
    lag = timedelta(seconds=4.5)
    last = dropped - timedelta(seconds=5)  # in flight behind it: ticks of dropped - 4.5 s
    assert expected_gap_start(last, dropped, feed_head=dropped - lag) == last
    assert expected_gap_start(None, dropped, feed_head=dropped - lag) == dropped - lag - timedelta(
        seconds=IN_FLIGHT_SECONDS
    )
    stale_head = dropped - timedelta(minutes=10)  # a feed quiet for minutes, not a lagging one
    assert expected_gap_start(None, dropped, feed_head=stale_head) == dropped - timedelta(
        seconds=FEED_LAG_LIMIT_SECONDS + IN_FLIGHT_SECONDS
    )
    assert expected_gap_start(None, dropped, feed_head=dropped + lag) == dropped - timedelta(
        seconds=IN_FLIGHT_SECONDS
    )


def trades_at(symbol: str, *moments: datetime) -> TicksReceived:
    ticks = tuple(
        TradeTick(symbol, moment, 70_500, 500, "2", 0.7, 10, 1_000 + n, 70_500_000, 70_000, 71_000, 70_000,
                  70_600, 70_500, "1", 100.0, "0", ())
        for n, moment in enumerate(moments)
    )
    return TicksReceived(at=moments[-1], account="acct1", ticks=ticks, received_mono=0.0, frames=len(ticks))


def test_an_expected_gap_starts_where_the_feed_was_at_the_drop_not_where_it_is_at_the_end(
    tmp_path: Path, kis_sim
) -> None:
    """A feed 5 s behind the clock at the drop; ticks after the reconnect reach the gap actor before the
    gap's end: the gap still starts at the last tick before the drop."""
    plane = gaps_plane(tmp_path, kis_sim)
    symbol = plane.symbols(1)[0]
    dropped = kis_sim.clock.now().replace(microsecond=0) - timedelta(seconds=20)
    last_before = dropped - timedelta(seconds=5)
    plane.tell("gaps", trades_at(symbol, last_before - timedelta(seconds=1), last_before))
    plane.tell("gaps", ExpectedGapStarted(at=dropped, account="acct1", symbols=(symbol,),
                                          reason="websocket_reconnect"))
    plane.tell("gaps", trades_at(symbol, dropped + timedelta(seconds=3)))
    plane.tell("gaps", ExpectedGapEnded(at=dropped + timedelta(seconds=4), account="acct1", symbols=(symbol,),
                                        started_at=dropped, reason="websocket_reconnect"))
    gap = the_recovered_gap(plane, symbol)
    assert datetime.fromisoformat(gap["start"]) == last_before


def test_a_gap_open_already_moves_back_to_an_earlier_start_but_never_forward(tmp_path: Path, kis_sim) -> None:
    """A drop's gap, then the restart after a kill reaches back to the last tick on disk: the gap starts
    there; a later start told for it changes nothing."""
    plane = gaps_plane(tmp_path, kis_sim)
    symbol = plane.symbols(1)[0]
    dropped = kis_sim.clock.now().replace(microsecond=0) - timedelta(seconds=20)
    on_disk = dropped - timedelta(seconds=1.5)
    plane.tell("gaps", trades_at(symbol, on_disk - timedelta(seconds=1), on_disk,
                                 dropped - timedelta(seconds=0.5)))  # the last one never reached the disk
    for at, reason in ((dropped, "websocket_reconnect"), (on_disk, "observer_restart"),
                       (dropped, "websocket_reconnect")):
        plane.tell("gaps", ExpectedGapStarted(at=at, account="acct1", symbols=(symbol,), reason=reason))
    plane.tell("gaps", ExpectedGapEnded(at=dropped + timedelta(seconds=2), account="acct1", symbols=(symbol,),
                                        started_at=on_disk, reason="observer_restart"))
    gap = the_recovered_gap(plane, symbol)
    assert datetime.fromisoformat(gap["start"]) == on_disk


def test_a_bad_frames_gap_starts_at_the_last_tick_before_it_even_when_later_ticks_arrive_first(
    tmp_path: Path, kis_sim
) -> None:
    """The connection told the bad frame before the ticks after it, but those crossed the link on its
    faster path and came first: the gap starts at the last tick before the frame (the message's `since`),
    not at one after it, so the frame's own ticks are inside it."""
    plane = gaps_plane(tmp_path, kis_sim)
    symbol = plane.symbols(1)[0]
    arrived = kis_sim.clock.now().replace(microsecond=0) - timedelta(seconds=20)
    last_before = arrived - timedelta(seconds=2)
    plane.tell("gaps", trades_at(symbol, last_before - timedelta(seconds=1), last_before))
    plane.tell("gaps", trades_at(symbol, arrived - timedelta(seconds=0.5)))  # after the frame, here first
    plane.tell("gaps", TicksMissed(at=arrived, account="acct1", symbols=(symbol,), reason="bad_frame",
                                   since=((symbol, last_before),)))
    gap = the_recovered_gap(plane, symbol)
    assert (datetime.fromisoformat(gap["start"]), gap["reason"]) == (last_before, "bad_frame")


def test_a_short_gap_is_back_filled_from_minute_bars(tmp_path: Path, kis_sim) -> None:
    plane = gaps_plane(tmp_path, kis_sim)
    symbol = plane.symbols(1)[0]
    message = end_gap(plane, symbol, 20)
    assert wait_until(lambda: plane.metrics.count("gaps_recovered") == 1, WAIT)
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    (recovery_file,) = scalp_files(plane, f"recovery_*_{symbol}.jsonl")
    records = read_jsonl(recovery_file).records
    assert records
    start = datetime.fromisoformat(records[0]["meta"]["original_gap"]["start"])
    end = datetime.fromisoformat(records[0]["meta"]["original_gap"]["end"])
    assert end == message.at and start == message.started_at - timedelta(seconds=IN_FLIGHT_SECONDS)
    for record in records:
        (bar,) = record["instruments"]
        stamp = datetime.fromisoformat(bar["timestamp"])
        assert bar["symbol"] == symbol and stamp < end and stamp + timedelta(minutes=1) > start
        assert bar["volume"] >= 0 and bar["price"]["low"] <= bar["price"]["close"] <= bar["price"]["high"]
    tick_rows = read_jsonl(scalp_files(plane, f"ticks_{symbol}.jsonl")[0]).records
    assert [row["source"] for row in tick_rows] == ["recovery"] * len(records)
    assert plane.metrics.count("gaps_detected") == 1 and plane.metrics.count("gaps_marked") == 0


def test_a_gap_over_sixty_seconds_gets_a_marker_only(tmp_path: Path, kis_sim) -> None:
    plane = gaps_plane(tmp_path, kis_sim)
    symbol = plane.symbols(1)[0]
    end_gap(plane, symbol, 90)
    assert wait_until(lambda: plane.metrics.count("gaps_marked") == 1, WAIT)
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    (marker,) = markers(plane)
    assert marker["symbol"] == symbol and marker["gap_type"] == "unrecoverable"
    assert marker["duration_seconds"] > 60 and "not back-filled" in marker["detail"]
    assert scalp_files(plane, "recovery_*") == []
    assert plane.metrics.count("gaps_recovered") == 0


def test_a_failed_back_fill_leaves_a_marker(tmp_path: Path, kis_sim) -> None:
    plane = gaps_plane(tmp_path, kis_sim)
    end_gap(plane, "999999", 3)  # not listed: the minute-bar call fails
    assert wait_until(lambda: plane.metrics.count("gaps_marked") == 1, WAIT)
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    (marker,) = markers(plane)
    assert marker["symbol"] == "999999" and marker["detail"].startswith("minute bars failed")


def test_suspension_marks_the_open_gaps_and_alerts(tmp_path: Path, kis_sim) -> None:
    plane = gaps_plane(tmp_path, kis_sim)
    symbols = plane.symbols(2)
    now = kis_sim.clock.now()
    plane.tell("gaps", ExpectedGapStarted(
        at=now, account="acct1", symbols=symbols, reason="websocket_reconnect"
    ))
    plane.tell("gaps", ConnectionChanged(at=now, account="acct1", state=ConnectionState.SUSPENDED,
                                         since_seconds=61))
    plane.barrier("gaps")
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    lines = markers(plane)
    assert sorted(line["symbol"] for line in lines) == sorted(symbols)
    assert all(line["detail"] == "track B suspended: gap still open" for line in lines)
    assert [alert.key for alert in plane.received("notifier", SystemAlert)] == ["gaps_open.acct1"]


def gap_ranges(plane: DataPlane) -> dict[str, list[tuple[datetime, datetime]]]:
    """Every recorded gap per symbol, from the recovery files and the markers on disk."""
    ranges: dict[str, list[tuple[datetime, datetime]]] = {}
    for path in scalp_files(plane, "recovery_*.jsonl"):
        for record in read_jsonl(path).records:
            gap = record["meta"]["original_gap"]
            symbol = record["instruments"][0]["symbol"]
            ranges.setdefault(symbol, []).append(
                (datetime.fromisoformat(gap["start"]), datetime.fromisoformat(gap["end"]))
            )
    for marker in markers(plane):
        ranges.setdefault(marker["symbol"], []).append(
            (datetime.fromisoformat(marker["start_time"]), datetime.fromisoformat(marker["end_time"]))
        )
    return ranges


def stream_then(plane: DataPlane, symbols: tuple[str, ...], fault) -> None:
    plane.start_ws()
    plane.tell("ws.acct1", SetSubscriptions(at=plane.sim.clock.now(), account="acct1", symbols=symbols))
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: plane.metrics.count("ticks_recorded") >= 60, WAIT)
    fault()


def unaccounted_ticks(plane: DataPlane, symbols: tuple[str, ...]) -> tuple[list, list]:
    """Ticks neither recorded nor inside a recorded gap: first those the simulator sent (the chaos day's
    `ticks_lost`), then those its market made between each symbol's first and last recorded tick (it
    sends nothing while silent or disconnected, so this is the list a gap must cover)."""
    plane.tell("ws.acct1", SetSubscriptions(at=plane.sim.clock.now(), account="acct1", symbols=()))
    assert wait_until(lambda: plane.status().confirmed == () and plane.status().pending == (), WAIT)
    plane.barrier("ws.acct1")
    plane.barrier("gaps")
    assert wait_until(lambda: plane.directory.proxy("gaps").idle().get(timeout=WAIT), WAIT)
    plane.barrier("gaps")
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()
    plane.sim.stop()
    recorded: dict[str, list[tuple[datetime, int]]] = {}
    for symbol in symbols:
        for row in read_jsonl(scalp_files(plane, f"ticks_{symbol}.jsonl")[0]).records:
            if row["source"] == "ws":
                recorded.setdefault(symbol, []).append((datetime.fromisoformat(row["exchange_time"]),
                                                        row["cum_volume"]))
    seen = {(symbol, cum) for symbol, rows in recorded.items() for _, cum in rows}
    ranges = gap_ranges(plane)

    def accounted(symbol: str, cum_volume: int, at: datetime) -> bool:
        """Recorded, or inside a gap: tick times are whole seconds, so a gap covers whole seconds."""
        second = at.replace(microsecond=0)
        inside = any(start.replace(microsecond=0) <= second <= end for start, end in ranges.get(symbol, ()))
        return (symbol, cum_volume) in seen or inside

    key = app_key_hash(plane.accounts[0].app_key.get_secret_value())
    lost = [
        (row["symbol"], row["exchange_time"])
        for row in read_jsonl(plane.sim.config.sent_log).records
        if row["app_key_hash"] == key
        and not accounted(row["symbol"], row["cum_volume"], datetime.fromisoformat(row["exchange_time"]))
    ]
    missing = []
    for symbol, rows in recorded.items():
        # From the second after the first tick: trades earlier in that second preceded the subscription.
        first, last = rows[0][0] + timedelta(seconds=1), max(at for at, _ in rows)
        for trade in plane.sim.market.unified_trades(symbol, first, last):  # the default feed's trades
            if trade.time.replace(microsecond=0) > last:
                continue
            if not accounted(symbol, trade.cum_volume, trade.time):
                missing.append((symbol, trade.time.isoformat()))
    return lost, missing


def never_streamed(plane: DataPlane, symbols: tuple[str, ...], gap_reason: str) -> int:
    """How many market trades fell inside recorded gaps of `gap_reason`: proof the gaps were real."""
    count = 0
    for path in scalp_files(plane, "recovery_*.jsonl"):
        records = read_jsonl(path).records
        gap = records[0]["meta"]["original_gap"] if records else None
        if gap is None or gap["reason"] != gap_reason:
            continue
        symbol = records[0]["instruments"][0]["symbol"]
        start, end = datetime.fromisoformat(gap["start"]), datetime.fromisoformat(gap["end"])
        count += len(plane.sim.market.trades(symbol, start + timedelta(seconds=1), end))
    return count


def test_a_drop_is_back_filled_and_no_sent_tick_is_unaccounted(tmp_path: Path, kis_sim) -> None:
    plane = gaps_plane(tmp_path, kis_sim)
    symbols = plane.symbols(6)
    stream_then(plane, symbols, plane.sim.faults.drop_sessions)
    assert wait_until(lambda: plane.metrics.count("reconnects") == 1, WAIT)
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: plane.metrics.count("gaps_recovered") >= len(symbols), WAIT)
    assert unaccounted_ticks(plane, symbols) == ([], [])
    assert never_streamed(plane, symbols, "websocket_reconnect") > 0
    recovered = {path.name.split("_")[-1].removesuffix(".jsonl") for path in scalp_files(plane, "recovery_*")}
    assert recovered == set(symbols)


def test_a_silence_is_detected_from_tick_timing_and_back_filled(tmp_path: Path, kis_sim) -> None:
    patient = FAST_WS.model_copy(update={"silence_timeout_seconds": 6.0})
    plane = gaps_plane(tmp_path, kis_sim, websocket=patient)
    symbols = plane.symbols(4)
    detector = plane.directory.proxy("gaps").detector.get(timeout=WAIT)  # read only, between its ticks

    def cadences_known() -> bool:
        """Until a symbol has a few intervals its silences are learnt, not flagged (core/gaps.py): a
        silence right after a symbol's first tick is not what this test is about."""
        return all(detector.threshold_seconds(symbol) is not None for symbol in symbols)

    def silence() -> None:
        assert wait_until(cadences_known, WAIT)
        plane.sim.faults.silence_sessions(3.0)

    stream_then(plane, symbols, silence)
    assert wait_until(lambda: plane.metrics.count("gaps_recovered") >= 1, WAIT)
    assert plane.metrics.count("reconnects") == 0
    assert unaccounted_ticks(plane, symbols) == ([], [])
    assert never_streamed(plane, symbols, "unexpected_gap") > 0
    unexpected = [
        record for path in scalp_files(plane, "recovery_*.jsonl") for record in read_jsonl(path).records
        if record["meta"]["original_gap"]["reason"] == "unexpected_gap"
    ]
    assert unexpected
    durations = {record["meta"]["original_gap"]["duration_seconds"] for record in unexpected}
    assert all(duration >= 20 for duration in durations)  # 3 s of silence at 10x simulated speed



def recorded_ticks(plane: DataPlane, symbol: str) -> list[datetime]:
    files = scalp_files(plane, f"ticks_{symbol}.jsonl")
    return [datetime.fromisoformat(row["exchange_time"]) for path in files for row in read_jsonl(path).records
            if row["source"] == "ws"]


def test_a_symbol_taken_back_after_a_replacement_gets_no_gap_over_the_time_it_was_not_subscribed(
    tmp_path: Path, kis_sim
) -> None:
    """Dropped from the target for a simulated minute, then taken back: the connection passes each target
    on to the gap actor, which stops timing the symbol while it is not subscribed."""
    plane = gaps_plane(tmp_path, kis_sim)
    symbols = plane.symbols(4)
    dropped, kept = symbols[0], symbols[1:]
    plane.start_ws()
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=symbols))
    plane.wait_confirmed(symbols)
    assert wait_until(lambda: len(recorded_ticks(plane, dropped)) >= 10, WAIT)

    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=kept))
    plane.wait_confirmed(kept)
    left_at = kis_sim.clock.now()
    assert wait_until(lambda: kis_sim.clock.now() >= left_at + timedelta(seconds=60), WAIT)
    plane.tell("ws.acct1", SetSubscriptions(at=kis_sim.clock.now(), account="acct1", symbols=symbols))
    plane.wait_confirmed(symbols)
    back_at = kis_sim.clock.now()
    assert wait_until(lambda: len([t for t in recorded_ticks(plane, dropped) if t >= back_at]) >= 5, WAIT)
    plane.barrier("ws.acct1")
    plane.barrier("gaps")
    plane.barrier("recorder")
    pykka.ActorRegistry.stop_all()

    across = [(start, end) for start, end in gap_ranges(plane).get(dropped, ())
              if start < back_at and end > left_at]
    assert across == []


def test_a_dead_workers_symbol_has_one_gap_from_its_last_tick_to_its_first_on_another_account(
    tmp_path: Path, kis_sim
) -> None:
    """The slot manager tells the gap actor a dead worker's symbols (`until_next_tick`): their gap covers the
    time until they stream on the other account, not only until the death was found."""
    plane = gaps_plane(tmp_path, kis_sim)
    moved, quiet = plane.symbols(2)
    found = kis_sim.clock.now().replace(microsecond=0) - timedelta(seconds=40)
    last = found - timedelta(seconds=6)
    plane.tell("gaps", trades_at(moved, last))
    plane.tell("gaps", TicksMissed(at=found, account="acct1", symbols=(moved,), reason="worker_lost",
                                   until_next_tick=True))
    late = trades_at(moved, last + timedelta(seconds=1))  # the dead account's tick still in flight
    plane.tell("gaps", late)
    first_elsewhere = found + timedelta(seconds=4)
    elsewhere = trades_at(moved, first_elsewhere)
    plane.tell("gaps", elsewhere.model_copy(update={"account": "acct2"}))
    plane.tell("gaps", TicksMissed(at=found, account="acct1", symbols=(quiet,), reason="worker_lost",
                                   until_next_tick=True))
    plane.tell("gaps", trades_at(moved, kis_sim.clock.now()))  # any tick checks the quiet one's limit
    assert wait_until(lambda: plane.metrics.count("gaps_detected") == 1, WAIT)
    plane.barrier("gaps")
    pykka.ActorRegistry.stop_all()
    ranges = gap_ranges(plane)
    assert ranges[moved] and {start for start, _end in ranges[moved]} == {last}
    assert max(end for _start, end in ranges[moved]) == first_elsewhere
    (marker,) = [m for m in markers(plane) if m["symbol"] == quiet]  # its limit is 60 s ahead: still open
    assert "still open" in marker["detail"]


def test_a_dead_workers_gap_covers_the_last_seconds_its_journal_may_lack(tmp_path: Path, kis_sim) -> None:
    """A SIGKILLed worker's recorder had not written its last second of ticks: the gap starts at the tick
    received before the last UNJOURNALED_SECONDS, not at the last tick this actor saw."""
    plane = gaps_plane(tmp_path, kis_sim)
    (moved,) = plane.symbols(1)
    found = kis_sim.clock.now().replace(microsecond=0) - timedelta(seconds=40)
    last = found - timedelta(seconds=6)
    for seconds in (2, 1, 0):  # three seconds' ticks arriving within a real second
        plane.tell("gaps", trades_at(moved, last - timedelta(seconds=seconds)))
    plane.tell("gaps", TicksMissed(at=found, account="acct1", symbols=(moved,), reason="worker_lost",
                                   until_next_tick=True))
    elsewhere = trades_at(moved, found + timedelta(seconds=4))
    plane.tell("gaps", elsewhere.model_copy(update={"account": "acct2"}))
    assert wait_until(lambda: plane.metrics.count("gaps_detected") == 1, WAIT)
    plane.barrier("gaps")
    pykka.ActorRegistry.stop_all()
    assert {start for start, _end in gap_ranges(plane)[moved]} == {last - timedelta(seconds=2)}
