"""What the simulator sent against what the observer kept: the chaos day's figures (`run.py --sim`).

A trade record is identified by (app key hash, symbol, exchange second, cumulative volume): the sent log
(`tools.kis_sim.sent_log`) carries the app key's hash and microseconds, the tick files the account name
and the whole second KIS frames carry. Each sent record of one of our accounts is, in this order:

- recorded: a "ws" row of the account's tick files has the same identity;
- in a recovered gap: a recovery record of the account covers the symbol at that second;
- in a marked gap: a gap marker of the account covers it;
- lost: none of the above. `ticks_lost` must be 0.

Coverage: tick times are whole seconds, so a gap [start, end] covers the whole seconds from start's
second to end's second, both included.

Alerts: the notifier's ledger (`system/alerts/{YYYYMMDD}_alerts.jsonl`, one line per alert that passed
its cooldown: at, key, cooldown_seconds) gives `duplicate_alerts`, the alerts that went out less than
their cooldown after the previous one of the same key.

The functions on records are pure; `reconcile_run` reads the files (torn lines are skipped with a
warning by `runtime.jsonl`, never fatal).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

from loguru import logger

from runtime.jsonl import read_jsonl
from runtime.paths import DataPaths

LOST_SAMPLE = 10

Identity = tuple[str, str, datetime, int]
"""(account name, symbol, exchange time to the whole second, cumulative volume)."""
Span = tuple[datetime, datetime]


@dataclass(frozen=True, slots=True)
class SentRecord:
    account: str
    symbol: str
    second: datetime
    cum_volume: int
    fault: str | None = None

    @property
    def identity(self) -> Identity:
        return (self.account, self.symbol, self.second, self.cum_volume)


@dataclass(slots=True)
class GapCover:
    """Per (account, symbol): the whole-second spans of recovered and of marked gaps."""

    recovered: dict[tuple[str, str], list[Span]] = field(default_factory=lambda: defaultdict(list))
    marked: dict[tuple[str, str], list[Span]] = field(default_factory=lambda: defaultdict(list))

    def add_recovered(self, account: str, symbol: str, start: datetime, end: datetime) -> None:
        self.recovered[(account, symbol)].append(whole_seconds(start, end))

    def add_marked(self, account: str, symbol: str, start: datetime, end: datetime) -> None:
        self.marked[(account, symbol)].append(whole_seconds(start, end))


@dataclass(frozen=True, slots=True)
class Reconciliation:
    sim_ticks_sent: int
    ticks_recorded: int
    ticks_in_recovered_gaps: int
    ticks_in_marked_gaps: int
    ticks_lost: int
    ticks_in_faulty_frames: int
    duplicate_alerts: int
    lost_sample: tuple[str, ...] = ()

    def figures(self) -> dict[str, Any]:
        """The summary JSON's fields."""
        return {
            "sim_ticks_sent": self.sim_ticks_sent,
            "ticks_recorded_matched": self.ticks_recorded,
            "ticks_in_recovered_gaps": self.ticks_in_recovered_gaps,
            "ticks_in_marked_gaps": self.ticks_in_marked_gaps,
            "ticks_lost": self.ticks_lost,
            "ticks_in_faulty_frames": self.ticks_in_faulty_frames,
            "duplicate_alerts": self.duplicate_alerts,
            "ticks_lost_sample": list(self.lost_sample),
        }


def whole_seconds(start: datetime, end: datetime) -> Span:
    return start.replace(microsecond=0), end.replace(microsecond=0)


def covered(spans: Iterable[Span], second: datetime) -> bool:
    return any(start <= second <= end for start, end in spans)


def classify(
    sent: Iterable[SentRecord], recorded: set[Identity], cover: GapCover
) -> tuple[int, int, int, int, int, list[SentRecord]]:
    """(sent, recorded, in recovered gaps, in marked gaps, in faulty frames, lost records)."""
    counts = [0, 0, 0, 0, 0]
    lost: list[SentRecord] = []
    for record in sent:
        counts[0] += 1
        if record.fault is not None:
            counts[4] += 1
        if record.identity in recorded:
            counts[1] += 1
        elif covered(cover.recovered.get((record.account, record.symbol), ()), record.second):
            counts[2] += 1
        elif covered(cover.marked.get((record.account, record.symbol), ()), record.second):
            counts[3] += 1
        else:
            lost.append(record)
    return counts[0], counts[1], counts[2], counts[3], counts[4], lost


def duplicate_alerts(ledger: Iterable[Mapping[str, Any]]) -> int:
    """Alerts sent less than their cooldown after the previous alert of the same key."""
    by_key: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for row in ledger:
        try:
            sent_at, cooldown = datetime.fromisoformat(row["at"]), float(row["cooldown_seconds"])
            by_key[str(row["key"])].append((sent_at, cooldown))
        except (KeyError, TypeError, ValueError):
            logger.warning("alert ledger: unusable row skipped: {}", str(row)[:120])
    duplicates = 0
    for sends in by_key.values():
        sends.sort()
        for (previous, _), (at, cooldown) in pairwise(sends):
            if at - previous < timedelta(seconds=cooldown):
                duplicates += 1
    return duplicates


def reconcile(
    sent: Iterable[SentRecord], recorded: set[Identity], cover: GapCover, ledger: Iterable[Mapping[str, Any]]
) -> Reconciliation:
    total, matched, recovered, marked, faulty, lost = classify(sent, recorded, cover)
    sample = tuple(
        f"{r.account} {r.symbol} {r.second.time()} cum {r.cum_volume}{f' ({r.fault})' if r.fault else ''}"
        for r in lost[:LOST_SAMPLE]
    )
    duplicates = duplicate_alerts(ledger)
    return Reconciliation(total, matched, recovered, marked, len(lost), faulty, duplicates, sample)


# --- the reader ---------------------------------------------------------------------------------


def sent_records(sent_log: Path, accounts_by_key_hash: Mapping[str, str]) -> Iterator[SentRecord]:
    """The sent log's records of our accounts (`accounts_by_key_hash`: app key hash -> account name)."""
    for row in read_jsonl(sent_log).records:
        account = accounts_by_key_hash.get(str(row.get("app_key_hash")))
        if account is None:
            continue
        try:
            second = datetime.fromisoformat(row["exchange_time"]).replace(microsecond=0)
            yield SentRecord(account, str(row["symbol"]), second, int(row["cum_volume"]), row.get("fault"))
        except (KeyError, TypeError, ValueError):
            logger.warning("{}: unusable sent record skipped: {}", sent_log, str(row)[:120])


def recorded_identities(paths: DataPaths, accounts: Iterable[str]) -> set[Identity]:
    """Every streamed ("ws") tick in the accounts' tick files."""
    identities: set[Identity] = set()
    for account in accounts:
        for path in sorted((paths.observer / "scalp" / account).glob("*/*/ticks_*.jsonl")):
            for row in read_jsonl(path).records:
                if row.get("source") != "ws":
                    continue
                try:
                    second = datetime.fromisoformat(row["exchange_time"]).replace(microsecond=0)
                    identities.add((account, str(row["symbol"]), second, int(row["cum_volume"])))
                except (KeyError, TypeError, ValueError):
                    logger.warning("{}: unusable tick row skipped", path)
    return identities


def gap_cover(paths: DataPaths, accounts: Iterable[str]) -> GapCover:
    """Recovered gaps from the recovery files, marked gaps from the gap markers."""
    cover = GapCover()
    for account in accounts:
        for path in sorted((paths.observer / "scalp" / account).glob("*/*/recovery_*.jsonl")):
            for row in read_jsonl(path).records:
                try:
                    gap = row["meta"]["original_gap"]
                    for instrument in row["instruments"]:
                        cover.add_recovered(account, str(instrument["symbol"]),
                                            datetime.fromisoformat(gap["start"]),
                                            datetime.fromisoformat(gap["end"]))
                except (KeyError, TypeError, ValueError):
                    logger.warning("{}: unusable recovery record skipped", path)
        for path in sorted((paths.observer / "system" / "gaps" / account).glob("*_gaps.jsonl")):
            for row in read_jsonl(path).records:
                try:
                    cover.add_marked(account, str(row["symbol"]), datetime.fromisoformat(row["start_time"]),
                                     datetime.fromisoformat(row["end_time"]))
                except (KeyError, TypeError, ValueError):
                    logger.warning("{}: unusable gap marker skipped", path)
    return cover


def alert_ledger(paths: DataPaths) -> Iterator[dict[str, Any]]:
    for path in sorted((paths.observer / "system" / "alerts").glob("*_alerts.jsonl")):
        yield from read_jsonl(path).records


def reconcile_run(
    paths: DataPaths, sent_log: Path, accounts_by_key_hash: Mapping[str, str]
) -> Reconciliation:
    """Read a run's files (`paths`: its data root) and reconcile them with the simulator's sent log."""
    accounts = sorted(set(accounts_by_key_hash.values()))
    return reconcile(
        sent_records(sent_log, accounts_by_key_hash),
        recorded_identities(paths, accounts),
        gap_cover(paths, accounts),
        alert_ledger(paths),
    )
