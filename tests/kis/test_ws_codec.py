"""The WebSocket codec against the verbatim live frame, built frames, every ack and broken input."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from core.subscriptions import AckCode
from kis.crypto import NoticeCryptoError, decrypt_notice, encrypt_notice
from kis.fields import (
    H0IFCNT0_FIELDS,
    H0STASP0_FIELDS,
    H0STCNI0_FIELDS,
    H0STCNI0_INDEX,
    H0STCNT0_FIELDS,
    H0STCNT0_INDEX,
    H0STPGM0_FIELDS,
    H0UNASP0_FIELDS,
)
from kis.protocol import ACK_MESSAGES
from kis.ticks import (
    Ack,
    ExecutionNoticeFrame,
    FrameError,
    FuturesTradeFrame,
    NoticeKeys,
    OrderBookFrame,
    OtherFrame,
    PingPong,
    ProgramTradeFrame,
    TradeFrame,
    TradeTick,
)
from kis.ws_codec import EXCERPT_CHARS, decode, subscribe_message, unsubscribe_message
from runtime.clock import KST

# docs/kis_api_facts.md, section 6, "Verbatim samples": a live H0STCNT0 frame from 2023-03-24.
LIVE_FRAME = (
    "0|H0STCNT0|001|005930^112616^62700^2^400^0.64^62700.41^62700^63000^62300^62700^62600^125^9694968"
    "^607878273600^25807^15918^-9889^93.01^4614191^4291558^1^0.45^63.03^090013^3^0^090646^5^-300^100741^2"
    "^400^20230324^20^N^71292^244009^2795345^2044512^0.16^5367918^180.61^0^^62700"
)
LIVE_RECORD = LIVE_FRAME.split("|", 3)[3]
PINGPONG = '{"header":{"tr_id":"PINGPONG","datetime":"20260914093000"}}'
KEY = "kis-notice-key-0123456789abcdefg"  # 32 bytes
IV = "kis-notice-iv-16"  # 16 bytes
APPROVAL = "a1b2c3d4-e5f6-7890-abcd-ef1234567890"


def record(**changes: str) -> str:
    """The live record with some columns replaced, by H0STCNT0 column name."""
    fields = LIVE_RECORD.split("^")
    for name, value in changes.items():
        fields[H0STCNT0_INDEX[name]] = value
    return "^".join(fields)


def trade_frame(*records: str, count: int | None = None) -> str:
    return f"0|H0STCNT0|{len(records) if count is None else count:03d}|" + "^".join(records)


def notice_plaintext(**changes: str) -> str:
    values = dict.fromkeys(H0STCNI0_FIELDS, "")
    values.update(
        CUST_ID="hts-user", ACNT_NO="12345678", ODER_NO="0000012345", OODER_NO="", SELN_BYOV_CLS="02",
        RCTF_CLS="0", ODER_KIND="00", ODER_COND="0", STCK_SHRN_ISCD="005930", CNTG_QTY="3",
        CNTG_UNPR="62700", STCK_CNTG_HOUR="112616", RFUS_YN="0", CNTG_YN="2", ACPT_YN="2", BRNC_NO="01577",
        ODER_QTY="10", ACNT_NAME="홍길동", ORD_EXG_GB="1", POPUP_YN="N", CNTG_ISNM40="삼성전자",
        ODER_PRC="62700",
    )  # fmt: skip
    values.update(changes)
    return "^".join(values[name] for name in H0STCNI0_FIELDS)


# --- H0STCNT0 -------------------------------------------------------------------------------------------


def test_live_frame_decodes_to_one_typed_tick() -> None:
    frame = decode(LIVE_FRAME)

    assert isinstance(frame, TradeFrame)
    assert frame.tr_id == "H0STCNT0"
    (tick,) = frame.ticks
    assert tick.symbol == "005930"
    assert tick.exchange_time == datetime(2023, 3, 24, 11, 26, 16, tzinfo=KST)
    assert tick.exchange_time.utcoffset() == timedelta(hours=9)
    assert (tick.price, tick.change, tick.sign, tick.change_rate) == (62700, 400, "2", 0.64)
    assert (tick.volume, tick.cum_volume, tick.cum_value) == (125, 9694968, 607878273600)
    assert (tick.open, tick.high, tick.low) == (62700, 63000, 62300)
    assert (tick.ask1, tick.bid1) == (62700, 62600)
    assert (tick.side, tick.strength, tick.hour_class) == ("1", 93.01, "0")
    assert tick.fields == tuple(LIVE_RECORD.split("^"))
    assert len(tick.fields) == len(H0STCNT0_FIELDS)


def test_a_tick_is_an_immutable_named_tuple_with_the_raw_fields_out_of_its_repr_and_its_tr_last() -> None:
    frame = decode(LIVE_FRAME)
    assert isinstance(frame, TradeFrame)
    (tick,) = frame.ticks
    assert TradeTick._fields[-2:] == ("fields", "tr_id") and len(TradeTick._fields) == 19
    assert tick.tr_id == "H0STCNT0" and tick.feed == "krx"
    with pytest.raises(AttributeError):
        tick.price = 1  # type: ignore[misc]
    assert tick._replace(side="5").side == "5" and tick.side == "1"
    rebuilt = TradeTick(*tick)
    assert rebuilt == tick and hash(rebuilt) == hash(tick)
    assert repr(tick).startswith("TradeTick(symbol='005930', exchange_time=")
    assert "hour_class='0'" in repr(tick) and "fields" not in repr(tick) and "607878273600" in repr(tick)
    assert "tr_id='H0STCNT0'" in repr(tick)
    assert {name: getattr(tick, name) for name in tick._fields} == tick._asdict()


def test_live_frame_as_utf8_bytes_decodes_like_text() -> None:
    assert decode(LIVE_FRAME.encode()) == decode(LIVE_FRAME)


@pytest.mark.parametrize(
    "one",
    [LIVE_RECORD, record(CNTG_VOL=""), record(STCK_CNTG_HOUR="93000"), LIVE_RECORD + "^appended^columns"],
    ids=["live", "blank volume", "five-digit time", "wider record"],
)
def test_a_three_digit_and_a_plain_record_count_decode_alike(one: str) -> None:
    fast = decode("0|H0STCNT0|001|" + one)
    general = decode("0|H0STCNT0|1|" + one)
    assert isinstance(fast, TradeFrame)
    assert fast == general
    assert type(fast.ticks[0]) is TradeTick


def test_several_records_in_one_frame_keep_their_order_and_values() -> None:
    raw = trade_frame(
        record(MKSC_SHRN_ISCD="005930", STCK_CNTG_HOUR="090000", STCK_PRPR="62800", CNTG_VOL="7"),
        record(MKSC_SHRN_ISCD="000660", STCK_CNTG_HOUR="090001", STCK_PRPR="91000", CNTG_VOL="1"),
        record(MKSC_SHRN_ISCD="035420", STCK_CNTG_HOUR="152959", STCK_PRPR="201500", CCLD_DVSN="5"),
    )

    frame = decode(raw)

    assert isinstance(frame, TradeFrame)
    assert [t.symbol for t in frame.ticks] == ["005930", "000660", "035420"]
    assert [t.price for t in frame.ticks] == [62800, 91000, 201500]
    assert [t.exchange_time.time().isoformat() for t in frame.ticks] == ["09:00:00", "09:00:01", "15:29:59"]
    assert [t.volume for t in frame.ticks[:2]] == [7, 1]
    assert frame.ticks[2].side == "5"
    assert all(len(t.fields) == 46 for t in frame.ticks)


def test_extra_trailing_fields_stay_with_the_last_record() -> None:
    raw = trade_frame(record(), record(MKSC_SHRN_ISCD="000660") + "^NEW1^NEW2")

    frame = decode(raw)

    assert isinstance(frame, TradeFrame)
    first, last = frame.ticks
    assert len(first.fields) == 46
    assert last.fields[-2:] == ("NEW1", "NEW2") and len(last.fields) == 48
    assert (last.symbol, last.price) == ("000660", 62700)


def test_records_that_all_grew_columns_split_by_the_even_stride() -> None:
    raw = trade_frame(record() + "^X1^X2", record(MKSC_SHRN_ISCD="000660", STCK_PRPR="91000") + "^Y1^Y2")

    frame = decode(raw)

    assert isinstance(frame, TradeFrame)
    assert [(t.symbol, t.price, t.fields[-1]) for t in frame.ticks] == [
        ("005930", 62700, "X2"),
        ("000660", 91000, "Y2"),
    ]


def test_single_record_with_extra_columns_parses() -> None:
    frame = decode(trade_frame(record() + "^A^B^C"))

    assert isinstance(frame, TradeFrame)
    assert frame.ticks[0].price == 62700 and frame.ticks[0].fields[-3:] == ("A", "B", "C")


def test_blank_numeric_column_reads_as_zero_and_the_raw_field_stays_blank() -> None:
    frame = decode(trade_frame(record(ASKP1="", CTTR="")))

    assert isinstance(frame, TradeFrame)
    tick = frame.ticks[0]
    assert (tick.ask1, tick.strength) == (0, 0.0)
    assert tick.fields[H0STCNT0_INDEX["ASKP1"]] == ""


def test_blank_text_column_is_not_turned_into_a_code() -> None:
    frame = decode(trade_frame(record(HOUR_CLS_CODE="", ASKP1="")))

    assert isinstance(frame, TradeFrame)
    assert frame.ticks[0].hour_class == ""


def test_five_digit_trade_time_means_a_dropped_leading_zero() -> None:
    frame = decode(trade_frame(record(STCK_CNTG_HOUR="93005")))

    assert isinstance(frame, TradeFrame)
    assert frame.ticks[0].exchange_time == datetime(2023, 3, 24, 9, 30, 5, tzinfo=KST)


def test_every_shorter_prefix_of_the_live_frame_is_an_error_value_not_an_exception() -> None:
    last_separator = LIVE_FRAME.rindex("^")
    for cut in range(len(LIVE_FRAME)):
        result = decode(LIVE_FRAME[:cut])
        if cut <= last_separator:
            assert isinstance(result, FrameError), cut
        else:  # only the untyped last column (VI_STND_PRC) is shortened
            assert isinstance(result, TradeFrame), cut


@pytest.mark.parametrize(
    ("raw", "reason_part"),
    [
        ("", "empty"),
        ("hello world", "neither"),
        ("0|H0STCNT0", "parts"),
        ("0|H0STCNT0|001", "parts"),
        ("2|H0STCNT0|001|" + LIVE_RECORD, "encryption flag"),
        ("0|H0STCNT0|abc|" + LIVE_RECORD, "record count"),
        ("0|H0STCNT0|000|" + LIVE_RECORD, "record count"),
        ("0|H0STCNT0|-01|" + LIVE_RECORD, "record count"),
        ("0|H0STCNT0|002|" + LIVE_RECORD, "too few"),
        ("0|H0STCNT0|002|" + LIVE_RECORD + "^" + "^".join(LIVE_RECORD.split("^")[:40]), "too few"),
        ("0|H0STCNT0|001|" + record(STCK_PRPR="62,700"), "record 1"),
        ("0|H0STCNT0|001|" + record(BSOP_DATE="2023-03-24"), "record 1"),
        ("0|H0STCNT0|001|" + record(STCK_CNTG_HOUR="256161"), "record 1"),
        ("0|H0STCNT0|001|" + record(MKSC_SHRN_ISCD=""), "no symbol"),
        ("0|H0STCNT0|002|" + record() + "^" + record(CNTG_VOL="1.5"), "record 2"),
        ("1|H0STCNT0|001|" + LIVE_RECORD, "no key/iv"),
        ("{", "not valid JSON"),
        ("{not json at all", "not valid JSON"),
        ('{"header": 5, "body": {}}', "header"),
        ("[1, 2]", "neither"),
        ('{"header":{"tr_id":"H0STCNT0"}}', "body.msg_cd"),
        ('{"header":{"tr_id":"H0STCNT0"},"body":{"rt_cd":"0"}}', "body.msg_cd"),
        ("\x00\x01\x02", "neither"),
    ],
)
def test_malformed_messages_give_a_one_line_reason(raw: str, reason_part: str) -> None:
    result = decode(raw)

    assert isinstance(result, FrameError)
    assert reason_part in result.reason
    assert "\n" not in result.reason
    assert len(result.raw_excerpt) <= EXCERPT_CHARS + 3


def test_binary_that_is_not_utf8_is_an_error_value() -> None:
    result = decode(b"\xff\xfe\x00garbage")

    assert isinstance(result, FrameError)
    assert "UTF-8" in result.reason


def test_long_garbage_excerpt_is_truncated() -> None:
    result = decode("x" * 10_000)

    assert isinstance(result, FrameError)
    assert result.raw_excerpt == "x" * EXCERPT_CHARS + "..."


def test_error_excerpt_never_carries_an_approval_key() -> None:
    echoed = '{"header":{"approval_key":"' + APPROVAL + '","tr_type":"1"},"body":{"input":}}'

    result = decode(echoed)

    assert isinstance(result, FrameError)
    assert APPROVAL not in result.raw_excerpt and APPROVAL[:8] not in repr(result)


@given(st.text(max_size=400))
def test_arbitrary_text_never_raises(raw: str) -> None:
    assert decode(raw) is not None


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    assert decode(raw) is not None


@given(st.lists(st.text(alphabet="0123456789.-^ |x", max_size=12), min_size=1, max_size=100))
def test_frames_with_arbitrary_fields_never_raise(fields: list[str]) -> None:
    result = decode("0|H0STCNT0|001|" + "^".join(fields))

    assert isinstance(result, TradeFrame | FrameError)


# --- control messages --------------------------------------------------------------------------------------


def test_pingpong_is_reported_with_its_exact_text_for_the_echo() -> None:
    assert decode(PINGPONG) == PingPong(PINGPONG)


@pytest.mark.parametrize("code", list(AckCode))
def test_every_ack_code_of_the_facts_table_decodes(code: AckCode) -> None:
    rt_cd, msg1 = ACK_MESSAGES[code]
    if code is AckCode.INVALID_APPROVAL:
        msg1 += APPROVAL
    raw = json.dumps(
        {
            "header": {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N"},
            "body": {"rt_cd": rt_cd, "msg_cd": code.value, "msg1": msg1},
        }
    )

    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert (ack.tr_id, ack.tr_key, ack.msg_cd, ack.code, ack.rt_cd) == (
        "H0STCNT0",
        "005930",
        code.value,
        code,
        rt_cd,
    )
    assert ack.ok is (rt_cd == "0")
    assert ack.keys is None and ack.encrypted is False
    assert APPROVAL not in ack.msg1 and APPROVAL not in repr(ack)


def test_invalid_approval_ack_keeps_its_meaning_without_the_key() -> None:
    raw = (
        '{"header":{"tr_id":"H0STCNT0","tr_key":"005930"},'
        '"body":{"rt_cd":"1","msg_cd":"OPSP0011","msg1":"invalid approval : ' + APPROVAL + '"}}'
    )

    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert ack.msg1.startswith("invalid approval :") and APPROVAL not in ack.msg1


def test_verbatim_session_refusal_without_header_decodes() -> None:
    ack = decode('{"body":{"rt_cd":"9","msg_cd":"OPSP8996","msg1":"ALREADY IN USE appkey"}}')

    assert isinstance(ack, Ack)
    assert (ack.code, ack.ok, ack.tr_id) == (AckCode.APPKEY_IN_USE, False, "")


def test_verbatim_already_subscribed_ack_decodes() -> None:
    raw = (
        '{"header":{"tr_id":"H0STCNT0","tr_key":"005930"},'
        '"body":{"rt_cd":"1","msg_cd":"OPSP0002","msg1":"ALREADY IN SUBSCRIBE"}}'
    )

    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert (ack.code, ack.msg1, ack.ok) == (AckCode.ALREADY_SUBSCRIBED, "ALREADY IN SUBSCRIBE", False)


def test_unknown_msg_cd_is_an_ack_without_a_known_code() -> None:
    ack = decode('{"header":{"tr_id":"H0STCNT0"},"body":{"rt_cd":"1","msg_cd":"OPSP9999","msg1":"new"}}')

    assert isinstance(ack, Ack)
    assert ack.code is None and ack.msg_cd == "OPSP9999"


def test_subscribe_ack_carries_the_notice_keys_outside_its_repr() -> None:
    raw = json.dumps(
        {
            "header": {"tr_id": "H0STCNI0", "tr_key": "hts-user", "encrypt": "Y"},
            "body": {
                "rt_cd": "0",
                "msg_cd": "OPSP0000",
                "msg1": "SUBSCRIBE SUCCESS",
                "output": {"iv": IV, "key": KEY},
            },
        }
    )

    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert ack.ok and ack.encrypted
    assert ack.keys == NoticeKeys(key=KEY, iv=IV)
    assert KEY not in repr(ack) and IV not in repr(ack)


# --- subscribe / unsubscribe -------------------------------------------------------------------------------


@pytest.mark.parametrize(("build", "tr_type"), [(subscribe_message, "1"), (unsubscribe_message, "2")])
def test_registration_messages_match_the_documented_shape(
    build: Callable[[str | SecretStr, str, str], str], tr_type: str
) -> None:
    message = json.loads(build(SecretStr(APPROVAL), "H0STCNT0", "005930"))

    assert message == {
        "header": {"approval_key": APPROVAL, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"},
        "body": {"input": {"tr_id": "H0STCNT0", "tr_key": "005930"}},
    }
    assert build(APPROVAL, "H0STCNT0", "005930") == build(SecretStr(APPROVAL), "H0STCNT0", "005930")


# --- H0STASP0 ---------------------------------------------------------------------------------------------


def test_order_book_record_decodes_levels_in_order() -> None:
    values = {name: "0" for name in H0STASP0_FIELDS}
    values.update(MKSC_SHRN_ISCD="005930", BSOP_HOUR="093001", HOUR_CLS_CODE="0", ACML_VOL="5000")
    values.update({f"ASKP{i}": str(62700 + 100 * (i - 1)) for i in range(1, 11)})
    values.update({f"BIDP{i}": str(62600 - 100 * (i - 1)) for i in range(1, 11)})
    values.update({f"ASKP_RSQN{i}": str(i) for i in range(1, 11)})
    values.update({f"BIDP_RSQN{i}": str(10 * i) for i in range(1, 11)})
    values.update(TOTAL_ASKP_RSQN="55", TOTAL_BIDP_RSQN="550", STCK_DEAL_CLS_CODE="00")
    payload = "^".join(values[name] for name in H0STASP0_FIELDS)

    frame = decode("0|H0STASP0|001|" + payload)

    assert isinstance(frame, OrderBookFrame)
    (book,) = frame.books
    assert (book.symbol, book.hour, book.hour_class) == ("005930", "093001", "0")
    assert book.asks[0] == 62700 and book.asks[-1] == 63600
    assert book.bids[0] == 62600 and book.bids[-1] == 61700
    assert book.ask_sizes == tuple(range(1, 11)) and book.bid_sizes == tuple(range(10, 101, 10))
    assert (book.total_ask_size, book.total_bid_size, book.cum_volume) == (55, 550, 5000)
    assert len(book.fields) == 59


def test_truncated_order_book_is_an_error_value() -> None:
    result = decode("0|H0STASP0|001|" + "^".join(["005930"] + ["1"] * 40))

    assert isinstance(result, FrameError) and "H0STASP0" in result.reason


# --- H0STPGM0 / H0NXPGM0 / H0UNPGM0 program trading -------------------------------------------------------

PROGRAM_RECORD = "005930^093001^1200^75240000^1500^94050000^300^18810000^420^610^190"


@pytest.mark.parametrize("tr_id", ["H0STPGM0", "H0NXPGM0", "H0UNPGM0"])
def test_program_trading_records_decode_on_every_feed(tr_id: str) -> None:
    frame = decode(f"0|{tr_id}|002|{PROGRAM_RECORD}^{PROGRAM_RECORD.replace('005930', '000660')}")

    assert isinstance(frame, ProgramTradeFrame) and frame.tr_id == tr_id
    first, second = frame.trades
    assert (first.symbol, first.hour, second.symbol) == ("005930", "093001", "000660")
    assert (first.sell_volume, first.buy_volume, first.net_volume) == (1200, 1500, 300)
    assert (first.sell_value, first.buy_value, first.net_value) == (75240000, 94050000, 18810000)
    assert (first.sell_resting, first.buy_resting, first.net_resting) == (420, 610, 190)
    assert len(first.fields) == len(H0STPGM0_FIELDS) == 11
    received = datetime(2024, 3, 4, 9, 30, 2, tzinfo=KST)
    assert first.exchange_time(received) == datetime(2024, 3, 4, 9, 30, 1, tzinfo=KST)


def test_a_program_record_with_a_column_more_still_decodes() -> None:
    (trade,) = decode(f"0|H0STPGM0|001|{PROGRAM_RECORD}^7").trades
    assert trade.net_resting == 190


def test_a_bad_program_frame_is_one_line_naming_its_tr_and_symbol() -> None:
    result = decode("0|H0STPGM0|001|" + PROGRAM_RECORD.replace("^1200^", "^12x0^"))

    assert isinstance(result, FrameError) and not result.may_carry_trades
    assert (result.tr_id, result.tr_key) == ("H0STPGM0", "005930")
    assert "H0STPGM0 record 1" in result.reason and "\n" not in result.reason


def test_unknown_tr_data_frame_is_kept_whole() -> None:
    assert decode("0|H0STMKO0|001|005930^A^B") == OtherFrame("H0STMKO0", 1, ("005930", "A", "B"))


# --- H0STCNI0 / H0STCNI9 execution notices -----------------------------------------------------------------


def test_encrypted_notice_round_trips_through_a_frame() -> None:
    plaintext = notice_plaintext()
    raw = "1|H0STCNI0|001|" + encrypt_notice(plaintext, KEY, IV)

    frame = decode(raw, NoticeKeys(key=KEY, iv=IV))

    assert isinstance(frame, ExecutionNoticeFrame)
    (notice,) = frame.notices
    assert (notice.order_no, notice.side, notice.symbol) == ("0000012345", "02", "005930")
    assert (notice.filled_qty, notice.filled_price, notice.order_qty) == (3, 62700, 10)
    assert (notice.is_fill, notice.rejected, notice.hour) == (True, False, "112616")
    assert notice.fields == tuple(plaintext.split("^"))
    assert notice.fields[H0STCNI0_INDEX["CNTG_ISNM40"]] == "삼성전자"
    assert "12345678" not in repr(notice)


def test_paper_notice_receipt_is_not_a_fill() -> None:
    plaintext = notice_plaintext(CNTG_YN="1", CNTG_QTY="", CNTG_UNPR="")
    frame = decode("1|H0STCNI9|001|" + encrypt_notice(plaintext, KEY, IV), NoticeKeys(key=KEY, iv=IV))

    assert isinstance(frame, ExecutionNoticeFrame)
    assert frame.tr_id == "H0STCNI9"
    assert (frame.notices[0].is_fill, frame.notices[0].filled_qty) == (False, 0)


def test_notice_with_the_wrong_key_is_an_error_value_without_the_key() -> None:
    raw = "1|H0STCNI0|001|" + encrypt_notice(notice_plaintext(), KEY, IV)
    wrong = "another-key-0123456789abcdefghij"

    result = decode(raw, NoticeKeys(key=wrong, iv=IV))

    assert isinstance(result, FrameError)
    assert "decrypt" in result.reason
    assert wrong not in result.reason and KEY not in result.reason and IV not in result.reason


def test_encrypted_frame_that_is_not_base64_is_an_error_value() -> None:
    result = decode("1|H0STCNI0|001|not base64 at all!", NoticeKeys(key=KEY, iv=IV))

    assert isinstance(result, FrameError) and "base64" in result.reason


def test_notice_crypto_matches_openssl() -> None:
    # printf 'ABCDEFGHIJ^005930^체결' | openssl enc -aes-256-cbc -K <hex of KEY> -iv <hex of IV> -base64 -A
    expected = "pVJVKFhtmNJZiebE8ZWV/jkE283YOnIscEwvNbHTQb4="

    assert encrypt_notice("ABCDEFGHIJ^005930^체결", KEY, IV) == expected
    assert decrypt_notice(expected, KEY, IV) == "ABCDEFGHIJ^005930^체결"


@given(st.text(max_size=300))
def test_notice_crypto_round_trips_any_text(text: str) -> None:
    assert decrypt_notice(encrypt_notice(text, KEY, IV), KEY, IV) == text


@pytest.mark.parametrize(("key", "iv"), [(KEY[:16], IV), (KEY, IV[:8]), ("", "")])
def test_notice_crypto_rejects_wrong_key_sizes_without_echoing_them(key: str, iv: str) -> None:
    with pytest.raises(NoticeCryptoError) as info:
        encrypt_notice("x", key, iv)

    assert "AES-256" in str(info.value)
    assert (key == "" or key not in str(info.value)) and (iv == "" or iv not in str(info.value))


def test_session_refusal_with_the_header_kis_sends_decodes() -> None:
    raw = json.dumps({
        "header": {"tr_id": "H0STCNT0", "tr_key": "000660", "encrypt": "N"},
        "body": {"rt_cd": "9", "msg_cd": "OPSP8996", "msg1": "ALREADY IN USE appkey"},
    })  # fmt: skip

    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert (ack.code, ack.ok, ack.tr_id, ack.tr_key) == (AckCode.APPKEY_IN_USE, False, "H0STCNT0", "000660")


@pytest.mark.parametrize(
    "header",
    [
        {"tr_id": "H0STCNT0", "tr_key": "005930", "encrypt": "N", "datetime": "20260310093000", "new": "x"},
        {"tr_id": "H0STCNT0", "tr_key": "005930"},
        {"tr_id": "H0STCNT0"},
        None,
    ],
)
def test_control_messages_with_or_without_extra_fields_decode(header: dict[str, str] | None) -> None:
    body = {
        "rt_cd": "0", "msg_cd": "OPSP0000", "msg1": "SUBSCRIBE SUCCESS", "extra": {"nested": [1]},
        "output": {"iv": "0123456789abcdef", "key": "k" * 32, "new_output_field": "y"},
    }  # fmt: skip
    message: dict[str, object] = {"body": body, "trailer": "ignored"}
    if header is not None:
        message["header"] = header

    ack = decode(json.dumps(message))

    assert isinstance(ack, Ack)
    tr_id = header["tr_id"] if header else ""
    assert (ack.code, ack.ok, ack.tr_id) == (AckCode.SUBSCRIBE_SUCCESS, True, tr_id)
    assert ack.keys is not None and ack.keys.iv == "0123456789abcdef"


def test_pingpong_with_extra_fields_is_still_a_pingpong_to_echo() -> None:
    raw = json.dumps({"header": {"tr_id": "PINGPONG", "datetime": "20260310093000", "seq": "1"}, "body": {}})
    assert decode(raw) == PingPong(raw)


# --- NXT and unified feeds; what KIS may add ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("tr_id", "feed"), [("H0STCNT0", "krx"), ("H0NXCNT0", "nxt"), ("H0UNCNT0", "unified")]
)
def test_every_trade_feed_decodes_with_its_tr_id_on_each_tick(tr_id: str, feed: str) -> None:
    later = record(STCK_CNTG_HOUR="112617", CNTG_VOL="7", ACML_VOL="9694975")
    frame = decode(f"0|{tr_id}|002|{LIVE_RECORD}^{later}")

    assert isinstance(frame, TradeFrame) and frame.tr_id == tr_id
    seen = [(tick.tr_id, tick.feed, tick.volume) for tick in frame.ticks]
    assert seen == [(tr_id, feed, 125), (tr_id, feed, 7)]
    assert frame.ticks[0].price == 62700


def test_columns_appended_to_unified_records_are_read_through() -> None:
    wider = [LIVE_RECORD + "^new1^new2", record(CNTG_VOL="9") + "^new1^new2"]
    frame = decode("0|H0UNCNT0|002|" + "^".join(wider))

    assert isinstance(frame, TradeFrame)
    assert [tick.volume for tick in frame.ticks] == [125, 9]
    assert frame.ticks[1].fields[-2:] == ("new1", "new2")


def book_payload(names: tuple[str, ...]) -> str:
    values = dict.fromkeys(names, "0")
    values.update(MKSC_SHRN_ISCD="005930", BSOP_HOUR="080501", HOUR_CLS_CODE="0", ACML_VOL="700")
    values.update({f"ASKP{i}": str(62700 + 100 * (i - 1)) for i in range(1, 11)})
    values.update({f"BIDP{i}": str(62600 - 100 * (i - 1)) for i in range(1, 11)})
    return "^".join(values[name] for name in names)


@pytest.mark.parametrize("tr_id", ["H0NXASP0", "H0UNASP0"])
def test_nxt_and_unified_order_books_with_their_mid_price_columns_decode(tr_id: str) -> None:
    frame = decode(f"0|{tr_id}|001|{book_payload(H0UNASP0_FIELDS)}")

    assert isinstance(frame, OrderBookFrame) and frame.tr_id == tr_id
    (book,) = frame.books
    assert (book.symbol, book.hour, book.asks[0], book.bids[0], book.cum_volume) == (
        "005930", "080501", 62700, 62600, 700
    )
    assert len(book.fields) == 65


def test_a_unified_book_record_of_krx_width_still_decodes() -> None:
    frame = decode(f"0|H0UNASP0|001|{book_payload(H0STASP0_FIELDS)}")
    assert isinstance(frame, OrderBookFrame) and frame.books[0].asks[0] == 62700


@pytest.mark.parametrize(
    "raw",
    [
        '{"header":{"tr_id":"H0UNCNT0","tr_key":"005930","encrypt":"N"},'
        '"body":{"rt_cd":"0","msg_cd":"OPSP0000","msg1":"SUBSCRIBE SUCCESS","output":{"iv":"i","key":"k"}}}',
        '{"HEADER":{"TR_ID":"H0UNCNT0","TR_KEY":"005930","ENCRYPT":"N"},'
        '"BODY":{"RT_CD":"0","MSG_CD":"OPSP0000","MSG1":"SUBSCRIBE SUCCESS","OUTPUT":{"IV":"i","KEY":"k"}}}',
        '{"Header":{"Tr_Id":"H0UNCNT0","tr_key":"005930","encrypt":"N","datetime":"20260914080000"},'
        '"body":{"rt_cd":"0","msg_cd":"OPSP0000","msg1":"SUBSCRIBE SUCCESS","output":{"iv":"i","key":"k"},'
        '"extra":{"new":1}},"trailer":"appended"}',
    ],
    ids=["lower", "upper", "mixed with extra fields"],
)
def test_acks_read_alike_in_either_header_case_and_with_extra_fields(raw: str) -> None:
    ack = decode(raw)

    assert isinstance(ack, Ack)
    assert (ack.tr_id, ack.tr_key, ack.code) == ("H0UNCNT0", "005930", AckCode.SUBSCRIBE_SUCCESS)
    assert ack.ok
    assert ack.keys == NoticeKeys(key="k", iv="i")


@pytest.mark.parametrize(
    "raw",
    [
        '{"body":{"rt_cd":"9","msg_cd":"OPSP8996","msg1":"ALREADY IN USE appkey"}}',
        '{"header":{"tr_id":"H0UNCNT0","tr_key":"005930","encrypt":"N"},'
        '"body":{"rt_cd":"9","msg_cd":"OPSP8996","msg1":"ALREADY IN USE appkey"}}',
        '{"header":{"TR_ID":"","TR_KEY":"","ENCRYPT":"N","DATETIME":"20260914080000"},'
        '"body":{"RT_CD":"9","MSG_CD":"OPSP8996","MSG1":"ALREADY IN USE appkey","OUTPUT":{}}}',
    ],
    ids=["no header", "with header", "upper case with extra fields"],
)
def test_the_appkey_in_use_refusal_reads_with_or_without_a_header(raw: str) -> None:
    ack = decode(raw)
    assert isinstance(ack, Ack) and (ack.code, ack.ok) == (AckCode.APPKEY_IN_USE, False)


@pytest.mark.parametrize(
    "raw",
    [
        '{"header":{"TR_ID":"PINGPONG","DATETIME":"20260914080000"}}',
        '{"header":{"tr_id":"PINGPONG","datetime":"20260914080000","tr_key":"","encrypt":"N"},"body":{}}',
    ],
    ids=["upper case", "extra fields"],
)
def test_pingpong_reads_in_either_case_and_with_extra_fields_and_keeps_its_text(raw: str) -> None:
    assert decode(raw) == PingPong(raw)


def test_an_error_names_whether_the_frame_could_have_carried_trades() -> None:
    unified = decode("0|H0UNCNT0|002|" + LIVE_RECORD)
    book = decode("0|H0UNASP0|001|005930^1")

    assert isinstance(unified, FrameError) and unified.may_carry_trades
    assert isinstance(book, FrameError) and not book.may_carry_trades


def futures_record(hour: str, price: str, cum: str, extra: tuple[str, ...] = ()) -> str:
    values = dict.fromkeys(H0IFCNT0_FIELDS, "0")
    values.update(FUTS_SHRN_ISCD="101W09", BSOP_HOUR=hour, FUTS_PRDY_VRSS="-1.25", FUTS_PRPR=price,
                  FUTS_OPRC="352.00", FUTS_HGPR="353.10", FUTS_LWPR="349.80", LAST_CNQN="4", ACML_VOL=cum,
                  ACML_TR_PBMN="8123456", HTS_THPR="351.02", MRKT_BASIS="0.71", HTS_OTST_STPL_QTY="250123",
                  FUTS_ASKP1="350.55", FUTS_BIDP1="350.50")
    return "^".join((*(values[name] for name in H0IFCNT0_FIELDS), *extra))


def test_index_futures_trades_decode_with_their_fifty_columns_and_added_ones() -> None:
    frame = decode(f"0|H0IFCNT0|002|{futures_record('101501', '350.55', '90210')}^"
                   f"{futures_record('101502', '350.50', '90214')}")
    assert isinstance(frame, FuturesTradeFrame) and len(frame.trades) == 2
    first, second = frame.trades
    assert (first.symbol, first.hour, first.price, first.change, first.volume, first.cum_volume) == (
        "101W09", "101501", 350.55, -1.25, 4, 90210)
    assert (first.open, first.high, first.low, first.ask1, first.bid1) == (352.0, 353.1, 349.8, 350.55, 350.5)
    assert (first.theoretical, first.basis, first.open_interest, first.cum_value) == (351.02, 0.71, 250123,
                                                                                        8123456)
    assert (second.hour, second.cum_volume) == ("101502", 90214) and len(first.fields) == 50
    wider = decode(f"0|H0IFCNT0|001|{futures_record('101503', '350.60', '90215', ('N', '7'))}")
    assert isinstance(wider, FuturesTradeFrame) and wider.trades[0].price == 350.6  # KIS appended columns


def test_a_garbled_futures_frame_is_an_error_that_costs_no_stock_a_gap() -> None:
    error = decode(f"0|H0IFCNT0|001|{futures_record('10:15', '350.55', '90210')}")
    assert isinstance(error, FrameError) and "H0IFCNT0" in error.reason
    assert not error.may_carry_trades
