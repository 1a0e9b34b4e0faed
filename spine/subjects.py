"""Subject names: every public subject is `observer.<instance>.<kind>[.<key>...]`.

A key (a symbol, an account) becomes one subject token: characters NATS reserves (".", "*", ">", spaces)
and anything outside letters, digits, "_" and "-" are replaced by "_", so a strange symbol can never
address another subject. The patterns themselves live on the wire models (`spine.wire`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

ROOT = "observer"
_UNSAFE = re.compile(r"[^0-9A-Za-z_-]")


@lru_cache(maxsize=8192)
def token(value: str) -> str:
    """One safe subject token made of `value` ("_" when empty)."""
    return _UNSAFE.sub("_", value) or "_"


@dataclass(frozen=True, slots=True)
class Subjects:
    """The subject tree of one observer instance."""

    instance: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}.{token(self.instance)}"

    @property
    def everything(self) -> str:
        """Every subject of this instance (the filter of a consumer of the whole stream)."""
        return f"{self.prefix}.>"

    def of(self, pattern: str, **keys: str) -> str:
        """`pattern` (e.g. "tick.{symbol}") filled with safe tokens, under this instance's prefix."""
        return f"{self.prefix}.{pattern.format(**{name: token(value) for name, value in keys.items()})}"

    def ticks(self, symbol: str = "*") -> str:
        """One symbol's ticks (or every symbol's with the default wildcard): what consumers subscribe to."""
        return f"{self.prefix}.tick.{symbol if symbol == '*' else token(symbol)}"

    @property
    def stream_name(self) -> str:
        """The JetStream stream keeping this instance's day (stream names allow no dots)."""
        return f"OBSERVER_{token(self.instance).upper()}"
