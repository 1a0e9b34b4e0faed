"""KIS WebSocket codec: subscribe/unsubscribe messages out, typed values in.

`decode` is the one entry point for received text. It never raises: anything it cannot read becomes a
`FrameError` value, so a receive loop can hand every result on without a try block.

Trades come on H0STCNT0 (KRX), H0NXCNT0 (NXT) or H0UNCNT0 (unified), all with the same columns; order
books on H0STASP0 or, six columns wider, H0NXASP0 / H0UNASP0; program trading on H0STPGM0 / H0NXPGM0 /
H0UNPGM0 (11 columns each); index futures trades on H0IFCNT0. What KIS may add is read through: columns
appended to a record, control messages with more (or fewer optional) fields, header names in either case.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from datetime import datetime
from functools import lru_cache
from typing import TypeVar

from pydantic import SecretStr

from core.subscriptions import AckCode
from kis.crypto import NoticeCryptoError, decrypt_notice
from kis.fields import (
    H0IFCNT0_FIELDS,
    H0IFCNT0_INDEX,
    H0STASP0_FIELDS,
    H0STASP0_INDEX,
    H0STCNI0_FIELDS,
    H0STCNI0_INDEX,
    H0STCNT0_FIELDS,
    H0STCNT0_INDEX,
    H0STPGM0_FIELDS,
    H0STPGM0_INDEX,
    H0UNASP0_FIELDS,
)
from kis.protocol import FEED_OF_TRADE_TR, PROGRAM_TRADE_TR_IDS, TrId
from kis.ticks import (
    Ack,
    Decoded,
    ExecutionNotice,
    ExecutionNoticeFrame,
    FrameError,
    FuturesTrade,
    FuturesTradeFrame,
    NoticeKeys,
    OrderBook,
    OrderBookFrame,
    OtherFrame,
    PingPong,
    ProgramTrade,
    ProgramTradeFrame,
    TradeFrame,
    TradeTick,
)
from runtime.clock import KST

SUBSCRIBE, UNSUBSCRIBE = "1", "2"
EXCERPT_CHARS = 120

_TRADE_WIDTH = len(H0STCNT0_FIELDS)
_BOOK_WIDTHS = {
    TrId.ORDER_BOOK.value: len(H0STASP0_FIELDS),
    TrId.ORDER_BOOK_NXT.value: len(H0UNASP0_FIELDS),
    TrId.ORDER_BOOK_UNIFIED.value: len(H0UNASP0_FIELDS),
}
_PROGRAM_WIDTH = len(H0STPGM0_FIELDS)
_PROGRAM_TRS = frozenset(tr_id.value for tr_id in PROGRAM_TRADE_TR_IDS.values())
_NOTICE_WIDTH = len(H0STCNI0_FIELDS)
# Older servers sent 23 notice columns; the typed ones all sit in the shared first 18.
_NOTICE_MIN_WIDTH = H0STCNI0_INDEX["ACNT_NAME"] + 1
_ACK_CODES = {code.value: code for code in AckCode}
_CODE = re.compile(r"[0-9A-Za-z]{1,16}")
_REDACTIONS = (
    (re.compile(r'("approval_key"\s*:\s*")[^"]*'), r"\1<redacted>"),
    (re.compile(r"(invalid approval\s*:\s*)[^\"]*", re.IGNORECASE), r"\1<redacted>"),
)


_Value = TypeVar("_Value")


class _Malformed(Exception):
    """Internal: a frame broke a rule; the message is the one-line reason."""


def subscribe_message(approval_key: str | SecretStr, tr_id: str, tr_key: str) -> str:
    return _registration(approval_key, SUBSCRIBE, tr_id, tr_key)


def unsubscribe_message(approval_key: str | SecretStr, tr_id: str, tr_key: str) -> str:
    return _registration(approval_key, UNSUBSCRIBE, tr_id, tr_key)


def _registration(approval_key: str | SecretStr, tr_type: str, tr_id: str, tr_key: str) -> str:
    key = approval_key.get_secret_value() if isinstance(approval_key, SecretStr) else approval_key
    return json.dumps(
        {
            "header": {"approval_key": key, "custtype": "P", "tr_type": tr_type, "content-type": "utf-8"},
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        },
        separators=(",", ":"),
    )


def decode(raw: str | bytes, keys: NoticeKeys | None = None) -> Decoded:
    """Turn one received WebSocket message into a value; `keys` decrypt execution notices."""
    try:
        if isinstance(raw, bytes | bytearray):
            try:
                raw = bytes(raw).decode("utf-8")
            except UnicodeDecodeError:
                return FrameError("binary message is not UTF-8 text", excerpt(raw))
        if not raw:
            return FrameError("empty message", "")
        if raw[0] == "{":
            return _decode_control(raw)
        if "|" in raw:
            return _decode_data(raw, keys)
        return FrameError("neither a JSON control message nor a data frame", excerpt(raw))
    except _Malformed as exc:
        return FrameError(str(exc), excerpt(raw), *_hints(raw))
    except NoticeCryptoError as exc:
        return FrameError(f"cannot decrypt execution notice: {exc}", excerpt(raw), *_hints(raw))
    except Exception as exc:  # the receive loop must never see an exception
        return FrameError(f"undecodable frame ({type(exc).__name__}: {exc})", excerpt(raw), *_hints(raw))


def _hints(raw: str | bytes | bytearray) -> tuple[str, str]:
    """(tr_id, first field) of a data frame that failed to decode, each "" unless it looks like one."""
    if not isinstance(raw, str) or raw[:1] == "{":
        return "", ""
    parts = raw.split("|", 3)
    tr_id = parts[1] if len(parts) > 1 and _CODE.fullmatch(parts[1]) else ""
    first = parts[3].split("^", 1)[0] if len(parts) == 4 else ""
    return tr_id, first if _CODE.fullmatch(first) else ""


def excerpt(raw: str | bytes | bytearray) -> str:
    """A short, redacted view of a message for errors and logs."""
    text = raw if isinstance(raw, str) else repr(bytes(raw[: EXCERPT_CHARS * 2]))
    text = _redact(text[: EXCERPT_CHARS * 4])
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "..."


def _decode_control(raw: str) -> Decoded:
    try:
        message = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise _Malformed(f"control message is not valid JSON ({exc.__class__.__name__})") from exc
    if not isinstance(message, dict):
        raise _Malformed("control message is not a JSON object")
    message = _lower_keys(message)
    header = message.get("header") or {}
    body = message.get("body")
    if not isinstance(header, dict):
        raise _Malformed("control message header is not an object")
    header = _lower_keys(header)
    if isinstance(body, dict):
        body = _lower_keys(body)
    tr_id = str(header.get("tr_id", ""))
    if tr_id == TrId.PINGPONG:
        return PingPong(raw)
    if not isinstance(body, dict) or body.get("msg_cd") in (None, ""):
        raise _Malformed("control message has no body.msg_cd")
    if body.get("rt_cd") in (None, ""):
        raise _Malformed("control message has no body.rt_cd")
    output = body.get("output")
    keys = None
    if isinstance(output, dict):
        output = _lower_keys(output)
    if isinstance(output, dict) and output.get("key") and output.get("iv"):
        keys = NoticeKeys(key=str(output["key"]), iv=str(output["iv"]))
    msg_cd = str(body["msg_cd"])
    return Ack(
        tr_id=tr_id,
        tr_key=str(header.get("tr_key", "")),
        rt_cd=str(body.get("rt_cd", "")),
        msg_cd=msg_cd,
        msg1=_redact(str(body.get("msg1", ""))),
        code=_ACK_CODES.get(msg_cd),
        encrypted=header.get("encrypt") == "Y",
        keys=keys,
    )


def _lower_keys(mapping: dict[str, object]) -> dict[str, object]:
    """KIS writes `tr_id` and `TR_ID` alike: read every key in lower case (the first spelling wins)."""
    lowered: dict[str, object] = {}
    for key, value in mapping.items():
        lowered.setdefault(str(key).lower(), value)
    return lowered


def _redact(text: str) -> str:
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


def _decode_data(raw: str, keys: NoticeKeys | None) -> Decoded:
    parts = raw.split("|", 3)
    if len(parts) != 4:
        raise _Malformed(f"data frame has {len(parts)} '|'-separated parts, needs 4")
    flag, tr_id, count_text, payload = parts
    if flag != "0" and flag != "1":
        raise _Malformed(f"data frame encryption flag is {flag!r}, not '0' or '1'")
    if not (tr_id.isascii() and tr_id.isalnum()):
        raise _Malformed(f"data frame tr_id {tr_id[:16]!r} is not a TR id (letters and digits)")
    if not (count_text.isascii() and count_text.isdigit()) or int(count_text) == 0:
        raise _Malformed(f"data frame record count {count_text[:8]!r} is not a positive number")
    count = int(count_text)
    if flag == "1":
        if keys is None:
            raise _Malformed(f"encrypted {tr_id} frame but no key/iv from its subscribe ack")
        payload = decrypt_notice(payload, keys.key, keys.iv)
    fields = tuple(payload.split("^"))
    if tr_id in FEED_OF_TRADE_TR:
        build = functools.partial(_trade_tick, tr_id)
        return TradeFrame(tr_id, _typed_records(build, fields, count, _TRADE_WIDTH, _TRADE_WIDTH, 0, tr_id))
    book_width = _BOOK_WIDTHS.get(tr_id)
    if book_width is not None:
        # A KRX-width book record on a wider TR still types: the extra mid-price columns are not read.
        books = _typed_records(_order_book, fields, count, book_width, len(H0STASP0_FIELDS), 0, tr_id)
        return OrderBookFrame(tr_id, books)
    if tr_id == TrId.FUTURES_TRADE:
        width = len(H0IFCNT0_FIELDS)
        return FuturesTradeFrame(tr_id, _typed_records(_futures_trade, fields, count, width, width, 0, tr_id))
    if tr_id in _PROGRAM_TRS:
        trades = _typed_records(_program_trade, fields, count, _PROGRAM_WIDTH, _PROGRAM_WIDTH, 0, tr_id)
        return ProgramTradeFrame(tr_id, trades)
    if tr_id == TrId.NOTICE_REAL or tr_id == TrId.NOTICE_PAPER:
        notices = _typed_records(
            _notice, fields, count, _NOTICE_WIDTH, _NOTICE_MIN_WIDTH, _NOTICE_SYMBOL, tr_id
        )
        return ExecutionNoticeFrame(tr_id, notices)
    return OtherFrame(tr_id, count, fields)


def _typed_records(
    build: Callable[[tuple[str, ...], tuple[str, ...]], _Value],
    fields: tuple[str, ...],
    count: int,
    width: int,
    minimum: int,
    symbol_index: int,
    tr_id: str,
) -> tuple[_Value, ...]:
    """Cut the frame into `count` records and type them. KIS has appended columns before, so records may be
    wider than `width`: an even split gives the stride (every record grew); failing that, the last record
    takes the extra trailing fields. When both layouts fit, the first that types cleanly wins."""
    total = len(fields)
    if total < count * minimum:
        raise _Malformed(f"{tr_id} frame has {total} fields, too few for {count} record(s) of {width}")
    if count == 1:
        return _build_all(build, (fields,), symbol_index, tr_id)
    layouts = []
    if total % count == 0:
        stride = total // count
        layouts.append(tuple(fields[start : start + stride] for start in range(0, total, stride)))
    if total > count * width:
        last = (count - 1) * width
        layouts.append((*(fields[start : start + width] for start in range(0, last, width)), fields[last:]))
    if not layouts:
        raise _Malformed(f"{tr_id} frame's {total} fields do not split into {count} record(s) of {width}")
    for records in layouts[:-1]:
        try:
            return _build_all(build, records, symbol_index, tr_id)
        except _Malformed:
            continue
    return _build_all(build, layouts[-1], symbol_index, tr_id)


def _build_all(
    build: Callable[[tuple[str, ...], tuple[str, ...]], _Value],
    records: tuple[tuple[str, ...], ...],
    symbol_index: int,
    tr_id: str,
) -> tuple[_Value, ...]:
    """Typed values of all records. `build(raw, numeric)` reads text columns from `raw` and numbers from
    `numeric`, which is `raw` itself unless a retry had to read blank numeric columns as 0."""
    values = []
    for number, record in enumerate(records, 1):
        if not record[symbol_index]:
            raise _Malformed(f"{tr_id} record {number} has no symbol")
        try:
            values.append(build(record, record))
        except ValueError:
            try:
                values.append(build(record, tuple(value.strip() or "0" for value in record)))
            except ValueError as exc:
                raise _Malformed(f"{tr_id} record {number}: {exc}") from exc
    return tuple(values)


@lru_cache(maxsize=4096)
def _exchange_time(day: str, hour: str) -> datetime:
    """BSOP_DATE + STCK_CNTG_HOUR as aware KST. Cached: a second's ticks share one datetime."""
    if len(hour) == 5:  # KIS sometimes drops the leading zero before 10:00
        hour = "0" + hour
    if len(day) != 8 or len(hour) != 6 or not (day + hour).isdigit():
        raise ValueError(f"bad exchange date/time {day!r} {hour!r}")
    return datetime(
        int(day[:4]), int(day[4:6]), int(day[6:]), int(hour[:2]), int(hour[2:4]), int(hour[4:]), tzinfo=KST
    )


_T = H0STCNT0_INDEX


def _trade_tick(tr_id: str, f: tuple[str, ...], v: tuple[str, ...]) -> TradeTick:
    """One trade record typed; text columns from `f`, numbers from `v` (see `_build_all`)."""
    return TradeTick(
        symbol=f[_T["MKSC_SHRN_ISCD"]],
        exchange_time=_exchange_time(f[_T["BSOP_DATE"]], f[_T["STCK_CNTG_HOUR"]]),
        price=int(v[_T["STCK_PRPR"]]),
        change=int(v[_T["PRDY_VRSS"]]),
        sign=f[_T["PRDY_VRSS_SIGN"]],
        change_rate=float(v[_T["PRDY_CTRT"]]),
        volume=int(v[_T["CNTG_VOL"]]),
        cum_volume=int(v[_T["ACML_VOL"]]),
        cum_value=int(v[_T["ACML_TR_PBMN"]]),
        open=int(v[_T["STCK_OPRC"]]),
        high=int(v[_T["STCK_HGPR"]]),
        low=int(v[_T["STCK_LWPR"]]),
        ask1=int(v[_T["ASKP1"]]),
        bid1=int(v[_T["BIDP1"]]),
        side=f[_T["CCLD_DVSN"]],
        strength=float(v[_T["CTTR"]]),
        hour_class=f[_T["HOUR_CLS_CODE"]],
        fields=f,
        tr_id=tr_id,
    )


_ASK, _BID = H0STASP0_INDEX["ASKP1"], H0STASP0_INDEX["BIDP1"]
_ASK_SIZE, _BID_SIZE = H0STASP0_INDEX["ASKP_RSQN1"], H0STASP0_INDEX["BIDP_RSQN1"]
_TOTAL_ASK, _TOTAL_BID = H0STASP0_INDEX["TOTAL_ASKP_RSQN"], H0STASP0_INDEX["TOTAL_BIDP_RSQN"]
_BOOK_VOLUME = H0STASP0_INDEX["ACML_VOL"]


def _order_book(f: tuple[str, ...], v: tuple[str, ...]) -> OrderBook:
    return OrderBook(
        symbol=f[0],
        hour=f[1],
        hour_class=f[2],
        asks=tuple(map(int, v[_ASK : _ASK + 10])),
        bids=tuple(map(int, v[_BID : _BID + 10])),
        ask_sizes=tuple(map(int, v[_ASK_SIZE : _ASK_SIZE + 10])),
        bid_sizes=tuple(map(int, v[_BID_SIZE : _BID_SIZE + 10])),
        total_ask_size=int(v[_TOTAL_ASK]),
        total_bid_size=int(v[_TOTAL_BID]),
        cum_volume=int(v[_BOOK_VOLUME]),
        fields=f,
    )


_F = H0IFCNT0_INDEX


def _futures_trade(f: tuple[str, ...], v: tuple[str, ...]) -> FuturesTrade:
    hour = f[_F["BSOP_HOUR"]]
    if len(hour) != 6 or not hour.isdigit():
        raise ValueError(f"bad trade time {hour[:8]!r}")
    return FuturesTrade(
        symbol=f[_F["FUTS_SHRN_ISCD"]],
        hour=hour,
        price=float(v[_F["FUTS_PRPR"]]),
        change=float(v[_F["FUTS_PRDY_VRSS"]]),
        change_rate=float(v[_F["FUTS_PRDY_CTRT"]]),
        open=float(v[_F["FUTS_OPRC"]]),
        high=float(v[_F["FUTS_HGPR"]]),
        low=float(v[_F["FUTS_LWPR"]]),
        volume=int(v[_F["LAST_CNQN"]]),
        cum_volume=int(v[_F["ACML_VOL"]]),
        cum_value=int(v[_F["ACML_TR_PBMN"]]),
        theoretical=float(v[_F["HTS_THPR"]]),
        basis=float(v[_F["MRKT_BASIS"]]),
        open_interest=int(v[_F["HTS_OTST_STPL_QTY"]]),
        ask1=float(v[_F["FUTS_ASKP1"]]),
        bid1=float(v[_F["FUTS_BIDP1"]]),
        fields=f,
    )


_P = H0STPGM0_INDEX


def _program_trade(f: tuple[str, ...], v: tuple[str, ...]) -> ProgramTrade:
    return ProgramTrade(
        symbol=f[_P["MKSC_SHRN_ISCD"]],
        hour=f[_P["STCK_CNTG_HOUR"]],
        sell_volume=int(v[_P["SELN_CNQN"]]),
        sell_value=int(v[_P["SELN_TR_PBMN"]]),
        buy_volume=int(v[_P["SHNU_CNQN"]]),
        buy_value=int(v[_P["SHNU_TR_PBMN"]]),
        net_volume=int(v[_P["NTBY_CNQN"]]),
        net_value=int(v[_P["NTBY_TR_PBMN"]]),
        sell_resting=int(v[_P["SELN_RSQN"]]),
        buy_resting=int(v[_P["SHNU_RSQN"]]),
        net_resting=int(v[_P["WHOL_NTBY_QTY"]]),
        fields=f,
    )


_N = H0STCNI0_INDEX
_NOTICE_SYMBOL = _N["STCK_SHRN_ISCD"]


def _notice(f: tuple[str, ...], v: tuple[str, ...]) -> ExecutionNotice:
    return ExecutionNotice(
        order_no=f[_N["ODER_NO"]],
        original_order_no=f[_N["OODER_NO"]],
        side=f[_N["SELN_BYOV_CLS"]],
        symbol=f[_NOTICE_SYMBOL],
        filled_qty=int(v[_N["CNTG_QTY"]]),
        filled_price=int(v[_N["CNTG_UNPR"]]),
        hour=f[_N["STCK_CNTG_HOUR"]],
        rejected=f[_N["RFUS_YN"]] == "1",
        is_fill=f[_N["CNTG_YN"]] == "2",
        order_qty=int(v[_N["ODER_QTY"]]),
        fields=f,
    )
