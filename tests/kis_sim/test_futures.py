"""The simulator's KOSPI200 futures and options over real loopback HTTP: KIS's paths, tr_ids, fields and
limits, front and next futures, a strike ladder with consistent prices, second-Thursday expiries."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import pytest
import requests

from core.candles import Trade, candles_from_trades
from core.derivatives import Kind, futures_pair, option_months
from kis import protocol
from kis.fields import H0IFCNT0_FIELDS
from kis.ticks import FuturesTradeFrame
from kis.ws_codec import decode
from runtime.clock import KST, SimulatedClock
from tools.kis_sim.accounts import Accounts
from tools.kis_sim.faults import Faults
from tools.kis_sim.futures import DIVIDEND_YIELD, PREV_LEVEL, RATE, Derivatives, smile
from tools.kis_sim.market import Market
from tools.kis_sim.rest import RestServer

DAY = date(2026, 3, 10)  # March futures and options expire on Thursday the 12th
AT = datetime(2026, 3, 10, 10, 0, 30, tzinfo=KST)


class Ticks:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Sim:
    url: str
    accounts: Accounts
    clock: SimulatedClock
    ticks: Ticks
    session: requests.Session
    derivatives: Derivatives
    tokens: dict[str, str]

    def headers(self, tr_id: str, key: str = "key-1", secret: str = "secret-1") -> dict[str, str]:
        if key not in self.tokens:
            body = {"grant_type": "client_credentials", "appkey": key, "appsecret": secret}
            answer = self.session.post(f"{self.url}{protocol.TOKEN_PATH}", json=body, timeout=10).json()
            self.tokens[key] = answer["access_token"]
        return {"authorization": f"Bearer {self.tokens[key]}", "appkey": key, "appsecret": secret,
                "tr_id": tr_id, "custtype": "P"}

    def get(self, path: str, tr_id: str, params: dict[str, str], **keys: str) -> dict[str, Any]:
        self.ticks.now += 1.0
        response = self.session.get(f"{self.url}{path}", headers=self.headers(tr_id, **keys), params=params,
                                    timeout=60)
        assert response.status_code == 200, response.text
        assert response.headers["tr_id"] == tr_id
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=5, trading_date=DAY, n_symbols=300)


@pytest.fixture
def sim(market: Market) -> Iterator[Sim]:
    ticks = Ticks()
    clock = SimulatedClock(AT, speed=0)
    faults = Faults(monotonic=ticks)
    accounts = Accounts(market, faults, clock, seed=5, monotonic=ticks)
    server = RestServer(market, accounts, faults, clock, port=0, sleep=lambda _s: None).start()
    session = requests.Session()
    try:
        yield Sim(server.url, accounts, clock, ticks, session, server.app.derivatives, {})
    finally:
        session.close()
        server.stop()


def chart_params(
    code: str, hour: str = "235959", market_code: str = "F", day: str = "20260310"
) -> dict[str, str]:
    return {"FID_COND_MRKT_DIV_CODE": market_code, "FID_INPUT_ISCD": code, "FID_HOUR_CLS_CODE": "60",
            "FID_PW_DATA_INCU_YN": "N", "FID_FAKE_TICK_INCU_YN": "N", "FID_INPUT_DATE_1": day,
            "FID_INPUT_HOUR_1": hour}


def board_params(month: str) -> dict[str, str]:
    return {"FID_COND_MRKT_DIV_CODE": "O", "FID_COND_SCR_DIV_CODE": "20503", "FID_MRKT_CLS_CODE": "CO",
            "FID_MTRT_CNT": month, "FID_MRKT_CLS_CODE1": "PO", "FID_COND_MRKT_CLS_CODE": ""}


def test_front_and_next_futures_bars_from_0845_newest_first_completed_minutes_only(sim: Sim) -> None:
    front, following = futures_pair(date(2026, 3, 9))  # the day before: March is still the front month
    assert (front.futures_code, following.futures_code) == ("101603", "101606")
    body = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101603"))
    bars = body["output2"]
    assert len(bars) == 75  # 08:45 to 09:59; 10:00 is still running at 10:00:30
    assert [bar["stck_cntg_hour"] for bar in (bars[0], bars[-1])] == ["095900", "084500"]
    assert {bar["stck_bsop_date"] for bar in bars} == {"20260310"}
    for bar in bars:
        low, high = float(bar["futs_lwpr"]), float(bar["futs_hgpr"])
        assert low <= float(bar["futs_oprc"]) <= high and low <= float(bar["futs_prpr"]) <= high
        assert round(float(bar["futs_prpr"]) * 20, 6) == round(float(bar["futs_prpr"]) * 20)  # 0.05 ticks
    summary = body["output1"]
    assert summary["futs_shrn_iscd"] == "101603" and summary["futs_prpr"] == bars[0]["futs_prpr"]
    assert int(summary["acml_vol"]) == sum(int(bar["cntg_vol"]) for bar in bars)
    spot = float(summary["kospi200_nmix"])
    assert abs(float(summary["futs_prpr"]) - spot) < 2.0  # two days of carry plus basis noise
    later = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101606"))["output1"]
    assert float(later["hts_thpr"]) > float(summary["hts_thpr"])  # three more months of carry


def test_bars_end_at_the_asked_time_and_at_most_102_a_call(sim: Sim) -> None:
    until_0900 = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101603", "090000"))
    assert [bar["stck_cntg_hour"] for bar in until_0900["output2"]][:2] == ["090000", "085900"]
    sim.clock.set(datetime(2026, 3, 10, 15, 0, tzinfo=KST))
    page = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101603"))["output2"]
    assert len(page) == protocol.FUOP_MINUTE_BARS_PER_CALL == 102
    assert page[0]["stck_cntg_hour"] == "145900"
    yesterday = chart_params("101603", day="20260309")
    earlier_day = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", yesterday)
    assert earlier_day["output2"] == []


def test_option_minute_bars_with_market_code_o(sim: Sim) -> None:
    params = chart_params("201603350", market_code="O")
    body = sim.get(protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", params)
    assert len(body["output2"]) == 75


def test_board_ladders_strikes_around_the_index_with_consistent_prices(sim: Sim) -> None:
    month = option_months(date(2026, 3, 9))[0]
    assert month.option_month == "202603"
    body = sim.get(protocol.OPTION_BOARD_PATH, "FHPIF05030100", board_params("202603"))
    calls, puts = body["output1"], body["output2"]
    assert len(calls) == len(puts) == 61 <= protocol.OPTION_BOARD_MAX_ROWS
    strikes = [float(row["acpr"]) for row in calls]
    assert strikes == sorted(strikes, reverse=True) and strikes[0] - strikes[1] == 2.5
    assert [row["optn_shrn_iscd"] for row in calls[:1] + puts[:1]] == \
        [month.option_code(Kind.CALL, strikes[0]), month.option_code(Kind.PUT, strikes[0])]
    spot = sim.derivatives.index_at(AT)
    years = (datetime(2026, 3, 12, 15, 20, tzinfo=KST) - AT).total_seconds() / (365 * 86400)
    call_deltas = [float(row["delta_val"]) for row in calls]
    assert call_deltas == sorted(call_deltas)  # strikes descending: deltas rise toward deep ITM
    for call, put in zip(calls, puts, strict=True):
        strike = float(call["acpr"])
        assert float(call["hts_ints_vltl"]) == pytest.approx(smile(strike, spot) * 100, abs=0.006)
        assert float(call["delta_val"]) - float(put["delta_val"]) == pytest.approx(
            math.exp(-DIVIDEND_YIELD * years), abs=2e-4)
        if min(float(call["optn_prpr"]), float(put["optn_prpr"])) > 0.05:  # the floor breaks parity
            parity = spot * math.exp(-DIVIDEND_YIELD * years) - strike * math.exp(-RATE * years)
            assert float(call["optn_prpr"]) - float(put["optn_prpr"]) == pytest.approx(parity, abs=0.15)
    atm = [row for row in calls if row["atm_cls_name"] == "ATM"]
    assert len(atm) == 1 and abs(float(atm[0]["acpr"]) - spot) <= 1.25


def test_board_of_a_month_not_listed_is_empty_and_paper_keys_are_refused(sim: Sim) -> None:
    assert sim.get(protocol.OPTION_BOARD_PATH, "FHPIF05030100", board_params("202612")) == \
        {"rt_cd": "0", "msg_cd": "MCA00000", "msg1": "정상처리 되었습니다.", "output1": [], "output2": []}
    sim.accounts.register("paper", paper=True)
    refused = sim.get(protocol.OPTION_BOARD_PATH, "FHPIF05030100", board_params("202603"),
                      key="paper", secret="p")
    assert refused["msg_cd"] == "OPSQ0002"


@pytest.mark.parametrize(
    ("path", "tr_id", "params", "code"),
    [
        (protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200",
         {k: v for k, v in chart_params("101603").items() if k != "FID_HOUR_CLS_CODE"}, "OPSQ2001"),
        (protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101612"), "KIOK0560"),
        (protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("201603350"), "KIOK0560"),
        (protocol.FUOP_MINUTE_BARS_PATH, "FHKIF03020200", chart_params("101603", hour="9999"), "OPSQ2002"),
        (protocol.OPTION_BOARD_PATH, "FHPIF05030100",
         {k: v for k, v in board_params("202603").items() if k != "FID_MTRT_CNT"}, "OPSQ2001"),
    ],
)
def test_parameter_errors_are_business_errors(
    sim: Sim, path: str, tr_id: str, params: dict[str, str], code: str
) -> None:
    body = sim.get(path, tr_id, params)
    assert body["rt_cd"] != "0" and body["msg_cd"] == code


def test_an_expiring_contract_stops_at_1520_on_its_last_day(market: Market) -> None:
    expiry = Market(seed=5, trading_date=date(2026, 3, 12), n_symbols=60)
    derivatives = Derivatives(expiry)
    close = datetime(2026, 3, 12, 16, 0, tzinfo=KST)
    expiring = derivatives.bars(derivatives.listed["101603"], close)
    following = derivatives.bars(derivatives.listed["101606"], close)
    assert expiring[-1].start.time().isoformat() == "15:19:00" and len(expiring) == 395
    assert following[-1].start.time().isoformat() == "15:44:00" and len(following) == 420


def test_the_same_minute_answers_the_same(market: Market) -> None:
    first, second = Derivatives(market), Derivatives(market)
    assert first.bars(first.listed["101603"], AT) == second.bars(second.listed["101603"], AT)


def test_the_index_is_the_cap_weighted_move_of_the_largest_kospi_listings(market: Market) -> None:
    derivatives = Derivatives(market)
    members = sorted((item for item in market.listings.values() if item.market == "KOSPI"),
                     key=lambda item: (-item.market_cap, item.code))[:200]
    total = sum(item.market_cap for item in members)
    closes = {item.code: market.minute_bars(item.code, AT, time(9, 59))[-1].close for item in members}
    moves = (item.market_cap / total * closes[item.code] / item.prev_close for item in members)
    expected = PREV_LEVEL * sum(moves)
    assert derivatives.index_at(AT) == pytest.approx(expected, abs=0.006)  # the close of 09:59
    assert derivatives.index_at(datetime(2026, 3, 10, 8, 50, tzinfo=KST)) == PREV_LEVEL


def test_futures_trades_replay_the_bars_and_read_back_as_kis_index_futures_records(market: Market) -> None:
    derivatives = Derivatives(market)
    start, end = datetime(2026, 3, 10, 9, 58, tzinfo=KST), datetime(2026, 3, 10, 10, 0, 30, tzinfo=KST)
    ticks = derivatives.trades("101603", start, end)
    assert derivatives.trades("201603350", start, end) == []  # options have no H0IFCNT0 trades
    assert {tick.at.second for tick in ticks} == {0, 15, 30, 45} and ticks[-1].at.minute == 0
    assert [tick.at for tick in ticks] == sorted(tick.at for tick in ticks) and ticks[-1].at < end
    bars = {bar.start: bar for bar in derivatives.bars(derivatives.listed["101603"], end)}
    candles = candles_from_trades(Trade("101603", t.at, t.price, t.volume) for t in ticks)
    closed = [c for c in candles if c.minute < datetime(2026, 3, 10, 10, 0, tzinfo=KST)]
    assert len(closed) == 2
    for candle in closed:  # the stream's candles are the REST bars of the same minutes
        bar = bars[candle.minute]
        assert (candle.open, candle.high, candle.low, candle.close, candle.volume) == (
            bar.open, bar.high, bar.low, bar.close, bar.volume)
    assert ticks[-1].cum_volume == bars[datetime(2026, 3, 10, 9, 59, tzinfo=KST)].cum_volume + sum(
        t.volume for t in ticks if t.at.minute == 0)

    frame = f"0|H0IFCNT0|002|{derivatives.trade_record(ticks[0])}^{derivatives.trade_record(ticks[1])}"
    decoded = decode(frame)
    assert isinstance(decoded, FuturesTradeFrame)
    first, second = decoded.trades
    assert len(first.fields) == len(H0IFCNT0_FIELDS) == 50
    assert (first.symbol, first.hour, first.price, first.volume, first.cum_volume) == (
        "101603", "095800", ticks[0].price, ticks[0].volume, ticks[0].cum_volume)
    assert (second.hour, second.price, second.high, second.low) == (
        "095815", ticks[1].price, ticks[1].high, ticks[1].low)
    assert first.open_interest == derivatives.open_interest(derivatives.listed["101603"])
