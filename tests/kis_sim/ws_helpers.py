"""A raw KIS WebSocket client for the simulator tests (websocket-client, no product code in between)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import websocket

from kis.fields import H0STCNT0_FIELDS, H0STCNT0_INDEX
from runtime.clock import KST


def connect(url: str, path: str = "/tryitout", timeout: float = 5.0) -> websocket.WebSocket:
    return websocket.create_connection(url + path, timeout=timeout)


def request(approval_key: str, tr_id: str, tr_key: str, tr_type: str = "1") -> str:
    header = {"approval_key": approval_key, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"}
    return json.dumps({"header": header, "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}}})


def recv_until(ws: websocket.WebSocket, accept: Callable[[str], bool], timeout: float = 5.0) -> str:
    """The first message `accept` takes, skipping the others; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            message = ws.recv()
        except websocket.WebSocketTimeoutException:
            break
        if accept(message):
            return message
    raise AssertionError(f"no matching message within {timeout} s")


def is_ack(message: str) -> bool:
    return message.startswith("{") and '"PINGPONG"' not in message


def send_and_ack(ws: websocket.WebSocket, approval_key: str, tr_id: str, tr_key: str,
                 tr_type: str = "1") -> dict:
    ws.send(request(approval_key, tr_id, tr_key, tr_type))
    return json.loads(recv_until(ws, is_ack))


@dataclass(frozen=True)
class TradeRecord:
    fields: tuple[str, ...]

    def __getitem__(self, name: str) -> str:
        return self.fields[H0STCNT0_INDEX[name]]

    def exchange_time(self, day: str | None = None) -> datetime:
        stamp = (day or self["BSOP_DATE"]) + self["STCK_CNTG_HOUR"]
        return datetime.strptime(stamp, "%Y%m%d%H%M%S").replace(tzinfo=KST)


def parse_data_frame(frame: str) -> tuple[str, list[tuple[str, ...]]]:
    """(tr_id, records) of a plain `0|TR|NNN|payload` frame; the record width comes from the tr_id."""
    flag, tr_id, count, payload = frame.split("|", 3)
    assert flag == "0", frame[:40]
    fields = payload.split("^")
    n = int(count)
    assert n > 0 and len(fields) % n == 0, f"{len(fields)} fields for {n} records"
    width = len(fields) // n
    return tr_id, [tuple(fields[i * width:(i + 1) * width]) for i in range(n)]


def trade_records(frame: str) -> list[TradeRecord]:
    tr_id, records = parse_data_frame(frame)
    assert tr_id == "H0STCNT0"
    assert all(len(r) == len(H0STCNT0_FIELDS) for r in records)
    return [TradeRecord(r) for r in records]


def is_trade_frame(message: str) -> bool:
    return message.startswith("0|H0STCNT0|")
