"""The front-month future's streamed trades (H0IFCNT0) as rows of `futures_trades_101` and spine messages.

A record has a time of day only; the day it was received on completes it (`trade_time`). Rows carry aware
KST times like every pipeline row; the store turns them into the table's wall times.
"""

from __future__ import annotations

from datetime import date, datetime, time
from typing import Any

from core.calendar import KST
from kis.ticks import FuturesTrade
from messages.market import FuturesTradesReceived
from spine import wire


def trade_time(day: date, hour: str) -> datetime:
    """`day` at the record's `HHMMSS` (aware KST)."""
    return datetime.combine(day, time(int(hour[:2]), int(hour[2:4]), int(hour[4:6])), tzinfo=KST)


def futures_trade_row(day: date, trade: FuturesTrade) -> dict[str, Any]:
    return {
        "timestamp": trade_time(day, trade.hour), "symbol": trade.symbol, "price": trade.price,
        "volume": trade.volume, "cum_volume": trade.cum_volume, "change": trade.change, "open": trade.open,
        "high": trade.high, "low": trade.low, "ask1": trade.ask1, "bid1": trade.bid1,
        "open_interest": trade.open_interest, "basis": trade.basis, "theoretical": trade.theoretical,
    }


def futures_trade_facts(message: FuturesTradesReceived) -> list[wire.FuturesTrade]:
    """The message's trades as they go on the spine (`futures.trade.<code>`)."""
    return [
        wire.FuturesTrade(
            symbol=trade.symbol, exchange_time=trade_time(message.day, trade.hour), received_at=message.at,
            price=trade.price, volume=trade.volume, cum_volume=trade.cum_volume, change=trade.change,
            open=trade.open, high=trade.high, low=trade.low, ask1=trade.ask1, bid1=trade.bid1,
            open_interest=trade.open_interest, basis=trade.basis, account=message.account,
        )
        for trade in message.trades
    ]
