"""Conformance check: does a KIS server (the simulator, by default) answer the way KIS documents it?

It talks to the server like a third-party client that knows only KIS's documentation: the REST answers are
read the way KIS's published sample reads them (every all-lower-case header name and every body key becomes
a field of a named tuple), every documented output field must be there, documented parameter values must
be accepted, and the WebSocket must take the paths, control messages and pong answers KIS's samples use.
Sources for every fact: docs/kis_api_facts.md.

    python -m tools.kis_sim.conformance                  # starts its own simulator and checks it
    python -m tools.kis_sim.conformance --rest-url http://127.0.0.1:18080 --ws-url ws://127.0.0.1:18081

Against a server of your own, the app key and secret come from KIS_APP_KEY / KIS_APP_SECRET (any pair
works with the simulator). Prints one line per check; exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, time
from typing import Any

import requests
import websocket

from tools.kis_sim.listings import tick_size


def _fields(names: str) -> tuple[str, ...]:
    return tuple(names.split())


# Output fields as KIS documents them: examples_llm/domestic_stock/<endpoint>/chk_<endpoint>.py of
# koreainvestment/open-trading-api (COLUMN_MAPPING), and for search-info the API portal's field table.
INQUIRE_PRICE_FIELDS = _fields(
    "iscd_stat_cls_code marg_rate rprs_mrkt_kor_name new_hgpr_lwpr_cls_code bstp_kor_isnm temp_stop_yn "
    "oprc_rang_cont_yn clpr_rang_cont_yn crdt_able_yn grmn_rate_cls_code elw_pblc_yn stck_prpr prdy_vrss "
    "prdy_vrss_sign prdy_ctrt acml_tr_pbmn acml_vol prdy_vrss_vol_rate stck_oprc stck_hgpr stck_lwpr "
    "stck_mxpr stck_llam stck_sdpr wghn_avrg_stck_prc hts_frgn_ehrt frgn_ntby_qty pgtr_ntby_qty "
    "pvt_scnd_dmrs_prc pvt_frst_dmrs_prc pvt_pont_val pvt_frst_dmsp_prc pvt_scnd_dmsp_prc dmrs_val dmsp_val "
    "cpfn rstc_wdth_prc stck_fcam stck_sspr aspr_unit hts_deal_qty_unit_val lstn_stcn hts_avls per pbr "
    "stac_month vol_tnrt eps bps d250_hgpr d250_hgpr_date d250_hgpr_vrss_prpr_rate d250_lwpr d250_lwpr_date "
    "d250_lwpr_vrss_prpr_rate stck_dryy_hgpr dryy_hgpr_vrss_prpr_rate dryy_hgpr_date stck_dryy_lwpr "
    "dryy_lwpr_vrss_prpr_rate dryy_lwpr_date w52_hgpr w52_hgpr_vrss_prpr_ctrt w52_hgpr_date w52_lwpr "
    "w52_lwpr_vrss_prpr_ctrt w52_lwpr_date whol_loan_rmnd_rate ssts_yn stck_shrn_iscd fcam_cnnm cpfn_cnnm "
    "apprch_rate frgn_hldn_qty vi_cls_code ovtm_vi_cls_code last_ssts_cntg_qty invt_caful_yn "
    "mrkt_warn_cls_code short_over_yn sltr_yn mang_issu_cls_code"
)
MULTI_PRICE_FIELDS = _fields(
    "kospi_kosdaq_cls_name mrkt_trtm_cls_name hour_cls_code inter_shrn_iscd inter_kor_isnm inter2_prpr "
    "inter2_prdy_vrss prdy_vrss_sign prdy_ctrt acml_vol inter2_oprc inter2_hgpr inter2_lwpr inter2_llam "
    "inter2_mxpr inter2_askp inter2_bidp seln_rsqn shnu_rsqn total_askp_rsqn total_bidp_rsqn acml_tr_pbmn "
    "inter2_prdy_clpr oprc_vrss_hgpr_rate intr_antc_cntg_vrss intr_antc_cntg_vrss_sign "
    "intr_antc_cntg_prdy_ctrt intr_antc_vol inter2_sdpr"
)
MINUTE_BARS_OUTPUT1 = _fields(
    "prdy_vrss prdy_vrss_sign prdy_ctrt stck_prdy_clpr acml_vol acml_tr_pbmn hts_kor_isnm stck_prpr"
)
MINUTE_BARS_OUTPUT2 = _fields(
    "stck_bsop_date stck_cntg_hour stck_prpr stck_oprc stck_hgpr stck_lwpr cntg_vol acml_tr_pbmn"
)
DAILY_BARS_OUTPUT1 = _fields(
    "prdy_vrss prdy_vrss_sign prdy_ctrt stck_prdy_clpr acml_vol acml_tr_pbmn hts_kor_isnm stck_prpr "
    "stck_shrn_iscd prdy_vol stck_mxpr stck_llam stck_oprc stck_hgpr stck_lwpr stck_prdy_oprc stck_prdy_hgpr "
    "stck_prdy_lwpr askp bidp prdy_vrss_vol vol_tnrt stck_fcam lstn_stcn cpfn hts_avls per eps pbr "
    "whol_loan_rmnd_rate"
)
DAILY_BARS_OUTPUT2 = _fields(
    "stck_bsop_date stck_clpr stck_oprc stck_hgpr stck_lwpr acml_vol acml_tr_pbmn flng_cls_code prtt_rate "
    "mod_yn prdy_vrss_sign prdy_vrss revl_issu_reas"
)
VOLUME_RANK_FIELDS = _fields(
    "hts_kor_isnm mksc_shrn_iscd data_rank stck_prpr prdy_vrss_sign prdy_vrss prdy_ctrt acml_vol prdy_vol "
    "lstn_stcn avrg_vol n_befr_clpr_vrss_prpr_rate vol_inrt vol_tnrt nday_vol_tnrt avrg_tr_pbmn tr_pbmn_tnrt "
    "nday_tr_pbmn_tnrt acml_tr_pbmn"
)
BALANCE_OUTPUT1 = _fields(
    "pdno prdt_name trad_dvsn_name bfdy_buy_qty bfdy_sll_qty thdt_buyqty thdt_sll_qty hldg_qty ord_psbl_qty "
    "pchs_avg_pric pchs_amt prpr evlu_amt evlu_pfls_amt evlu_pfls_rt evlu_erng_rt loan_dt loan_amt "
    "stln_slng_chgs expd_dt fltt_rt bfdy_cprs_icdc item_mgna_rt_name grta_rt_name sbst_pric stck_loan_unpr"
)
BALANCE_OUTPUT2 = _fields(
    "dnca_tot_amt nxdy_excc_amt prvs_rcdl_excc_amt cma_evlu_amt bfdy_buy_amt thdt_buy_amt nxdy_auto_rdpt_amt "
    "bfdy_sll_amt thdt_sll_amt d2_auto_rdpt_amt bfdy_tlex_amt thdt_tlex_amt tot_loan_amt scts_evlu_amt "
    "tot_evlu_amt nass_amt fncg_gld_auto_rdpt_yn pchs_amt_smtl_amt evlu_amt_smtl_amt evlu_pfls_smtl_amt "
    "tot_stln_slng_chgs bfdy_tot_asst_evlu_amt asst_icdc_amt asst_icdc_erng_rt"
)
SEARCH_INFO_FIELDS = _fields(
    "pdno prdt_type_cd prdt_name prdt_name120 prdt_abrv_name prdt_eng_name prdt_eng_name120 "
    "prdt_eng_abrv_name std_pdno shtn_pdno prdt_sale_stat_cd prdt_risk_grad_cd prdt_clsf_cd prdt_clsf_name "
    "sale_strt_dt sale_end_dt wrap_asst_type_cd ivst_prdt_type_cd ivst_prdt_type_cd_name frst_erlm_dt"
)
DAILY_PRICE_FIELDS = _fields(
    "stck_bsop_date stck_oprc stck_hgpr stck_lwpr stck_clpr acml_vol prdy_vrss_vol_rate prdy_vrss "
    "prdy_vrss_sign prdy_ctrt hts_frgn_ehrt frgn_ntby_qty flng_cls_code acml_prtt_rate"
)

QUOTATIONS = "/uapi/domestic-stock/v1/quotations"
SYMBOL = "005930"
KIS_RESPONSE_HEADERS = ("tr_id", "tr_cont", "gt_uid")


class ConformanceError(Exception):
    """One way the server differs from KIS's documentation."""


class SampleStyleAnswer:
    """A REST answer read as KIS's published sample reads it (`kis_auth.py`, class APIResp): the header
    names that are all lower case become the fields of one named tuple, the body's keys those of another.
    An all-lower-case name that is no identifier (`content-type`) makes that sample raise ValueError."""

    def __init__(self, response: requests.Response) -> None:
        self.status = response.status_code
        self.raw_header_names = tuple(response.headers.keys())
        lower = {name: value for name, value in response.headers.items() if name.islower()}
        self.header = namedtuple("header", lower.keys())(**lower)  # type: ignore[misc]
        body = response.json()
        self.body = namedtuple("body", body.keys())(**body)  # type: ignore[misc]

    def ok(self) -> bool:
        return self.status == 200 and getattr(self.body, "rt_cd", None) == "0"


class SampleStyleClient:
    """A minimal KIS REST client in the manner of KIS's sample: token first, then GETs with the documented
    headers, each answer turned into a `SampleStyleAnswer`."""

    def __init__(self, base_url: str, app_key: str, app_secret: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._app_key, self._app_secret = app_key, app_secret
        self._session = requests.Session()
        self._token = ""

    def close(self) -> None:
        self._session.close()

    def authorize(self) -> None:
        body = {"grant_type": "client_credentials", "appkey": self._app_key, "appsecret": self._app_secret}
        answer = self._session.post(f"{self.base_url}/oauth2/tokenP", data=json.dumps(body), timeout=10)
        self._token = answer.json()["access_token"]

    def approval_key(self) -> str:
        body = {"grant_type": "client_credentials", "appkey": self._app_key, "secretkey": self._app_secret}
        answer = self._session.post(f"{self.base_url}/oauth2/Approval", data=json.dumps(body), timeout=10)
        return str(answer.json()["approval_key"])

    def get(self, path: str, tr_id: str, params: Mapping[str, str], tr_cont: str = "") -> SampleStyleAnswer:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/plain",
            "charset": "UTF-8",
            "authorization": f"Bearer {self._token}",
            "appkey": self._app_key,
            "appsecret": self._app_secret,
            "tr_id": tr_id,
            "custtype": "P",
            "tr_cont": tr_cont,
        }
        response = self._session.get(f"{self.base_url}{path}", headers=headers, params=params, timeout=30)
        return SampleStyleAnswer(response)


@dataclass(frozen=True, slots=True)
class Result:
    check: str
    problem: str = ""

    @property
    def passed(self) -> bool:
        return not self.problem


def _require(condition: bool, problem: str) -> None:
    if not condition:
        raise ConformanceError(problem)


def _missing(row: object, fields: Sequence[str], what: str) -> None:
    _require(isinstance(row, dict), f"{what} is not an object")
    assert isinstance(row, dict)
    absent = [name for name in fields if name not in row]
    _require(not absent, f"{what} lacks {len(absent)} documented field(s): {', '.join(absent)}")


def _envelope(answer: SampleStyleAnswer, what: str) -> None:
    code, message = getattr(answer.body, "msg_cd", ""), getattr(answer.body, "msg1", "")
    _require(answer.ok(), f"{what} refused: {code} {message}")
    absent = [name for name in KIS_RESPONSE_HEADERS if not hasattr(answer.header, name)]
    _require(not absent, f"{what} answer lacks the header(s) {', '.join(absent)}")
    canonical = "Content-Type" in answer.raw_header_names
    _require(canonical, f"{what} answer's Content-Type is not in canonical case")


def _price_params(market_code: str = "J") -> dict[str, str]:
    return {"FID_COND_MRKT_DIV_CODE": market_code, "FID_INPUT_ISCD": SYMBOL}


def _balance_params(inquiry: str) -> dict[str, str]:
    return {
        "CANO": "12345678", "ACNT_PRDT_CD": "01", "AFHR_FLPR_YN": "N", "OFL_YN": "", "INQR_DVSN": inquiry,
        "UNPR_DVSN": "01", "FUND_STTL_ICLD_YN": "N", "FNCG_AMT_AUTO_RDPT_YN": "N", "PRCS_DVSN": "00",
        "CTX_AREA_FK100": "", "CTX_AREA_NK100": "",
    }  # fmt: skip


def rest_checks(client: SampleStyleClient) -> Iterator[tuple[str, Callable[[], None]]]:
    """(name, check) pairs for the REST side; a check raises on a deviation."""

    def inquire_price() -> None:
        for market_code in ("J", "NX", "UN"):
            answer = client.get(f"{QUOTATIONS}/inquire-price", "FHKST01010100", _price_params(market_code))
            _envelope(answer, f"inquire-price ({market_code})")
            _missing(answer.body.output, INQUIRE_PRICE_FIELDS, "inquire-price output")

    def tick_size_unit() -> None:
        output = client.get(f"{QUOTATIONS}/inquire-price", "FHKST01010100", _price_params()).body.output
        price, unit = int(output["stck_prpr"]), int(output["aspr_unit"])
        _require(unit == tick_size(price), f"aspr_unit {unit} is not the KRX tick size at {price}")

    def multi_price() -> None:
        params = {"FID_COND_MRKT_DIV_CODE_1": "J", "FID_INPUT_ISCD_1": SYMBOL}
        answer = client.get(f"{QUOTATIONS}/intstock-multprice", "FHKST11300006", params)
        _envelope(answer, "intstock-multprice")
        _require(len(answer.body.output) == 1, "intstock-multprice: one symbol asked, not one row answered")
        _missing(answer.body.output[0], MULTI_PRICE_FIELDS, "intstock-multprice output row")

    def minute_bars() -> None:
        for hour in ("000000", "235959"):
            params = {
                **_price_params(), "FID_INPUT_HOUR_1": hour, "FID_PW_DATA_INCU_YN": "Y",
                "FID_ETC_CLS_CODE": "",
            }  # fmt: skip
            answer = client.get(f"{QUOTATIONS}/inquire-time-itemchartprice", "FHKST03010200", params)
            _envelope(answer, f"inquire-time-itemchartprice ({hour})")
            _missing(answer.body.output1, MINUTE_BARS_OUTPUT1, "inquire-time-itemchartprice output1")
            _require(bool(answer.body.output2), f"FID_INPUT_HOUR_1 {hour} answered no bars")
            _missing(answer.body.output2[0], MINUTE_BARS_OUTPUT2, "inquire-time-itemchartprice output2 row")

    def daily_bars() -> None:
        params = {
            **_price_params(), "FID_INPUT_DATE_1": "00000101", "FID_INPUT_DATE_2": "99991231",
            "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "0",
        }  # fmt: skip
        answer = client.get(f"{QUOTATIONS}/inquire-daily-itemchartprice", "FHKST03010100", params)
        _envelope(answer, "inquire-daily-itemchartprice from 00000101")
        _missing(answer.body.output1, DAILY_BARS_OUTPUT1, "inquire-daily-itemchartprice output1")
        _require(bool(answer.body.output2), "inquire-daily-itemchartprice from 00000101 answered no bars")
        _missing(answer.body.output2[0], DAILY_BARS_OUTPUT2, "inquire-daily-itemchartprice output2 row")

    def daily_price() -> None:
        params = {**_price_params(), "FID_PERIOD_DIV_CODE": "D", "FID_ORG_ADJ_PRC": "1"}
        answer = client.get(f"{QUOTATIONS}/inquire-daily-price", "FHKST01010400", params)
        _envelope(answer, "inquire-daily-price")
        _require(len(answer.body.output) == 30, "inquire-daily-price: not the latest 30 days")
        _missing(answer.body.output[0], DAILY_PRICE_FIELDS, "inquire-daily-price output row")

    def search_info() -> None:
        answer = client.get(f"{QUOTATIONS}/search-info", "CTPF1604R", {"PDNO": SYMBOL, "PRDT_TYPE_CD": "300"})
        _envelope(answer, "search-info")
        _missing(answer.body.output, SEARCH_INFO_FIELDS, "search-info output")

    def volume_rank() -> None:
        params = {
            "FID_COND_MRKT_DIV_CODE": "J", "FID_COND_SCR_DIV_CODE": "20171", "FID_INPUT_ISCD": "0000",
            "FID_DIV_CLS_CODE": "0", "FID_BLNG_CLS_CODE": "0", "FID_TRGT_CLS_CODE": "111111111",
            "FID_TRGT_EXLS_CLS_CODE": "0000000000", "FID_INPUT_PRICE_1": "", "FID_INPUT_PRICE_2": "",
            "FID_VOL_CNT": "", "FID_INPUT_DATE_1": "",
        }  # fmt: skip
        answer = client.get(f"{QUOTATIONS}/volume-rank", "FHPST01710000", params)
        _envelope(answer, "volume-rank")
        _require(bool(answer.body.output), "volume-rank answered no rows")
        _missing(answer.body.output[0], VOLUME_RANK_FIELDS, "volume-rank output row")

    def balance() -> None:
        for inquiry in ("01", "02"):
            answer = client.get("/uapi/domestic-stock/v1/trading/inquire-balance", "TTTC8434R",
                                _balance_params(inquiry))
            _envelope(answer, f"inquire-balance (INQR_DVSN {inquiry})")
            _require(bool(answer.body.output1), "inquire-balance answered no holdings")
            _missing(answer.body.output1[0], BALANCE_OUTPUT1, "inquire-balance output1 row")
            _missing(answer.body.output2[0], BALANCE_OUTPUT2, "inquire-balance output2 row")

    yield "REST inquire-price: all 82 documented fields, market codes J, NX, UN", inquire_price
    yield "REST inquire-price: aspr_unit is the KRX tick size", tick_size_unit
    yield "REST intstock-multprice: documented fields", multi_price
    yield "REST inquire-time-itemchartprice: 000000 answers the latest bars", minute_bars
    yield "REST inquire-daily-itemchartprice: 00000101 accepted, documented fields", daily_bars
    yield "REST inquire-daily-price (FHKST01010400): served, documented fields", daily_price
    yield "REST search-info (CTPF1604R): served, documented fields", search_info
    yield "REST volume-rank: documented fields", volume_rank
    yield "REST inquire-balance: INQR_DVSN 01 and 02, documented fields", balance


def ws_checks(ws_url: str, approval_key: str) -> Iterator[tuple[str, Callable[[], None]]]:
    """(name, check) pairs for the WebSocket side."""

    def subscribe(ws: websocket.WebSocket, tr_id: str, tr_key: str) -> dict[str, Any]:
        header = {"approval_key": approval_key, "custtype": "P", "tr_type": "1", "content-type": "utf-8"}
        ws.send(json.dumps({"header": header, "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}}}))
        for _ in range(200):
            message = ws.recv()
            if isinstance(message, str) and message.startswith("{") and '"PINGPONG"' not in message:
                answer: dict[str, Any] = json.loads(message)
                return answer
        raise ConformanceError(f"no answer to subscribing {tr_id} {tr_key}")

    def tryitout_path() -> None:
        ws = websocket.create_connection(f"{ws_url}/tryitout/H0STCNT0", timeout=10)
        try:
            ack = subscribe(ws, "H0STCNT0", SYMBOL)
            _require(ack["body"]["msg_cd"] == "OPSP0000", f"subscribe refused: {ack['body']}")
            _require(ack["header"].get("tr_id") == "H0STCNT0", "the ack's header has no tr_id")
            second = websocket.create_connection(f"{ws_url}/tryitout", timeout=10)
            try:
                refused = subscribe(second, "H0STCNT0", "000660")
            finally:
                second.close()
            _require(refused["body"]["msg_cd"] == "OPSP8996", "a second session of the key was not refused")
            header = refused.get("header")
            _require(
                isinstance(header, dict) and {"tr_id", "tr_key", "encrypt"} <= header.keys(),
                "OPSP8996 has no header with tr_id, tr_key and encrypt",
            )
        finally:
            ws.close()

    yield "WebSocket /tryitout/<TR_ID>, acks and OPSP8996 carry a header", tryitout_path


def run(checks: Iterator[tuple[str, Callable[[], None]]]) -> list[Result]:
    """Run every check; one failing check does not stop the others."""
    results = []
    for name, check in checks:
        try:
            check()
        except Exception as error:  # any failure of the server is a finding, not a crash of the script
            results.append(Result(name, f"{type(error).__name__}: {error}"))
        else:
            results.append(Result(name))
    return results


def check_server(rest_url: str, ws_url: str, app_key: str, app_secret: str) -> list[Result]:
    """Every check against one server (REST and WebSocket), during its trading session."""
    client = SampleStyleClient(rest_url, app_key, app_secret)
    try:
        client.authorize()
        results = run(rest_checks(client))
        results += run(ws_checks(ws_url, client.approval_key()))
    finally:
        client.close()
    return results


@contextmanager
def _own_simulator() -> Iterator[tuple[str, str]]:
    from tools.kis_sim.server import KisSimulator, SimConfig

    config = SimConfig(seed=3, date=date(2026, 3, 10), start=time(10, 30), speed=1.0, n_symbols=60)
    with KisSimulator(config) as simulator:
        yield simulator.rest_url, simulator.ws_url


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.kis_sim.conformance", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--rest-url", help="REST base URL of the server to check (default: an own simulator)")
    parser.add_argument("--ws-url", help="WebSocket base URL (ws://host:port) of the same server")
    args = parser.parse_args(argv)
    if bool(args.rest_url) != bool(args.ws_url):
        parser.error("--rest-url and --ws-url go together")
    key = os.environ.get("KIS_APP_KEY", "CONFORMANCE-KEY")
    secret = os.environ.get("KIS_APP_SECRET", "CONFORMANCE-SECRET")
    if args.rest_url:
        results = check_server(args.rest_url, args.ws_url, key, secret)
    else:
        with _own_simulator() as (rest_url, ws_url):
            results = check_server(rest_url, ws_url, key, secret)
    for result in results:
        print(f"ok    {result.check}" if result.passed else f"FAIL  {result.check}: {result.problem}")
    failed = sum(not result.passed for result in results)
    print(f"{len(results) - failed} of {len(results)} checks passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
