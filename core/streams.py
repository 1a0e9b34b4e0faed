"""Order book and program trading streams beside the ticks, inside each app key's registration budget.

KIS counts every registration against the key's 41, whatever its TR: a slotted symbol streaming its trades,
its order book and its program trading costs 3. So the budget is kept in registrations, not symbols:

- `wanted_extras` says which slotted symbols of one key should also stream a book or program trading:
  held positions first (when `held` is on), then the `top` best scored other slots, each choice in that
  order (held books, held program trading, then the top slots' books and program trading).
- The slot manager gives the trades the most slots that still leave room for the extras those slots want
  (`trade_capacity`, at most `max_extra` of them), so a full key swaps a weak candidate's ticks for a held
  position's book instead of running over 41.
- `extra_streams` then grants the wanted extras in order while the key has registrations left, so the
  total never exceeds the key's budget whatever the slots hold.

Pure: the caller passes the slots, the held symbols and the budget.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Stream(StrEnum):
    """What one registration streams for a symbol."""

    TRADES = "trades"
    BOOK = "book"
    PROGRAM = "program"


@dataclass(frozen=True, slots=True)
class StreamChoice:
    """Which slots get one extra stream: held positions (`held`) and the `top` best scored other slots."""

    held: bool = True
    top: int = 0

    def __post_init__(self) -> None:
        if self.top < 0:
            raise ValueError(f"top must be >= 0, got {self.top}")


class Slotted(Protocol):
    """What a slot says here (`core.slots.Slot` has it)."""

    @property
    def symbol(self) -> str: ...
    @property
    def score(self) -> float: ...


@dataclass(frozen=True, slots=True)
class ExtraStreams:
    """The slotted symbols of one key that also stream their order book, and their program trading."""

    order_books: tuple[str, ...] = ()
    program_trading: tuple[str, ...] = ()

    @property
    def registrations(self) -> int:
        return len(self.order_books) + len(self.program_trading)


def wanted_extras(
    slots: Iterable[Slotted], held: Collection[str], book: StreamChoice, program: StreamChoice
) -> tuple[tuple[str, Stream], ...]:
    """Every (symbol, extra stream) the choices ask for among `slots`, most important first."""
    ranked = sorted(slots, key=lambda slot: (-slot.score, slot.symbol))
    held_slots = [slot.symbol for slot in ranked if slot.symbol in held]
    others = [slot.symbol for slot in ranked if slot.symbol not in held]
    wanted: list[tuple[str, Stream]] = []
    for symbol in held_slots:
        if book.held:
            wanted.append((symbol, Stream.BOOK))
        if program.held:
            wanted.append((symbol, Stream.PROGRAM))
    for rank, symbol in enumerate(others):
        if rank < book.top:
            wanted.append((symbol, Stream.BOOK))
        if rank < program.top:
            wanted.append((symbol, Stream.PROGRAM))
    return tuple(wanted)


def trade_capacity(registrations: int, held: int, book: StreamChoice, program: StreamChoice,
                   max_extra: int) -> int:
    """The most trade slots a key of `registrations` can give while the extras those slots would want (with
    `held` held positions among them, at most `max_extra`) still fit beside them; at least one trade slot."""
    per_held = int(book.held) + int(program.held)
    for trades in range(registrations, 1, -1):
        held_in = min(held, trades)
        others = trades - held_in
        wanted = held_in * per_held + min(book.top, others) + min(program.top, others)
        if trades + min(wanted, max_extra) <= registrations:
            return trades
    return min(registrations, 1)


def extra_streams(
    wanted: Iterable[tuple[str, Stream]], registrations: int, trades: int, max_extra: int
) -> ExtraStreams:
    """The wanted extras granted in order while the key has registrations left beside its `trades`
    (and at most `max_extra` of them): trades + extras never exceed `registrations`."""
    room = max(0, min(registrations - trades, max_extra))
    granted = list(wanted)[:room]
    return ExtraStreams(
        order_books=tuple(symbol for symbol, stream in granted if stream is Stream.BOOK),
        program_trading=tuple(symbol for symbol, stream in granted if stream is Stream.PROGRAM),
    )
