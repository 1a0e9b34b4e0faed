"""The conformance script against the simulator, and the KIS-sample-style client it reads answers with."""

from __future__ import annotations

import json

import pytest
import requests

from tests.stub_kis import StubKis
from tools.kis_sim import conformance
from tools.kis_sim.conformance import SampleStyleAnswer, SampleStyleClient, check_server
from tools.kis_sim.server import KisSimulator


def test_the_simulator_passes_every_conformance_check(kis_sim: KisSimulator) -> None:
    results = check_server(kis_sim.rest_url, kis_sim.ws_url, "CONFORMANCE-KEY", "CONFORMANCE-SECRET")
    assert [result.check for result in results if not result.passed] == [], results
    assert len(results) == 10


def test_a_client_in_the_style_of_kis_sample_reads_the_simulators_headers(kis_sim: KisSimulator) -> None:
    client = SampleStyleClient(kis_sim.rest_url, "SAMPLE-KEY", "SAMPLE-SECRET")
    try:
        client.authorize()
        params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
        answer = client.get("/uapi/domestic-stock/v1/quotations/inquire-price", "FHKST01010100", params)
        refused = client.get("/uapi/domestic-stock/v1/quotations/inquire-price", "FHKST01010100", {})
    finally:
        client.close()
    assert answer.ok() and answer.body.output["stck_shrn_iscd"] == "005930"
    assert (answer.header.tr_id, answer.header.tr_cont) == ("FHKST01010100", "")
    assert len(answer.header.gt_uid) == 32 and answer.header.gt_uid != refused.header.gt_uid
    assert "Content-Type" in answer.raw_header_names and "content-type" not in answer.raw_header_names
    assert (refused.status, refused.body.rt_cd, refused.header.tr_id) == (200, "2", "FHKST01010100")


def test_kis_sample_style_reading_fails_on_an_all_lower_case_content_type() -> None:
    """What happened to KIS's sample against the simulator before: `content-type` is no field name."""
    body = json.dumps({"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "ok", "output": {}}).encode()
    stub = StubKis(lambda *_: (200, "application/json; charset=utf-8", body, {"tr_cont": ""}))
    try:
        response = requests.get(f"{stub.url}/uapi/x", timeout=10)
        with pytest.raises(ValueError, match="content-type"):
            SampleStyleAnswer(response)
    finally:
        stub.close()


def test_the_script_checks_its_own_simulator_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert conformance.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "10 of 10 checks passed"
    assert all(line.startswith("ok    ") for line in lines[:-1])


def test_the_script_wants_both_urls_or_neither() -> None:
    with pytest.raises(SystemExit):
        conformance.main(["--rest-url", "http://127.0.0.1:1"])
