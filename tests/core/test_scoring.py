import math
from datetime import datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.loader import load_settings
from core.models import Trigger, TriggerKind
from core.scoring import rank_candidates, score, usable_market_cap, weight
from core.settings import TriggerSettings, VolumeSurgeRule

KST = ZoneInfo("Asia/Seoul")
NOW = datetime(2026, 1, 20, 10, 0, tzinfo=KST)
SETTINGS = TriggerSettings()


def trig(
    symbol="005930", kind=TriggerKind.VOLUME_SURGE, strength=0.5, ttl: float | None = 300.0, at=NOW
) -> Trigger:
    return Trigger(
        symbol=symbol,
        kind=kind,
        strength=strength,
        value=1.0,
        threshold=1.0,
        detected_at=at,
        expires_at=None if ttl is None else at + timedelta(seconds=ttl),
    )


def test_score_formula_uses_kind_weight_strength_and_market_cap():
    assert score(trig(strength=0.5), 1e12, SETTINGS) == pytest.approx(10 * 1.5 + 0.1 * 12)
    assert score(trig(kind=TriggerKind.TRADE_VELOCITY, strength=0.0), 1e3, SETTINGS) == pytest.approx(8 + 0.3)
    assert score(trig(kind=TriggerKind.VOLATILITY_SPIKE, strength=1.0), None, SETTINGS) == pytest.approx(12)
    assert score(trig(kind=TriggerKind.MANUAL, strength=1.0), None, SETTINGS) == pytest.approx(10)
    price_move = trig(kind=TriggerKind.REALTIME_PRICE_MOVE, strength=0.0)
    assert score(price_move, None, SETTINGS) == pytest.approx(9.5)
    custom = TriggerSettings(volume_surge=VolumeSurgeRule(weight=2.0), market_cap_weight=1.0)
    assert score(trig(strength=0.5), 100.0, custom) == pytest.approx(3 + 2)


def test_every_kind_has_its_configured_weight():
    triggers = [k for k in TriggerKind if k is not TriggerKind.NEAR_SIGNAL]  # a ranking kind, never a trigger
    assert {k: weight(k, SETTINGS) for k in triggers} == {
        TriggerKind.VOLUME_SURGE: 10.0,
        TriggerKind.TRADE_VELOCITY: 8.0,
        TriggerKind.VOLATILITY_SPIKE: 6.0,
        TriggerKind.MANUAL: 5.0,
        TriggerKind.REALTIME_VOLUME: 9.0,
        TriggerKind.REALTIME_PRICE_MOVE: 9.5,
    }


def test_realtime_profile_ranks_by_the_track_b_documents_priorities():
    """track_b_independent_scanner.md: volume surge 0.9, volatility spike 0.95; no market-cap term, so a
    small cap's volatility spike outranks a large cap's volume surge of the same strength."""
    realtime = load_settings(None, {}, overrides={"profile": "realtime"}).triggers
    assert weight(TriggerKind.REALTIME_VOLUME, realtime) == 0.9
    assert weight(TriggerKind.REALTIME_PRICE_MOVE, realtime) == 0.95
    volume = trig("000001", kind=TriggerKind.REALTIME_VOLUME, strength=0.5)
    move = trig("000002", kind=TriggerKind.REALTIME_PRICE_MOVE, strength=0.5)
    assert score(volume, 4e14, realtime) == pytest.approx(0.9 * 1.5)
    assert score(move, 1e9, realtime) == pytest.approx(0.95 * 1.5)
    ranked = rank_candidates([volume, move], {"000001": 4e14, "000002": 1e9}, NOW, realtime).candidates
    assert [c.symbol for c in ranked] == ["000002", "000001"]


def test_unusable_market_caps_count_zero():
    for bad in (None, 0.0, 0.5, -5.0, math.nan, math.inf):
        assert usable_market_cap(bad) == 0.0
    assert usable_market_cap(1.0) == 1.0


def test_missing_market_cap_scores_on_strength_and_warns():
    ranking = rank_candidates([trig("A00001"), trig("A00002")], {"A00001": 1e9}, NOW, SETTINGS)
    by_symbol = {c.symbol: c for c in ranking.candidates}
    assert by_symbol["A00002"].score == pytest.approx(15.0)
    assert by_symbol["A00002"].market_cap == 0.0
    (warning,) = ranking.warnings
    assert "A00002" in warning and "A00001" not in warning
    assert rank_candidates([trig("A00001")], {"A00001": 1e9}, NOW, SETTINGS).warnings == ()


def test_best_first_with_ties_by_market_cap_then_code():
    triggers = [trig("A00003"), trig("A00001"), trig("A00002"), trig("A00009", strength=0.9)]
    caps = {"A00001": 1.0, "A00002": 1.0, "A00003": 1.0, "A00009": 1.0}
    ranked = rank_candidates(triggers, caps, NOW, SETTINGS).candidates
    assert [c.symbol for c in ranked] == ["A00009", "A00001", "A00002", "A00003"]
    zero_weight = TriggerSettings(market_cap_weight=0.0)
    caps = {"A00001": 10.0, "A00002": 1000.0, "A00003": 10.0}
    ranked = rank_candidates(triggers[:3], caps, NOW, zero_weight).candidates
    assert [c.symbol for c in ranked] == ["A00002", "A00001", "A00003"]  # equal scores: bigger cap first


def test_one_candidate_per_symbol_from_its_strongest_trigger():
    triggers = [
        trig(kind=TriggerKind.VOLUME_SURGE, strength=0.6),
        trig(kind=TriggerKind.VOLATILITY_SPIKE, strength=0.9),
        trig(kind=TriggerKind.TRADE_VELOCITY, strength=0.2),
    ]
    (candidate,) = rank_candidates(triggers, {"005930": 1e12}, NOW, SETTINGS).candidates
    assert candidate.trigger is TriggerKind.VOLATILITY_SPIKE and candidate.strength == 0.9
    assert candidate.score == pytest.approx(6 * 1.9 + 1.2)
    assert candidate.market_cap == 1e12 and candidate.detected_at == NOW


def test_equal_strength_prefers_the_heavier_kind():
    triggers = [
        trig(kind=TriggerKind.MANUAL, strength=1.0),
        trig(kind=TriggerKind.VOLUME_SURGE, strength=1.0),
    ]
    (candidate,) = rank_candidates(triggers, {}, NOW, SETTINGS).candidates
    assert candidate.trigger is TriggerKind.VOLUME_SURGE


def test_expired_triggers_do_not_rank_even_exactly_at_expiry():
    triggers = [trig("A00001", ttl=60), trig("A00002", ttl=None), trig("A00003", ttl=61)]
    ranked = rank_candidates(triggers, {}, NOW + timedelta(seconds=60), SETTINGS).candidates
    assert {c.symbol for c in ranked} == {"A00002", "A00003"}


trigger_strategy = st.builds(
    trig,
    symbol=st.sampled_from(["A00001", "A00002", "A00003", "A00004", "A00005"]),
    kind=st.sampled_from(list(TriggerKind)),
    strength=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    ttl=st.sampled_from([None, 30.0, 300.0]),
    at=st.integers(-120, 0).map(lambda s: NOW + timedelta(seconds=s)),
)
caps_strategy = st.dictionaries(
    st.sampled_from(["A00001", "A00002", "A00003", "A00004"]),
    st.none() | st.sampled_from([0.0, 10.0, 1e9, 1e12]),
)


@given(st.lists(trigger_strategy, max_size=25), caps_strategy, st.randoms())
def test_ranking_properties(triggers, caps, rnd):
    first = rank_candidates(triggers, caps, NOW, SETTINGS)
    shuffled = list(triggers)
    rnd.shuffle(shuffled)
    assert rank_candidates(shuffled, caps, NOW, SETTINGS) == first  # deterministic, order-free
    symbols = [c.symbol for c in first.candidates]
    assert len(symbols) == len(set(symbols))  # one per symbol
    assert set(symbols) == {t.symbol for t in triggers if t.alive_at(NOW)}
    keys = [(-c.score, -c.market_cap, c.symbol) for c in first.candidates]
    assert all(a < b for a, b in pairwise(keys))  # strict total order
    for c in first.candidates:
        mine = [t for t in triggers if t.symbol == c.symbol and t.alive_at(NOW)]
        assert c.strength == max(t.strength for t in mine)
        chosen = [t for t in mine if t.kind is c.trigger and t.strength == c.strength]
        assert c.detected_at == min(t.detected_at for t in chosen)
        assert c.score == score(chosen[0], caps.get(c.symbol), SETTINGS)
