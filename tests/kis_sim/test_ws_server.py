"""The simulator's WebSocket server, driven with a raw websocket-client over loopback."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta

import pytest
import websocket

from kis.crypto import decrypt_notice
from kis.fields import H0STASP0_FIELDS, H0STCNI0_INDEX
from kis.ticks import OrderBookFrame, ProgramTradeFrame
from kis.ws_codec import decode
from runtime.clock import KST
from tests.kis_sim.ws_helpers import (
    connect,
    is_trade_frame,
    recv_until,
    send_and_ack,
    trade_records,
)

BUSY = ("005930", "000660", "373220", "207940", "005380")


@pytest.fixture
def approval(kis_sim) -> str:
    return kis_sim.accounts.issue_approval("APPKEY-ONE", "SECRET-ONE")


@pytest.fixture
def session(kis_sim):
    ws = connect(kis_sim.ws_url)
    yield ws
    ws.close()


def _body(ack: dict) -> dict:
    return ack["body"]


def test_subscribe_ack_carries_a_fresh_iv_and_key(session, approval):
    first = send_and_ack(session, approval, "H0STCNT0", "005930")
    second = send_and_ack(session, approval, "H0STASP0", "005930")

    assert first["header"] == {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"}
    assert _body(first)["rt_cd"] == "0"
    assert _body(first)["msg_cd"] == "OPSP0000"
    assert _body(first)["msg1"] == "SUBSCRIBE SUCCESS"
    out1, out2 = _body(first)["output"], _body(second)["output"]
    assert len(out1["iv"]) == 16 and len(out1["key"]) == 32
    assert (out1["iv"], out1["key"]) != (out2["iv"], out2["key"])


def test_second_subscribe_of_the_same_symbol_is_already_in_subscribe(session, approval):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    again = send_and_ack(session, approval, "H0STCNT0", "005930")
    assert (_body(again)["rt_cd"], _body(again)["msg_cd"], _body(again)["msg1"]) == (
        "1", "OPSP0002", "ALREADY IN SUBSCRIBE"
    )
    assert "output" not in _body(again)


def test_unsubscribe_of_an_unknown_registration_is_not_found_and_a_known_one_succeeds(session, approval):
    missing = send_and_ack(session, approval, "H0STCNT0", "000660", tr_type="2")
    assert (_body(missing)["msg_cd"], _body(missing)["msg1"]) == ("OPSP0003", "UNSUBSCRIBE ERROR(not found!)")

    send_and_ack(session, approval, "H0STCNT0", "000660")
    done = send_and_ack(session, approval, "H0STCNT0", "000660", tr_type="2")
    assert (_body(done)["rt_cd"], _body(done)["msg_cd"]) == ("0", "OPSP0001")
    # gone for real: unsubscribing again is not found
    assert _body(send_and_ack(session, approval, "H0STCNT0", "000660", tr_type="2"))["msg_cd"] == "OPSP0003"


def test_the_42nd_registration_across_tr_types_is_refused(kis_sim, session, approval):
    codes = sorted(kis_sim.market.listings)[:25]
    acks = [send_and_ack(session, approval, "H0STCNT0", code) for code in codes]
    acks += [send_and_ack(session, approval, "H0STASP0", code) for code in codes[:15]]
    acks.append(send_and_ack(session, approval, "H0STCNI0", "my-hts-id"))
    assert len(acks) == 41
    assert all(_body(a)["msg_cd"] == "OPSP0000" for a in acks)

    over = send_and_ack(session, approval, "H0STASP0", codes[20])
    assert (_body(over)["rt_cd"], _body(over)["msg_cd"], _body(over)["msg1"]) == (
        "1", "OPSP0008", "MAX SUBSCRIBE OVER"
    )
    send_and_ack(session, approval, "H0STCNT0", codes[0], tr_type="2")
    assert _body(send_and_ack(session, approval, "H0STASP0", codes[20]))["msg_cd"] == "OPSP0000"


def test_a_second_session_of_the_same_app_key_is_refused_and_the_key_frees_on_close(kis_sim, approval):
    first = connect(kis_sim.ws_url)
    send_and_ack(first, approval, "H0STCNT0", "005930")
    second = connect(kis_sim.ws_url, path="/")
    refused = send_and_ack(second, approval, "H0STCNT0", "000660")
    assert refused == {
        "header": {"tr_id": "H0STCNT0", "tr_key": "000660", "encrypt": "N"},
        "body": {"rt_cd": "9", "msg_cd": "OPSP8996", "msg1": "ALREADY IN USE appkey"},
    }
    with pytest.raises(websocket.WebSocketException):
        for _ in range(50):
            second.recv()
    # another app key may open its own session meanwhile
    other = kis_sim.accounts.issue_approval("APPKEY-TWO", "SECRET-TWO")
    third = connect(kis_sim.ws_url)
    assert _body(send_and_ack(third, other, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"

    first.close()
    deadline = time.monotonic() + 5
    while kis_sim.ws.session_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    fourth = connect(kis_sim.ws_url)
    assert _body(send_and_ack(fourth, approval, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"
    third.close()
    fourth.close()


def test_an_unknown_approval_key_is_invalid_approval(session):
    ack = send_and_ack(session, "not-an-approval-key", "H0STCNT0", "005930")
    assert _body(ack)["rt_cd"] == "1"
    assert _body(ack)["msg_cd"] == "OPSP0011"
    assert _body(ack)["msg1"] == "invalid approval : not-an-approval-key"


def test_garbage_requests_get_an_error_and_the_session_stays_usable(session, approval):
    session.send("this is not json")
    error = json.loads(recv_until(session, lambda m: m.startswith("{") and "PINGPONG" not in m))
    assert error["body"]["msg_cd"] == "OPSP0007"
    unknown = send_and_ack(session, approval, "H0XXXXX0", "005930")
    assert unknown["body"]["msg_cd"] == "OPSP0007"
    assert _body(send_and_ack(session, approval, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"


def test_pingpong_arrives_with_the_simulated_time_and_an_echo_is_accepted(kis_sim, session, approval):
    before = kis_sim.clock.now().replace(microsecond=0)
    message = recv_until(session, lambda m: '"PINGPONG"' in m, timeout=5)
    after = kis_sim.clock.now()
    header = json.loads(message)["header"]
    assert header["tr_id"] == "PINGPONG"
    stamp = datetime.strptime(header["datetime"], "%Y%m%d%H%M%S").replace(tzinfo=KST)
    assert before <= stamp <= after
    session.send(message)  # the client's echo
    assert _body(send_and_ack(session, approval, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"


def test_trade_frames_are_46_column_records_of_the_market_trades(kis_sim, session, approval):
    start = kis_sim.clock.now()
    for code in BUSY:
        send_and_ack(session, approval, "H0STCNT0", code)
    received = []
    while len(received) < 40:
        received += trade_records(recv_until(session, is_trade_frame))
    end = kis_sim.clock.now()

    assert {r["MKSC_SHRN_ISCD"] for r in received} <= set(BUSY)
    for record in received:
        code = record["MKSC_SHRN_ISCD"]
        listing = kis_sim.market.listings[code]
        assert record["BSOP_DATE"] == "20240304"
        # exchange times are whole seconds, and the feed step under way at the subscription may be older
        assert start.replace(microsecond=0) - timedelta(seconds=1) <= record.exchange_time() <= end
        price, diff = int(record["STCK_PRPR"]), int(record["PRDY_VRSS"])
        assert diff == price - listing.prev_close
        expected_sign = "2" if diff > 0 else "5" if diff < 0 else "3"
        assert record["PRDY_VRSS_SIGN"] in (expected_sign, "1", "4")
        assert record["CCLD_DVSN"] in ("1", "5")
        assert record["NEW_MKOP_CLS_CODE"] == "20" and record["HOUR_CLS_CODE"] == "0"
        assert int(record["STCK_LWPR"]) <= price <= int(record["STCK_HGPR"])
    # every record is one of the market's own trades, with its volume and running total
    by_code: dict[str, dict[int, tuple[int, int]]] = {}
    for code in BUSY:
        trades = kis_sim.market.trades(code, start - timedelta(seconds=1), end)
        by_code[code] = {t.cum_volume: (t.price, t.volume) for t in trades}
    for record in received:
        known = by_code[record["MKSC_SHRN_ISCD"]]
        cum = int(record["ACML_VOL"])
        assert known[cum] == (int(record["STCK_PRPR"]), int(record["CNTG_VOL"]))


def test_exchange_times_follow_a_jump_of_the_clock(kis_sim, session, approval):
    for code in BUSY:
        send_and_ack(session, approval, "H0STCNT0", code)
    recv_until(session, is_trade_frame)
    jump_to = datetime(2024, 3, 4, 13, 0, tzinfo=KST)
    kis_sim.clock.set(jump_to)
    first_after = recv_until(
        session,
        lambda m: is_trade_frame(m) and trade_records(m)[0].exchange_time() >= jump_to - timedelta(minutes=1),
    )
    later = [first_after] + [recv_until(session, is_trade_frame) for _ in range(5)]
    now = kis_sim.clock.now()
    times = [r.exchange_time() for frame in later for r in trade_records(frame)]
    assert all(jump_to - timedelta(minutes=1) <= t <= now for t in times)
    pong = json.loads(recv_until(session, lambda m: '"PINGPONG"' in m))
    assert pong["header"]["datetime"] >= "20240304130000"


def test_a_busy_feed_step_carries_several_records_in_one_frame(kis_sim, session, approval):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    recv_until(session, is_trade_frame)
    kis_sim.clock.advance(30)  # 30 simulated seconds of trades land in one feed step
    frame = recv_until(session, lambda m: is_trade_frame(m) and int(m.split("|")[2]) > 1)
    count = int(frame.split("|")[2])
    records = trade_records(frame)
    assert len(records) == count > 1
    assert len(frame.split("|", 3)[3].split("^")) == 46 * count
    cums = [int(r["ACML_VOL"]) for r in records]
    assert cums == sorted(cums) and len(set(cums)) == count


def test_order_book_frames_have_59_columns_around_the_last_price(kis_sim, session, approval):
    send_and_ack(session, approval, "H0STASP0", "005930")
    frame = recv_until(session, lambda m: m.startswith("0|H0STASP0|"))
    flag, tr_id, count, payload = frame.split("|", 3)
    fields = payload.split("^")
    assert (flag, tr_id, count) == ("0", "H0STASP0", "001")
    assert len(fields) == len(H0STASP0_FIELDS) == 59
    assert fields[0] == "005930"
    asks = [int(x) for x in fields[3:13]]
    bids = [int(x) for x in fields[13:23]]
    assert asks == sorted(asks) and bids == sorted(bids, reverse=True)
    assert bids[0] < asks[0]
    quote = kis_sim.market.quote("005930", kis_sim.clock.now())
    assert abs(asks[0] - quote.price) <= 2 * (asks[1] - asks[0])


def test_book_and_program_frames_parse_and_agree_with_the_trading(kis_sim, session, approval):
    for tr_id in ("H0STASP0", "H0STPGM0"):
        send_and_ack(session, approval, tr_id, "005930")
    book = decode(recv_until(session, lambda m: m.startswith("0|H0STASP0|")))
    assert isinstance(book, OrderBookFrame)
    (levels,) = book.books
    assert levels.symbol == "005930" and levels.bids[0] < levels.asks[0]
    assert (levels.total_ask_size, levels.total_bid_size) == (sum(levels.ask_sizes), sum(levels.bid_sizes))
    programs = []
    while len(programs) < 2:
        frame = decode(recv_until(session, lambda m: m.startswith("0|H0STPGM0|"), 15))
        assert isinstance(frame, ProgramTradeFrame)
        programs += frame.trades
    quote = kis_sim.market.quote("005930", kis_sim.clock.now())
    for trade in programs:
        assert trade.symbol == "005930"
        assert (trade.net_volume, trade.net_value) == (trade.buy_volume - trade.sell_volume,
                                                       trade.buy_value - trade.sell_value)
        assert trade.net_resting == trade.buy_resting - trade.sell_resting
        assert 0 < trade.sell_volume + trade.buy_volume <= quote.volume
        assert trade.sell_value >= trade.sell_volume * levels.bids[-1] // 2
    first, later = programs[0], programs[-1]
    assert later.sell_volume >= first.sell_volume and later.buy_value >= first.buy_value  # the day's totals


def test_nxt_and_unified_program_trading_is_served(session, approval):
    for tr_id in ("H0NXPGM0", "H0UNPGM0"):
        send_and_ack(session, approval, tr_id, "005930")
    seen: set[str] = set()
    while len(seen) < 2:
        frame = decode(recv_until(session, lambda m: m.startswith(("0|H0NXPGM0|", "0|H0UNPGM0|")), 15))
        assert isinstance(frame, ProgramTradeFrame) and frame.trades[0].symbol == "005930"
        seen.add(frame.tr_id)


def test_drop_sessions_cuts_every_session_and_reconnects_work(kis_sim, session, approval):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    recv_until(session, is_trade_frame)
    kis_sim.faults.drop_sessions()
    with pytest.raises(websocket.WebSocketException):
        for _ in range(10_000):
            session.recv()
    again = connect(kis_sim.ws_url)
    assert _body(send_and_ack(again, approval, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"
    recv_until(again, is_trade_frame)
    again.close()


def test_drop_every_cuts_sessions_after_their_lifetime(kis_sim, session, approval):
    kis_sim.faults.drop_every(0.5)
    send_and_ack(session, approval, "H0STCNT0", "005930")
    opened = time.monotonic()
    with pytest.raises(websocket.WebSocketException):
        for _ in range(10_000):
            session.recv()
    assert time.monotonic() - opened < 5


def test_refused_reconnects_fail_the_handshake_until_the_window_ends(kis_sim):
    kis_sim.faults.refuse_reconnects(0.6)
    with pytest.raises(websocket.WebSocketBadStatusException) as refused:
        connect(kis_sim.ws_url)
    assert refused.value.status_code == 503
    deadline = time.monotonic() + 5
    while True:
        try:
            ws = connect(kis_sim.ws_url)
            break
        except websocket.WebSocketBadStatusException:
            assert time.monotonic() < deadline, "reconnects still refused long after the window"
            time.sleep(0.1)
    ws.close()


def test_unknown_paths_are_not_served(kis_sim):
    for path in ("/elsewhere", "/tryitout/", "/tryitout/H0STCNT0/more"):
        with pytest.raises(websocket.WebSocketBadStatusException) as missing:
            connect(kis_sim.ws_url, path=path)
        assert missing.value.status_code == 404


def test_the_tryitout_tr_id_path_of_kis_samples_is_served_for_any_tr_id(kis_sim, approval):
    ws = connect(kis_sim.ws_url, path="/tryitout/H0STCNT0")
    try:
        assert _body(send_and_ack(ws, approval, "H0STCNT0", "005930"))["msg_cd"] == "OPSP0000"
        assert _body(send_and_ack(ws, approval, "H0STASP0", "005930"))["msg_cd"] == "OPSP0000"
        assert is_trade_frame(recv_until(ws, is_trade_frame))
    finally:
        ws.close()


def test_silenced_sessions_get_no_frames_and_no_pingpong_then_resume(kis_sim, session, approval):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    recv_until(session, is_trade_frame)
    kis_sim.faults.silence_sessions(2.0)
    # whatever was already on the way may still arrive; then nothing for the rest of the window,
    # although trades happen and PINGPONG (every 0.5 s) would be due
    silenced_at = time.monotonic()
    session.settimeout(0.3)
    late = []
    while time.monotonic() - silenced_at < 1.8:
        try:
            message = session.recv()
        except websocket.WebSocketTimeoutException:
            continue
        if time.monotonic() - silenced_at > 0.5:
            late.append(message[:40])
    assert late == []
    recv_until(session, is_trade_frame, timeout=5)
    recv_until(session, lambda m: '"PINGPONG"' in m, timeout=5)


@pytest.mark.parametrize("fault", ["malformed", "truncated"])
def test_garbled_frames_reach_the_client_then_clean_frames_follow(kis_sim, session, approval, fault):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    recv_until(session, is_trade_frame)
    getattr(kis_sim.faults, f"{fault}_frames")(2)
    bad = 0
    good = 0
    deadline = time.monotonic() + 10
    while good < 3 and time.monotonic() < deadline:
        message = recv_until(session, lambda m: m.startswith("0|"))
        try:
            trade_records(message)
            good += 1
        except (AssertionError, ValueError):
            bad += 1
    assert bad == 2 and good == 3


def test_fill_sends_an_encrypted_notice_that_decrypts_with_the_ack_key(kis_sim, session, approval):
    ack = send_and_ack(session, approval, "H0STCNI0", "hts-user")
    key, iv = _body(ack)["output"]["key"], _body(ack)["output"]["iv"]

    assert kis_sim.fill("APPKEY-ONE", "005930", "buy", 10, 70_000) == 1
    frame = recv_until(session, lambda m: m.startswith("1|"))
    flag, tr_id, count, payload = frame.split("|", 3)
    assert (flag, tr_id, count) == ("1", "H0STCNI0", "001")
    fields = decrypt_notice(payload, key, iv).split("^")
    assert fields[H0STCNI0_INDEX["CUST_ID"]] == "hts-user"
    assert fields[H0STCNI0_INDEX["STCK_SHRN_ISCD"]] == "005930"
    assert fields[H0STCNI0_INDEX["CNTG_QTY"]] == "10"
    assert fields[H0STCNI0_INDEX["CNTG_UNPR"]] == "70000"
    assert fields[H0STCNI0_INDEX["SELN_BYOV_CLS"]] == "02"
    assert fields[H0STCNI0_INDEX["CNTG_YN"]] == "2"

    assert kis_sim.fill("APPKEY-ONE", "005930", "sell", 3, 70_100) == 1
    second = recv_until(session, lambda m: m.startswith("1|"))
    sold = decrypt_notice(second.split("|", 3)[3], key, iv).split("^")
    assert sold[H0STCNI0_INDEX["SELN_BYOV_CLS"]] == "01"


def test_fill_without_a_notice_subscription_sends_nothing_and_bad_fills_are_refused(kis_sim, approval):
    assert kis_sim.fill("APPKEY-ONE", "005930", "buy", 1, 70_000) == 0
    with pytest.raises(ValueError, match="side"):
        kis_sim.fill("APPKEY-ONE", "005930", "hold", 1, 70_000)
    with pytest.raises(ValueError, match="unknown symbol"):
        kis_sim.fill("APPKEY-ONE", "999999", "buy", 1, 70_000)


def test_requests_for_another_keys_approval_on_a_bound_session_are_refused(kis_sim, session, approval):
    send_and_ack(session, approval, "H0STCNT0", "005930")
    other = kis_sim.accounts.issue_approval("APPKEY-TWO", "SECRET-TWO")
    assert _body(send_and_ack(session, other, "H0STCNT0", "000660"))["msg_cd"] == "OPSP0011"
