"""The public messages on the spine: frozen pydantic models, one per subject pattern.

Wire format: each message is one JSON object, the model's `model_dump_json()`. Its first two keys name
it: `type` (e.g. "tick") and `version` (the schema version, raised on any change a consumer could
notice; added optional fields keep it). Times are ISO 8601 with their offset (KST, +09:00). The JSON
Schema of every type is generated into `schemas/<type>.json` (`python -m spine.schemas`) together with
its subject pattern, and a test keeps those files equal to these models.

Consumers need only a JSON parser: `json.loads(msg.data)["price"]`; Python consumers may also validate
with `spine.wire.parse(msg.data)`.

Control commands are requests, not facts: a `ControlRequest` subclass per command on
`observer.<instance>.control.<command>` (its body is what `POST /api/control/<command>` takes, plus who
asks), answered by the control process with a `ControlReply`. The stream keeps facts only.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from messages.control import MAX_PICKS, MAX_TRIGGER_TTL_SECONDS, Pick

SCHEMA_VERSION = 1


class Fact(BaseModel):
    """Base of every public message: `type` and `version` first, then the subclass's fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_serialization_defaults_required=True)

    type: str
    version: int
    subject_pattern: ClassVar[str]
    """Below `observer.<instance>.`; `{name}` stands for the model's field `name` as one token."""

    def subject_keys(self) -> dict[str, str]:
        return {}


class Tick(Fact):
    """One trade of a symbol: streamed over the WebSocket (`source` "ws"), or one minute bar back-filled
    into a gap (`source` "recovery": price is the bar's close, volume the bar's, cum_volume null)."""

    type: Literal["tick"] = "tick"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "tick.{symbol}"
    symbol: str
    venue: str
    exchange_time: AwareDatetime
    received_at: AwareDatetime
    price: int
    volume: int
    cum_volume: int | None
    source: Literal["ws", "recovery"]
    account: str
    cum_value: int | None = None
    change_rate: float | None = None
    ask1: int | None = None
    bid1: int | None = None
    side: str | None = None
    strength: float | None = None

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class Book(Fact):
    """One order book update of a symbol: ten ask and bid levels (best first) with their resting quantities,
    the totals, and the day's volume; `exchange_time` is the frame's time on the day it arrived."""

    type: Literal["book"] = "book"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "book.{symbol}"
    symbol: str
    exchange_time: AwareDatetime
    received_at: AwareDatetime
    asks: tuple[int, ...]
    bids: tuple[int, ...]
    ask_sizes: tuple[int, ...]
    bid_sizes: tuple[int, ...]
    total_ask_size: int
    total_bid_size: int
    cum_volume: int
    tr_id: str
    account: str

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class ProgramTrading(Fact):
    """A symbol's program trading so far today (volumes in shares, values in KRW; net = buy - sell) and the
    program orders resting in its book."""

    type: Literal["program"] = "program"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "program.{symbol}"
    symbol: str
    exchange_time: AwareDatetime
    received_at: AwareDatetime
    sell_volume: int
    sell_value: int
    buy_volume: int
    buy_value: int
    net_volume: int
    net_value: int
    sell_resting: int
    buy_resting: int
    net_resting: int
    tr_id: str
    account: str

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class Snapshot(Fact):
    """One row of a Track A scan (intstock-multprice), as written to `snapshots.jsonl`."""

    type: Literal["snapshot"] = "snapshot"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "snapshot.{symbol}"
    account: str
    scan_no: int
    scanned_at: AwareDatetime
    symbol: str
    name: str
    price: int
    change: int
    sign: str
    change_rate: float | None
    volume: int
    value: int
    open: int
    high: int
    low: int
    upper_limit: int
    lower_limit: int
    prev_close: int
    base_price: int
    ask: int
    bid: int
    halted: bool = False
    """Trading halted by the venue when the row was read."""

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class ScanDone(Fact):
    """A Track A pass ended (its rows went out as `snapshot` messages just before)."""

    type: Literal["scan"] = "scan"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "scan.{account}"
    at: AwareDatetime
    account: str
    scan_no: int
    rows: int
    calls: int
    failed_calls: int
    duration_seconds: float
    closing: bool = False
    """The closing pass, after KRX's closing auction."""

    def subject_keys(self) -> dict[str, str]:
        return {"account": self.account}


class TriggerFired(Fact):
    """A new trigger (not a renewal): `kind` held for `symbol` at `detected_at`, alive until `expires_at`."""

    type: Literal["trigger"] = "trigger"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "trigger.{symbol}"
    symbol: str
    kind: str
    strength: float
    value: float
    threshold: float
    detected_at: AwareDatetime
    expires_at: AwareDatetime | None

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class SlotChanged(Fact):
    """One subscribe or unsubscribe decision of the slot manager, and why."""

    type: Literal["slot"] = "slot"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "slot.{account}"
    at: AwareDatetime
    account: str
    symbol: str
    action: Literal["subscribe", "unsubscribe"]
    reason: str

    def subject_keys(self) -> dict[str, str]:
        return {"account": self.account}


class SlotTargets(Fact):
    """An account's whole target set of streamed symbols, sent whenever it changes (empty outside Track B),
    with those of them that also stream their order book and their program trading."""

    type: Literal["slot_targets"] = "slot_targets"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "slot_targets.{account}"
    at: AwareDatetime
    account: str
    symbols: tuple[str, ...]
    order_books: tuple[str, ...] = ()
    program_trading: tuple[str, ...] = ()

    def subject_keys(self) -> dict[str, str]:
        return {"account": self.account}


class Overflowed(Fact):
    """A candidate that got no WebSocket slot: the overflow ledger's line (seed format) and its account."""

    type: Literal["overflow"] = "overflow"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "overflow.{symbol}"
    account: str
    timestamp: AwareDatetime
    symbol: str
    trigger_type: str | None
    trigger_strength: float | None
    priority_score: float | None
    reason: str
    current_slot_min_score: float | None
    metadata: dict[str, Any]

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class GapOpened(Fact):
    """A connection dropped: `symbol` gets no ticks from `start` until a `gap_closed` for it."""

    type: Literal["gap_opened"] = "gap_opened"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "gap.opened.{symbol}"
    at: AwareDatetime
    account: str
    symbol: str
    start: AwareDatetime
    reason: str

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class GapClosed(Fact):
    """A gap with both ends known (a detected silence or an announced outage over); `action` is what
    recovery does with it: "immediate" or "queued" back-fill, or "marker_only"."""

    type: Literal["gap_closed"] = "gap_closed"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "gap.closed.{symbol}"
    at: AwareDatetime
    account: str
    symbol: str
    start: AwareDatetime
    end: AwareDatetime
    duration_seconds: float
    expected: bool
    reason: str
    action: str

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class GapRecovered(Fact):
    """A gap back-filled from REST minute bars (the bars follow as `tick` messages of source "recovery")."""

    type: Literal["gap_recovered"] = "gap_recovered"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "gap.recovered.{symbol}"
    at: AwareDatetime
    account: str
    symbol: str
    start: AwareDatetime
    end: AwareDatetime
    reason: str
    bars: int

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class GapMarked(Fact):
    """A gap not (or not wholly) back-filled: the gap marker line (seed format) and its account."""

    type: Literal["gap_marked"] = "gap_marked"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "gap.marked.{symbol}"
    account: str
    timestamp: AwareDatetime
    symbol: str
    start_time: AwareDatetime
    end_time: AwareDatetime
    duration_seconds: float
    reason: str
    detail: str
    expected: bool

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class AlertSent(Fact):
    """An alert that passed its cooldown (what Telegram/Discord receive). `key` is "<symbol>:<signal>"
    for market alerts and "system:<key>" for operational ones."""

    type: Literal["alert"] = "alert"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "alert"
    at: AwareDatetime
    key: str
    text: str


class FuturesTrade(Fact):
    """One trade of a KOSPI200 futures contract streamed over the WebSocket (KIS's H0IFCNT0): prices in index
    points, volumes in contracts. `exchange_time` is the trade's time of day on the day it was received
    (the frame carries no date)."""

    type: Literal["futures_trade"] = "futures_trade"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "futures.trade.{symbol}"
    symbol: str
    exchange_time: AwareDatetime
    received_at: AwareDatetime
    price: float
    volume: int
    cum_volume: int
    change: float
    open: float
    high: float
    low: float
    ask1: float
    bid1: float
    open_interest: int
    basis: float
    account: str

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class Dolpha1Signal(Fact):
    """dolpha1's features and signal of one symbol's closed minute (`minute`: the candle's start), as
    stored in `dolpha1_signal`: session VWAP, Wilder's ATR, the monitor and trade bands (null until they
    exist), the level and side, and `changed` when it differs from the minute before (what alerts)."""

    type: Literal["dolpha1_signal"] = "dolpha1_signal"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "signal.dolpha1.{symbol}"
    symbol: str
    minute: AwareDatetime
    close: float
    vwap: float | None
    atr: float | None
    monitor_upper: float | None
    monitor_lower: float | None
    trade_upper: float | None
    trade_lower: float | None
    level: Literal["none", "monitor", "trade"]
    side: Literal["", "long", "short"]
    changed: bool

    def subject_keys(self) -> dict[str, str]:
        return {"symbol": self.symbol}


class PhaseChange(Fact):
    """The operation phase became `phase` at the scheduled instant `at`."""

    type: Literal["phase"] = "phase"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "phase"
    at: AwareDatetime
    phase: str
    previous: str


class DayEventDue(Fact):
    """A fixed event of the day fell due (universe build, wake-up, token refresh, backup, token check)."""

    type: Literal["day_event"] = "day_event"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "day_event"
    at: AwareDatetime
    event: str


class Health(Fact):
    """The observer's pulse, every `spine.health_interval_seconds`: actors, restarts, counters, spine."""

    type: Literal["health"] = "health"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "health"
    at: AwareDatetime
    uptime_seconds: float
    phase: str | None
    actors_alive: int
    actors_total: int
    actors_down: tuple[str, ...]
    restarts: dict[str, int]
    counters: dict[str, int]
    published: int
    dropped: int


class WorkerHeartbeat(Fact):
    """A stream worker's pulse, every `workers.heartbeat_seconds`: who it is, where it runs, and the session
    state of each account it serves ("waiting" while another worker holds that key's session). The control
    process allocates slots only to accounts a live worker streams."""

    type: Literal["worker"] = "worker"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "worker.{worker}"
    at: AwareDatetime
    worker: str
    host: str
    pid: int
    sessions: dict[str, str]
    interval_seconds: float
    stopping: bool = False
    """The worker's last heartbeat before a clean stop."""

    def subject_keys(self) -> dict[str, str]:
        return {"worker": self.worker}


FACT_TYPES: tuple[type[Fact], ...] = (
    Tick, Book, ProgramTrading, Snapshot, ScanDone, TriggerFired, SlotChanged, SlotTargets, Overflowed,
    GapOpened, GapClosed, GapRecovered, GapMarked, AlertSent, FuturesTrade, Dolpha1Signal, PhaseChange,
    DayEventDue, Health, WorkerHeartbeat,
)  # fmt: skip
"""Every public message type, in the order the schemas and the README list them."""

_BY_TYPE: dict[str, type[Fact]] = {model.model_fields["type"].default: model for model in FACT_TYPES}
_ANY_FACT: TypeAdapter[Any] = TypeAdapter(dict[str, Any])


def type_name(model: type[Fact]) -> str:
    return str(model.model_fields["type"].default)


def parse(data: bytes | str | dict[str, Any]) -> Fact:
    """A message off the spine (its bytes, or the JSON object already parsed) as its model; ValueError
    for anything that is no known message."""
    document = data if isinstance(data, dict) else _ANY_FACT.validate_json(data)
    model = _BY_TYPE.get(str(document.get("type")))
    if model is None:
        raise ValueError(f"not a spine message type: {str(document.get('type'))[:40]!r}")
    return model.model_validate(document)


class ControlRequest(BaseModel):
    """A control command for the control process: the command's arguments, and `who` asks (a name the
    audit file records; "nats" when not given). Sent as a NATS request; the reply is a `ControlReply`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: ClassVar[str]
    who: str | None = Field(default=None, min_length=1, max_length=64)

    @classmethod
    def subject_pattern(cls) -> str:
        """Below `observer.<instance>.`."""
        return f"control.{cls.command}"


class PinRequest(ControlRequest):
    """Pin `symbol` (a six-character KRX code of today's universe): it keeps a slot until unpinned."""

    command: ClassVar[str] = "pin"
    symbol: str


class UnpinRequest(ControlRequest):
    """Unpin `symbol`."""

    command: ClassVar[str] = "unpin"
    symbol: str


class TriggerRequest(ControlRequest):
    """A manual trigger on `symbol` that expires after `ttl_seconds`."""

    command: ClassVar[str] = "trigger"
    symbol: str
    ttl_seconds: float = Field(gt=0, le=MAX_TRIGGER_TTL_SECONDS)


class PicksRequest(ControlRequest):
    """The day's picks (symbols, or {symbol, score} with score in [0, 1]): they replace the picks tier
    at once (`when` "now") or at the next configured picks time of a trading day ("scheduled")."""

    command: ClassVar[str] = "picks"
    picks: list[str | Pick] = Field(min_length=1, max_length=MAX_PICKS)
    when: Literal["now", "scheduled"] = "now"


class ScanRequest(ControlRequest):
    """A Track A pass now."""

    command: ClassVar[str] = "scan"


class TrackBRequest(ControlRequest):
    """Pause (`paused` true) or resume (false) Track B."""

    command: ClassVar[str] = "trackb"
    paused: bool


class ControlReply(BaseModel):
    """The control process's answer to a control request: `done` says what it did, or `error` (one
    sentence) why nothing was changed; `status` is the HTTP status the API answers with (200 when done)."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_serialization_defaults_required=True)

    type: Literal["control_reply"] = "control_reply"
    version: Literal[1] = 1
    ok: bool
    command: str
    status: int
    done: str | None = None
    error: str | None = None
    at: AwareDatetime


CONTROL_REQUESTS: tuple[type[ControlRequest], ...] = (
    PinRequest, UnpinRequest, TriggerRequest, PicksRequest, ScanRequest, TrackBRequest,
)  # fmt: skip
"""Every control command's request, in the order the docs list them."""
