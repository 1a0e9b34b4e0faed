"""Order books and program trading inside a key's registration budget (`core.streams`)."""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from core.streams import (
    ExtraStreams,
    Stream,
    StreamChoice,
    extra_streams,
    trade_capacity,
    wanted_extras,
)

HELD_AND_TOP_3 = StreamChoice(held=True, top=3)
KEY = 41


class S(NamedTuple):
    symbol: str
    score: float


def slots(count: int) -> list[S]:
    return [S(f"{100000 + i:06d}", float(100 - i)) for i in range(count)]


def test_held_positions_come_first_then_the_best_scored_other_slots() -> None:
    slotted = [S("A", 5.0), S("B", 9.0), S("H", 1.0), S("C", 7.0), S("D", 3.0)]
    book, program = StreamChoice(held=True, top=2), StreamChoice(held=True, top=1)
    wanted = wanted_extras(slotted, {"H", "X"}, book, program)
    assert wanted == (("H", Stream.BOOK), ("H", Stream.PROGRAM), ("B", Stream.BOOK), ("B", Stream.PROGRAM),
                      ("C", Stream.BOOK))


def test_choices_off_want_nothing() -> None:
    off = StreamChoice(held=False, top=0)
    assert wanted_extras(slots(10), {"100000"}, off, off) == ()


def test_a_symbol_with_book_and_program_costs_three_registrations() -> None:
    only_held = StreamChoice(held=True, top=0)
    capacity = trade_capacity(KEY, 1, only_held, only_held, max_extra=12)
    assert capacity == 39
    full = slots(capacity)
    held = {full[-1].symbol}
    granted = extra_streams(wanted_extras(full, held, only_held, only_held), KEY, len(full), 12)
    assert granted == ExtraStreams(order_books=(full[-1].symbol,), program_trading=(full[-1].symbol,))
    assert len(full) + granted.registrations == KEY


def test_the_default_leaves_35_trade_slots_beside_the_top_three_books_and_programs() -> None:
    assert trade_capacity(KEY, 0, HELD_AND_TOP_3, HELD_AND_TOP_3, max_extra=12) == 35
    granted = extra_streams(wanted_extras(slots(35), set(), HELD_AND_TOP_3, HELD_AND_TOP_3), KEY, 35, 12)
    assert granted.order_books == granted.program_trading == ("100000", "100001", "100002")


def test_a_small_key_gives_the_most_trade_slots_that_leave_room_for_their_extras() -> None:
    # 10 registrations, one held: 3 trades want 2 + 2 + 2 extras (9 in all); 4 trades would want 8.
    assert trade_capacity(10, 1, HELD_AND_TOP_3, HELD_AND_TOP_3, max_extra=12) == 3
    assert trade_capacity(10, 1, HELD_AND_TOP_3, HELD_AND_TOP_3, max_extra=2) == 8
    assert trade_capacity(2, 1, HELD_AND_TOP_3, HELD_AND_TOP_3, max_extra=12) == 1
    assert trade_capacity(41, 30, HELD_AND_TOP_3, HELD_AND_TOP_3, max_extra=12) == 29


def test_a_full_key_grants_only_what_its_trades_leave_held_positions_first() -> None:
    held = {"100036", "100037"}
    wanted = wanted_extras(slots(38), held, HELD_AND_TOP_3, HELD_AND_TOP_3)
    granted = extra_streams(wanted, KEY, trades=38, max_extra=12)
    assert granted == ExtraStreams(order_books=("100036", "100037"), program_trading=("100036",))


@pytest.mark.parametrize("seed", range(20))
def test_trades_and_extras_never_exceed_the_key(seed: int) -> None:
    rng = random.Random(seed)
    registrations = rng.randint(1, KEY)
    slotted = slots(rng.randint(0, registrations))
    held = {slot.symbol for slot in slotted if rng.random() < 0.3}
    book = StreamChoice(held=rng.random() < 0.5, top=rng.randint(0, 10))
    program = StreamChoice(held=rng.random() < 0.5, top=rng.randint(0, 10))
    max_extra = rng.randint(0, 40)
    wanted = wanted_extras(slotted, held, book, program)
    granted = extra_streams(wanted, registrations, len(slotted), max_extra)
    assert len(slotted) + granted.registrations <= registrations
    assert granted.registrations <= max_extra
    assert set(granted.order_books) | set(granted.program_trading) <= {slot.symbol for slot in slotted}
    capacity = trade_capacity(registrations, len(held), book, program, max_extra)
    assert 1 <= capacity <= registrations
    wanted = wanted_extras(slots(capacity), held, book, program)
    assert capacity + extra_streams(wanted, registrations, capacity, max_extra).registrations <= registrations


def test_a_negative_top_is_refused() -> None:
    with pytest.raises(ValueError, match="top must be >= 0"):
        StreamChoice(held=True, top=-1)
