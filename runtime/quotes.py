"""The last trade price and tick counts per symbol and per account, for the dashboard and the metrics."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol


class Trade(Protocol):
    """What the board reads of a tick (`kis.ticks.TradeTick` is one)."""

    @property
    def symbol(self) -> str: ...

    @property
    def price(self) -> int: ...


class QuoteBoard:
    """Thread-safe: the recorder writes it once per tick message, the HTTP surface reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_price: dict[str, int] = {}
        self._ticks: Counter[str] = Counter()
        self._account_ticks: Counter[str] = Counter()

    def record(self, account: str, ticks: Iterable[Trade]) -> None:
        with self._lock:
            count = 0
            for tick in ticks:
                self._last_price[tick.symbol] = tick.price
                self._ticks[tick.symbol] += 1
                count += 1
            self._account_ticks[account] += count

    def symbols(self) -> dict[str, tuple[int, int]]:
        """symbol -> (last price, ticks so far)."""
        with self._lock:
            return {symbol: (price, self._ticks[symbol]) for symbol, price in self._last_price.items()}

    def account_ticks(self) -> dict[str, int]:
        with self._lock:
            return dict(self._account_ticks)

    def shareable(self) -> dict[str, Any]:
        """Prices and counts as plain data, for another process's `absorb`."""
        with self._lock:
            return {"prices": dict(self._last_price), "ticks": dict(self._ticks),
                    "accounts": dict(self._account_ticks)}

    def absorb(self, shared: dict[str, Any]) -> None:
        """Take over the board of the process that records the ticks (`shareable`)."""
        with self._lock:
            self._last_price = {str(k): int(v) for k, v in shared.get("prices", {}).items()}
            self._ticks = Counter({str(k): int(v) for k, v in shared.get("ticks", {}).items()})
            self._account_ticks = Counter(
                {str(k): int(v) for k, v in shared.get("accounts", {}).items()}
            )
