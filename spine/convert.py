"""What the actors hand the publisher, turned into public messages (`spine.wire`).

Actors pass the domain message they have just handled (after it reached the journal), or a ready `Fact`;
the publisher's thread calls `facts_of` on it, so the actors' threads never pay for the conversion. Streamed
ticks, thousands a second, are the exception: `tick_messages` writes their JSON directly from the codec's
typed values, the JSON `ticks_of`'s models would give (a test keeps the two equal), without a model per tick.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from core.gaps import Gap
from core.models import Trigger
from core.sessions import Venue, venue_of
from core.settings import SessionSettings
from core.slots import SlotChange
from messages.gaps import ExpectedGapStarted
from messages.market import OrderBooksReceived, ProgramTradesReceived, ScanCompleted, TicksReceived
from messages.recording import GapMarked, OverflowRecorded, RecoveryRecorded
from messages.schedule import DayEventFired, PhaseChanged
from messages.streaming import SetSubscriptions
from runtime.jsonl import json_number, json_text
from spine import wire

Publishable = (
    wire.Fact | TicksReceived | OrderBooksReceived | ProgramTradesReceived | ScanCompleted | OverflowRecorded
    | RecoveryRecorded | GapMarked | PhaseChanged | DayEventFired | SetSubscriptions | Trigger
)


def facts_of(item: Publishable, sessions: SessionSettings) -> Iterator[wire.Fact]:
    """The public messages that say what `item` says (ticks name their venue from `sessions`, as the tick
    files do); TypeError for anything else."""
    match item:
        case wire.Fact():
            yield item
        case TicksReceived():
            yield from ticks_of(item, sessions)
        case OrderBooksReceived():
            yield from books_of(item)
        case ProgramTradesReceived():
            yield from program_trading_of(item)
        case ScanCompleted():
            yield from snapshots_of(item)
        case OverflowRecorded():
            for line in item.lines:
                yield wire.Overflowed(account=item.account, **line)
        case RecoveryRecorded():
            yield from recovered_of(item)
        case GapMarked():
            marker = item.marker.model_dump(exclude={"gap_type"})
            yield wire.GapMarked(account=item.account, **marker)
        case PhaseChanged():
            yield wire.PhaseChange(at=item.at, phase=item.phase.value, previous=item.previous.value)
        case DayEventFired():
            yield wire.DayEventDue(at=item.at, event=item.event.value)
        case SetSubscriptions():
            yield wire.SlotTargets(at=item.at, account=item.account, symbols=item.symbols,
                                   order_books=item.order_books, program_trading=item.program_trading)
        case Trigger():
            yield wire.TriggerFired(
                symbol=item.symbol, kind=item.kind.value, strength=item.strength, value=item.value,
                threshold=item.threshold, detected_at=item.detected_at, expires_at=item.expires_at,
            )
        case _:
            raise TypeError(f"nothing to publish for a {type(item).__name__}")


def ticks_of(message: TicksReceived, sessions: SessionSettings) -> Iterator[wire.Tick]:
    received = message.at
    for tick in message.ticks:
        yield wire.Tick(
            symbol=tick.symbol, venue=venue_of(tick.feed, tick.exchange_time, sessions),
            exchange_time=tick.exchange_time, received_at=received,
            price=tick.price, volume=tick.volume, cum_volume=tick.cum_volume, source="ws",
            account=message.account, cum_value=tick.cum_value, change_rate=tick.change_rate,
            ask1=tick.ask1, bid1=tick.bid1, side=tick.side, strength=tick.strength,
        )


def tick_messages(message: TicksReceived, sessions: SessionSettings) -> Iterator[tuple[str, bytes]]:
    """Each streamed tick of `message` as its symbol and its public `tick` message (JSON)."""
    received = message.at.isoformat()
    account = json_text(message.account)
    times: dict[datetime, str] = {}  # trade times have whole seconds: the ticks of a second share the text
    for tick in message.ticks:
        venue = venue_of(tick.feed, tick.exchange_time, sessions)
        exchange_time = times.get(tick.exchange_time)
        if exchange_time is None:
            exchange_time = times[tick.exchange_time] = tick.exchange_time.isoformat()
        yield tick.symbol, (
            f'{{"type":"tick","version":1,"symbol":{json_text(tick.symbol)},"venue":"{venue}",'
            f'"exchange_time":"{exchange_time}","received_at":"{received}",'
            f'"price":{tick.price},"volume":{tick.volume},"cum_volume":{tick.cum_volume},"source":"ws",'
            f'"account":{account},"cum_value":{tick.cum_value},"change_rate":{json_number(tick.change_rate)},'
            f'"ask1":{tick.ask1},"bid1":{tick.bid1},"side":{json_text(tick.side)},'
            f'"strength":{json_number(tick.strength)}}}'
        ).encode()


def books_of(message: OrderBooksReceived) -> Iterator[wire.Book]:
    received = message.at
    for book in message.books:
        yield wire.Book(
            symbol=book.symbol, exchange_time=book.exchange_time(received), received_at=received,
            asks=book.asks, bids=book.bids, ask_sizes=book.ask_sizes, bid_sizes=book.bid_sizes,
            total_ask_size=book.total_ask_size, total_bid_size=book.total_bid_size,
            cum_volume=book.cum_volume, tr_id=message.tr_id, account=message.account,
        )


def program_trading_of(message: ProgramTradesReceived) -> Iterator[wire.ProgramTrading]:
    received = message.at
    for trade in message.trades:
        yield wire.ProgramTrading(
            symbol=trade.symbol, exchange_time=trade.exchange_time(received), received_at=received,
            sell_volume=trade.sell_volume, sell_value=trade.sell_value, buy_volume=trade.buy_volume,
            buy_value=trade.buy_value, net_volume=trade.net_volume, net_value=trade.net_value,
            sell_resting=trade.sell_resting, buy_resting=trade.buy_resting, net_resting=trade.net_resting,
            tr_id=message.tr_id, account=message.account,
        )


def snapshots_of(message: ScanCompleted) -> Iterator[wire.Fact]:
    for row in message.rows:
        yield wire.Snapshot(account=message.account, scan_no=message.scan_no, scanned_at=message.at,
                            **row.model_dump())
    yield wire.ScanDone(
        at=message.at, account=message.account, scan_no=message.scan_no, rows=len(message.rows),
        calls=message.calls, failed_calls=message.failed_calls, duration_seconds=message.duration_seconds,
        closing=message.closing,
    )


def recovered_of(message: RecoveryRecorded) -> Iterator[wire.Fact]:
    """The gap's summary, then each back-filled bar as a tick, as the tick file gets them."""
    gap = message.gap
    bars = [bar for record in message.records for bar in record.instruments]
    yield wire.GapRecovered(at=message.at, account=message.account, symbol=gap.symbol, start=gap.start,
                            end=gap.end, reason=gap.reason, bars=len(bars))
    for record in message.records:
        for bar in record.instruments:
            yield wire.Tick(
                symbol=bar.symbol, venue=Venue.KRX, exchange_time=bar.timestamp,
                received_at=record.meta.recovered_at, price=round(bar.price.close), volume=bar.volume,
                cum_volume=None, source="recovery", account=message.account,
            )


def gap_opened(message: ExpectedGapStarted, symbol: str, start: datetime) -> wire.GapOpened:
    """One symbol of a dropped connection, with the gap's start as the gap actor fixed it."""
    return wire.GapOpened(at=message.at, account=message.account, symbol=symbol, start=start,
                          reason=message.reason)


def gap_closed(account: str, gap: Gap, action: str, at: datetime) -> wire.GapClosed:
    return wire.GapClosed(
        at=at, account=account, symbol=gap.symbol, start=gap.start, end=gap.end,
        duration_seconds=gap.duration_seconds, expected=gap.expected, reason=gap.reason, action=action,
    )


def slot_changed(change: SlotChange, at: datetime) -> wire.SlotChanged:
    return wire.SlotChanged(at=at, account=change.account, symbol=change.symbol, action=change.action,
                            reason=change.reason)
