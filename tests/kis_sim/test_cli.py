"""`python -m tools.kis_sim` as a user runs it: READY line, real REST + WebSocket service, clean signals."""

from __future__ import annotations

import json
import re
import selectors
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from kis.protocol import APPROVAL_PATH, INQUIRE_PRICE_PATH, TOKEN_PATH
from tests.kis_sim.ws_helpers import connect, is_trade_frame, recv_until, send_and_ack, trade_records

REPO = Path(__file__).resolve().parents[2]
READY = re.compile(r"^READY rest=(http://127\.0\.0\.1:(\d+)) ws=(ws://127\.0\.0\.1:(\d+))$")
FLAGS = (
    "--host", "--rest-port", "--ws-port", "--seed", "--date", "--start", "--speed", "--wall-clock",
    "--scenario", "--sent-log", "--n-symbols", "--trade-rate", "--pingpong-interval", "--require-pong",
    "--pong-timeout", "--faults",
)


def _run(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tools.kis_sim", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _read_line(process: subprocess.Popen[str], timeout: float = 20.0) -> str:
    selector = selectors.DefaultSelector()
    selector.register(process.stdout, selectors.EVENT_READ)
    assert selector.select(timeout), "no line on stdout in time"
    return process.stdout.readline().rstrip("\n")


@pytest.fixture
def simulator(tmp_path):
    process = _run(
        "--rest-port", "0", "--ws-port", "0", "--n-symbols", "100", "--date", "20240304", "--start", "10:00",
        "--speed", "5", "--pingpong-interval", "0.5", "--sent-log", str(tmp_path / "sent.jsonl"),
    )
    yield process
    if process.poll() is None:
        process.kill()
        process.wait(10)


def test_ready_line_then_real_service_then_sigterm_exits_0(simulator, tmp_path):
    line = _read_line(simulator)
    match = READY.match(line)
    assert match, line
    rest_url, rest_port, ws_url, ws_port = match.groups()
    assert int(rest_port) > 0 and int(ws_port) > 0 and rest_port != ws_port

    answer = requests.post(
        rest_url + APPROVAL_PATH,
        json={"grant_type": "client_credentials", "appkey": "CLI-KEY", "secretkey": "CLI-SECRET"},
        timeout=5,
    )
    approval = answer.json()["approval_key"]
    ws = connect(ws_url)
    assert send_and_ack(ws, approval, "H0STCNT0", "005930")["body"]["msg_cd"] == "OPSP0000"
    records = trade_records(recv_until(ws, is_trade_frame, timeout=10))
    assert records[0]["MKSC_SHRN_ISCD"] == "005930" and records[0]["BSOP_DATE"] == "20240304"

    simulator.send_signal(signal.SIGTERM)
    assert simulator.wait(15) == 0
    rest_of_stdout = simulator.stdout.read()
    assert rest_of_stdout == ""  # exactly one line in all
    ws.close()
    sent = (tmp_path / "sent.jsonl").read_text().splitlines()
    assert sent and all(json.loads(line)["symbol"] == "005930" for line in sent)


def test_sigint_stops_cleanly_with_exit_0(simulator):
    assert READY.match(_read_line(simulator))
    simulator.send_signal(signal.SIGINT)
    assert simulator.wait(15) == 0
    assert "Traceback" not in simulator.stderr.read()


def test_faults_flag_arms_faults_at_start():
    process = _run("--n-symbols", "50", "--date", "20240304", "--faults", "refuse=30,html=1,empty=1")
    try:
        rest_url, _, ws_url, _ = READY.match(_read_line(process)).groups()
        with pytest.raises(Exception, match="503"):
            connect(ws_url)
        credentials = {"appkey": "CLI-KEY", "appsecret": "CLI-SECRET"}
        token = requests.post(
            rest_url + TOKEN_PATH, json={"grant_type": "client_credentials", **credentials}, timeout=5
        ).json()["access_token"]
        headers = {"authorization": f"Bearer {token}", **credentials, "tr_id": "FHKST01010100"}
        params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
        answers = [requests.get(rest_url + INQUIRE_PRICE_PATH, headers=headers, params=params, timeout=5)
                   for _ in range(3)]  # fmt: skip
        assert [(a.status_code, a.text[:6]) for a in answers[:2]] == [(502, "<html>"), (200, "")]
        assert answers[2].json()["rt_cd"] == "0"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0


def test_help_documents_every_flag_and_the_faults_syntax():
    result = subprocess.run(
        [sys.executable, "-m", "tools.kis_sim", "--help"],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0
    for flag in FLAGS:
        assert flag in result.stdout, flag
    for item in ("drop_every=S", "refuse=S", "malformed=N", "truncated=N", "silence=S", "html=N", "empty=N",
                 "READY"):
        assert item in result.stdout, item


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--faults", "drop_every=soon"), "drop_every"),
        (("--faults", "explode"), "unknown fault item"),
        (("--faults", "html=two"), "fault html: 'two' is not a whole number"),
        (("--faults", "empty"), "unknown fault item"),
        (("--date", "2024-03-04"), "YYYYMMDD"),
        (("--start", "9h"), "HH:MM"),
        (("--ws-port", "70000"), "port"),
    ],
)
def test_bad_flags_exit_2_with_one_clear_line(args, expected):
    result = subprocess.run(
        [sys.executable, "-m", "tools.kis_sim", *args], cwd=REPO, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_scenario_file_is_one_line_not_a_traceback(tmp_path):
    scenario = tmp_path / "scenario.json"
    scenario.write_text("{not json")
    result = subprocess.run(
        [sys.executable, "-m", "tools.kis_sim", "--n-symbols", "50", "--scenario", str(scenario)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("kis_sim: error:") and len(result.stderr.strip().splitlines()) == 1
