"""The day's universe: which stocks Observer may watch, fixed once made (reproducibility).

Pure: the master list and previous-day quotes come in as `UniverseEntry` rows, the build time as an
argument. The snapshot models mirror the seed's file format (`config/universe/{YYYYMMDD}_{market}.json`):
a `metadata` object and a `symbols` array, with exactly the seed's keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from core.calendar import previous_trading_day
from core.settings import UniverseSettings

Market = Literal["KOSPI", "KOSDAQ"]
SNAPSHOT_VERSION = "1.0"
_DAY_FORMAT = "%Y%m%d"
_CODE = re.compile(r"^[0-9A-Z]{6}$")


class UniverseBuildError(ValueError):
    """The day's universe could not be built; the caller falls back to the latest earlier snapshot."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UniverseEntry(_Frozen):
    """One listed stock as the master list and the previous day's quote describe it.

    `market_cap` None means unknown: the stock is kept, sorted as 0, and a warning is raised.
    """

    code: str
    name: str
    market: Market
    prev_close: int = Field(ge=0)
    market_cap: int | None = Field(default=None, ge=0)
    avg_volume_20d: int = Field(default=0, ge=0)
    halted: bool = False
    managed: bool = False

    @field_validator("code")
    @classmethod
    def _six_character_code(cls, code: str) -> str:
        if not _CODE.match(code):
            raise ValueError(f"stock code must be 6 digits/capitals, got {code!r}")
        return code


class UniverseSymbol(_Frozen):
    """One symbol line of the snapshot file (the seed's keys, nothing more)."""

    code: str
    name: str
    market_cap: int = Field(ge=0)
    prev_close: int = Field(ge=0)
    avg_volume_20d: int = Field(ge=0)


class UniverseMetadata(_Frozen):
    date: str
    previous_trading_day: str
    generated_at: AwareDatetime
    symbol_count: int = Field(ge=0)
    market: str
    filter_criteria: str
    version: str = SNAPSHOT_VERSION

    @field_validator("date", "previous_trading_day")
    @classmethod
    def _yyyymmdd(cls, text: str) -> str:
        parse_day(text)
        return text


class UniverseSnapshot(_Frozen):
    """One market's universe for one day, as stored on disk."""

    metadata: UniverseMetadata
    symbols: tuple[UniverseSymbol, ...]

    @model_validator(mode="after")
    def _consistent(self) -> UniverseSnapshot:
        if self.metadata.symbol_count != len(self.symbols):
            raise ValueError(
                f"symbol_count {self.metadata.symbol_count} != {len(self.symbols)} symbols listed"
            )
        codes = [s.code for s in self.symbols]
        if len(set(codes)) != len(codes):
            raise ValueError("duplicate symbol codes")
        return self

    @property
    def day(self) -> date:
        return parse_day(self.metadata.date)

    @property
    def market(self) -> str:
        return self.metadata.market

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(s.code for s in self.symbols)


class UniverseBuild(_Frozen):
    """The day's snapshots, one per configured market (in settings order), and what looked wrong."""

    day: date
    snapshots: tuple[UniverseSnapshot, ...]
    warnings: tuple[str, ...] = ()

    @property
    def symbol_count(self) -> int:
        return sum(len(s.symbols) for s in self.snapshots)

    def for_market(self, market: str) -> UniverseSnapshot | None:
        return next((s for s in self.snapshots if s.market == market), None)


def format_day(day: date) -> str:
    return day.strftime(_DAY_FORMAT)


def parse_day(text: str) -> date:
    """YYYYMMDD -> date; ValueError with the offending text otherwise."""
    if len(text) != 8 or not text.isdigit():
        raise ValueError(f"expected a YYYYMMDD day, got {text!r}")
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def filter_criteria(settings: UniverseSettings) -> str:
    parts = [f"close_price >= {settings.min_close_price} KRW"]
    if settings.exclude_suspended:
        parts.append("halted excluded")
    if settings.exclude_managed:
        parts.append("managed excluded")
    return ", ".join(parts)


def _admitted(entry: UniverseEntry, settings: UniverseSettings) -> bool:
    if entry.prev_close < settings.min_close_price:
        return False
    if settings.exclude_suspended and entry.halted:
        return False
    return not (settings.exclude_managed and entry.managed)


def _sample(codes: list[str], limit: int = 10) -> str:
    shown = ", ".join(codes[:limit])
    return shown + (f" and {len(codes) - limit} more" if len(codes) > limit else "")


def build_universe(
    entries: Iterable[UniverseEntry],
    day: date,
    settings: UniverseSettings,
    generated_at: datetime,
    *,
    previous_day: date | None = None,
) -> UniverseBuild:
    """Filter and sort the master list into one snapshot per configured market.

    Kept: previous close >= `min_close_price`, not halted (when `exclude_suspended`), not managed (when
    `exclude_managed`), market among `settings.markets`. Order: market cap descending (unknown as 0),
    then code ascending. A repeated code keeps its first row. Raises `UniverseBuildError` when nothing
    at all survives (an empty universe is a failed build, not a quiet day).
    """
    if generated_at.tzinfo is None:
        raise ValueError("generated_at must be an aware datetime")
    prev_day = previous_day if previous_day is not None else previous_trading_day(day)
    warnings: list[str] = []
    seen: set[str] = set()
    duplicates: list[str] = []
    missing_cap: list[str] = []
    kept: dict[str, list[UniverseEntry]] = {m: [] for m in settings.markets}
    total = 0
    for entry in entries:
        total += 1
        if entry.code in seen:
            duplicates.append(entry.code)
            continue
        seen.add(entry.code)
        if entry.market not in kept or not _admitted(entry, settings):
            continue
        if entry.market_cap is None:
            missing_cap.append(entry.code)
        kept[entry.market].append(entry)
    if duplicates:
        warnings.append(f"universe {format_day(day)}: repeated codes ignored: {_sample(duplicates)}")
    if missing_cap:
        warnings.append(
            f"universe {format_day(day)}: market cap missing for {len(missing_cap)} symbols "
            f"(sorted as 0): {_sample(missing_cap)}"
        )
    count = sum(len(v) for v in kept.values())
    if count == 0:
        raise UniverseBuildError(
            f"universe {format_day(day)}: no symbol passed the filter ({total} entries, "
            f"{filter_criteria(settings)}, markets {', '.join(settings.markets)})"
        )
    if count < settings.min_symbol_count:
        warnings.append(
            f"universe {format_day(day)}: {count} symbols, below the minimum {settings.min_symbol_count}"
        )
    empty = [m for m, rows in kept.items() if not rows]
    if empty:
        warnings.append(f"universe {format_day(day)}: no symbol passed the filter in {', '.join(empty)}")
    criteria = filter_criteria(settings)
    snapshots = []
    for market, rows in kept.items():
        rows.sort(key=lambda e: (-(e.market_cap or 0), e.code))
        symbols = tuple(
            UniverseSymbol(
                code=e.code,
                name=e.name,
                market_cap=e.market_cap or 0,
                prev_close=e.prev_close,
                avg_volume_20d=e.avg_volume_20d,
            )
            for e in rows
        )
        snapshots.append(
            UniverseSnapshot(
                metadata=UniverseMetadata(
                    date=format_day(day),
                    previous_trading_day=format_day(prev_day),
                    generated_at=generated_at,
                    symbol_count=len(symbols),
                    market=market,
                    filter_criteria=criteria,
                ),
                symbols=symbols,
            )
        )
    return UniverseBuild(day=day, snapshots=tuple(snapshots), warnings=tuple(warnings))


def choose_fallback(available_days: Iterable[date], today: date) -> date | None:
    """The latest day strictly before `today` that has a snapshot, or None."""
    earlier = [d for d in available_days if d < today]
    return max(earlier) if earlier else None


def days_to_prune(available_days: Iterable[date], keep: int) -> tuple[date, ...]:
    """Days beyond the newest `keep` (oldest first); those snapshots leave the cache."""
    if keep < 0:
        raise ValueError("keep must be >= 0")
    ordered = sorted(set(available_days), reverse=True)
    return tuple(sorted(ordered[keep:]))
