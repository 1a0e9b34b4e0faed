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

Bounded memory however long the day: the sent log is read once in blocks and its records of our accounts
are spilled to temporary files, one per (account, symbol); each symbol is then matched against its own
tick files alone, so what is held at once is one block or one symbol's day, never the whole day. Files
are parsed by pyarrow's JSON reader; a file it refuses (a torn or invalid line) is read again line by
line by `runtime.jsonl`, which skips the bad lines with a warning, never fatal.
"""

from __future__ import annotations

import heapq
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import reduce
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from loguru import logger

from runtime.clock import KST
from runtime.jsonl import JsonlReader
from runtime.paths import DataPaths

LOST_SAMPLE = 10
BLOCK_BYTES = 512 << 10
"""Bytes of JSON per block; pyarrow's reader keeps a few dozen blocks in flight, so this bounds the
memory of reading the sent log or one tick file (about 20 MB)."""
SPILL_BUFFER_ROWS = 256_000
"""Sent records buffered before they are appended to the spill files (6 MB of int64 columns)."""
FALLBACK_ROWS = 65_536
"""Rows per block when a file is read line by line."""

Span = tuple[datetime, datetime]
Block = TypeVar("Block", pa.RecordBatch, pa.Table)

SENT_SCHEMA = pa.schema([
    ("symbol", pa.string()),
    ("exchange_time", pa.string()),
    ("cum_volume", pa.int64()),
    ("app_key_hash", pa.string()),
    ("fault", pa.string()),
])
TICK_SCHEMA = pa.schema([("exchange_time", pa.string()), ("cum_volume", pa.int64()), ("source", pa.string())])
SPILLED = ("second", "cum_volume", "fault")
"""The int64 columns spilled per (account, symbol): epoch second, cumulative volume, fault code (0: none)."""


@dataclass(frozen=True, slots=True)
class SentRecord:
    account: str
    symbol: str
    second: datetime
    cum_volume: int
    fault: str | None = None


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
    sent: Iterable[SentRecord], recorded: set[tuple[str, str, datetime, int]], cover: GapCover
) -> tuple[int, int, int, int, int, list[SentRecord]]:
    """(sent, recorded, in recovered gaps, in marked gaps, in faulty frames, lost records); `recorded`
    holds the identities (account, symbol, second, cumulative volume) of the streamed rows."""
    counts = [0, 0, 0, 0, 0]
    lost: list[SentRecord] = []
    for record in sent:
        counts[0] += 1
        if record.fault is not None:
            counts[4] += 1
        if (record.account, record.symbol, record.second, record.cum_volume) in recorded:
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


def describe_lost(record: SentRecord) -> str:
    fault = f" ({record.fault})" if record.fault else ""
    return f"{record.account} {record.symbol} {record.second.time()} cum {record.cum_volume}{fault}"


# --- the readers ------------------------------------------------------------------------------------


def _epoch_seconds(exchange_time: pa.Array) -> pa.Array:
    """ISO 8601 times with an offset -> whole epoch seconds (pa.ArrowInvalid on a malformed time)."""
    micros = pc.cast(pc.cast(exchange_time, pa.timestamp("us", tz="UTC")), pa.int64())
    return pc.divide(micros, 1_000_000)


def _json_blocks(path: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """`schema`'s columns of a JSONL file, block by block (pa.ArrowException on any bad line)."""
    try:
        reader = pj.open_json(
            path,
            read_options=pj.ReadOptions(block_size=BLOCK_BYTES, use_threads=False),
            parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore"),
        )
    except pa.ArrowInvalid as error:
        if "Empty JSON" in str(error):
            return
        raise
    yield from reader


def _line_blocks(path: Path, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """The same blocks read line by line (`runtime.jsonl` warns of each bad line and skips it); a value
    of the wrong type becomes null, like a missing one."""
    rows: list[dict[str, Any]] = []
    for row in JsonlReader(path):
        rows.append({name: _typed(name, row.get(name), schema.field(name).type) for name in schema.names})
        if len(rows) == FALLBACK_ROWS:
            yield pa.RecordBatch.from_pylist(rows, schema=schema)
            rows = []
    if rows:
        yield pa.RecordBatch.from_pylist(rows, schema=schema)


def _typed(name: str, value: Any, kind: pa.DataType) -> Any:
    if kind == pa.int64():
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if not isinstance(value, str):
        return None
    if name == "exchange_time":  # rewritten the way pyarrow reads it
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
        return moment.isoformat() if moment.tzinfo is not None else None
    return value


def _usable(path: Path, block: Block, required: tuple[str, ...]) -> tuple[Block, pa.Array]:
    """The rows of `block` with every `required` column and a readable exchange time, and their epoch
    seconds; one warning for the rows left out."""
    mask = reduce(pc.and_, (pc.is_valid(block.column(name)) for name in required))
    kept = block.filter(mask)
    if kept.num_rows < block.num_rows:
        logger.warning("{}: {} unusable rows skipped", path, block.num_rows - kept.num_rows)
    return kept, _epoch_seconds(kept.column("exchange_time"))


class _Spill:
    """The sent records of our accounts, per (account, symbol), as int64 columns buffered in memory and
    appended to files in `folder` (`flush` before `read`)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[tuple[str, str], int] = {}
        self.faults: list[str] = []
        self.sent = 0
        self.faulty = 0
        self._pending: dict[int, list[pa.Table]] = defaultdict(list)
        self._pending_rows = 0

    def add(self, account: str, symbol: str, part: pa.Table) -> None:
        index = self.files.setdefault((account, symbol), len(self.files))
        self._pending[index].append(part)
        self._pending_rows += part.num_rows
        if self._pending_rows >= SPILL_BUFFER_ROWS:
            self.flush()

    def flush(self) -> None:
        for index, parts in self._pending.items():
            table = pa.concat_tables(parts).combine_chunks()
            for name in SPILLED:
                column = table.column(name).chunk(0)
                data = memoryview(column.buffers()[1])[column.offset * 8:(column.offset + len(column)) * 8]
                with (self.folder / f"{index}.{name}").open("ab") as file:
                    file.write(data)
        self._pending.clear()
        self._pending_rows = 0

    def read(self, account: str, symbol: str) -> pa.Table:
        index = self.files[(account, symbol)]
        columns = {}
        for name in SPILLED:
            data = pa.py_buffer((self.folder / f"{index}.{name}").read_bytes())
            columns[name] = pa.Array.from_buffers(pa.int64(), len(data) // 8, [None, data])
        return pa.table(columns)

    def fault_name(self, code: int) -> str | None:
        return self.faults[code - 1] if code else None

    def clear(self) -> None:
        for path in self.folder.iterdir():
            path.unlink()
        self.files.clear()
        self._pending.clear()
        self._pending_rows = self.sent = self.faulty = 0


def _spill_sent(sent_log: Path, accounts_by_key_hash: Mapping[str, str], spill: _Spill) -> None:
    """Read the sent log once, keeping only our accounts' records (pyarrow first, line by line if it
    refuses the file)."""
    try:
        for block in _json_blocks(sent_log, SENT_SCHEMA):
            _spill_block(sent_log, block, accounts_by_key_hash, spill)
    except (pa.ArrowException, OSError):
        spill.clear()
        for block in _line_blocks(sent_log, SENT_SCHEMA):
            _spill_block(sent_log, block, accounts_by_key_hash, spill)
    spill.flush()


def _spill_block(
    sent_log: Path, block: pa.RecordBatch, accounts_by_key_hash: Mapping[str, str], spill: _Spill
) -> None:
    hashes = list(accounts_by_key_hash)
    account_index = pc.index_in(block.column("app_key_hash"), value_set=pa.array(hashes, pa.string()))
    ours = block.append_column("account", account_index).filter(pc.is_valid(account_index))
    ours, seconds = _usable(sent_log, ours, ("symbol", "exchange_time", "cum_volume"))
    fault = ours.column("fault")
    for name in pc.unique(fault.drop_null()).to_pylist():
        if name not in spill.faults:
            spill.faults.append(name)
    fault_code = pc.fill_null(pc.add(pc.index_in(fault, value_set=pa.array(spill.faults, pa.string())), 1), 0)
    spill.sent += ours.num_rows
    spill.faulty += ours.num_rows - fault.null_count
    table = pa.table({
        "account": ours.column("account"),
        "symbol": ours.column("symbol"),
        "second": seconds,
        "cum_volume": ours.column("cum_volume"),
        "fault": pc.cast(fault_code, pa.int64()),
    }).sort_by([("account", "ascending"), ("symbol", "ascending")]).combine_chunks()
    if not table.num_rows:
        return
    account, symbol = table.column("account"), table.column("symbol")
    last = table.num_rows - 1
    changed = pc.or_(pc.not_equal(account.slice(1), account.slice(0, last)),
                     pc.not_equal(symbol.slice(1), symbol.slice(0, last)))
    starts = [0, *(index + 1 for index in pc.indices_nonzero(changed).to_pylist()), table.num_rows]
    for begin, end in pairwise(starts):
        name = accounts_by_key_hash[hashes[account[begin].as_py()]]
        spill.add(name, symbol[begin].as_py(), table.slice(begin, end - begin).select(SPILLED))


def tick_files(roots: Sequence[DataPaths], account: str) -> dict[str, list[Path]]:
    """Symbol -> the account's tick files of that symbol, every day, in every data root (a stream worker
    per host journals under its own)."""
    found: dict[str, list[Path]] = defaultdict(list)
    for paths in roots:
        for path in sorted((paths.observer / "scalp" / account).glob("*/*/ticks_*.jsonl")):
            found[path.stem.removeprefix("ticks_")].append(path)
    return found


def recorded_ticks(files: Iterable[Path]) -> pa.Table:
    """(epoch second, cumulative volume) of every streamed ("ws") row of one symbol's tick files."""
    parts = [part for path in files for part in _file_ticks(path)]
    schema = pa.schema([("second", pa.int64()), ("cum_volume", pa.int64())])
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _file_ticks(path: Path) -> list[pa.Table]:
    """One tick file, parsed whole on every core (a file is one symbol's day)."""
    try:
        table = pj.read_json(
            path,
            read_options=pj.ReadOptions(block_size=BLOCK_BYTES),
            parse_options=pj.ParseOptions(explicit_schema=TICK_SCHEMA, unexpected_field_behavior="ignore"),
        )
        return [_streamed(path, table)]
    except pa.ArrowInvalid as error:
        if "Empty JSON" in str(error):
            return []
        return [_streamed(path, block) for block in _line_blocks(path, TICK_SCHEMA)]
    except (pa.ArrowException, OSError):
        return [_streamed(path, block) for block in _line_blocks(path, TICK_SCHEMA)]


def _streamed(path: Path, block: pa.RecordBatch | pa.Table) -> pa.Table:
    block = block.filter(pc.equal(block.column("source"), "ws"))
    block, seconds = _usable(path, block, ("exchange_time", "cum_volume"))
    return pa.table({"second": seconds, "cum_volume": block.column("cum_volume")})


def gap_cover(roots: Sequence[DataPaths], accounts: Iterable[str]) -> GapCover:
    """Recovered gaps from the recovery files, marked gaps from the gap markers, of every data root."""
    cover = GapCover()
    for paths, account in ((paths, account) for paths in roots for account in accounts):
        for path in sorted((paths.observer / "scalp" / account).glob("*/*/recovery_*.jsonl")):
            for row in JsonlReader(path):
                try:
                    gap = row["meta"]["original_gap"]
                    for instrument in row["instruments"]:
                        cover.add_recovered(account, str(instrument["symbol"]),
                                            datetime.fromisoformat(gap["start"]),
                                            datetime.fromisoformat(gap["end"]))
                except (KeyError, TypeError, ValueError):
                    logger.warning("{}: unusable recovery record skipped", path)
        for path in sorted((paths.observer / "system" / "gaps" / account).glob("*_gaps.jsonl")):
            for row in JsonlReader(path):
                try:
                    cover.add_marked(account, str(row["symbol"]), datetime.fromisoformat(row["start_time"]),
                                     datetime.fromisoformat(row["end_time"]))
                except (KeyError, TypeError, ValueError):
                    logger.warning("{}: unusable gap marker skipped", path)
    return cover


def alert_ledger(roots: Sequence[DataPaths]) -> Iterator[dict[str, Any]]:
    for paths in roots:
        for path in sorted((paths.observer / "system" / "alerts").glob("*_alerts.jsonl")):
            yield from JsonlReader(path)


def reconcile_run(
    paths: DataPaths | Sequence[DataPaths], sent_log: Path, accounts_by_key_hash: Mapping[str, str]
) -> Reconciliation:
    """Read a run's files (`paths`: its data root, or the roots of processes on several hosts, taken
    together) and reconcile them with the simulator's sent log, one (account, symbol) at a time."""
    roots = [paths] if isinstance(paths, DataPaths) else list(paths)
    accounts = sorted(set(accounts_by_key_hash.values()))
    cover = gap_cover(roots, accounts)
    files = {account: tick_files(roots, account) for account in accounts}
    matched = recovered = marked = 0
    lost_count = 0
    sample: list[SentRecord] = []
    with tempfile.TemporaryDirectory(prefix="observer-reconcile-") as folder:
        spill = _Spill(Path(folder))
        _spill_sent(sent_log, accounts_by_key_hash, spill)
        for account, symbol in sorted(spill.files):
            sent = spill.read(account, symbol)
            recorded = recorded_ticks(files[account].get(symbol, ()))
            unmatched = sent.join(recorded, keys=["second", "cum_volume"], join_type="left anti")
            matched += sent.num_rows - unmatched.num_rows
            records = (
                SentRecord(account, symbol, datetime.fromtimestamp(second, KST), cum, spill.fault_name(code))
                for second, cum, code in zip(*(unmatched.column(name).to_pylist() for name in SPILLED),
                                             strict=True)
            )
            _, _, in_recovered, in_marked, _, lost = classify(records, set(), cover)
            recovered += in_recovered
            marked += in_marked
            lost_count += len(lost)
            sample = heapq.nsmallest(LOST_SAMPLE, [*sample, *lost],
                                     key=lambda r: (r.second, r.account, r.symbol, r.cum_volume))
        total, faulty = spill.sent, spill.faulty
    return Reconciliation(total, matched, recovered, marked, lost_count, faulty,
                          duplicate_alerts(alert_ledger(roots)), tuple(describe_lost(r) for r in sample))
