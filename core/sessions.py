"""Which venue a trade came from, and which sessions are open at a moment, from the configured sessions.

KIS's unified feed (H0UNCNT0) carries both venues' trades without saying which venue each came from. A trade
at a time when only one venue is in session (Nextrade's pre- and after-market) is that venue's; one made
while both are in session stays `UNIFIED`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from core.settings import FEED_VENUES, Feed, SessionSettings, TradingSession


class Venue(StrEnum):
    KRX = "KRX"
    NXT = "NXT"
    UNIFIED = "UN"
    """Both venues were in session: the unified feed does not tell them apart."""


def open_sessions(moment: datetime, sessions: SessionSettings, feed: Feed = "unified") -> list[
    tuple[Venue, TradingSession]
]:
    """The (venue, session) pairs of the venues `feed` carries that are in session at KST `moment`."""
    clock_time = moment.time()
    return [
        (Venue(venue), session)
        for venue in FEED_VENUES[feed]
        for session in sessions.of(venue)
        if session.contains(clock_time)
    ]


def venue_of(feed: Feed, exchange_time: datetime, sessions: SessionSettings) -> Venue:
    """The venue of a trade that arrived on `feed` at KST `exchange_time`."""
    if feed == "krx":
        return Venue.KRX
    if feed == "nxt":
        return Venue.NXT
    venues = {venue for venue, _ in open_sessions(exchange_time, sessions)}
    return venues.pop() if len(venues) == 1 else Venue.UNIFIED
