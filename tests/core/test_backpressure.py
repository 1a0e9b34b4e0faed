from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from core.backpressure import LagMonitor, max_level, shed_capacity, shed_slots
from core.overflow import OverflowReason
from core.slots import AccountSlots, Slot, SlotState

KST = ZoneInfo("Asia/Seoul")
NOW = datetime(2024, 3, 4, 10, 0, tzinfo=KST)


def monitor() -> LagMonitor:
    return LagMonitor(lag_limit=2.0, backlog_limit=100, step_seconds=10.0, recover_seconds=30.0, max_level=4)


def test_falling_behind_sheds_a_level_then_one_more_per_step_while_still_behind():
    lag = monitor()
    assert lag.observe(0.5, 10, 0.0) is None
    assert lag.observe(2.0, 0, 1.0) == 1  # a 2 s wait is behind
    assert lag.observe(3.0, 0, 5.0) is None  # inside the step
    assert lag.observe(1.5, 0, 12.0) is None  # not behind, not caught up either
    assert lag.observe(0.1, 100, 12.0) == 2  # a full backlog is behind too
    for t in (30.0, 40.0, 50.0):
        lag.observe(9.0, 0, t)
    assert lag.level == 4 and lag.observe(9.0, 0, 60.0) is None  # everything shed already


def test_caught_up_for_the_recovery_time_takes_everything_back_at_once():
    lag = monitor()
    lag.observe(5.0, 0, 0.0)
    lag.observe(5.0, 0, 10.0)
    assert lag.level == 2
    assert lag.observe(0.1, 0, 11.0) is None  # caught up: the calm starts
    assert lag.observe(1.2, 0, 20.0) is None  # over half the limit: the calm starts over
    assert lag.observe(0.1, 0, 21.0) is None
    assert lag.observe(0.1, 49, 50.0) is None
    assert lag.observe(0.1, 0, 51.0) == 0
    assert lag.observe(0.1, 0, 52.0) is None
    assert lag.observe(2.5, 0, 53.0) == 1  # a new episode starts at level 1


def test_shed_capacity_cuts_a_fraction_per_level():
    assert [shed_capacity(40, level, 0.25) for level in range(5)] == [40, 30, 20, 10, 0]
    assert [shed_capacity(3, level, 0.5) for level in range(3)] == [3, 1, 0]
    assert max_level(0.25) == 4 and max_level(0.3) == 4 and max_level(1.0) == 1


def slot(symbol: str, score: float, *, pinned: bool = False, minutes: int = 10) -> Slot:
    return Slot(symbol, NOW - timedelta(minutes=minutes), score, pinned)


def test_shed_slots_drops_the_lowest_scored_and_never_a_pinned_one():
    state = SlotState((
        AccountSlots("a1", 5, (slot("000001", 9.0), slot("000002", 1.0, pinned=True), slot("000003", 3.0),
                               slot("000004", 5.0), slot("000005", 2.0))),
        AccountSlots("a2", 5, (slot("000006", 0.5),)),
    ), released_at={"000009": NOW})
    allocation = shed_slots(state, "a1", 3, NOW)
    a1 = allocation.state.account("a1")
    assert (a1.capacity, a1.symbols) == (3, ("000001", "000002", "000004"))
    assert allocation.state.account("a2") == state.account("a2")
    assert allocation.state.released_at == state.released_at  # no cooldown for the shed ones
    assert allocation.diffs["a1"].unsubscribe == ("000003", "000005")
    assert allocation.diffs["a1"].subscribe == ()
    assert allocation.diffs["a2"].unsubscribe == ()
    records = list(allocation.overflow)
    assert [(r.symbol, r.code, r.account) for r in records] == [
        ("000003", OverflowReason.BACKPRESSURE, "a1"), ("000005", OverflowReason.BACKPRESSURE, "a1")]
    assert records[0].to_ledger()["metadata"]["reason_code"] == "backpressure"
    assert [change.action for change in allocation.reasons] == ["unsubscribe", "unsubscribe"]

    everything = shed_slots(state, "a1", 0, NOW).state.account("a1")
    assert (everything.capacity, everything.symbols) == (1, ("000002",))  # the pinned symbol stays
