"""The overflow ledger record and the overflow-rate monitor.

A candidate that wanted a WebSocket slot and did not get one is written to the overflow ledger
(`data/observer/system/overflow/{provider}/YYYYMMDD_overflow.jsonl`) in the seed's format, and the share of
candidates that overflowed over the last hour raises the 5 / 10 / 20 % capacity alerts.

`OverflowRecord` is a NamedTuple rather than a pydantic model: one allocation can overflow thousands of
candidates, and building them must stay inside the allocation's 5 ms budget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, overload

from core.models import TriggerKind
from core.settings import OverflowSettings


class OverflowReason(StrEnum):
    """Why a symbol has no slot; the ledger keeps it in `metadata.reason_code`."""

    SLOTS_FULL = "slots_full"  # every slot holds a symbol the candidate does not beat by the threshold
    DWELL = "dwell"  # the only symbols it could beat are pinned or inside their minimum dwell
    COOLDOWN = "cooldown"  # released too recently to be subscribed again
    REPLACED = "replaced"  # it held a slot and lost it to a stronger candidate or a pinned symbol
    PINNED_OVER_CAPACITY = "pinned_over_capacity"  # more pinned symbols than slots
    NO_ACCOUNT = "no_account"  # no account of the pool is available
    ACCOUNT_UNAVAILABLE = "account_unavailable"  # its account failed and no other account had room
    CAPACITY_SHRUNK = "capacity_shrunk"  # its account has fewer slots (MAX SUBSCRIBE OVER, smaller config)
    STALE = "stale"  # it held a slot and streamed nothing for `stale_after_seconds`
    HALTED = "halted"  # trading in it is halted (the Track A scan says so); it competes again when it resumes
    PRICE_LIMIT = "price_limit"  # it sits at the day's upper or lower price limit
    BACKPRESSURE = "backpressure"  # shed while processing fell behind the stream (lowest scored first)


class OverflowSource(Protocol):
    """What an overflow record is about: a `Candidate`, or the `Slot` a displaced symbol held."""

    @property
    def symbol(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def trigger(self) -> TriggerKind | None: ...
    @property
    def strength(self) -> float | None: ...


class OverflowRecord(NamedTuple):
    """One symbol that did not get a slot at `at`; `to_ledger()` gives the seed's JSON line.

    It keeps a reference to its candidate (or slot) instead of copying fields: cheap to build in bulk.
    """

    at: datetime
    source: OverflowSource
    code: OverflowReason
    reason: str
    current_slot_min_score: float | None
    account: str | None = None

    @property
    def symbol(self) -> str:
        return self.source.symbol

    @property
    def score(self) -> float:
        return self.source.score

    def to_ledger(self) -> dict[str, Any]:
        """The seed's ledger record; our extras (reason code, account, market cap) live in `metadata`.

        Timestamps are aware KST (the seed's example is UTC; the whole product keeps KST).
        """
        source = self.source
        metadata: dict[str, Any] = {"reason_code": self.code.value}
        market_cap = getattr(source, "market_cap", None)
        if market_cap is not None:
            metadata["market_cap"] = market_cap
        if self.account is not None:
            metadata["account"] = self.account
        return {
            "timestamp": self.at.isoformat(timespec="milliseconds"),
            "symbol": source.symbol,
            "trigger_type": source.trigger.name if source.trigger is not None else None,
            "trigger_strength": source.strength,
            "priority_score": source.score,
            "reason": self.reason,
            "current_slot_min_score": self.current_slot_min_score,
            "metadata": metadata,
        }


class DeferredSources(Sequence[OverflowSource]):
    """Sources whose count is known at once but which are listed only when first read.

    The allocation knows how many candidates overflow for the shared reason without filtering them out of
    the whole ranking; `listing` does that filtering when the ledger writer reads them, once.
    """

    __slots__ = ("_count", "_listing", "_sources")

    def __init__(self, count: int, listing: Callable[[], Sequence[OverflowSource]]) -> None:
        self._count = count
        self._listing: Callable[[], Sequence[OverflowSource]] | None = listing
        self._sources: tuple[OverflowSource, ...] | None = None

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> OverflowSource: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[OverflowSource, ...]: ...

    def __getitem__(self, index: int | slice) -> OverflowSource | tuple[OverflowSource, ...]:
        return self._listed()[index]

    def __iter__(self) -> Iterator[OverflowSource]:
        return iter(self._listed())

    def _listed(self) -> tuple[OverflowSource, ...]:
        if self._sources is None:
            assert self._listing is not None
            sources = tuple(self._listing())
            if len(sources) != self._count:
                raise RuntimeError(f"deferred overflow sources: counted {self._count}, listed {len(sources)}")
            self._sources, self._listing = sources, None
        return self._sources


class OverflowRecords(Sequence[OverflowRecord]):
    """The overflow of one allocation: a few individual records, then a run sharing one reason.

    After the slots are settled, every remaining candidate overflows for the same reason; those records
    are built when read (by the ledger writer) instead of inside the allocation, which keeps allocating
    2,500 candidates within its 5 ms budget. Reading gives the same records every time. A `DeferredSources`
    tail is kept as is (it is listed on first read); any other tail is copied.
    """

    __slots__ = ("_at", "_code", "_floor", "_head", "_reason", "_tail")

    def __init__(
        self,
        head: Sequence[OverflowRecord] = (),
        *,
        at: datetime | None = None,
        tail: Sequence[OverflowSource] = (),
        code: OverflowReason = OverflowReason.SLOTS_FULL,
        reason: str = "",
        current_slot_min_score: float | None = None,
    ) -> None:
        if tail and at is None:
            raise ValueError("overflow records need the time of the allocation")
        self._head = tuple(head)
        self._tail = tail if isinstance(tail, DeferredSources) else tuple(tail)
        self._at = at
        self._code = code
        self._reason = reason
        self._floor = current_slot_min_score

    def __len__(self) -> int:
        return len(self._head) + len(self._tail)

    @overload
    def __getitem__(self, index: int) -> OverflowRecord: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[OverflowRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> OverflowRecord | tuple[OverflowRecord, ...]:
        if isinstance(index, slice):
            return tuple(self)[index]
        position = range(len(self))[index]
        if position < len(self._head):
            return self._head[position]
        return self._record(self._tail[position - len(self._head)])

    def __iter__(self) -> Iterator[OverflowRecord]:
        yield from self._head
        for source in self._tail:
            yield self._record(source)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return tuple(self) == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"OverflowRecords({len(self)} records)"

    def _record(self, source: OverflowSource) -> OverflowRecord:
        assert self._at is not None
        return OverflowRecord(self._at, source, self._code, self._reason, self._floor)


@dataclass(frozen=True, slots=True)
class OverflowSample:
    """One allocation's count of competing symbols and of those that overflowed."""

    at: datetime
    evaluated: int
    overflowed: int


@dataclass(frozen=True, slots=True)
class OverflowMonitor:
    """Overflow rate over a sliding window and which alert levels it has newly crossed.

    Rate = overflowed / evaluated, summed over the allocations inside the window (`window_seconds`, one
    hour by default). A level is raised when the rate goes above it and is raised again only after the
    rate has fallen below it. Immutable: `observe` returns the next monitor.
    """

    settings: OverflowSettings
    samples: tuple[OverflowSample, ...] = ()
    raised: frozenset[float] = frozenset()

    @property
    def rate(self) -> float:
        return _rate(self.samples)

    def observe(
        self, now: datetime, evaluated: int, overflowed: int
    ) -> tuple[OverflowMonitor, tuple[float, ...]]:
        """Add one allocation's counts; return the next monitor and the levels newly crossed (ascending)."""
        if evaluated < 0 or overflowed < 0 or overflowed > evaluated:
            raise ValueError(
                f"overflow counts must satisfy 0 <= overflowed <= evaluated, got {overflowed}/{evaluated}"
            )
        return self._advanced(now, (OverflowSample(now, evaluated, overflowed),))

    def prune(self, now: datetime) -> tuple[OverflowMonitor, tuple[float, ...]]:
        """Let samples leave the window without a new allocation; levels re-arm if the rate fell."""
        return self._advanced(now, ())

    def _advanced(
        self, now: datetime, added: tuple[OverflowSample, ...]
    ) -> tuple[OverflowMonitor, tuple[float, ...]]:
        horizon = now - timedelta(seconds=self.settings.window_seconds)
        samples = (*(sample for sample in self.samples if sample.at > horizon), *added)
        rate = _rate(samples)
        still_raised = {level for level in self.raised if rate >= level}
        crossed = tuple(sorted(
            level for level in self.settings.alert_levels if rate > level and level not in still_raised
        ))
        return OverflowMonitor(self.settings, samples, frozenset(still_raised.union(crossed))), crossed


def _rate(samples: Sequence[OverflowSample]) -> float:
    evaluated = sum(sample.evaluated for sample in samples)
    return sum(sample.overflowed for sample in samples) / evaluated if evaluated else 0.0
