"""The sent-log proves what an observer received: every record sent, per session, never a raw key."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

from tests.kis_sim.ws_helpers import (
    connect,
    is_trade_frame,
    recv_until,
    request,
    send_and_ack,
    trade_records,
)
from tools.kis_sim.sent_log import app_key_hash

SYMBOLS = ("005930", "000660", "373220")


def _lines(kis_sim) -> list[dict]:
    path = kis_sim.config.sent_log
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _hhmmss(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%H%M%S")


def _subscribe(ws, approval: str) -> None:
    for code in SYMBOLS:
        assert send_and_ack(ws, approval, "H0STCNT0", code)["body"]["msg_cd"] == "OPSP0000"


def _drain_until_unsubscribed(ws, approval: str) -> list[str]:
    """Unsubscribe everything and return every data frame that arrived before the last ack.

    Acks and frames share one ordered connection, so nothing sent before the last unsubscribe can
    arrive after its ack.
    """
    frames = []
    for code in SYMBOLS:
        ws.send(request(approval, "H0STCNT0", code, tr_type="2"))
    acks = 0
    while acks < len(SYMBOLS):
        message = recv_until(ws, lambda m: True)
        if message.startswith("0|"):
            frames.append(message)
        elif '"OPSP0001"' in message:
            acks += 1
    return frames


def test_the_sent_log_holds_exactly_the_records_the_client_received(kis_sim):
    approval = kis_sim.accounts.issue_approval("LOG-KEY", "LOG-SECRET")
    ws = connect(kis_sim.ws_url)
    _subscribe(ws, approval)
    frames = [recv_until(ws, is_trade_frame) for _ in range(10)]
    frames += _drain_until_unsubscribed(ws, approval)
    ws.close()
    kis_sim.stop()  # flushes the log

    received = sorted(
        (r["MKSC_SHRN_ISCD"], int(r["ACML_VOL"]), int(r["STCK_PRPR"]), int(r["CNTG_VOL"]),
         r["STCK_CNTG_HOUR"])
        for frame in frames
        for r in trade_records(frame)
    )
    lines = _lines(kis_sim)
    logged = sorted(
        (x["symbol"], x["cum_volume"], x["price"], x["volume"], _hhmmss(x["exchange_time"])) for x in lines
    )
    assert len(received) >= 10
    assert logged == received
    assert {x["app_key_hash"] for x in lines} == {app_key_hash("LOG-KEY")}
    for x in lines:
        assert datetime.fromisoformat(x["exchange_time"]).utcoffset() == timedelta(hours=9)
        assert "fault" not in x


def test_no_key_or_secret_reaches_the_file_and_each_session_gets_its_own_lines(kis_sim):
    keys = {"RAW-APP-KEY-AAAA": "RAW-SECRET-AAAA", "RAW-APP-KEY-BBBB": "RAW-SECRET-BBBB"}
    sockets = []
    approvals = []
    for key, secret in keys.items():
        approval = kis_sim.accounts.issue_approval(key, secret)
        approvals.append(approval)
        ws = connect(kis_sim.ws_url)
        assert send_and_ack(ws, approval, "H0STCNT0", "005930")["body"]["msg_cd"] == "OPSP0000"
        sockets.append(ws)
    for ws in sockets:
        recv_until(ws, is_trade_frame)
    kis_sim.stop()
    text = kis_sim.config.sent_log.read_text(encoding="utf-8")
    for secret_text in [*keys, *keys.values(), *approvals]:
        assert secret_text not in text
    hashes = {json.loads(line)["app_key_hash"] for line in text.splitlines()}
    assert hashes == {app_key_hash(key) for key in keys}
    for ws in sockets:
        ws.close()


def test_lines_are_flushed_while_the_simulator_runs(kis_sim):
    approval = kis_sim.accounts.issue_approval("FLUSH-KEY", "FLUSH-SECRET")
    ws = connect(kis_sim.ws_url)
    _subscribe(ws, approval)
    recv_until(ws, is_trade_frame)
    deadline = time.monotonic() + 5
    while not _lines(kis_sim):
        assert time.monotonic() < deadline, "nothing flushed to the sent-log while running"
        time.sleep(0.1)
    raw = kis_sim.config.sent_log.read_text(encoding="utf-8")
    assert raw.endswith("\n")  # whole lines only
    ws.close()


def test_records_of_garbled_frames_are_logged_with_the_fault(kis_sim):
    approval = kis_sim.accounts.issue_approval("FAULT-KEY", "FAULT-SECRET")
    ws = connect(kis_sim.ws_url)
    _subscribe(ws, approval)
    recv_until(ws, is_trade_frame)
    kis_sim.faults.malformed_frames(2)
    frames = [recv_until(ws, is_trade_frame) for _ in range(6)]
    frames += _drain_until_unsubscribed(ws, approval)
    ws.close()
    kis_sim.stop()

    unreadable = [f for f in frames if not f.split("|")[2].isdigit()]
    assert len(unreadable) == 2
    faulted = [x for x in _lines(kis_sim) if x.get("fault") == "malformed"]
    payloads = [f.split("|", 3)[3].split("^") for f in unreadable]
    # a garbled frame carries one extra junk field after its first column
    assert len(faulted) == sum((len(fields) - 1) // 46 for fields in payloads)
    assert {x["symbol"] for x in faulted} == {fields[0] for fields in payloads}
