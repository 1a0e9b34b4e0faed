"""The client's KOSPI200 futures/option calls against the simulator over real loopback sockets."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from datetime import datetime, timedelta
from datetime import time as clock_time

import pytest
from pydantic import SecretStr

from config.accounts import Account
from config.settings import RateLimitSettings
from core.derivatives import Kind, futures_pair, option_months
from kis import protocol
from kis.errors import KisApiError
from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from runtime.clock import KST
from tests.kis.test_rest_client import Recorder
from tools.kis_sim.futures import Derivatives
from tools.kis_sim.server import KisSimulator, SimConfig

FAST = RateLimitSettings(retry_backoff_seconds=(0.05,), max_retries=1)
NOW = datetime(2024, 3, 4, 11, 0, tzinfo=KST)


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    """A manual clock at 11:00 on the suite's simulated Monday (March 2024 expires Thursday the 14th)."""
    return dataclasses.replace(kis_sim_config, speed=0.0, start=clock_time(11, 0))


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.session.close()


def make_client(sim: KisSimulator, recorder: Recorder, *, paper: bool = False) -> KisRestClient:
    account = Account(app_key=SecretStr("PSfuopKey"), app_secret=SecretStr("fuop-secret"), paper=paper)
    return KisRestClient(account, base_url=sim.rest_url, clock=sim.clock, rate_limits=FAST,
                         limiters=RateLimiterRegistry(), session=recorder.session)


def test_front_futures_bars_page_back_102_at_a_time_and_match_the_simulator(
    kis_sim: KisSimulator, recorder: Recorder
) -> None:
    front, _following = futures_pair(NOW.date())
    assert front.futures_code == "101V03"
    chart = make_client(kis_sim, recorder).fuop_minute_bars(front.futures_code)
    bars = chart.bars
    assert len(bars) == 135  # 08:45 to 10:59; 11:00 has not closed
    assert bars[0].time == datetime(2024, 3, 4, 8, 45, tzinfo=KST)
    assert bars[-1].time == datetime(2024, 3, 4, 10, 59, tzinfo=KST)
    assert all(b.time - a.time == timedelta(minutes=1) for a, b in itertools.pairwise(bars))
    derivatives = Derivatives(kis_sim.market)
    model = derivatives.bars(derivatives.listed["101V03"], NOW)
    assert [(b.open, b.high, b.low, b.close, b.volume) for b in bars] == [
        (m.open, m.high, m.low, m.close, m.volume) for m in model
    ]
    assert chart.price == bars[-1].close and chart.index == derivatives.index_at(NOW)
    assert chart.volume == sum(bar.volume for bar in bars) and chart.open_interest > 0
    pages = recorder.calls(protocol.FUOP_MINUTE_BARS_PATH, status=200)
    assert [page.query["FID_INPUT_HOUR_1"] for page in pages] == ["110000", "091700"]  # 102 bars: 09:18-10:59
    assert {page.tr_id for page in pages} == {"FHKIF03020200"}
    assert pages[0].query["FID_COND_MRKT_DIV_CODE"] == "F"


def test_bars_since_stop_paging_and_options_use_market_o(kis_sim: KisSimulator, recorder: Recorder) -> None:
    client = make_client(kis_sim, recorder)
    since = datetime(2024, 3, 4, 10, 30, tzinfo=KST)
    chart = client.fuop_minute_bars("101V06", since=since, until=datetime(2024, 3, 4, 10, 45, tzinfo=KST))
    assert [bar.time for bar in (chart.bars[0], chart.bars[-1])] == [since, since + timedelta(minutes=15)]
    assert len(recorder.calls(protocol.FUOP_MINUTE_BARS_PATH)) == 1
    month = option_months(NOW.date())[0]
    option = client.fuop_minute_bars(month.option_code(Kind.CALL, 350.0))
    assert len(option.bars) == 135
    assert recorder.calls(protocol.FUOP_MINUTE_BARS_PATH)[-1].query["FID_COND_MRKT_DIV_CODE"] == "O"


def test_option_board_matches_the_simulator(kis_sim: KisSimulator, recorder: Recorder) -> None:
    month = option_months(NOW.date())[0]
    board = make_client(kis_sim, recorder).option_board(month.option_month)
    assert board.month == "202403" and len(board.calls) == len(board.puts) == 61
    derivatives = Derivatives(kis_sim.market)
    for quote in (*board.calls, *board.puts):
        listed = derivatives.listed[quote.code]
        assert quote.strike == listed.strike
        assert quote.price == derivatives.bars(listed, NOW)[-1].close
        greeks, vol = derivatives.greeks(listed, NOW)
        assert quote.iv == round(vol * 100, 2) and quote.delta == round(greeks.delta, 4)
        assert quote.open_interest == derivatives.open_interest(listed) and quote.volume > 0
    query = recorder.calls(protocol.OPTION_BOARD_PATH, status=200)[0].query
    assert (query["FID_MRKT_CLS_CODE"], query["FID_MRKT_CLS_CODE1"], query["FID_MTRT_CNT"]) == \
        ("CO", "PO", "202403")


def test_the_board_is_real_accounts_only(kis_sim: KisSimulator, recorder: Recorder) -> None:
    kis_sim.accounts.register("PSfuopKey", paper=True)
    with pytest.raises(KisApiError) as raised:
        make_client(kis_sim, recorder, paper=True).option_board("202403")
    assert raised.value.msg_cd == "OPSQ0002"


@pytest.mark.parametrize("code", ["005930", "101V0", "401V03", "", "201V03350X"])
def test_bad_contract_codes_are_refused_before_any_call(
    kis_sim: KisSimulator, recorder: Recorder, code: str
) -> None:
    with pytest.raises(ValueError, match="futures or option code"):
        make_client(kis_sim, recorder).fuop_minute_bars(code)
    with pytest.raises(ValueError, match="option month"):
        make_client(kis_sim, recorder).option_board("2024-03")
    assert recorder.exchanges == []
