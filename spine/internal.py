"""Messages between actors of different processes: a JSON form of every actor message, and the subjects.

An actor message crossing a process travels as one JSON object `{"type": <class name>, "message": {...}}`
on `observer-internal.<instance>.<child id>`. That prefix is outside `observer.<instance>.>`, so the day's
JetStream stream never keeps internal traffic and outside consumers never see it. The only messages not
plain pydantic JSON are the decoded WebSocket records (`TradeTick` named tuples, `ExecutionNotice`
dataclasses): they travel as lists of their fields, in declaration order. A trade tick leaves its raw
record (`fields`) behind: no actor of another process reads it, and it was two thirds of every tick
message's bytes. Computed fields (a gap's duration) are left out: the receiver computes them again.

A child may run in several processes: every stream worker runs a `recorder`. A message for it is taken by
one of them (the processes serving a child form a NATS queue group on its subject), so a scan's snapshots,
an overflow ledger line, a recovery or a gap marker is written and published once. The kinds in
`EVERY_PROCESS` go to every process running the child instead (`every_process_subject`): each worker's
recorder keeps its own symbol → market map (`UniverseReady`), backs up its own journal at the daily backup
(`DayEventFired`) and follows the phase (`PhaseChanged`).

Nothing here carries a credential: no actor message holds a token or an approval key (`CredentialsRenewed`
names the account only; the stream process reads the token cache the control process writes).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any, NamedTuple

import messages.alerts
import messages.control
import messages.gaps
import messages.market
import messages.recording
import messages.schedule
import messages.selection
import messages.streaming
import messages.system
import messages.universe
from kis.ticks import ExecutionNotice, TradeTick
from messages.base import Message
from messages.market import ExecutionsReceived, TicksReceived
from messages.recording import OverflowRecorded
from spine.subjects import token

INTERNAL_ROOT = "observer-internal"
QUEUE_GROUP = "serving"
"""The queue group of the processes serving a child: one of them takes each message."""
EVERY_PROCESS = frozenset({"UniverseReady", "DayEventFired", "PhaseChanged"})
"""Message kinds every process running the child gets (a broadcast), by class name."""
_MODULES = (
    messages.alerts, messages.control, messages.gaps, messages.market, messages.recording,
    messages.schedule, messages.selection, messages.streaming, messages.system, messages.universe,
)


class RemoteFailure(NamedTuple):
    """The reply to an ask whose handler raised in the other process."""

    error: str


class NotCrossable(ValueError):
    """A message (or a reply) that has no JSON form here: it cannot leave its process."""


def _registry() -> dict[str, type[Message]]:
    found: dict[str, type[Message]] = {}
    for module in _MODULES:
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Message) and value is not Message:
                found[value.__name__] = value
    return found


MESSAGE_TYPES = _registry()
"""Every actor message that may cross a process, by class name."""


def internal_subject(instance: str, child_id: str) -> str:
    """Where messages for `child_id` of this instance go, one process serving it taking each (one safe
    token per part)."""
    return f"{INTERNAL_ROOT}.{token(instance)}.{token(child_id)}"


def every_process_subject(instance: str, child_id: str) -> str:
    """Where the `EVERY_PROCESS` kinds for `child_id` go: every process serving it gets each."""
    return f"{internal_subject(instance, child_id)}.every"


def subject_for(instance: str, child_id: str, message: Any) -> str:
    """The subject a tell of `message` to `child_id` goes on."""
    if type(message).__name__ in EVERY_PROCESS:
        return every_process_subject(instance, child_id)
    return internal_subject(instance, child_id)


def encode(message: Any) -> bytes:
    """The JSON form of an actor message, or of a reply (a message, None, a plain value, a tuple of them)."""
    return json.dumps(_wrap(message), separators=(",", ":")).encode()


def decode(data: bytes) -> Any:
    """The message or reply that `encode` made; NotCrossable for an unknown type."""
    return _unwrap(json.loads(data))


def encode_failure(error: str) -> bytes:
    """The reply to an ask whose handler raised `error` (one line)."""
    return json.dumps({"type": "failure", "error": error}).encode()


def _wrap(value: Any) -> Any:
    match value:
        case TicksReceived():
            body = value.model_dump(mode="json", exclude={"ticks"}, exclude_computed_fields=True)
            times: dict[datetime, str] = {}  # trade times are whole seconds: ticks of a second share one
            body["ticks"] = [_tick_fields(tick, times) for tick in value.ticks]
            return {"type": "TicksReceived", "message": body}
        case ExecutionsReceived():
            body = value.model_dump(mode="json", exclude={"notices"}, exclude_computed_fields=True)
            body["notices"] = [list(dataclasses.astuple(notice)) for notice in value.notices]
            return {"type": "ExecutionsReceived", "message": body}
        case Message() if type(value).__name__ in MESSAGE_TYPES:
            body = value.model_dump(mode="json", exclude_computed_fields=True)
            return {"type": type(value).__name__, "message": body}
        case None | bool() | int() | float() | str():
            return {"type": "value", "value": value}
        case tuple() | list():
            return {"type": "tuple", "items": [_wrap(item) for item in value]}
        case _:
            raise NotCrossable(f"{type(value).__name__} has no JSON form between processes")


def _unwrap(document: dict[str, Any]) -> Any:
    kind = document.get("type")
    match kind:
        case "value":
            return document["value"]
        case "failure":
            return RemoteFailure(str(document["error"]))
        case "tuple":
            return tuple(_unwrap(item) for item in document["items"])
        case "TicksReceived":
            body = dict(document["message"])
            ticks = tuple(_tick(fields) for fields in body.pop("ticks"))
            return TicksReceived.model_validate({**body, "ticks": ticks})
        case "ExecutionsReceived":
            body = dict(document["message"])
            notices = tuple(_notice(fields) for fields in body.pop("notices"))
            return ExecutionsReceived.model_validate({**body, "notices": notices})
        case "OverflowRecorded":  # its lines skip validation, so JSON's lists would stay lists
            body = dict(document["message"])
            return OverflowRecorded.model_validate({**body, "lines": tuple(body["lines"])})
        case str() if kind in MESSAGE_TYPES:
            return MESSAGE_TYPES[kind].model_validate(document["message"])
        case _:
            raise NotCrossable(f"unknown message type {kind!r}")


_TICK_TIME = TradeTick._fields.index("exchange_time")
_TICK_RAW = TradeTick._fields.index("fields")
_NOTICE_RAW = [field.name for field in dataclasses.fields(ExecutionNotice)].index("fields")


def _tick_fields(tick: TradeTick, times: dict[datetime, str]) -> list[Any]:
    values: list[Any] = list(tick)
    text = times.get(tick.exchange_time)
    if text is None:
        text = times[tick.exchange_time] = tick.exchange_time.isoformat()
    values[_TICK_TIME] = text
    values[_TICK_RAW] = []
    return values


def _tick(values: list[Any]) -> TradeTick:
    values = list(values)
    values[_TICK_TIME] = datetime.fromisoformat(values[_TICK_TIME])
    values[_TICK_RAW] = tuple(values[_TICK_RAW])
    return TradeTick(*values)


def _notice(values: list[Any]) -> ExecutionNotice:
    values = list(values)
    values[_NOTICE_RAW] = tuple(values[_NOTICE_RAW])
    return ExecutionNotice(*values)
