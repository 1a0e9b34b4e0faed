"""Stream workers' liveness from their heartbeats (`core.workers`) and what it means for the slots: a dead
worker's accounts fail over to the live ones' free slots, overflow what does not fit, and take their
symbols back when a worker serves them again (`core.slots.release_account` / `restore_account`)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core.models import Candidate, TriggerKind
from core.overflow import OverflowReason
from core.settings import SlotSettings
from core.slots import ProviderAccount, SlotState, allocate_slots, release_account, restore_account
from core.workers import WAITING, Roster, WorkerBeat

TIMEOUT = 6.0
POOL = ("acct1", "acct2", "acct3", "acct4")
NOW = datetime(2024, 11, 20, 10, 0, tzinfo=ZoneInfo("Asia/Seoul"))


def beat(worker: str, at: float, *accounts: str, state: str = "connected") -> WorkerBeat:
    return WorkerBeat(worker, "host-" + worker, {account: state for account in accounts}, at)


def test_every_account_counts_as_served_until_the_workers_had_a_timeout_to_speak() -> None:
    roster = Roster.starting(POOL, now=100.0, grace=TIMEOUT)
    roster, change = roster.judge(103.0, TIMEOUT)
    assert roster.served == frozenset(POOL) and not change
    roster = roster.heard(beat("a", 104.0, "acct1", "acct2"))
    roster, change = roster.judge(106.5, TIMEOUT)  # grace over: acct3 and acct4 have no worker
    assert roster.served == {"acct1", "acct2"}
    assert change.lost == ("acct3", "acct4") and change.back == () and change.dead == ()


def test_inside_the_grace_a_heard_workers_death_counts_and_only_unheard_accounts_are_spared() -> None:
    roster = Roster.starting(POOL, now=0.0, grace=30.0)
    roster = roster.heard(beat("a", 1.0, "acct1", "acct2")).heard(beat("b", 1.0, "acct3"))
    roster, change = roster.judge(5.0, TIMEOUT)
    assert roster.served == frozenset(POOL) and not change
    roster, change = roster.judge(7.5, TIMEOUT)
    assert change.lost == ("acct1", "acct2", "acct3") and roster.served == {"acct4"}
    roster, change = roster.judge(30.5, TIMEOUT)
    assert change.lost == ("acct4",) and roster.served == frozenset()


def test_a_silent_worker_dies_after_the_timeout_and_its_accounts_come_back_with_it() -> None:
    roster = Roster.starting(POOL, now=0.0, grace=TIMEOUT)
    roster = roster.heard(beat("a", 10.0, "acct1", "acct2")).heard(beat("b", 10.0, "acct3", "acct4"))
    roster, _ = roster.judge(10.0, TIMEOUT)
    roster = roster.heard(beat("a", 14.0, "acct1", "acct2"))
    roster, change = roster.judge(16.0, TIMEOUT)  # b last heard 6 s ago: exactly the timeout, alive
    assert not change
    roster, change = roster.judge(16.5, TIMEOUT)
    assert [dead.worker for dead in change.dead] == ["b"]
    assert change.lost == ("acct3", "acct4")
    assert roster.served == {"acct1", "acct2"} and {b.worker for b in roster.beats.values()} == {"a"}
    roster = roster.heard(beat("a", 29.0, "acct1", "acct2")).heard(beat("b", 30.0, "acct3", "acct4"))
    roster, change = roster.judge(30.0, TIMEOUT)
    assert change.back == ("acct3", "acct4") and change.lost == ()
    assert roster.served == frozenset(POOL)


def test_a_worker_that_stopped_cleanly_is_judged_after_the_timeout_and_says_it_stopped() -> None:
    roster = Roster.starting(POOL, now=0.0, grace=TIMEOUT)
    roster = roster.heard(beat("a", 10.0, *POOL))
    last = WorkerBeat("a", "host-a", dict.fromkeys(POOL, "stopped"), 11.0, stopping=True)
    roster, change = roster.heard(last).judge(12.0, TIMEOUT)
    assert not change  # a control stopping with it within the timeout moves nothing
    roster, change = roster.judge(17.5, TIMEOUT)
    assert change.dead == (last,) and change.lost == POOL


def test_two_processes_of_one_worker_are_two_workers_and_the_waiting_one_serves_nothing() -> None:
    roster = Roster.starting(POOL, now=0.0, grace=TIMEOUT)
    holder = WorkerBeat("vm1-acct1", "vm1", {"acct1": "connected"}, 10.0, pid=100)
    standby = WorkerBeat("vm1-acct1", "vm1", {"acct1": WAITING}, 10.0, pid=200)
    roster, _ = roster.heard(holder).heard(standby).judge(10.0, TIMEOUT)
    assert len(roster.beats) == 2 and roster.served == {"acct1"}
    standby = WorkerBeat("vm1-acct1", "vm1", {"acct1": WAITING}, 15.0, pid=200)
    roster, change = roster.heard(standby).judge(16.5, TIMEOUT)  # the holder died; the standby still waits
    assert change.lost == ("acct1",) and change.dead == (holder,)
    taken = WorkerBeat("vm1-acct1", "vm1", {"acct1": "connected"}, 20.0, pid=200)
    roster, change = roster.heard(taken).judge(20.0, TIMEOUT)
    assert change.back == ("acct1",)


def test_an_account_waiting_for_its_session_is_not_served_and_unknown_accounts_are_named() -> None:
    roster = Roster.starting(POOL, now=0.0, grace=TIMEOUT)
    roster = roster.heard(beat("a", 10.0, "acct1", "acct2", "acct3", "acct4"))
    roster = roster.heard(beat("b", 10.0, "acct4", "acct9", state=WAITING))
    roster, change = roster.judge(10.0, TIMEOUT)
    assert roster.served == frozenset(POOL) and change.unknown == ()
    roster = roster.heard(beat("a", 11.0, "acct1", "acct2", "acct3"))  # a let acct4 go; b still waits
    roster = roster.heard(beat("c", 11.0, "acct9"))
    roster, change = roster.judge(11.0, TIMEOUT)
    assert change.lost == ("acct4",) and change.unknown == ("acct9",)


def candidate(symbol: str, score: float) -> Candidate:
    return Candidate(symbol=symbol, score=score, trigger=TriggerKind.VOLUME_SURGE, strength=0.5,
                     detected_at=NOW)


def test_a_dead_workers_symbols_move_to_free_slots_overflow_the_rest_and_return_with_it() -> None:
    settings = SlotSettings()
    providers = (ProviderAccount("acct1", 3), ProviderAccount("acct2", 3))
    state = SlotState.initial(providers, settings)
    ranked = [candidate(f"00{n:04d}", 10.0 - n) for n in range(4)]
    state = allocate_slots(state, ranked, (), NOW, settings, providers).state
    on_acct2 = state.account("acct2").symbols
    assert len(on_acct2) == 2 and len(state.account("acct1").symbols) == 2

    # acct2's worker died: one of its two symbols fits acct1's last free slot, the other overflows.
    moved = release_account(state, "acct2", NOW)
    arrived = set(moved.state.account("acct1").symbols) - set(state.account("acct1").symbols)
    assert len(arrived) == 1 and arrived < set(on_acct2) and moved.state.account("acct2").symbols == ()
    assert [(r.code, r.account) for r in moved.overflow] == [(OverflowReason.ACCOUNT_UNAVAILABLE, "acct2")]

    # A worker serves acct2 again: it takes back what it lent.
    back = restore_account(moved.state, "acct2", NOW)
    assert back.state.account("acct2").available
    assert len(back.state.account("acct2").symbols) == 1
    assert len(back.state.account("acct1").symbols) == 2
