"""The base of every message between actors: frozen, strict about unknown fields, stamped with clock time."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict


class Message(BaseModel):
    """Immutable message. `at` is the injected clock's time when the sender made it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: AwareDatetime
