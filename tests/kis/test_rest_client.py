"""The REST client against the KIS simulator over real loopback sockets.

The simulator runs on a manual clock (speed 0) so that quotes and bars are fixed during a test and can be
compared with the simulator's own market model. Every HTTP exchange is observed through a `requests`
response hook on the client's real session. Where the simulator cannot produce a case (a malformed row,
a Retry-After header), a small KIS-shaped server in this module does.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from loguru import logger
from pydantic import SecretStr

from config.accounts import Account
from config.settings import RateLimitSettings
from kis import protocol
from kis.errors import (
    KisApiError,
    KisError,
    KisRateLimited,
    KisTokenExpired,
    KisTokenTooSoon,
    KisTransportError,
    KisUnparseableResponse,
)
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from runtime.clock import KST
from tests.stub_kis import Answer, StubHandler, StubKis
from tools.kis_sim.server import KisSimulator, SimConfig

FAST_RETRIES = RateLimitSettings(retry_backoff_seconds=(0.05, 0.1, 0.2, 0.4), max_retries=5)
SECRET_KEY = "PSsimAppKey0000000000000000000000001"
SECRET = "simAppSecret+very/secret=="


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """A manual clock at 11:00 on the suite's simulated Monday: two hours of minute bars, nothing moves."""
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(11, 0))


@dataclass(frozen=True, slots=True)
class Exchange:
    method: str
    path: str
    status: int
    tr_id: str
    tr_cont: str
    body: str
    query: dict[str, str]


class Recorder:
    """Every HTTP exchange of one `requests.Session`, as seen on the wire."""

    def __init__(self) -> None:
        self.session = requests.Session()
        self.exchanges: list[Exchange] = []
        self.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> None:
        self.exchanges.append(
            Exchange(
                method=str(response.request.method),
                path=urlsplit(response.url).path,
                status=response.status_code,
                tr_id=str(response.request.headers.get("tr_id", "")),
                tr_cont=str(response.request.headers.get("tr_cont", "")),
                body=response.text,
                query={k: v[0] for k, v in parse_qs(urlsplit(response.url).query, True).items()},
            )
        )

    def calls(self, path: str, status: int | None = None) -> list[Exchange]:
        return [e for e in self.exchanges if e.path == path and (status is None or e.status == status)]


def make_account(key: str = SECRET_KEY, *, paper: bool = False) -> Account:
    return Account(app_key=SecretStr(key), app_secret=SecretStr(SECRET), account_no="12345678", paper=paper)


def make_client(
    base_url: str,
    recorder: Recorder,
    *,
    account: Account | None = None,
    settings: RateLimitSettings = FAST_RETRIES,
    clock: Any = None,
    **kwargs: Any,
) -> KisRestClient:
    return KisRestClient(
        account or make_account(),
        base_url=base_url,
        clock=clock,
        rate_limits=settings,
        limiters=RateLimiterRegistry(),
        session=recorder.session,
        **kwargs,
    )


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.session.close()


@pytest.fixture
def client(kis_sim: KisSimulator, recorder: Recorder) -> KisRestClient:
    return make_client(kis_sim.rest_url, recorder, clock=kis_sim.clock)


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET_KEY not in text
        assert SECRET not in text
        assert "eyJ0eXAi" not in text  # the simulator's tokens are JWT-shaped


# ---- auth -----------------------------------------------------------------------------------------------


def test_token_expiry_is_read_as_kst_and_secrets_stay_hidden(
    kis_sim: KisSimulator, client: KisRestClient
) -> None:
    token = client.issue_token()
    assert token.expires_at == kis_sim.clock.now() + timedelta(hours=24)
    assert token.expires_at.utcoffset() == timedelta(hours=9)
    assert token.token.get_secret_value().startswith("eyJ0eXAi")
    assert_no_secret(repr(token), str(token), token.model_dump_json(), repr(client))


def test_approval_key_uses_secretkey_and_is_secret(kis_sim: KisSimulator, client: KisRestClient) -> None:
    approval = client.issue_approval_key()
    key = approval.key.get_secret_value()
    assert len(key) == 36
    assert approval.issued_at == kis_sim.clock.now()
    assert key not in repr(approval)
    assert kis_sim.accounts.app_key_for_approval(key) == SECRET_KEY


def test_second_issue_within_a_minute_is_token_too_soon(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    first = client.issue_token()
    with pytest.raises(KisTokenTooSoon) as caught:
        client.issue_token()
    error = caught.value
    assert (error.msg_cd, error.status) == ("EGW00133", 403)
    assert error.retry_after is not None and 0 < error.retry_after <= 60
    assert not error.transient
    assert len(recorder.calls(protocol.TOKEN_PATH)) == 2, "EGW00133 must not be retried"
    assert_no_secret(str(error), repr(error))
    kis_sim.clock.advance(61)  # type: ignore[attr-defined]
    again = client.issue_token()
    assert again.token.get_secret_value() == first.token.get_secret_value(), "KIS re-issues the same token"


# ---- quotations -----------------------------------------------------------------------------------------


def test_quote_matches_the_market(kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder) -> None:
    quote = client.quote("005930")
    expected = kis_sim.market.quote("005930", kis_sim.clock.now())
    listing = kis_sim.market.listings["005930"]
    assert quote.symbol == "005930"
    assert (quote.price, quote.open, quote.high, quote.low) == (
        expected.price, expected.open, expected.high, expected.low,
    )  # fmt: skip
    assert (quote.volume, quote.value) == (expected.volume, expected.value)
    assert (quote.upper_limit, quote.lower_limit) == (expected.upper_limit, expected.lower_limit)
    assert quote.base_price == listing.prev_close
    assert quote.change == expected.price - listing.prev_close
    assert quote.listed_shares == listing.listed_shares
    assert quote.market_cap == expected.price * listing.listed_shares // 100_000_000 * 100_000_000
    assert quote.halted is False
    (call,) = recorder.calls(protocol.INQUIRE_PRICE_PATH)
    assert call.tr_id == protocol.TrId.INQUIRE_PRICE


def test_multi_quote_batch_rows_match_the_market(kis_sim: KisSimulator, client: KisRestClient) -> None:
    symbols = sorted(kis_sim.market.listings)[:30]
    rows = client.multi_quote_batch(symbols)
    now = kis_sim.clock.now()
    assert [row.symbol for row in rows] == symbols
    for row in rows:
        expected = kis_sim.market.quote(row.symbol, now)
        listing = kis_sim.market.listings[row.symbol]
        assert (row.price, row.volume, row.high, row.low) == (
            expected.price, expected.volume, expected.high, expected.low,
        )  # fmt: skip
        assert (row.ask, row.bid) == (expected.ask1, expected.bid1)
        assert row.prev_close == listing.prev_close
        assert row.name == listing.name


def test_multi_quote_rows_say_which_symbols_are_halted(kis_sim_config: SimConfig, tmp_path: Path,
                                                      recorder: Recorder) -> None:
    """A scenario halt (and a symbol listed as halted) shows in the scan row's `halted`; the rest trade."""
    scenario = tmp_path / "halt.json"
    scenario.write_text(json.dumps([{"at": "09:00", "symbol": "005930", "event": "halt", "minutes": 600}]))
    with KisSimulator(dataclasses.replace(kis_sim_config, scenario=scenario)) as sim:
        client = make_client(sim.rest_url, recorder, clock=sim.clock)
        listed_halted = sorted(code for code, listing in sim.market.listings.items() if listing.halted)
        trading = sorted(code for code, listing in sim.market.listings.items() if not listing.halted)[:5]
        symbols = ["005930", *listed_halted[:3], *(code for code in trading if code != "005930")]
        rows = {row.symbol: row for row in client.multi_quote_batch(symbols)}
    assert rows["005930"].halted
    assert all(rows[code].halted for code in listed_halted[:3])
    assert not any(rows[code].halted for code in trading if code != "005930")


def test_batches_over_30_and_bad_codes_are_refused_before_any_call(
    client: KisRestClient, recorder: Recorder
) -> None:
    with pytest.raises(ValueError, match="1 to 30 symbols, got 31"):
        client.multi_quote_batch(["005930"] * 31)
    with pytest.raises(ValueError, match="not a KRX short code"):
        client.multi_quotes(["005930", "5930"])
    with pytest.raises(ValueError, match="not a KRX short code"):
        client.quote("005930&FID_INPUT_ISCD=000660")
    assert recorder.exchanges == []


def test_a_batch_asks_for_each_symbol_in_order(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    first, second = sorted(kis_sim.market.listings)[:2]
    client.multi_quote_batch([first, second])
    (call,) = recorder.calls(protocol.MULTI_PRICE_PATH)
    assert call.query == {"FID_COND_MRKT_DIV_CODE_1": "J", "FID_INPUT_ISCD_1": first,
                          "FID_COND_MRKT_DIV_CODE_2": "J", "FID_INPUT_ISCD_2": second}


def test_1000_symbols_are_scanned_in_ceil_1000_over_30_calls(tmp_path: Any) -> None:
    config = SimConfig(seed=7, date=date(2024, 3, 4), start=clock_time(9, 1), speed=0.0, n_symbols=1000)
    recorder = Recorder()
    with KisSimulator(config) as sim:
        client = make_client(sim.rest_url, recorder, clock=sim.clock)
        symbols = sorted(sim.market.listings)
        assert len(symbols) == 1000
        rows = client.multi_quotes(symbols)
        now = sim.clock.now()
        assert [row.symbol for row in rows] == symbols
        assert all(row.price == sim.market.quote(row.symbol, now).price for row in rows[::97])
    answered = recorder.calls(protocol.MULTI_PRICE_PATH, status=200)
    assert len(answered) == math.ceil(1000 / 30) == 34
    assert all(call.tr_id == protocol.TrId.MULTI_PRICE for call in answered)
    recorder.session.close()


def test_minute_bars_page_back_30_at_a_time(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    bars = client.minute_bars("000660", until=clock_time(10, 59))
    assert len(bars) == 120
    assert bars[0].time == datetime(2024, 3, 4, 9, 0, tzinfo=KST)
    assert bars[-1].time == datetime(2024, 3, 4, 10, 59, tzinfo=KST)
    assert all(b.time - a.time == timedelta(minutes=1) for a, b in itertools.pairwise(bars))
    model = kis_sim.market.minute_bars("000660", kis_sim.clock.now(), clock_time(10, 59))
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (m.open, m.high, m.low, m.close, m.volume) for m in model
    ]
    pages = recorder.calls(protocol.MINUTE_BARS_PATH, status=200)
    assert 4 <= len(pages) <= 5
    hours = [page.query["FID_INPUT_HOUR_1"] for page in pages]
    assert hours[:4] == ["105900", "102900", "095900", "092900"]


def test_minute_bars_stop_paging_at_since(client: KisRestClient, recorder: Recorder) -> None:
    bars = client.minute_bars("000660", until=clock_time(10, 59), since=clock_time(10, 15))
    assert [bar.time.time() for bar in bars][:2] == [clock_time(10, 15), clock_time(10, 16)]
    assert len(bars) == 45
    assert len(recorder.calls(protocol.MINUTE_BARS_PATH)) == 2


def test_daily_bars_match_the_history(kis_sim: KisSimulator, client: KisRestClient) -> None:
    bars = client.daily_bars("005930", date(2024, 1, 1), date(2024, 3, 1))
    history = [h for h in kis_sim.market.history("005930") if date(2024, 1, 1) <= h.day <= date(2024, 3, 1)]
    assert [(b.day, b.open, b.high, b.low, b.close, b.volume, b.value) for b in bars] == [
        (h.day, h.open, h.high, h.low, h.close, h.volume, h.value) for h in history
    ]
    with pytest.raises(ValueError, match="is after end"):
        client.daily_bars("005930", date(2024, 3, 2), date(2024, 3, 1))


def test_daily_bars_page_back_100_at_a_time(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    history = kis_sim.market.history("005930")
    today = kis_sim.market.trading_date
    bars = client.daily_bars("005930", history[0].day, today)
    expected = kis_sim.market.daily_bars("005930", history[0].day, today, at=kis_sim.clock.now())
    assert len(bars) == len(history) + 1 > 100
    assert [(b.day, b.open, b.high, b.low, b.close, b.volume, b.value) for b in bars] == [
        (e.day, e.open, e.high, e.low, e.close, e.volume, e.value) for e in expected
    ]
    calls = recorder.calls(protocol.DAILY_BARS_PATH)
    assert [call.query["FID_INPUT_DATE_2"] for call in calls] == [
        today.strftime("%Y%m%d"), (expected[-100].day - timedelta(days=1)).strftime("%Y%m%d")
    ]
    assert all(call.query["FID_INPUT_DATE_1"] == history[0].day.strftime("%Y%m%d") for call in calls)


# ---- account --------------------------------------------------------------------------------------------


def test_holdings_of_a_real_account(kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder) -> None:
    holdings = client.holdings()
    account = kis_sim.accounts.known(SECRET_KEY)
    assert account is not None
    assert [(h.symbol, h.name, h.quantity) for h in holdings] == [
        (held.code, held.name, held.quantity) for held in account.holdings
    ]
    assert [h.avg_price for h in holdings] == pytest.approx([held.average_price for held in account.holdings])
    now = kis_sim.clock.now()
    assert all(h.price == kis_sim.market.quote(h.symbol, now).price for h in holdings)
    (call,) = recorder.calls(protocol.BALANCE_PATH)
    assert call.tr_id == "TTTC8434R"


def test_holdings_of_a_paper_account(kis_sim: KisSimulator, recorder: Recorder) -> None:
    paper_key = "PSpaperKey000000000000000000000002"
    kis_sim.accounts.register(paper_key, paper=True)
    account = make_account(paper_key, paper=True)
    client = make_client(kis_sim.rest_url, recorder, account=account, clock=kis_sim.clock)
    holdings = client.holdings()
    simulated = kis_sim.accounts.known(paper_key)
    assert simulated is not None and simulated.paper
    assert [h.symbol for h in holdings] == [held.code for held in simulated.holdings]
    (call,) = recorder.calls(protocol.BALANCE_PATH)
    assert call.tr_id == "VTTC8434R"
    with pytest.raises(KisApiError) as caught:
        client.multi_quote_batch(["005930"])
    assert caught.value.msg_cd == "OPSQ0002"
    assert not caught.value.transient


def test_holdings_follow_tr_cont_and_ctx_area_over_several_pages(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    kis_sim.accounts.seed_holdings(SECRET_KEY, 110)
    holdings = client.holdings()
    account = kis_sim.accounts.known(SECRET_KEY)
    assert account is not None and len(account.holdings) == 110
    assert [(h.symbol, h.quantity) for h in holdings] == [(x.code, x.quantity) for x in account.holdings]
    assert [h.avg_price for h in holdings] == pytest.approx([held.average_price for held in account.holdings])
    calls = recorder.calls(protocol.BALANCE_PATH)
    sent = [(call.tr_cont, call.query["CTX_AREA_NK100"]) for call in calls]
    assert sent == [("", ""), ("N", "50"), ("N", "100")]
    assert calls[1].query["CTX_AREA_FK100"] == calls[2].query["CTX_AREA_FK100"] != ""


def test_balance_needs_an_account_number(kis_sim: KisSimulator, recorder: Recorder) -> None:
    quote_only = Account(app_key=SecretStr(SECRET_KEY), app_secret=SecretStr(SECRET))
    client = make_client(kis_sim.rest_url, recorder, account=quote_only, clock=kis_sim.clock)
    with pytest.raises(ValueError, match="account number"):
        client.holdings()


# ---- errors and retries ---------------------------------------------------------------------------------


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lines.append, format="{message}", level="DEBUG")
    yield lines
    logger.remove(sink)


def test_rate_limit_burst_is_retried_then_succeeds(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder, log_lines: list[str]
) -> None:
    client.tokens.current()
    kis_sim.faults.rate_limit_burst(0.3)
    quote = client.quote("005930")
    assert quote.price > 0
    attempts = recorder.calls(protocol.INQUIRE_PRICE_PATH)
    assert attempts[-1].status == 200
    refused = attempts[:-1]
    assert refused, "the burst should have refused at least one attempt"
    assert all(e.status == 500 and "EGW00201" in e.body for e in refused)
    assert len(refused) <= FAST_RETRIES.max_retries
    assert any("EGW00201" in line for line in log_lines)
    assert_no_secret(*log_lines)


def test_rate_limit_outlasting_the_retries_is_raised(
    kis_sim: KisSimulator, recorder: Recorder
) -> None:
    settings = RateLimitSettings(retry_backoff_seconds=(0.01,), max_retries=2)
    limiters = RateLimiterRegistry()
    account = make_account()
    client = KisRestClient(account, base_url=kis_sim.rest_url, clock=kis_sim.clock, rate_limits=settings,
                           limiters=limiters, session=recorder.session)
    client.tokens.current()
    kis_sim.faults.rate_limit_burst(30)
    with pytest.raises(KisRateLimited) as caught:
        client.quote("005930")
    kis_sim.faults.clear()
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 3
    calls, rate_limited = limiters.calls_of(account.app_key)
    assert rate_limited == 3 and calls >= 3  # the metrics' REST calls and rate-limit answers of the key
    assert caught.value.msg_cd == "EGW00201"
    assert_no_secret(str(caught.value))


def test_expired_token_is_refreshed_and_the_call_retried_once(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    client.quote("005930")
    kis_sim.faults.expire_tokens()
    kis_sim.clock.advance(61)  # type: ignore[attr-defined]
    client.quote("000660")
    sequence = [(e.method, e.path, e.status) for e in recorder.exchanges]
    assert sequence == [
        ("POST", protocol.TOKEN_PATH, 200),
        ("GET", protocol.INQUIRE_PRICE_PATH, 200),
        ("GET", protocol.INQUIRE_PRICE_PATH, 500),
        ("POST", protocol.TOKEN_PATH, 200),
        ("GET", protocol.INQUIRE_PRICE_PATH, 200),
    ]
    assert "EGW00123" in recorder.exchanges[2].body


def test_refresh_refused_as_too_soon_is_surfaced(
    kis_sim: KisSimulator, client: KisRestClient, recorder: Recorder
) -> None:
    client.quote("005930")
    kis_sim.faults.expire_tokens()
    with pytest.raises(KisTokenTooSoon) as caught:
        client.quote("005930")
    assert caught.value.retry_after is not None
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 2
    assert_no_secret(str(caught.value))


class CountingTokenSource:
    """A token source for a key whose tokens KIS keeps rejecting (what a broken TokenActor would hand out)."""

    def __init__(self) -> None:
        self.refreshes: list[str] = []

    def current(self) -> SecretStr:
        return SecretStr("not-a-token-kis-knows")

    def refresh(self, rejected: SecretStr) -> SecretStr:
        self.refreshes.append(rejected.get_secret_value())
        return SecretStr("still-not-a-token")


def test_a_token_rejected_again_after_refresh_is_raised(kis_sim: KisSimulator, recorder: Recorder) -> None:
    source = CountingTokenSource()
    client = make_client(kis_sim.rest_url, recorder, tokens=source, clock=kis_sim.clock)
    with pytest.raises(KisTokenExpired) as caught:
        client.quote("005930")
    assert caught.value.msg_cd == "EGW00121"
    assert source.refreshes == ["not-a-token-kis-knows"]
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 2
    assert "still-not-a-token" not in str(caught.value)


def test_business_error_is_not_retried(client: KisRestClient, recorder: Recorder) -> None:
    with pytest.raises(KisApiError) as caught:
        client.quote("999999")
    error = caught.value
    assert type(error) is KisApiError
    assert error.msg_cd == "KIOK0560" and error.msg1 == "조회할 자료가 없습니다."
    assert error.status == 200
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 1


def test_slow_answer_times_out_and_the_retry_succeeds(
    kis_sim: KisSimulator, recorder: Recorder, log_lines: list[str]
) -> None:
    settings = RateLimitSettings(retry_backoff_seconds=(0.3,), max_retries=3)
    client = make_client(kis_sim.rest_url, recorder, settings=settings, clock=kis_sim.clock, timeout=0.25)
    client.tokens.current()
    kis_sim.faults.slow_rest(1.0, 0.2)
    quote = client.quote("005930")
    assert quote.price > 0
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 1, "only the answered attempt has a response"
    assert any("timed out" in line and "retry 1" in line for line in log_lines)


def test_html_error_page_is_unparseable_and_retried_as_a_gateway_failure(
    kis_sim: KisSimulator, recorder: Recorder
) -> None:
    settings = RateLimitSettings(retry_backoff_seconds=(0.01,), max_retries=2)
    client = make_client(kis_sim.rest_url, recorder, settings=settings, clock=kis_sim.clock)
    client.tokens.current()
    kis_sim.faults.html_errors(2)
    assert client.quote("005930").price == kis_sim.market.quote("005930", kis_sim.clock.now()).price
    assert [c.status for c in recorder.calls(protocol.INQUIRE_PRICE_PATH)] == [502, 502, 200]

    kis_sim.faults.html_errors(3)
    with pytest.raises(KisUnparseableResponse, match=r"HTTP 502: body is not JSON \(text/html") as caught:
        client.quote("005930")
    assert caught.value.transient and caught.value.status == 502
    assert [c.status for c in recorder.calls(protocol.INQUIRE_PRICE_PATH)][3:] == [502, 502, 502]
    assert "Bad Gateway" not in str(caught.value)


def test_empty_body_is_unparseable_and_not_retried(kis_sim: KisSimulator, recorder: Recorder) -> None:
    client = make_client(kis_sim.rest_url, recorder, clock=kis_sim.clock)
    client.tokens.current()
    kis_sim.faults.empty_bodies(1)
    with pytest.raises(KisUnparseableResponse, match="HTTP 200: empty body") as caught:
        client.quote("005930")
    assert not caught.value.transient
    assert len(recorder.calls(protocol.INQUIRE_PRICE_PATH)) == 1
    assert client.quote("005930").price > 0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_nothing_listening_is_a_transport_error(recorder: Recorder) -> None:
    settings = RateLimitSettings(retry_backoff_seconds=(0.01,), max_retries=1)
    client = make_client(f"http://127.0.0.1:{free_port()}", recorder, settings=settings)
    with pytest.raises(KisTransportError, match="connection failed") as caught:
        client.issue_token()
    assert caught.value.transient
    assert_no_secret(str(caught.value), repr(caught.value))


# ---- a KIS-shaped server for what the simulator does not produce -----------------------------------------


class FixedTokenSource:
    def current(self) -> SecretStr:
        return SecretStr("fixed-token")

    def refresh(self, rejected: SecretStr) -> SecretStr:
        return SecretStr("fixed-token")


def kis_json(payload: dict[str, Any], **headers: str) -> Answer:
    body = {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", **payload}
    return 200, "application/json; charset=utf-8", json.dumps(body).encode(), headers


StubFactory = Callable[[StubHandler], StubKis]


@pytest.fixture
def stub_factory() -> Iterator[StubFactory]:
    stubs: list[StubKis] = []

    def make(handler: StubHandler) -> StubKis:
        stubs.append(StubKis(handler))
        return stubs[-1]

    yield make
    for stub in stubs:
        stub.close()


def test_malformed_row_is_unparseable_with_the_field_named(
    stub_factory: StubFactory, recorder: Recorder
) -> None:
    stub = stub_factory(lambda *_: kis_json({"output": {"stck_prpr": "12,300"}}))
    client = make_client(stub.url, recorder, tokens=FixedTokenSource())
    with pytest.raises(KisUnparseableResponse, match="field stck_prpr is not a number"):
        client.quote("005930")


def test_the_proxy_of_the_environment_is_used_and_no_proxy_is_honoured(
    stub_factory: StubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read once when the client is made (not on every call), but read: a trader behind a proxy needs it."""
    proxy = stub_factory(lambda *_: kis_json({"output": {"stck_prpr": "12300"}}))
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    gateway = "http://kis-gateway.invalid:9443"

    def client() -> KisRestClient:
        return KisRestClient(make_account(), base_url=gateway, tokens=FixedTokenSource(),
                             rate_limits=FAST_RETRIES, limiters=RateLimiterRegistry())

    with client() as proxied:
        assert proxied.quote("005930").price == 12300
    (method, path, query, headers, _body) = proxy.requests[0]
    assert (method, path, headers["host"]) == ("GET", protocol.INQUIRE_PRICE_PATH, "kis-gateway.invalid:9443")
    assert query["FID_INPUT_ISCD"] == "005930"
    monkeypatch.setenv("NO_PROXY", "kis-gateway.invalid")
    with client() as direct, pytest.raises(KisTransportError, match="connection failed"):
        direct.quote("005930")
    assert len(proxy.requests) == 1


def test_token_too_soon_wait_comes_from_retry_after(stub_factory: StubFactory, recorder: Recorder) -> None:
    too_soon = "접근토큰 발급 잠시 후 다시 시도하세요(1분당 1회)"
    body = json.dumps({"error_description": too_soon, "error_code": "EGW00133"})
    stub = stub_factory(lambda *_: (403, "application/json", body.encode(), {"Retry-After": "37"}))
    client = make_client(stub.url, recorder)
    with pytest.raises(KisTokenTooSoon) as caught:
        client.issue_token()
    assert caught.value.retry_after == 37.0
    assert "retry in 37 s" in str(caught.value)


def test_every_error_message_is_one_line() -> None:
    for error_type in (KisError, KisTransportError, KisUnparseableResponse, KisApiError):
        assert "\n" not in str(error_type("first line\nsecond line"))


def _holding_row(code: str) -> dict[str, str]:
    return {
        "pdno": code, "prdt_name": code, "hldg_qty": "1", "ord_psbl_qty": "1", "pchs_avg_pric": "100.0",
        "pchs_amt": "100", "prpr": "110", "evlu_amt": "110", "evlu_pfls_amt": "10", "evlu_pfls_rt": "10.00",
    }  # fmt: skip


@pytest.mark.parametrize("header", ["tr_cont", "TR_CONT", "Tr_Cont"])
def test_paging_reads_tr_cont_in_any_header_case(
    stub_factory: StubFactory, recorder: Recorder, header: str
) -> None:
    """KIS sends `tr_cont` lower case; HTTP header names are case-insensitive, and so is the client."""

    def answer(_method: str, _path: str, query: dict[str, str], headers: dict[str, str], _: str) -> Answer:
        if headers.get("tr_cont") == "N" and query["CTX_AREA_NK100"] == "1":
            return kis_json({"output1": [_holding_row("000660")], "output2": [{}]}, **{header: "D"})
        page = {"output1": [_holding_row("005930")], "output2": [{}], "ctx_area_nk100": "1"}
        return kis_json(page, **{header: "M", "gt_uid": "0" * 32, "tr_id": "TTTC8434R"})

    stub = stub_factory(answer)
    client = make_client(stub.url, recorder, tokens=FixedTokenSource())
    assert [holding.symbol for holding in client.holdings()] == ["005930", "000660"]


def test_answers_with_extra_fields_and_headers_are_read(
    stub_factory: StubFactory, recorder: Recorder
) -> None:
    """Fields and headers KIS adds later (or the simulator never sent) are ignored, not fatal."""
    output = {"stck_prpr": "71000", "some_future_field": "x", "aspr_unit": "100"}
    stub = stub_factory(lambda *_: kis_json({"output": output, "output3": []}, X_New_Header="1"))
    client = make_client(stub.url, recorder, tokens=FixedTokenSource())
    assert client.quote("005930").price == 71000
