"""Nextrade in the simulator: which symbols it lists, its sessions, the unified totals, and the H0NX*/H0UN*
subscriptions of the WebSocket server."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta

import pytest

from kis.ratelimit import RateLimiterRegistry
from kis.rest import KisRestClient
from runtime.clock import KST
from tests.kis.test_rest_client import FAST_RETRIES, make_account
from tests.kis_sim.ws_helpers import connect, parse_data_frame, recv_until, send_and_ack
from tools.kis_sim.market import NXT_LISTED_SHARE, Market
from tools.kis_sim.server import SimConfig

DAY = date(2024, 3, 4)


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime.combine(DAY, time(hour, minute, second), tzinfo=KST)


@pytest.fixture(scope="module")
def market() -> Market:
    return Market(seed=7, trading_date=DAY, n_symbols=200)


def largest_listed(market: Market) -> str:
    return max(market.nxt_listed, key=lambda code: market.listing(code).market_cap)


def test_nextrade_lists_the_largest_caps(market: Market) -> None:
    listed = market.nxt_listed
    assert len(listed) == round(len(market.listings) * NXT_LISTED_SHARE)
    smallest_listed = min(market.listing(code).market_cap for code in listed)
    assert all(listing.market_cap <= smallest_listed for code, listing in market.listings.items()
               if code not in listed)


def test_nxt_trades_fall_in_its_sessions_only_and_never_for_an_unlisted_symbol(market: Market) -> None:
    code = largest_listed(market)
    day = market.nxt_trades(code, at(0, 0), at(23, 59))
    sessions = [(time(8, 0), time(8, 50)), (time(9, 0), time(15, 20)), (time(15, 30), time(20, 0))]
    assert {trade.venue for trade in day} == {"NXT"}
    for start, end in sessions:
        assert any(start <= trade.time.time() < end for trade in day), (start, end)
    assert all(any(start <= trade.time.time() < end for start, end in sessions) for trade in day)
    unlisted = next(code for code in market.listings if code not in market.nxt_listed)
    assert market.nxt_trades(unlisted, at(0, 0), at(23, 59)) == []
    cum = [trade.cum_volume for trade in day]
    assert cum == sorted(cum) and len(set(cum)) == len(cum)


def test_nxt_prices_follow_krx_while_both_trade(market: Market) -> None:
    code = largest_listed(market)
    krx = market.trades(code, at(10, 0), at(10, 1))
    nxt = market.nxt_trades(code, at(10, 0), at(10, 1))
    assert nxt and len(nxt) < len(krx)
    low, high = min(t.price for t in krx), max(t.price for t in krx)
    assert all(low <= trade.price <= high for trade in nxt)


def test_the_after_market_starts_from_the_krx_close(market: Market) -> None:
    code = largest_listed(market)
    close = market.trades(code, at(15, 29), at(15, 30))[-1].price
    first = market.nxt_trades(code, at(15, 30), at(15, 35))[0]
    assert abs(first.price - close) <= 0.02 * close


def test_unified_trades_merge_both_venues_with_running_totals_over_both(market: Market) -> None:
    code = largest_listed(market)
    start, end = at(11, 0), at(11, 2)
    krx, nxt = market.trades(code, start, end), market.nxt_trades(code, start, end)
    unified = market.unified_trades(code, start, end)
    assert len(unified) == len(krx) + len(nxt)
    assert [t.time for t in unified] == sorted(t.time for t in unified)
    last_krx, last_nxt = krx[-1], nxt[-1]
    assert unified[-1].cum_volume == last_krx.cum_volume + last_nxt.cum_volume
    assert unified[-1].cum_value == last_krx.cum_value + last_nxt.cum_value
    cum = [t.cum_volume for t in unified]
    assert cum == sorted(cum)
    assert {t.venue for t in unified} == {"KRX", "NXT"}


def test_the_unified_pre_market_is_nxt_alone_and_an_unlisted_symbol_is_krx_alone(market: Market) -> None:
    code = largest_listed(market)
    pre = (at(8, 0), at(8, 10))
    assert market.unified_trades(code, *pre) == market.nxt_trades(code, *pre)
    unlisted = next(code for code in market.listings if code not in market.nxt_listed)
    window = (at(10, 0), at(10, 5))
    assert market.unified_trades(unlisted, *window) == market.trades(unlisted, *window)


def test_venue_quotes_add_up_both_venues(market: Market) -> None:
    code = largest_listed(market)
    moment = at(17, 0)
    krx, nxt, unified = (market.venue_quote(code, moment, market_code) for market_code in ("J", "NX", "UN"))
    last_nxt = market.nxt_trades(code, at(16, 30), moment)[-1]
    assert nxt.price == last_nxt.price and nxt.volume == last_nxt.cum_volume
    assert unified.volume == krx.volume + nxt.volume and unified.value == krx.value + nxt.value
    assert unified.price == nxt.price and krx.price == market.trades(code, at(15, 29), at(15, 30))[-1].price
    assert unified.high == max(krx.high, nxt.high) and unified.low == min(krx.low, nxt.low)
    pre = market.venue_quote(code, at(8, 30), "UN")
    assert pre.volume == market.venue_quote(code, at(8, 30), "NX").volume > 0 and pre.open > 0


def test_nxt_trades_are_the_same_whatever_window_is_asked_first() -> None:
    in_order = Market(seed=7, trading_date=DAY, n_symbols=200)
    code = largest_listed(in_order)
    early, late = (at(8, 0), at(8, 20)), (at(16, 0), at(16, 5))
    expected = in_order.nxt_trades(code, *early) + in_order.nxt_trades(code, *late)
    late_first = Market(seed=7, trading_date=DAY, n_symbols=200)
    later = late_first.nxt_trades(code, *late)
    assert late_first.nxt_trades(code, *early) + later == expected


# --- the WebSocket server -----------------------------------------------------------------------------------


@pytest.fixture
def kis_sim_config(kis_sim_config: SimConfig) -> SimConfig:
    return dataclasses.replace(kis_sim_config, start=time(15, 35))


@pytest.fixture
def approval(kis_sim) -> str:
    return kis_sim.accounts.issue_approval("APPKEY-NXT", "SECRET-NXT")


@pytest.fixture
def session(kis_sim):
    ws = connect(kis_sim.ws_url)
    yield ws
    ws.close()


@pytest.mark.parametrize(
    ("tr_id", "trades_of"), [("H0UNCNT0", "unified_trades"), ("H0NXCNT0", "nxt_trades")]
)
def test_after_market_trades_arrive_on_the_unified_and_nxt_feeds(
    kis_sim, session, approval, tr_id, trades_of
):
    code = largest_listed(kis_sim.market)
    start = kis_sim.clock.now()
    ack = send_and_ack(session, approval, tr_id, code)
    assert ack["body"]["msg_cd"] == "OPSP0000" and ack["header"]["tr_id"] == tr_id
    received = []
    while len(received) < 5:
        frame_tr, records = parse_data_frame(recv_until(session, lambda m: m.startswith(f"0|{tr_id}|"), 15))
        assert frame_tr == tr_id and all(len(record) == 46 for record in records)
        received += records
    known = {t.cum_volume: t.price for t in getattr(kis_sim.market, trades_of)(
        code, start - timedelta(seconds=2), kis_sim.clock.now()
    )}
    for record in received:
        assert record[0] == code and "153000" <= record[1] < "200000"
        assert known[int(record[13])] == int(record[2])  # ACML_VOL -> STCK_PRPR of the same trade


def test_nxt_and_unified_books_have_the_mid_price_columns(kis_sim, session, approval):
    code = largest_listed(kis_sim.market)
    send_and_ack(session, approval, "H0UNASP0", code)
    tr_id, (record,) = parse_data_frame(recv_until(session, lambda m: m.startswith("0|H0UNASP0|"), 10))
    assert tr_id == "H0UNASP0" and len(record) == 65 and record[0] == code


@pytest.mark.parametrize("tr_id", ["H0UNANC0", "H0UNMKO0", "H0UNPGM0"])
def test_the_other_unified_trs_are_acknowledged(session, approval, tr_id):
    ack = send_and_ack(session, approval, tr_id, "005930")
    assert (ack["header"]["tr_id"], ack["body"]["msg_cd"]) == (tr_id, "OPSP0000")


def test_unified_minute_bars_carry_both_venues_and_the_after_market(kis_sim):
    code = largest_listed(kis_sim.market)
    client = KisRestClient(make_account(), base_url=kis_sim.rest_url, clock=kis_sim.clock,
                           rate_limits=FAST_RETRIES, limiters=RateLimiterRegistry())
    with client:
        unified = client.minute_bars(code, since=time(15, 0), until=time(15, 34), market_code="UN")
        krx = client.minute_bars(code, since=time(15, 0), until=time(15, 34))
    assert [bar.time.time() for bar in unified] == [time(15, minute) for minute in range(35)]
    assert krx[-1].time.time() == time(15, 29)
    moment = timedelta(microseconds=1)
    trades = kis_sim.market.unified_trades(code, at(15, 30) - moment, at(15, 35) - moment)
    after_market = sum(bar.volume for bar in unified if bar.time.time() >= time(15, 30))
    assert after_market == sum(t.volume for t in trades) > 0
    assert sum(bar.volume for bar in unified[:20]) > sum(bar.volume for bar in krx[:20])  # NXT's share
