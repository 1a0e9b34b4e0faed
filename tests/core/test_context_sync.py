"""Context sync: opening bars, baseline and ranked movers from the first half hour of Track A snapshots."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.context_sync import (
    SnapshotQuote,
    TrackASnapshot,
    degraded_reason,
    snapshot_from_record,
    synchronize_context,
)
from core.models import TriggerKind

KST = ZoneInfo("Asia/Seoul")
OPEN = datetime(2026, 1, 20, 9, 0, tzinfo=KST)
TARGET = OPEN + timedelta(minutes=30)


def snap(minute: float, **quotes: tuple[float, float]) -> TrackASnapshot:
    rows = tuple(SnapshotQuote(symbol, close, volume) for symbol, (close, volume) in quotes.items())
    return TrackASnapshot(OPEN + timedelta(minutes=minute), rows)


# Three symbols over the seed's 10-minute snapshots (closes, volumes):
#   A: 100 -> 110 -> 105 -> 120   volumes 10+20+30+40 = 100  (open 100, high 120, low 100, close 120)
#   B: 200 -> 190 -> 210 -> 200   volumes  5+5+5+5     = 20   (open 200, high 210, low 190, close 200)
#   C:  50 ->  50 ->  50 ->  50   volumes  0+0+0+0     = 0    (open 50, high 50, low 50, close 50)
SNAPSHOTS = [
    snap(0, A=(100, 10), B=(200, 5), C=(50, 0)),
    snap(10, A=(110, 20), B=(190, 5), C=(50, 0)),
    snap(20, A=(105, 30), B=(210, 5), C=(50, 0)),
    snap(30, A=(120, 40), B=(200, 5), C=(50, 0)),
]


def test_baseline_follows_the_seed():
    result = synchronize_context(SNAPSHOTS, OPEN, TARGET)
    volatility_a, volatility_b = 20 / 100, 20 / 200
    avg_volatility = (volatility_a + volatility_b + 0.0) / 3
    assert result.snapshot_count == 4
    assert result.baseline.avg_volume == pytest.approx(120 / 3)
    assert result.baseline.avg_volatility == pytest.approx(avg_volatility)
    assert result.baseline.volume_threshold == pytest.approx(1.5 * 40)
    assert result.baseline.volatility_threshold == pytest.approx(1.5 * avg_volatility)
    assert result.baseline.sample_count == 3


def test_movers_are_ranked_by_the_seed_composite_score():
    result = synchronize_context(SNAPSHOTS, OPEN, TARGET)
    avg_volatility = (0.2 + 0.1) / 3
    score_a = 0.4 * (100 / 40) + 0.3 * (0.2 / avg_volatility) + 0.3 * (20 / 100) * 100
    score_b = 0.4 * (20 / 40) + 0.3 * (0.1 / avg_volatility) + 0.0
    assert [m.symbol for m in result.movers] == ["A", "B", "C"]
    a, b, c = result.movers
    assert (a.open, a.high, a.low, a.close, a.volume) == (100, 120, 100, 120, 100)
    assert a.score == pytest.approx(score_a) and b.score == pytest.approx(score_b) and c.score == 0.0
    assert a.price_change == pytest.approx(0.2) and b.price_change == 0.0


def test_candidates_are_volume_surges_with_strength_from_the_volume_ratio():
    result = synchronize_context(SNAPSHOTS, OPEN, TARGET, limit=2)
    assert [c.symbol for c in result.candidates] == ["A", "B"]
    a, b = result.candidates
    assert a.trigger is TriggerKind.VOLUME_SURGE and a.detected_at == TARGET
    assert a.strength == pytest.approx((100 / 40) / 3)
    assert b.strength == pytest.approx((20 / 40) / 3)
    assert a.score == result.movers[0].score


def test_only_snapshots_inside_the_window_count_and_their_order_does_not_matter():
    outside = [snap(-1, A=(1, 10**9)), snap(31, B=(1, 10**9))]
    shuffled = [*outside, *SNAPSHOTS]
    random.Random(3).shuffle(shuffled)
    assert synchronize_context(shuffled, OPEN, TARGET) == synchronize_context(SNAPSHOTS, OPEN, TARGET)


def test_max_snapshots_keeps_the_latest_like_the_seed_limit_of_three():
    result = synchronize_context(SNAPSHOTS, OPEN, TARGET, max_snapshots=3)
    assert result.snapshot_count == 3
    a = next(m for m in result.movers if m.symbol == "A")
    assert (a.open, a.close, a.volume) == (110, 120, 90)
    assert synchronize_context(SNAPSHOTS, OPEN, TARGET, max_snapshots=0).movers == ()


def test_a_symbol_missing_from_some_snapshots_uses_the_ones_it_has():
    result = synchronize_context([snap(0, A=(100, 1)), snap(10, A=(90, 1), N=(40, 9))], OPEN, TARGET)
    n = next(m for m in result.movers if m.symbol == "N")
    assert (n.open, n.high, n.low, n.close, n.volume) == (40, 40, 40, 40, 9)


def test_ties_go_to_symbol_order():
    result = synchronize_context([snap(0, Z=(10, 5), Y=(10, 5))], OPEN, TARGET)
    assert [m.symbol for m in result.movers] == ["Y", "Z"]


def test_no_data_gives_an_empty_baseline_and_no_candidates():
    result = synchronize_context([], OPEN, TARGET)
    assert result.baseline.sample_count == 0 and result.baseline.avg_volume == 0
    assert result.movers == () and result.candidates == ()


def test_zero_prices_do_not_divide_by_zero():
    result = synchronize_context([snap(0, A=(0, 10)), snap(10, A=(0, 10))], OPEN, TARGET)
    (a,) = result.movers
    assert (a.volume_ratio, a.volatility_ratio, a.price_change) == (1.0, 0.0, 0.0)
    assert result.baseline.avg_volatility == 0.0


def test_window_must_be_aware_and_ordered():
    with pytest.raises(ValueError, match="aware"):
        synchronize_context([], datetime(2026, 1, 20, 9, 0), TARGET)
    with pytest.raises(ValueError, match="before it starts"):
        synchronize_context([], TARGET, OPEN)


# --- reading snapshot records ------------------------------------------------------------------------------


def test_reads_a_snapshot_record_in_the_seed_shape():
    record = {
        "meta": {"captured_at": "2026-01-20T09:10:00+09:00", "provider": "kis"},
        "instruments": [
            {"symbol": "005930", "price": {"open": 70000, "close": 71200}, "volume": 1500000, "extra": 1},
        ],
    }
    snapshot = snapshot_from_record(record)
    assert snapshot.captured_at == OPEN + timedelta(minutes=10)
    assert snapshot.quotes == (SnapshotQuote("005930", 71200, 1500000),)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"meta": {}, "instruments": []}, "meta.captured_at"),
        ({"meta": {"captured_at": "2026-01-20T09:10:00"}, "instruments": []}, "meta.captured_at"),
        ({"meta": {"captured_at": "2026-01-20T09:10:00+09:00"}}, "instruments"),
        ({"meta": {"captured_at": "2026-01-20T09:10:00+09:00"},
          "instruments": [{"symbol": "A", "price": {"open": 1}, "volume": 1}]},
         "instruments.0.price: no close"),
        ({"meta": {"captured_at": "2026-01-20T09:10:00+09:00"},
          "instruments": [{"symbol": "A", "price": {"close": "x"}, "volume": 1}]},
         "instruments.0.price.close"),
        ([1, 2], "bad Track A snapshot"),
    ],
)
def test_bad_snapshot_records_get_a_one_line_error(record, message):
    with pytest.raises(ValueError, match=message) as caught:
        snapshot_from_record(record)
    assert "\n" not in str(caught.value)


def test_too_few_snapshots_is_the_degraded_mode_and_says_how_many() -> None:
    assert degraded_reason(3, 2) is None and degraded_reason(1, 1) is None
    reason = degraded_reason(1, 2)
    assert reason is not None and "1 of the 2" in reason and "degraded mode" in reason
    assert degraded_reason(0, 1) is not None
