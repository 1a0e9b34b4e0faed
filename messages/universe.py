"""Queries to the universe actor (its announcements, UniverseReady, live in `messages.market`)."""

from __future__ import annotations

from messages.base import Message


class CurrentUniverse(Message):
    """Ask `universe` for the day's `UniverseReady`; the answer is None while it is still being built.

    A peer that (re)starts after the announcement asks this; one that asks during the build gets None
    and receives the UniverseReady told to it when the build ends.
    """
