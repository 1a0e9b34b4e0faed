"""Slot allocation rules, their boundaries, failover, MAX SUBSCRIBE OVER, and invariants under hypothesis."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.models import Candidate, TriggerKind
from core.overflow import OverflowReason
from core.settings import SlotSettings
from core.slots import (
    AccountSlots,
    Allocation,
    ChurnGuard,
    Exclusion,
    ProviderAccount,
    Slot,
    SlotState,
    allocate_slots,
    churn_raised,
    market_exclusion,
    release_account,
    release_accounts,
    restore_account,
    shrink_capacity,
    stale_symbols,
)

KST = ZoneInfo("Asia/Seoul")
T0 = datetime(2026, 1, 20, 9, 30, tzinfo=KST)
DEFAULT = SlotSettings()


def cand(symbol: str, score: float, *, market_cap: float = 1e11, kind: TriggerKind = TriggerKind.VOLUME_SURGE,
         strength: float = 0.5) -> Candidate:
    return Candidate(symbol=symbol, score=score, market_cap=market_cap, trigger=kind, strength=strength,
                     detected_at=T0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def held(allocation: Allocation, account: str) -> tuple[str, ...]:
    return allocation.state.account(account).symbols


def codes(allocation: Allocation) -> dict[str, OverflowReason]:
    return {record.symbol: record.code for record in allocation.overflow}


def one_account(capacity: int) -> list[ProviderAccount]:
    return [ProviderAccount("a", capacity)]


def full_state(scores: dict[str, float], since: datetime = T0, capacity: int | None = None) -> SlotState:
    slots = tuple(Slot(symbol, since, score) for symbol, score in scores.items())
    return SlotState((AccountSlots("a", capacity or len(slots), slots),))


# --- free slots and accounts ------------------------------------------------------------------------


def test_free_slots_fill_round_robin_over_accounts_best_first():
    accounts = [ProviderAccount("a", 2), ProviderAccount("b", 2)]
    candidates = [cand("1", 10), cand("2", 9), cand("3", 8), cand("4", 7), cand("5", 6)]
    result = allocate_slots(SlotState(), candidates, (), T0, DEFAULT, accounts)
    assert held(result, "a") == ("1", "3")
    assert held(result, "b") == ("2", "4")
    assert result.diffs["a"].subscribe == ("1", "3") and result.diffs["a"].unsubscribe == ()
    assert result.diffs["b"].subscribe == ("2", "4")
    assert codes(result) == {"5": OverflowReason.DWELL}
    assert result.evaluated == 5


def test_round_robin_cursor_continues_across_allocations():
    accounts = [ProviderAccount("a", 3), ProviderAccount("b", 3)]
    first = allocate_slots(SlotState(), [cand("1", 10)], (), T0, DEFAULT, accounts)
    second = allocate_slots(first.state, [cand("1", 10), cand("2", 9)], (), at(30), DEFAULT, accounts)
    assert held(second, "a") == ("1",) and held(second, "b") == ("2",)
    assert second.diffs["a"].subscribe == () and second.diffs["b"].subscribe == ("2",)


def test_candidates_are_ranked_by_score_whatever_order_they_arrive_in():
    result = allocate_slots(SlotState(), [cand("low", 1), cand("high", 20), cand("mid", 5)], (), T0, DEFAULT,
                            one_account(2))
    assert held(result, "a") == ("high", "mid")
    assert codes(result) == {"low": OverflowReason.DWELL}


def test_equal_scores_keep_the_ranking_order_given():
    candidates = [cand("big", 10, market_cap=9e12), cand("small", 10, market_cap=1e9)]
    result = allocate_slots(SlotState(), candidates, (), T0, DEFAULT, one_account(1))
    assert held(result, "a") == ("big",)


def test_account_capacity_is_configurable_and_capped_by_max_slots():
    accounts = [ProviderAccount("a", 50), ProviderAccount("b", 3)]
    many = [cand(f"{i:06d}", 100 - i * 0.01) for i in range(60)]
    result = allocate_slots(SlotState(), many, (), T0, DEFAULT, accounts)
    assert result.state.account("a").capacity == 41
    assert len(held(result, "a")) == 41 and len(held(result, "b")) == 3
    small = allocate_slots(SlotState(), many, (), T0, SlotSettings(max_slots=20), accounts)
    assert len(held(small, "a")) == 20


def test_execution_notices_take_no_slot_so_a_key_streams_41_symbols():
    result = allocate_slots(SlotState(), [cand(f"{i:06d}", 50 - i * 0.1) for i in range(42)], (), T0, DEFAULT,
                            [ProviderAccount("only")])
    assert len(held(result, "only")) == 41
    assert [record.symbol for record in result.overflow] == ["000041"]


def test_a_candidate_listed_twice_counts_once_with_its_best_score():
    result = allocate_slots(SlotState(), [cand("x", 3), cand("x", 9), cand("y", 5)], (), T0, DEFAULT,
                            one_account(1))
    assert held(result, "a") == ("x",)
    assert result.state.account("a").slots[0].score == 9
    assert result.evaluated == 2


# --- replacement: threshold, dwell, cooldown ------------------------------------------------------------


def test_replacement_needs_strictly_more_than_threshold_times_the_weakest():
    state = full_state({"weak": 10.0, "strong": 30.0})
    now = at(DEFAULT.min_dwell_seconds)
    exactly = allocate_slots(state, [cand("weak", 10.0), cand("strong", 30.0), cand("new", 12.0)], (), now,
                             DEFAULT, one_account(2))
    assert set(held(exactly, "a")) == {"weak", "strong"}
    assert codes(exactly) == {"new": OverflowReason.SLOTS_FULL}
    assert exactly.overflow[0].current_slot_min_score == 10.0
    assert exactly.diffs["a"].subscribe == () and exactly.diffs["a"].unsubscribe == ()

    above = allocate_slots(state, [cand("weak", 10.0), cand("strong", 30.0), cand("new", 12.001)], (), now,
                           DEFAULT, one_account(2))
    assert held(above, "a") == ("strong", "new")
    assert above.diffs["a"].unsubscribe == ("weak",) and above.diffs["a"].subscribe == ("new",)
    assert codes(above) == {"weak": OverflowReason.REPLACED}
    assert above.state.released_at["weak"] == now
    assert [(c.symbol, c.action) for c in above.reasons] == [("weak", "unsubscribe"), ("new", "subscribe")]


def test_replacement_threshold_comes_from_settings():
    state = full_state({"weak": 10.0})
    result = allocate_slots(state, [cand("weak", 10.0), cand("new", 14.0)], (), at(120),
                            SlotSettings(replacement_threshold=1.5), one_account(1))
    assert held(result, "a") == ("weak",)
    result = allocate_slots(state, [cand("weak", 10.0), cand("new", 15.5)], (), at(120),
                            SlotSettings(replacement_threshold=1.5), one_account(1))
    assert held(result, "a") == ("new",)


def test_no_replacement_before_the_minimum_dwell_and_exactly_at_it_yes():
    state = full_state({"old": 1.0})
    early = allocate_slots(state, [cand("new", 50.0)], (), at(119.999), DEFAULT, one_account(1))
    assert held(early, "a") == ("old",)
    assert codes(early) == {"new": OverflowReason.DWELL}
    on_time = allocate_slots(state, [cand("new", 50.0)], (), at(120), DEFAULT, one_account(1))
    assert held(on_time, "a") == ("new",)


def test_a_released_symbol_waits_out_its_cooldown_and_exactly_at_the_end_it_may_return():
    state = SlotState((AccountSlots("a", 2),), {"back": T0})
    inside = allocate_slots(state, [cand("back", 40.0)], (), at(179.999), DEFAULT, one_account(2))
    assert held(inside, "a") == ()
    assert codes(inside) == {"back": OverflowReason.COOLDOWN}
    assert "cooldown 180s" in inside.overflow[0].reason
    done = allocate_slots(state, [cand("back", 40.0)], (), at(180), DEFAULT, one_account(2))
    assert held(done, "a") == ("back",)
    assert "back" not in done.state.released_at


def test_cooldowns_after_the_allocation_stopped_are_still_reported_as_cooldown():
    state = SlotState((AccountSlots("a", 1, (Slot("top", T0, 90.0),)),), {"cool": at(100)})
    result = allocate_slots(state, [cand("top", 90.0), cand("blocked", 5.0), cand("cool", 4.0)], (), at(130),
                            DEFAULT, one_account(1))
    assert codes(result) == {"blocked": OverflowReason.SLOTS_FULL, "cool": OverflowReason.COOLDOWN}


def test_the_weakest_evictable_symbol_goes_first_and_ties_go_to_the_longest_held():
    slots = (Slot("young", at(10), 5.0), Slot("old", T0, 5.0), Slot("strong", T0, 20.0))
    state = SlotState((AccountSlots("a", 3, slots),))
    result = allocate_slots(state, [cand("young", 5.0), cand("old", 5.0), cand("strong", 20.0), cand("n", 7)],
                            (), at(200), DEFAULT, one_account(3))
    assert result.diffs["a"].unsubscribe == ("old",)


def test_each_replacement_takes_the_next_weakest():
    state = full_state({"w1": 1.0, "w2": 2.0, "w3": 30.0})
    candidates = [cand("w1", 1.0), cand("w2", 2.0), cand("w3", 30.0), cand("n1", 10.0), cand("n2", 9.0),
                  cand("n3", 8.0)]
    result = allocate_slots(state, candidates, (), at(300), DEFAULT, one_account(3))
    assert set(held(result, "a")) == {"w3", "n1", "n2"}
    assert codes(result) == {"w1": OverflowReason.REPLACED, "w2": OverflowReason.REPLACED,
                             "n3": OverflowReason.SLOTS_FULL}


# --- score refresh -----------------------------------------------------------------------------------


def test_a_slotted_candidate_takes_its_new_score():
    state = full_state({"x": 3.0})
    result = allocate_slots(state, [cand("x", 17.0, kind=TriggerKind.TRADE_VELOCITY, strength=0.9)], (),
                            at(30), DEFAULT, one_account(1))
    slot = result.state.account("a").slots[0]
    assert (slot.score, slot.trigger, slot.strength) == (17.0, TriggerKind.TRADE_VELOCITY, 0.9)
    assert slot.since == T0


def test_a_symbol_no_longer_a_candidate_scores_zero_and_is_replaced_first_after_its_dwell():
    state = full_state({"expired": 25.0, "weak": 2.0})
    kept = allocate_slots(state, [cand("weak", 2.0)], (), at(30), DEFAULT, one_account(2))
    assert set(held(kept, "a")) == {"expired", "weak"}
    assert {s.symbol: s.score for s in kept.state.account("a").slots} == {"expired": 0.0, "weak": 2.0}
    later = allocate_slots(kept.state, [cand("weak", 2.0), cand("new", 1.0)], (), at(120), DEFAULT,
                           one_account(2))
    assert held(later, "a") == ("weak", "new")
    assert later.diffs["a"].unsubscribe == ("expired",)
    assert codes(later) == {}


# --- pinned symbols ------------------------------------------------------------------------------------


def test_a_pinned_symbol_is_never_evicted_even_with_no_score():
    state = SlotState((AccountSlots("a", 1, (Slot("held", T0, 0.0, pinned=True),)),))
    result = allocate_slots(state, [cand("hot", 99.0)], {"held"}, at(1000), DEFAULT, one_account(1))
    assert held(result, "a") == ("held",)
    assert codes(result) == {"hot": OverflowReason.DWELL}


def test_a_new_pinned_symbol_evicts_the_weakest_unpinned_at_once_and_ignores_its_cooldown():
    state = SlotState((AccountSlots("a", 2, (Slot("x", T0, 9.0), Slot("y", T0, 3.0))),), {"mine": T0})
    result = allocate_slots(state, [cand("x", 9.0), cand("y", 3.0)], {"mine"}, at(1), DEFAULT, one_account(2))
    assert held(result, "a") == ("x", "mine")
    assert result.diffs["a"].unsubscribe == ("y",) and result.diffs["a"].subscribe == ("mine",)
    assert result.state.account("a").slots[1].pinned
    assert codes(result) == {"y": OverflowReason.REPLACED}


def test_the_watchlist_of_the_settings_is_pinned():
    settings = SlotSettings(watchlist=("005930",))
    result = allocate_slots(SlotState(), [cand("a1", 50.0)], (), T0, settings, one_account(1))
    assert held(result, "a") == ("005930",)
    assert codes(result) == {"a1": OverflowReason.DWELL}


def test_more_pinned_symbols_than_slots_overflow():
    result = allocate_slots(SlotState(), [cand("p2", 8.0)], {"p1", "p2", "p3"}, T0, DEFAULT, one_account(2))
    assert set(held(result, "a")) == {"p1", "p2"}
    assert codes(result) == {"p3": OverflowReason.PINNED_OVER_CAPACITY}
    assert result.evaluated == 3


def test_without_any_available_account_everything_overflows():
    state = release_account(SlotState.initial(one_account(2), DEFAULT), "a", T0).state
    result = allocate_slots(state, [cand("x", 5.0)], {"p"}, T0, DEFAULT, one_account(2))
    assert codes(result) == {"x": OverflowReason.NO_ACCOUNT, "p": OverflowReason.NO_ACCOUNT}


# --- overflow records ------------------------------------------------------------------------------------


def test_overflow_records_follow_the_seed_ledger_format():
    state = full_state({"s1": 9.5})
    result = allocate_slots(state, [cand("s1", 9.5), cand("035720", 9.2, market_cap=5e11, strength=0.85)], (),
                            at(300), DEFAULT, one_account(1))
    (record,) = result.overflow
    assert record.to_ledger() == {
        "timestamp": "2026-01-20T09:35:00.000+09:00",
        "symbol": "035720",
        "trigger_type": "VOLUME_SURGE",
        "trigger_strength": 0.85,
        "priority_score": 9.2,
        "reason": "All 1 slots occupied by higher priority",
        "current_slot_min_score": 9.5,
        "metadata": {"reason_code": "slots_full", "market_cap": 5e11},
    }


def test_every_competitor_without_a_slot_gets_exactly_one_overflow_record():
    state = SlotState((AccountSlots("a", 3, (Slot("old", T0, 1.0), Slot("mid", T0, 6.0))),), {"cool": T0})
    candidates = [cand(f"c{i}", 20.0 - i) for i in range(10)] + [cand("cool", 30.0), cand("mid", 6.0)]
    result = allocate_slots(state, candidates, {"pin"}, at(150), DEFAULT, one_account(3))
    slotted = set(result.state.placement())
    competitors = {c.symbol for c in candidates} | {"pin"}
    overflowed = [record.symbol for record in result.overflow]
    assert len(overflowed) == len(set(overflowed))
    assert set(overflowed) == competitors - slotted
    assert result.evaluated == len(competitors)


# --- failover --------------------------------------------------------------------------------------------


def pool_state() -> SlotState:
    return SlotState((
        AccountSlots("a", 3, (Slot("pin", T0, 0.0, pinned=True), Slot("a1", T0, 9.0), Slot("a2", T0, 4.0))),
        AccountSlots("b", 3, (Slot("b1", T0, 7.0),)),
        AccountSlots("c", 2, (Slot("c1", T0, 2.0), Slot("c2", T0, 8.0))),
    ))


def test_a_failed_account_hands_its_symbols_to_free_slots_pinned_first():
    result = release_account(pool_state(), "a", at(5))
    state = result.state
    assert not state.account("a").available and state.account("a").slots == ()
    assert held(result, "b") == ("b1", "pin", "a1")
    assert {s.symbol: s.home for s in state.account("b").slots} == {"b1": None, "pin": "a", "a1": "a"}
    assert result.diffs["a"].unsubscribe == ("pin", "a1", "a2")
    assert result.diffs["b"].subscribe == ("pin", "a1")
    assert codes(result) == {"a2": OverflowReason.ACCOUNT_UNAVAILABLE}
    assert "a1" not in state.released_at
    assert state.account("b").slots[1].since == T0


def test_a_failed_pinned_symbol_evicts_an_unpinned_one_when_no_slot_is_free():
    state = SlotState((
        AccountSlots("a", 1, (Slot("pin", T0, 0.0, pinned=True),)),
        AccountSlots("b", 1, (Slot("b1", T0, 7.0),)),
    ))
    result = release_account(state, "a", at(5))
    assert held(result, "b") == ("pin",)
    assert codes(result) == {"b1": OverflowReason.REPLACED}


def test_a_failed_account_gets_nothing_until_restored_then_takes_its_symbols_back():
    released = release_account(pool_state(), "a", at(5))
    accounts = [ProviderAccount("a", 3), ProviderAccount("b", 3), ProviderAccount("c", 2)]
    candidates = [cand("a1", 9.0), cand("b1", 7.0), cand("c2", 8.0), cand("c1", 2.0), cand("x", 50.0)]
    allocated = allocate_slots(released.state, candidates, {"pin"}, at(10), DEFAULT, accounts)
    assert held(allocated, "a") == ()
    assert "x" in codes(allocated)

    restored = restore_account(allocated.state, "a", at(300))
    assert restored.state.account("a").available
    assert held(restored, "a") == ("pin", "a1")
    assert restored.diffs["b"].unsubscribe == ("pin", "a1")
    assert restored.diffs["a"].subscribe == ("pin", "a1")
    assert all(slot.home is None for slot in restored.state.account("a").slots)

    refill = allocate_slots(restored.state, candidates, {"pin"}, at(301), DEFAULT, accounts)
    assert "x" in held(refill, "a")


def test_accounts_failing_together_hand_nothing_to_each_other():
    """A dead worker's two keys: no symbol of one moves to the other (nor evicts one of its symbols), so
    each failed account's symbols are exactly what it held, all told as moved or overflowed."""
    result = release_accounts(pool_state(), ("a", "b"), at(5))
    state = result.state
    assert not state.account("a").available and not state.account("b").available
    assert held(result, "a") == () and held(result, "b") == ()
    assert result.diffs["b"].subscribe == () and set(result.diffs["b"].unsubscribe) == {"b1"}
    assert held(result, "c") == ("c2", "pin")  # the pinned one evicts the weakest there
    unavailable = OverflowReason.ACCOUNT_UNAVAILABLE
    assert codes(result) == {"a1": unavailable, "a2": unavailable, "b1": unavailable,
                             "c1": OverflowReason.REPLACED}


def test_releasing_an_account_twice_changes_nothing_the_second_time():
    once = release_account(pool_state(), "a", at(5))
    twice = release_account(once.state, "a", at(6))
    assert twice.state == once.state
    assert all(diff.subscribe == () and diff.unsubscribe == () for diff in twice.diffs.values())


def test_unknown_account_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown account 'zz'"):
        release_account(pool_state(), "zz", T0)


# --- MAX SUBSCRIBE OVER -----------------------------------------------------------------------------------


def test_max_subscribe_over_shrinks_capacity_and_drops_the_refused_without_unsubscribing():
    state = SlotState((AccountSlots("a", 4, (Slot("s1", T0, 9.0), Slot("s2", T0, 8.0), Slot("s3", T0, 7.0),
                                             Slot("s4", at(1), 6.0))),))
    result = shrink_capacity(state, "a", 3, at(2), refused=("s4",))
    assert held(result, "a") == ("s1", "s2", "s3")
    assert result.diffs["a"].unsubscribe == ()
    assert result.state.account("a").capacity == 3 and result.state.account("a").reported_capacity == 3
    assert codes(result) == {"s4": OverflowReason.CAPACITY_SHRUNK}
    assert "s4" not in result.state.released_at


def test_max_subscribe_over_moves_the_weakest_excess_to_overflow_and_the_capacity_sticks():
    state = SlotState((
        AccountSlots("a", 4, (Slot("s1", T0, 9.0), Slot("pin", T0, 0.0, pinned=True), Slot("s3", T0, 7.0),
                              Slot("s4", T0, 6.0))),
        AccountSlots("b", 2),
    ))
    result = shrink_capacity(state, "a", 2, at(2))
    assert held(result, "a") == ("s1", "pin")
    assert result.diffs["a"].unsubscribe == ("s3", "s4")
    assert codes(result) == {"s3": OverflowReason.CAPACITY_SHRUNK, "s4": OverflowReason.CAPACITY_SHRUNK}

    accounts = [ProviderAccount("a", 41), ProviderAccount("b", 41)]
    candidates = [cand("s1", 9.0), cand("s3", 7.0), cand("s4", 6.0)]
    after = allocate_slots(result.state, candidates, {"pin"}, at(3), DEFAULT, accounts)
    assert after.state.account("a").capacity == 2
    assert held(after, "b") == ("s3", "s4")


def test_a_smaller_configured_capacity_makes_the_excess_compete_again():
    state = SlotState((AccountSlots("a", 3, (Slot("s1", T0, 9.0), Slot("s2", T0, 8.0), Slot("s3", T0, 1.0))),
                       AccountSlots("b", 3)))
    accounts = [ProviderAccount("a", 2), ProviderAccount("b", 3)]
    result = allocate_slots(state, [cand("s1", 9.0), cand("s2", 8.0), cand("s3", 1.0)], (), at(1), DEFAULT,
                            accounts)
    assert held(result, "a") == ("s1", "s2")
    assert held(result, "b") == ("s3",)
    assert result.diffs["a"].unsubscribe == ("s3",) and result.diffs["b"].subscribe == ("s3",)


def test_an_account_gone_from_the_pool_is_emptied_and_its_symbols_compete_again():
    state = SlotState((AccountSlots("old", 2, (Slot("x", T0, 5.0),)), AccountSlots("a", 2)))
    result = allocate_slots(state, [cand("x", 5.0)], (), at(1), DEFAULT, one_account(2))
    assert [account.name for account in result.state.accounts] == ["a"]
    assert result.diffs["old"].unsubscribe == ("x",)
    assert held(result, "a") == ("x",)


def test_negative_capacity_is_rejected():
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        shrink_capacity(pool_state(), "a", -1, T0)
    with pytest.raises(ValueError, match="capacity must be >= 0"):
        ProviderAccount("a", -1)


# --- state --------------------------------------------------------------------------------------------


def test_state_round_trips_through_its_stored_form():
    state = release_account(pool_state(), "c", at(9)).state
    state = SlotState(state.accounts, {"gone": at(3)}, 2)
    stored = json.loads(json.dumps(state.to_dict()))
    assert stored["accounts"][1]["slots"][1]["home"] == "c"
    assert SlotState.from_dict(stored) == state


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"accounts": [{"name": "a", "capacity": "x"}]}, "bad slot state at accounts.0.capacity"),
        ({"accounts": [{"name": "a", "capacity": 1, "slots": [
            {"symbol": "x", "since": "2026-01-20T09:00:00", "score": 1}]}]}, "naive 'since'"),
        ({"accounts": [{"name": "a", "capacity": 0, "slots": [
            {"symbol": "x", "since": "2026-01-20T09:00:00+09:00", "score": 1}]}]},
         "holds 1 symbols but has 0"),
        ("nonsense", "bad slot state"),
    ],
)
def test_bad_stored_state_is_a_one_line_error(data, message):
    with pytest.raises(ValueError, match=message) as caught:
        SlotState.from_dict(data)
    assert "\n" not in str(caught.value)


def test_a_symbol_on_two_accounts_is_refused():
    with pytest.raises(ValueError, match="x is on both a and b"):
        SlotState((AccountSlots("a", 1, (Slot("x", T0, 1.0),)), AccountSlots("b", 1, (Slot("x", T0, 1.0),))))


def test_naive_now_is_refused():
    with pytest.raises(ValueError, match="aware"):
        allocate_slots(SlotState(), [], (), datetime(2026, 1, 20, 9, 30), DEFAULT, one_account(1))


# --- properties ---------------------------------------------------------------------------------------

SYMBOLS = [f"S{i:02d}" for i in range(14)]

candidate_lists = st.lists(
    st.tuples(st.sampled_from(SYMBOLS), st.floats(min_value=0.0, max_value=30.0, allow_nan=False)),
    max_size=14,
).map(lambda pairs: [cand(symbol, score) for symbol, score in pairs])

exclusion_maps = st.dictionaries(
    st.sampled_from(SYMBOLS),
    st.sampled_from([OverflowReason.HALTED, OverflowReason.PRICE_LIMIT, OverflowReason.STALE]).map(
        lambda code: Exclusion(code, code.value)),
    max_size=4,
)
NONE_EXCLUDED = st.just({})

operations = st.one_of(
    st.tuples(st.just("allocate"), candidate_lists, st.sets(st.sampled_from(SYMBOLS), max_size=3),
              st.sampled_from([0.0, 30.0, 119.0, 120.0, 180.0, 400.0]), exclusion_maps),
    st.tuples(st.just("release"), st.sampled_from(["a", "b", "c"]), st.none(), st.just(5.0), NONE_EXCLUDED),
    st.tuples(st.just("restore"), st.sampled_from(["a", "b", "c"]), st.none(), st.just(5.0), NONE_EXCLUDED),
    st.tuples(st.just("shrink"), st.sampled_from(["a", "b", "c"]), st.integers(0, 4), st.just(5.0),
              NONE_EXCLUDED),
)

pool_shapes = st.lists(st.integers(0, 5), min_size=1, max_size=3).map(
    lambda caps: [ProviderAccount(name, cap) for name, cap in zip("abc", caps, strict=False)])

slot_settings = st.builds(
    SlotSettings,
    max_slots=st.integers(1, 41),
    replacement_threshold=st.sampled_from([1.0, 1.2, 1.5]),
    min_dwell_seconds=st.sampled_from([0.0, 120.0]),
    resubscribe_cooldown_seconds=st.sampled_from([0.0, 180.0]),
)


def run_operation(state, operation, now, settings, accounts) -> tuple[Allocation, set[str], frozenset[str]]:
    kind, first, second, _, excluded = operation
    names = {account.name for account in state.accounts}
    if kind == "allocate":
        result = allocate_slots(state, first, second, now, settings, accounts, excluded=excluded)
        return result, set(), frozenset(second)
    if first not in names:
        return allocate_slots(state, [], (), now, settings, accounts), set(), frozenset()
    if kind == "release":
        return release_account(state, first, now), set(), frozenset()
    if kind == "restore":
        return restore_account(state, first, now), set(), frozenset()
    refused = set(state.account(first).symbols[second:])
    return shrink_capacity(state, first, second, now, refused), refused, frozenset()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(accounts=pool_shapes, config=slot_settings, script=st.lists(operations, min_size=1, max_size=8))
def test_slot_invariants_hold_through_any_sequence_of_operations(accounts, config, script):
    state = SlotState.initial(accounts, config)
    now = T0
    for operation in script:
        now += timedelta(seconds=operation[3])
        result, refused, pinned = run_operation(state, operation, now, config, accounts)
        again, _, _ = run_operation(state, operation, now, config, accounts)
        assert again == result, "same inputs must give the same outputs"

        placement: dict[str, str] = {}
        for account in result.state.accounts:
            assert len(account.slots) <= account.capacity <= config.max_slots
            for symbol in account.symbols:
                assert symbol not in placement, "a symbol is never on two accounts"
                placement[symbol] = account.name

        old = {account.name: account.symbols for account in state.accounts}
        new = {account.name: account.symbols for account in result.state.accounts}
        for name, diff in result.diffs.items():
            before = set(old.get(name, ()))
            assert set(diff.unsubscribe) <= before and not set(diff.subscribe) & before
            applied = (before - set(diff.unsubscribe) - refused) | set(diff.subscribe)
            assert applied == set(new.get(name, ())), "applying the diff to the old state gives the new state"

        was_pinned_on_live_account = {
            slot.symbol for account in state.accounts if account.available for slot in account.slots
            if slot.symbol in pinned
        }
        if operation[0] == "allocate":
            assert was_pinned_on_live_account <= set(placement), "a pinned symbol is never evicted"
            excluded = set(operation[4]) - pinned
            assert not excluded & set(placement), "an excluded symbol never holds a slot unless pinned"
            removed = excluded & set(state.placement())  # they compete too: each overflows once
            competitors = {c.symbol for c in operation[1]} | pinned | removed
            overflowed = [record.symbol for record in result.overflow]
            assert sorted(overflowed) == sorted(competitors - set(placement))
            codes_now = {record.symbol: record.code for record in result.overflow}
            assert all(codes_now[symbol] is operation[4][symbol].code for symbol in excluded & set(codes_now))
        state = result.state


# --- exclusions: halts, price limits, stale symbols ------------------------------------------------


class Row(NamedTuple):
    symbol: str
    price: int
    sign: str = "2"
    upper_limit: int = 13_000
    lower_limit: int = 7_000
    halted: bool = False


def test_market_exclusion_reads_halts_and_price_limits_from_the_scan_row():
    assert market_exclusion(Row("1", 10_000), DEFAULT) is None
    assert market_exclusion(Row("1", 10_000, halted=True), DEFAULT).code is OverflowReason.HALTED
    upper = market_exclusion(Row("1", 13_000, sign="1"), DEFAULT)
    assert upper.code is OverflowReason.PRICE_LIMIT and "upper price limit 13000" in upper.reason
    assert market_exclusion(Row("1", 13_000), DEFAULT).code is OverflowReason.PRICE_LIMIT  # price at limit
    assert "lower price limit 7000" in market_exclusion(Row("1", 7_000, sign="4"), DEFAULT).reason
    assert market_exclusion(Row("1", 12_990), DEFAULT) is None  # one tick below the limit
    assert market_exclusion(Row("1", 0, upper_limit=0, lower_limit=0), DEFAULT) is None  # no limits known
    keep = SlotSettings(remove_halted=False, remove_at_price_limit=False)
    assert market_exclusion(Row("1", 10_000, halted=True), keep) is None
    assert market_exclusion(Row("1", 13_000, sign="1"), keep) is None


def test_excluded_slotted_symbol_leaves_without_cooldown_and_its_slot_goes_to_the_next():
    state = full_state({"1": 10, "2": 9})
    halted = {"2": Exclusion(OverflowReason.HALTED, "trading halted")}
    result = allocate_slots(state, [cand("1", 10), cand("2", 9), cand("3", 5)], (), at(30), DEFAULT,
                            one_account(2), excluded=halted)
    assert held(result, "a") == ("1", "3")  # dwell does not protect a halted symbol
    assert result.diffs["a"].unsubscribe == ("2",)
    assert codes(result) == {"2": OverflowReason.HALTED}
    assert ("a", "2", "unsubscribe", "halted: trading halted") in result.reasons
    assert "2" not in result.state.released_at  # it may come back as soon as the halt ends
    back = allocate_slots(result.state, [cand("1", 10), cand("2", 9), cand("3", 5)], (), at(300), DEFAULT,
                          one_account(3))
    assert held(back, "a") == ("1", "3", "2")


def test_excluded_candidate_stays_out_with_its_reason_and_a_pinned_one_stays_in():
    limit = Exclusion(OverflowReason.PRICE_LIMIT, "at the upper price limit 13000")
    result = allocate_slots(SlotState(), [cand("1", 10), cand("2", 9)], ("9",), T0, DEFAULT, one_account(3),
                            excluded={"1": limit, "9": limit})
    assert held(result, "a") == ("9", "2")
    assert codes(result) == {"1": OverflowReason.PRICE_LIMIT}
    assert result.evaluated == 3


def test_stale_symbol_released_with_cooldown_and_overflows_once_even_if_no_longer_a_candidate():
    state = full_state({"1": 10, "2": 9})
    stale = {"2": Exclusion(OverflowReason.STALE, "no data for 31 min (stale after 30 min)")}
    result = allocate_slots(state, [cand("1", 10)], (), at(3600), DEFAULT, one_account(2), excluded=stale)
    assert held(result, "a") == ("1",)
    assert [(r.symbol, r.code, r.account) for r in result.overflow] == [("2", OverflowReason.STALE, "a")]
    assert result.state.released_at["2"] == at(3600)
    assert result.evaluated == 2


def test_stale_symbols_count_quiet_time_from_the_latest_of_data_since_and_watch_start():
    slots = (Slot("1", T0, 10), Slot("2", T0, 9), Slot("3", T0, 8, pinned=True), Slot("4", T0, 7))
    state = SlotState((AccountSlots("a", 4, slots),))
    last = {"1": at(60), "2": at(1000)}
    now = at(60 + 1800)
    assert set(stale_symbols(state, last, now, DEFAULT, watched_since=T0)) == {"4"}  # "1": exactly 30 min
    later = stale_symbols(state, last, at(61 + 1800), DEFAULT, watched_since=T0)
    assert set(later) == {"1", "4"}  # "4" never streamed since T0; "3" is pinned
    assert later["1"] == Exclusion(OverflowReason.STALE, "no data for 30 min (stale after 30 min)")
    assert stale_symbols(state, last, at(61 + 1800), DEFAULT, watched_since=at(600)) == {}  # a restart
    assert set(stale_symbols(state, last, at(61 + 1800), DEFAULT, watched_since=T0, exempt={"4"})) == {"1"}
    never = SlotSettings(stale_after_seconds=None)
    assert stale_symbols(state, {}, at(86_000), never, watched_since=T0) == {}


# --- churn: the replacement threshold rises from 1.2 to 1.5 and comes back ---------------------------


def test_churn_guard_raises_above_the_rate_and_lowers_at_the_calm_level():
    settings = SlotSettings(churn_replacements_per_hour=4, calm_replacements_per_hour=2)
    guard = ChurnGuard(settings).observe(T0, 4)
    assert (guard.threshold, guard.replacements_last_hour) == (1.2, 4)  # 4 is not more than 4
    guard = guard.observe(at(60), 1)
    assert (guard.raised, guard.threshold) == (True, 1.5)
    guard = guard.observe(at(3601))  # the first 4 left the hour: 1 left, at or below the calm level
    assert (guard.raised, guard.threshold, guard.replacements_last_hour) == (False, 1.2, 1)
    assert churn_raised(3, True, settings) and not churn_raised(3, False, settings)  # between: as it was
    with pytest.raises(ValueError):
        guard.observe(at(3700), -1)


def test_churn_threshold_is_the_one_the_replacement_uses():
    state = full_state({"1": 10})
    candidates = [cand("1", 10), cand("2", 13)]  # 13 > 10 x 1.2 but not > 10 x 1.5
    assert held(allocate_slots(state, candidates, (), at(300), DEFAULT, one_account(1)), "a") == ("2",)
    raised = allocate_slots(state, candidates, (), at(300), DEFAULT, one_account(1), threshold=1.5)
    assert held(raised, "a") == ("1",) and raised.replacements == 0
    assert codes(raised) == {"2": OverflowReason.SLOTS_FULL}
    assert allocate_slots(state, candidates, (), at(300), DEFAULT, one_account(1)).replacements == 1
