"""The simulator's KIS-compatible REST server (stdlib `ThreadingHTTPServer`, loopback).

`RestApp` is the protocol: it turns (method, path, query, headers, body) into a KIS answer with the real
paths, tr_ids, parameter names, output fields, envelopes, headers and error codes of docs/kis_api_facts.md.
`RestServer` is the HTTP shell around it. Check order for `/uapi` calls, like the gateway: fault switches,
app key and secret, per-key rate limit, token, tr_id, then the endpoint's own parameters (business errors,
HTTP 200).
"""

from __future__ import annotations

import json
import re
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from datetime import time as time_of_day
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from loguru import logger

from kis import protocol
from kis.protocol import ErrorCode, TrId
from runtime.clock import Clock
from tools.kis_sim.accounts import Account, Accounts, TokenCheck, TooSoon, WrongSecret
from tools.kis_sim.faults import FAULTS_PATH, Faults, FaultSpecError, parse_faults
from tools.kis_sim.futures import Derivatives, QueryError
from tools.kis_sim.listings import KOSDAQ, KOSPI, DailyBarState, Listing, fundamentals, tick_size
from tools.kis_sim.market import Market, QuoteState
from tools.kis_sim.master_files import master_zip

SEARCH_INFO_PATH = f"{protocol.QUOTATIONS}/search-info"
DAILY_PRICE_PATH = f"{protocol.QUOTATIONS}/inquire-daily-price"
SEARCH_INFO_TR_ID = "CTPF1604R"
DAILY_PRICE_TR_ID = "FHKST01010400"
DAILY_PRICE_ROWS = 30
"""inquire-daily-price answers the latest 30 days, weeks or months."""
MARKET_CODES = frozenset({"J", "NX", "UN"})
"""FID_COND_MRKT_DIV_CODE: KRX, Nextrade, unified; NX and UN are answered from the one simulated market."""
ELW_MARKET_CODE = "W"
"""volume-rank also ranks ELWs (FID_COND_MRKT_DIV_CODE W); the simulated market lists none."""
STOCK_PRODUCT_TYPE = "300"
JSON_CONTENT_TYPE = "application/json; charset=UTF-8"
MASTER_PATHS = {"/master/kospi_code.mst.zip": KOSPI, "/master/kosdaq_code.mst.zip": KOSDAQ}
VOLUME_RANK_ROWS = 30
BALANCE_ROWS_REAL, BALANCE_ROWS_PAPER = 50, 20
MORE, LAST, NEXT = "M", "D", "N"
"""tr_cont: response "M" more pages follow / "D" last page; request "N" asks for the next page."""

MSG_OK = "정상처리 되었습니다."
MSG_RATE_LIMIT = "초당 거래건수를 초과하였습니다."
MSG_TOKEN_EXPIRED = "기간이 만료된 token 입니다."
MSG_TOKEN_INVALID = "유효하지 않은 token 입니다."
MSG_TOKEN_TOO_SOON = "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)"
NO_DATA_CODE, MSG_NO_DATA = "KIOK0560", "조회할 자료가 없습니다."
UNKNOWN_SERVICE_CODE, MSG_UNKNOWN_SERVICE = "OPSQ0002", "없는 서비스 코드 입니다."
MSG_PAPER_UNSUPPORTED = "모의투자에서는 해당업무가 제공되지 않습니다."
MSG_REAL_WITH_PAPER_TR = "실전투자 계좌에서 모의투자 TR은 사용할 수 없습니다."
INPUT_ERROR_CODE = "OPSQ2001"
ACCOUNT_ERROR_CODE = "OPSQ2000"
LENGTH_ERROR_CODE = "OPSQ2002"
GATEWAY_MESSAGES = {
    "EGW00002": "서버 에러가 발생했습니다.",
    "EGW00101": "유효하지 않은 요청입니다.",
    "EGW00102": "AppKey는 필수입니다.",
    "EGW00104": "AppSecret은 필수입니다.",
    "EGW00105": "유효하지 않은 AppSecret입니다.",
    "EGW00115": "권한부여 타입(grant_type)은 필수입니다.",
    "EGW00116": "지원하지 않는 권한부여 타입(grant_type)입니다.",
    "EGW00205": "credentials_type이 유효하지 않습니다.(Bearer)",
    "EGW00208": "고객유형(custtype)이 유효하지 않습니다.",
    ErrorCode.RATE_LIMIT.value: MSG_RATE_LIMIT,
    ErrorCode.TOKEN_EXPIRED.value: MSG_TOKEN_EXPIRED,
    ErrorCode.TOKEN_INVALID.value: MSG_TOKEN_INVALID,
    ErrorCode.TOKEN_TOO_SOON.value: MSG_TOKEN_TOO_SOON,
}

UAPI_PREFIX = "/uapi/"
HTML_ERROR_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)

_MULTI_CODE_KEY = re.compile(r"^FID_INPUT_ISCD_(\d+)$")
_CODE = re.compile(r"^[0-9A-Z]{6}$")
_HHMMSS = re.compile(r"^([01]\d|2[0-3])([0-5]\d)([0-5]\d)$")
_YYYYMMDD = re.compile(r"^\d{8}$")
LATEST_HOUR = "000000"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON_CONTENT_TYPE
    headers: tuple[tuple[str, str], ...] = ()


HTML_ERROR = Response(502, HTML_ERROR_PAGE, content_type="text/html")
EMPTY_BODY = Response(200, b"")


@dataclass(frozen=True, slots=True)
class _Call:
    """One authorized `/uapi` request as an endpoint sees it; `tr_cont` is its request header ("N": next)."""

    account: Account
    tr_id: str
    query: dict[str, str]
    tr_cont: str


class KisAnswer(Exception):
    """An error answer short-circuiting a request: HTTP status plus a KIS body."""

    def __init__(self, status: int, payload: dict[str, Any]) -> None:
        super().__init__(payload.get("msg_cd") or payload.get("error_code"))
        self.status = status
        self.payload = payload


def gateway_error(code: str, status: int = 500) -> KisAnswer:
    """EGW... gateway errors: non-200 with the usual envelope and rt_cd "1"."""
    return KisAnswer(status, {"rt_cd": "1", "msg_cd": code, "msg1": GATEWAY_MESSAGES[code]})


def oauth_error(code: str) -> KisAnswer:
    """Errors of the /oauth2 endpoints: HTTP 403 with `error_description` / `error_code`."""
    return KisAnswer(403, {"error_description": GATEWAY_MESSAGES[code], "error_code": code})


def business_error(msg_cd: str, msg1: str, rt_cd: str = "2") -> KisAnswer:
    """Business errors: HTTP 200 with rt_cd != "0"."""
    return KisAnswer(200, {"rt_cd": rt_cd, "msg_cd": msg_cd, "msg1": msg1})


def unknown_service(status: int) -> KisAnswer:
    return KisAnswer(status, {"rt_cd": "1", "msg_cd": UNKNOWN_SERVICE_CODE, "msg1": MSG_UNKNOWN_SERVICE})


def missing_field(name: str) -> KisAnswer:
    return business_error(INPUT_ERROR_CODE, f"ERROR INPUT FIELD NOT FOUND [{name}]")


class RestApp:
    """KIS REST protocol over the simulated market; thread-safe, keeps call and error counts."""

    def __init__(
        self,
        market: Market,
        accounts: Accounts,
        faults: Faults,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.market = market
        self.accounts = accounts
        self.faults = faults
        self.clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self._master_cache: dict[str, bytes] = {}
        self.derivatives = Derivatives(market)
        self._routes: dict[str, tuple[frozenset[str], Callable[[_Call], Response]]] = {
            protocol.INQUIRE_PRICE_PATH: (frozenset({TrId.INQUIRE_PRICE}), self._inquire_price),
            protocol.MULTI_PRICE_PATH: (frozenset({TrId.MULTI_PRICE}), self._multi_price),
            protocol.MINUTE_BARS_PATH: (frozenset({TrId.MINUTE_BARS}), self._minute_bars),
            protocol.DAILY_BARS_PATH: (frozenset({TrId.DAILY_BARS}), self._daily_bars),
            protocol.VOLUME_RANK_PATH: (frozenset({TrId.VOLUME_RANK}), self._volume_rank),
            protocol.BALANCE_PATH: (frozenset({TrId.BALANCE_REAL, TrId.BALANCE_PAPER}), self._balance),
            SEARCH_INFO_PATH: (frozenset({SEARCH_INFO_TR_ID}), self._search_info),
            DAILY_PRICE_PATH: (frozenset({DAILY_PRICE_TR_ID}), self._daily_price),
            protocol.FUOP_MINUTE_BARS_PATH: (frozenset({TrId.FUOP_MINUTE_BARS}), self._fuop_minute_bars),
            protocol.OPTION_BOARD_PATH: (frozenset({TrId.OPTION_BOARD}), self._option_board),
        }
        self._real_only = frozenset(
            {TrId.MULTI_PRICE, TrId.VOLUME_RANK, TrId.BALANCE_REAL, TrId.OPTION_BOARD}
        )

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(successful calls by path or tr_id, error answers by code) so far."""
        with self._lock:
            return dict(self.calls), dict(self.errors)

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes
    ) -> Response:
        """Answer one HTTP request; never raises (an internal error becomes EGW00002). A JSON answer to a
        `/uapi` call carries KIS's lower-case `tr_id`, `tr_cont` and `gt_uid` headers."""
        response = self._answer(method, target, headers, body)
        if not urlsplit(target).path.startswith(UAPI_PREFIX) or response.content_type != JSON_CONTENT_TYPE:
            return response
        given = {name for name, _ in response.headers}
        extra = tuple(
            (name, value)
            for name, value in (
                ("tr_id", (headers.get("tr_id") or "").strip()),
                ("tr_cont", ""),
                ("gt_uid", secrets.token_hex(16).upper()),
            )
            if name not in given
        )
        return Response(response.status, response.body, response.content_type, response.headers + extra)

    def _answer(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Response:
        parts = urlsplit(target)
        path = parts.path
        if path == FAULTS_PATH and method == "POST":  # before every fault: a rate limit cannot lock it out
            return self._arm_faults(body)
        try:
            delay = self.faults.rest_delay()
            if delay > 0:
                self._sleep(delay)
            if path in MASTER_PATHS and method == "GET":
                return self._count(path, self._master(MASTER_PATHS[path]))
            if path.startswith(UAPI_PREFIX):
                if self.faults.take_html_error():
                    return self._fault(HTML_ERROR, "html_error_page")
                if self.faults.take_empty_body():
                    return self._fault(EMPTY_BODY, "empty_body")
            if self.faults.rest_rate_limited():
                raise gateway_error(ErrorCode.RATE_LIMIT)
            if path == protocol.TOKEN_PATH:
                return self._count(path, self._token(method, body))
            if path == protocol.REVOKE_PATH:
                return self._count(path, self._revoke(method, body))
            if path == protocol.APPROVAL_PATH:
                return self._count(path, self._approval(method, body))
            route = self._routes.get(path)
            if route is None:
                raise unknown_service(404)
            if method != "GET":
                raise gateway_error("EGW00101", status=405)
            query = {key.upper(): values[0].strip() for key, values in parse_qs(parts.query, True).items()}
            account, tr_id = self._authorize(headers, route[0])
            call = _Call(account, tr_id, query, (headers.get("tr_cont") or "").strip())
            return self._count(tr_id, route[1](call))
        except KisAnswer as answer:
            with self._lock:
                self.errors[str(answer)] += 1
            return _json(answer.status, answer.payload)
        except Exception as error:
            # One line, no traceback: a traceback's frames (and loguru's variable values) would show the
            # request's headers and body, which carry app keys, secrets and tokens.
            logger.error("KIS simulator REST: internal error {} on {} {}", type(error).__name__, method, path)
            with self._lock:
                self.errors["EGW00002"] += 1
            return _json(500, {"rt_cd": "1", "msg_cd": "EGW00002", "msg1": GATEWAY_MESSAGES["EGW00002"]})

    def _arm_faults(self, body: bytes) -> Response:
        """Arm the faults of a `--faults` spec now; a bad spec arms nothing and answers 400 with why."""
        try:
            actions = parse_faults(body.decode("utf-8", errors="replace"))
        except FaultSpecError as error:
            return _json(400, {"error": str(error)})
        for action in actions:
            action(self.faults)
        logger.info("KIS simulator: faults armed: {}", body.decode("utf-8", errors="replace"))
        return _json(200, {"armed": len(actions)})

    # ---- gateway ----------------------------------------------------------------------------------------

    def _fault(self, response: Response, kind: str) -> Response:
        """A broken answer from in front of the gateway (a fault); counted among the errors by `kind`."""
        with self._lock:
            self.errors[kind] += 1
        return response

    def _count(self, key: str, response: Response) -> Response:
        with self._lock:
            self.calls[key] += 1
        return response

    def _authorize(self, headers: Mapping[str, str], allowed: frozenset[str]) -> tuple[Account, str]:
        app_key = (headers.get("appkey") or "").strip()
        app_secret = (headers.get("appsecret") or "").strip()
        if not app_key:
            raise gateway_error("EGW00102")
        if not app_secret:
            raise gateway_error("EGW00104")
        try:
            account = self.accounts.account(app_key, app_secret)
        except WrongSecret:
            raise gateway_error("EGW00105") from None
        if not self.accounts.admit(account):
            raise gateway_error(ErrorCode.RATE_LIMIT)
        scheme, _, token = (headers.get("authorization") or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise gateway_error("EGW00205")
        check = self.accounts.check_token(app_key, token.strip())
        if check is TokenCheck.INVALID:
            raise gateway_error(ErrorCode.TOKEN_INVALID)
        if check is TokenCheck.EXPIRED:
            raise gateway_error(ErrorCode.TOKEN_EXPIRED)
        custtype = (headers.get("custtype") or "P").strip()
        if custtype not in ("P", "B"):
            raise gateway_error("EGW00208")
        tr_id = (headers.get("tr_id") or "").strip()
        if tr_id not in allowed:
            raise unknown_service(500)
        if account.paper and tr_id in self._real_only:
            raise business_error(UNKNOWN_SERVICE_CODE, MSG_PAPER_UNSUPPORTED, rt_cd="1")
        if not account.paper and tr_id == TrId.BALANCE_PAPER:
            raise business_error(UNKNOWN_SERVICE_CODE, MSG_REAL_WITH_PAPER_TR, rt_cd="1")
        return account, tr_id

    # ---- oauth ------------------------------------------------------------------------------------------

    def _oauth_body(self, method: str, body: bytes) -> dict[str, Any]:
        if method != "POST":
            raise oauth_error("EGW00101")
        try:
            data = json.loads(body.decode("utf-8") or "{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise oauth_error("EGW00101") from None
        if not isinstance(data, dict):
            raise oauth_error("EGW00101")
        return data

    def _credentials(self, data: dict[str, Any], secret_field: str) -> tuple[str, str]:
        grant = data.get("grant_type")
        if not grant:
            raise oauth_error("EGW00115")
        if grant != "client_credentials":
            raise oauth_error("EGW00116")
        app_key, app_secret = data.get("appkey"), data.get(secret_field)
        if not isinstance(app_key, str) or not app_key.strip():
            raise oauth_error("EGW00102")
        if not isinstance(app_secret, str) or not app_secret.strip():
            raise oauth_error("EGW00104")
        return app_key.strip(), app_secret.strip()

    def _token(self, method: str, body: bytes) -> Response:
        app_key, app_secret = self._credentials(self._oauth_body(method, body), "appsecret")
        try:
            issued = self.accounts.issue_token(app_key, app_secret)
        except WrongSecret:
            raise oauth_error("EGW00105") from None
        except TooSoon:
            raise oauth_error(ErrorCode.TOKEN_TOO_SOON) from None
        return _json(200, {
            "access_token": issued.value,
            "access_token_token_expired": issued.expires_at.strftime("%Y-%m-%d %H:%M:%S"),
            "token_type": "Bearer",
            "expires_in": issued.expires_in,
        })

    def _revoke(self, method: str, body: bytes) -> Response:
        data = self._oauth_body(method, body)
        app_key, app_secret = data.get("appkey"), data.get("appsecret")
        if not isinstance(app_key, str) or not app_key.strip():
            raise oauth_error("EGW00102")
        if not isinstance(app_secret, str) or not app_secret.strip():
            raise oauth_error("EGW00104")
        token = data.get("token")
        try:
            revoked = isinstance(token, str) and self.accounts.revoke_token(
                app_key.strip(), app_secret.strip(), token.strip()
            )
        except WrongSecret:
            raise oauth_error("EGW00105") from None
        if not revoked:
            raise oauth_error(ErrorCode.TOKEN_INVALID)
        return _json(200, {"code": 200, "message": "접근토큰 폐기에 성공하였습니다"})

    def _approval(self, method: str, body: bytes) -> Response:
        app_key, secret = self._credentials(self._oauth_body(method, body), "secretkey")
        try:
            approval_key = self.accounts.issue_approval(app_key, secret)
        except WrongSecret:
            raise oauth_error("EGW00105") from None
        return _json(200, {"approval_key": approval_key})

    def _master(self, market_name: str) -> Response:
        with self._lock:
            data = self._master_cache.get(market_name)
        if data is None:
            data = master_zip(self.market.listings.values(), market_name, self.market.trading_date)
            with self._lock:
                self._master_cache[market_name] = data
        return Response(200, data, content_type="application/zip")

    # ---- quotations -------------------------------------------------------------------------------------

    def _listing(self, query: dict[str, str], suffix: str = "") -> Listing:
        market_key, code_key = f"FID_COND_MRKT_DIV_CODE{suffix}", f"FID_INPUT_ISCD{suffix}"
        if market_key not in query:
            raise missing_field(market_key)
        # KRX, Nextrade, unified; the multi-symbol price (numbered keys) has no unified code
        if query[market_key] not in (("J", "NX") if suffix else ("J", "NX", "UN")):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_MRKT_DIV_CODE")
        code = query.get(code_key)
        if code is None:
            raise missing_field(code_key)
        if not _CODE.match(code):
            raise business_error(LENGTH_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")
        listing = self.market.listings.get(code)
        if listing is None:
            raise business_error(NO_DATA_CODE, MSG_NO_DATA, rt_cd="7")
        return listing

    def _inquire_price(self, call: _Call) -> Response:
        listing = self._listing(call.query)
        now = self.clock.now()
        quote = self.market.venue_quote(listing.code, now, call.query["FID_COND_MRKT_DIV_CODE"])
        history = self.market.history(listing.code)
        today = self.market.trading_date
        facts = fundamentals(listing)
        price = quote.price
        previous = history[-1]
        pivot = (previous.high + previous.low + previous.close) // 3
        demark = previous.high + previous.low + 2 * previous.close
        year_high, year_high_day, year_low, year_low_day = _extremes(
            [bar for bar in history if bar.day.year == today.year], quote, today
        )
        high_250, high_250_day, low_250, low_250_day = _extremes(history[-250:], quote, today)
        output = {
            "iscd_stat_cls_code": _status_code(listing, quote),
            "marg_rate": "100.00" if listing.managed else "40.00",
            "rprs_mrkt_kor_name": listing.market,
            "new_hgpr_lwpr_cls_code": _new_high_low(quote, high_250, low_250),
            "bstp_kor_isnm": "",
            "temp_stop_yn": "Y" if quote.halted else "N",
            "oprc_rang_cont_yn": "N",
            "clpr_rang_cont_yn": "N",
            "crdt_able_yn": "N" if listing.managed or quote.halted else "Y",
            "grmn_rate_cls_code": "40",
            "elw_pblc_yn": "N",
            **_price_fields(quote),
            "acml_tr_pbmn": str(quote.value),
            "acml_vol": str(quote.volume),
            "prdy_vrss_vol_rate": _rate(quote.volume, listing.prev_volume),
            "stck_oprc": str(quote.open),
            "stck_hgpr": str(quote.high),
            "stck_lwpr": str(quote.low),
            "stck_mxpr": str(quote.upper_limit),
            "stck_llam": str(quote.lower_limit),
            "stck_sdpr": str(listing.prev_close),
            "wghn_avrg_stck_prc": f"{quote.value / quote.volume:.2f}" if quote.volume else "0.00",
            "hts_frgn_ehrt": _rate(facts.foreign_shares, listing.listed_shares),
            "frgn_ntby_qty": "0",
            "pgtr_ntby_qty": "0",
            "pvt_scnd_dmrs_prc": str(pivot + previous.high - previous.low),
            "pvt_frst_dmrs_prc": str(2 * pivot - previous.low),
            "pvt_pont_val": str(pivot),
            "pvt_frst_dmsp_prc": str(2 * pivot - previous.high),
            "pvt_scnd_dmsp_prc": str(pivot - previous.high + previous.low),
            "dmrs_val": str(demark // 2 - previous.low),
            "dmsp_val": str(demark // 2 - previous.high),
            "cpfn": str(facts.face_value * listing.listed_shares // 100_000_000),
            "rstc_wdth_prc": str(quote.upper_limit - listing.prev_close),
            "stck_fcam": str(facts.face_value),
            "stck_sspr": str(_substitute_price(listing)),
            "aspr_unit": str(tick_size(price)),
            "hts_deal_qty_unit_val": "1",
            "lstn_stcn": str(listing.listed_shares),
            "hts_avls": str(price * listing.listed_shares // 100_000_000),
            "per": _ratio(price, facts.eps),
            "pbr": _ratio(price, facts.bps),
            "stac_month": "12",
            "vol_tnrt": f"{quote.volume / listing.listed_shares * 100:.2f}",
            "eps": f"{facts.eps:.2f}",
            "bps": f"{facts.bps:.2f}",
            "d250_hgpr": str(high_250),
            "d250_hgpr_date": high_250_day,
            "d250_hgpr_vrss_prpr_rate": _rate(price - high_250, high_250),
            "d250_lwpr": str(low_250),
            "d250_lwpr_date": low_250_day,
            "d250_lwpr_vrss_prpr_rate": _rate(price - low_250, low_250),
            "stck_dryy_hgpr": str(year_high),
            "dryy_hgpr_vrss_prpr_rate": _rate(price - year_high, year_high),
            "dryy_hgpr_date": year_high_day,
            "stck_dryy_lwpr": str(year_low),
            "dryy_lwpr_vrss_prpr_rate": _rate(price - year_low, year_low),
            "dryy_lwpr_date": year_low_day,
            "w52_hgpr": str(high_250),
            "w52_hgpr_vrss_prpr_ctrt": _rate(price - high_250, high_250),
            "w52_hgpr_date": high_250_day,
            "w52_lwpr": str(low_250),
            "w52_lwpr_vrss_prpr_ctrt": _rate(price - low_250, low_250),
            "w52_lwpr_date": low_250_day,
            "whol_loan_rmnd_rate": "0.00",
            "ssts_yn": "N" if quote.halted else "Y",
            "stck_shrn_iscd": listing.code,
            "fcam_cnnm": "원",
            "cpfn_cnnm": "억",
            "apprch_rate": "0.00",
            "frgn_hldn_qty": str(facts.foreign_shares),
            "vi_cls_code": "N",
            "ovtm_vi_cls_code": "N",
            "last_ssts_cntg_qty": "0",
            "invt_caful_yn": "N",
            "mrkt_warn_cls_code": "00",
            "short_over_yn": "N",
            "sltr_yn": "N",
            "mang_issu_cls_code": "Y" if listing.managed else "N",
        }
        return _ok({"output": output})

    def _multi_price(self, call: _Call) -> Response:
        query = call.query
        indexes = sorted(
            {int(match[1]) for key, value in query.items() if value and (match := _MULTI_CODE_KEY.match(key))}
        )
        if not indexes:
            raise missing_field("FID_INPUT_ISCD_1")
        if len(indexes) > protocol.MULTI_PRICE_MAX_SYMBOLS or indexes[-1] > protocol.MULTI_PRICE_MAX_SYMBOLS:
            raise business_error(LENGTH_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")
        now = self.clock.now()
        rows = []
        for index in indexes:
            try:
                listing = self._listing(query, f"_{index}")
            except KisAnswer as answer:
                if answer.payload.get("msg_cd") == NO_DATA_CODE:
                    continue
                raise
            quote = self.market.quote(listing.code, now)
            sign_fields = _price_fields(quote)
            rows.append({
                "kospi_kosdaq_cls_name": listing.market,
                "mrkt_trtm_cls_name": "거래정지" if quote.halted else "",
                "hour_cls_code": "0",
                "inter_shrn_iscd": listing.code,
                "inter_kor_isnm": listing.name,
                "inter2_prpr": sign_fields["stck_prpr"],
                "inter2_prdy_vrss": sign_fields["prdy_vrss"],
                "prdy_vrss_sign": sign_fields["prdy_vrss_sign"],
                "prdy_ctrt": sign_fields["prdy_ctrt"],
                "acml_vol": str(quote.volume),
                "acml_tr_pbmn": str(quote.value),
                "inter2_oprc": str(quote.open),
                "inter2_hgpr": str(quote.high),
                "inter2_lwpr": str(quote.low),
                "inter2_llam": str(quote.lower_limit),
                "inter2_mxpr": str(quote.upper_limit),
                "inter2_askp": str(quote.ask1),
                "inter2_bidp": str(quote.bid1),
                "seln_rsqn": "0",
                "shnu_rsqn": "0",
                "total_askp_rsqn": "0",
                "total_bidp_rsqn": "0",
                "oprc_vrss_hgpr_rate": _rate(quote.high - quote.open, quote.open) if quote.open else "0.00",
                "intr_antc_cntg_vrss": "0",
                "intr_antc_cntg_vrss_sign": "3",
                "intr_antc_cntg_prdy_ctrt": "0.00",
                "intr_antc_vol": "0",
                "inter2_sdpr": str(listing.prev_close),
                "inter2_prdy_clpr": str(listing.prev_close),
            })
        return _ok({"output": rows})

    def _minute_bars(self, call: _Call) -> Response:
        query = call.query
        listing = self._listing(query)
        for name in ("FID_INPUT_HOUR_1", "FID_PW_DATA_INCU_YN", "FID_ETC_CLS_CODE"):
            if name not in query:
                raise missing_field(name)
        match = _HHMMSS.match(query["FID_INPUT_HOUR_1"])
        if match is None:
            raise business_error(LENGTH_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")
        now = self.clock.now()
        # "000000" is what clients send for "the latest bars"; a future time also answers up to now.
        if match[0] == LATEST_HOUR:
            until = now.time()
        else:
            until = time_of_day(int(match[1]), int(match[2]), int(match[3]))
        market_code = query["FID_COND_MRKT_DIV_CODE"]  # NX / UN: Nextrade's or both venues' trades
        bars = self.market.minute_bars(listing.code, now, until, market_code)
        bars = bars[-protocol.MINUTE_BARS_PER_CALL :]
        quote = self.market.quote(listing.code, now)
        day = self.market.trading_date.strftime("%Y%m%d")
        output1 = {
            **_price_fields(quote),
            "stck_prdy_clpr": str(listing.prev_close),
            "acml_vol": str(quote.volume),
            "acml_tr_pbmn": str(quote.value),
            "hts_kor_isnm": listing.name,
        }
        output2 = [
            {
                "stck_bsop_date": day,
                "stck_cntg_hour": bar.start.strftime("%H%M%S"),
                "stck_prpr": str(bar.close),
                "stck_oprc": str(bar.open),
                "stck_hgpr": str(bar.high),
                "stck_lwpr": str(bar.low),
                "cntg_vol": str(bar.volume),
                "acml_tr_pbmn": str(bar.cum_value),
            }
            for bar in reversed(bars)
        ]
        return _ok({"output1": output1, "output2": output2})

    def _daily_bars(self, call: _Call) -> Response:
        query = call.query
        listing = self._listing(query)
        for name in ("FID_INPUT_DATE_1", "FID_INPUT_DATE_2", "FID_PERIOD_DIV_CODE", "FID_ORG_ADJ_PRC"):
            if name not in query:
                raise missing_field(name)
        start, end = _date(query["FID_INPUT_DATE_1"]), _date(query["FID_INPUT_DATE_2"])
        facts = fundamentals(listing)
        period = query["FID_PERIOD_DIV_CODE"]
        if period not in ("D", "W", "M", "Y"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_PERIOD_DIV_CODE")
        now = self.clock.now()
        bars = _aggregate(self.market.daily_bars(listing.code, start, end, at=now), period)
        bars = bars[-protocol.DAILY_BARS_PER_CALL :]
        quote = self.market.quote(listing.code, now)
        previous = self.market.history(listing.code)[-1]
        output1 = {
            **_price_fields(quote),
            "stck_prdy_clpr": str(listing.prev_close),
            "acml_vol": str(quote.volume),
            "acml_tr_pbmn": str(quote.value),
            "hts_kor_isnm": listing.name,
            "stck_shrn_iscd": listing.code,
            "prdy_vol": str(previous.volume),
            "stck_mxpr": str(quote.upper_limit),
            "stck_llam": str(quote.lower_limit),
            "stck_oprc": str(quote.open),
            "stck_hgpr": str(quote.high),
            "stck_lwpr": str(quote.low),
            "stck_prdy_oprc": str(previous.open),
            "stck_prdy_hgpr": str(previous.high),
            "stck_prdy_lwpr": str(previous.low),
            "askp": str(quote.ask1),
            "bidp": str(quote.bid1),
            "prdy_vrss_vol": str(quote.volume - previous.volume),
            "vol_tnrt": f"{quote.volume / listing.listed_shares * 100:.2f}",
            "stck_fcam": str(facts.face_value),
            "lstn_stcn": str(listing.listed_shares),
            "cpfn": str(facts.face_value * listing.listed_shares // 100_000_000),
            "hts_avls": str(quote.price * listing.listed_shares // 100_000_000),
            "per": _ratio(quote.price, facts.eps),
            "eps": f"{facts.eps:.2f}",
            "pbr": _ratio(quote.price, facts.bps),
            "whol_loan_rmnd_rate": "0.00",
        }
        previous_close = None
        rows = []
        for bar in bars:
            change = 0 if previous_close is None else bar.close - previous_close
            rows.append({
                "stck_bsop_date": bar.day.strftime("%Y%m%d"),
                "stck_clpr": str(bar.close),
                "stck_oprc": str(bar.open),
                "stck_hgpr": str(bar.high),
                "stck_lwpr": str(bar.low),
                "acml_vol": str(bar.volume),
                "acml_tr_pbmn": str(bar.value),
                "flng_cls_code": "00",
                "prtt_rate": "0.00",
                "mod_yn": "N",
                "prdy_vrss_sign": "2" if change > 0 else "5" if change < 0 else "3",
                "prdy_vrss": str(change),
                "revl_issu_reas": "",
            })
            previous_close = bar.close
        output2 = rows[::-1]
        return _ok({"output1": output1, "output2": output2})

    def _volume_rank(self, call: _Call) -> Response:
        query = call.query
        required = (
            "FID_COND_MRKT_DIV_CODE", "FID_COND_SCR_DIV_CODE", "FID_INPUT_ISCD", "FID_DIV_CLS_CODE",
            "FID_BLNG_CLS_CODE", "FID_TRGT_CLS_CODE", "FID_TRGT_EXLS_CLS_CODE", "FID_INPUT_PRICE_1",
            "FID_INPUT_PRICE_2", "FID_VOL_CNT", "FID_INPUT_DATE_1",
        )
        for name in required:
            if name not in query:
                raise missing_field(name)
        if query["FID_COND_MRKT_DIV_CODE"] not in (*MARKET_CODES, ELW_MARKET_CODE):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_MRKT_DIV_CODE")
        if query["FID_COND_SCR_DIV_CODE"] != "20171":
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_SCR_DIV_CODE")
        sector = query["FID_INPUT_ISCD"]
        if not (len(sector) == 4 and sector.isdigit()):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_ISCD")
        # 0000 everything; otherwise a KRX index (업종) code: 1xxx are KOSDAQ indexes, the others KOSPI ones
        markets = (KOSPI, KOSDAQ) if sector == "0000" else (KOSDAQ,) if sector[0] == "1" else (KOSPI,)
        if query["FID_COND_MRKT_DIV_CODE"] == ELW_MARKET_CODE:
            markets = ()  # no ELWs are listed here
        kind = query["FID_DIV_CLS_CODE"] or "0"
        ranking = query["FID_BLNG_CLS_CODE"] or "0"
        if kind not in ("0", "1", "2") or ranking not in ("0", "1", "2", "3", "4"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_CLS_CODE")
        exclusions = query["FID_TRGT_EXLS_CLS_CODE"].ljust(10, "0")
        low_price, high_price = _int_or(query["FID_INPUT_PRICE_1"], 0), _int_or(query["FID_INPUT_PRICE_2"], 0)
        min_volume = _int_or(query["FID_VOL_CNT"], 0)
        now = self.clock.now()
        candidates = []
        for listing in self.market.listings.values():
            preferred = listing.code.endswith("5")
            wrong_kind = (kind == "1" and preferred) or (kind == "2" and not preferred)
            if listing.market not in markets or wrong_kind:
                continue
            if (exclusions[1] == "1" and listing.managed) or (exclusions[4] == "1" and preferred):
                continue
            quote = self.market.quote(listing.code, now)
            if exclusions[5] == "1" and quote.halted:
                continue
            if (low_price and quote.price < low_price) or (high_price and quote.price > high_price):
                continue
            if quote.volume < min_volume:
                continue
            candidates.append((listing, quote))
        key = _RANK_KEYS[ranking]
        candidates.sort(key=lambda item: (-key(item[0], item[1]), item[0].code))
        rows = []
        for rank, (listing, quote) in enumerate(candidates[:VOLUME_RANK_ROWS], start=1):
            avg_value = listing.avg_volume_20d * listing.prev_close
            rows.append({
                "hts_kor_isnm": listing.name,
                "mksc_shrn_iscd": listing.code,
                "data_rank": str(rank),
                **{k: v for k, v in _price_fields(quote).items() if k != "stck_prpr"},
                "stck_prpr": str(quote.price),
                "acml_vol": str(quote.volume),
                "prdy_vol": str(listing.prev_volume),
                "lstn_stcn": str(listing.listed_shares),
                "avrg_vol": str(listing.avg_volume_20d),
                "n_befr_clpr_vrss_prpr_rate": _rate(quote.price - listing.prev_close, listing.prev_close),
                "vol_inrt": _rate(quote.volume, listing.prev_volume),
                "vol_tnrt": f"{quote.volume / listing.listed_shares * 100:.2f}",
                "nday_vol_tnrt": f"{listing.avg_volume_20d / listing.listed_shares * 100:.2f}",
                "avrg_tr_pbmn": str(avg_value),
                "tr_pbmn_tnrt": f"{quote.value / max(1, listing.market_cap * 100_000_000) * 100:.2f}",
                "nday_tr_pbmn_tnrt": f"{avg_value / max(1, listing.market_cap * 100_000_000) * 100:.2f}",
                "acml_tr_pbmn": str(quote.value),
            })
        return _ok({"output": rows})

    def _balance(self, call: _Call) -> Response:
        account, tr_id, query = call.account, call.tr_id, call.query
        required = (
            "CANO", "ACNT_PRDT_CD", "AFHR_FLPR_YN", "INQR_DVSN", "UNPR_DVSN", "FUND_STTL_ICLD_YN",
            "FNCG_AMT_AUTO_RDPT_YN", "PRCS_DVSN",
        )
        for name in required:
            if name not in query:
                raise missing_field(name)
        if not re.match(r"^\d{8}$", query["CANO"]) or not re.match(r"^\d{2}$", query["ACNT_PRDT_CD"]):
            raise business_error(ACCOUNT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_ACNO")
        if query["INQR_DVSN"] not in ("01", "02"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_INQR_DVSN")
        if query["AFHR_FLPR_YN"] not in ("N", "Y", "X"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_AFHR_FLPR_YN")
        if query["PRCS_DVSN"] not in ("00", "01"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_PRCS_DVSN")
        held = account.holdings  # one snapshot: a fill between pages changes the next inquiry, not this one
        limit = BALANCE_ROWS_PAPER if account.paper else BALANCE_ROWS_REAL
        offset = _balance_offset(call.tr_cont, query.get("CTX_AREA_NK100", ""))
        now = self.clock.now()
        holdings = []
        total_purchase = total_value = 0
        for holding in held:
            quote = self.market.quote(holding.code, now)
            purchase = round(holding.average_price * holding.quantity)
            value = quote.price * holding.quantity
            total_purchase += purchase
            total_value += value
            holdings.append({
                "pdno": holding.code,
                "prdt_name": holding.name,
                "trad_dvsn_name": "현금",
                "bfdy_buy_qty": "0",
                "bfdy_sll_qty": "0",
                "thdt_buyqty": "0",
                "thdt_sll_qty": "0",
                "hldg_qty": str(holding.quantity),
                "ord_psbl_qty": str(holding.quantity),
                "pchs_avg_pric": f"{holding.average_price:.4f}",
                "pchs_amt": str(purchase),
                "prpr": str(quote.price),
                "evlu_amt": str(value),
                "evlu_pfls_amt": str(value - purchase),
                "evlu_pfls_rt": _rate(value - purchase, purchase),
                "evlu_erng_rt": _rate(value - purchase, purchase, digits=8),
                "loan_dt": "",
                "loan_amt": "0",
                "stln_slng_chgs": "0",
                "expd_dt": "",
                "fltt_rt": _rate(quote.price - quote.prev_close, quote.prev_close, digits=8),
                "bfdy_cprs_icdc": str(quote.price - quote.prev_close),
                "item_mgna_rt_name": "40%",
                "grta_rt_name": "",
                "sbst_pric": str(_substitute_price(self.market.listing(holding.code))),
                "stck_loan_unpr": "0.0000",
            })
        deposit = account.deposit
        summary = {
            "dnca_tot_amt": str(deposit),
            "nxdy_excc_amt": str(deposit),
            "prvs_rcdl_excc_amt": str(deposit),
            "cma_evlu_amt": "0",
            "bfdy_buy_amt": "0",
            "thdt_buy_amt": "0",
            "nxdy_auto_rdpt_amt": "0",
            "bfdy_sll_amt": "0",
            "thdt_sll_amt": "0",
            "d2_auto_rdpt_amt": "0",
            "bfdy_tlex_amt": "0",
            "thdt_tlex_amt": "0",
            "tot_loan_amt": "0",
            "scts_evlu_amt": str(total_value),
            "tot_evlu_amt": str(deposit + total_value),
            "nass_amt": str(deposit + total_value),
            "fncg_gld_auto_rdpt_yn": "",
            "pchs_amt_smtl_amt": str(total_purchase),
            "evlu_amt_smtl_amt": str(total_value),
            "evlu_pfls_smtl_amt": str(total_value - total_purchase),
            "tot_stln_slng_chgs": "0",
            "bfdy_tot_asst_evlu_amt": str(deposit + total_purchase),
            "asst_icdc_amt": str(total_value - total_purchase),
            "asst_icdc_erng_rt": _rate(total_value - total_purchase, deposit + total_purchase, digits=8),
        }
        following = offset + limit
        more = following < len(holdings)
        search = "^".join(query[name] for name in ("CANO", "ACNT_PRDT_CD", "AFHR_FLPR_YN", "INQR_DVSN"))
        body = {
            "ctx_area_fk100": f"{search}^".ljust(100),
            "ctx_area_nk100": (str(following) if more else "").ljust(100),
            "output1": holdings[offset:following],
            "output2": [summary],
        }
        return _ok(body, tr_id=tr_id, tr_cont=MORE if more else LAST)

    def _search_info(self, call: _Call) -> Response:
        """상품기본조회: a stock's product facts (PRDT_TYPE_CD 300); other product types hold no data here."""
        query = call.query
        for name in ("PDNO", "PRDT_TYPE_CD"):
            if name not in query:
                raise missing_field(name)
        listing = self.market.listings.get(query["PDNO"])
        if listing is None or query["PRDT_TYPE_CD"] != STOCK_PRODUCT_TYPE:
            raise business_error(NO_DATA_CODE, MSG_NO_DATA, rt_cd="7")
        share_kind = "우선주" if listing.code.endswith("5") else "보통주"
        english = f"KRX {listing.code}"
        output = {
            "pdno": listing.code,
            "prdt_type_cd": STOCK_PRODUCT_TYPE,
            "prdt_name": listing.name,
            "prdt_name120": f"{listing.name}{share_kind}",
            "prdt_abrv_name": listing.name,
            "prdt_eng_name": english,
            "prdt_eng_name120": english,
            "prdt_eng_abrv_name": english,
            "std_pdno": listing.isin,
            "shtn_pdno": listing.code,
            "prdt_sale_stat_cd": "",
            "prdt_risk_grad_cd": "",
            "prdt_clsf_cd": "101210",
            "prdt_clsf_name": "국내주식",
            "sale_strt_dt": "",
            "sale_end_dt": "",
            "wrap_asst_type_cd": "",
            "ivst_prdt_type_cd": "",
            "ivst_prdt_type_cd_name": "",
            "frst_erlm_dt": "",
        }
        return _ok({"output": output})

    def _daily_price(self, call: _Call) -> Response:
        """주식현재가 일자별: the latest 30 days, weeks or months, newest first, today's so far included."""
        query = call.query
        listing = self._listing(query)
        for name in ("FID_PERIOD_DIV_CODE", "FID_ORG_ADJ_PRC"):
            if name not in query:
                raise missing_field(name)
        period = query["FID_PERIOD_DIV_CODE"]
        if period not in ("D", "W", "M"):
            raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_PERIOD_DIV_CODE")
        now = self.clock.now()
        days = self.market.daily_bars(listing.code, date.min, self.market.trading_date, at=now)
        bars = _aggregate(days, period)
        foreign_rate = _rate(fundamentals(listing).foreign_shares, listing.listed_shares)
        rows = []
        # each bar with the one before it (the oldest bar of the history with itself)
        for before, bar in list(zip([*bars[:1], *bars[:-1]], bars, strict=True))[-DAILY_PRICE_ROWS:]:
            change = bar.close - before.close
            rows.append({
                "stck_bsop_date": bar.day.strftime("%Y%m%d"),
                "stck_oprc": str(bar.open),
                "stck_hgpr": str(bar.high),
                "stck_lwpr": str(bar.low),
                "stck_clpr": str(bar.close),
                "acml_vol": str(bar.volume),
                "prdy_vrss_vol_rate": _rate(bar.volume - before.volume, before.volume),
                "prdy_vrss": str(change),
                "prdy_vrss_sign": "2" if change > 0 else "5" if change < 0 else "3",
                "prdy_ctrt": _rate(change, before.close),
                "hts_frgn_ehrt": foreign_rate,
                "frgn_ntby_qty": "0",
                "flng_cls_code": "00",
                "acml_prtt_rate": "0.00",
            })
        return _ok({"output": rows[::-1]})


    def _fuop_minute_bars(self, call: _Call) -> Response:
        """선물옵션 분봉조회, answered by `tools.kis_sim.futures`."""
        try:
            return _ok(self.derivatives.minute_chart(call.query, self.clock.now()))
        except QueryError as error:
            raise business_error(error.msg_cd, error.msg1, error.rt_cd) from None

    def _option_board(self, call: _Call) -> Response:
        """국내옵션전광판_콜풋 (real accounts only), answered by `tools.kis_sim.futures`."""
        try:
            return _ok(self.derivatives.board(call.query, self.clock.now()))
        except QueryError as error:
            raise business_error(error.msg_cd, error.msg1, error.rt_cd) from None


def _balance_offset(tr_cont: str, nk100: str) -> int:
    """The first row of the page asked for: 0, or on a follow-up call (tr_cont "N") the row that the
    previous page's ctx_area_nk100 names."""
    if tr_cont != NEXT:
        return 0
    if not (nk100.isascii() and nk100.isdigit()):
        raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_CTX_AREA_NK100")
    return int(nk100)


# ---- formatting helpers --------------------------------------------------------------------------------


def _json(status: int, payload: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return Response(status, json.dumps(payload, ensure_ascii=False).encode("utf-8"), headers=headers)


def _ok(payload: dict[str, Any], tr_id: str = "", tr_cont: str = "") -> Response:
    body = {"rt_cd": "0", "msg_cd": ErrorCode.SUCCESS.value, "msg1": MSG_OK, **payload}
    headers = (("tr_cont", tr_cont),) + ((("tr_id", tr_id),) if tr_id else ())
    return _json(200, body, headers)


def _rate(part: int | float, whole: int | float, digits: int = 2) -> str:
    return f"{part / whole * 100:.{digits}f}" if whole else f"{0:.{digits}f}"


def _price_fields(quote: QuoteState) -> dict[str, str]:
    change = quote.price - quote.prev_close
    if quote.price >= quote.upper_limit:
        sign = protocol.SIGN_UPPER_LIMIT
    elif quote.price <= quote.lower_limit:
        sign = protocol.SIGN_LOWER_LIMIT
    elif change > 0:
        sign = protocol.SIGN_RISE
    elif change < 0:
        sign = protocol.SIGN_FALL
    else:
        sign = protocol.SIGN_FLAT
    return {
        "stck_prpr": str(quote.price),
        "prdy_vrss": str(change),
        "prdy_vrss_sign": sign,
        "prdy_ctrt": _rate(change, quote.prev_close),
    }


def _status_code(listing: Listing, quote: QuoteState) -> str:
    """iscd_stat_cls_code: 58 halted, 51 managed, 55 normal (credit allowed)."""
    if quote.halted:
        return "58"
    if listing.managed:
        return "51"
    return "55"


def _extremes(
    bars: Sequence[DailyBarState], quote: QuoteState, today: date
) -> tuple[int, str, int, str]:
    """(high, its date, low, its date) over `bars` and today's trading so far; the latest day wins a tie."""
    days = [(bar.high, bar.low, bar.day) for bar in bars if bar.high]
    if quote.high:
        days.append((quote.high, quote.low, today))
    if not days:
        return quote.price, today.strftime("%Y%m%d"), quote.price, today.strftime("%Y%m%d")
    high = max(days, key=lambda day: (day[0], day[2]))
    low = min(days, key=lambda day: (day[1], -day[2].toordinal()))
    return high[0], high[2].strftime("%Y%m%d"), low[1], low[2].strftime("%Y%m%d")


def _new_high_low(quote: QuoteState, high: int, low: int) -> str:
    """new_hgpr_lwpr_cls_code: "신고가" / "신저가" when today set the 250-day high / low, else blank."""
    if quote.high and quote.high >= high:
        return "신고가"
    if quote.low and quote.low <= low:
        return "신저가"
    return ""


def _ratio(price: int, per_share: int) -> str:
    """PER or PBR as KIS prints them: two decimals, "0.00" when the per-share figure is not positive."""
    return f"{price / per_share:.2f}" if per_share > 0 else "0.00"


def _substitute_price(listing: Listing) -> int:
    """대용가 (collateral value): 70 % of the previous close, the same figure the balance inquiry shows."""
    return listing.prev_close * 7 // 10


def _date(text: str) -> date:
    """A YYYYMMDD parameter; year 0000 (clients send "00000101" for "from the start") is the earliest date."""
    if not _YYYYMMDD.match(text):
        raise business_error(LENGTH_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_FIELD_LENGTH")
    if text.startswith("0000"):
        return date.min
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_DATE") from None


def _int_or(text: str, default: int) -> int:
    try:
        return int(text) if text else default
    except ValueError:
        raise business_error(INPUT_ERROR_CODE, "ERROR : INPUT INVALID_CHECK_NUMBER") from None


def _aggregate(bars: list[DailyBarState], period: str) -> list[DailyBarState]:
    """Daily bars grouped by week (W), month (M) or year (Y); each group is dated by its last day."""
    if period == "D":
        return bars

    def group(day: date) -> tuple[int, ...]:
        if period == "W":
            return tuple(day.isocalendar()[:2])
        return (day.year, day.month) if period == "M" else (day.year,)

    result: list[DailyBarState] = []
    current: list[DailyBarState] = []
    for bar in bars:
        if current and group(current[-1].day) != group(bar.day):
            result.append(_merge(current))
            current = []
        current.append(bar)
    if current:
        result.append(_merge(current))
    return result


def _merge(bars: list[DailyBarState]) -> DailyBarState:
    return DailyBarState(
        day=bars[-1].day,
        open=bars[0].open,
        high=max(bar.high for bar in bars),
        low=min(bar.low for bar in bars),
        close=bars[-1].close,
        volume=sum(bar.volume for bar in bars),
        value=sum(bar.value for bar in bars),
    )


_RANK_KEYS: dict[str, Callable[[Listing, QuoteState], float]] = {
    "0": lambda listing, quote: quote.volume,
    "1": lambda listing, quote: quote.volume / max(1, listing.prev_volume),
    "2": lambda listing, quote: quote.volume / listing.listed_shares,
    "3": lambda listing, quote: quote.value,
    "4": lambda listing, quote: quote.value / max(1, listing.market_cap),
}


# ---- HTTP shell ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = self.headers.get("content-length")
        try:
            size = int(length) if length else 0
        except ValueError:
            size = -1
        if size < 0 or size > 1_000_000:
            response = _json(400, {"rt_cd": "1", "msg_cd": "EGW00101", "msg1": GATEWAY_MESSAGES["EGW00101"]})
            self.close_connection = True
        else:
            body = self.rfile.read(size) if size else b""
            headers = {key.lower(): value for key, value in self.headers.items()}
            response = self.server.app.handle(method, self.path, headers, body)
        try:
            self.send_response(response.status)
            # Canonical case, as KIS sends them: KIS's own sample client makes a field of every all-lower-case
            # header name, and "content-type" is no valid field name.
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(response.body)
        except ConnectionError as exc:  # the client gave up waiting (e.g. its timeout during slow_rest)
            self.close_connection = True
            logger.info(
                "KIS simulator REST: client left before the answer to {} {} ({})",
                method, urlsplit(self.path).path, type(exc).__name__,
            )

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines may carry nothing secret, but they are noise at 20 calls a second."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: RestApp) -> None:
        self.app = app
        super().__init__(address, _Handler)

    def handle_error(self, request: object, client_address: tuple[str, int]) -> None:
        """One log line instead of socketserver's traceback on stderr. Only transport failures get here (the
        app answers its own errors), and a traceback's locals could show request headers with secrets."""
        error = sys.exc_info()[1]
        kind, host = type(error).__name__, client_address[0]
        if isinstance(error, ConnectionError):
            logger.info("KIS simulator REST: connection from {} lost ({})", host, kind)
        else:
            logger.error("KIS simulator REST: request from {} failed ({}: {})", host, kind, error)


class RestServer:
    """The REST half of the simulator on `host:port` (port 0 picks a free one). `start()` / `stop()`."""

    def __init__(
        self,
        market: Market,
        accounts: Accounts,
        faults: Faults,
        clock: Clock,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.app = RestApp(market, accounts, faults, clock, sleep=sleep)
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> RestServer:
        if self._server is not None:
            raise RuntimeError("RestServer already started")
        self._server = _Server(self._address, self.app)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="kis-sim-rest", daemon=True
        )
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("RestServer is not started")
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("RestServer is not started")
        host = self._server.server_address[0]
        return f"http://{host}:{self.port}"

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice or before `start()`."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> RestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["Response", "RestApp", "RestServer"]
