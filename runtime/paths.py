"""Where everything lands on disk (DESIGN.md section 5), all under one configurable root.

The root (`--data-dir`, default `./data`) stands for the `data/` of the design's paths, so
`data/observer/...` lands at `{root}/observer/...` and the universe at `{root}/config/universe/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path


def _day(day: date) -> str:
    return day.strftime("%Y%m%d")


@dataclass(frozen=True)
class DataPaths:
    """Paths of the observer's files below `root` (the `--data-dir`)."""

    root: Path

    @property
    def observer(self) -> Path:
        return self.root / "observer"

    @property
    def universe_dir(self) -> Path:
        return self.root / "config" / "universe"

    @property
    def state_dir(self) -> Path:
        return self.observer / "state"

    @property
    def nats_dir(self) -> Path:
        """The embedded NATS server's JetStream store."""
        return self.observer / "nats"

    @property
    def backup_dir(self) -> Path:
        return self.observer / "backup"

    @property
    def parquet_dir(self) -> Path:
        """The analysis tables, `<table>/date=YYYYMMDD/*.parquet` (Hive partitions)."""
        return self.observer / "parquet"

    def swing_dir(self, provider: str, market: str, day: date) -> Path:
        """Track A snapshots."""
        return self.observer / "swing" / provider / market / _day(day)

    def scalp_dir(self, provider: str, market: str, day: date) -> Path:
        """Track B ticks and gap recovery records."""
        return self.observer / "scalp" / provider / market / _day(day)

    def tick_file(self, provider: str, market: str, day: date, symbol: str) -> Path:
        """One symbol's Track B ticks of a day (streamed, and recovered rows appended)."""
        return self.scalp_dir(provider, market, day) / f"ticks_{symbol}.jsonl"

    def tick_files(self, provider: str, day: date) -> list[Path]:
        """Every tick file of `provider` and `day`, whatever its market."""
        return sorted((self.observer / "scalp" / provider).glob(f"*/{_day(day)}/ticks_*.jsonl"))

    def book_file(self, provider: str, market: str, day: date, symbol: str) -> Path:
        """One symbol's order book updates of a day, beside its ticks."""
        return self.scalp_dir(provider, market, day) / f"orderbook_{symbol}.jsonl"

    def program_file(self, provider: str, market: str, day: date, symbol: str) -> Path:
        """One symbol's program trading updates of a day, beside its ticks."""
        return self.scalp_dir(provider, market, day) / f"program_{symbol}.jsonl"

    def recovery_file(self, provider: str, market: str, at: datetime, symbol: str) -> Path:
        return self.scalp_dir(provider, market, at.date()) / f"recovery_{at:%H%M%S}_{symbol}.jsonl"

    def gap_markers(self, provider: str, day: date) -> Path:
        return self.observer / "system" / "gaps" / provider / f"{_day(day)}_gaps.jsonl"

    def overflow_ledger(self, provider: str, day: date) -> Path:
        return self.observer / "system" / "overflow" / provider / f"{_day(day)}_overflow.jsonl"

    def candle_report(self, day: date) -> Path:
        """The day's expected-candle check: what the minute jobs' tables still miss after the refill."""
        return self.observer / "system" / "candles" / f"{_day(day)}_candles.json"

    def alerts_ledger(self, day: date) -> Path:
        """Every alert that passed its cooldown (the notifier's ledger, for audits and the chaos day)."""
        return self.observer / "system" / "alerts" / f"{_day(day)}_alerts.jsonl"
