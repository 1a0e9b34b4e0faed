"""One minute of the earlier pipeline's derivatives data: KOSPI200 futures bars, the option board, the matrix.

`derivatives_minute` is the job `actors.minute_jobs` runs each minute: for the minute that closed
last, the front and next futures' bars (`futures_101`), the front option month's board (`option_chain_raw`)
and its matrix (`option_matrices_kospi200`), as rows for `store.postgres.upsert` or the Parquet writer.
Rows carry aware KST times; the store turns them into the tables' wall times. The board is a real-account
call (KIS refuses it to paper keys), about one call a second at most by KIS's advice: one a minute here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.candles import FUTURES_CLOSE, FUTURES_OPEN, in_session, kst_minute
from core.derivatives import futures_pair, option_months
from core.option_matrix import DEFAULT_DEPTH, BoardRow, option_matrix
from kis.models import FuopBar, OptionQuote
from kis.rest import KisRestClient
from runtime.clock import Clock
from store.tables import KOSPI200_FUTURES_TABLE, KOSPI200_MATRIX_TABLE

UNDERLYING = "KOSPI200"
CHAIN_TABLE = "option_chain_raw"


@dataclass(frozen=True, slots=True)
class MinuteRows:
    """The rows of one closed minute, by table."""

    minute: datetime
    tables: dict[str, list[dict[str, Any]]]


def derivatives_minute(
    client: KisRestClient, clock: Clock, *, minute: datetime | None = None, depth: int = DEFAULT_DEPTH
) -> MinuteRows:
    """Fetch and shape `minute` (default: the minute that closed last before `clock.now()`): three
    futures/board calls. Outside the derivatives session (08:45-15:45) there is no such minute: no call, no
    rows. The board is the one KIS shows now, labelled with that minute."""
    minute = kst_minute(minute) if minute is not None else kst_minute(clock.now()) - timedelta(minutes=1)
    if not in_session(minute, FUTURES_OPEN, FUTURES_CLOSE):
        return MinuteRows(minute, {KOSPI200_FUTURES_TABLE: [], CHAIN_TABLE: [], KOSPI200_MATRIX_TABLE: []})
    front, following = futures_pair(minute.date())
    futures_rows: list[dict[str, Any]] = []
    index = 0.0
    for contract in (front, following):
        chart = client.fuop_minute_bars(contract.futures_code, since=minute, until=minute)
        index = index or chart.index
        futures_rows += [futures_row(bar) for bar in chart.bars]
    month = option_months(minute.date())[0]
    board = client.option_board(month.option_month)
    chain = [_chain_row(minute, month.option_month, "C", quote) for quote in board.calls]
    chain += [_chain_row(minute, month.option_month, "P", quote) for quote in board.puts]
    matrix = option_matrix(
        minute, UNDERLYING, index, map(_board_row, board.calls), map(_board_row, board.puts), depth=depth
    )
    matrix_rows = [
        {"timestamp": row.timestamp, "underlying_symbol": row.underlying, "metric_type": str(row.metric),
         "underlying_price": row.underlying_price, "atm_strike": row.atm_strike, **row.columns}
        for row in matrix
    ]
    return MinuteRows(
        minute,
        {KOSPI200_FUTURES_TABLE: futures_rows, CHAIN_TABLE: chain, KOSPI200_MATRIX_TABLE: matrix_rows},
    )


def futures_row(bar: FuopBar) -> dict[str, Any]:
    """A `futures_{sym3}` row of a futures bar."""
    return {"timestamp": bar.time, "symbol": bar.code, "open": bar.open, "high": bar.high, "low": bar.low,
            "close": bar.close, "volume": bar.volume}


def _board_row(quote: OptionQuote) -> BoardRow:
    return BoardRow(quote.code, quote.strike, quote.price, quote.iv, quote.delta, quote.open_interest,
                    quote.volume)


def _chain_row(minute: datetime, month: str, side: str, quote: OptionQuote) -> dict[str, Any]:
    return {
        "timestamp": minute, "underlying": UNDERLYING, "month": month, "code": quote.code, "side": side,
        "strike": quote.strike, "price": quote.price, "theoretical": quote.theoretical, "iv": quote.iv,
        "delta": quote.delta, "gamma": quote.gamma, "vega": quote.vega, "theta": quote.theta,
        "open_interest": quote.open_interest, "volume": quote.volume,
    }
