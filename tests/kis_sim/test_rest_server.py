"""The simulator's REST server over real loopback HTTP: every endpoint and every gateway rule."""

from __future__ import annotations

import io
import socket
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from time import monotonic, sleep
from typing import Any

import pytest
import requests
from loguru import logger

from kis import protocol
from runtime.clock import KST, SimulatedClock
from tools.kis_sim.accounts import Accounts
from tools.kis_sim.conformance import (
    DAILY_BARS_OUTPUT1,
    DAILY_PRICE_FIELDS,
    INQUIRE_PRICE_FIELDS,
    SEARCH_INFO_FIELDS,
)
from tools.kis_sim.faults import FAULTS_PATH, Faults
from tools.kis_sim.listings import tick_size
from tools.kis_sim.market import Market
from tools.kis_sim.rest import DAILY_PRICE_PATH, SEARCH_INFO_PATH, RestServer

DAY = date(2026, 3, 10)
OPEN_TIME = datetime(2026, 3, 10, 10, 0, tzinfo=KST)
KOSPI_WIDTHS = [
    2,
    1,
    4,
    4,
    4,
    *[1] * 26,
    9,
    5,
    5,
    1,
    1,
    1,
    2,
    1,
    1,
    1,
    2,
    2,
    2,
    3,
    1,
    3,
    12,
    12,
    8,
    15,
    21,
    2,
    7,
    1,
    1,
    1,
    1,
    1,
    9,
    9,
    9,
    5,
    9,
    8,
    9,
    3,
    1,
    1,
    1,
]
KOSDAQ_WIDTHS = [
    2,
    1,
    4,
    4,
    4,
    *[1] * 21,
    9,
    5,
    5,
    1,
    1,
    1,
    2,
    1,
    1,
    1,
    2,
    2,
    2,
    3,
    1,
    3,
    12,
    12,
    8,
    15,
    21,
    2,
    7,
    1,
    1,
    1,
    1,
    9,
    9,
    9,
    5,
    9,
    8,
    9,
    3,
    1,
    1,
    1,
]


class FakeMonotonic:
    """A monotonic clock the test moves by hand, so rate limits are checked without timing."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    url: str
    market: Market
    accounts: Accounts
    faults: Faults
    clock: SimulatedClock
    ticks: FakeMonotonic
    sleeps: list[float]
    server: RestServer
    session: requests.Session

    def token(self, key: str = "key-1", secret: str = "secret-1") -> requests.Response:
        body = {"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
        return self.session.post(f"{self.url}{protocol.TOKEN_PATH}", json=body, timeout=10)

    def headers(self, tr_id: str, key: str = "key-1", secret: str = "secret-1") -> dict[str, str]:
        response = self.token(key, secret)
        assert response.status_code == 200, response.text
        return {
            "content-type": "application/json; charset=utf-8",
            "authorization": f"Bearer {response.json()['access_token']}",
            "appkey": key,
            "appsecret": secret,
            "tr_id": tr_id,
            "custtype": "P",
        }

    def get(self, path: str, headers: dict[str, str], params: dict[str, str]) -> requests.Response:
        self.ticks.now += 1.0  # a fresh rate-limit second for every call unless a test says otherwise
        return self.session.get(f"{self.url}{path}", headers=headers, params=params, timeout=30)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=5, trading_date=DAY, n_symbols=120)


@pytest.fixture
def sim(market: Market) -> Iterator[Sim]:
    ticks = FakeMonotonic()
    clock = SimulatedClock(OPEN_TIME, speed=0)
    faults = Faults(monotonic=ticks)
    accounts = Accounts(market, faults, clock, seed=5, monotonic=ticks)
    sleeps: list[float] = []
    server = RestServer(market, accounts, faults, clock, port=0, sleep=sleeps.append).start()
    session = requests.Session()
    try:
        yield Sim(server.url, market, accounts, faults, clock, ticks, sleeps, server, session)
    finally:
        session.close()
        server.stop()


def price_params(code: str = "005930") -> dict[str, str]:
    return {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": code}


def minute_params(code: str, hour: str) -> dict[str, str]:
    return {
        **price_params(code),
        "FID_INPUT_HOUR_1": hour,
        "FID_PW_DATA_INCU_YN": "Y",
        "FID_ETC_CLS_CODE": "",
    }


def balance_params(**overrides: str) -> dict[str, str]:
    params = {
        "CANO": "12345678",
        "ACNT_PRDT_CD": "01",
        "AFHR_FLPR_YN": "N",
        "OFL_YN": "",
        "INQR_DVSN": "01",
        "UNPR_DVSN": "01",
        "FUND_STTL_ICLD_YN": "N",
        "FNCG_AMT_AUTO_RDPT_YN": "N",
        "PRCS_DVSN": "00",
        "CTX_AREA_FK100": "",
        "CTX_AREA_NK100": "",
    }
    return {**params, **overrides}


def rank_params(**overrides: str) -> dict[str, str]:
    params = {
        "FID_COND_MRKT_DIV_CODE": "J",
        "FID_COND_SCR_DIV_CODE": "20171",
        "FID_INPUT_ISCD": "0000",
        "FID_DIV_CLS_CODE": "0",
        "FID_BLNG_CLS_CODE": "0",
        "FID_TRGT_CLS_CODE": "111111111",
        "FID_TRGT_EXLS_CLS_CODE": "0000000000",
        "FID_INPUT_PRICE_1": "",
        "FID_INPUT_PRICE_2": "",
        "FID_VOL_CNT": "",
        "FID_INPUT_DATE_1": "",
    }
    return {**params, **overrides}


def assert_error(response: requests.Response, status: int, code: str, rt_cd: str = "1") -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["rt_cd"], body["msg_cd"]) == (rt_cd, code), body
    assert body["msg1"]
    return body


# ---- tokens and approval keys ----------------------------------------------------------------------------


def test_token_issue_reuse_minute_limit_and_expiry(sim: Sim) -> None:
    first = sim.token()
    assert first.status_code == 200
    body = first.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 86_400
    assert body["access_token_token_expired"] == "2026-03-11 10:00:00"
    assert len(body["access_token"]) > 300

    too_soon = sim.token()
    assert too_soon.status_code == 403
    assert too_soon.json() == {
        "error_description": "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)",
        "error_code": "EGW00133",
    }

    sim.clock.advance(61)
    again = sim.token().json()
    assert again["access_token"] == body["access_token"]
    assert again["access_token_token_expired"] == body["access_token_token_expired"]
    assert again["expires_in"] == 86_400 - 61

    sim.clock.advance(7 * 3600)
    renewed = sim.token().json()["access_token"]
    assert renewed != body["access_token"]

    headers = {"appkey": "key-1", "appsecret": "secret-1", "tr_id": "FHKST01010100", "custtype": "P"}
    old = sim.get(
        protocol.INQUIRE_PRICE_PATH,
        {**headers, "authorization": f"Bearer {body['access_token']}"},
        price_params(),
    )
    assert old.status_code == 200  # the 6-hour reuse window ended, but the first token lives 24 h

    sim.clock.advance(17 * 3600)
    expired = sim.get(
        protocol.INQUIRE_PRICE_PATH,
        {**headers, "authorization": f"Bearer {body['access_token']}"},
        price_params(),
    )
    assert_error(expired, 500, "EGW00123")
    live = sim.get(
        protocol.INQUIRE_PRICE_PATH, {**headers, "authorization": f"Bearer {renewed}"}, price_params()
    )
    assert live.status_code == 200


def test_each_app_key_has_its_own_issuance_limit(sim: Sim) -> None:
    assert sim.token("key-a", "s").status_code == 200
    assert sim.token("key-b", "s").status_code == 200
    assert sim.token("key-a", "s").status_code == 403


def test_expire_tokens_fault_and_the_next_token_is_new(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.faults.expire_tokens()
    assert_error(sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()), 500, "EGW00123")
    sim.clock.advance(60)
    fresh = sim.token().json()["access_token"]
    assert fresh != headers["authorization"].split()[1]
    ok = sim.get(protocol.INQUIRE_PRICE_PATH, {**headers, "authorization": f"Bearer {fresh}"}, price_params())
    assert ok.status_code == 200 and ok.json()["rt_cd"] == "0"


def test_a_fault_spec_posted_to_the_faults_path_is_armed_even_during_a_rate_limit(sim: Sim) -> None:
    epoch = sim.faults.token_epoch()
    armed = sim.session.post(sim.url + FAULTS_PATH, data=b"rate_limit=5,expire_tokens,refuse=5")
    assert armed.status_code == 200 and armed.json() == {"armed": 3}
    assert sim.faults.rest_rate_limited() and sim.faults.ws_refusing()
    assert sim.faults.token_epoch() == epoch + 1
    again = sim.session.post(sim.url + FAULTS_PATH, data=b"drop")
    assert again.status_code == 200 and again.json() == {"armed": 1}


def test_a_bad_fault_spec_arms_nothing_and_says_why(sim: Sim) -> None:
    refused = sim.session.post(sim.url + FAULTS_PATH, data=b"html=2,boom")
    assert refused.status_code == 400 and "boom" in refused.json()["error"]
    assert not sim.faults.take_html_error()


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"authorization": "Bearer not-a-token"}, 500, "EGW00121"),
        ({"authorization": ""}, 500, "EGW00205"),
        ({"authorization": "Basic abc"}, 500, "EGW00205"),
        ({"appkey": ""}, 500, "EGW00102"),
        ({"appsecret": ""}, 500, "EGW00104"),
        ({"appsecret": "another-secret"}, 500, "EGW00105"),
        ({"tr_id": ""}, 500, "OPSQ0002"),
        ({"tr_id": "FHKST03010100"}, 500, "OPSQ0002"),
        ({"custtype": "X"}, 500, "EGW00208"),
    ],
)
def test_gateway_rejects_bad_headers(sim: Sim, change: dict[str, str], status: int, code: str) -> None:
    headers = {**sim.headers("FHKST01010100"), **change}
    response = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params())
    body = assert_error(response, status, code)
    assert "secret" not in response.text and "another" not in body["msg1"]


def test_a_token_only_works_for_its_own_app_key(sim: Sim) -> None:
    mine = sim.headers("FHKST01010100", key="key-1")
    other = sim.headers("FHKST01010100", key="key-2", secret="secret-2")
    crossed = {**other, "authorization": mine["authorization"]}
    assert_error(sim.get(protocol.INQUIRE_PRICE_PATH, crossed, price_params()), 500, "EGW00121")


def test_revoke_makes_a_token_invalid(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    token = headers["authorization"].split()[1]
    body = {"appkey": "key-1", "appsecret": "secret-1", "token": token}
    revoked = sim.session.post(f"{sim.url}{protocol.REVOKE_PATH}", json=body, timeout=10)
    assert revoked.status_code == 200 and revoked.json()["code"] == 200
    assert_error(sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()), 500, "EGW00121")
    again = sim.session.post(f"{sim.url}{protocol.REVOKE_PATH}", json=body, timeout=10)
    assert again.status_code == 403 and again.json()["error_code"] == "EGW00121"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"appkey": "k", "appsecret": "s"}, "EGW00115"),
        ({"grant_type": "password", "appkey": "k", "appsecret": "s"}, "EGW00116"),
        ({"grant_type": "client_credentials", "appsecret": "s"}, "EGW00102"),
        ({"grant_type": "client_credentials", "appkey": "k"}, "EGW00104"),
        ({"grant_type": "client_credentials", "appkey": " ", "appsecret": "s"}, "EGW00102"),
    ],
)
def test_token_request_validation(sim: Sim, body: dict[str, str], code: str) -> None:
    response = sim.session.post(f"{sim.url}{protocol.TOKEN_PATH}", json=body, timeout=10)
    assert response.status_code == 403
    assert response.json()["error_code"] == code and response.json()["error_description"]


def test_token_request_with_broken_json_is_refused(sim: Sim) -> None:
    response = sim.session.post(f"{sim.url}{protocol.TOKEN_PATH}", data=b"{not json", timeout=10)
    assert response.status_code == 403 and response.json()["error_code"] == "EGW00101"
    wrong_method = sim.session.get(f"{sim.url}{protocol.TOKEN_PATH}", timeout=10)
    assert wrong_method.status_code == 403 and wrong_method.json()["error_code"] == "EGW00101"


def test_approval_key_is_issued_for_secretkey_and_resolvable(sim: Sim) -> None:
    body = {"grant_type": "client_credentials", "appkey": "ws-key", "secretkey": "ws-secret"}
    response = sim.session.post(f"{sim.url}{protocol.APPROVAL_PATH}", json=body, timeout=10)
    assert response.status_code == 200
    approval = response.json()["approval_key"]
    assert len(approval) == 36
    assert sim.accounts.app_key_for_approval(approval) == "ws-key"
    assert sim.accounts.app_key_for_approval("0" * 36) is None
    wrong_field = {"grant_type": "client_credentials", "appkey": "ws-key", "appsecret": "ws-secret"}
    refused = sim.session.post(f"{sim.url}{protocol.APPROVAL_PATH}", json=wrong_field, timeout=10)
    assert refused.status_code == 403 and refused.json()["error_code"] == "EGW00104"
    sim.clock.advance(24 * 3600)
    assert sim.accounts.app_key_for_approval(approval) is None


# ---- rate limits and faults ------------------------------------------------------------------------------


def test_real_key_gets_twenty_calls_a_second(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.ticks.now += 5
    answers = []
    for _ in range(21):
        sim.ticks.now += 0.01
        answers.append(
            sim.session.get(
                f"{sim.url}{protocol.INQUIRE_PRICE_PATH}", headers=headers, params=price_params(), timeout=10
            )
        )
    assert [a.status_code for a in answers[:20]] == [200] * 20
    assert answers[20].status_code == 500
    assert answers[20].json() == {
        "rt_cd": "1",
        "msg_cd": "EGW00201",
        "msg1": "초당 거래건수를 초과하였습니다.",
    }
    sim.ticks.now += 1.0
    assert (
        sim.session.get(
            f"{sim.url}{protocol.INQUIRE_PRICE_PATH}", headers=headers, params=price_params(), timeout=10
        ).status_code
        == 200
    )


def test_paper_key_gets_two_calls_a_second_and_keys_are_counted_apart(sim: Sim) -> None:
    sim.accounts.register("paper-key", paper=True)
    paper = sim.headers("FHKST01010100", key="paper-key", secret="p")
    real = sim.headers("FHKST01010100", key="real-key", secret="r")
    sim.ticks.now += 5
    url = f"{sim.url}{protocol.INQUIRE_PRICE_PATH}"
    codes = [
        sim.session.get(url, headers=paper, params=price_params(), timeout=10).status_code for _ in range(3)
    ]
    assert codes == [200, 200, 500]
    assert sim.session.get(url, headers=real, params=price_params(), timeout=10).status_code == 200


def test_rate_limit_burst_fault_answers_every_call_with_egw00201(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.faults.rate_limit_burst(5.0)
    assert_error(sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()), 500, "EGW00201")
    sim.clock.advance(120)
    assert_error(sim.token(), 500, "EGW00201")
    sim.ticks.now += 5.0
    assert sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()).status_code == 200


def test_slow_rest_fault_delays_answers_for_its_window(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.faults.slow_rest(0.25, 3.0)
    assert sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()).status_code == 200
    assert sim.sleeps == [0.25]
    sim.ticks.now += 3.0
    sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params())
    assert sim.sleeps == [0.25]


def test_html_error_and_empty_body_faults_answer_the_next_uapi_calls_only(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.faults.html_errors(2)
    sim.faults.empty_bodies(1)
    assert sim.session.post(f"{sim.url}{protocol.APPROVAL_PATH}", timeout=10, json={
        "grant_type": "client_credentials", "appkey": "key-1", "secretkey": "secret-1",
    }).status_code == 200  # fmt: skip
    assert sim.session.get(f"{sim.url}/master/kospi_code.mst.zip", timeout=10).status_code == 200
    answers = [sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()) for _ in range(4)]
    assert [(a.status_code, a.headers["content-type"]) for a in answers[:3]] == [
        (502, "text/html"), (502, "text/html"), (200, "application/json; charset=UTF-8"),
    ]  # fmt: skip
    assert b"<title>502 Bad Gateway</title>" in answers[0].content
    assert answers[2].content == b"" and answers[2].headers["content-length"] == "0"
    assert answers[3].status_code == 200 and answers[3].json()["rt_cd"] == "0"
    _counts, errors = sim.server.app.counts()
    assert errors["html_error_page"] == 2 and errors["empty_body"] == 1


def test_a_client_leaving_during_a_slow_answer_is_one_log_line_not_a_traceback(
    market: Market, capfd: pytest.CaptureFixture[str]
) -> None:
    clock = SimulatedClock(OPEN_TIME, speed=0)
    faults = Faults()
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="INFO")
    try:
        with RestServer(market, Accounts(market, faults, clock), faults, clock) as server:
            faults.slow_rest(0.3, 30.0)
            for _ in range(3):  # a client that times out and gives up before the answer is written
                with socket.create_connection(("127.0.0.1", server.port), timeout=5) as client:
                    request = f"GET {protocol.INQUIRE_PRICE_PATH} HTTP/1.1\r\nHost: sim\r\n\r\n"
                    client.sendall(request.encode())
                    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST
            deadline = monotonic() + 5
            while len([line for line in lines if "client left" in line]) < 3 and monotonic() < deadline:
                sleep(0.05)
            faults.clear()
            assert requests.get(f"{server.url}/master/kospi_code.mst.zip", timeout=5).status_code == 200
    finally:
        logger.remove(sink)
    left = [line for line in lines if "client left" in line]
    assert len(left) == 3
    assert all(protocol.INQUIRE_PRICE_PATH in line and "\n" not in line.rstrip("\n") for line in left)
    assert "Traceback" not in capfd.readouterr().err


def test_an_internal_error_is_one_log_line_without_headers_or_body(
    market: Market, capfd: pytest.CaptureFixture[str]
) -> None:
    secret = "secret-internal-error-7f3a"

    def failing_sleep(_seconds: float) -> None:
        raise RuntimeError(f"sleep broke while holding {secret}")

    clock = SimulatedClock(OPEN_TIME, speed=0)
    faults = Faults()
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="DEBUG")
    try:
        accounts = Accounts(market, faults, clock)
        with RestServer(market, accounts, faults, clock, sleep=failing_sleep) as server:
            faults.slow_rest(0.1, 30.0)  # every answer first sleeps: the failing sleep is the internal error
            headers = {"appkey": "key-1", "appsecret": secret, "authorization": f"Bearer {secret}",
                       "tr_id": "FHKST01010100", "custtype": "P"}
            params = {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "005930"}
            quote = requests.get(f"{server.url}{protocol.INQUIRE_PRICE_PATH}", headers=headers, params=params,
                                 timeout=5)
            body = {"grant_type": "client_credentials", "appkey": "key-1", "appsecret": secret}
            token = requests.post(f"{server.url}{protocol.TOKEN_PATH}", json=body, timeout=5)
            _counts, errors = server.app.counts()
    finally:
        logger.remove(sink)
    for answer in (quote, token):
        assert answer.status_code == 500 and answer.json()["msg_cd"] == "EGW00002"
        assert secret not in answer.text
    assert errors["EGW00002"] == 2
    failures = [line for line in lines if "internal error" in line]
    assert [line.rstrip("\n") for line in failures] == [
        f"KIS simulator REST: internal error RuntimeError on GET {protocol.INQUIRE_PRICE_PATH}",
        f"KIS simulator REST: internal error RuntimeError on POST {protocol.TOKEN_PATH}",
    ]
    assert not any(secret in line for line in lines)
    assert secret not in capfd.readouterr().err


# ---- quotations ------------------------------------------------------------------------------------------
# ---- quotations ------------------------------------------------------------------------------------------


def test_inquire_price_matches_the_market(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.clock.set(datetime(2026, 3, 10, 11, 23, 45, tzinfo=KST))
    response = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params())
    assert response.status_code == 200
    body = response.json()
    assert (body["rt_cd"], body["msg_cd"]) == ("0", "MCA00000")
    output = body["output"]
    quote = sim.market.quote("005930", sim.clock.now())
    listing = sim.market.listings["005930"]
    assert output["stck_prpr"] == str(quote.price)
    assert output["acml_vol"] == str(quote.volume) and output["acml_tr_pbmn"] == str(quote.value)
    assert (output["stck_oprc"], output["stck_hgpr"], output["stck_lwpr"]) == (
        str(quote.open),
        str(quote.high),
        str(quote.low),
    )
    assert output["stck_sdpr"] == str(listing.prev_close)
    assert output["prdy_vrss"] == str(quote.price - listing.prev_close)
    expected_sign = (
        "2" if quote.price > listing.prev_close else "5" if quote.price < listing.prev_close else "3"
    )
    assert output["prdy_vrss_sign"] == expected_sign
    assert output["prdy_ctrt"] == f"{(quote.price - listing.prev_close) / listing.prev_close * 100:.2f}"
    assert output["lstn_stcn"] == str(listing.listed_shares)
    assert output["temp_stop_yn"] == "N"
    assert int(output["hts_avls"]) == quote.price * listing.listed_shares // 100_000_000
    assert int(output["stck_llam"]) < quote.price < int(output["stck_mxpr"])


def test_inquire_price_carries_every_documented_field_consistent_with_the_market(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    sim.clock.set(datetime(2026, 3, 10, 11, 23, 45, tzinfo=KST))
    for code, listing in list(sim.market.listings.items())[:40]:
        output = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params(code)).json()["output"]
        assert set(INQUIRE_PRICE_FIELDS) <= output.keys() and len(INQUIRE_PRICE_FIELDS) == 82
        price = int(output["stck_prpr"])
        assert output["aspr_unit"] == str(tick_size(price))  # 호가단위, not ask1 - bid1
        assert output["stck_shrn_iscd"] == code
        assert int(output["w52_lwpr"]) <= price <= int(output["w52_hgpr"])
        assert int(output["stck_dryy_lwpr"]) <= price <= int(output["stck_dryy_hgpr"])
        assert output["w52_hgpr_date"] <= "20260310" and len(output["w52_lwpr_date"]) == 8
        assert int(output["cpfn"]) == int(output["stck_fcam"]) * listing.listed_shares // 100_000_000
        eps, bps = float(output["eps"]), float(output["bps"])
        assert output["per"] == (f"{price / eps:.2f}" if eps > 0 else "0.00")
        assert output["pbr"] == f"{price / bps:.2f}" and bps > 0
        foreign = int(output["frgn_hldn_qty"])
        assert 0 < foreign < listing.listed_shares
        assert output["hts_frgn_ehrt"] == f"{foreign / listing.listed_shares * 100:.2f}"
        support, pivot, resistance = (
            int(output[name]) for name in ("pvt_frst_dmsp_prc", "pvt_pont_val", "pvt_frst_dmrs_prc")
        )
        assert support <= pivot <= resistance


def test_nextrade_and_unified_market_codes_answer_each_venues_quote(sim: Sim) -> None:
    """J is KRX's quote, NX Nextrade's, UN both venues' (volumes added up), as KIS answers them."""
    headers = sim.headers("FHKST01010100")
    code = min(sim.market.nxt_listed)
    answers = {
        market: sim.get(
            protocol.INQUIRE_PRICE_PATH, headers, {**price_params(code), "FID_COND_MRKT_DIV_CODE": market}
        ).json()["output"]
        for market in ("J", "NX", "UN")
    }
    now = sim.clock.now()
    for market, output in answers.items():
        expected = sim.market.venue_quote(code, now, market)
        answered = (output["stck_prpr"], output["acml_vol"])
        assert answered == (str(expected.price), str(expected.volume)), market
    assert int(answers["UN"]["acml_vol"]) > int(answers["J"]["acml_vol"])  # Nextrade's trades added
    rank_headers = {**headers, "tr_id": "FHPST01710000"}
    ranked = sim.get(protocol.VOLUME_RANK_PATH, rank_headers, rank_params(FID_COND_MRKT_DIV_CODE="UN"))
    assert ranked.json()["rt_cd"] == "0"


def test_uapi_answers_carry_kis_headers_in_kis_case(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    answered = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params())
    refused = sim.get(protocol.INQUIRE_PRICE_PATH, headers, {})
    for response in (answered, refused):
        names = list(response.headers.keys())
        assert "Content-Type" in names and "Content-Length" in names
        assert not [name for name in names if name.islower() and not name.isidentifier()]
        assert response.headers["Content-Type"] == "application/json; charset=UTF-8"
        assert response.headers["tr_id"] == "FHKST01010100" and "tr_cont" in names
    assert answered.headers["gt_uid"] != refused.headers["gt_uid"]
    token = sim.token()
    assert "Content-Type" in list(token.headers) and "tr_id" not in token.headers


def test_inquire_price_flags_halted_symbols_and_shows_prev_close_before_open(sim: Sim) -> None:
    headers = sim.headers("FHKST01010100")
    halted = next(code for code, listing in sim.market.listings.items() if listing.halted)
    output = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params(halted)).json()["output"]
    assert (
        output["temp_stop_yn"] == "Y" and output["iscd_stat_cls_code"] == "58" and output["acml_vol"] == "0"
    )
    sim.clock.set(datetime(2026, 3, 10, 8, 40, tzinfo=KST))
    early = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()).json()["output"]
    assert early["stck_prpr"] == str(sim.market.listings["005930"].prev_close)
    assert early["acml_vol"] == "0" and early["prdy_vrss_sign"] == "3"


@pytest.mark.parametrize(
    ("params", "rt_cd", "code", "fragment"),
    [
        ({"FID_COND_MRKT_DIV_CODE": "J"}, "2", "OPSQ2001", "FID_INPUT_ISCD"),
        ({"FID_INPUT_ISCD": "005930"}, "2", "OPSQ2001", "FID_COND_MRKT_DIV_CODE"),
        ({"FID_COND_MRKT_DIV_CODE": "Q", "FID_INPUT_ISCD": "005930"}, "2", "OPSQ2001", "MRKT_DIV_CODE"),
        ({"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "5930"}, "2", "OPSQ2002", "FIELD_LENGTH"),
        (
            {"FID_COND_MRKT_DIV_CODE": "J", "FID_INPUT_ISCD": "999990"},
            "7",
            "KIOK0560",
            "조회할 자료가 없습니다",
        ),
    ],
)
def test_inquire_price_parameter_errors_are_business_errors(
    sim: Sim, params: dict[str, str], rt_cd: str, code: str, fragment: str
) -> None:
    response = sim.get(protocol.INQUIRE_PRICE_PATH, sim.headers("FHKST01010100"), params)
    body = assert_error(response, 200, code, rt_cd)
    assert fragment in body["msg1"]


def test_multi_price_answers_up_to_thirty_symbols_in_order(sim: Sim) -> None:
    headers = sim.headers("FHKST11300006")
    codes = list(sim.market.listings)[:30]
    params = {}
    for index, code in enumerate(codes, start=1):
        params[f"FID_COND_MRKT_DIV_CODE_{index}"] = "J"
        params[f"FID_INPUT_ISCD_{index}"] = code
    body = sim.get(protocol.MULTI_PRICE_PATH, headers, params).json()
    assert body["rt_cd"] == "0"
    rows = body["output"]
    assert [row["inter_shrn_iscd"] for row in rows] == codes
    now = sim.clock.now()
    for row in rows:
        quote = sim.market.quote(row["inter_shrn_iscd"], now)
        listing = sim.market.listings[row["inter_shrn_iscd"]]
        assert row["inter_kor_isnm"] == listing.name
        assert (row["inter2_prpr"], row["acml_vol"], row["inter2_prdy_clpr"]) == (
            str(quote.price),
            str(quote.volume),
            str(listing.prev_close),
        )
        assert (row["inter2_askp"], row["inter2_bidp"]) == (str(quote.ask1), str(quote.bid1))
    too_many = {**params, "FID_COND_MRKT_DIV_CODE_31": "J", "FID_INPUT_ISCD_31": codes[0]}
    assert_error(sim.get(protocol.MULTI_PRICE_PATH, headers, too_many), 200, "OPSQ2002", "2")
    assert_error(sim.get(protocol.MULTI_PRICE_PATH, headers, {}), 200, "OPSQ2001", "2")


def test_multi_price_and_volume_rank_are_real_account_only(sim: Sim) -> None:
    sim.accounts.register("paper", paper=True)
    multi = sim.headers("FHKST11300006", key="paper", secret="p")
    params = {"FID_COND_MRKT_DIV_CODE_1": "J", "FID_INPUT_ISCD_1": "005930"}
    assert_error(sim.get(protocol.MULTI_PRICE_PATH, multi, params), 200, "OPSQ0002")
    rank = {**multi, "tr_id": "FHPST01710000"}
    assert_error(sim.get(protocol.VOLUME_RANK_PATH, rank, rank_params()), 200, "OPSQ0002")


def test_minute_bars_are_thirty_newest_first_and_stop_at_now(sim: Sim) -> None:
    headers = sim.headers("FHKST03010200")
    sim.clock.set(datetime(2026, 3, 10, 10, 15, 20, tzinfo=KST))
    body = sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "100000")).json()
    rows = body["output2"]
    assert len(rows) == 30
    assert rows[0]["stck_cntg_hour"] == "100000" and rows[-1]["stck_cntg_hour"] == "093100"
    assert all(row["stck_bsop_date"] == "20260310" for row in rows)
    bars = {
        bar.start.strftime("%H%M%S"): bar
        for bar in sim.market.minute_bars("005930", sim.clock.now(), time(15, 30))
    }
    for row in rows:
        bar = bars[row["stck_cntg_hour"]]
        assert (row["stck_oprc"], row["stck_hgpr"], row["stck_lwpr"], row["stck_prpr"]) == (
            str(bar.open),
            str(bar.high),
            str(bar.low),
            str(bar.close),
        )
        assert row["cntg_vol"] == str(bar.volume) and row["acml_tr_pbmn"] == str(bar.cum_value)
    future = sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "153000")).json()["output2"]
    assert future[0]["stck_cntg_hour"] == "101500"  # the minute in progress, not the future
    partial = sim.market.minute_bars("005930", sim.clock.now(), time(15, 30))[-1]
    assert future[0]["cntg_vol"] == str(partial.volume)
    output1 = body["output1"]
    assert output1["hts_kor_isnm"] == "삼성전자"
    assert output1["stck_prpr"] == str(sim.market.quote("005930", sim.clock.now()).price)


def test_minute_bars_before_the_open_are_empty_and_bad_hours_are_errors(sim: Sim) -> None:
    headers = sim.headers("FHKST03010200")
    sim.clock.set(datetime(2026, 3, 10, 8, 50, tzinfo=KST))
    body = sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "153000")).json()
    assert body["rt_cd"] == "0" and body["output2"] == []
    assert_error(
        sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "9300")), 200, "OPSQ2002", "2"
    )
    missing = minute_params("005930", "100000")
    del missing["FID_INPUT_HOUR_1"]
    body = assert_error(sim.get(protocol.MINUTE_BARS_PATH, headers, missing), 200, "OPSQ2001", "2")
    assert "FID_INPUT_HOUR_1" in body["msg1"]


def test_minute_bars_for_hour_000000_are_the_latest(sim: Sim) -> None:
    headers = sim.headers("FHKST03010200")
    sim.clock.set(datetime(2026, 3, 10, 10, 15, 20, tzinfo=KST))
    latest = sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "000000")).json()["output2"]
    now = sim.get(protocol.MINUTE_BARS_PATH, headers, minute_params("005930", "101520")).json()["output2"]
    assert latest == now and latest[0]["stck_cntg_hour"] == "101500" and len(latest) == 30


def _daily_params(start: str, end: str, period: str = "D") -> dict[str, str]:
    return {
        **price_params(),
        "FID_INPUT_DATE_1": start,
        "FID_INPUT_DATE_2": end,
        "FID_PERIOD_DIV_CODE": period,
        "FID_ORG_ADJ_PRC": "0",
    }


def test_daily_bars_newest_first_with_today_and_weekly_groups(sim: Sim) -> None:
    headers = sim.headers("FHKST03010100")
    body = sim.get(protocol.DAILY_BARS_PATH, headers, _daily_params("20260101", "20260310")).json()
    rows = body["output2"]
    history = [bar for bar in sim.market.history("005930") if bar.day >= date(2026, 1, 1)]
    assert [row["stck_bsop_date"] for row in rows] == ["20260310"] + [
        bar.day.strftime("%Y%m%d") for bar in reversed(history)
    ]
    quote = sim.market.quote("005930", sim.clock.now())
    assert rows[0]["stck_clpr"] == str(quote.price) and rows[0]["acml_vol"] == str(quote.volume)
    oldest = history[0]
    assert (rows[-1]["stck_oprc"], rows[-1]["stck_hgpr"], rows[-1]["stck_lwpr"], rows[-1]["stck_clpr"]) == (
        str(oldest.open),
        str(oldest.high),
        str(oldest.low),
        str(oldest.close),
    )
    assert body["output1"]["prdy_vol"] == str(sim.market.history("005930")[-1].volume)
    weekly = sim.get(protocol.DAILY_BARS_PATH, headers, _daily_params("20260101", "20260310", "W")).json()[
        "output2"
    ]
    assert sum(int(row["acml_vol"]) for row in weekly) == sum(int(row["acml_vol"]) for row in rows)
    assert len(weekly) < len(rows)
    assert_error(
        sim.get(protocol.DAILY_BARS_PATH, headers, _daily_params("2026-01-01", "20260310")),
        200,
        "OPSQ2002",
        "2",
    )
    assert_error(
        sim.get(protocol.DAILY_BARS_PATH, headers, _daily_params("20260101", "20260310", "X")),
        200,
        "OPSQ2001",
        "2",
    )


def test_daily_bars_from_00000101_answer_the_newest_hundred_with_documented_output1(sim: Sim) -> None:
    headers = sim.headers("FHKST03010100")
    body = sim.get(protocol.DAILY_BARS_PATH, headers, _daily_params("00000101", "20260310")).json()
    assert body["rt_cd"] == "0" and len(body["output2"]) == protocol.DAILY_BARS_PER_CALL
    assert body["output2"][0]["stck_bsop_date"] == "20260310"
    assert set(DAILY_BARS_OUTPUT1) <= body["output1"].keys()
    assert int(body["output1"]["cpfn"]) > 0 and body["output1"]["whol_loan_rmnd_rate"] == "0.00"


def test_inquire_daily_price_is_the_latest_thirty_days_newest_first(sim: Sim) -> None:
    headers = sim.headers("FHKST01010400")
    params = {**price_params(), "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "1"}
    rows = sim.get(DAILY_PRICE_PATH, headers, params).json()["output"]
    history = sim.market.history("005930")
    quote = sim.market.quote("005930", sim.clock.now())
    assert [row["stck_bsop_date"] for row in rows] == ["20260310"] + [
        bar.day.strftime("%Y%m%d") for bar in reversed(history[-29:])
    ]
    assert rows[0]["stck_clpr"] == str(quote.price)
    assert rows[0]["prdy_vrss"] == str(quote.price - history[-1].close)
    assert rows[1]["prdy_vrss"] == str(history[-1].close - history[-2].close)
    assert all(set(DAILY_PRICE_FIELDS) <= row.keys() for row in rows)
    monthly = sim.get(DAILY_PRICE_PATH, headers, {**params, "FID_PERIOD_DIV_CODE": "M"}).json()["output"]
    assert monthly[0]["stck_bsop_date"] == "20260310" and len(monthly) < len(rows)
    yearly = sim.get(DAILY_PRICE_PATH, headers, {**params, "FID_PERIOD_DIV_CODE": "Y"})
    assert_error(yearly, 200, "OPSQ2001", "2")
    assert_error(sim.get(DAILY_PRICE_PATH, {**headers, "tr_id": "FHKST01010100"}, params), 500, "OPSQ0002")


def test_search_info_describes_a_listed_stock_and_knows_nothing_else(sim: Sim) -> None:
    headers = sim.headers("CTPF1604R")
    output = sim.get(SEARCH_INFO_PATH, headers, {"PDNO": "005930", "PRDT_TYPE_CD": "300"}).json()["output"]
    assert set(SEARCH_INFO_FIELDS) <= output.keys()
    listing = sim.market.listings["005930"]
    assert (output["pdno"], output["shtn_pdno"], output["std_pdno"]) == ("005930", "005930", listing.isin)
    assert output["prdt_abrv_name"] == "삼성전자" and output["prdt_type_cd"] == "300"
    for params in ({"PDNO": "999990", "PRDT_TYPE_CD": "300"}, {"PDNO": "005930", "PRDT_TYPE_CD": "512"}):
        assert_error(sim.get(SEARCH_INFO_PATH, headers, params), 200, "KIOK0560", "7")
    assert_error(sim.get(SEARCH_INFO_PATH, headers, {"PDNO": "005930"}), 200, "OPSQ2001", "2")


def test_volume_rank_sorts_by_volume_and_applies_filters(sim: Sim) -> None:
    headers = sim.headers("FHPST01710000")
    rows = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params()).json()["output"]
    assert len(rows) == 30 and [row["data_rank"] for row in rows] == [str(n) for n in range(1, 31)]
    volumes = [int(row["acml_vol"]) for row in rows]
    assert volumes == sorted(volumes, reverse=True)
    now = sim.clock.now()
    everything = sorted((sim.market.quote(code, now).volume for code in sim.market.listings), reverse=True)
    assert volumes == everything[:30]
    kosdaq = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params(FID_INPUT_ISCD="1001")).json()["output"]
    assert kosdaq and all(sim.market.listings[row["mksc_shrn_iscd"]].market == "KOSDAQ" for row in kosdaq)
    kospi200 = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params(FID_INPUT_ISCD="2001")).json()[
        "output"
    ]
    assert kospi200 and all(sim.market.listings[row["mksc_shrn_iscd"]].market == "KOSPI" for row in kospi200)
    elw = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params(FID_COND_MRKT_DIV_CODE="W")).json()
    assert (elw["rt_cd"], elw["output"]) == ("0", [])
    not_a_sector = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params(FID_INPUT_ISCD="KOSPI"))
    assert_error(not_a_sector, 200, "OPSQ2001", "2")
    cheap = sim.get(protocol.VOLUME_RANK_PATH, headers, rank_params(FID_INPUT_PRICE_2="4000")).json()[
        "output"
    ]
    assert cheap and all(int(row["stck_prpr"]) <= 4000 for row in cheap)
    missing = rank_params()
    del missing["FID_VOL_CNT"]
    assert_error(sim.get(protocol.VOLUME_RANK_PATH, headers, missing), 200, "OPSQ2001", "2")


# ---- balance ---------------------------------------------------------------------------------------------


def test_balance_lists_seeded_holdings_with_consistent_totals(sim: Sim) -> None:
    headers = sim.headers("TTTC8434R")
    response = sim.get(protocol.BALANCE_PATH, headers, balance_params())
    assert response.status_code == 200 and response.headers["tr_cont"] in ("D", "E")
    body = response.json()
    holdings, summary = body["output1"], body["output2"][0]
    assert 2 <= len(holdings) <= 5
    now = sim.clock.now()
    for row in holdings:
        quote = sim.market.quote(row["pdno"], now)
        assert row["prdt_name"] == sim.market.listings[row["pdno"]].name
        assert row["prpr"] == str(quote.price)
        assert int(row["evlu_amt"]) == quote.price * int(row["hldg_qty"])
        assert int(row["evlu_pfls_amt"]) == int(row["evlu_amt"]) - int(row["pchs_amt"])
    assert int(summary["evlu_amt_smtl_amt"]) == sum(int(row["evlu_amt"]) for row in holdings)
    assert int(summary["pchs_amt_smtl_amt"]) == sum(int(row["pchs_amt"]) for row in holdings)
    assert int(summary["tot_evlu_amt"]) == int(summary["dnca_tot_amt"]) + int(summary["scts_evlu_amt"])
    assert "ctx_area_fk100" in body and "ctx_area_nk100" in body

    other = sim.get(
        protocol.BALANCE_PATH, sim.headers("TTTC8434R", key="key-2", secret="s2"), balance_params()
    )
    assert [row["pdno"] for row in other.json()["output1"]] != [row["pdno"] for row in holdings]


def test_balance_holdings_are_deterministic_from_seed_and_key(sim: Sim, market: Market) -> None:
    clock = SimulatedClock(OPEN_TIME, speed=0)
    twin = Accounts(market, Faults(), clock, seed=5)
    first = sim.accounts.account("key-1", "secret-1").holdings
    assert twin.account("key-1", "secret-1").holdings == first
    assert Accounts(market, Faults(), clock, seed=6).account("key-1", "secret-1").holdings != first
    assert "key-1" not in repr(sim.accounts.account("key-1", "secret-1"))
    assert "secret-1" not in repr(sim.accounts.account("key-1", "secret-1"))


def test_balance_tr_id_must_match_the_account_kind_and_params_are_checked(sim: Sim) -> None:
    sim.accounts.register("paper", paper=True)
    paper = sim.headers("VTTC8434R", key="paper", secret="p")
    assert sim.get(protocol.BALANCE_PATH, paper, balance_params()).json()["rt_cd"] == "0"
    assert_error(
        sim.get(protocol.BALANCE_PATH, {**paper, "tr_id": "TTTC8434R"}, balance_params()), 200, "OPSQ0002"
    )
    real = sim.headers("TTTC8434R")
    assert_error(
        sim.get(protocol.BALANCE_PATH, {**real, "tr_id": "VTTC8434R"}, balance_params()), 200, "OPSQ0002"
    )
    by_loan_date = sim.get(protocol.BALANCE_PATH, real, balance_params(INQR_DVSN="01")).json()
    by_symbol = sim.get(protocol.BALANCE_PATH, real, balance_params(INQR_DVSN="02")).json()
    assert (by_symbol["rt_cd"], by_symbol["output1"]) == ("0", by_loan_date["output1"])  # no loans: same rows
    body = assert_error(
        sim.get(protocol.BALANCE_PATH, real, balance_params(INQR_DVSN="03")), 200, "OPSQ2001", "2"
    )
    assert "INQR_DVSN" in body["msg1"]
    assert_error(sim.get(protocol.BALANCE_PATH, real, balance_params(CANO="12-45")), 200, "OPSQ2000", "2")
    missing = balance_params()
    del missing["PRCS_DVSN"]
    assert_error(sim.get(protocol.BALANCE_PATH, real, missing), 200, "OPSQ2001", "2")


def _balance_pages(sim: Sim, headers: dict[str, str]) -> list[requests.Response]:
    """Every page of one balance inquiry, following tr_cont and ctx_area_nk100 like a KIS client."""
    pages = [sim.get(protocol.BALANCE_PATH, headers, balance_params())]
    while pages[-1].headers["tr_cont"] in ("M", "F"):
        body = pages[-1].json()
        follow = balance_params(
            CTX_AREA_FK100=body["ctx_area_fk100"].strip(), CTX_AREA_NK100=body["ctx_area_nk100"].strip()
        )
        pages.append(sim.get(protocol.BALANCE_PATH, {**headers, "tr_cont": "N"}, follow))
        assert len(pages) < 10
    return pages


@pytest.mark.parametrize(("paper", "count", "sizes"), [(False, 110, [50, 50, 10]), (True, 45, [20, 20, 5])])
def test_balance_pages_seeded_holdings_50_real_or_20_paper_at_a_time(
    sim: Sim, paper: bool, count: int, sizes: list[int]
) -> None:
    sim.accounts.register("pager", paper=paper)
    sim.accounts.seed_holdings("pager", count)  # before the key's first use
    headers = sim.headers("VTTC8434R" if paper else "TTTC8434R", key="pager", secret="p")
    pages = _balance_pages(sim, headers)
    assert [len(page.json()["output1"]) for page in pages] == sizes
    assert [page.headers["tr_cont"] for page in pages] == ["M"] * (len(sizes) - 1) + ["D"]
    rows = [row for page in pages for row in page.json()["output1"]]
    account = sim.accounts.account("pager", "p")
    assert [row["pdno"] for row in rows] == [held.code for held in account.holdings]
    assert len({row["pdno"] for row in rows}) == count
    summaries = [page.json()["output2"][0] for page in pages]
    assert all(summary == summaries[0] for summary in summaries)  # totals of the whole account on every page
    assert int(summaries[0]["pchs_amt_smtl_amt"]) == sum(int(row["pchs_amt"]) for row in rows)
    assert all(page.json()["ctx_area_fk100"].startswith("12345678^01^") for page in pages)


def test_seeded_holdings_are_deterministic_replace_an_open_accounts_and_are_bounded(
    sim: Sim, market: Market
) -> None:
    usual = sim.accounts.account("key-1", "secret-1").holdings
    sim.accounts.seed_holdings("key-1", 30)
    seeded = sim.accounts.account("key-1", "secret-1").holdings
    assert len(seeded) == 30 and len({h.code for h in seeded}) == 30 and seeded[: len(usual)] != usual
    assert all(not market.listings[h.code].halted and h.quantity > 0 for h in seeded)
    twin = Accounts(market, Faults(), SimulatedClock(OPEN_TIME, speed=0), seed=5)
    twin.seed_holdings("key-1", 30)
    assert twin.account("key-1", "secret-1").holdings == seeded
    tradable = sum(not listing.halted for listing in market.listings.values())
    with pytest.raises(ValueError, match=f"0..{tradable}"):
        sim.accounts.seed_holdings("key-1", tradable + 1)
    sim.accounts.seed_holdings("key-1", 0)
    assert sim.accounts.account("key-1", "secret-1").holdings == ()


def test_a_follow_up_page_needs_a_readable_continuation_key(sim: Sim) -> None:
    sim.accounts.seed_holdings("key-1", 60)
    headers = sim.headers("TTTC8434R")
    garbled = balance_params(CTX_AREA_NK100="not-a-key")
    body = assert_error(
        sim.get(protocol.BALANCE_PATH, {**headers, "tr_cont": "N"}, garbled), 200, "OPSQ2001", "2"
    )
    assert "CTX_AREA_NK100" in body["msg1"]
    first = sim.get(protocol.BALANCE_PATH, headers, garbled)  # without tr_cont "N" the key is not read
    assert len(first.json()["output1"]) == 50 and first.headers["tr_cont"] == "M"


# ---- master files and plumbing ---------------------------------------------------------------------------


def _parse_master(
    data: bytes, name: str, tail: int, widths: list[int]
) -> list[tuple[str, str, str, list[str]]]:
    """Parse the way KIS's own sample does: character slices of cp949-decoded rows."""
    text = zipfile.ZipFile(io.BytesIO(data)).read(name).decode("cp949")
    rows = []
    for row in io.StringIO(text, newline=None):
        head, rest = row[: len(row) - tail], row[-tail:]
        cells, position = [], 0
        for width in widths:
            cells.append(rest[position : position + width])
            position += width
        assert rest[position:] == "\n"
        rows.append((head[0:9].rstrip(), head[9:21].rstrip(), head[21:].strip(), cells))
    return rows


@pytest.mark.parametrize(
    ("path", "name", "market_name", "tail", "widths"),
    [
        ("/master/kospi_code.mst.zip", "kospi_code.mst", "KOSPI", 228, KOSPI_WIDTHS),
        ("/master/kosdaq_code.mst.zip", "kosdaq_code.mst", "KOSDAQ", 222, KOSDAQ_WIDTHS),
    ],
)
def test_master_files_follow_the_official_layout(
    sim: Sim, path: str, name: str, market_name: str, tail: int, widths: list[int]
) -> None:
    response = sim.session.get(f"{sim.url}{path}", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    rows = _parse_master(response.content, name, tail, widths)
    expected = {code for code, listing in sim.market.listings.items() if listing.market == market_name}
    assert {row[0] for row in rows} == expected
    # column positions from the official samples: 31 (KOSPI) / 26 (KOSDAQ) one-character flags, then 기준가
    first_number = 31 if market_name == "KOSPI" else 26
    for code, isin, name_text, cells in rows:
        listing = sim.market.listings[code]
        assert (isin, name_text) == (listing.isin, listing.name)
        assert int(cells[first_number]) == listing.prev_close  # 기준가
        assert cells[first_number + 3] == ("Y" if listing.halted else "N")  # 거래정지
        assert cells[first_number + 5] == ("Y" if listing.managed else "N")  # 관리종목
        assert int(cells[first_number + 16]) == listing.prev_volume  # 전일거래량
        assert int(cells[first_number + 19]) == listing.listed_shares // 1000  # 상장주수(천)
        assert int(cells[-5]) == listing.market_cap  # 전일기준 시가총액(억)


def test_unknown_paths_and_methods_and_determinism_across_servers(sim: Sim, market: Market) -> None:
    missing = sim.session.get(f"{sim.url}/uapi/domestic-stock/v1/quotations/nothing-here", timeout=10)
    assert_error(missing, 404, "OPSQ0002")
    headers = sim.headers("FHKST01010100")
    posted = sim.session.post(f"{sim.url}{protocol.INQUIRE_PRICE_PATH}", headers=headers, timeout=10)
    assert_error(posted, 405, "EGW00101")
    first = sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()).json()["output"]
    twin_market = Market(seed=5, trading_date=DAY, n_symbols=120)
    clock = SimulatedClock(sim.clock.now(), speed=0)
    faults = Faults()
    with RestServer(twin_market, Accounts(twin_market, faults, clock, seed=5), faults, clock) as twin:
        token = requests.post(
            f"{twin.url}{protocol.TOKEN_PATH}",
            timeout=10,
            json={"grant_type": "client_credentials", "appkey": "key-1", "appsecret": "secret-1"},
        ).json()["access_token"]
        second = requests.get(
            f"{twin.url}{protocol.INQUIRE_PRICE_PATH}",
            params=price_params(),
            timeout=10,
            headers={**headers, "authorization": f"Bearer {token}"},
        ).json()["output"]
    assert first == second
    counts, errors = sim.server.app.counts()
    assert counts["FHKST01010100"] >= 1 and errors["OPSQ0002"] == 1 and errors["EGW00101"] == 1


def test_stop_is_safe_twice_and_before_start(market: Market) -> None:
    clock = SimulatedClock(OPEN_TIME, speed=0)
    faults = Faults()
    server = RestServer(market, Accounts(market, faults, clock), faults, clock)
    server.stop()
    server.start()
    url = server.url
    server.stop()
    server.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/master/kospi_code.mst.zip", timeout=2)


def test_timedelta_of_simulated_clock_drives_expiry_not_wall_time(sim: Sim) -> None:
    """A manual clock that does not move keeps tokens alive however long the test takes."""
    headers = sim.headers("FHKST01010100")
    sim.clock.advance(timedelta(hours=23, minutes=59).total_seconds())
    assert sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()).status_code == 200
    sim.clock.advance(60)
    assert_error(sim.get(protocol.INQUIRE_PRICE_PATH, headers, price_params()), 500, "EGW00123")
