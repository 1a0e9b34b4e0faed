"""PINGPONG echo enforcement (`require_pong_echo`): a session that never echoes is closed, others live on."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest
import websocket

from tests.kis_sim.ws_helpers import connect, is_trade_frame, recv_until, send_and_ack
from tools.kis_sim.cli import build_parser, config_from_args
from tools.kis_sim.server import KisSimulator, SimConfig

PONG_TIMEOUT = 0.6


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(
        kis_sim_config, pingpong_interval=0.2, require_pong_echo=True, pong_timeout=PONG_TIMEOUT
    )


@pytest.fixture
def approval(kis_sim: KisSimulator) -> str:
    return kis_sim.accounts.issue_approval("APPKEY-PONG", "SECRET-PONG")


def wait_for_close(ws: websocket.WebSocket, timeout: float) -> int:
    """Read until the server closes; the close status, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            opcode, frame = ws.recv_data_frame(control_frame=True)
        except websocket.WebSocketTimeoutException:
            break
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return int.from_bytes(frame.data[:2], "big")
    raise AssertionError(f"the session was not closed within {timeout} s")


def test_a_session_that_never_echoes_is_closed_and_its_key_is_free_again(
    kis_sim: KisSimulator, approval: str
) -> None:
    ws = connect(kis_sim.ws_url)
    send_and_ack(ws, approval, "H0STCNT0", "005930")
    assert wait_for_close(ws, timeout=5.0) == 1008
    ws.shutdown()  # the close handshake is done; close() would return early and leave the socket open
    again = connect(kis_sim.ws_url)
    try:
        assert send_and_ack(again, approval, "H0STCNT0", "005930")["body"]["msg_cd"] == "OPSP0000"
    finally:
        again.close()


def test_a_session_that_echoes_every_pingpong_stays_open(kis_sim: KisSimulator, approval: str) -> None:
    ws = connect(kis_sim.ws_url)
    try:
        send_and_ack(ws, approval, "H0STCNT0", "005930")
        echoed = 0
        end = time.monotonic() + 4 * PONG_TIMEOUT
        while time.monotonic() < end:
            pong = recv_until(ws, lambda m: '"PINGPONG"' in m, timeout=2.0)
            ws.send(pong)
            echoed += 1
        assert echoed >= 6
        assert is_trade_frame(recv_until(ws, is_trade_frame, timeout=2.0))
        assert kis_sim.ws.session_count() == 1
    finally:
        ws.close()


def test_a_session_answering_with_pong_frames_carrying_the_pingpong_stays_open(
    kis_sim: KisSimulator, approval: str
) -> None:
    """KIS's own sample answers PINGPONG with `ws.pong(raw)`, a pong control frame, not a text echo."""
    ws = connect(kis_sim.ws_url)
    try:
        send_and_ack(ws, approval, "H0STCNT0", "005930")
        answered = 0
        end = time.monotonic() + 4 * PONG_TIMEOUT
        while time.monotonic() < end:
            ws.pong(recv_until(ws, lambda m: '"PINGPONG"' in m, timeout=2.0))
            answered += 1
        assert answered >= 6
        assert is_trade_frame(recv_until(ws, is_trade_frame, timeout=2.0))
        assert kis_sim.ws.session_count() == 1
    finally:
        ws.close()


def test_a_pong_frame_without_the_pingpong_is_no_answer(kis_sim: KisSimulator, approval: str) -> None:
    ws = connect(kis_sim.ws_url)
    send_and_ack(ws, approval, "H0STCNT0", "005930")
    end = time.monotonic() + 2 * PONG_TIMEOUT
    while time.monotonic() < end:
        ws.pong("keepalive")
        time.sleep(0.05)
    assert wait_for_close(ws, timeout=5.0) == 1008
    ws.shutdown()


def test_echo_is_not_required_by_default(kis_sim_config: SimConfig) -> None:
    config = dataclasses.replace(kis_sim_config, require_pong_echo=False)
    with KisSimulator(config) as sim:
        approval = sim.accounts.issue_approval("APPKEY-PONG", "SECRET-PONG")
        ws = connect(sim.ws_url)
        try:
            send_and_ack(ws, approval, "H0STCNT0", "005930")
            unanswered = [recv_until(ws, lambda m: '"PINGPONG"' in m, timeout=2.0) for _ in range(5)]
            assert all(json.loads(m)["header"]["tr_id"] == "PINGPONG" for m in unanswered)
            assert is_trade_frame(recv_until(ws, is_trade_frame, timeout=2.0))  # still served after > 0.6 s
        finally:
            ws.close()


def test_cli_flags_switch_enforcement_on() -> None:
    parser = build_parser()
    assert config_from_args(parser.parse_args([])).require_pong_echo is False
    config = config_from_args(parser.parse_args(["--require-pong", "--pong-timeout", "30"]))
    assert (config.require_pong_echo, config.pong_timeout) == (True, 30.0)
    with pytest.raises(ValueError, match="pong_timeout must be > 0"):
        KisSimulator(dataclasses.replace(SimConfig(n_symbols=5), pong_timeout=0)).start()
