"""KIS Open API protocol constants shared by the client and the simulator (see docs/kis_api_facts.md)."""

from __future__ import annotations

from enum import StrEnum

from core.subscriptions import AckCode

REAL_REST_URL = "https://openapi.koreainvestment.com:9443"
PAPER_REST_URL = "https://openapivts.koreainvestment.com:29443"
REAL_WS_URL = "ws://ops.koreainvestment.com:21000"
PAPER_WS_URL = "ws://ops.koreainvestment.com:31000"
WS_PATH = "/tryitout"

TOKEN_PATH = "/oauth2/tokenP"
REVOKE_PATH = "/oauth2/revokeP"
APPROVAL_PATH = "/oauth2/Approval"

QUOTATIONS = "/uapi/domestic-stock/v1/quotations"
INQUIRE_PRICE_PATH = f"{QUOTATIONS}/inquire-price"
MULTI_PRICE_PATH = f"{QUOTATIONS}/intstock-multprice"
MINUTE_BARS_PATH = f"{QUOTATIONS}/inquire-time-itemchartprice"
DAILY_BARS_PATH = f"{QUOTATIONS}/inquire-daily-itemchartprice"
VOLUME_RANK_PATH = f"{QUOTATIONS}/volume-rank"
BALANCE_PATH = "/uapi/domestic-stock/v1/trading/inquire-balance"
FUTUREOPTION_QUOTATIONS = "/uapi/domestic-futureoption/v1/quotations"
FUOP_MINUTE_BARS_PATH = f"{FUTUREOPTION_QUOTATIONS}/inquire-time-fuopchartprice"
OPTION_BOARD_PATH = f"{FUTUREOPTION_QUOTATIONS}/display-board-callput"

MULTI_PRICE_MAX_SYMBOLS = 30
MINUTE_BARS_PER_CALL = 30
DAILY_BARS_PER_CALL = 100
FUOP_MINUTE_BARS_PER_CALL = 102
"""inquire-time-fuopchartprice answers at most 102 bars a call (KIS's documentation)."""
OPTION_BOARD_MAX_ROWS = 100
"""display-board-callput answers at most 100 calls (output1) and 100 puts (output2)."""


class TrId(StrEnum):
    INQUIRE_PRICE = "FHKST01010100"
    MULTI_PRICE = "FHKST11300006"
    MINUTE_BARS = "FHKST03010200"
    DAILY_BARS = "FHKST03010100"
    VOLUME_RANK = "FHPST01710000"
    FUOP_MINUTE_BARS = "FHKIF03020200"
    OPTION_BOARD = "FHPIF05030100"
    BALANCE_REAL = "TTTC8434R"
    BALANCE_PAPER = "VTTC8434R"
    HOLIDAY = "CTCA0903R"
    TRADE = "H0STCNT0"
    TRADE_NXT = "H0NXCNT0"
    TRADE_UNIFIED = "H0UNCNT0"
    ORDER_BOOK = "H0STASP0"
    ORDER_BOOK_NXT = "H0NXASP0"
    ORDER_BOOK_UNIFIED = "H0UNASP0"
    EXPECTED_TRADE_UNIFIED = "H0UNANC0"
    MARKET_STATUS = "H0STMKO0"
    MARKET_STATUS_UNIFIED = "H0UNMKO0"
    PROGRAM_TRADE = "H0STPGM0"
    PROGRAM_TRADE_NXT = "H0NXPGM0"
    PROGRAM_TRADE_UNIFIED = "H0UNPGM0"
    FUTURES_TRADE = "H0IFCNT0"
    NOTICE_REAL = "H0STCNI0"
    NOTICE_PAPER = "H0STCNI9"
    PINGPONG = "PINGPONG"


class MarketCode(StrEnum):
    """`FID_COND_MRKT_DIV_CODE` of quotes and charts: which venue's prices a call asks for."""

    KRX = "J"
    NXT = "NX"
    UNIFIED = "UN"


TRADE_TR_IDS: dict[str, TrId] = {"krx": TrId.TRADE, "nxt": TrId.TRADE_NXT, "unified": TrId.TRADE_UNIFIED}
"""The trade TR id of each feed (`websocket.feed`); all three frames have the H0STCNT0 columns."""
ORDER_BOOK_TR_IDS: dict[str, TrId] = {
    "krx": TrId.ORDER_BOOK, "nxt": TrId.ORDER_BOOK_NXT, "unified": TrId.ORDER_BOOK_UNIFIED,
}
"""The order book TR id of each feed; the NXT and unified books append six mid-price columns."""
PROGRAM_TRADE_TR_IDS: dict[str, TrId] = {
    "krx": TrId.PROGRAM_TRADE, "nxt": TrId.PROGRAM_TRADE_NXT, "unified": TrId.PROGRAM_TRADE_UNIFIED,
}
"""The program trading TR id of each feed; all three frames have the H0STPGM0 columns."""
MARKET_CODES: dict[str, MarketCode] = {
    "krx": MarketCode.KRX, "nxt": MarketCode.NXT, "unified": MarketCode.UNIFIED,
}
"""The quote and chart market code of each feed."""
FEED_OF_TRADE_TR: dict[str, str] = {tr_id.value: feed for feed, tr_id in TRADE_TR_IDS.items()}


class ErrorCode(StrEnum):
    RATE_LIMIT = "EGW00201"
    TOKEN_EXPIRED = "EGW00123"
    TOKEN_INVALID = "EGW00121"
    TOKEN_TOO_SOON = "EGW00133"
    SUCCESS = "MCA00000"


ACK_MESSAGES: dict[AckCode, tuple[str, str]] = {
    AckCode.SUBSCRIBE_SUCCESS: ("0", "SUBSCRIBE SUCCESS"),
    AckCode.UNSUBSCRIBE_SUCCESS: ("0", "UNSUBSCRIBE SUCCESS"),
    AckCode.ALREADY_SUBSCRIBED: ("1", "ALREADY IN SUBSCRIBE"),
    AckCode.UNSUBSCRIBE_NOT_FOUND: ("1", "UNSUBSCRIBE ERROR(not found!)"),
    AckCode.INTERNAL_ERROR: ("1", "internal error"),
    AckCode.MAX_SUBSCRIBE_OVER: ("1", "MAX SUBSCRIBE OVER"),
    AckCode.INVALID_APPROVAL: ("1", "invalid approval : "),
    AckCode.APPKEY_IN_USE: ("9", "ALREADY IN USE appkey"),
}

SIGN_UPPER_LIMIT, SIGN_RISE, SIGN_FLAT, SIGN_LOWER_LIMIT, SIGN_FALL = "1", "2", "3", "4", "5"
