from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.context_sync import BaselineMetrics
from core.models import Trigger, TriggerKind
from core.settings import (
    ManualRule,
    RealtimeDetectorRule,
    TradeVelocityRule,
    TriggerSettings,
    VolatilitySpikeRule,
    VolumeSurgeRule,
)
from core.triggers import (
    Baseline,
    MoveWindow,
    RateWindow,
    Renewal,
    ScanRow,
    SumWindow,
    SurgeLevel,
    TickDetector,
    TriggerBook,
    detect_realtime_price_move,
    detect_realtime_volume,
    detect_trade_velocity,
    detect_volatility_spike,
    detect_volume_surge,
    evaluate_scan,
    manual_trigger,
    minute_baseline,
    session_fraction,
    surge_level,
)

KST = ZoneInfo("Asia/Seoul")
CLOSE = datetime(2026, 1, 20, 15, 30, tzinfo=KST)  # whole session elapsed: fraction 1
NOON = datetime(2026, 1, 20, 12, 15, tzinfo=KST)  # half the session


def row(
    cum_volume=0.0, at=CLOSE, high=10_000.0, low=10_000.0, prev_close=10_000.0, symbol="005930"
) -> ScanRow:
    return ScanRow(symbol, 10_000.0, 10_000.0, high, low, cum_volume, prev_close, 1e12, at)


# --- session scaling ---------------------------------------------------------------------------


def test_session_fraction_runs_from_floor_to_one():
    assert session_fraction(NOON) == pytest.approx(0.5)
    assert session_fraction(CLOSE) == 1.0
    assert session_fraction(CLOSE + timedelta(hours=3)) == 1.0
    assert session_fraction(datetime(2026, 1, 20, 8, 0, tzinfo=KST)) == 0.1
    assert session_fraction(datetime(2026, 1, 20, 9, 39, tzinfo=KST)) == pytest.approx(0.1)
    assert session_fraction(datetime(2026, 1, 20, 9, 39, tzinfo=KST), min_fraction=0.01) == pytest.approx(0.1)
    assert session_fraction(datetime(2026, 1, 20, 3, 15, tzinfo=ZoneInfo("UTC"))) == pytest.approx(0.5)


# --- volume surge ------------------------------------------------------------------------------


def test_volume_surge_fires_exactly_at_threshold_not_below():
    rule = VolumeSurgeRule()
    base = Baseline(avg_volume_20d=1000, atr_14d=100)
    trigger = detect_volume_surge(row(3000), base, rule)
    assert trigger is not None
    assert (trigger.kind, trigger.value, trigger.threshold) == (TriggerKind.VOLUME_SURGE, 3.0, 3.0)
    assert trigger.strength == pytest.approx(3.0 / 5.0)
    assert trigger.expires_at == CLOSE + timedelta(seconds=300)
    assert detect_volume_surge(row(2999), base, rule) is None


def test_volume_surge_compares_against_the_elapsed_share_of_a_day():
    base = Baseline(avg_volume_20d=1000, atr_14d=100)
    at_noon = detect_volume_surge(row(1500, at=NOON), base, VolumeSurgeRule())
    assert at_noon is not None and at_noon.value == pytest.approx(3.0)
    assert detect_volume_surge(row(1500, at=CLOSE), base, VolumeSurgeRule()) is None


def test_volume_surge_strength_saturates_at_severe():
    base = Baseline(avg_volume_20d=1000, atr_14d=100)
    assert detect_volume_surge(row(5000), base, VolumeSurgeRule()).strength == 1.0
    assert detect_volume_surge(row(50_000), base, VolumeSurgeRule()).strength == 1.0


def test_volume_surge_needs_a_baseline_and_an_enabled_rule():
    assert detect_volume_surge(row(10**9), Baseline(0, 100), VolumeSurgeRule()) is None
    assert detect_volume_surge(row(10**9), Baseline(1000, 100), VolumeSurgeRule(enabled=False)) is None


def test_surge_levels_at_their_boundaries():
    rule = VolumeSurgeRule()
    assert surge_level(1.99, rule) is None
    assert surge_level(2.0, rule) is SurgeLevel.MILD
    assert surge_level(3.0, rule) is SurgeLevel.MODERATE
    assert surge_level(4.99, rule) is SurgeLevel.MODERATE
    assert surge_level(5.0, rule) is SurgeLevel.SEVERE


# --- volatility spike --------------------------------------------------------------------------


def test_volatility_spike_exactly_at_twice_atr():
    rule = VolatilitySpikeRule()
    trigger = detect_volatility_spike(row(high=10_200, low=10_000), Baseline(1000, 100), rule)
    assert trigger is not None and trigger.value == 2.0
    assert trigger.strength == pytest.approx(2.0 / 3.0)
    assert detect_volatility_spike(row(high=10_199, low=10_000), Baseline(1000, 100), rule) is None
    assert detect_volatility_spike(row(high=10_300, low=10_000), Baseline(1000, 100), rule).strength == 1.0


def test_volatility_uses_true_range_across_a_gap():
    gap_up = row(high=10_500, low=10_450, prev_close=10_250)  # range 50, true range 250
    assert detect_volatility_spike(gap_up, Baseline(1000, 125), VolatilitySpikeRule()).value == 2.0
    assert detect_volatility_spike(gap_up, Baseline(1000, 0), VolatilitySpikeRule()) is None


def test_a_scan_before_the_first_trade_of_the_day_is_no_volatility_spike():
    pre_market = row(high=0, low=0, prev_close=10_250)  # quoted before the open: no high or low yet
    assert detect_volatility_spike(pre_market, Baseline(1000, 125), VolatilitySpikeRule()) is None


def test_evaluate_scan_checks_every_row_with_a_baseline():
    rows = [row(5000, high=10_300, symbol="A00001"), row(5000, symbol="A00002"), row(9999, symbol="A00003")]
    baselines = {"A00001": Baseline(1000, 100), "A00002": Baseline(1000, 100)}
    found = evaluate_scan(rows, baselines, TriggerSettings())
    assert sorted((t.symbol, t.kind) for t in found) == [
        ("A00001", TriggerKind.VOLATILITY_SPIKE),
        ("A00001", TriggerKind.VOLUME_SURGE),
        ("A00002", TriggerKind.VOLUME_SURGE),
    ]


def opening(avg_volatility: float) -> BaselineMetrics:
    return BaselineMetrics(avg_volume=1e6, avg_volatility=avg_volatility, volume_threshold=1.5e6,
                           volatility_threshold=1.5 * avg_volatility, sample_count=100)


def test_the_context_syncs_baseline_makes_a_spike_stand_out_from_a_volatile_open():
    """A 3 % range is a spike against a 100-won ATR, but not on a day whose opening half hour moved every
    symbol 2.5 % on average (threshold 3.75 %); on a calm open (1 % average, threshold 1.5 %) it is."""
    wide = row(high=10_300, low=10_000)
    rule, daily = VolatilitySpikeRule(), Baseline(1000, 100)
    assert detect_volatility_spike(wide, daily, rule) is not None
    assert detect_volatility_spike(wide, daily, rule, opening(0.025)) is None
    assert detect_volatility_spike(wide, daily, rule, opening(0.01)) is not None
    assert detect_volatility_spike(wide, daily, rule, opening(0.0)) is not None  # no volatility measured
    rows = [wide, row(5000, symbol="A00002")]
    found = evaluate_scan(rows, {"005930": daily, "A00002": daily}, TriggerSettings(), opening=opening(0.025))
    assert [(t.symbol, t.kind) for t in found] == [("A00002", TriggerKind.VOLUME_SURGE)]  # volume: unchanged


# --- pure tick detectors -----------------------------------------------------------------------


def test_trade_velocity_threshold_and_strength():
    rule = TradeVelocityRule()
    trigger = detect_trade_velocity("005930", 10.0, NOON, rule)
    assert trigger is not None and trigger.strength == 0.5
    assert trigger.expires_at == NOON + timedelta(seconds=180)
    assert detect_trade_velocity("005930", 9.99, NOON, rule) is None
    assert detect_trade_velocity("005930", 40.0, NOON, rule).strength == 1.0


def test_realtime_detectors_at_their_thresholds():
    rule = RealtimeDetectorRule(enabled=True)
    volume = detect_realtime_volume("005930", 500.0, 100.0, NOON, rule)
    assert volume is not None and volume.value == 5.0 and volume.strength == 0.5
    assert detect_realtime_volume("005930", 499.0, 100.0, NOON, rule) is None
    assert detect_realtime_volume("005930", 500.0, 0.0, NOON, rule) is None
    assert detect_realtime_price_move("005930", -5.0, NOON, rule).value == -5.0
    assert detect_realtime_price_move("005930", 4.99, NOON, rule) is None
    assert detect_realtime_price_move("005930", 5.0, NOON, RealtimeDetectorRule()) is None  # disabled


def test_manual_override_never_expires_by_default():
    trigger = manual_trigger("005930", NOON, ManualRule())
    assert trigger.expires_at is None and trigger.alive_at(NOON + timedelta(days=365))


def test_minute_baseline_spreads_a_day_over_the_session():
    assert minute_baseline(390_000) == 1000


# --- sliding windows ---------------------------------------------------------------------------


def test_rate_window_counts_events_in_half_open_window():
    window = RateWindow(10.0)
    for t in range(10):
        window.add(float(t))
    assert window.add(10.0) == 1.0  # t=0 is exactly 10 s old: out; 1..10 in
    assert window.add(9.0) == 1.1  # a late tick counts at the latest time


times = st.lists(st.integers(0, 400).map(lambda x: x / 4.0), min_size=1, max_size=80).map(sorted)


@given(times)
def test_rate_window_matches_brute_force(ts):
    window = RateWindow(10.0)
    for i, t in enumerate(ts):
        got = window.add(t)
        assert got == pytest.approx(sum(1 for u in ts[: i + 1] if u > t - 10.0) / 10.0)


@given(st.lists(st.tuples(st.integers(0, 400).map(lambda x: x / 4.0), st.integers(0, 1000)), max_size=80))
def test_sum_window_matches_brute_force(events):
    events.sort(key=lambda e: e[0])
    window = SumWindow(60.0)
    for i, (t, amount) in enumerate(events):
        assert window.add(t, amount) == sum(a for u, a in events[: i + 1] if u > t - 60.0)


@given(st.lists(st.tuples(st.integers(0, 400).map(lambda x: x / 2.0), st.integers(1, 50)), max_size=80))
def test_move_window_matches_brute_force(events):
    events.sort(key=lambda e: e[0])
    window = MoveWindow(60.0)
    for i, (t, price) in enumerate(events):
        inside = [p for u, p in events[: i + 1] if u > t - 60.0]
        up = (price / min(inside) - 1) * 100
        down = (price / max(inside) - 1) * 100
        assert window.add(t, price) == pytest.approx(up if up >= -down else down)


# --- TickDetector ------------------------------------------------------------------------------


def ticks_at(start: datetime, count: int, step: float) -> list[datetime]:
    return [start + timedelta(seconds=i * step) for i in range(count)]


def test_tick_detector_fires_trade_velocity_at_the_hundredth_trade_in_ten_seconds():
    detector = TickDetector(TriggerSettings())
    fired = []
    for i, at in enumerate(ticks_at(NOON, 100, 0.05)):
        result = detector.on_tick("005930", at, 10_000.0, 1)
        if result:
            fired.append((i, result))
    assert [i for i, _ in fired] == [99]
    (trigger,) = fired[0][1]
    assert trigger.kind is TriggerKind.TRADE_VELOCITY and trigger.value == 10.0


def test_tick_detector_renews_at_most_once_per_interval():
    detector = TickDetector(TriggerSettings(), renew_interval=1.0)
    emitted = []
    for at in ticks_at(NOON, 300, 0.01):  # 100 trades/s for 3 s
        emitted.extend(detector.on_tick("005930", at, 10_000.0, 1))
    assert [t.detected_at - NOON for t in emitted] == [timedelta(seconds=s) for s in (0.99, 1.99, 2.99)]


def test_tick_detector_realtime_profile():
    settings = TriggerSettings(realtime=RealtimeDetectorRule(enabled=True))
    detector = TickDetector(settings, minute_baselines={"005930": 100.0})
    quiet = [detector.on_tick("005930", at, 10_000.0, 4) for at in ticks_at(NOON, 100, 0.6)]
    assert not any(quiet)  # 4 x 100 = 400 < 500 in any minute, price flat
    later = NOON + timedelta(minutes=5)
    assert detector.on_tick("005930", later, 10_000.0, 499) == ()
    (volume,) = detector.on_tick("005930", later + timedelta(seconds=1), 10_000.0, 1)
    assert volume.kind is TriggerKind.REALTIME_VOLUME and volume.value == 5.0
    renewed, move = detector.on_tick("005930", later + timedelta(seconds=59), 10_500.0, 0)
    assert renewed.kind is TriggerKind.REALTIME_VOLUME  # the same 500 shares are still inside the minute
    assert move.kind is TriggerKind.REALTIME_PRICE_MOVE and move.value == pytest.approx(5.0)
    assert move.expires_at == later + timedelta(seconds=359)


def test_tick_detector_price_move_leaves_the_window():
    settings = TriggerSettings(realtime=RealtimeDetectorRule(enabled=True))
    detector = TickDetector(settings)
    detector.on_tick("005930", NOON, 10_000.0, 1)
    assert detector.on_tick("005930", NOON + timedelta(seconds=60), 10_500.0, 1) == ()
    (drop,) = detector.on_tick("005930", NOON + timedelta(seconds=61), 9_975.0, 1)
    assert drop.value == pytest.approx(-5.0)


def test_tick_detector_symbols_are_independent_and_forgettable():
    detector = TickDetector(TriggerSettings())
    for at in ticks_at(NOON, 99, 0.05):
        detector.on_tick("A00001", at, 1.0, 1)
    assert detector.on_tick("A00002", NOON + timedelta(seconds=5), 1.0, 1) == ()
    detector.forget("A00001")
    assert detector.on_tick("A00001", NOON + timedelta(seconds=5), 1.0, 1) == ()


# --- TriggerBook -------------------------------------------------------------------------------


def trig(at: datetime, symbol="005930", kind=TriggerKind.VOLUME_SURGE, ttl=300.0, strength=0.5) -> Trigger:
    return Trigger(
        symbol=symbol,
        kind=kind,
        strength=strength,
        value=3.0,
        threshold=3.0,
        detected_at=at,
        expires_at=None if ttl is None else at + timedelta(seconds=ttl),
    )


def test_book_expires_exactly_at_end_of_ttl():
    book = TriggerBook()
    assert book.renew_or_add(trig(NOON)) is Renewal.ADDED
    end = NOON + timedelta(seconds=300)
    assert book.expire(end - timedelta(microseconds=1)) == ()
    assert [t.symbol for t in book.live(end - timedelta(microseconds=1))] == ["005930"]
    assert book.live(end) == ()
    assert book.symbols(end) == frozenset()
    (gone,) = book.expire(end)
    assert gone.symbol == "005930" and len(book) == 0


def test_book_renewal_extends_ttl_and_keeps_first_detection():
    book = TriggerBook()
    book.renew_or_add(trig(NOON, strength=0.4))
    later = NOON + timedelta(seconds=200)
    assert book.renew_or_add(trig(later, strength=0.9)) is Renewal.RENEWED
    (held,) = book.live(later)
    assert held.detected_at == NOON and held.strength == 0.9
    assert held.expires_at == later + timedelta(seconds=300)
    assert book.expire(NOON + timedelta(seconds=300)) == ()
    assert len(book.expire(later + timedelta(seconds=300))) == 1


def test_book_renewal_never_shortens_expiry():
    book = TriggerBook()
    book.renew_or_add(trig(NOON, ttl=300))
    book.renew_or_add(trig(NOON + timedelta(seconds=10), ttl=10))
    assert book.live(NOON)[0].expires_at == NOON + timedelta(seconds=300)


def test_book_re_adds_after_expiry():
    book = TriggerBook()
    book.renew_or_add(trig(NOON))
    again = NOON + timedelta(seconds=300)
    assert book.renew_or_add(trig(again)) is Renewal.ADDED
    assert book.live(again)[0].detected_at == again


def test_book_keys_by_symbol_and_kind_and_manual_stays():
    book = TriggerBook()
    book.renew_or_add(trig(NOON))
    book.renew_or_add(trig(NOON, kind=TriggerKind.VOLATILITY_SPIKE, ttl=60))
    book.renew_or_add(manual_trigger("000660", NOON, ManualRule()))
    much_later = NOON + timedelta(days=1)
    assert [(t.symbol, t.kind) for t in book.expire(much_later)] == [
        ("005930", TriggerKind.VOLATILITY_SPIKE),
        ("005930", TriggerKind.VOLUME_SURGE),
    ]
    assert book.symbols(much_later) == frozenset({"000660"})
    assert book.remove("000660", TriggerKind.MANUAL) is not None
    assert book.remove("000660", TriggerKind.MANUAL) is None
    assert len(book) == 0


book_events = st.tuples(st.sampled_from("ABC"), st.integers(0, 600), st.sampled_from([60, 180, 300]))


@given(st.lists(book_events, max_size=30))
def test_book_live_and_expired_partition(events):
    book = TriggerBook()
    for symbol, offset, ttl in sorted(events, key=lambda e: e[1]):
        book.renew_or_add(trig(NOON + timedelta(seconds=offset), symbol=f"{symbol}00000", ttl=ttl))
    now = NOON + timedelta(seconds=400)
    live = book.live(now)
    total = len(book)
    held = sorted(book, key=lambda t: (t.symbol, t.kind))  # iteration holds the expired ones too
    assert len(held) == total and tuple(t for t in held if t.alive_at(now)) == live
    expired = book.expire(now)
    assert len(live) + len(expired) == total
    assert all(t.alive_at(now) for t in live) and not any(t.alive_at(now) for t in expired)
    assert book.live(now) == live
