"""The public messages on the spine: frozen pydantic models, one per subject pattern.

Wire format: each message is one JSON object, the model's `model_dump_json()`. Its first two keys name
it: `type` (e.g. "tick") and `version` (the schema version, raised on any change a consumer could
notice; added optional fields keep it). Times are ISO 8601 with their offset (KST, +09:00). The JSON
Schema of every type is generated into `schemas/<type>.json` (`python -m spine.schemas`) together with
its subject pattern, and a test keeps those files equal to these models.

Consumers need only a JSON parser: `json.loads(msg.data)["price"]`; Python consumers may also validate
with `spine.wire.parse(msg.data)`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter

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
    """An account's whole target set of streamed symbols, sent whenever it changes (empty outside Track B)."""

    type: Literal["slot_targets"] = "slot_targets"
    version: Literal[1] = 1
    subject_pattern: ClassVar[str] = "slot_targets.{account}"
    at: AwareDatetime
    account: str
    symbols: tuple[str, ...]

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


FACT_TYPES: tuple[type[Fact], ...] = (
    Tick, Snapshot, ScanDone, TriggerFired, SlotChanged, SlotTargets, Overflowed,
    GapOpened, GapClosed, GapRecovered, GapMarked, AlertSent, PhaseChange, DayEventDue, Health,
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
