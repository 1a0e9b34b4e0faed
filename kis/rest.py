"""KIS REST client: auth, quotations, bars and the balance inquiry over one `requests.Session`.

Every call passes the per-key rate limiter, maps failures to the typed errors of `kis.errors`, retries
rate-limit and transient failures with the backoff of `RateLimitSettings`, and on a rejected token
(EGW00123/EGW00121) asks its `TokenSource` for a fresh one and repeats the call once. Plain code, no
threads of its own: actors call it from their own threads; the limiter is what they share.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import Any, Protocol

import requests
from loguru import logger
from pydantic import SecretStr

from config.accounts import Account
from config.settings import RateLimitSettings
from core.bars import DailyBar, MinuteBar
from kis import protocol
from kis.errors import (
    KisError,
    KisRateLimited,
    KisTokenExpired,
    KisTransportError,
    KisUnparseableResponse,
    decode_body,
    error_from_payload,
)
from kis.models import (
    AccessToken,
    ApprovalKey,
    FuopBar,
    FuopChart,
    Holding,
    MultiQuote,
    OptionBoard,
    OptionQuote,
    Quote,
)
from kis.protocol import TrId
from kis.ratelimit import PROCESS_LIMITERS, RateLimiterRegistry, rate_for
from runtime.clock import KST, Clock, SystemClock

TOKEN_ISSUE_INTERVAL_SECONDS = 60.0
"""KIS issues at most one access token per minute per key (EGW00133 otherwise)."""
MARKET_KRX = "J"
MORE_PAGES = frozenset({"M", "F"})
NEXT_PAGE = "N"
MARKET_CAP_UNIT = 100_000_000
HALTED_TREATMENT = "거래정지"
"""mrkt_trtm_cls_name (market treatment) of a halted symbol in an intstock-multprice row."""
"""inquire-price `hts_avls` is in 억원 (100 million KRW)."""
_SYMBOL = re.compile(r"^[0-9A-Z]{6}$")
_FUOP_CODE = re.compile(r"^[1-3][0-9A-Z]{5}([0-9]{3})?$")
"""A KIS futures (101W09) or option (201W09340) short code."""
_OPTION_MONTH = re.compile(r"^20[0-9]{2}(0[1-9]|1[0-2])$")
MARKET_INDEX_FUTURES, MARKET_INDEX_OPTIONS = "F", "O"
OPTION_BOARD_SCREEN = "20503"
"""FID_COND_SCR_DIV_CODE of display-board-callput: KIS's HTS screen [0503]."""
_KIS_TIME = "%Y-%m-%d %H:%M:%S"


class TokenSource(Protocol):
    """Where the client gets its access token. The TokenActor implements it for the running system.

    `refresh` receives the token KIS rejected, so a source shared by several callers can tell whether
    someone else already replaced it and hand out that one instead of issuing again.
    """

    def current(self) -> SecretStr: ...

    def refresh(self, rejected: SecretStr) -> SecretStr: ...


class IssuingTokenSource:
    """A token source that issues through the client itself: on first use, near expiry and on rejection.

    Meant for tests, tools and single-process use; it keeps the token in memory only.
    """

    def __init__(self, client: KisRestClient, clock: Clock, margin: timedelta = timedelta(minutes=5)) -> None:
        self._client = client
        self._clock = clock
        self._margin = margin
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def current(self) -> SecretStr:
        with self._lock:
            if self._token is None or not self._token.is_valid_at(self._clock.now(), self._margin):
                self._token = self._client.issue_token()
            return self._token.token

    def refresh(self, rejected: SecretStr) -> SecretStr:
        with self._lock:
            held = self._token
            if held is not None and held.token.get_secret_value() != rejected.get_secret_value():
                return held.token
            self._token = self._client.issue_token()
            return self._token.token


@dataclass(frozen=True, slots=True)
class Reply:
    """A successful KIS answer: the decoded body and the `tr_cont` response header (paging)."""

    body: dict[str, Any]
    tr_cont: str


class KisRestClient:
    """One app key's REST access to KIS (or to the simulator, through `base_url`)."""

    def __init__(
        self,
        account: Account,
        *,
        base_url: str | None = None,
        tokens: TokenSource | None = None,
        clock: Clock | None = None,
        rate_limits: RateLimitSettings | None = None,
        limiters: RateLimiterRegistry = PROCESS_LIMITERS,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._account = account
        default_url = protocol.PAPER_REST_URL if account.paper else protocol.REAL_REST_URL
        self._base_url = (base_url or default_url).rstrip("/")
        self._clock = clock or SystemClock()
        self._settings = rate_limits or RateLimitSettings()
        self._limiter = limiters.limiter_for(account.app_key, rate_for(self._settings, account.paper))
        self._own_session = session is None
        self._session = session or requests.Session()
        self._timeout = timeout
        self._sleep = sleep
        self._tokens: TokenSource = tokens or IssuingTokenSource(self, self._clock)
        self._issued_at: float | None = None

    def __repr__(self) -> str:
        mode = "paper" if self._account.paper else "real"
        return f"KisRestClient({self._account.name}, {mode}, {self._base_url})"

    @property
    def paper(self) -> bool:
        return self._account.paper

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def tokens(self) -> TokenSource:
        return self._tokens

    def close(self) -> None:
        if self._own_session:
            self._session.close()

    def __enter__(self) -> KisRestClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- auth -------------------------------------------------------------------------------------

    def _credentials_body(self, *, secret_field: str) -> dict[str, str]:
        """tokenP names the secret `appsecret`, Approval names it `secretkey`."""
        return {
            "grant_type": "client_credentials",
            "appkey": self._account.app_key.get_secret_value(),
            secret_field: self._account.app_secret.get_secret_value(),
        }

    def issue_token(self) -> AccessToken:
        """POST /oauth2/tokenP. KIS allows one issuance a minute; a second raises `KisTokenTooSoon`."""
        body = self._credentials_body(secret_field="appsecret")
        reply = self._call("POST", protocol.TOKEN_PATH, json_body=body, authorized=False)
        self._issued_at = time.monotonic()
        return self._access_token(reply.body)

    def issue_approval_key(self) -> ApprovalKey:
        """POST /oauth2/Approval (the WebSocket key; note the body field `secretkey`)."""
        body = self._credentials_body(secret_field="secretkey")
        reply = self._call("POST", protocol.APPROVAL_PATH, json_body=body, authorized=False)
        key = reply.body.get("approval_key")
        if not isinstance(key, str) or not key:
            path = protocol.APPROVAL_PATH
            raise KisUnparseableResponse(f"{path}: answer has no approval_key", path=path, status=200)
        return ApprovalKey(key=SecretStr(key), issued_at=self._clock.now())

    # --- quotations -------------------------------------------------------------------------------

    def quote(self, symbol: str) -> Quote:
        """inquire-price: one symbol's current price, limits and status."""
        path = protocol.INQUIRE_PRICE_PATH
        params = {"FID_COND_MRKT_DIV_CODE": MARKET_KRX, "FID_INPUT_ISCD": _checked_symbol(symbol)}
        reply = self._call("GET", path, tr_id=TrId.INQUIRE_PRICE, params=params)
        row = _Row(_output_object(reply.body, "output", path), path)
        return Quote(
            symbol=symbol,
            price=row.integer("stck_prpr", required=True),
            change=row.integer("prdy_vrss"),
            sign=row.text("prdy_vrss_sign"),
            change_rate=row.number("prdy_ctrt"),
            open=row.integer("stck_oprc"),
            high=row.integer("stck_hgpr"),
            low=row.integer("stck_lwpr"),
            upper_limit=row.integer("stck_mxpr"),
            lower_limit=row.integer("stck_llam"),
            base_price=row.integer("stck_sdpr"),
            volume=row.integer("acml_vol"),
            value=row.integer("acml_tr_pbmn"),
            market_cap=row.integer("hts_avls") * MARKET_CAP_UNIT,
            listed_shares=row.integer("lstn_stcn"),
            halted=row.text("temp_stop_yn") == "Y",
            status_code=row.text("iscd_stat_cls_code"),
            warning_code=row.text("mrkt_warn_cls_code"),
            vi_code=row.text("vi_cls_code"),
        )

    def multi_quote_batch(self, symbols: Sequence[str]) -> list[MultiQuote]:
        """intstock-multprice for 1 to 30 symbols: one call, rows in KIS's order."""
        reply = self._call("GET", protocol.MULTI_PRICE_PATH, tr_id=TrId.MULTI_PRICE,
                           params=_multi_quote_query(symbols))
        return multi_quote_rows(reply.body)

    def multi_quotes(self, symbols: Sequence[str]) -> list[MultiQuote]:
        """intstock-multprice for any number of symbols, in chunks of 30 (ceil(n/30) calls)."""
        return [row for batch in self.iter_multi_quote_batches(symbols) for row in batch]

    def iter_multi_quote_batches(self, symbols: Sequence[str]) -> Iterator[list[MultiQuote]]:
        """One list per 30-symbol call, as each call returns (a scanner can act between batches)."""
        for symbol in symbols:
            _checked_symbol(symbol)
        size = protocol.MULTI_PRICE_MAX_SYMBOLS
        for start in range(0, len(symbols), size):
            yield self.multi_quote_batch(symbols[start : start + size])

    def minute_bars(
        self,
        symbol: str,
        *,
        until: clock_time | None = None,
        since: clock_time | None = None,
        max_pages: int = 20,
        market_code: str = MARKET_KRX,
    ) -> list[MinuteBar]:
        """Today's one-minute bars from `since` to `until` (inclusive, default: now), oldest first;
        `market_code` J (KRX), NX (Nextrade) or UN (both venues, as the unified feed streams them).

        KIS returns at most 30 bars per call, newest first, ending at FID_INPUT_HOUR_1; the client pages
        back one minute before the oldest bar until `since`, a short page, or no further progress.
        """
        path = protocol.MINUTE_BARS_PATH
        code = _checked_symbol(symbol)
        end = until or self._clock.now().time().replace(microsecond=0)
        cursor = end
        bars: dict[datetime, MinuteBar] = {}
        for _ in range(max_pages):
            params = {
                "FID_ETC_CLS_CODE": "",
                "FID_COND_MRKT_DIV_CODE": market_code,
                "FID_INPUT_ISCD": code,
                "FID_INPUT_HOUR_1": cursor.strftime("%H%M%S"),
                "FID_PW_DATA_INCU_YN": "Y",
            }
            reply = self._call("GET", path, tr_id=TrId.MINUTE_BARS, params=params)
            page = [_minute_bar(code, _Row(row, path)) for row in _output_rows(reply.body, "output2", path)]
            page = [bar for bar in page if bar is not None]
            for bar in page:
                bars.setdefault(bar.time, bar)
            if len(page) < protocol.MINUTE_BARS_PER_CALL:
                break
            oldest = min(bar.time for bar in page)
            if since is not None and oldest.time() <= since:
                break
            previous = (oldest - timedelta(minutes=1)).time()
            if previous >= cursor:
                break
            cursor = previous
        chosen = (
            bar
            for bar in bars.values()
            if bar.time.time() <= end and (since is None or bar.time.time() >= since)
        )
        return sorted(chosen, key=lambda bar: bar.time)

    def daily_bars(
        self, symbol: str, start: date, end: date, *, adjusted: bool = True, max_pages: int = 100
    ) -> list[DailyBar]:
        """Daily bars from `start` to `end` (inclusive), oldest first; 100 per call, paged back."""
        if start > end:
            raise ValueError(f"start {start} is after end {end}")
        path = protocol.DAILY_BARS_PATH
        code = _checked_symbol(symbol)
        cursor = end
        bars: dict[date, DailyBar] = {}
        for _ in range(max_pages):
            params = {
                "FID_COND_MRKT_DIV_CODE": MARKET_KRX,
                "FID_INPUT_ISCD": code,
                "FID_INPUT_DATE_1": start.strftime("%Y%m%d"),
                "FID_INPUT_DATE_2": cursor.strftime("%Y%m%d"),
                "FID_PERIOD_DIV_CODE": "D",
                "FID_ORG_ADJ_PRC": "0" if adjusted else "1",
            }
            reply = self._call("GET", path, tr_id=TrId.DAILY_BARS, params=params)
            page = [_daily_bar(code, _Row(row, path)) for row in _output_rows(reply.body, "output2", path)]
            page = [bar for bar in page if bar is not None]
            for bar in page:
                bars.setdefault(bar.day, bar)
            if len(page) < protocol.DAILY_BARS_PER_CALL:
                break
            previous = min(bar.day for bar in page) - timedelta(days=1)
            if previous < start or previous >= cursor:
                break
            cursor = previous
        return sorted((bar for bar in bars.values() if start <= bar.day <= end), key=lambda bar: bar.day)

    def fuop_minute_bars(
        self,
        code: str,
        *,
        until: datetime | None = None,
        since: datetime | None = None,
        max_pages: int = 10,
    ) -> FuopChart:
        """inquire-time-fuopchartprice: a KOSPI200 futures or option contract's one-minute bars from `since`
        to `until` (inclusive, default: now), oldest first, with the contract's state from the newest page.

        KIS answers at most 102 bars per call, newest first, ending at FID_INPUT_DATE_1/FID_INPUT_HOUR_1; the
        client pages back one minute before the oldest bar until `since`, a short page, or no progress.
        """
        if not isinstance(code, str) or not _FUOP_CODE.match(code):
            raise ValueError(f"not a KIS futures or option code (e.g. 101W09, 201W09340): {code!r}")
        path = protocol.FUOP_MINUTE_BARS_PATH
        market = MARKET_INDEX_FUTURES if code.startswith("1") else MARKET_INDEX_OPTIONS
        end = (until or self._clock.now()).astimezone(KST).replace(microsecond=0)
        cursor = end
        bars: dict[datetime, FuopBar] = {}
        summary: dict[str, Any] = {}
        for _ in range(max_pages):
            params = {
                "FID_COND_MRKT_DIV_CODE": market,
                "FID_INPUT_ISCD": code,
                "FID_HOUR_CLS_CODE": "60",
                "FID_PW_DATA_INCU_YN": "Y",
                "FID_FAKE_TICK_INCU_YN": "N",
                "FID_INPUT_DATE_1": cursor.strftime("%Y%m%d"),
                "FID_INPUT_HOUR_1": cursor.strftime("%H%M%S"),
            }
            reply = self._call("GET", path, tr_id=TrId.FUOP_MINUTE_BARS, params=params)
            summary = summary or _output_object(reply.body, "output1", path)
            page = [_fuop_bar(code, _Row(row, path)) for row in _output_rows(reply.body, "output2", path)]
            page = [bar for bar in page if bar is not None]
            for bar in page:
                bars.setdefault(bar.time, bar)
            if len(page) < protocol.FUOP_MINUTE_BARS_PER_CALL:
                break
            oldest = min(bar.time for bar in page)
            if since is not None and oldest <= since:
                break
            previous = oldest - timedelta(minutes=1)
            if previous >= cursor:
                break
            cursor = previous
        chosen = sorted(
            (bar for bar in bars.values() if bar.time <= end and (since is None or bar.time >= since)),
            key=lambda bar: bar.time,
        )
        row = _Row(summary, path)
        return FuopChart(
            code=code,
            name=row.text("hts_kor_isnm"),
            price=row.number("futs_prpr"),
            prev_close=row.number("futs_prdy_clpr"),
            index=row.number("kospi200_nmix"),
            volume=row.integer("acml_vol"),
            open_interest=row.integer("hts_otst_stpl_qty"),
            bars=tuple(chosen),
        )

    def option_board(self, month: str) -> OptionBoard:
        """display-board-callput (real accounts only): the calls and puts of one KOSPI200 option month
        (YYYYMM), every listed strike KIS answers (at most 100 a side). KIS asks for at most one call a
        second; the caller paces it (the minute job makes one a minute)."""
        if not isinstance(month, str) or not _OPTION_MONTH.match(month):
            raise ValueError(f"not an option month YYYYMM: {month!r}")
        path = protocol.OPTION_BOARD_PATH
        params = {
            "FID_COND_MRKT_DIV_CODE": MARKET_INDEX_OPTIONS,
            "FID_COND_SCR_DIV_CODE": OPTION_BOARD_SCREEN,
            "FID_MRKT_CLS_CODE": "CO",
            "FID_MTRT_CNT": month,
            "FID_MRKT_CLS_CODE1": "PO",
            "FID_COND_MRKT_CLS_CODE": "",
        }
        reply = self._call("GET", path, tr_id=TrId.OPTION_BOARD, params=params)
        calls = tuple(_option_quote(_Row(row, path)) for row in _output_rows(reply.body, "output1", path))
        puts = tuple(_option_quote(_Row(row, path)) for row in _output_rows(reply.body, "output2", path))
        return OptionBoard(month=month, calls=calls, puts=puts)

    # --- account ----------------------------------------------------------------------------------

    def holdings(self, *, max_pages: int = 100) -> list[Holding]:
        """inquire-balance (TTTC8434R real / VTTC8434R paper): every output1 row, all pages.

        KIS pages with the `tr_cont` header ("M"/"F": more) and the body's ctx_area_fk100/nk100, sent
        back with request header tr_cont "N".
        """
        if not self._account.account_no:
            raise ValueError("the balance inquiry needs the account number (CANO) of the account")
        path = protocol.BALANCE_PATH
        tr_id = TrId.BALANCE_PAPER if self._account.paper else TrId.BALANCE_REAL
        fk100 = nk100 = tr_cont = ""
        holdings: list[Holding] = []
        for _ in range(max_pages):
            params = {
                "CANO": self._account.account_no,
                "ACNT_PRDT_CD": self._account.product_code,
                "AFHR_FLPR_YN": "N",
                "OFL_YN": "",
                "INQR_DVSN": "01",
                "UNPR_DVSN": "01",
                "FUND_STTL_ICLD_YN": "N",
                "FNCG_AMT_AUTO_RDPT_YN": "N",
                "PRCS_DVSN": "00",
                "CTX_AREA_FK100": fk100,
                "CTX_AREA_NK100": nk100,
            }
            reply = self._call("GET", path, tr_id=tr_id, params=params, tr_cont=tr_cont)
            holdings.extend(_holding(_Row(row, path)) for row in _output_rows(reply.body, "output1", path))
            if reply.tr_cont not in MORE_PAGES:
                break
            fk100 = str(reply.body.get("ctx_area_fk100", "")).strip()
            nk100 = str(reply.body.get("ctx_area_nk100", "")).strip()
            tr_cont = NEXT_PAGE
        else:
            logger.warning("{}: stopped after {} pages; more holdings may exist", path, max_pages)
        return holdings

    # --- transport --------------------------------------------------------------------------------

    def call(
        self,
        method: str,
        path: str,
        *,
        tr_id: str = "",
        params: Mapping[str, str] | None = None,
        tr_cont: str = "",
    ) -> Reply:
        """Any authorized KIS call, with the same pacing, retries and error mapping as the named ones."""
        return self._call(method, path, tr_id=tr_id, params=params, tr_cont=tr_cont)

    def _call(
        self,
        method: str,
        path: str,
        *,
        tr_id: str = "",
        params: Mapping[str, str] | str | None = None,
        json_body: Mapping[str, str] | None = None,
        tr_cont: str = "",
        authorized: bool = True,
    ) -> Reply:
        token = self._tokens.current() if authorized else None
        refreshed = False
        retries = 0
        while True:
            try:
                return self._send(method, path, tr_id, params, json_body, tr_cont, token)
            except KisTokenExpired:
                if token is None or refreshed:
                    raise
                refreshed = True
                logger.warning("{}: token rejected; asking for a fresh one and retrying once", path)
                token = self._tokens.refresh(token)
            except KisError as exc:
                if isinstance(exc, KisRateLimited):
                    self._limiter.note_rate_limited()
                idempotent = method == "GET" or not isinstance(exc, KisTransportError)
                if not (exc.transient and idempotent) or retries >= self._settings.max_retries:
                    raise
                delay = _backoff(self._settings.retry_backoff_seconds, retries)
                retries += 1
                logger.warning("{} (retry {} in {:.2f} s)", exc, retries, delay)
                self._sleep(delay)

    def _send(
        self,
        method: str,
        path: str,
        tr_id: str,
        params: Mapping[str, str] | str | None,
        json_body: Mapping[str, str] | None,
        tr_cont: str,
        token: SecretStr | None,
    ) -> Reply:
        headers = self._headers(tr_id, tr_cont, token)
        self._limiter.acquire()
        try:
            response = self._session.request(
                method, self._base_url + path, params=params, json=json_body, headers=headers,
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise KisTransportError(f"{method} {path}: {_describe(exc)}", path=path) from None
        status, answered = response.status_code, response.headers
        payload = decode_body(status, response.content, answered.get("content-type", ""), path=path)
        error = error_from_payload(
            status,
            payload,
            path=path,
            secrets=self._secrets(token),
            retry_after=self._retry_after(answered.get("retry-after", "").strip()),
        )
        if error is not None:
            raise error
        return Reply(body=payload, tr_cont=answered.get("tr_cont", "").strip())

    def _headers(self, tr_id: str, tr_cont: str, token: SecretStr | None) -> dict[str, str]:
        headers = {"content-type": "application/json; charset=utf-8"}
        if token is not None:
            headers |= {
                "authorization": f"Bearer {token.get_secret_value()}",
                "appkey": self._account.app_key.get_secret_value(),
                "appsecret": self._account.app_secret.get_secret_value(),
                "tr_id": tr_id,
                "tr_cont": tr_cont,
                "custtype": "P",
            }
        return headers

    def _secrets(self, token: SecretStr | None) -> list[str]:
        held = [self._account.app_key, self._account.app_secret, *([token] if token else [])]
        return [secret.get_secret_value() for secret in held]

    def _retry_after(self, header: str) -> float | None:
        """Seconds until the next token issuance: the Retry-After header, else this client's own record."""
        try:
            seconds = float(header)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return max(seconds, 0.0)
        if self._issued_at is None:
            return None
        remaining = TOKEN_ISSUE_INTERVAL_SECONDS - (time.monotonic() - self._issued_at)
        return remaining if remaining > 0 else None

    def _access_token(self, body: Mapping[str, Any]) -> AccessToken:
        path = protocol.TOKEN_PATH
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise KisUnparseableResponse(f"{path}: answer has no access_token", path=path, status=200)
        expiry = str(body.get("access_token_token_expired", "")).strip()
        try:
            expires_at = datetime.strptime(expiry, _KIS_TIME).replace(tzinfo=KST)
        except ValueError:
            seconds = str(body.get("expires_in", ""))
            try:
                if not (seconds.isascii() and seconds.isdigit()):
                    raise ValueError(seconds)
                expires_at = self._clock.now() + timedelta(seconds=int(seconds))
            except (ValueError, OverflowError):
                raise KisUnparseableResponse(
                    f"{path}: answer has no readable expiry (access_token_token_expired {expiry[:25]!r})",
                    path=path,
                    status=200,
                ) from None
        return AccessToken(
            token=SecretStr(token), expires_at=expires_at, token_type=str(body.get("token_type") or "Bearer")
        )


class _Row:
    """Reads one KIS row of strings, turning a malformed field into `KisUnparseableResponse`."""

    __slots__ = ("_path", "_row")

    def __init__(self, row: object, path: str) -> None:
        if not isinstance(row, dict):
            raise KisUnparseableResponse(f"{path}: row is {type(row).__name__}, not an object", path=path)
        self._row: dict[str, Any] = row
        self._path = path

    def bad(self, key: str, what: str) -> KisUnparseableResponse:
        return KisUnparseableResponse(f"{self._path}: field {key} {what}", path=self._path, status=200)

    def text(self, key: str, *, required: bool = False) -> str:
        value = self._row.get(key)
        if value is None:
            if required:
                raise self.bad(key, "is missing")
            return ""
        return str(value).strip()

    def integer(self, key: str, *, required: bool = False) -> int:
        text = self.text(key, required=required)
        if not text:
            if required:
                raise self.bad(key, "is empty")
            return 0
        try:
            return int(text)
        except ValueError:
            pass
        try:
            number = float(text)
        except ValueError:
            raise self.bad(key, f"is not a number: {text[:20]!r}") from None
        if not math.isfinite(number):
            raise self.bad(key, f"is not a finite number: {text[:20]!r}")
        return int(number)

    def number(self, key: str) -> float:
        text = self.text(key)
        if not text:
            return 0.0
        try:
            number = float(text)
        except ValueError:
            raise self.bad(key, f"is not a number: {text[:20]!r}") from None
        if not math.isfinite(number):
            raise self.bad(key, f"is not a finite number: {text[:20]!r}")
        return number


def multi_quote_rows(body: Mapping[str, Any]) -> list[MultiQuote]:
    """The rows of an intstock-multprice answer."""
    path = protocol.MULTI_PRICE_PATH
    return [_multi_quote(_Row(row, path)) for row in _output_rows(body, "output", path)]


def _multi_quote_query(symbols: Sequence[str]) -> dict[str, str]:
    if not 1 <= len(symbols) <= protocol.MULTI_PRICE_MAX_SYMBOLS:
        limit = protocol.MULTI_PRICE_MAX_SYMBOLS
        raise ValueError(f"a batch holds 1 to {limit} symbols, got {len(symbols)}")
    query: dict[str, str] = {}
    for n, symbol in enumerate(symbols, start=1):
        query[f"FID_COND_MRKT_DIV_CODE_{n}"] = MARKET_KRX
        query[f"FID_INPUT_ISCD_{n}"] = _checked_symbol(symbol)
    return query


def _checked_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise ValueError(f"not a KRX short code (6 digits/capitals): {symbol!r}")
    return symbol


def _backoff(steps: tuple[float, ...], retry: int) -> float:
    return steps[min(retry, len(steps) - 1)] if steps else 0.0


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, requests.ConnectionError):
        return f"connection failed ({type(exc).__name__})"
    return f"transport error ({type(exc).__name__})"


def _output_object(body: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
    value = body.get(key)
    if not isinstance(value, dict):
        raise KisUnparseableResponse(f"{path}: `{key}` is not an object", path=path, status=200)
    return value


def _output_rows(body: Mapping[str, Any], key: str, path: str) -> list[Any]:
    value = body.get(key, [])
    if isinstance(value, dict):
        return [value] if value else []
    if not isinstance(value, list):
        raise KisUnparseableResponse(f"{path}: `{key}` is not a list", path=path, status=200)
    return value


def _multi_quote(row: _Row) -> MultiQuote:
    return MultiQuote(
        symbol=row.text("inter_shrn_iscd", required=True),
        name=row.text("inter_kor_isnm"),
        price=row.integer("inter2_prpr", required=True),
        change=row.integer("inter2_prdy_vrss"),
        sign=row.text("prdy_vrss_sign"),
        change_rate=row.number("prdy_ctrt"),
        volume=row.integer("acml_vol"),
        value=row.integer("acml_tr_pbmn"),
        open=row.integer("inter2_oprc"),
        high=row.integer("inter2_hgpr"),
        low=row.integer("inter2_lwpr"),
        upper_limit=row.integer("inter2_mxpr"),
        lower_limit=row.integer("inter2_llam"),
        prev_close=row.integer("inter2_prdy_clpr"),
        base_price=row.integer("inter2_sdpr"),
        ask=row.integer("inter2_askp"),
        bid=row.integer("inter2_bidp"),
        halted=row.text("mrkt_trtm_cls_name") == HALTED_TREATMENT,
    )


def _kis_date(row: _Row, key: str) -> date | None:
    text = row.text(key)
    if not text:
        return None
    try:
        if len(text) != 8 or not text.isdigit():
            raise ValueError(text)
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        raise row.bad(key, f"is not a YYYYMMDD date: {text[:20]!r}") from None


def _bar_time(row: _Row) -> datetime | None:
    """A bar's KST time from stck_bsop_date and stck_cntg_hour, or None for KIS's blank filler rows."""
    day = _kis_date(row, "stck_bsop_date")
    hour = row.text("stck_cntg_hour")
    if day is None or not hour:
        return None
    digits = hour.zfill(6)
    try:
        if len(digits) != 6 or not digits.isdigit():
            raise ValueError(hour)
        moment = clock_time(int(digits[:2]), int(digits[2:4]), int(digits[4:]))
    except ValueError:
        raise row.bad("stck_cntg_hour", f"is not a HHMMSS time: {hour[:20]!r}") from None
    return datetime.combine(day, moment, tzinfo=KST)


def _minute_bar(symbol: str, row: _Row) -> MinuteBar | None:
    """A bar, or None for KIS's blank filler rows."""
    moment = _bar_time(row)
    if moment is None:
        return None
    return MinuteBar(
        symbol=symbol,
        time=moment,
        open=row.integer("stck_oprc"),
        high=row.integer("stck_hgpr"),
        low=row.integer("stck_lwpr"),
        close=row.integer("stck_prpr", required=True),
        volume=row.integer("cntg_vol"),
        value=row.integer("acml_tr_pbmn"),
    )


def _fuop_bar(code: str, row: _Row) -> FuopBar | None:
    """A futures or option bar, or None for KIS's blank filler rows."""
    moment = _bar_time(row)
    if moment is None:
        return None
    return FuopBar(
        code=code,
        time=moment,
        open=row.number("futs_oprc"),
        high=row.number("futs_hgpr"),
        low=row.number("futs_lwpr"),
        close=row.number("futs_prpr"),
        volume=row.integer("cntg_vol"),
    )


def _option_quote(row: _Row) -> OptionQuote:
    return OptionQuote(
        code=row.text("optn_shrn_iscd", required=True),
        strike=row.number("acpr"),
        price=row.number("optn_prpr"),
        theoretical=row.number("hts_thpr"),
        iv=row.number("hts_ints_vltl"),
        delta=row.number("delta_val"),
        gamma=row.number("gama"),
        vega=row.number("vega"),
        theta=row.number("theta"),
        open_interest=row.integer("hts_otst_stpl_qty"),
        volume=row.integer("acml_vol"),
        moneyness=row.text("atm_cls_name"),
    )


def _daily_bar(symbol: str, row: _Row) -> DailyBar | None:
    """A bar, or None for KIS's blank filler rows."""
    day = _kis_date(row, "stck_bsop_date")
    if day is None:
        return None
    return DailyBar(
        symbol=symbol,
        day=day,
        open=row.integer("stck_oprc"),
        high=row.integer("stck_hgpr"),
        low=row.integer("stck_lwpr"),
        close=row.integer("stck_clpr", required=True),
        volume=row.integer("acml_vol"),
        value=row.integer("acml_tr_pbmn"),
    )


def _holding(row: _Row) -> Holding:
    return Holding(
        symbol=row.text("pdno", required=True),
        name=row.text("prdt_name"),
        quantity=row.integer("hldg_qty"),
        orderable_quantity=row.integer("ord_psbl_qty"),
        avg_price=row.number("pchs_avg_pric"),
        purchase_amount=row.integer("pchs_amt"),
        price=row.integer("prpr"),
        eval_amount=row.integer("evlu_amt"),
        profit_loss=row.integer("evlu_pfls_amt"),
        profit_loss_rate=row.number("evlu_pfls_rt"),
    )
